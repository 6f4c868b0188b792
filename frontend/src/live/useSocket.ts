"use client";
// A WebSocket that comes back by itself: after a drop (Cloud Run ends every WebSocket within
// an hour, a host restart, a flaky network) it reconnects with a growing, jittered delay
// (1 s up to 30 s), and from the first frame on again at 1 s.
import { useEffect, useRef, useState } from "react";

export type SocketState = "connecting" | "open" | "closed";

export interface SocketHandlers {
  /** Called on every (re)connect: the place to send a greeting. */
  onOpen?: (socket: WebSocket) => void;
  onMessage: (data: string | ArrayBuffer) => void;
}

export function useSocket(url: string | null, handlers: SocketHandlers) {
  const [state, setState] = useState<SocketState>("connecting");
  const socketRef = useRef<WebSocket | null>(null);
  const handlersRef = useRef(handlers);
  handlersRef.current = handlers;

  useEffect(() => {
    if (!url) return;
    let stopped = false;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;

    const connect = () => {
      setState("connecting");
      const socket = new WebSocket(url);
      socket.binaryType = "arraybuffer";
      socketRef.current = socket;
      socket.onopen = () => {
        setState("open");
        handlersRef.current.onOpen?.(socket);
      };
      socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
        attempt = 0;
        handlersRef.current.onMessage(event.data);
      };
      socket.onclose = () => {
        if (socketRef.current === socket) socketRef.current = null;
        if (stopped) return;
        setState("closed");
        const delay = Math.min(30_000, 1_000 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
        attempt += 1;
        timer = setTimeout(connect, delay);
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socketRef.current?.close(1000);
      socketRef.current = null;
    };
  }, [url]);

  /** Sends when open; false when the socket is not (the caller says so to the user). */
  const send = (data: string | ArrayBuffer): boolean => {
    const socket = socketRef.current;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(data);
    return true;
  };
  return { state, send };
}
