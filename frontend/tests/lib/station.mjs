// The real radio24 binary, started for the browser tests: `radio24 serve` (role all) in a
// temporary folder with SQLite, the offline writer and voice, and the built web app.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { poll, sleep } from "./poll.mjs";

/** A port nobody listens on right now (the kernel's pick). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Only what a process needs to run: nothing of the caller's RADIO24__*, OPENAI_*, LIVEKIT_*,
// DATABASE_URL, POSTGRES_*, PORT or ALLOWED_ORIGIN reaches the station.
const PASS_ENV = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ"];

export class Station {
  constructor({ bin, repoRoot, webDir, dir }) {
    this.bin = bin;
    this.repoRoot = repoRoot;
    this.webDir = webDir;
    this.dir = dir ?? mkdtempSync(path.join(tmpdir(), "radio24-e2e-"));
    this.token = randomBytes(24).toString("hex");
    this.logPath = path.join(this.dir, "radio24.log");
    this.child = null;
    this.exited = null;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start({ readyMs = 60_000 } = {}) {
    this.port = await freePort();
    const env = {};
    for (const key of PASS_ENV) if (process.env[key] !== undefined) env[key] = process.env[key];
    Object.assign(env, {
      RUST_LOG: process.env.RADIO24_E2E_RUST_LOG ?? "info",
      NO_COLOR: "1",
      RADIO24__SERVER__API_PORT: String(this.port),
      RADIO24__SERVER__WEB_DIR: this.webDir,
      RADIO24__DATABASE__SQLITE_PATH: path.join(this.dir, "radio24.db"),
      RADIO24__AUTH__ADMIN_TOKEN: this.token,
      RADIO24__AUTH__ADMIN_TOKEN_FILE: path.join(this.dir, "admin-token"),
      RADIO24__VOICE__BACKEND: "espeak-ng",
      RADIO24__WRITER__BACKEND: "template",
    });
    const log = createWriteStream(this.logPath);
    // cwd = the repository: the binary reads config/default.toml from ./config.
    this.child = spawn(this.bin, ["serve", "--role", "all"], {
      cwd: this.repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout.pipe(log);
    this.child.stderr.pipe(log);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
      this.child.once("error", (error) => resolve({ code: null, signal: null, error }));
    });
    let gone = null;
    this.exited.then((how) => (gone = how));
    await poll(
      "the station to answer /ready",
      async () => {
        if (gone) {
          const why = gone.error ? gone.error.message : `exit code ${gone.code}, signal ${gone.signal}`;
          const error = new Error(`radio24 serve stopped before it was ready (${why})`);
          error.fatal = true;
          throw error;
        }
        try {
          const response = await fetch(`${this.base}/ready`);
          return response.ok;
        } catch {
          return false;
        }
      },
      { timeoutMs: readyMs, intervalMs: 250 },
    );
  }

  /** SIGTERM, then SIGKILL if it has not gone within 10 s. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const done = await Promise.race([this.exited, sleep(10_000).then(() => null)]);
    if (!done) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  /** Last resort from a process "exit" handler: no waiting possible there. */
  killNow() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  logTail(lines = 60) {
    if (!existsSync(this.logPath)) return "(no log)";
    return readFileSync(this.logPath, "utf8")
      .replace(/\x1b\[[0-9;]*m/g, "")
      .trimEnd()
      .split("\n")
      .slice(-lines)
      .join("\n");
  }

  /** A JSON request to the API; `admin` adds the bearer token. Throws on a non-2xx answer. */
  async api(method, route, { body, admin = false, ok = true } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (admin) headers.Authorization = `Bearer ${this.token}`;
    const response = await fetch(`${this.base}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (ok && !response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 300)}`);
    return { status: response.status, json };
  }

  async schedule(channel = "radio24") {
    return (await this.api("GET", `/v1/channels/${channel}/schedule`)).json;
  }

  async queue(channel = "radio24") {
    return (await this.api("GET", `/v1/queue?channel=${channel}&limit=500`, { admin: true })).json.items;
  }

  async speak(text, mode = "now", channel = "radio24") {
    return (await this.api("POST", "/v1/studio/speak", { admin: true, body: { text, mode, channel } })).json;
  }
}
