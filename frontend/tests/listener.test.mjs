// The listener page: it loads cleanly, shows what the station says, and plays its audio.
import { broadcastSnapshot, openListener, openStudio } from "./lib/harness.mjs";
import { marker } from "./lib/labels.mjs";
import { assert, notYet, poll } from "./lib/poll.mjs";

/** Both pages load without console errors, and what the host says appears as captions. */
export async function pagesLoadAndCaptionsAppear(t) {
  const listener = await openListener(t);
  const region = listener.locator("[data-testid=captions]");
  await region.waitFor({ state: "visible" });
  const live = await region.getAttribute("aria-live");
  assert(live === "polite" || live === "assertive", `captions region has aria-live=${JSON.stringify(live)}, want polite or assertive`);

  const code = marker();
  const text = `Radio24 browser test ${code}`;
  await t.station.speak(`${text}.`, "now");
  const caption = await poll(
    `a caption with "${text}" on the listener page`,
    async () => {
      const captions = await listener
        .locator("[data-testid=captions] .caption")
        .evaluateAll((elements) => elements.map((e) => ({ text: e.textContent ?? "", speaker: e.dataset.speaker ?? null })));
      return captions.find((c) => c.text.includes(code));
    },
    { timeoutMs: 60_000 },
  );
  assert(caption.speaker === "host", `the operator's caption has data-speaker=${JSON.stringify(caption.speaker)}, want "host"`);
  const speakers = await listener
    .locator("[data-testid=captions] .caption")
    .evaluateAll((elements) => elements.map((e) => e.dataset.speaker ?? null));
  const odd = speakers.filter((s) => s !== "host" && s !== "caller");
  assert(odd.length === 0, `captions with data-speaker not host|caller: ${JSON.stringify(odd)}`);

  // The page counts at least itself among the listeners, and knows the block on air.
  const count = await poll("a listener count of at least 1", async () => {
    const text = (await listener.locator("[data-testid=listener-count]").textContent()) ?? "";
    const n = Math.max(-1, ...(text.match(/\d+/g) ?? []).map(Number));
    return n >= 1 ? text : notYet(text);
  });
  assert(count, "no listener count");
  const snapshot = await broadcastSnapshot(listener);
  const block = snapshot.on_air?.block;
  assert(block, `the snapshot has no on_air.block: ${JSON.stringify(snapshot.on_air)}`);
  await listener.locator("[data-testid=on-air-block]").waitFor({ state: "visible" });

  // The schedule marks exactly one hour as current: the API's current hour.
  const { current_hour: hour } = await t.station.schedule();
  await poll(`schedule-hour-${hour} to be the only one with aria-current="true"`, async () => {
    const current = await listener
      .locator('[data-testid^="schedule-hour-"][aria-current="true"]')
      .evaluateAll((elements) => elements.map((e) => e.dataset.testid));
    return current.length === 1 && current[0] === `schedule-hour-${hour}` ? true : notYet(current);
  });

  // The studio, before and after signing in.
  const studio = await openStudio(t);
  await studio.locator("[data-testid=schedule-hour-0]").waitFor({ state: "visible" });
  await studio.locator("[data-testid=take-next]").waitFor({ state: "visible" });
  await poll("the studio's host status to say something", async () =>
    ((await studio.locator("[data-testid=host-status]").textContent()) ?? "").trim(),
  );
}

/**
 * With no LiveKit configured, play falls back to the HTTP stream (saying so), and the
 * <audio> element's clock runs. No console error is expected: the station says it has no
 * LiveKit, so the page need not try a join that fails.
 */
export async function playFallsBackToTheHttpStream(t) {
  const listener = await openListener(t);
  await listener.locator("[data-testid=play]").click();

  const transport = await poll("the transport label to name the HTTP stream", async () => {
    const text = ((await listener.locator("[data-testid=transport]").textContent()) ?? "").trim();
    return /stream/i.test(text) && !/livekit/i.test(text) ? text : notYet(text);
  });
  const audio = listener.locator("[data-testid=stream-audio]");
  const state = () =>
    audio.evaluate((a) => ({
      src: a.currentSrc || a.src,
      paused: a.paused,
      currentTime: a.currentTime,
      readyState: a.readyState,
      error: a.error ? `${a.error.code} ${a.error.message}` : null,
    }));
  const started = await poll(
    "stream-audio to play",
    async () => {
      const s = await state();
      if (s.error) throw Object.assign(new Error(`stream-audio failed: ${s.error}`), { fatal: true });
      return !s.paused && s.currentTime > 0 ? s : notYet(s);
    },
    { timeoutMs: 30_000 },
  );
  assert(
    new URL(started.src, t.base).pathname === "/v1/channels/radio24/stream",
    `stream-audio plays ${started.src}, want /v1/channels/radio24/stream`,
  );
  const later = await poll(
    `stream-audio's currentTime to advance 2 s past ${started.currentTime.toFixed(2)} (transport: "${transport}")`,
    async () => {
      const s = await state();
      if (s.error) throw Object.assign(new Error(`stream-audio failed: ${s.error}`), { fatal: true });
      return s.currentTime >= started.currentTime + 2 ? s : notYet(s);
    },
    { timeoutMs: 30_000 },
  );
  assert(!later.paused, "stream-audio paused by itself");
  await poll("the transport label to say the stream is playing", async () => {
    const text = ((await listener.locator("[data-testid=transport]").textContent()) ?? "").trim();
    return (/stream/i.test(text) && /playing/i.test(text)) || notYet(text);
  });
  // The station sees the page as a stream listener.
  await poll("/health to count a stream listener", async () => {
    const health = (await t.station.api("GET", "/health")).json;
    return (health.stream_listeners?.radio24 ?? 0) >= 1 ? true : notYet(health.stream_listeners);
  });
}
