//! SQLite adapter: a file (default `data/radio24.db`, created with its folder on first
//! start) in WAL mode with a busy timeout, so the API's workers (and a second process) can
//! share it. Queries run through diesel-async's `SyncConnectionWrapper` on blocking threads.
//! Migrations from `migrations/sqlite` are applied on open, inside one IMMEDIATE
//! transaction so two processes starting at once do not both apply them.
//!
//! The call-in queue ([`calls`]) runs each operation whole on one blocking thread, its
//! transaction included (IMMEDIATE for every read-then-write, so the write lock is held from
//! the first read and no writer of any process comes between); see [`SqliteStore::queue`].

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;
use uuid::Uuid;

use super::instances::{self, ChannelListeners, OtherInstances, QueueSignal};
use super::schema::sqlite::{channel, schedule};
use super::{
    CallAudio, CallItem, CallStatus, CallerLimits, Channel, EnqueueRefusal, NewCall, Result,
    ScheduleEntry, SlotEdit, Store, StoreError, calls, parse_block, parse_channel_name, parse_hour,
};
use crate::domain::{Block, ChannelName};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A writer waits up to 5 s for another writer's lock. busy_timeout goes first: switching to WAL needs a lock another process may hold.
const PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                       PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// How often, and how long apart, opening retries a file another process holds locked.
const LOCKED_RETRIES: u32 = 100;
const LOCKED_WAIT: Duration = Duration::from_millis(50);

/// SQLite's "database is locked" / "busy", which it can return without waiting.
fn is_locked(e: &diesel::result::Error) -> bool {
    let text = e.to_string();
    text.contains("locked") || text.contains("busy")
}
type ChannelRow = (String, String, Option<bool>, Option<DateTime<Utc>>);
type ScheduleRow = (String, Option<String>, Option<i32>, String, Option<String>);

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

fn parse_uuid(raw: &str, what: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| StoreError::Corrupt(format!("{what} {raw:?}")))
}

fn to_channel((id, name, live, started_at): ChannelRow) -> Result<Channel> {
    Ok(Channel {
        id: parse_uuid(&id, "channel.id")?,
        name: parse_channel_name(&name)?,
        live: live.unwrap_or(true),
        started_at,
    })
}

fn to_entry((id, channel_id, hour, block, prompt): ScheduleRow) -> Result<ScheduleEntry> {
    let channel_id =
        channel_id.ok_or_else(|| StoreError::Corrupt("schedule.channel_id NULL".into()))?;
    Ok(ScheduleEntry {
        id: parse_uuid(&id, "schedule.id")?,
        channel_id: parse_uuid(&channel_id, "schedule.channel_id")?,
        hour: parse_hour(hour)?,
        block: parse_block(&block)?,
        prompt,
    })
}

/// Applies pending migrations to the file at `path` (creating it); returns the versions.
pub async fn migrate_file(path: &Path) -> Result<Vec<String>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
    }
    let url = path.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SqliteConnection::establish(&url)
            .map_err(|e| StoreError::Unavailable(format!("opening {url}: {e}")))?;
        // Switching to WAL needs the file to itself for a moment, and SQLite reports "locked"
        // at once (without its busy handler) while another process is switching or
        // migrating: wait and try again rather than fail the start.
        let mut attempt = 0;
        while let Err(e) = conn.batch_execute(PRAGMAS) {
            attempt += 1;
            if !is_locked(&e) || attempt >= LOCKED_RETRIES {
                return Err(e.into());
            }
            std::thread::sleep(LOCKED_WAIT);
        }
        let applied = conn
            .immediate_transaction(|conn| {
                conn.run_pending_migrations(MIGRATIONS)
                    .map(|v| v.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            })
            .map_err(|e: Box<dyn std::error::Error + Send + Sync>| {
                StoreError::Migration(e.to_string())
            })?;
        if !applied.is_empty() {
            tracing::info!(?applied, file = %url, "applied SQLite migrations");
        }
        Ok(applied)
    })
    .await
    .map_err(|e| StoreError::Migration(format!("migration task failed: {e}")))?
}

pub struct SqliteStore {
    pool: Pool<Conn>,
    acquire_timeout: Duration,
    instance: Uuid,
}

