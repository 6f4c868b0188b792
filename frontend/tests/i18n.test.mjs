// Japanese and English: the toggle switches the page's language (html[lang] and its words),
// and the choice survives a reload and carries over to the studio.
import { hydrated } from "./lib/harness.mjs";
import { assert, notYet, poll } from "./lib/poll.mjs";

const lang = (page) => page.evaluate(() => document.documentElement.lang);
const langIs = (page, want) => async () => {
  const now = await lang(page);
  return now === want || notYet(now);
};
const text = (page, selector) =>
  page.locator(selector).first().evaluate((e) => (e.getAttribute("aria-label") || e.textContent || "").trim());

export async function languageToggleSwitchesAndIsRemembered(t) {
  // A browser that prefers English: the page starts in English.
  const page = await t.page({ locale: "en-US" });
  await page.goto("/");
  await hydrated(page, "[data-testid=lang-toggle]");
  await poll('html[lang="en"] for an English browser', langIs(page, "en"));
  const toggleEn = await text(page, "[data-testid=lang-toggle]");
  const playEn = await text(page, "[data-testid=play]");

  await page.locator("[data-testid=lang-toggle]").click();
  await poll('html[lang="ja"] after the toggle', langIs(page, "ja"));
  const toggleJa = await text(page, "[data-testid=lang-toggle]");
  const playJa = await text(page, "[data-testid=play]");
  assert(toggleJa !== toggleEn, `the toggle still reads ${JSON.stringify(toggleJa)} in Japanese`);
  assert(playJa !== playEn, `the play button still reads ${JSON.stringify(playJa)} in Japanese`);
  assert(/[\u3040-\u30ff\u4e00-\u9fff]/.test(playJa), `the play button reads ${JSON.stringify(playJa)}: no Japanese`);

  // Remembered: Japanese again after a reload, though the browser prefers English.
  await page.reload();
  await hydrated(page, "[data-testid=lang-toggle]");
  await poll('html[lang="ja"] after a reload', langIs(page, "ja"));
  await poll("the Japanese play label after a reload", async () => {
    const now = await text(page, "[data-testid=play]");
    return now === playJa || notYet(now);
  });

  // And on the studio.
  await page.goto("/studio/");
  await hydrated(page, "[data-testid=lang-toggle]");
  await poll('html[lang="ja"] on the studio', langIs(page, "ja"));

  // Back to English.
  await page.locator("[data-testid=lang-toggle]").click();
  await poll('html[lang="en"] after toggling back', langIs(page, "en"));
  await page.goto("/");
  await hydrated(page, "[data-testid=play]");
  await poll("the English play label again", async () => {
    const now = await text(page, "[data-testid=play]");
    return now === playEn || notYet(now);
  });
}
