"use client";
// The channel's call-ins (the newest 200): waiting ones first, in the order they would air,
// then the ended ones, newest first. Operators listen to recordings, drop, put back and
// raise items, and put the next caller through at once.
import { useEffect, useState } from "react";
import { ApiError, request, requestBlob } from "@/api/client";
import type { useQueue } from "@/api/hooks";
import { QueueItem, TakeNext, type ItemStatus } from "@/api/schemas";
import { useI18n, type MessageKey } from "@/i18n";
import { useStudio } from "./context";
import { ActionStatus } from "./ActionStatus";
import { describeError, excerpt, formatDuration, formatTime, type Note } from "./format";

const enc = encodeURIComponent;
const ENDED_SHOWN = 20;
const RAISE_BY = 10;
const MAX_PRIORITY = 1000;

const STATUS_TONE: Record<ItemStatus, string> = {
  live: "badge-live",
  queued: "badge-ok",
  done: "",
  dropped: "badge-bad",
};

const REASONS: Record<string, MessageKey> = {
  expired: "studio.reason.expired",
  moderation: "studio.reason.moderation",
  cancelled: "studio.reason.cancelled",
  host_lost: "studio.reason.host_lost",
  channel_removed: "studio.reason.channel_removed",
  operator: "studio.reason.operator",
  aired: "studio.reason.aired",
};

const waitingRank = (status: ItemStatus) => (status === "live" ? 0 : 1);
const time = (iso: string | null) => (iso ? Date.parse(iso) || 0 : 0);