#[derive(QueryableByName)]
struct InstanceRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    listeners: String,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database file.
    pub async fn open(
        path: &Path,
        max_connections: usize,
        acquire_timeout: Duration,
    ) -> Result<Self> {
        migrate_file(path).await?;
        let mut config = ManagerConfig::<Conn>::default();
        config.custom_setup = Box::new(|url| {
            let url = url.to_owned();
            async move {
                let mut conn = Conn::establish(&url).await?;
                let mut attempt = 0;
                while let Err(e) = conn.batch_execute(PRAGMAS).await {
                    attempt += 1;
                    if !is_locked(&e) || attempt >= LOCKED_RETRIES {
                        return Err(diesel::ConnectionError::CouldntSetupConfiguration(e));
                    }
                    tokio::time::sleep(LOCKED_WAIT).await;
                }
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(
            path.to_string_lossy().into_owned(),
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the pool: {e}")))?;
        let store = Self {
            pool,
            acquire_timeout,
            instance: Uuid::new_v4(),
        };
        store.ping().await?;
        tracing::info!(file = %path.display(), "SQLite store open");
        Ok(store)
    }

    /// Runs one queue operation with a pooled connection on a blocking thread, to its end:
    /// diesel-async's own transactions hop to the blocking pool once per statement, and a
    /// caller that stops waiting between two hops leaves the transaction open on the
    /// connection. Here a dropped future leaves the operation to finish (commit or roll back)
    /// on its thread; the connection is not handed out again before that.
    async fn queue<R: Send + 'static>(
        &self,
        op: impl FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let mut conn = self.conn().await?;
        conn.spawn_blocking(move |conn| Ok(op(conn))).await?
    }

    async fn conn(&self) -> Result<Object<Conn>> {
        match tokio::time::timeout(self.acquire_timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no connection within {:?}",
                self.acquire_timeout
            ))),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        conn.batch_execute("SELECT 1").await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(channel = %name))]
    async fn ensure_channel(&self, name: &ChannelName) -> Result<(Channel, bool)> {
        let mut conn = self.conn().await?;
        let inserted = diesel::insert_into(channel::table)
            .values((
                channel::id.eq(Uuid::now_v7().to_string()),
                channel::name.eq(name.as_str()),
                channel::live.eq(Some(true)),
                channel::started_at.eq(Some(Utc::now())),
            ))
            .on_conflict(channel::name)
            .do_nothing()
            .execute(&mut conn)
            .await?;
        let row: ChannelRow = channel::table
            .filter(channel::name.eq(name.as_str()))
            .select(CHANNEL_COLUMNS)
            .first(&mut conn)
            .await?;
        Ok((to_channel(row)?, inserted == 1))
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
            .filter(schedule::channel_id.eq(channel_id.to_string()))
            .order(schedule::hour)
            .select(SCHEDULE_COLUMNS)
            .load(&mut conn)
            .await?;
        rows.into_iter().map(to_entry).collect()
    }

    #[tracing::instrument(skip_all, fields(%channel_id))]
    async fn seed_schedule(&self, channel_id: Uuid, blocks: &[Block]) -> Result<usize> {
        let mut conn = self.conn().await?;
        let channel_key = channel_id.to_string();
        let existing: i64 = schedule::table
            .filter(schedule::channel_id.eq(&channel_key))
            .count()
            .get_result(&mut conn)
            .await?;
        if existing > 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let rows: Vec<_> = blocks
            .iter()
            .enumerate()
            .map(|(hour, block)| {
                (
                    schedule::id.eq(Uuid::now_v7().to_string()),
                    schedule::channel_id.eq(Some(channel_key.clone())),
                    schedule::hour.eq(Some(hour as i32)),
                    schedule::block.eq(block.as_str()),
                    schedule::created_at.eq(Some(now)),
                )
            })
            .collect();
        let mut inserted = 0;
        // SQLite's batch insert has no ON CONFLICT in diesel: insert row by row, skipping
        // hours another process seeded at the same moment.
        for row in rows {
            inserted += diesel::insert_into(schedule::table)
                .values(row)
                .on_conflict((schedule::channel_id, schedule::hour))
                .do_nothing()
                .execute(&mut conn)
                .await?;
        }
        Ok(inserted)
    }

    async fn set_schedule_slots(
        &self,
        channel_id: Uuid,
        slots: Vec<SlotEdit>,
    ) -> Result<Vec<ScheduleEntry>> {
        self.queue(move |conn| schedule_ops::set_slots(conn, channel_id, &slots))
            .await
    }

    #[tracing::instrument(skip_all, fields(channel = %call.channel))]
    async fn enqueue_call(
        &self,
        call: NewCall,
        limits: CallerLimits,
    ) -> Result<std::result::Result<(CallItem, u32), EnqueueRefusal>> {
        self.queue(move |conn| queue_ops::enqueue(conn, call, limits))
            .await
    }

    #[tracing::instrument(skip_all, fields(channel = %channel))]
    async fn claim_next_call(&self, channel: &ChannelName) -> Result<Option<CallItem>> {
        let channel = channel.clone();
        self.queue(move |conn| queue_ops::claim_next(conn, &channel))
            .await
    }

    async fn call(&self, id: Uuid) -> Result<Option<CallItem>> {
        self.queue(move |conn| queue_ops::call(conn, id)).await
    }

    async fn call_audio(&self, id: Uuid) -> Result<Option<CallAudio>> {
        self.queue(move |conn| queue_ops::call_audio(conn, id))
            .await
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
        self.queue(move |conn| {
            queue_ops::modify(conn, id, |call| {
                call.change_status(&from, to, reason.as_deref(), at)
            })
        })
        .await
    }

    async fn set_call_priority(&self, id: Uuid, priority: i32) -> Result<Option<CallItem>> {
        self.queue(move |conn| {
            queue_ops::modify(conn, id, |call| {
                call.meta.priority = priority;
                true
            })
        })
        .await
    }

    async fn set_call_transcript(&self, id: Uuid, transcript: &str) -> Result<Option<CallItem>> {
        let transcript = transcript.to_owned();
        self.queue(move |conn| {
            queue_ops::modify(conn, id, |call| {
                call.meta.transcript = Some(transcript);
                true
            })
        })
        .await
    }

    async fn queued_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let channel = channel.clone();
        self.queue(move |conn| queue_ops::queued(conn, &channel))
            .await
    }

    async fn list_calls(
        &self,
        channel: &ChannelName,
        status: Option<CallStatus>,
        limit: u32,
    ) -> Result<Vec<CallItem>> {
        let channel = channel.clone();
        self.queue(move |conn| queue_ops::list(conn, &channel, status, limit))
            .await
    }

    async fn calls_of_user(
        &self,
        channel: &ChannelName,
        user_id: &str,
        ended_since: DateTime<Utc>,
    ) -> Result<Vec<CallItem>> {
        let channel = channel.clone();
        let user_id = user_id.to_owned();
        self.queue(move |conn| queue_ops::of_user(conn, &channel, &user_id, ended_since))
            .await
    }

    async fn live_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let channel = channel.clone();
        self.queue(move |conn| queue_ops::live(conn, &channel))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn expire_calls(&self, before: DateTime<Utc>) -> Result<Vec<CallItem>> {
        let at = calls::now();
        self.queue(move |conn| queue_ops::expire(conn, before, at))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_call_audio(&self, before: DateTime<Utc>) -> Result<u64> {
        self.queue(move |conn| queue_ops::purge_audio(conn, before))
            .await
    }

    fn instance_id(&self) -> Uuid {
        self.instance
    }

    /// As PostgreSQL's, with `seen_at` in [`calls::stamp`]'s text (compared as text).
    async fn report_listeners(
        &self,
        listeners: &ChannelListeners,
        stale_after: Duration,
    ) -> Result<OtherInstances> {
        let listeners = instances::listeners_json(listeners)?.to_string();
        let me = self.instance.to_string();
        let now = Utc::now();
        let stale = chrono::TimeDelta::from_std(stale_after).map_err(|e| {
            StoreError::Query(diesel::result::Error::SerializationError(Box::new(e)))
        })?;
        let rows: Vec<InstanceRow> = self
            .queue(move |conn| instance_ops::report(conn, &me, &listeners, now, now - stale))
            .await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let id = parse_uuid(&r.id, "api_instances.id")?;
                let listeners = serde_json::from_str(&r.listeners)
                    .map_err(|e| StoreError::Corrupt(format!("api_instances {id}: {e}")))?;
                Ok((id, listeners))
            })
            .collect::<Result<Vec<_>>>()?;
        OtherInstances::sum(rows)
    }

    async fn forget_instance(&self) -> Result<()> {
        let me = self.instance.to_string();
        let mut conn = self.conn().await?;
        diesel::sql_query("DELETE FROM api_instances WHERE id = $1")
            .bind::<diesel::sql_types::Text, _>(me)
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// One process is all a SQLite file serves: nobody else to tell.
    async fn announce_queue_change(&self, _: &ChannelName, _: &[Uuid]) -> Result<()> {
        Ok(())
    }

    fn queue_changes(&self) -> Option<tokio::sync::broadcast::Receiver<QueueSignal>> {
        None
    }
}

