// Call-ins from the listener page: typed ones reach the studio's queue and come back with the
// operator's decision; push-to-talk records for as long as the button is held.
import { hydrated, openListener, openStudio } from "./lib/harness.mjs";
import { marker } from "./lib/labels.mjs";
import { assert, notYet, poll, sleep } from "./lib/poll.mjs";

/** The caller's own call-ins on the page: [{id, status}] in page order. */
function myCalls(page) {
  return page
    .locator("[data-testid=my-call]")
    .evaluateAll((elements) => elements.map((e) => ({ id: e.dataset.id ?? null, status: e.dataset.status ?? null })));
}

/** The first of the caller's call-ins whose id is not in `before`. */
async function newCall(page, before, what) {
  return poll(
    what,
    async () => {
      const calls = await myCalls(page);
      return calls.find((c) => c.id && !before.has(c.id)) ?? false;
    },
    { timeoutMs: 30_000 },
  );
}

/** A typed call-in appears in the studio's queue; the studio drops it; the caller sees "dropped". */
export async function typedCallInIsDroppedByTheStudio(t) {
  const listener = await openListener(t);
  const studio = await openStudio(t);
  await hydrated(listener, "[data-testid=callin-send]");

  const before = new Set((await myCalls(listener)).map((c) => c.id));
  const text = `Hello from the browser test ${marker()}`;
  await listener.locator("[data-testid=callin-text]").fill(text);
  await listener.locator("[data-testid=callin-send]").click();
  const call = await newCall(listener, before, "the typed call-in among the caller's call-ins (my-call)");
  assert(call.status === "queued", `the new call-in is ${call.status}, want queued`);

  const item = (await t.station.queue()).find((i) => i.id === call.id);
  assert(item, `my-call data-id=${call.id} is not in GET /v1/queue`);
  assert(item.kind === "text" && item.text === text, `queue item ${call.id} is ${item.kind} ${JSON.stringify(item.text)}, want the text sent`);

  const row = studio.locator(`[data-testid=queue-item][data-id="${call.id}"]`);
  await row.waitFor({ state: "visible", timeout: 30_000 });
  assert((await row.getAttribute("data-status")) === "queued", `the studio shows it ${await row.getAttribute("data-status")}`);
  await row.locator("[data-testid=drop]").click();

  await poll(`GET /v1/queue to say ${call.id} is dropped`, async () => {
    const now = (await t.station.queue()).find((i) => i.id === call.id);
    return now?.status === "dropped" ? true : notYet(now?.status);
  });
  await poll(`the caller's my-call ${call.id} to say dropped`, async () => {
    const mine = (await myCalls(listener)).find((c) => c.id === call.id);
    return mine?.status === "dropped" ? true : notYet(mine);
  });
  await poll(`the studio's row to show dropped (or leave the queue)`, async () => {
    if ((await row.count()) === 0) return true;
    const status = await row.getAttribute("data-status");
    return status === "dropped" ? true : notYet(status);
  });
}

/**
 * Holds PTT for about 3 s with `press`/`release`, then checks the queued recording lasts about
 * as long as the hold: at least 2 s (the fake microphone delivered sound) and not much more
 * than the hold (the recording stopped with the button).
 */
async function holdPtt(t, press, release) {
  const listener = await openListener(t, { permissions: ["microphone"] });
  await hydrated(listener, "[data-testid=ptt]");
  const before = new Set((await myCalls(listener)).map((c) => c.id));
  const ptt = listener.locator("[data-testid=ptt]");
  await ptt.scrollIntoViewIfNeeded();

  await press(listener, ptt);
  const pressedAt = Date.now();
  await sleep(3_000);
  const held = Date.now() - pressedAt;
  await release(listener, ptt);

  const call = await newCall(listener, before, "the recording among the caller's call-ins (my-call)");
  const item = await poll(`my-call ${call.id} in GET /v1/queue`, async () =>
    (await t.station.queue()).find((i) => i.id === call.id),
  );
  assert(item.kind === "audio", `queue item ${call.id} is ${item.kind}, want audio`);
  t.note(`recording ${item.duration_ms} ms at ${item.sample_rate} Hz for a ${held} ms hold`);
  const low = 2_000;
  const high = held + 1_500;
  assert(
    item.duration_ms >= low && item.duration_ms <= high,
    `the recording lasts ${item.duration_ms} ms for a ${held} ms hold; want ${low}..${high} ms`,
  );
  assert([16000, 24000, 48000].includes(item.sample_rate), `sample_rate ${item.sample_rate}`);
}

