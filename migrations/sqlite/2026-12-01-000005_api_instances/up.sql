-- One row per running API instance: its listener counts by channel (JSON text,
-- {"<channel>": {"stream": n, "broadcast": n}}), and when it last reported them (RFC 3339
-- text with six fractional digits, compared as text). SQLite serves one instance; the table
-- keeps both stores alike.
CREATE TABLE api_instances (
    id TEXT PRIMARY KEY NOT NULL,
    seen_at TEXT NOT NULL,
    listeners TEXT NOT NULL DEFAULT '{}'
);