/// The queue's operations on a plain (synchronous) connection, run by [`SqliteStore::queue`].
/// The queries on `meta` are SQL written out, spelling `json_extract(meta, '$.channel')` as
/// the index does; timestamps are [`calls::stamp`] text, compared as text.
/// The heartbeat of [`Store::report_listeners`], on a plain connection in one IMMEDIATE
/// transaction.
mod instance_ops {
    use chrono::{DateTime, Utc};
    use diesel::prelude::*;
    use diesel::sql_types::Text;
    use diesel::sqlite::SqliteConnection;

    use super::InstanceRow;
    use crate::db::{Result, StoreError, calls};

    /// Upserts instance `me` as seen `now`, deletes rows seen before `stale_before`, and
    /// returns the other rows.
    pub fn report(
        conn: &mut SqliteConnection,
        me: &str,
        listeners: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<Vec<InstanceRow>> {
        conn.immediate_transaction::<_, StoreError, _>(|conn| {
            diesel::sql_query(
                "INSERT INTO api_instances (id, seen_at, listeners) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE \
                 SET seen_at = excluded.seen_at, listeners = excluded.listeners",
            )
            .bind::<Text, _>(me)
            .bind::<Text, _>(calls::stamp(now))
            .bind::<Text, _>(listeners)
            .execute(conn)?;
            diesel::sql_query("DELETE FROM api_instances WHERE seen_at < $1")
                .bind::<Text, _>(calls::stamp(stale_before))
                .execute(conn)?;
            Ok(
                diesel::sql_query("SELECT id, listeners FROM api_instances WHERE id <> $1")
                    .bind::<Text, _>(me)
                    .load(conn)?,
            )
        })
    }
}

/// Schedule writes that must be whole, run on a blocking thread (see `SqliteStore::queue`).
mod schedule_ops {
    use chrono::Utc;
    use diesel::prelude::*;
    use diesel::sqlite::SqliteConnection;
    use uuid::Uuid;

