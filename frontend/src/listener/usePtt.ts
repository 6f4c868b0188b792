"use client";
// The listener's call-in line, `/ws/ptt`: typed call-ins and push-to-talk recordings, and
// their place and status as the queue moves. The caller's identity (`user_id` and its
// `caller_token`) is kept in localStorage and given back on every reconnect, so a dropped
// socket (Cloud Run closes them within the hour) or a reload keeps the caller's calls.
import { useCallback, useEffect, useRef, useState } from "react";
import { parseFrame, wsUrl } from "@/api/client";
import { PttFrame, type ItemStatus, type PttLimits } from "@/api/schemas";
import { useSocket } from "@/live/useSocket";

const IDENTITY_KEY = "radio24.caller";
const CALLS_KEY = "radio24.calls";
const KEEP_CALLS = 20;

/** One of this caller's call-ins. */
export interface MyCall {
  id: string;
  /** What the caller sent, as this page remembers it: the text, or a recording's length. */
  label: { kind: "text"; text: string } | { kind: "audio"; secs: number } | null;
  status: ItemStatus;
  position: number | null;
  reason: string | null;
}

// Errors that answer a call-in sent (text, or `audio_end`) instead of its `queued`.
const REFUSALS = new Set([
  "empty_text",
  "text_too_long",
  "invalid_text",
  "invalid_audio",
  "too_many_waiting",
  "too_many_this_hour",
  "rate_limited",
  "store_unavailable",
]);

type Pending = NonNullable<MyCall["label"]>;

function load<T>(key: string, fallback: T): T {
  try {
    const raw = localStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : fallback;
  } catch {
    return fallback;
  }
}

export function usePtt(channel: string) {
  const [limits, setLimits] = useState<PttLimits | null>(null);
  const [calls, setCalls] = useState<MyCall[]>([]);
  const [error, setError] = useState<{ code: string; message: string } | null>(null);
  // What was sent and not yet answered by `queued`, oldest first.
  const pending = useRef<Pending[]>([]);

  useEffect(() => setCalls(load<MyCall[]>(CALLS_KEY, [])), []);
  useEffect(() => {
    if (calls.length) localStorage.setItem(CALLS_KEY, JSON.stringify(calls.slice(0, KEEP_CALLS)));
  }, [calls]);

  const update = (id: string, change: Partial<MyCall>) =>
    setCalls((list) => {
      const known = list.find((c) => c.id === id);
      if (known) return list.map((c) => (c.id === id ? { ...c, ...change } : c));
      const fresh: MyCall = { id, label: null, status: "queued", position: null, reason: null, ...change };
      return [fresh, ...list].slice(0, KEEP_CALLS);
    });

  const onOpen = useCallback((socket: WebSocket) => {
    const identity = load<{ user_id?: string; caller_token?: string }>(IDENTITY_KEY, {});
    pending.current = [];
    socket.send(JSON.stringify({ type: "hello", ...identity }));
  }, []);

  const onMessage = useCallback((data: string | ArrayBuffer) => {
    const frame = parseFrame(PttFrame, data);
    if (!frame) return;
    switch (frame.type) {
      case "ready":
        localStorage.setItem(
          IDENTITY_KEY,
          JSON.stringify({ user_id: frame.user_id, caller_token: frame.caller_token }),
        );
        setLimits(frame.limits);
        break;
      case "queued":
        setError(null);
        update(frame.id, {
          label: pending.current.shift() ?? null,
          status: "queued",
          position: frame.position,
        });
        break;
      case "position":
        update(frame.id, { position: frame.position });
        break;
      case "status":
        update(frame.id, {
          status: frame.status,
          reason: frame.reason ?? null,
          ...(frame.status === "queued" ? {} : { position: null }),
        });
        break;
      case "error":
        // A refused call-in will get no `queued`: forget what it said.
        if (REFUSALS.has(frame.error)) pending.current.shift();
        setError({ code: frame.error, message: frame.message });
        break;
    }
  }, []);

  const url = typeof window === "undefined" ? null : wsUrl(`/ws/ptt?channel=${encodeURIComponent(channel)}`);
  const socket = useSocket(url, { onOpen, onMessage });
  const ready = socket.state === "open" && limits !== null;

  const sendJson = (frame: object) => socket.send(JSON.stringify(frame));

  return {
    ready,
    connection: socket.state,
    limits,
    calls,
    error,
    clearError: () => setError(null),
    sendText(text: string): boolean {
      pending.current.push({ kind: "text", text });
      return sendJson({ type: "text", text });
    },
    startAudio(sampleRate: number): boolean {
      return sendJson({ type: "audio_start", encoding: "pcm_s16le", sample_rate: sampleRate });
    },
    sendAudio(pcm: Int16Array): boolean {
      // Little-endian on every platform browsers run on; the server reads s16le.
      return socket.send(pcm.buffer.slice(pcm.byteOffset, pcm.byteOffset + pcm.byteLength) as ArrayBuffer);
    },
    endAudio(secs: number): boolean {
      pending.current.push({ kind: "audio", secs });
      return sendJson({ type: "audio_end" });
    },
    cancel(id: string) {
      sendJson({ type: "cancel", id });
    },
  };
}
