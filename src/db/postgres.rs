//! PostgreSQL adapter: diesel-async's `AsyncPgConnection` (pure Rust, no libpq) in a
//! deadpool pool, and migrations from `migrations/postgres` applied under an advisory lock
//! so two processes never migrate at once.
//!
//! The call-in queue: the queries on `meta` are SQL written out (`sql_query`), so they spell
//! `meta->>'channel'` as the index does (diesel's JSON operators bind the key as a parameter,
//! which a generic plan cannot match to an expression index); the rest is the DSL. Items are
//! claimed with `FOR UPDATE SKIP LOCKED`, and edited under their row lock.
//!
//! Several API instances share the database: each has a row in `api_instances` (its
//! listener counts, and when it was last seen), announces its queue changes with
//! `pg_notify`, and hears the others' on one listening connection of its own
//! ([`super::pg_listen`]).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::calls::{self, CallColumns, Meta, StoredCall};
use super::instances::{self, ChannelListeners, OtherInstances, Payload, QueueSignal};
use super::schema::pg::{channel, queue, queue_audio, schedule};
use super::{
    CallAudio, CallItem, CallStatus, CallerLimits, Channel, EnqueueRefusal, NewCall, Result,
    ScheduleEntry, SlotEdit, Store, StoreError, map_write_error, parse_block, parse_channel_name,
    parse_hour,
};
use crate::domain::{Block, ChannelName};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Advisory lock key held while migrating ("radio24" in ASCII).
const MIGRATION_LOCK: i64 = 0x0072_6164_696f_3234;

type ChannelRow = (Uuid, String, Option<bool>, Option<DateTime<Utc>>);
type ScheduleRow = (Uuid, Option<Uuid>, Option<i32>, String, Option<String>);

const CHANNEL_COLUMNS: (
    channel::id,
    channel::name,
    channel::live,
    channel::started_at,
) = (
    channel::id,
    channel::name,
    channel::live,
    channel::started_at,
);
const SCHEDULE_COLUMNS: (
    schedule::id,
    schedule::channel_id,
    schedule::hour,
    schedule::block,
    schedule::prompt,
) = (
    schedule::id,
    schedule::channel_id,
    schedule::hour,
    schedule::block,
    schedule::prompt,
);

fn to_channel((id, name, live, started_at): ChannelRow) -> Result<Channel> {
    Ok(Channel {
        id,
        name: parse_channel_name(&name)?,
        live: live.unwrap_or(true),
        started_at,
    })
}

fn to_entry((id, channel_id, hour, block, prompt): ScheduleRow) -> Result<ScheduleEntry> {
    Ok(ScheduleEntry {
        id,
        channel_id: channel_id
            .ok_or_else(|| StoreError::Corrupt("schedule.channel_id NULL".into()))?,
        hour: parse_hour(hour)?,
        block: parse_block(&block)?,
        prompt,
    })
}

/// A `queue` row, read by the DSL (`as_select`) and by `sql_query` (by name) alike.
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = queue, check_for_backend(diesel::pg::Pg))]
struct CallRow {
    id: Uuid,
    user_id: Option<String>,
    kind: String,
    text: Option<String>,
    meta: Option<serde_json::Value>,
    enqueued_at: Option<DateTime<Utc>>,
    status: Option<String>,
}

impl CallRow {
    fn stored(self) -> Result<StoredCall> {
        StoredCall::try_from(CallColumns {
            id: self.id,
            user_id: self.user_id,
            kind: self.kind,
            text: self.text,
            meta: self.meta,
            enqueued_at: self.enqueued_at,
            status: self.status,
        })
    }
}

fn to_items(rows: Vec<CallRow>) -> Result<Vec<CallItem>> {
    rows.into_iter()
        .map(|row| Ok(row.stored()?.item()))
        .collect()
}

/// [`CallRow`]'s columns, for `sql_query`.
const CALL_COLUMNS: &str = "id, user_id, kind, text, meta, enqueued_at, status";

