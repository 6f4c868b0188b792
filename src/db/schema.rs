//! Diesel table definitions, one set per backend: the same tables, in each backend's types.

pub mod pg {
    diesel::table! {
        channel (id) {
            id -> Uuid,
            name -> Text,
            live -> Nullable<Bool>,
            started_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        schedule (id) {
            id -> Uuid,
            channel_id -> Nullable<Uuid>,
            hour -> Nullable<Int4>,
            block -> Text,
            prompt -> Nullable<Text>,
            created_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        queue (id) {
            id -> Uuid,
            user_id -> Nullable<Text>,
            kind -> Text,
            text -> Nullable<Text>,
            meta -> Nullable<Jsonb>,
            enqueued_at -> Nullable<Timestamptz>,
            status -> Nullable<Text>,
        }
    }

    diesel::table! {
        queue_audio (queue_id) {
            queue_id -> Uuid,
            sample_rate -> Int4,
            pcm -> Bytea,
            created_at -> Nullable<Timestamptz>,
        }
    }

    diesel::allow_tables_to_appear_in_same_query!(channel, schedule, queue, queue_audio);
}

pub mod sqlite {
    diesel::table! {
        channel (id) {
            id -> Text,
            name -> Text,
            live -> Nullable<Bool>,
            started_at -> Nullable<TimestamptzSqlite>,
        }
    }

    diesel::table! {
        schedule (id) {
            id -> Text,
            channel_id -> Nullable<Text>,
            hour -> Nullable<Integer>,
            block -> Text,
            prompt -> Nullable<Text>,
            created_at -> Nullable<TimestamptzSqlite>,
        }
    }

    diesel::table! {
        queue (id) {
            id -> Text,
            user_id -> Nullable<Text>,
            kind -> Text,
            text -> Nullable<Text>,
            meta -> Nullable<Text>,
            /// Text, not `TimestamptzSqlite`: the store writes it in one fixed-width form
            /// (`calls::stamp`) and orders and compares the text, which diesel's own
            /// timestamp text (variable width) would not allow.
            enqueued_at -> Nullable<Text>,
            status -> Nullable<Text>,
        }
    }

    diesel::table! {
        queue_audio (queue_id) {
            queue_id -> Text,
            sample_rate -> Integer,
            pcm -> Binary,
            created_at -> Nullable<TimestamptzSqlite>,
        }
    }

    diesel::allow_tables_to_appear_in_same_query!(channel, schedule, queue, queue_audio);
}
