// The studio's speak and script panels: what the operator types airs and reaches the
// listeners' captions; a script preview is written and shown.
import { openListener, openStudio } from "./lib/harness.mjs";
import { marker } from "./lib/labels.mjs";
import { notYet, poll } from "./lib/poll.mjs";

export async function studioSpeaksNowAndPreviewsAScript(t) {
  const listener = await openListener(t);
  const studio = await openStudio(t);

  const code = marker();
  await studio.locator("[data-testid=speak-text]").fill(`The studio says ${code}.`);
  await studio.locator("[data-testid=speak-now]").click();
  await poll(
    `the listener page to caption the studio's "${code}"`,
    async () => {
      const captions = await listener.locator("[data-testid=captions] .caption").allTextContents();
      return captions.some((c) => c.includes(code)) || notYet(captions.slice(-3));
    },
    { timeoutMs: 60_000 },
  );

  const output = studio.locator("[data-testid=script-output]");
  const placeholder = ((await output.textContent()) ?? "").trim();
  await studio.locator("[data-testid=script-preview]").click();
  const script = await poll(
    "script-output to show a written script",
    async () => {
      const text = ((await output.textContent()) ?? "").trim();
      if ((await output.locator("[role=alert]").count()) > 0) {
        throw Object.assign(new Error(`script-output shows an error: ${text}`), { fatal: true });
      }
      return (text !== placeholder && text.length > 20 && text) || notYet(text);
    },
    { timeoutMs: 30_000 },
  );
  if (!/template/.test(script)) throw new Error(`script-output does not name the writer (template): ${script.slice(0, 200)}`);
}
