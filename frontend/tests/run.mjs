#!/usr/bin/env node
// The browser tests: the real radio24 binary (role all, SQLite, offline writer and voice)
// serving the built web app, driven by headless Chromium through playwright-core.
//
//   node tests/run.mjs [name-filter ...]      (npm run test:browser)
//
// RADIO24_BIN: the binary (default $CARGO_TARGET_DIR/debug/radio24, else ../target/debug/radio24);
// RADIO24_CHROMIUM: the browser (default /usr/bin/chromium; nothing is downloaded).
// Prints "ok - name" / "not ok - name" per test and ends with one line "N passed, N failed".
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import * as a11y from "./a11y.test.mjs";
import * as callin from "./callin.test.mjs";
import * as i18n from "./i18n.test.mjs";
import { TestContext } from "./lib/harness.mjs";
import { Station } from "./lib/station.mjs";
import * as listener from "./listener.test.mjs";
import * as schedule from "./schedule.test.mjs";
import { screenshotsTo } from "./screenshots.mjs";
import * as studio from "./studio.test.mjs";

const frontendDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repoRoot = path.resolve(frontendDir, "..");
const webDir = path.join(frontendDir, "out");
const TEST_TIMEOUT_MS = 240_000;

const tests = [
  listener.pagesLoadAndCaptionsAppear,
  listener.playFallsBackToTheHttpStream,
  callin.typedCallInIsDroppedByTheStudio,
  callin.pttHeldWithTheMouseRecordsTheHold,
  callin.pttHeldWithTheSpaceKeyRecordsTheHold,
  callin.studioRaisesDropsAndRequeuesACallIn,
  callin.callerKeepsTheirCallAcrossAReconnect,
  studio.studioSpeaksNowAndPreviewsAScript,
  schedule.scheduleEditorChangesTheCurrentHour,
  i18n.languageToggleSwitchesAndIsRemembered,
  a11y.noSeriousAccessibilityViolations,
  screenshotsTo(path.join(repoRoot, "docs", "screenshots")),
];

function summary(passed, failed) {
  console.log(`${passed} passed, ${failed} failed`);
}

/** Stops before anything starts: one line saying what is missing, then the summary. */
function missing(line) {
  console.log(`not ok - setup: ${line}`);
  summary(0, 1);
  process.exit(1);
}

function binaryPath() {
  if (process.env.RADIO24_BIN) return path.resolve(process.env.RADIO24_BIN);
  if (process.env.CARGO_TARGET_DIR) return path.resolve(repoRoot, process.env.CARGO_TARGET_DIR, "debug", "radio24");
  return path.join(repoRoot, "target", "debug", "radio24");
}

/** The fake microphone: a 440 Hz tone pulsing like syllables, 10 s, 16-bit mono 48 kHz (Chromium loops it). */
function fakeMicrophone(dir) {
  const wav = path.join(dir, "fake-mic.wav");
  execFileSync("sox", ["-n", "-r", "48000", "-b", "16", "-c", "1", wav, "synth", "10", "sine", "440", "tremolo", "4", "80", "vol", "0.6"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  return wav;
}

async function main() {
  const filters = process.argv.slice(2);
  const selected = filters.length ? tests.filter((test) => filters.some((f) => test.name.toLowerCase().includes(f.toLowerCase()))) : tests;
  const bin = binaryPath();
  const browserPath = process.env.RADIO24_CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(path.join(webDir, "index.html")) || !existsSync(path.join(webDir, "studio", "index.html"))) {
    missing(`no web app in ${webDir}: build the app: cd frontend && npm ci && npm run build`);
  }
  if (!existsSync(bin)) missing(`no radio24 binary at ${bin}: build it with cargo build, or set RADIO24_BIN`);
  if (!existsSync(browserPath)) missing(`no Chromium at ${browserPath}: apt-get install -y chromium (or set RADIO24_CHROMIUM)`);

  const tmp = mkdtempSync(path.join(tmpdir(), "radio24-e2e-"));
  const station = new Station({ bin, repoRoot, webDir, dir: tmp });
  let browser = null;
  let failed = 0;
  let passed = 0;
  let stopping = false;

  const cleanUp = async () => {
    if (browser) await browser.close().catch(() => {});
    await station.stop().catch(() => station.killNow());
  };
  process.on("exit", () => station.killNow());
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      console.log(`# ${signal}: stopping`);
      cleanUp().finally(() => process.exit(130));
    });
  }

  try {
    let wav;
    try {
      wav = fakeMicrophone(tmp);
    } catch (error) {
      missing(`sox could not make the fake microphone (${String(error.stderr ?? error.message).trim()}): apt-get install -y sox`);
    }
    try {
      await station.start();
    } catch (error) {
      console.log(`not ok - setup: the station did not start: ${error.message}`);
      console.log(`# radio24 log (${station.logPath}):\n${indent(station.logTail())}`);
      await cleanUp();
      summary(0, 1);
      return 1;
    }
    console.log(`# radio24 ${path.relative(repoRoot, bin) || bin} on ${station.base}, web app ${path.relative(repoRoot, webDir)}`);
    await prepareStation(station);

    const args = [
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${wav}`,
      "--autoplay-policy=no-user-gesture-required",
    ];
    if (process.getuid?.() === 0) args.push("--no-sandbox");
    browser = await chromium.launch({ executablePath: browserPath, headless: true, args });
    console.log(`# Chromium ${browser.version()}`);

    for (const test of selected) {
      if (stopping) break;
      const t = new TestContext({ name: test.name, browser, station });
      let error = null;
      let timer;
      try {
        await Promise.race([
          test(t),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS / 1000} s`)), TEST_TIMEOUT_MS);
          }),
        ]);
      } catch (e) {
        error = e;
      } finally {
        clearTimeout(timer);
        await t.close();
      }
      if (stopping) break;
      const problems = [];
      if (error) problems.push(error.message ?? String(error));
      problems.push(...t.errors);
      if (problems.length === 0) {
        passed += 1;
        console.log(`ok - ${test.name}`);
        for (const note of t.notes) console.log(indent(note));
      } else {
        failed += 1;
        console.log(`not ok - ${test.name}`);
        for (const problem of problems) console.log(indent(problem));
        for (const note of t.notes) console.log(indent(note));
      }
    }
  } finally {
    await cleanUp();
  }
  if (failed > 0) console.log(`# radio24 log, last lines (${station.logPath}):\n${indent(station.logTail(40))}`);
  else rmSync(tmp, { recursive: true, force: true });
  summary(passed, failed);
  return failed > 0 ? 1 : 0;
}

/**
 * Before the tests: no call-in hour in the day (the host would put the tests' callers on air
 * and take them out of the queue), and something said at once so captions come promptly.
 */
async function prepareStation(station) {
  const schedule = await station.schedule();
  const hours = schedule.hours.map(({ hour, block, prompt }) => ({
    hour,
    block: block === "QANDA" ? "TOPIC_A" : block,
    ...(prompt == null ? {} : { prompt }),
  }));
  await station.api("PUT", "/v1/channels/radio24/schedule", { admin: true, body: { hours } });
  await station.speak("Radio24 browser tests are starting.", "now");
}

function indent(text) {
  return String(text)
    .replace(/\x1b\[[0-9;]*m/g, "")
    .trimEnd()
    .split("\n")
    .map((line) => `  # ${line}`)
    .join("\n");
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.log(`not ok - harness: ${error.stack ?? error}`);
    summary(0, 1);
    process.exit(1);
  },
);