/** PTT held with the mouse for ~3 s enqueues a recording of about that length. */
export async function pttHeldWithTheMouseRecordsTheHold(t) {
  await holdPtt(
    t,
    async (page, ptt) => {
      const box = await ptt.boundingBox();
      assert(box, "the PTT button has no box (hidden?)");
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.down();
    },
    async (page) => page.mouse.up(),
  );
}

/** PTT held with the Space key (focused) for ~3 s enqueues a recording of about that length. */
export async function pttHeldWithTheSpaceKeyRecordsTheHold(t) {
  await holdPtt(
    t,
    async (page, ptt) => {
      await ptt.focus();
      await page.keyboard.down("Space");
    },
    async (page) => page.keyboard.up("Space"),
  );
}

/** The studio raises a waiting call-in, drops it and puts it back: the API and the caller follow. */
export async function studioRaisesDropsAndRequeuesACallIn(t) {
  const listener = await openListener(t);
  const studio = await openStudio(t);
  await hydrated(listener, "[data-testid=callin-send]");
  const before = new Set((await myCalls(listener)).map((c) => c.id));
  await listener.locator("[data-testid=callin-text]").fill(`Please raise me ${marker()}`);
  await listener.locator("[data-testid=callin-send]").click();
  const call = await newCall(listener, before, "the typed call-in among the caller's call-ins (my-call)");
  const item = async () => (await t.station.queue()).find((i) => i.id === call.id);

  const row = studio.locator(`[data-testid=queue-item][data-id="${call.id}"]`);
  await row.waitFor({ state: "visible", timeout: 30_000 });
  const priority = (await item()).priority;
  await row.locator("[data-testid=raise]").click();
  await poll(`GET /v1/queue to give ${call.id} a priority above ${priority}`, async () => {
    const now = await item();
    return now.priority > priority || notYet(now.priority);
  });

  await poll("the raised row's drop button to be enabled", () => row.locator("[data-testid=drop]").isEnabled());
  await row.locator("[data-testid=drop]").click();
  await poll(`the caller's my-call ${call.id} to say dropped`, async () => {
    const mine = (await myCalls(listener)).find((c) => c.id === call.id);
    return mine?.status === "dropped" || notYet(mine);
  });
  await row.locator("[data-testid=requeue]").click();
  await poll(`GET /v1/queue to say ${call.id} is queued again`, async () => {
    const now = await item();
    return now.status === "queued" || notYet(now.status);
  });
  await poll(`the caller's my-call ${call.id} to say queued again`, async () => {
    const mine = (await myCalls(listener)).find((c) => c.id === call.id);
    return mine?.status === "queued" || notYet(mine);
  });
  await poll(`the studio's row to say queued again`, async () => {
    const status = await row.getAttribute("data-status");
    return status === "queued" || notYet(status);
  });
}

/**
 * A caller who comes back (a reload here; a dropped socket reconnects the same way) is the same
 * caller: the page greets with the kept `user_id` and `caller_token`, and the station tells it
 * about its waiting call-in again, and about what then happens to it. The page's own list is
 * wiped before the reload, so only the station can bring the call back.
 */
export async function callerKeepsTheirCallAcrossAReconnect(t) {
  const listener = await openListener(t);
  await hydrated(listener, "[data-testid=callin-send]");
  const before = new Set((await myCalls(listener)).map((c) => c.id));
  await listener.locator("[data-testid=callin-text]").fill(`Still there? ${marker()}`);
  await listener.locator("[data-testid=callin-send]").click();
  const call = await newCall(listener, before, "the typed call-in among the caller's call-ins (my-call)");
  const identity = () => listener.evaluate(() => JSON.parse(localStorage.getItem("radio24.caller") ?? "null"));
  const caller = await identity();
  assert(caller?.user_id, `no caller identity kept: ${JSON.stringify(caller)}`);
  const item = (await t.station.queue()).find((i) => i.id === call.id);
  assert(item?.user_id === caller.user_id, `the item's user_id ${item?.user_id} is not the page's ${caller.user_id}`);

  await listener.evaluate(() => localStorage.removeItem("radio24.calls"));
  await listener.reload();
  await hydrated(listener, "[data-testid=callin-send]");
  await poll(`my-call ${call.id} back after the reload, queued`, async () => {
    const mine = (await myCalls(listener)).find((c) => c.id === call.id);
    return mine?.status === "queued" || notYet(await myCalls(listener));
  });
  const again = await identity();
  assert(again?.user_id === caller.user_id, `the caller came back as ${again?.user_id}, want ${caller.user_id}`);

  await t.station.api("PATCH", `/v1/queue/${call.id}`, { admin: true, body: { status: "dropped" } });
  await poll(`the reconnected caller's my-call ${call.id} to say dropped`, async () => {
    const mine = (await myCalls(listener)).find((c) => c.id === call.id);
    return mine?.status === "dropped" || notYet(mine);
  });
}