    use super::{SCHEDULE_COLUMNS, ScheduleRow, to_entry};
    use crate::db::schema::sqlite::schedule;
    use crate::db::{Result, ScheduleEntry, SlotEdit, map_write_error};

    /// Upserts `slots` in one IMMEDIATE transaction; what was written, in order.
    pub fn set_slots(
        conn: &mut SqliteConnection,
        channel_id: Uuid,
        slots: &[SlotEdit],
    ) -> Result<Vec<ScheduleEntry>> {
        let channel_key = channel_id.to_string();
        conn.immediate_transaction(|conn| {
            let mut written = Vec::with_capacity(slots.len());
            for slot in slots {
                let hour = Some(i32::from(slot.hour));
                diesel::insert_into(schedule::table)
                    .values((
                        schedule::id.eq(Uuid::now_v7().to_string()),
                        schedule::channel_id.eq(Some(channel_key.clone())),
                        schedule::hour.eq(hour),
                        schedule::block.eq(slot.block.as_str()),
                        schedule::prompt.eq(slot.prompt.as_deref()),
                        schedule::created_at.eq(Some(Utc::now())),
                    ))
                    .on_conflict((schedule::channel_id, schedule::hour))
                    .do_update()
                    .set((
                        schedule::block.eq(slot.block.as_str()),
                        schedule::prompt.eq(slot.prompt.as_deref()),
                    ))
                    .execute(conn)
                    .map_err(|e| map_write_error(e, "schedule slot"))?;
                let row: ScheduleRow = schedule::table
                    .filter(schedule::channel_id.eq(&channel_key))
                    .filter(schedule::hour.eq(hour))
                    .select(SCHEDULE_COLUMNS)
                    .first(conn)?;
                written.push(to_entry(row)?);
            }
            Ok(written)
        })
    }
}

mod queue_ops {
    use chrono::{DateTime, Utc};
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Integer, Nullable, Text};
    use diesel::sqlite::SqliteConnection;
    use uuid::Uuid;

