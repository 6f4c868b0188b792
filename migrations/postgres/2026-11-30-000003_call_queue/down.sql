DROP INDEX queue_queued_enqueued;
DROP INDEX queue_user_enqueued;
DROP INDEX queue_channel_status;
DROP TABLE queue_audio;
