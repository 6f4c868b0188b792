"use client";
// Play/stop and volume. Playing joins the channel's LiveKit room (listen only, a token from
// `POST /v1/room/join`); when the station has no LiveKit, or joining fails, it plays the
// plain HTTP Ogg/Opus stream instead. It says which one is in use and how it is doing, and
// tells the page how far the audio lags behind the air (the HTTP stream buffers), so the
// captions can wait for it.
import dynamic from "next/dynamic";
import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, request } from "@/api/client";
import { RoomJoin } from "@/api/schemas";
import { useI18n } from "@/i18n";
import type { RoomState } from "./LiveKitAudio";

const LiveKitAudio = dynamic(() => import("./LiveKitAudio"), { ssr: false });

type Mode =
  | { kind: "idle" }
  | { kind: "joining" }
  | { kind: "livekit"; join: RoomJoin }
  | { kind: "stream"; why: "no_livekit" | "livekit_failed" };

type StreamState = "connecting" | "buffering" | "playing" | "reconnecting";

const VOLUME_KEY = "radio24.volume";
/** How long a LiveKit join may take before the HTTP stream is used instead. */
const JOIN_PATIENCE_MS = 12_000;

export function Player({
  channel,
  livekit,
  onLagChange,
}: {
  channel: string;
  /** Whether the station gives LiveKit tokens; without, play goes straight to the stream. */
  livekit: boolean;
  onLagChange: (ms: number) => void;
}) {
  const { t } = useI18n();
  const [mode, setMode] = useState<Mode>({ kind: "idle" });
  const [volume, setVolume] = useState(0.8);
  const [streamState, setStreamState] = useState<StreamState>("connecting");
  const [lkState, setLkState] = useState<RoomState>("connecting");
  const audio = useRef<HTMLAudioElement>(null);

  useEffect(() => {
    const saved = Number(localStorage.getItem(VOLUME_KEY));
    if (saved >= 0 && saved <= 1 && localStorage.getItem(VOLUME_KEY) !== null) setVolume(saved);
  }, []);
  useEffect(() => {
    localStorage.setItem(VOLUME_KEY, String(volume));
    if (audio.current) audio.current.volume = volume;
  }, [volume]);

  const streamUrl = `/v1/channels/${encodeURIComponent(channel)}/stream`;

  const volumeNow = useRef(volume);
  volumeNow.current = volume;

  const startStream = useCallback(() => {
    const element = audio.current;
    if (!element) return;
    element.src = streamUrl;
    element.volume = volumeNow.current;
    element.play().catch(() => undefined);
  }, [streamUrl]);

  const stopStream = useCallback(() => {
    const element = audio.current;
    if (!element) return;
    element.pause();
    // Closing the connection: a paused live stream would keep downloading and fall behind.
    element.removeAttribute("src");
    element.load();
  }, []);

  const fallBack = useCallback((why: "no_livekit" | "livekit_failed") => {
    setStreamState("connecting");
    setMode({ kind: "stream", why });
  }, []);

  // Joining failed, or the room went away: the HTTP stream takes over.
  const onLiveKitFailed = useCallback(() => {
    setStreamState("connecting");
    setMode((m) => (m.kind === "livekit" ? { kind: "stream", why: "livekit_failed" } : m));
  }, []);

  const play = async () => {
    // Unlock audio inside the click (autoplay rules): the element plays once it has a source.
    audio.current?.play().catch(() => undefined);
    if (!livekit) {
      fallBack("no_livekit");
      return;
    }
    setMode({ kind: "joining" });
    try {
      const join = await request("/v1/room/join", RoomJoin, { method: "POST", body: { channel } });
      setLkState("connecting");
      setMode({ kind: "livekit", join });
    } catch (e) {
      fallBack(e instanceof ApiError && e.code === "livekit_not_configured" ? "no_livekit" : "livekit_failed");
    }
  };

  const stop = () => {
    stopStream();
    setMode({ kind: "idle" });
    onLagChange(0);
  };

  // A LiveKit room that does not connect in time is given up for the stream.
  useEffect(() => {
    if (mode.kind !== "livekit" || lkState === "connected") return;
    const timer = setTimeout(() => fallBack("livekit_failed"), JOIN_PATIENCE_MS);
    return () => clearTimeout(timer);
  }, [mode, lkState, fallBack]);

  // The HTTP stream: how it is doing, how far behind the air it plays, and coming back when
  // it ends (a host restart ends the stream; Cloud Run ends requests within the hour).
  useEffect(() => {
    const element = audio.current;
    if (!element || mode.kind !== "stream") return;
    if (!element.getAttribute("src")) startStream();
    let retry: ReturnType<typeof setTimeout> | undefined;
    const restart = () => {
      setStreamState("reconnecting");
      clearTimeout(retry);
      retry = setTimeout(startStream, 2_000);
    };
    const onPlaying = () => setStreamState("playing");
    const onWaiting = () => setStreamState("buffering");
    const onTime = () => {
      // The last audio received is what is on air now (the stream is live to within a
      // page), so what is buffered ahead of the playhead is how far behind the air it plays.
      const { buffered } = element;
      if (!buffered.length) return;
      const lag = (buffered.end(buffered.length - 1) - element.currentTime) * 1000;
      onLagChange(Math.max(0, Math.min(lag, 30_000)));
    };
    element.addEventListener("playing", onPlaying);
    element.addEventListener("waiting", onWaiting);
    element.addEventListener("timeupdate", onTime);
    element.addEventListener("ended", restart);
    element.addEventListener("error", restart);
    return () => {
      clearTimeout(retry);
      element.removeEventListener("playing", onPlaying);
      element.removeEventListener("waiting", onWaiting);
      element.removeEventListener("timeupdate", onTime);
      element.removeEventListener("ended", restart);
      element.removeEventListener("error", restart);
    };
  }, [mode.kind, startStream, onLagChange]);

  const playing = mode.kind !== "idle";
  let transport: string;
  let tone: "ok" | "warn" | "idle" = "idle";
  switch (mode.kind) {
    case "idle":
      transport = t("player.stopped");
      break;
    case "joining":
      transport = t("player.joining");
      tone = "warn";
      break;
    case "livekit":
      transport = t("player.livekit", { state: t(`player.lk.${lkState}`) });
      tone = lkState === "connected" ? "ok" : "warn";
      break;
    case "stream":
      transport = t("player.stream", { state: t(`player.stream.${streamState}`) });
      tone = streamState === "playing" ? "ok" : "warn";
      break;
  }

  return (
    <div className="player">
      <button
        type="button"
        className={`play-button${playing ? " is-playing" : ""}`}
        data-testid="play"
        aria-pressed={playing}
        onClick={playing ? stop : play}
      >
        <span className="play-icon" aria-hidden="true">{playing ? "■" : "▶"}</span>
        <span>{playing ? t("player.stop") : t("player.play")}</span>
      </button>
      <div className="player-side">
        <p className="transport" data-testid="transport" data-mode={mode.kind} aria-live="polite">
          <span className={`dot tone-${tone}`} aria-hidden="true" /> {transport}
        </p>
        {mode.kind === "stream" && (
          <p className="muted small">{t(mode.why === "no_livekit" ? "player.why.noLivekit" : "player.why.failed")}</p>
        )}
        <label className="volume">
          <span>{t("player.volume")}</span>
          <input
            type="range"
            min={0}
            max={1}
            step={0.05}
            value={volume}
            onChange={(e) => setVolume(Number(e.target.value))}
            aria-valuetext={`${Math.round(volume * 100)}%`}
          />
        </label>
      </div>
      {/* The HTTP stream's element: always there, so a click can unlock it for autoplay. */}
      <audio ref={audio} data-testid="stream-audio" preload="none" />
      {mode.kind === "livekit" && (
        <LiveKitAudio
          join={mode.join}
          volume={volume}
          allowAudioLabel={t("player.allowAudio")}
          onState={setLkState}
          onFailed={onLiveKitFailed}
        />
      )}
    </div>
  );
}
