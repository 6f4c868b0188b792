// Screenshots of both pages for docs/screenshots/, at desktop and phone width, full page:
// the listener page once captions have aired, the studio signed in with a call-in waiting
// and the schedule in view.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { DESKTOP, PHONE, openListener, openStudio } from "./lib/harness.mjs";
import { poll } from "./lib/poll.mjs";

export function screenshotsTo(dir) {
  return async function screenshots(t) {
    mkdirSync(dir, { recursive: true });
    if (!(await t.station.queue()).some((i) => i.status === "queued")) {
      await t.station.api("POST", "/v1/queue", { body: { channel: "radio24", text: "Good evening! Could you talk about the night sky?" } });
    }
    // Something natural on air last, so the newest captions are not the tests' own.
    const closing = "お相手はRadio24でした。";
    await t.station.speak(`こんばんは、Radio24です。今夜も最後までお付き合いください。${closing}`, "now");
    for (const [name, viewport] of [
      ["desktop", DESKTOP],
      ["phone", PHONE],
    ]) {
      const options = { viewport, isMobile: viewport === PHONE };
      const listener = await openListener(t, options);
      await poll(
        `the caption "${closing}" on the listener page`,
        async () => (await listener.locator("[data-testid=captions] .caption").allTextContents()).some((c) => c.includes(closing)),
        { timeoutMs: 60_000 },
      );
      await listener.screenshot({ path: path.join(dir, `listener-${name}.png`), fullPage: true });

      const studio = await openStudio(t, options);
      await studio.locator('[data-testid=queue-item][data-status="queued"]').first().waitFor({ state: "visible" });
      await studio.locator("[data-testid=schedule-hour-0]").waitFor({ state: "visible" });
      await studio.screenshot({ path: path.join(dir, `studio-${name}.png`), fullPage: true });
    }
  };
}
