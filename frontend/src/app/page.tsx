"use client";
// The listener page: play the station, read along, see what is on and what comes, call in.
import { useCallback, useEffect, useState } from "react";
import { useChannels, useSchedule } from "@/api/hooks";
import { TopBar } from "@/components/TopBar";
import { useI18n } from "@/i18n";
import { CallIn } from "@/listener/CallIn";
import { Captions } from "@/listener/Captions";
import { OnAir } from "@/listener/OnAir";
import { Player } from "@/listener/Player";
import { ScheduleList } from "@/listener/ScheduleList";
import { useBroadcast } from "@/live/useBroadcast";
import "./listener.css";

/** `?channel=NAME` picks a channel; the station's first live one otherwise. */
function useChannel() {
  const channels = useChannels();
  const [asked, setAsked] = useState<string | null | undefined>(undefined);
  useEffect(() => setAsked(new URLSearchParams(window.location.search).get("channel")), []);
  const list = channels.data?.channels;
  const channel =
    asked === undefined || !list
      ? null
      : (asked ?? (list.find((c) => c.live) ?? list[0])?.name ?? "radio24");
  return { channel, livekit: channels.data?.livekit ?? false, error: channels.error as unknown };
}

export default function ListenerPage() {
  const { t } = useI18n();
  const { channel, livekit, error } = useChannel();
  return (
    <>
      <TopBar current="listen" />
      {channel ? (
        <Station channel={channel} livekit={livekit} />
      ) : (
        <main className="page">
          <p className={error ? "error-text" : "muted"} role="status">
            {error ? t("error.network") : t("schedule.loading")}
          </p>
        </main>
      )}
    </>
  );
}

function Station({ channel, livekit }: { channel: string; livekit: boolean }) {
  const { t } = useI18n();
  const [lagMs, setLagMs] = useState(0);
  const schedule = useSchedule(channel, { refreshInterval: 15_000 });
  const live = useBroadcast(channel);
  const block = live.onAir?.block;
  const { mutate } = schedule;
  // The hour's block changed on air (a new hour, or an operator's edit): read the day again.
  useEffect(() => {
    if (block) void mutate();
  }, [block, mutate]);
  const onLagChange = useCallback((ms: number) => setLagMs(ms), []);

  return (
    <main className="page listener-page">
      {live.error && (
        <p className="notice" role="alert">
          {t("error.generic", { message: live.error.message })}
        </p>
      )}
      <div className="listener-grid">
        <div className="listener-main">
          <OnAir
            onAir={live.onAir}
            hostConnected={live.hostConnected}
            listeners={live.listeners}
            connection={live.connection}
          >
            <Player channel={channel} livekit={livekit} onLagChange={onLagChange} />
          </OnAir>
          <Captions captions={live.captions} lagMs={lagMs} />
        </div>
        <div className="listener-side">
          <CallIn channel={channel} />
          <ScheduleList schedule={schedule.data} error={schedule.error} />
        </div>
      </div>
    </main>
  );
}
