// The station's HTTP and WebSocket shapes (docs/api.md), as zod schemas. Every answer and
// every frame the app reads is parsed through one of these, so a change in the API that the
// app does not follow fails loudly (an error on the page and in the browser tests) instead
// of rendering `undefined`. The TypeScript types are inferred from them.
import { z } from "zod";

export const BLOCKS = ["OP", "NEWS", "QANDA", "MUSIC", "TOPIC_A", "JINGLE"] as const;
export const Block = z.enum(BLOCKS);
export type Block = z.infer<typeof Block>;

export const ErrorBody = z.object({ error: z.string(), message: z.string() });
export type ErrorBody = z.infer<typeof ErrorBody>;

export const Segment = z.object({
  id: z.string(),
  block: Block.nullable(),
  topic: z.string().nullable(),
  text: z.string(),
  duration_ms: z.number(),
  started_at: z.string().nullable(),
});
export type Segment = z.infer<typeof Segment>;

export const Publisher = z.object({
  state: z.enum(["connecting", "connected", "retrying", "stopped"]),
  room: z.string(),
  identity: z.string(),
  since: z.string(),
  sessions: z.number(),
  failures: z.number(),
  last_error: z.string().nullable(),
});
export type Publisher = z.infer<typeof Publisher>;

export const Playout = z.object({
  frames: z.number(),
  late_ticks: z.number(),
  skipped_frames: z.number(),
  lateness_ms: z.object({ p50: z.number(), p99: z.number(), max: z.number() }),
});

export const OnAir = z.object({
  channel: z.string(),
  block: Block.nullable(),
  topic: z.string().nullable(),
  segment: Segment.nullable(),
  next: z.array(Segment),
  writer: z.string(),
  voice: z.string(),
  ready_ahead_secs: z.number(),
  dead_air_secs: z.number(),
  playout: Playout,
  livekit: Publisher.optional(),
});
export type OnAir = z.infer<typeof OnAir>;

export const Speaker = z.enum(["host", "caller"]);
export type Speaker = z.infer<typeof Speaker>;

export const Caption = z.object({
  segment_id: z.string(),
  index: z.number(),
  text: z.string(),
  at: z.string(),
  speaker: Speaker,
});
export type Caption = z.infer<typeof Caption>;

export const Listeners = z.object({ stream: z.number(), broadcast: z.number() });
export type Listeners = z.infer<typeof Listeners>;

export const QueueSummary = z.object({ length: z.number(), ids: z.array(z.string()) });

/** Frames of `/ws/broadcast` (server → client). */
export const BroadcastFrame = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("snapshot"),
    channel: z.string(),
    host_connected: z.boolean(),
    resync: z.boolean(),
    listeners: Listeners,
    on_air: OnAir.nullable(),
    captions: z.array(Caption),
    queue: QueueSummary,
  }),
  z.object({ type: z.literal("segment_started"), channel: z.string(), segment: Segment }),
  Caption.extend({ type: z.literal("caption"), channel: z.string() }),
  z.object({
    type: z.literal("segment_ended"),
    channel: z.string(),
    segment_id: z.string(),
    interrupted: z.boolean(),
  }),
  z.object({ type: z.literal("on_air"), state: OnAir }),
  QueueSummary.extend({ type: z.literal("queue"), channel: z.string() }),
  z.object({ type: z.literal("listeners"), channel: z.string(), listeners: Listeners }),
  z.object({ type: z.literal("error"), error: z.string(), message: z.string() }),
]);
export type BroadcastFrame = z.infer<typeof BroadcastFrame>;

export const ItemStatus = z.enum(["queued", "live", "done", "dropped"]);
export type ItemStatus = z.infer<typeof ItemStatus>;

export const PttLimits = z.object({
  max_text_chars: z.number(),
  max_audio_secs: z.number(),
  max_frame_bytes: z.number(),
  sample_rates: z.array(z.number()),
  max_waiting: z.number(),
  max_per_hour: z.number(),
});
export type PttLimits = z.infer<typeof PttLimits>;

/** Frames of `/ws/ptt` (server → client). */
export const PttFrame = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("ready"),
    user_id: z.string(),
    caller_token: z.string(),
    limits: PttLimits,
  }),
  z.object({ type: z.literal("queued"), id: z.string(), position: z.number() }),
  z.object({ type: z.literal("position"), id: z.string(), position: z.number() }),
  z.object({
    type: z.literal("status"),
    id: z.string(),
    status: ItemStatus,
    reason: z.string().nullish(),
  }),
  z.object({ type: z.literal("error"), error: z.string(), message: z.string() }),
]);
export type PttFrame = z.infer<typeof PttFrame>;

export const Channels = z.object({
  channels: z.array(z.object({ name: z.string(), live: z.boolean() })),
  /** Whether `POST /v1/room/join` gives LiveKit tokens. */
  livekit: z.boolean(),
});

export const ScheduleHour = z.object({
  hour: z.number().int().min(0).max(23),
  block: Block,
  prompt: z.string().nullable(),
});
export type ScheduleHour = z.infer<typeof ScheduleHour>;

export const Schedule = z.object({
  channel: z.string(),
  timezone: z.string(),
  current_hour: z.number(),
  hours: z.array(ScheduleHour),
  host_updated: z.boolean().optional(),
});
export type Schedule = z.infer<typeof Schedule>;

export const RoomJoin = z.object({
  token: z.string(),
  url: z.string(),
  room: z.string(),
  identity: z.string(),
  expires_at: z.string(),
});
export type RoomJoin = z.infer<typeof RoomJoin>;

export const QueueItem = z.object({
  id: z.string(),
  user_id: z.string(),
  channel: z.string(),
  kind: z.enum(["text", "audio"]),
  text: z.string().nullable(),
  status: ItemStatus,
  enqueued_at: z.string(),
  priority: z.number(),
  duration_ms: z.number().nullable(),
  sample_rate: z.number().nullable(),
  transcript: z.string().nullable(),
  reason: z.string().nullable(),
  requeues: z.number(),
  ended_at: z.string().nullable(),
});
export type QueueItem = z.infer<typeof QueueItem>;

export const QueueList = z.object({ channel: z.string(), items: z.array(QueueItem) });
export const TakeNext = z.object({ taken: QueueItem });

export const Enqueued = z.object({
  id: z.string(),
  position: z.number(),
  user_id: z.string(),
  caller_token: z.string(),
});

export const SpeakAccepted = z.object({
  segment_id: z.string(),
  channel: z.string(),
  mode: z.enum(["next", "now"]),
  queued_ahead: z.number(),
});

export const Script = z.object({
  channel: z.string(),
  block: Block,
  topic: z.string().nullable(),
  text: z.string(),
  writer: z.string(),
});
export type Script = z.infer<typeof Script>;

const PublisherByChannel = z.record(z.string(), Publisher.extend({ last_error: z.string().nullable() }));

export const Health = z.object({
  status: z.string(),
  role: z.string(),
  version: z.string(),
  store: z.object({ backend: z.string(), ok: z.boolean(), error: z.string().nullish() }),
  host_link: z.object({
    transport: z.string(),
    state: z.string(),
    since: z.string().nullable(),
    connects: z.number(),
    error: z.string().nullish(),
  }),
  broadcast_clients: z.number(),
  stream_listeners: z.record(z.string(), z.number()),
  livekit: PublisherByChannel,
  playout: z.record(z.string(), Playout),
});
export type Health = z.infer<typeof Health>;
