"use client";
// Data-fetching hooks (SWR): each caches by URL and refreshes itself, so pages never poll by
// hand. Live changes arrive over the WebSockets (src/live) and revalidate these keys.
import useSWR, { type SWRConfiguration } from "swr";
import { request } from "./client";
import { Channels, Health, QueueList, Schedule, type ItemStatus } from "./schemas";

const enc = encodeURIComponent;

export const keys = {
  channels: "/v1/channels",
  schedule: (channel: string) => `/v1/channels/${enc(channel)}/schedule`,
  queue: (channel: string) => `/v1/queue?channel=${enc(channel)}&limit=200`,
  studioHealth: "/v1/studio/health",
};

export function useChannels() {
  return useSWR(keys.channels, (path: string) => request(path, Channels));
}

/** A channel's day; refreshed at least every minute so the current hour moves on. */
export function useSchedule(channel: string, config?: SWRConfiguration) {
  return useSWR(keys.schedule(channel), (path: string) => request(path, Schedule), {
    refreshInterval: 60_000,
    ...config,
  });
}

/** The operators' view of a channel's queue (admin token). */
export function useQueue(channel: string, token: string | null) {
  return useSWR(
    token ? [keys.queue(channel), token] : null,
    ([path, t]: [string, string]) => request(path, QueueList, { token: t }),
    { refreshInterval: 10_000 },
  );
}

/** `/v1/studio/health` (admin token): the host link, store and publishers. */
export function useStudioHealth(token: string | null) {
  return useSWR(
    token ? [keys.studioHealth, token] : null,
    ([path, t]: [string, string]) => request(path, Health, { token: t }),
    { refreshInterval: 5_000 },
  );
}

export const WAITING: readonly ItemStatus[] = ["queued", "live"];
