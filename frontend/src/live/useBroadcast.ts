"use client";
// The channel's live state from `/ws/broadcast`: what is on air, the captions as they air,
// the listener count and the call-in queue. A snapshot (first, and again with `resync` after
// falling behind or a host reconnect) replaces everything; the other frames update it.
import { useCallback, useState } from "react";
import { parseFrame, wsUrl } from "@/api/client";
import { BroadcastFrame, type Caption, type Listeners, type OnAir } from "@/api/schemas";
import { useSocket } from "./useSocket";

/** A caption with the moment (performance.now()) this page received it. */
export interface LiveCaption extends Caption {
  key: string;
  receivedAt: number;
  /** From the snapshot: aired before this page connected. */
  past: boolean;
}

export interface BroadcastState {
  hostConnected: boolean;
  onAir: OnAir | null;
  captions: LiveCaption[];
  listeners: Listeners | null;
  queue: { length: number; ids: string[] };
  error: { code: string; message: string } | null;
}

const KEEP_CAPTIONS = 60;

const initial: BroadcastState = {
  hostConnected: false,
  onAir: null,
  captions: [],
  listeners: null,
  queue: { length: 0, ids: [] },
  error: null,
};

function withCaption(list: LiveCaption[], caption: LiveCaption): LiveCaption[] {
  if (list.some((c) => c.key === caption.key)) return list;
  const next = [...list, caption];
  return next.length > KEEP_CAPTIONS ? next.slice(next.length - KEEP_CAPTIONS) : next;
}

export function useBroadcast(channel: string, onQueueChange?: () => void) {
  const [state, setState] = useState<BroadcastState>(initial);

  const onMessage = useCallback(
    (data: string | ArrayBuffer) => {
      const frame = parseFrame(BroadcastFrame, data);
      if (!frame) return;
      const now = performance.now();
      switch (frame.type) {
        case "snapshot":
          setState({
            hostConnected: frame.host_connected,
            onAir: frame.on_air,
            listeners: frame.listeners,
            queue: frame.queue,
            error: null,
            captions: frame.captions.map((c) => ({
              ...c,
              key: `${c.segment_id}:${c.index}`,
              receivedAt: now,
              past: true,
            })),
          });
          onQueueChange?.();
          break;
        case "caption":
          setState((s) => ({
            ...s,
            captions: withCaption(s.captions, {
              segment_id: frame.segment_id,
              index: frame.index,
              text: frame.text,
              at: frame.at,
              speaker: frame.speaker,
              key: `${frame.segment_id}:${frame.index}`,
              receivedAt: now,
              past: false,
            }),
          }));
          break;
        case "segment_started":
          setState((s) =>
            s.onAir ? { ...s, onAir: { ...s.onAir, segment: frame.segment, topic: frame.segment.topic } } : s,
          );
          break;
        case "segment_ended":
          break;
        case "on_air":
          setState((s) => ({ ...s, onAir: frame.state, hostConnected: true }));
          break;
        case "queue":
          setState((s) => ({ ...s, queue: { length: frame.length, ids: frame.ids } }));
          onQueueChange?.();
          break;
        case "listeners":
          setState((s) => ({ ...s, listeners: frame.listeners }));
          break;
        case "error":
          setState((s) => ({ ...s, error: { code: frame.error, message: frame.message } }));
          break;
      }
    },
    [onQueueChange],
  );

  const url = typeof window === "undefined" ? null : wsUrl(`/ws/broadcast?channel=${encodeURIComponent(channel)}`);
  const socket = useSocket(url, { onMessage });
  return { ...state, connection: socket.state };
}
