-- The seed's schema in SQLite's types: UUIDs as hyphenated TEXT, timestamps as ISO-8601
-- TEXT in UTC, JSONB as TEXT holding JSON. Names, nullability, checks and defaults match.
CREATE TABLE channel (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    live BOOLEAN DEFAULT 1,
    started_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE schedule (
    id TEXT PRIMARY KEY NOT NULL,
    channel_id TEXT REFERENCES channel(id) ON DELETE CASCADE,
    hour INTEGER CHECK (hour >= 0 AND hour <= 23),
    block TEXT CHECK (block IN ('OP', 'NEWS', 'QANDA', 'MUSIC', 'TOPIC_A', 'JINGLE')) NOT NULL,
    prompt TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE queue (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT,
    kind TEXT CHECK (kind IN ('audio', 'text', 'phone')) NOT NULL,
    text TEXT,
    meta TEXT CHECK (meta IS NULL OR json_valid(meta)),
    enqueued_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status TEXT CHECK (status IN ('queued', 'live', 'done', 'dropped')) DEFAULT 'queued'
);
