// axe-core on both pages (the studio signed in): no serious or critical violations.
import { createRequire } from "node:module";
import { openListener, openStudio } from "./lib/harness.mjs";
import { marker } from "./lib/labels.mjs";
import { poll } from "./lib/poll.mjs";

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

async function axe(page) {
  await page.addScriptTag({ path: axePath });
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

function describe(where, violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes
        .slice(0, 5)
        .map((n) => `      ${n.target.join(" ")}: ${(n.failureSummary ?? "").split("\n").slice(1).join("; ").trim()}`)
        .join("\n");
      const more = v.nodes.length > 5 ? `\n      … and ${v.nodes.length - 5} more` : "";
      return `  ${where}: ${v.impact} ${v.id}: ${v.help} (${v.helpUrl})\n${nodes}${more}`;
    })
    .join("\n");
}

export async function noSeriousAccessibilityViolations(t) {
  const listener = await openListener(t);
  // The listener page as it mostly is: a caption list long enough to scroll.
  const last = `おわり ${marker()}`;
  const sentences = ["一つ目の話です。", "二つ目の話です。", "三つ目の話です。", "四つ目の話です。", "五つ目の話です。", "六つ目の話です。", "七つ目の話です。", "八つ目の話です。"];
  await t.station.speak(`${sentences.join("")}${last}。`, "now");
  await poll(
    `the caption "${last}" on the listener page`,
    async () => (await listener.locator("[data-testid=captions] .caption").allTextContents()).some((c) => c.includes(last)),
    { timeoutMs: 90_000 },
  );
  const studio = await openStudio(t);
  await studio.locator("[data-testid=schedule-hour-0]").waitFor({ state: "visible" });

  const found = [];
  const onListener = await axe(listener);
  if (onListener.length) found.push(describe("listener page /", onListener));
  const onStudio = await axe(studio);
  if (onStudio.length) found.push(describe("studio /studio/ (signed in)", onStudio));
  if (found.length) throw new Error(`axe found serious or critical violations:\n${found.join("\n")}`);
}
