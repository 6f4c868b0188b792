"use client";
// Live captions, in step with what the listener hears: a caption arrives when its sentence
// airs, and waits here for as long as the listener's audio lags behind the air. The host's
// and callers' turns look different and say who speaks. New lines are announced to screen
// readers (aria-live).
import { useEffect, useRef, useState } from "react";
import type { LiveCaption } from "@/live/useBroadcast";
import { useI18n } from "@/i18n";

const SHOWN = 14;

export function Captions({ captions, lagMs }: { captions: LiveCaption[]; lagMs: number }) {
  const { t } = useI18n();
  const [now, setNow] = useState(() => (typeof performance === "undefined" ? 0 : performance.now()));
  const waiting = captions.some((c) => !c.past && c.receivedAt + lagMs > now);

  // Tick only while a caption waits for its audio.
  useEffect(() => {
    if (!waiting) return;
    const timer = setInterval(() => setNow(performance.now()), 100);
    return () => clearInterval(timer);
  }, [waiting]);
  useEffect(() => setNow(performance.now()), [captions]);

  const due = captions.filter((c) => c.past || c.receivedAt + lagMs <= now).slice(-SHOWN);
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [due.at(-1)?.key]);

  return (
    <section className="panel captions-panel" aria-labelledby="captions-title">
      <div className="panel-head">
        <h2 id="captions-title">{t("captions.title")}</h2>
        <span className="muted small">{t("captions.hint")}</span>
      </div>
      <ol
        ref={list}
        className="captions"
        data-testid="captions"
        // It scrolls: focusable so keyboard users can scroll it too (axe scrollable-region-focusable).
        tabIndex={0}
        aria-labelledby="captions-title"
        aria-live="polite"
        aria-relevant="additions"
      >
        {due.length === 0 && <li className="caption-empty muted">{t("captions.empty")}</li>}
        {due.map((c, i) => (
          <li
            key={c.key}
            className={`caption caption-${c.speaker}${i === due.length - 1 ? " is-latest" : ""}`}
            data-speaker={c.speaker}
          >
            <span className="caption-who">{t(c.speaker === "caller" ? "captions.caller" : "captions.host")}</span>
            <span className="caption-text">{c.text}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}