    use super::parse_uuid;
    use crate::db::calls::{self, CallColumns, Meta, StoredCall};
    use crate::db::schema::sqlite::{queue, queue_audio};
    use crate::db::{
        CallAudio, CallItem, CallStatus, CallerLimits, EnqueueRefusal, NewCall, Result, StoreError,
        map_write_error,
    };
    use crate::domain::ChannelName;

    /// A `queue` row, read by the DSL (`as_select`) and by `sql_query` (by name) alike.
    #[derive(Queryable, QueryableByName, Selectable)]
    #[diesel(table_name = queue, check_for_backend(diesel::sqlite::Sqlite))]
    struct CallRow {
        id: String,
        user_id: Option<String>,
        kind: String,
        text: Option<String>,
        meta: Option<String>,
        enqueued_at: Option<String>,
        status: Option<String>,
    }

    impl CallRow {
        fn stored(self) -> Result<StoredCall> {
            let id = parse_uuid(&self.id, "queue.id")?;
            let meta = self
                .meta
                .map(|raw| {
                    serde_json::from_str(&raw)
                        .map_err(|e| StoreError::Corrupt(format!("queue {id}: meta: {e}")))
                })
                .transpose()?;
            let enqueued_at = self
                .enqueued_at
                .map(|raw| calls::parse_stamp(&raw, &format!("queue {id}: enqueued_at")))
                .transpose()?;
            StoredCall::try_from(CallColumns {
                id,
                user_id: self.user_id,
                kind: self.kind,
                text: self.text,
                meta,
                enqueued_at,
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

    /// The queue's order ([`crate::db::Store`]'s): priority, highest first, then arrival,
    /// then id.
    const QUEUE_ORDER: &str = "COALESCE(json_extract(meta, '$.priority'), 0) DESC, enqueued_at, id";

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

    fn read(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<CallRow>> {
        Ok(queue::table
            .find(id.to_string())
            .select(CallRow::as_select())
            .first(conn)
            .optional()?)
    }

    /// Writes back what [`StoredCall`]'s edits change: the status and meta.
    fn write_back(conn: &mut SqliteConnection, call: &StoredCall) -> Result<()> {
        diesel::update(queue::table.find(call.id.to_string()))
            .set((
                queue::status.eq(call.status.as_str()),
                queue::meta.eq(call.meta.to_json()?.to_string()),
            ))
            .execute(conn)?;
        Ok(())
    }

    pub fn enqueue(
        conn: &mut SqliteConnection,
        call: NewCall,
        limits: CallerLimits,
    ) -> Result<std::result::Result<(CallItem, u32), EnqueueRefusal>> {
        let meta = Meta::new(&call).to_json()?.to_string();
        let audio = call
            .audio
            .as_ref()
            .map(|a| Ok::<_, StoreError>((calls::rate_column(a)?, &a.pcm)))
            .transpose()?;
        // IMMEDIATE: the write lock is taken at BEGIN, so no writer of any process comes
        // between the counts and the insert, and the time read under it orders the items
        // as they went in.
        conn.immediate_transaction(|conn| {
            let now = calls::now();
            let counts: CallerCounts = diesel::sql_query(
                "SELECT count(*) FILTER (WHERE status = 'queued') AS waiting, \
                        count(*) FILTER (WHERE enqueued_at > ?3) AS this_hour \
                 FROM queue WHERE user_id = ?1 AND json_extract(meta, '$.channel') = ?2",
            )
            .bind::<Text, _>(&call.user_id)
            .bind::<Text, _>(call.channel.as_str())
            .bind::<Text, _>(calls::stamp(now - chrono::TimeDelta::hours(1)))
            .get_result(conn)?;
            if counts.waiting >= i64::from(limits.max_waiting) {
                return Ok(Err(EnqueueRefusal::TooManyWaiting));
            }
            if counts.this_hour >= i64::from(limits.max_per_hour) {
                return Ok(Err(EnqueueRefusal::TooManyThisHour));
            }
            let id = Uuid::new_v4();
            diesel::insert_into(queue::table)
                .values((
                    queue::id.eq(id.to_string()),
                    queue::user_id.eq(Some(&call.user_id)),
                    queue::kind.eq(call.kind().as_str()),
                    queue::text.eq(call.text.as_deref()),
                    queue::meta.eq(Some(&meta)),
                    queue::enqueued_at.eq(Some(calls::stamp(now))),
                    queue::status.eq(Some(CallStatus::Queued.as_str())),
                ))
                .execute(conn)
                .map_err(|e| map_write_error(e, "call"))?;
            if let Some((sample_rate, pcm)) = audio {
                diesel::insert_into(queue_audio::table)
                    .values((
                        queue_audio::queue_id.eq(id.to_string()),
                        queue_audio::sample_rate.eq(sample_rate),
                        queue_audio::pcm.eq(pcm),
                    ))
                    .execute(conn)
                    .map_err(|e| map_write_error(e, "call audio"))?;
            }
            let stored = read(conn, id)?
                .ok_or_else(|| StoreError::NotFound(format!("call {id}, just inserted")))?
                .stored()?;
            let Count { n } = diesel::sql_query(
                "SELECT count(*) AS n FROM queue \
                 WHERE json_extract(meta, '$.channel') = ?1 AND status = 'queued' \
                   AND (COALESCE(json_extract(meta, '$.priority'), 0) > ?2 \
                        OR (COALESCE(json_extract(meta, '$.priority'), 0) = ?2 \
                            AND (enqueued_at, id) < (?3, ?4)))",
            )
            .bind::<Text, _>(call.channel.as_str())
            .bind::<Integer, _>(stored.meta.priority)
            .bind::<Text, _>(calls::stamp(stored.enqueued_at))
            .bind::<Text, _>(id.to_string())
            .get_result(conn)?;
            let position = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
            Ok(Ok((stored.item(), position)))
        })
    }

    pub fn claim_next(
        conn: &mut SqliteConnection,
        channel: &ChannelName,
    ) -> Result<Option<CallItem>> {
        // The head is chosen and marked live under the write lock. It is read (checked)
        // once committed, as PostgreSQL's claim does: an unreadable head leaves the queue
        // (reported `Corrupt`) instead of blocking it.
        let head = conn.immediate_transaction(|conn| {
            let head: Option<CallRow> = diesel::sql_query(format!(
                "SELECT {CALL_COLUMNS} FROM queue \
                 WHERE json_extract(meta, '$.channel') = ?1 AND status = 'queued' \
                 ORDER BY {QUEUE_ORDER} LIMIT 1"
            ))
            .bind::<Text, _>(channel.as_str())
            .get_result(conn)
            .optional()?;
            let Some(mut head) = head else {
                return Ok::<_, StoreError>(None);
            };
            diesel::update(queue::table.find(&head.id))
                .set(queue::status.eq(CallStatus::Live.as_str()))
                .execute(conn)?;
            head.status = Some(CallStatus::Live.as_str().to_owned());
            Ok(Some(head))
        })?;
        head.map(|row| Ok(row.stored()?.item())).transpose()
    }

    pub fn call(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<CallItem>> {
        read(conn, id)?
            .map(|row| Ok(row.stored()?.item()))
            .transpose()
    }

    pub fn call_audio(conn: &mut SqliteConnection, id: Uuid) -> Result<Option<CallAudio>> {
        let row: Option<(i32, Vec<u8>)> = queue_audio::table
            .find(id.to_string())
            .select((queue_audio::sample_rate, queue_audio::pcm))
            .first(conn)
            .optional()?;
        row.map(|(rate, pcm)| calls::audio_from_columns(id, rate, pcm))
            .transpose()
    }

    /// Reads one item, lets `edit` change it (`false`: leave it as it is, and answer
    /// `None`), and writes it back, all under the write lock.
    pub fn modify(
        conn: &mut SqliteConnection,
        id: Uuid,
        edit: impl FnOnce(&mut StoredCall) -> bool,
    ) -> Result<Option<CallItem>> {
        conn.immediate_transaction(|conn| {
            let Some(row) = read(conn, id)? else {
                return Ok(None);
            };
            let mut call = row.stored()?;
            if !edit(&mut call) {
                return Ok(None);
            }
            write_back(conn, &call)?;
            Ok(Some(call.item()))
        })
    }

    pub fn queued(conn: &mut SqliteConnection, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE json_extract(meta, '$.channel') = ?1 AND status = 'queued' \
             ORDER BY {QUEUE_ORDER}"
        ))
        .bind::<Text, _>(channel.as_str())
        .load(conn)?;
        to_items(rows)
    }

    pub fn list(
        conn: &mut SqliteConnection,
        channel: &ChannelName,
        status: Option<CallStatus>,
        limit: u32,
    ) -> Result<Vec<CallItem>> {
        let mut rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE json_extract(meta, '$.channel') = ?1 AND (?2 IS NULL OR status = ?2) \
             ORDER BY enqueued_at DESC, id DESC LIMIT ?3"
        ))
        .bind::<Text, _>(channel.as_str())
        .bind::<Nullable<Text>, _>(status.map(CallStatus::as_str))
        .bind::<BigInt, _>(i64::from(limit))
        .load(conn)?;
        rows.reverse();
        to_items(rows)
    }

    pub fn of_user(
        conn: &mut SqliteConnection,
        channel: &ChannelName,
        user_id: &str,
        ended_since: DateTime<Utc>,
    ) -> Result<Vec<CallItem>> {
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE user_id = ?1 AND json_extract(meta, '$.channel') = ?2 \
               AND (status IN ('queued', 'live') OR json_extract(meta, '$.ended_at') >= ?3) \
             ORDER BY enqueued_at, id"
        ))
        .bind::<Text, _>(user_id)
        .bind::<Text, _>(channel.as_str())
        .bind::<Text, _>(calls::stamp(ended_since))
        .load(conn)?;
        to_items(rows)
    }

