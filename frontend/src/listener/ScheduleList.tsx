"use client";
// Today's programme: 24 hours, the current one marked (and scrolled to).
import { useEffect, useRef } from "react";
import type { Schedule } from "@/api/schemas";
import { useI18n } from "@/i18n";

export function ScheduleList({ schedule, error }: { schedule: Schedule | undefined; error: unknown }) {
  const { t } = useI18n();
  const current = useRef<HTMLLIElement>(null);
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    const el = current.current;
    const box = list.current;
    if (el && box) box.scrollTop = el.offsetTop - box.offsetTop - 8;
  }, [schedule?.current_hour]);

  return (
    <section className="panel schedule-panel" aria-labelledby="schedule-title">
      <div className="panel-head">
        <h2 id="schedule-title">{t("schedule.title")}</h2>
        {schedule && <span className="muted small">{schedule.timezone}</span>}
      </div>
      {!schedule && !error && <p className="muted">{t("schedule.loading")}</p>}
      {!!error && <p className="error-text">{t("error.network")}</p>}
      {schedule && (
        <ol className="schedule" ref={list} tabIndex={0} aria-label={t("schedule.title")}>
          {schedule.hours.map((h) => {
            const now = h.hour === schedule.current_hour;
            return (
              <li
                key={h.hour}
                ref={now ? current : undefined}
                className={`schedule-hour${now ? " is-now" : ""}`}
                data-testid={`schedule-hour-${h.hour}`}
                data-block={h.block}
                aria-current={now ? "true" : undefined}
              >
                <span className="schedule-time">{String(h.hour).padStart(2, "0")}:00</span>
                <span className="schedule-block">{t(`block.${h.block}`)}</span>
                {now && <span className="badge badge-live">{t("schedule.now")}</span>}
                {h.prompt && <span className="schedule-prompt muted small">{h.prompt}</span>}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
