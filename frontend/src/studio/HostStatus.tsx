"use client";
// What the host is doing: on air now and next, how much it has ready, its links (to the
// API, to LiveKit) and who listens. From the live socket, and /v1/studio/health every 5 s.
import type { Health, Publisher, Segment } from "@/api/schemas";
import type { BroadcastState } from "@/live/useBroadcast";
import type { SocketState } from "@/live/useSocket";
import { useI18n, type MessageKey } from "@/i18n";
import { describeError, excerpt, formatSeconds } from "./format";

type Broadcast = BroadcastState & { connection: SocketState };

const LINK_STATE: Record<string, { key: MessageKey; tone: string }> = {
  up: { key: "studio.status.link.up", tone: "ok" },
  connecting: { key: "studio.status.link.connecting", tone: "warn" },
  down: { key: "studio.status.link.down", tone: "bad" },
};

const LIVEKIT_STATE: Record<Publisher["state"], { key: MessageKey; tone: string }> = {
  connected: { key: "studio.status.livekit.connected", tone: "ok" },
  connecting: { key: "studio.status.livekit.connecting", tone: "warn" },
  retrying: { key: "studio.status.livekit.retrying", tone: "warn" },
  stopped: { key: "studio.status.livekit.stopped", tone: "bad" },
};

export function HostStatus({
  channel,
  broadcast,
  health,
  healthError,
}: {
  channel: string;
  broadcast: Broadcast;
  health: Health | undefined;
  healthError: unknown;
}) {
  const { t, lang } = useI18n();
  const { onAir, listeners, connection, hostConnected } = broadcast;
  const livekit = onAir?.livekit ?? health?.livekit[channel];
  const link = health ? (LINK_STATE[health.host_link.state] ?? { key: null, tone: "warn" }) : null;

  const overall =
    connection !== "open"
      ? { tone: "warn", text: t("studio.status.socket.reconnecting") }
      : !hostConnected
        ? { tone: "bad", text: t("studio.status.hostOffline") }
        : { tone: "live", text: t("studio.status.onAir") };

  const secs = (value: number | undefined) =>
    value === undefined ? "—" : t("studio.status.seconds", { n: formatSeconds(value, lang) });
  const readyLow = onAir !== null && onAir.ready_ahead_secs < 5;
  const deadAir = onAir !== null && onAir.dead_air_secs > 0;

  return (
    <section className="panel host-status" data-testid="host-status" aria-labelledby="host-status-title">
      <div className="panel-head">
        <h2 id="host-status-title">{t("studio.status.title")}</h2>
        <span className={`badge badge-${overall.tone}`} data-testid="on-air-state">
          <span className="dot" aria-hidden="true" />
          {overall.text}
        </span>
      </div>

      {broadcast.error && (
        <p className="notice small" role="alert">
          {t("error.generic", { message: broadcast.error.message })}
        </p>
      )}

      <div className="now-playing" data-testid="on-air-now">
        <h3 className="eyebrow">{t("studio.status.now")}</h3>
        {onAir?.segment ? (
          <>
            <SegmentMeta block={onAir.segment.block ?? onAir.block} topic={onAir.segment.topic ?? onAir.topic} />
            <p className="now-text">{onAir.segment.text}</p>
          </>
        ) : (
          <>
            {onAir && <SegmentMeta block={onAir.block} topic={onAir.topic} />}
            <p className="muted small">{t("studio.status.nothingOnAir")}</p>
          </>
        )}
      </div>

      <div className="up-next" data-testid="on-air-next">
        <h3 className="eyebrow">{t("studio.status.next")}</h3>
        {onAir && onAir.next.length > 0 ? (
          <>
            <ol className="next-list">
              {onAir.next.slice(0, 3).map((segment) => (
                <NextItem key={segment.id} segment={segment} />
              ))}
            </ol>
            {onAir.next.length > 3 && (
              <p className="muted small">{t("studio.status.moreNext", { n: onAir.next.length - 3 })}</p>
            )}
          </>
        ) : (
          <p className="muted small">{t("studio.status.nothingNext")}</p>
        )}
      </div>

      <dl className="stats">
        <div>
          <dt>{t("studio.status.writer")}</dt>
          <dd data-testid="status-writer">{onAir?.writer ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("studio.status.voice")}</dt>
          <dd data-testid="status-voice">{onAir?.voice ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("studio.status.readyAhead")}</dt>
          <dd data-testid="status-ready-ahead" className={readyLow ? "tone-warn" : undefined}>
            {secs(onAir?.ready_ahead_secs)}
          </dd>
        </div>
        <div>
          <dt>{t("studio.status.deadAir")}</dt>
          <dd data-testid="status-dead-air" className={deadAir ? "tone-warn" : undefined}>
            {secs(onAir?.dead_air_secs)}
          </dd>
        </div>
        <div>
          <dt>{t("studio.status.hostLink")}</dt>
          <dd data-testid="status-host-link">
            {health && link ? (
              <>
                <span className={`badge badge-${link.tone}`}>
                  <span className="dot" aria-hidden="true" />
                  {link.key ? t(link.key) : health.host_link.state}
                </span>
                <span className="stat-sub muted small">
                  {t(health.host_link.transport === "http" ? "studio.status.link.http" : "studio.status.link.inProcess")}
                </span>
                {health.host_link.error && <span className="stat-error small">{health.host_link.error}</span>}
              </>
            ) : healthError ? (
              <span className="error-text small">{describeError(healthError, t)}</span>
            ) : (
              "—"
            )}
          </dd>
        </div>
        <div>
          <dt>{t("studio.status.livekit")}</dt>
          <dd data-testid="status-livekit">
            {livekit ? (
              <>
                <span className={`badge badge-${LIVEKIT_STATE[livekit.state].tone}`}>
                  <span className="dot" aria-hidden="true" />
                  {t(LIVEKIT_STATE[livekit.state].key)}
                </span>
                <span className="stat-sub muted small">{t("studio.status.livekit.room", { room: livekit.room })}</span>
                {livekit.last_error && <span className="stat-error small">{livekit.last_error}</span>}
              </>
            ) : (
              <span className="muted">{t("studio.status.livekit.none")}</span>
            )}
          </dd>
        </div>
        <div>
          <dt>{t("studio.status.listeners.stream")}</dt>
          <dd data-testid="status-listeners-stream">{listeners?.stream ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("studio.status.listeners.broadcast")}</dt>
          <dd data-testid="status-listeners-broadcast">{listeners?.broadcast ?? "—"}</dd>
        </div>
      </dl>
      {health && !health.store.ok && (
        <p className="notice small" role="alert">
          {t("studio.status.storeDown", { error: health.store.error ?? health.store.backend })}
        </p>
      )}
    </section>
  );
}

function SegmentMeta({ block, topic }: { block: Segment["block"]; topic: string | null }) {
  const { t } = useI18n();
  if (!block && !topic) return null;
  return (
    <p className="segment-meta">
      {block && <span className="badge block-badge">{t(`block.${block}`)}</span>}
      {topic && <span className="segment-topic">{topic}</span>}
    </p>
  );
}

function NextItem({ segment }: { segment: Segment }) {
  const { t } = useI18n();
  return (
    <li>
      {segment.block && <span className="badge block-badge">{t(`block.${segment.block}`)}</span>}{" "}
      <span className="next-text">{excerpt(segment.text, 90)}</span>
    </li>
  );
}
