// axe-core on both pages (the studio signed in): no serious or critical violations.
import { createRequire } from "node:module";
import { openListener, openStudio } from "./lib/harness.mjs";
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
  await poll("a caption on the listener page", async () => (await listener.locator("[data-testid=captions] .caption").count()) > 0, {
    timeoutMs: 60_000,
  });
  const studio = await openStudio(t);
  await studio.locator("[data-testid=schedule-hour-0]").waitFor({ state: "visible" });

  const found = [];
  const onListener = await axe(listener);
  if (onListener.length) found.push(describe("listener page /", onListener));
  const onStudio = await axe(studio);
  if (onStudio.length) found.push(describe("studio /studio/ (signed in)", onStudio));
  if (found.length) throw new Error(`axe found serious or critical violations:\n${found.join("\n")}`);
}
