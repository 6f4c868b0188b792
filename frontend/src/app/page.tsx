"use client";
// The listener page: play the station, read along, see what is on and what comes, call in.
import { useCallback, useEffect, useState } from "react";
import { useSchedule } from "@/api/hooks";
import { TopBar } from "@/components/TopBar";
import { useI18n } from "@/i18n";
import { CallIn } from "@/listener/CallIn";
import { Captions } from "@/listener/Captions";
import { OnAir } from "@/listener/OnAir";
import { Player } from "@/listener/Player";
import { ScheduleList } from "@/listener/ScheduleList";
import { useBroadcast } from "@/live/useBroadcast";
import "./listener.css";

/** `?channel=NAME` picks a channel; the station's first one otherwise. */
function useChannelFromUrl(): string | null {
  const [channel, setChannel] = useState<string | null>(null);
  useEffect(() => {
    setChannel(new URLSearchParams(window.location.search).get("channel") || "radio24");
  }, []);
  return channel;
}

export default function ListenerPage() {
  const channel = useChannelFromUrl();
  return (
    <>
      <TopBar current="listen" />
      {channel && <Station channel={channel} />}
    </>
  );
}

function Station({ channel }: { channel: string }) {
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
            <Player channel={channel} onLagChange={onLagChange} />
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
