-- One row per running API instance (additive; the seed has no such table): its listener
-- counts by channel, {"<channel>": {"stream": n, "broadcast": n}}, and when it last reported
-- them. Rows not seen for a while are deleted by the next instance that reports.
CREATE TABLE api_instances (
    id UUID PRIMARY KEY,
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    listeners JSONB NOT NULL DEFAULT '{}'::jsonb
);
