-- Additive to the seed: the call-in queue keeps the seed's `queue` table as it is (what it
-- has no column for lives in `meta`), a table of its own for the callers' recordings, and
-- indexes for the queries the queue runs all the time. The store writes `enqueued_at` with
-- microseconds in one fixed-width form (the column default has milliseconds only), so text
-- order is time order.

-- A recording per audio item, deleted `queue.audio_retention_hours` after the item ends
-- (and with the item, if that is ever deleted).
CREATE TABLE queue_audio (
    queue_id TEXT PRIMARY KEY NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    sample_rate INTEGER NOT NULL,
    pcm BLOB NOT NULL,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- A channel's queued (or live) items in arrival order: the queue, its head, positions.
-- Queries must spell the expression the same way (json_extract(meta, '$.channel')) to use it.
CREATE INDEX queue_channel_status ON queue (json_extract(meta, '$.channel'), status, enqueued_at);
-- A caller's items by time: the per-caller limits, what a reconnecting caller is told.
CREATE INDEX queue_user_enqueued ON queue (user_id, enqueued_at);
-- The expiry sweep, over every channel; only the waiting items, which stay few.
CREATE INDEX queue_queued_enqueued ON queue (enqueued_at) WHERE status = 'queued';
