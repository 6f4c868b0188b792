"use client";
// Calling in: hold the button (mouse, touch, or Space) to talk, or type. While held, a level
// meter shows the microphone is heard and a countdown the time left; letting go sends the
// recording. Below, the caller's own call-ins, with their place in line and status, live.
import { useEffect, useRef, useState } from "react";
import { useI18n, type MessageKey } from "@/i18n";
import { PTT_SAMPLE_RATE, PttRecorder } from "./recorder";
import { usePtt, type MyCall } from "./usePtt";

type Phase = "idle" | "opening" | "recording";

export function CallIn({ channel }: { channel: string }) {
  const { t } = useI18n();
  const ptt = usePtt(channel);
  const [phase, setPhase] = useState<Phase>("idle");
  const [level, setLevel] = useState(0);
  const [elapsed, setElapsed] = useState(0);
  const [text, setText] = useState("");
  const [micError, setMicError] = useState<string | null>(null);
  const recorder = useRef<PttRecorder | null>(null);
  // Whether the button is held now: letting go while the microphone opens cancels.
  const held = useRef(false);
  // When the recording began (performance.now()), once `audio_start` went out.
  const since = useRef<number | null>(null);

  const maxSecs = ptt.limits?.max_audio_secs ?? 60;

  const begin = async () => {
    if (held.current || !ptt.ready) return;
    held.current = true;
    setMicError(null);
    ptt.clearError();
    setPhase("opening");
    const rec = new PttRecorder();
    recorder.current = rec;
    try {
      await rec.open({
        onChunk: (pcm) => {
          if (since.current !== null) ptt.sendAudio(pcm);
        },
        onLevel: setLevel,
      });
    } catch (e) {
      held.current = false;
      recorder.current = null;
      await rec.close();
      setPhase("idle");
      setMicError(e instanceof DOMException && e.name === "NotAllowedError" ? t("callin.micDenied") : t("callin.micFailed"));
      return;
    }
    if (!held.current) {
      // Let go before the microphone was ready: nothing to send.
      recorder.current = null;
      await rec.close();
      setPhase("idle");
      return;
    }
    ptt.startAudio(PTT_SAMPLE_RATE);
    since.current = performance.now();
    setElapsed(0);
    setPhase("recording");
  };

  const end = async () => {
    held.current = false;
    // Still opening the microphone: `begin` sees the button let go and closes it.
    const began = since.current;
    const rec = recorder.current;
    if (began === null || !rec) return;
    since.current = null;
    recorder.current = null;
    const secs = (performance.now() - began) / 1000;
    const rest = await rec.close();
    if (rest.length) ptt.sendAudio(rest);
    ptt.endAudio(Math.round(secs * 10) / 10);
    setLevel(0);
    setPhase("idle");
  };

  // The countdown, and letting go by itself at the limit.
  useEffect(() => {
    if (phase !== "recording") return;
    const timer = setInterval(() => {
      const began = since.current;
      if (began === null) return;
      const secs = (performance.now() - began) / 1000;
      setElapsed(secs);
      if (secs >= maxSecs - 0.25) void end();
    }, 100);
    return () => clearInterval(timer);
    // `end` reads what it needs through refs.
  }, [phase, maxSecs]);

  const sendText = (e: React.FormEvent) => {
    e.preventDefault();
    const trimmed = text.trim();
    if (!trimmed) return;
    if (ptt.sendText(trimmed)) setText("");
  };

  const recording = phase === "recording";
  const left = Math.max(0, Math.ceil(maxSecs - elapsed));
  const errorText = micError ?? (ptt.error ? callInError(t, ptt.error) : null);

  return (
    <section className="panel callin" aria-labelledby="callin-title">
      <div className="panel-head">
        <h2 id="callin-title">{t("callin.title")}</h2>
        <span className={`badge ${ptt.ready ? "badge-ok" : "badge-warn"}`}>
          <span className="dot" aria-hidden="true" />
          {ptt.ready ? t("callin.lineOpen") : t("callin.lineConnecting")}
        </span>
      </div>
      <p className="muted small">{t("callin.intro")}</p>

      <div className="ptt-row">
        <button
          type="button"
          className={`ptt-button${recording ? " is-recording" : ""}`}
          data-testid="ptt"
          disabled={!ptt.ready}
          aria-pressed={recording}
          aria-describedby="ptt-help"
          onPointerDown={(e) => {
            if (e.button !== 0) return;
            e.currentTarget.setPointerCapture(e.pointerId);
            void begin();
          }}
          onPointerUp={() => void end()}
          onPointerCancel={() => void end()}
          onKeyDown={(e) => {
            if (e.key === " " || e.code === "Space") {
              e.preventDefault();
              if (!e.repeat) void begin();
            }
          }}
          onKeyUp={(e) => {
            if (e.key === " " || e.code === "Space") {
              e.preventDefault();
              void end();
            }
          }}
          onContextMenu={(e) => e.preventDefault()}
          onBlur={() => void end()}
        >
          <MicIcon />
          <span>{recording ? t("callin.release") : phase === "opening" ? t("callin.opening") : t("callin.hold")}</span>
        </button>
        <div className="ptt-meter">
          <meter
            min={0}
            max={1}
            value={level}
            aria-label={t("callin.level")}
            className="level"
          />
          <p className="countdown" data-testid="ptt-countdown" aria-hidden={!recording}>
            {recording ? t("callin.left", { secs: left }) : t("callin.max", { secs: maxSecs })}
          </p>
        </div>
      </div>
      <p id="ptt-help" className="muted small">{t("callin.pttHelp")}</p>

      <form className="callin-text" onSubmit={sendText}>
        <label htmlFor="callin-text">{t("callin.textLabel")}</label>
        <div className="row">
          <textarea
            id="callin-text"
            data-testid="callin-text"
            rows={2}
            maxLength={ptt.limits?.max_text_chars ?? 500}
            value={text}
            onChange={(e) => setText(e.target.value)}
            placeholder={t("callin.textPlaceholder")}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendText(e);
            }}
          />
          <button type="submit" className="btn btn-primary" data-testid="callin-send" disabled={!ptt.ready || !text.trim()}>
            {t("callin.send")}
          </button>
        </div>
      </form>

      <p className="error-text" role="alert" data-testid="callin-error">
        {errorText}
      </p>

      <MyCalls calls={ptt.calls} onCancel={ptt.cancel} />
    </section>
  );
}