export function QueuePanel({ queue }: { queue: ReturnType<typeof useQueue> }) {
  const { t } = useI18n();
  const { channel, call } = useStudio();
  const [pending, setPending] = useState<Record<string, boolean>>({});
  const [rowErrors, setRowErrors] = useState<Record<string, unknown>>({});
  const [taking, setTaking] = useState(false);
  const [takeMessage, setTakeMessage] = useState<Note | null>(null);
  const [player, setPlayer] = useState<{ id: string; url: string } | null>(null);
  const [loadingAudio, setLoadingAudio] = useState<string | null>(null);
  const [showAllEnded, setShowAllEnded] = useState(false);

  // A recording's object URL lives while its player is open: revoked when another one
  // replaces it, the player is closed, or the page goes.
  useEffect(() => {
    if (!player) return;
    return () => URL.revokeObjectURL(player.url);
  }, [player]);

  const items = queue.data?.items ?? [];
  const waiting = items
    .filter((i) => i.status === "queued" || i.status === "live")
    .sort(
      (a, b) =>
        waitingRank(a.status) - waitingRank(b.status) ||
        b.priority - a.priority ||
        time(a.enqueued_at) - time(b.enqueued_at),
    );
  const ended = items
    .filter((i) => i.status === "done" || i.status === "dropped")
    .sort((a, b) => time(b.ended_at ?? b.enqueued_at) - time(a.ended_at ?? a.enqueued_at));
  const endedShown = showAllEnded ? ended : ended.slice(0, ENDED_SHOWN);
  const queuedCount = waiting.filter((i) => i.status === "queued").length;

  const setRowError = (id: string, error: unknown) =>
    setRowErrors((all) => {
      const next = { ...all };
      if (error) next[id] = error;
      else delete next[id];
      return next;
    });

  const patch = async (item: QueueItem, body: { status?: "dropped" | "queued"; priority?: number }) => {
    setPending((p) => ({ ...p, [item.id]: true }));
    setRowError(item.id, null);
    try {
      const updated = await call((token) =>
        request(`/v1/queue/${enc(item.id)}`, QueueItem, { method: "PATCH", body, token }),
      );
      await queue.mutate(
        (data) => data && { ...data, items: data.items.map((i) => (i.id === updated.id ? updated : i)) },
        { revalidate: true },
      );
    } catch (error) {
      setRowError(item.id, error);
      void queue.mutate();
    } finally {
      setPending((p) => ({ ...p, [item.id]: false }));
    }
  };

  const takeNext = async () => {
    setTaking(true);
    setTakeMessage(null);
    try {
      const { taken } = await call((token) =>
        request(`/v1/studio/take-next?channel=${enc(channel)}`, TakeNext, { method: "POST", token }),
      );
      const what = taken.text ?? taken.transcript;
      setTakeMessage(
        what
          ? { tone: "ok", key: "studio.queue.taken", vars: { text: excerpt(what) } }
          : { tone: "ok", key: "studio.queue.takenVoice" },
      );
    } catch (error) {
      const code = error instanceof ApiError ? error.code : "";
      setTakeMessage({ tone: code === "queue_empty" || code === "call_in_progress" ? "info" : "error", error });
    } finally {
      setTaking(false);
      void queue.mutate();
    }
  };

  const play = async (item: QueueItem) => {
    if (player?.id === item.id) return;
    setLoadingAudio(item.id);
    setRowError(item.id, null);
    try {
      const blob = await call((token) => requestBlob(`/v1/queue/${enc(item.id)}/audio`, { token }));
      setPlayer({ id: item.id, url: URL.createObjectURL(blob) });
    } catch (error) {
      setRowError(item.id, error);
    } finally {
      setLoadingAudio(null);
    }
  };

  const row = (item: QueueItem, n: number) => (
    <QueueRow
      key={item.id}
      item={item}
      n={n}
      pending={!!pending[item.id]}
      error={rowErrors[item.id]}
      playerUrl={player?.id === item.id ? player.url : null}
      loadingAudio={loadingAudio === item.id}
      onPlay={() => void play(item)}
      onClosePlayer={() => setPlayer(null)}
      onDrop={() => void patch(item, { status: "dropped" })}
      onRequeue={() => void patch(item, { status: "queued" })}
      onRaise={() => void patch(item, { priority: Math.min(MAX_PRIORITY, item.priority + RAISE_BY) })}
    />
  );

  return (
    <section className="panel queue-panel" aria-labelledby="queue-title">
      <div className="panel-head">
        <div>
          <h2 id="queue-title">{t("studio.queue.title")}</h2>
          <p className="muted small panel-sub">{t("studio.queue.waitingCount", { n: queuedCount })}</p>
        </div>
        <button
          type="button"
          className="btn btn-primary"
          data-testid="take-next"
          onClick={() => void takeNext()}
          disabled={taking}
          aria-describedby="take-next-status"
        >
          {taking ? t("studio.queue.taking") : t("studio.queue.takeNext")}
        </button>
      </div>
      <ActionStatus id="take-next-status" testId="take-next-status" note={takeMessage} />

      {queue.error && (
        <p className="notice" role="alert">
          {describeError(queue.error, t)}
        </p>
      )}
      {!queue.data && !queue.error ? (
        <p className="muted">{t("studio.loading")}</p>
      ) : queue.data ? (
        <>
          <h3 className="list-title">
            {t("studio.queue.waiting")} <span className="count">{waiting.length}</span>
          </h3>
          {waiting.length > 0 ? (
            <ul className="q-list" aria-label={t("studio.queue.waiting")}>
              {waiting.map((item, i) => row(item, i + 1))}
            </ul>
          ) : (
            <p className="empty muted">{t("studio.queue.nobodyWaiting")}</p>
          )}
          <h3 className="list-title">
            {t("studio.queue.ended")} <span className="count">{ended.length}</span>
          </h3>
          {ended.length > 0 ? (
            <ul className="q-list" aria-label={t("studio.queue.ended")}>
              {endedShown.map((item, i) => row(item, waiting.length + i + 1))}
            </ul>
          ) : (
            <p className="empty muted">{t("studio.queue.noneEnded")}</p>
          )}
          {ended.length > endedShown.length && (
            <button type="button" className="btn btn-small show-more" onClick={() => setShowAllEnded(true)}>
              {t("studio.queue.showAllEnded", { n: ended.length })}
            </button>
          )}
        </>
      ) : null}
    </section>
  );
}

