-- Additive to the seed: one schedule row per channel and hour, so seeding the default
-- schedule is idempotent even when two processes start at once, and an hour can be upserted.
CREATE UNIQUE INDEX schedule_channel_hour ON schedule (channel_id, hour);