    pub fn live(conn: &mut SqliteConnection, channel: &ChannelName) -> Result<Vec<CallItem>> {
        let rows: Vec<CallRow> = diesel::sql_query(format!(
            "SELECT {CALL_COLUMNS} FROM queue \
             WHERE json_extract(meta, '$.channel') = ?1 AND status = 'live' \
             ORDER BY enqueued_at, id"
        ))
        .bind::<Text, _>(channel.as_str())
        .load(conn)?;
        to_items(rows)
    }

    pub fn expire(
        conn: &mut SqliteConnection,
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<CallItem>> {
        conn.immediate_transaction(|conn| {
            let rows: Vec<CallRow> = diesel::sql_query(format!(
                "SELECT {CALL_COLUMNS} FROM queue \
                 WHERE status = 'queued' AND enqueued_at < ?1 ORDER BY enqueued_at, id"
            ))
            .bind::<Text, _>(calls::stamp(before))
            .load(conn)?;
            let mut expired = Vec::with_capacity(rows.len());
            for row in rows {
                let mut call = row.stored()?;
                call.change_status(
                    &[CallStatus::Queued],
                    CallStatus::Dropped,
                    Some("expired"),
                    at,
                );
                write_back(conn, &call)?;
                expired.push(call.item());
            }
            Ok(expired)
        })
    }

    pub fn purge_audio(conn: &mut SqliteConnection, before: DateTime<Utc>) -> Result<u64> {
        // Only final items: one taken back to `queued` has no `ended_at`, but check anyway.
        let purged = diesel::sql_query(
            "DELETE FROM queue_audio WHERE queue_id IN ( \
                 SELECT id FROM queue WHERE status IN ('done', 'dropped') \
                   AND json_extract(meta, '$.ended_at') < ?1)",
        )
        .bind::<Text, _>(calls::stamp(before))
        .execute(conn)?;
        Ok(purged as u64)
    }
}
