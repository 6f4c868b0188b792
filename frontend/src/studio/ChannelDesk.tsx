"use client";
// One channel's desk: what is on air and the host's health on the side with the speak box,
// the call-in queue and the day's schedule wide. The live socket revalidates the queue.
import { useCallback, useEffect } from "react";
import { useQueue, useStudioHealth } from "@/api/hooks";
import { useBroadcast } from "@/live/useBroadcast";
import { StudioProvider } from "./context";
import { isUnauthorized } from "./format";
import { HostStatus } from "./HostStatus";
import { QueuePanel } from "./QueuePanel";
import { ScheduleEditor } from "./ScheduleEditor";
import { SpeakPanel } from "./SpeakPanel";

export function ChannelDesk({
  token,
  channel,
  onUnauthorized,
  onScheduleDirty,
}: {
  token: string;
  channel: string;
  onUnauthorized: () => void;
  onScheduleDirty: (dirty: boolean) => void;
}) {
  const queue = useQueue(channel, token);
  const health = useStudioHealth(token);
  const revalidateQueue = queue.mutate;
  const onQueueChange = useCallback(() => {
    void revalidateQueue();
  }, [revalidateQueue]);
  const broadcast = useBroadcast(channel, onQueueChange);

  const unauthorized = isUnauthorized(health.error) || isUnauthorized(queue.error);
  useEffect(() => {
    if (unauthorized) onUnauthorized();
  }, [unauthorized, onUnauthorized]);

  return (
    <StudioProvider token={token} channel={channel} onUnauthorized={onUnauthorized}>
      <div className="studio-grid">
        <div className="studio-side">
          <HostStatus channel={channel} broadcast={broadcast} health={health.data} healthError={health.error} />
          <SpeakPanel />
        </div>
        <div className="studio-main">
          <QueuePanel queue={queue} />
          <ScheduleEditor onDirtyChange={onScheduleDirty} />
        </div>
      </div>
    </StudioProvider>
  );
}