function QueueRow({
  item,
  n,
  pending,
  error,
  playerUrl,
  loadingAudio,
  onPlay,
  onClosePlayer,
  onDrop,
  onRequeue,
  onRaise,
}: {
  item: QueueItem;
  n: number;
  pending: boolean;
  error: unknown;
  playerUrl: string | null;
  loadingAudio: boolean;
  onPlay: () => void;
  onClosePlayer: () => void;
  onDrop: () => void;
  onRequeue: () => void;
  onRaise: () => void;
}) {
  const { t, lang } = useI18n();
  const words = item.text ?? item.transcript;
  // Why an item ended; on a waiting one only a reason that still matters (host_lost), and
  // nothing that its status already says (done: aired).
  const shownReason =
    item.reason &&
    (item.status === "dropped" || (item.status === "done" && item.reason !== "aired") || item.reason === "host_lost")
      ? item.reason
      : null;
  const reasonKey = shownReason ? REASONS[shownReason] : undefined;
  const reason = shownReason ? (reasonKey ? t(reasonKey) : shownReason) : null;
  const vars = { n };

  return (
    <li
      className={`q-item q-${item.status}`}
      data-testid="queue-item"
      data-id={item.id}
      data-status={item.status}
      aria-busy={pending || undefined}
    >
      <div className="q-meta">
        <span className="q-num">{t("studio.queue.itemName", vars)}</span>
        <span className={`badge ${STATUS_TONE[item.status]}`}>{t(`status.${item.status}`)}</span>
        <span className="badge kind-badge">
          {t(item.kind === "audio" ? "studio.queue.kind.audio" : "studio.queue.kind.text")}
          {item.kind === "audio" && item.duration_ms !== null && ` · ${formatDuration(item.duration_ms)}`}
        </span>
        <time className="muted small" dateTime={item.enqueued_at} title={item.enqueued_at}>
          {formatTime(item.enqueued_at, lang)}
        </time>
        <span className={`small ${item.priority !== 0 ? "q-priority-set" : "muted"}`}>
          {t("studio.queue.priority", { n: item.priority > 0 ? `+${item.priority}` : item.priority })}
        </span>
        {reason && <span className="small q-reason">{t("studio.queue.reason", { reason })}</span>}
        {item.requeues > 0 && <span className="small muted">{t("studio.queue.requeues", { n: item.requeues })}</span>}
      </div>

      <p className={`q-text ${words ? "" : "muted"}`}>
        {item.kind === "audio" && item.transcript && !item.text && (
          <span className="q-label">{t("studio.queue.transcript")} </span>
        )}
        {words ?? t("studio.queue.noTranscript")}
      </p>

      <div className="q-actions">
        {item.kind === "audio" && (
          <button
            type="button"
            className="btn btn-small"
            data-testid="play"
            aria-label={t("studio.queue.playLabel", vars)}
            onClick={onPlay}
            disabled={loadingAudio || playerUrl !== null}
          >
            {loadingAudio ? t("studio.queue.loadingAudio") : t("studio.queue.play")}
          </button>
        )}
        {item.status === "queued" && (
          <>
            <button
              type="button"
              className="btn btn-small"
              data-testid="raise"
              aria-label={t("studio.queue.raiseLabel", vars)}
              title={t("studio.queue.raiseHint", { by: RAISE_BY })}
              onClick={onRaise}
              disabled={pending || item.priority >= MAX_PRIORITY}
            >
              {t("studio.queue.raise")}
            </button>
            <button
              type="button"
              className="btn btn-small btn-danger"
              data-testid="drop"
              aria-label={t("studio.queue.dropLabel", vars)}
              onClick={onDrop}
              disabled={pending}
            >
              {t("studio.queue.drop")}
            </button>
          </>
        )}
        {item.status === "dropped" && (
          <button
            type="button"
            className="btn btn-small"
            data-testid="requeue"
            aria-label={t("studio.queue.requeueLabel", vars)}
            onClick={onRequeue}
            disabled={pending}
          >
            {t("studio.queue.requeue")}
          </button>
        )}
      </div>

      {playerUrl && (
        <div className="q-player">
          <audio controls autoPlay src={playerUrl} aria-label={t("studio.queue.recordingLabel", vars)} />
          <button
            type="button"
            className="btn btn-small btn-ghost"
            aria-label={t("studio.queue.closePlayerLabel", vars)}
            onClick={onClosePlayer}
          >
            {t("studio.queue.closePlayer")}
          </button>
        </div>
      )}
      {error !== undefined && (
        <p className="error-text small" role="alert">
          {describeError(error, t)}
        </p>
      )}
    </li>
  );
}
