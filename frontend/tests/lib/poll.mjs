// Waiting for something to become true, with a deadline: the tests never sleep a fixed time
// and never assert how long something took (CI is a busy 2-core machine).

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class NotYet {
  constructor(seen) {
    this.seen = seen;
  }
}

/** What a `poll` check returns when it is not done yet: `seen` goes into the timeout message. */
export const notYet = (seen) => new NotYet(seen);

/**
 * Calls `check` until it returns a truthy value other than `notYet(...)` (which is returned),
 * or throws "timed out after N s waiting for <what>" with the last value or error seen.
 * An error thrown by `check` whose `fatal` is true ends the wait at once.
 */
export async function poll(what, check, { timeoutMs = 30_000, intervalMs = 500 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value instanceof NotYet) last = value.seen;
      else if (value) return value;
      else last = value;
    } catch (error) {
      if (error?.fatal) throw error;
      last = error;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? `; last error: ${last.message}` : last === undefined ? "" : `; last seen: ${describe(last)}`;
      throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${seen}`);
    }
    await sleep(intervalMs);
  }
}

function describe(value) {
  try {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > 300 ? `${text.slice(0, 300)}…` : text;
  } catch {
    return String(value);
  }
}

/** Fails the test with `message` unless `condition` holds. */
export function assert(condition, message) {
  if (!condition) throw new Error(message);
}
