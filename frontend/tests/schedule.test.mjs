// The studio's schedule editor: a change to the hour on air now is saved, shown to listeners,
// and followed by the host.
import { broadcastSnapshot, openListener, openStudio } from "./lib/harness.mjs";
import { BLOCK_LABEL_EN, namesBlock } from "./lib/labels.mjs";
import { assert, notYet, poll } from "./lib/poll.mjs";

// Never QANDA: a call-in hour would put other tests' callers on air.
const CHOICES = ["TOPIC_A", "NEWS", "JINGLE", "OP", "MUSIC"];

class HourChanged extends Error {
  fatal = true; // ends a poll at once
}

async function changeCurrentHour(t) {
  const before = await t.station.schedule();
  const hour = before.current_hour;
  const was = before.hours.find((h) => h.hour === hour).block;
  const block = CHOICES.find((b) => b !== was);
  const stillThisHour = async () => {
    if ((await t.station.schedule()).current_hour !== hour) throw new HourChanged(`the hour changed from ${hour}`);
  };

  const studio = await openStudio(t);
  const select = studio.locator(`[data-testid=block-${hour}]`);
  await select.waitFor({ state: "visible" });
  assert((await select.evaluate((e) => e.tagName)) === "SELECT", `block-${hour} is not a <select>`);
  assert((await select.inputValue()) === was, `block-${hour} shows ${await select.inputValue()}, the API says ${was}`);
  await studio.locator(`[data-testid=schedule-hour-${hour}]`).waitFor({ state: "visible" });
  await studio.locator(`[data-testid=prompt-${hour}]`).waitFor({ state: "attached" });
  const statusBefore = ((await studio.locator("[data-testid=schedule-status]").textContent()) ?? "").trim();
  await select.selectOption(block);
  await studio.locator("[data-testid=schedule-save]").click();

  await poll(`GET .../schedule to give hour ${hour} the block ${block}`, async () => {
    const now = await t.station.schedule();
    return now.hours.find((h) => h.hour === hour).block === block ? true : notYet(now.hours.find((h) => h.hour === hour));
  });
  await poll("schedule-status to say something new after saving", async () => {
    const text = ((await studio.locator("[data-testid=schedule-status]").textContent()) ?? "").trim();
    return text && text !== statusBefore ? text : notYet(text);
  });

  // The listener page shows it on the current hour, and as the block on air.
  const listener = await openListener(t);
  const row = listener.locator(`[data-testid=schedule-hour-${hour}]`);
  await poll(`the listener's schedule-hour-${hour} to be current and show ${BLOCK_LABEL_EN[block]}`, async () => {
    await stillThisHour();
    const current = await row.getAttribute("aria-current");
    const text = (await row.textContent()) ?? "";
    return current === "true" && namesBlock(text, block) ? true : notYet({ current, text });
  });
  await poll(`the listener's on-air-block to show ${BLOCK_LABEL_EN[block]}`, async () => {
    await stillThisHour();
    const text = (await listener.locator("[data-testid=on-air-block]").textContent()) ?? "";
    return namesBlock(text, block) ? true : notYet(text);
  }, { timeoutMs: 60_000 });
  await poll(`on_air.block of the /ws/broadcast snapshot to be ${block}`, async () => {
    await stillThisHour();
    const snapshot = await broadcastSnapshot(listener);
    return snapshot.on_air?.block === block ? true : notYet(snapshot.on_air?.block);
  }, { timeoutMs: 60_000 });
}

/** The studio changes the current hour's block; the API, the listener page and the host follow. */
export async function scheduleEditorChangesTheCurrentHour(t) {
  try {
    await changeCurrentHour(t);
  } catch (error) {
    // The station's clock passed the top of an hour mid-test: once more, in the new hour.
    if (!(error instanceof HourChanged)) throw error;
    await t.close();
    await changeCurrentHour(t);
  }
}