function callInError(t: (key: MessageKey, vars?: Record<string, string | number>) => string, error: { code: string; message: string }) {
  const known: Record<string, MessageKey> = {
    too_many_waiting: "callin.err.tooManyWaiting",
    too_many_this_hour: "callin.err.tooManyThisHour",
    rate_limited: "callin.err.rateLimited",
    text_too_long: "callin.err.textTooLong",
    audio_too_long: "callin.err.audioTooLong",
    store_unavailable: "callin.err.unavailable",
  };
  const key = known[error.code];
  return key ? t(key) : t("error.generic", { message: error.message });
}

function MyCalls({ calls, onCancel }: { calls: MyCall[]; onCancel: (id: string) => void }) {
  const { t } = useI18n();
  if (calls.length === 0) return null;
  return (
    <div className="my-calls">
      <h3>{t("callin.mine")}</h3>
      <ul aria-live="polite">
        {calls.map((call, i) => (
          <li key={call.id} className="my-call" data-testid="my-call" data-id={call.id} data-status={call.status}>
            <span className="my-call-what">
              {call.label?.kind === "text"
                ? `“${call.label.text}”`
                : call.label?.kind === "audio"
                  ? t("callin.recording", { secs: call.label.secs })
                  : t("callin.earlier")}
            </span>
            <span className={`badge status-${call.status}`}>{t(`status.${call.status}`)}</span>
            {call.status === "queued" && call.position !== null && (
              <span className="muted small">{t("callin.position", { position: call.position })}</span>
            )}
            {call.reason && <span className="muted small">{t("callin.reason", { reason: call.reason })}</span>}
            {call.status === "queued" && (
              <button
                type="button"
                className="btn btn-small btn-ghost"
                onClick={() => onCancel(call.id)}
                aria-label={t("callin.cancelN", { n: calls.length - i })}
              >
                {t("callin.cancel")}
              </button>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function MicIcon() {
  return (
    <svg className="ptt-icon" viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false">
      <rect x="9" y="3" width="6" height="11" rx="3" fill="currentColor" />
      <path d="M6 11a6 6 0 0 0 12 0M12 17v4M8.5 21h7" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" />
    </svg>
  );
}
