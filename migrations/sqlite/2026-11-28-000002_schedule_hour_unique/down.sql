DROP INDEX schedule_channel_hour;
