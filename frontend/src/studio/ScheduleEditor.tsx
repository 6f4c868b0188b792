"use client";
// The channel's day: 24 hours, each a block and an optional prompt for the writer. Edited
// as a draft and saved as a whole (PUT), so a half-edited day never reaches the host.
import { useEffect, useState } from "react";
import { request } from "@/api/client";
import { keys, useSchedule } from "@/api/hooks";
import { Schedule, type Block, type ScheduleHour } from "@/api/schemas";
import { useI18n } from "@/i18n";
import { useStudio } from "./context";
import { ActionStatus } from "./ActionStatus";
import { BlockOptions } from "./BlockOptions";
import { describeError, type Note } from "./format";

const MAX_PROMPT = 2000;

interface Hour {
  hour: number;
  block: Block;
  prompt: string;
}

/** The server's hours as 24 editable rows, in order. */
function day(hours: ScheduleHour[]): Hour[] {
  return hours
    .map((h) => ({ hour: h.hour, block: h.block, prompt: h.prompt ?? "" }))
    .sort((a, b) => a.hour - b.hour);
}

const same = (a: Hour | undefined, b: Hour | undefined) =>
  !!a && !!b && a.block === b.block && a.prompt.trim() === b.prompt.trim();

export function ScheduleEditor({ onDirtyChange }: { onDirtyChange: (dirty: boolean) => void }) {
  const { t } = useI18n();
  const { channel, call } = useStudio();
  const schedule = useSchedule(channel);
  const [base, setBase] = useState<Hour[] | null>(null);
  const [draft, setDraft] = useState<Hour[] | null>(null);
  const [saving, setSaving] = useState(false);
  const [status, setStatus] = useState<Note | null>(null);

  const changed = new Set(
    draft && base ? draft.filter((h, i) => !same(h, base[i])).map((h) => h.hour) : [],
  );
  const dirty = changed.size > 0;

  // Follow the server (another operator, the minute refresh) while nothing is edited here.
  useEffect(() => {
    if (!schedule.data || dirty) return;
    const hours = day(schedule.data.hours);
    setBase(hours);
    setDraft(hours);
    // Only a new answer should reset the draft, not the edits going back to clean.
  }, [schedule.data]);

  useEffect(() => onDirtyChange(dirty), [dirty, onDirtyChange]);
  useEffect(() => {
    if (!dirty) return;
    const warn = (event: BeforeUnloadEvent) => event.preventDefault();
    window.addEventListener("beforeunload", warn);
    return () => window.removeEventListener("beforeunload", warn);
  }, [dirty]);

  const edit = (hour: number, change: Partial<Hour>) => {
    setStatus(null);
    setDraft((d) => d && d.map((h) => (h.hour === hour ? { ...h, ...change } : h)));
  };

  const save = async () => {
    if (!draft) return;
    setSaving(true);
    setStatus(null);
    try {
      const answer = await call((token) =>
        request(keys.schedule(channel), Schedule, {
          method: "PUT",
          token,
          body: {
            hours: draft.map((h) => ({
              hour: h.hour,
              block: h.block,
              ...(h.prompt.trim() ? { prompt: h.prompt } : {}),
            })),
          },
        }),
      );
      const hours = day(answer.hours);
      setBase(hours);
      setDraft(hours);
      const { host_updated, ...saved } = answer;
      void schedule.mutate(saved, { revalidate: false });
      setStatus(
        host_updated === false
          ? { tone: "info", key: "studio.schedule.savedLater" }
          : { tone: "ok", key: "studio.schedule.saved" },
      );
    } catch (error) {
      setStatus({ tone: "error", error });
    } finally {
      setSaving(false);
    }
  };

  const current = schedule.data?.current_hour;

  return (
    <section className="panel schedule-panel" aria-labelledby="schedule-title">
      <div className="panel-head schedule-head">
        <div>
          <h2 id="schedule-title">{t("studio.schedule.title")}</h2>
          {schedule.data && (
            <p className="muted small panel-sub">
              {t("studio.schedule.timezone", { tz: schedule.data.timezone })}
            </p>
          )}
        </div>
        <div className="row">
          {dirty && (
            <span className="badge badge-warn" data-testid="schedule-dirty">
              {t("studio.schedule.unsaved", { n: changed.size })}
            </span>
          )}
          <button
            type="button"
            className="btn btn-small"
            onClick={() => {
              setDraft(base);
              setStatus(null);
            }}
            disabled={!dirty || saving}
          >
            {t("studio.schedule.discard")}
          </button>
          <button
            type="button"
            className="btn btn-primary"
            data-testid="schedule-save"
            onClick={() => void save()}
            disabled={!dirty || saving}
          >
            {saving ? t("studio.schedule.saving") : t("studio.schedule.save")}
          </button>
        </div>
      </div>
      <ActionStatus testId="schedule-status" note={status} />

      {schedule.error && !schedule.data && (
        <p className="notice" role="alert">
          {describeError(schedule.error, t)}
        </p>
      )}
      {!draft ? (
        !schedule.error && <p className="muted">{t("studio.loading")}</p>
      ) : (
        <div className="sched">
          <div className="sched-row sched-columns" aria-hidden="true">
            <span>{t("studio.schedule.hour")}</span>
            <span>{t("studio.schedule.block")}</span>
            <span>{t("studio.schedule.prompt")}</span>
          </div>
          {draft.map((h) => {
            const isNow = h.hour === current;
            const label = t("hour", { hour: h.hour });
            return (
              <div
                key={h.hour}
                className={`sched-row${isNow ? " is-now" : ""}${changed.has(h.hour) ? " is-changed" : ""}`}
                data-testid={`schedule-hour-${h.hour}`}
                aria-current={isNow ? "time" : undefined}
              >
                <div className="sched-hour">
                  <span className="sched-hour-label">{label}</span>
                  {isNow && <span className="badge badge-live">{t("studio.schedule.now")}</span>}
                  {changed.has(h.hour) && <span className="sched-changed">{t("studio.schedule.changed")}</span>}
                </div>
                <div className="sched-block">
                  <label className="visually-hidden" htmlFor={`block-${h.hour}`}>
                    {t("studio.schedule.blockLabel", { hour: label })}
                  </label>
                  <select
                    id={`block-${h.hour}`}
                    data-testid={`block-${h.hour}`}
                    value={h.block}
                    onChange={(e) => edit(h.hour, { block: e.target.value as Block })}
                  >
                    <BlockOptions />
                  </select>
                </div>
                <div className="sched-prompt">
                  <label className="visually-hidden" htmlFor={`prompt-${h.hour}`}>
                    {t("studio.schedule.promptLabel", { hour: label })}
                  </label>
                  <textarea
                    id={`prompt-${h.hour}`}
                    data-testid={`prompt-${h.hour}`}
                    rows={1}
                    maxLength={MAX_PROMPT}
                    value={h.prompt}
                    placeholder={t("studio.schedule.promptPlaceholder")}
                    onChange={(e) => edit(h.hour, { prompt: e.target.value })}
                  />
                </div>
              </div>
            );
          })}
        </div>
      )}
    </section>
  );
}
