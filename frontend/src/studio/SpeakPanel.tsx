"use client";
// Words for the host to say (after what is queued, or at once, cutting the current segment
// short), and a script preview from the writer that can be copied in and edited first.
import { useId, useRef, useState } from "react";
import { request } from "@/api/client";
import { Script, SpeakAccepted, type Block } from "@/api/schemas";
import { useI18n } from "@/i18n";
import { useStudio } from "./context";
import { ActionStatus } from "./ActionStatus";
import { BlockOptions } from "./BlockOptions";
import { describeError, type Note } from "./format";

const MAX_TEXT = 2000;

export function SpeakPanel() {
  const { t } = useI18n();
  const { channel, call } = useStudio();
  const [text, setText] = useState("");
  const [sending, setSending] = useState<"next" | "now" | null>(null);
  const [status, setStatus] = useState<Note | null>(null);
  const textRef = useRef<HTMLTextAreaElement>(null);
  const empty = text.trim().length === 0;

  const speak = async (mode: "next" | "now") => {
    if (empty) {
      setStatus({ tone: "info", key: "studio.speak.empty" });
      textRef.current?.focus();
      return;
    }
    setSending(mode);
    setStatus(null);
    try {
      const accepted = await call((token) =>
        request("/v1/studio/speak", SpeakAccepted, { method: "POST", token, body: { text, channel, mode } }),
      );
      setStatus(
        accepted.mode === "now"
          ? { tone: "ok", key: "studio.speak.acceptedNow" }
          : { tone: "ok", key: "studio.speak.acceptedNext", vars: { n: accepted.queued_ahead } },
      );
      setText("");
    } catch (error) {
      setStatus({ tone: "error", error });
    } finally {
      setSending(null);
    }
  };

  return (
    <>
      <section className="panel speak-panel" aria-labelledby="speak-title">
        <h2 id="speak-title">{t("studio.speak.title")}</h2>
        <div className="field">
          <label htmlFor="speak-text">{t("studio.speak.label")}</label>
          <textarea
            id="speak-text"
            ref={textRef}
            data-testid="speak-text"
            rows={4}
            maxLength={MAX_TEXT}
            value={text}
            onChange={(e) => setText(e.target.value)}
            aria-describedby="speak-count"
          />
          <span id="speak-count" className="small muted count-line">
            {t("studio.speak.count", { n: text.length, max: MAX_TEXT })}
          </span>
        </div>
        <div className="row speak-actions">
          <button
            type="button"
            className="btn btn-primary"
            data-testid="speak-next"
            onClick={() => void speak("next")}
            disabled={sending !== null}
          >
            {sending === "next" ? t("studio.speak.sending") : t("studio.speak.next")}
          </button>
          <button
            type="button"
            className="btn btn-warn"
            data-testid="speak-now"
            onClick={() => void speak("now")}
            disabled={sending !== null}
            aria-describedby="speak-now-hint"
          >
            {sending === "now" ? t("studio.speak.sending") : t("studio.speak.now")}
          </button>
        </div>
        <p id="speak-now-hint" className="small muted">
          {t("studio.speak.nowHint")}
        </p>
        <ActionStatus testId="speak-status" note={status} />
      </section>
      <ScriptPreview
        onUse={(script) => {
          setText(script.slice(0, MAX_TEXT));
          setStatus(null);
          textRef.current?.focus();
        }}
      />
    </>
  );
}

function ScriptPreview({ onUse }: { onUse: (text: string) => void }) {
  const { t } = useI18n();
  const { channel, call } = useStudio();
  const id = useId();
  const [block, setBlock] = useState<Block | "">("");
  const [topic, setTopic] = useState("");
  const [busy, setBusy] = useState(false);
  const [script, setScript] = useState<Script | null>(null);
  const [error, setError] = useState<unknown>(null);

  const preview = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = {
        channel,
        ...(block ? { block } : {}),
        ...(topic.trim() ? { topic: topic.trim() } : {}),
      };
      setScript(await call((token) => request("/v1/studio/script", Script, { method: "POST", token, body })));
    } catch (cause) {
      setError(cause);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="panel script-panel" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>{t("studio.script.title")}</h2>
      <p className="small muted">{t("studio.script.intro")}</p>
      <form className="script-form" onSubmit={preview}>
        <div className="field">
          <label htmlFor={`${id}-block`}>{t("studio.script.block")}</label>
          <select
            id={`${id}-block`}
            data-testid="script-block"
            value={block}
            onChange={(e) => setBlock(e.target.value as Block | "")}
          >
            <option value="">{t("studio.script.blockAuto")}</option>
            <BlockOptions />
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-topic`}>{t("studio.script.topic")}</label>
          <input
            id={`${id}-topic`}
            data-testid="script-topic"
            type="text"
            maxLength={200}
            value={topic}
            placeholder={t("studio.script.topicPlaceholder")}
            onChange={(e) => setTopic(e.target.value)}
          />
        </div>
        <button type="submit" className="btn" data-testid="script-preview" disabled={busy}>
          {busy ? t("studio.script.writing") : t("studio.script.preview")}
        </button>
      </form>
      <div className="script-output" data-testid="script-output" aria-live="polite" aria-busy={busy || undefined}>
        {error ? (
          <p className="error-text small" role="alert">
            {describeError(error, t)}
          </p>
        ) : script ? (
          <>
            <p className="script-meta small">
              <span className="badge block-badge">{t(`block.${script.block}`)}</span>
              {script.topic && <span className="segment-topic">{script.topic}</span>}
              <span className="muted" data-testid="script-writer">
                {t("studio.script.writer", { writer: script.writer })}
              </span>
            </p>
            <p className="script-text">{script.text}</p>
            <button type="button" className="btn btn-small" data-testid="script-use" onClick={() => onUse(script.text)}>
              {t("studio.script.use")}
            </button>
          </>
        ) : (
          <p className="small muted">{t("studio.script.empty")}</p>
        )}
      </div>
    </section>
  );
}
