"use client";
// What is on air now: the hour's block and the topic, whether the station is live, and how
// many listen.
import type { Listeners, OnAir as OnAirState } from "@/api/schemas";
import { useI18n } from "@/i18n";

export function OnAir({
  onAir,
  hostConnected,
  listeners,
  connection,
  children,
}: {
  onAir: OnAirState | null;
  hostConnected: boolean;
  listeners: Listeners | null;
  connection: "connecting" | "open" | "closed";
  children: React.ReactNode;
}) {
  const { t } = useI18n();
  const live = connection === "open" && hostConnected && onAir !== null;
  const count = listeners ? listeners.stream + listeners.broadcast : null;
  return (
    <section className="panel on-air" aria-labelledby="on-air-title">
      <div className="on-air-head">
        <span className={`badge ${live ? "badge-live" : "badge-warn"}`} data-testid="on-air-state">
          <span className="dot" aria-hidden="true" />
          {live ? t("onAir.live") : connection === "open" ? t("onAir.offAir") : t("onAir.connecting")}
        </span>
        <span className="listener-count" data-testid="listener-count">
          {count === null ? "—" : t("onAir.listeners", { count })}
        </span>
      </div>
      <h1 id="on-air-title" className="on-air-title">
        <span className="visually-hidden">{t("onAir.now")}: </span>
        <span data-testid="on-air-block">{onAir?.block ? t(`block.${onAir.block}`) : t("onAir.unknown")}</span>
      </h1>
      <p className="on-air-topic" data-testid="on-air-topic">
        {onAir?.topic ? t("onAir.topic", { topic: onAir.topic }) : t("onAir.noTopic")}
      </p>
      {children}
    </section>
  );
}
