"use client";
// The LiveKit side of the player, loaded only when a room is joined (livekit-client is most
// of the page's weight, and a station without LiveKit never needs it): listen-only, the
// room's audio at the chosen volume, with a button when the browser blocks autoplay.
import { LiveKitRoom, RoomAudioRenderer, StartAudio, useConnectionState } from "@livekit/components-react";
import { useEffect } from "react";
import type { RoomJoin } from "@/api/schemas";

export type RoomState = "connecting" | "connected" | "reconnecting" | "disconnected";

export default function LiveKitAudio({
  join,
  volume,
  allowAudioLabel,
  onState,
  onFailed,
}: {
  join: RoomJoin;
  volume: number;
  allowAudioLabel: string;
  onState: (state: RoomState) => void;
  onFailed: () => void;
}) {
  return (
    <LiveKitRoom
      serverUrl={join.url}
      token={join.token}
      connect
      audio={false}
      video={false}
      onError={onFailed}
      onDisconnected={onFailed}
      style={{ display: "contents" }}
    >
      <RoomAudioRenderer volume={volume} />
      <StateReporter onState={onState} />
      <StartAudio label={allowAudioLabel} className="btn btn-primary" />
    </LiveKitRoom>
  );
}

function StateReporter({ onState }: { onState: (state: RoomState) => void }) {
  const state = useConnectionState();
  useEffect(() => {
    onState(state === "signalReconnecting" ? "reconnecting" : (state as RoomState));
  }, [state, onState]);
  return null;
}
