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

    diesel::allow_tables_to_appear_in_same_query!(channel, schedule);
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

    diesel::allow_tables_to_appear_in_same_query!(channel, schedule);
}
