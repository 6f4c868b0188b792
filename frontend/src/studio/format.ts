// Small formatting helpers shared by the studio's panels.
import { ApiError } from "@/api/client";
import type { MessageKey } from "@/i18n";
import type { Lang } from "@/i18n";

type T = (key: MessageKey, vars?: Record<string, string | number>) => string;

const locale = (lang: Lang) => (lang === "ja" ? "ja-JP" : "en-GB");

/** A clock time (the browser's zone), with the date when it is not today. */
export function formatTime(iso: string, lang: Lang): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const today = new Date().toDateString() === date.toDateString();
  return new Intl.DateTimeFormat(locale(lang), {
    ...(today ? {} : { month: "short", day: "numeric" }),
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).format(date);
}

/** 83 400 ms → "1:23". */
export function formatDuration(ms: number): string {
  const total = Math.round(ms / 1000);
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  return `${minutes}:${String(seconds).padStart(2, "0")}`;
}

export function formatSeconds(secs: number, lang: Lang): string {
  return new Intl.NumberFormat(locale(lang), { maximumFractionDigits: 1, minimumFractionDigits: 1 }).format(secs);
}

/** At most `max` characters of `text`, on one line. */
export function excerpt(text: string, max = 60): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Errors the operator can act on get words of their own; others show the API's message. */
const KNOWN: Record<string, MessageKey> = {
  network: "studio.error.network",
  unauthorized: "studio.error.unauthorized",
  queue_empty: "studio.error.queue_empty",
  call_in_progress: "studio.error.call_in_progress",
  conflict: "studio.error.conflict",
  queue_full: "studio.error.queue_full",
  channel_off_air: "studio.error.channel_off_air",
  host_unavailable: "studio.error.host_unavailable",
  host_timeout: "studio.error.host_timeout",
  store_unavailable: "studio.error.store_unavailable",
  rate_limited: "studio.error.rate_limited",
};

export function describeError(error: unknown, t: T): string {
  if (error instanceof ApiError) {
    const key = KNOWN[error.code];
    if (key) return t(key);
    return t("error.generic", { message: error.message });
  }
  return t("error.generic", { message: error instanceof Error ? error.message : String(error) });
}

export function isUnauthorized(error: unknown): boolean {
  return error instanceof ApiError && error.status === 401;
}

/** A result shown next to a control: words of ours, or an error, put in words when shown
 * (so a language switch changes it too). */
export type Note =
  | { tone: "ok" | "info"; key: MessageKey; vars?: Record<string, string | number> }
  | { tone: "info" | "error"; error: unknown };

export function noteText(note: Note, t: T): string {
  return "key" in note ? t(note.key, note.vars) : describeError(note.error, t);
}