/// The queue's order ([`Store`]'s): priority, highest first, then arrival, then id. Priority
/// is compared as JSON, so a row holding something other than a number there sorts somewhere
/// (and is reported `Corrupt` when read) rather than failing the query with a cast error.
const QUEUE_ORDER: &str = "COALESCE(meta->'priority', '0'::jsonb) DESC, enqueued_at, id";

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct CallerCounts {
    #[diesel(sql_type = BigInt)]
    waiting: i64,
    #[diesel(sql_type = BigInt)]
    this_hour: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Writes back what [`StoredCall`]'s edits change: the status and meta.
async fn write_back(conn: &mut AsyncPgConnection, call: &StoredCall) -> Result<()> {
    diesel::update(queue::table.find(call.id))
        .set((
            queue::status.eq(call.status.as_str()),
            queue::meta.eq(call.meta.to_json()?),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Signals the queue feed may hold back for a slow subscriber before it hears
/// [`QueueSignal::Missed`] instead.
const QUEUE_SIGNALS: usize = 1024;

#[derive(QueryableByName)]
struct InstanceRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    listeners: serde_json::Value,
}

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    url: SecretString,
    acquire_timeout: Duration,
    instance: Uuid,
    /// The queue feed's sender, once someone subscribed (its task ends with the last
    /// subscriber).
    signals: Mutex<Option<tokio::sync::broadcast::Sender<QueueSignal>>>,
}

impl PgStore {
    /// Opens a pool and checks that the server answers.
    pub async fn connect(
        url: &SecretString,
        max_connections: usize,
        acquire_timeout: Duration,
    ) -> Result<Self> {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url.expose_secret());
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the pool: {e}")))?;
        let store = Self {
            pool,
            url: url.clone(),
            acquire_timeout,
            instance: Uuid::new_v4(),
            signals: Mutex::new(None),
        };
        store.ping().await?;
        Ok(store)
    }

    async fn conn(&self) -> Result<Object<AsyncPgConnection>> {
        match tokio::time::timeout(self.acquire_timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no connection within {:?}",
                self.acquire_timeout
            ))),
        }
    }

    /// Reads one item under its row lock, lets `edit` change it (`false`: leave it as it is,
    /// and answer `None`), and writes it back: a read-modify-write of `meta` in Rust, where
    /// the same edits are made for both adapters.
    async fn modify(
        &self,
        id: Uuid,
        edit: impl FnOnce(&mut StoredCall) -> bool + Send + 'static,
    ) -> Result<Option<CallItem>> {
        let mut conn = self.conn().await?;
        conn.transaction(async move |conn| {
            let row: Option<CallRow> = queue::table
                .find(id)
                .select(CallRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut call = row.stored()?;
            if !edit(&mut call) {
                return Ok(None);
            }
            write_back(conn, &call).await?;
            Ok(Some(call.item()))
        })
        .await
    }

    /// Applies pending migrations under an advisory lock; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let establish = || async {
            AsyncPgConnection::establish(self.url.expose_secret())
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        let mut lock_conn = establish().await?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut lock_conn)
            .await?;
        let conn = establish().await?;
        // The harness blocks on the runtime (block_in_place): run it on a blocking thread so
        // it works on any runtime flavour.
        let applied = tokio::task::spawn_blocking(move || {
            let mut harness = AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                .map_err(|e| StoreError::Migration(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Migration(format!("migration task failed: {e}")))?;
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut lock_conn)
            .await?;
        let applied = applied?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL migrations");
        }
        Ok(applied)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(channel = %name))]
    async fn ensure_channel(&self, name: &ChannelName) -> Result<(Channel, bool)> {
        let mut conn = self.conn().await?;
        let inserted: Option<ChannelRow> = diesel::insert_into(channel::table)
            .values(channel::name.eq(name.as_str()))
            .on_conflict(channel::name)
            .do_nothing()
            .returning(CHANNEL_COLUMNS)
            .get_result(&mut conn)
            .await
            .optional()?;
        if let Some(row) = inserted {
            return Ok((to_channel(row)?, true));
        }
        let row: ChannelRow = channel::table
            .filter(channel::name.eq(name.as_str()))
            .select(CHANNEL_COLUMNS)
            .first(&mut conn)
            .await?;
        Ok((to_channel(row)?, false))
    }

    async fn channel_by_name(&self, name: &ChannelName) -> Result<Option<Channel>> {
        let mut conn = self.conn().await?;
        let row: Option<ChannelRow> = channel::table
            .filter(channel::name.eq(name.as_str()))
            .select(CHANNEL_COLUMNS)
            .first(&mut conn)
            .await
            .optional()?;
        row.map(to_channel).transpose()
    }

    async fn list_channels(&self) -> Result<Vec<Channel>> {
        let mut conn = self.conn().await?;
        let rows: Vec<ChannelRow> = channel::table
            .order(channel::name)
            .select(CHANNEL_COLUMNS)
            .load(&mut conn)
            .await?;
        rows.into_iter().map(to_channel).collect()
    }

    async fn schedule(&self, channel_id: Uuid) -> Result<Vec<ScheduleEntry>> {
        let mut conn = self.conn().await?;
        let rows: Vec<ScheduleRow> = schedule::table
            .filter(schedule::channel_id.eq(channel_id))
            .order(schedule::hour)
            .select(SCHEDULE_COLUMNS)
            .load(&mut conn)
            .await?;
        rows.into_iter().map(to_entry).collect()
    }

    #[tracing::instrument(skip_all, fields(%channel_id))]
    async fn seed_schedule(&self, channel_id: Uuid, blocks: &[Block]) -> Result<usize> {
        let mut conn = self.conn().await?;
        let existing: i64 = schedule::table
            .filter(schedule::channel_id.eq(channel_id))
            .count()
            .get_result(&mut conn)
            .await?;
        if existing > 0 {
            return Ok(0);
        }
        let rows: Vec<_> = blocks
            .iter()
            .enumerate()
            .map(|(hour, block)| {
                (
                    schedule::channel_id.eq(Some(channel_id)),
                    schedule::hour.eq(Some(hour as i32)),
                    schedule::block.eq(block.as_str()),
                )
            })
            .collect();
        // Another process seeding at the same moment inserts the same hours: skip those.
        let inserted = diesel::insert_into(schedule::table)
            .values(&rows)
            .on_conflict((schedule::channel_id, schedule::hour))
            .do_nothing()
            .execute(&mut conn)
            .await?;
        Ok(inserted)
    }

    async fn set_schedule_slots(
        &self,
        channel_id: Uuid,
        slots: Vec<SlotEdit>,
    ) -> Result<Vec<ScheduleEntry>> {
        let mut conn = self.conn().await?;
        conn.transaction(async move |conn| {
            let mut written = Vec::with_capacity(slots.len());
            for slot in &slots {
                let row: ScheduleRow = diesel::insert_into(schedule::table)
                    .values((
                        schedule::channel_id.eq(Some(channel_id)),
                        schedule::hour.eq(Some(i32::from(slot.hour))),
                        schedule::block.eq(slot.block.as_str()),
                        schedule::prompt.eq(slot.prompt.as_deref()),
                    ))
                    .on_conflict((schedule::channel_id, schedule::hour))
                    .do_update()
                    .set((
                        schedule::block.eq(slot.block.as_str()),
                        schedule::prompt.eq(slot.prompt.as_deref()),
                    ))
                    .returning(SCHEDULE_COLUMNS)
                    .get_result(conn)
                    .await
                    .map_err(|e| map_write_error(e, "schedule slot"))?;
                written.push(to_entry(row)?);
            }
            Ok(written)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(channel = %call.channel))]
    async fn enqueue_call(
        &self,
        call: NewCall,
        limits: CallerLimits,
    ) -> Result<std::result::Result<(CallItem, u32), EnqueueRefusal>> {
        let meta = Meta::new(&call).to_json()?;
        let kind = call.kind();
        let NewCall {
            channel,
            user_id,
            text,
            audio,
        } = call;
        let audio = audio
            .map(|a| Ok::<_, StoreError>((calls::rate_column(&a)?, a.pcm)))
            .transpose()?;
        let mut conn = self.conn().await?;
        conn.transaction(async move |conn| {
            // One enqueue at a time per caller and channel: the advisory lock is held to the
            // end of the transaction, and the counts below (a statement of their own, so a
            // snapshot taken once the lock is held) see every item an earlier enqueue of this
            // caller's committed; two sockets cannot both slip under a limit. Chosen over
            // SERIALIZABLE, which would fail the losers of a race and need a retry loop: the
            // lock makes them wait instead, and only for the same caller. The two-key form
            // keeps clear of the migration lock's one-key space; a hash collision only makes
            // two callers wait for each other. clock_timestamp() is read after the lock is
            // held (the FROM runs first): one time for the hour's window and the new row,
            // in the order the caller's enqueues were serialised.
            let Now { now } = diesel::sql_query(
                "SELECT clock_timestamp() AS now \
                 FROM pg_advisory_xact_lock(hashtext($1), hashtext($2))",
            )
            .bind::<Text, _>(channel.as_str())
            .bind::<Text, _>(&user_id)
            .get_result(conn)
            .await?;
            let counts: CallerCounts = diesel::sql_query(
                "SELECT count(*) FILTER (WHERE status = 'queued') AS waiting, \
                        count(*) FILTER (WHERE enqueued_at > $3) AS this_hour \
                 FROM queue WHERE user_id = $1 AND meta->>'channel' = $2",
            )
            .bind::<Text, _>(&user_id)
            .bind::<Text, _>(channel.as_str())
            .bind::<Timestamptz, _>(now - chrono::TimeDelta::hours(1))
            .get_result(conn)
            .await?;
            if counts.waiting >= i64::from(limits.max_waiting) {
                return Ok(Err(EnqueueRefusal::TooManyWaiting));
            }
            if counts.this_hour >= i64::from(limits.max_per_hour) {
                return Ok(Err(EnqueueRefusal::TooManyThisHour));
            }
            let row: CallRow = diesel::insert_into(queue::table)
                .values((
                    queue::id.eq(Uuid::new_v4()),
                    queue::user_id.eq(Some(&user_id)),
                    queue::kind.eq(kind.as_str()),
                    queue::text.eq(text.as_deref()),
                    queue::meta.eq(Some(meta)),
                    queue::enqueued_at.eq(Some(now)),
                    queue::status.eq(Some(CallStatus::Queued.as_str())),
                ))
                .returning(CallRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| map_write_error(e, "call"))?;
            let stored = row.stored()?;
            if let Some((sample_rate, pcm)) = &audio {
                diesel::insert_into(queue_audio::table)
                    .values((
                        queue_audio::queue_id.eq(stored.id),
                        queue_audio::sample_rate.eq(sample_rate),
                        queue_audio::pcm.eq(pcm),
                    ))
                    .execute(conn)
                    .await
                    .map_err(|e| map_write_error(e, "call audio"))?;
            }
            let Count { n } = diesel::sql_query(
                "SELECT count(*) AS n FROM queue \
                 WHERE meta->>'channel' = $1 AND status = 'queued' \
                   AND (COALESCE(meta->'priority', '0'::jsonb) > to_jsonb($2::int4) \
                        OR (COALESCE(meta->'priority', '0'::jsonb) = to_jsonb($2::int4) \
                            AND (enqueued_at, id) < ($3, $4)))",
            )
            .bind::<Text, _>(channel.as_str())
            .bind::<Integer, _>(stored.meta.priority)
            .bind::<Timestamptz, _>(stored.enqueued_at)
            .bind::<diesel::sql_types::Uuid, _>(stored.id)
            .get_result(conn)
            .await?;
            let position = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
            Ok(Ok((stored.item(), position)))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(channel = %channel))]
    async fn claim_next_call(&self, channel: &ChannelName) -> Result<Option<CallItem>> {
        let mut conn = self.conn().await?;
        // One statement: the head is locked as it is chosen, and a head another claim holds
        // is skipped rather than waited for (that claim takes it). A head claimed and
        // committed meanwhile is re-checked against `status = 'queued'` and passed over.
        let row: Option<CallRow> = diesel::sql_query(format!(
            "UPDATE queue SET status = 'live' \
             WHERE status = 'queued' AND id = ( \
                 SELECT id FROM queue WHERE meta->>'channel' = $1 AND status = 'queued' \
                 ORDER BY {QUEUE_ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {CALL_COLUMNS}"
        ))
        .bind::<Text, _>(channel.as_str())
        .get_result(&mut conn)
        .await
        .optional()?;
        row.map(|row| Ok(row.stored()?.item())).transpose()
    }

    async fn call(&self, id: Uuid) -> Result<Option<CallItem>> {
        let mut conn = self.conn().await?;
        let row: Option<CallRow> = queue::table
            .find(id)
            .select(CallRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        row.map(|row| Ok(row.stored()?.item())).transpose()
    }

    async fn call_audio(&self, id: Uuid) -> Result<Option<CallAudio>> {
        let mut conn = self.conn().await?;
        let row: Option<(i32, Vec<u8>)> = queue_audio::table
            .find(id)
            .select((queue_audio::sample_rate, queue_audio::pcm))
            .first(&mut conn)
            .await
            .optional()?;
        row.map(|(rate, pcm)| calls::audio_from_columns(id, rate, pcm))
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(%id, to = to.as_str()))]
    async fn set_call_status(
        &self,
        id: Uuid,
        from: &[CallStatus],
        to: CallStatus,
        reason: Option<&str>,
    ) -> Result<Option<CallItem>> {
        let from = from.to_vec();
        let reason = reason.map(str::to_owned);
        let at = calls::now();
        self.modify(id, move |call| {
            call.change_status(&from, to, reason.as_deref(), at)
        })
        .await
    }

    async fn set_call_priority(&self, id: Uuid, priority: i32) -> Result<Option<CallItem>> {
        self.modify(id, move |call| {
            call.meta.priority = priority;
            true
        })
        .await
    }

    async fn set_call_transcript(&self, id: Uuid, transcript: &str) -> Result<Option<CallItem>> {
        let transcript = transcript.to_owned();
        self.modify(id, move |call| {
            call.meta.transcript = Some(transcript);
            true
        })
        .await
    }

    async fn queued_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let mut conn = self.conn().await?;
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE meta->>'channel' = $1 AND status = 'queued' ORDER BY {QUEUE_ORDER}"
        ))
        .bind::<Text, _>(channel.as_str())
        .load(&mut conn)
        .await?;
        to_items(rows)
    }

    async fn list_calls(
        &self,
        channel: &ChannelName,
        status: Option<CallStatus>,
        limit: u32,
    ) -> Result<Vec<CallItem>> {
        let mut conn = self.conn().await?;
        let mut rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE meta->>'channel' = $1 AND ($2::text IS NULL OR status = $2) \
             ORDER BY enqueued_at DESC, id DESC LIMIT $3"
        ))
        .bind::<Text, _>(channel.as_str())
        .bind::<Nullable<Text>, _>(status.map(CallStatus::as_str))
        .bind::<BigInt, _>(i64::from(limit))
        .load(&mut conn)
        .await?;
        rows.reverse();
        to_items(rows)
    }

    async fn calls_of_user(
        &self,
        channel: &ChannelName,
        user_id: &str,
        ended_since: DateTime<Utc>,
    ) -> Result<Vec<CallItem>> {
        let mut conn = self.conn().await?;
        // `ended_at` is always written in `calls::stamp`'s fixed-width form: comparing the
        // text compares the times, and a malformed value cannot fail the query.
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE user_id = $1 AND meta->>'channel' = $2 \
               AND (status IN ('queued', 'live') OR meta->>'ended_at' >= $3) \
             ORDER BY enqueued_at, id"
        ))
        .bind::<Text, _>(user_id)
        .bind::<Text, _>(channel.as_str())
        .bind::<Text, _>(calls::stamp(ended_since))
        .load(&mut conn)
        .await?;
        to_items(rows)
    }

    async fn live_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let mut conn = self.conn().await?;
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE meta->>'channel' = $1 AND status = 'live' ORDER BY enqueued_at, id"
        ))
        .bind::<Text, _>(channel.as_str())
        .load(&mut conn)
        .await?;
        to_items(rows)
    }

    #[tracing::instrument(skip_all)]
    async fn expire_calls(&self, before: DateTime<Utc>) -> Result<Vec<CallItem>> {
        let at = calls::now();
        let mut conn = self.conn().await?;
        conn.transaction(async move |conn| {
            // Locked in id order, so two sweeps at once cannot deadlock. An item claimed
            // meanwhile is waited for, re-checked (no longer queued) and left alone.
            let rows: Vec<CallRow> = diesel::sql_query(format!(
                "SELECT {CALL_COLUMNS} FROM queue \
                 WHERE status = 'queued' AND enqueued_at < $1 ORDER BY id FOR UPDATE"
            ))
            .bind::<Timestamptz, _>(before)
            .load(conn)
            .await?;
            let mut expired = Vec::with_capacity(rows.len());
            for row in rows {
                let mut call = row.stored()?;
                call.change_status(
                    &[CallStatus::Queued],
                    CallStatus::Dropped,
                    Some("expired"),
                    at,
                );
                write_back(conn, &call).await?;
                expired.push(call.item());
            }
            expired.sort_by_key(|item| (item.enqueued_at, item.id));
            Ok(expired)
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_call_audio(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut conn = self.conn().await?;
        // Only final items: one taken back to `queued` has no `ended_at`, but check anyway.
        let purged = diesel::sql_query(
            "DELETE FROM queue_audio USING queue \
             WHERE queue_audio.queue_id = queue.id AND queue.status IN ('done', 'dropped') \
               AND queue.meta->>'ended_at' < $1",
        )
        .bind::<Text, _>(calls::stamp(before))
        .execute(&mut conn)
        .await?;
        Ok(purged as u64)
    }

    fn instance_id(&self) -> Uuid {
        self.instance
    }

    async fn report_listeners(
        &self,
        listeners: &ChannelListeners,
        stale_after: Duration,
    ) -> Result<OtherInstances> {
        let listeners = instances::listeners_json(listeners)?;
        let stale_secs = stale_after.as_secs_f64();
        let me = self.instance;
        let mut conn = self.conn().await?;
        let rows: Vec<InstanceRow> = conn
            .transaction(async move |conn| {
                diesel::sql_query(
                    "INSERT INTO api_instances (id, seen_at, listeners) \
                     VALUES ($1, clock_timestamp(), $2) \
                     ON CONFLICT (id) DO UPDATE \
                     SET seen_at = EXCLUDED.seen_at, listeners = EXCLUDED.listeners",
                )
                .bind::<diesel::sql_types::Uuid, _>(me)
                .bind::<diesel::sql_types::Jsonb, _>(&listeners)
                .execute(conn)
                .await?;
                diesel::sql_query(
                    "DELETE FROM api_instances \
                     WHERE seen_at < clock_timestamp() - make_interval(secs => $1)",
                )
                .bind::<diesel::sql_types::Double, _>(stale_secs)
                .execute(conn)
                .await?;
                diesel::sql_query("SELECT id, listeners FROM api_instances WHERE id <> $1")
                    .bind::<diesel::sql_types::Uuid, _>(me)
                    .load(conn)
                    .await
            })
            .await?;
        OtherInstances::sum(rows.into_iter().map(|r| (r.id, r.listeners)))
    }

    async fn forget_instance(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::sql_query("DELETE FROM api_instances WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(self.instance)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn announce_queue_change(&self, channel: &ChannelName, ids: &[Uuid]) -> Result<()> {
        let mut conn = self.conn().await?;
        for payload in Payload::chunks(self.instance, channel, ids) {
            diesel::sql_query(format!(
                "SELECT pg_notify('{}', $1)",
                instances::QUEUE_CHANNEL
            ))
            .bind::<Text, _>(payload)
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }

    fn queue_changes(&self) -> Option<tokio::sync::broadcast::Receiver<QueueSignal>> {
        let mut slot = crate::sync::lock(&self.signals);
        if let Some(signals) = slot.as_ref()
            && signals.receiver_count() > 0
        {
            return Some(signals.subscribe());
        }
        let (signals, receiver) = tokio::sync::broadcast::channel(QUEUE_SIGNALS);
        tokio::spawn(super::pg_listen::run(
            self.url.clone(),
            self.instance,
            signals.clone(),
        ));
        *slot = Some(signals);
        Some(receiver)
    }
}
