// What each test gets: its own browser contexts (one per simulated person), with every
// console error and page error recorded. A test fails when any appears that it did not say
// it expects.
import { poll } from "./poll.mjs";

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export class TestContext {
  constructor({ name, browser, station }) {
    this.name = name;
    this.browser = browser;
    this.station = station;
    this.contexts = [];
    this.errors = [];
    this.expected = [];
    this.notes = [];
  }

  /** A line printed under the test's result (what it measured, for the record). */
  note(text) {
    this.notes.push(text);
  }

  get base() {
    return this.station.base;
  }

  /** A console or page error matching `pattern` (text or the resource's URL) does not fail the test. */
  expectConsoleError(pattern) {
    this.expected.push(pattern);
  }

  /** A fresh browser context: its own storage (a new listener or operator), English by default. */
  async context({ viewport = DESKTOP, locale = "en-US", isMobile = false, permissions = [] } = {}) {
    const context = await this.browser.newContext({
      viewport,
      locale,
      permissions,
      isMobile,
      hasTouch: isMobile,
      deviceScaleFactor: 1,
      baseURL: this.base,
    });
    context.setDefaultTimeout(30_000);
    context.on("page", (page) => this.watch(page));
    this.contexts.push(context);
    return context;
  }

  /** A new page in a new context. */
  async page(options) {
    const context = await this.context(options);
    return context.newPage();
  }

  watch(page) {
    const where = () => {
      try {
        return new URL(page.url()).pathname;
      } catch {
        return page.url();
      }
    };
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const url = message.location()?.url ?? "";
      this.record(`console error on ${where()}: ${message.text()}${url ? ` (${url})` : ""}`);
    });
    page.on("pageerror", (error) =>
      this.record(`page error on ${where()}: ${error.stack || `${error.name}: ${error.message}` || String(error)}`),
    );
  }

  record(text) {
    if (this.expected.some((pattern) => pattern.test(text))) return;
    this.errors.push(text);
  }

  async close() {
    await Promise.allSettled(this.contexts.map((context) => context.close()));
    this.contexts = [];
  }
}

/** Waits until React has hydrated the element `selector` (its props are attached), so a click is not lost. */
export async function hydrated(page, selector, { timeoutMs = 30_000 } = {}) {
  await page.locator(selector).first().waitFor({ state: "attached", timeout: timeoutMs });
  await poll(
    `React to hydrate ${selector} on ${page.url()}`,
    () =>
      page.evaluate((sel) => {
        const element = document.querySelector(sel);
        return !!element && Object.keys(element).some((key) => key.startsWith("__reactProps"));
      }, selector),
    { timeoutMs, intervalMs: 200 },
  );
}

/** The listener page, hydrated. */
export async function openListener(t, options) {
  const page = await t.page(options);
  await page.goto("/");
  await hydrated(page, "[data-testid=play]");
  return page;
}

/** The studio, signed in with the admin token. */
export async function openStudio(t, options) {
  const page = await t.page(options);
  await page.goto("/studio/");
  await signIn(t, page);
  return page;
}

export async function signIn(t, page) {
  await hydrated(page, "[data-testid=sign-in]");
  await page.locator("#admin-token").fill(t.station.token);
  await page.locator("[data-testid=sign-in]").click();
  await page.locator("[data-testid=host-status]").waitFor({ state: "visible" });
}

/**
 * The first frame of `/ws/broadcast` (the snapshot), read by a browser page on the station's
 * origin (Node 20 has no WebSocket of its own).
 */
export async function broadcastSnapshot(page, channel = "radio24") {
  return page.evaluate(
    (ch) =>
      new Promise((resolve, reject) => {
        const scheme = location.protocol === "https:" ? "wss:" : "ws:";
        const socket = new WebSocket(`${scheme}//${location.host}/ws/broadcast?channel=${encodeURIComponent(ch)}`);
        const timer = setTimeout(() => {
          socket.close();
          reject(new Error("no snapshot within 10 s"));
        }, 10_000);
        socket.onmessage = (event) => {
          clearTimeout(timer);
          socket.close();
          resolve(JSON.parse(event.data));
        };
        socket.onerror = () => {
          clearTimeout(timer);
          reject(new Error("the broadcast socket failed"));
        };
      }),
    channel,
  );
}

/** A page on the station's origin that is not the app (for fetches and sockets of the test's own). */
export async function probePage(t) {
  const page = await t.page();
  await page.goto("/health");
  return page;
}
