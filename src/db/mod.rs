//! The store: channels, schedules and the call-in queue ([`calls`]) behind one [`Store`]
//! trait, with two adapters — [`postgres::PgStore`] (production; the seed's schema exactly,
//! through diesel-async without libpq) and [`sqlite::SqliteStore`] (a file, the default, so
//! `radio24 serve` needs nothing installed). One conformance suite runs against both
//! (`tests/api/store_conformance.rs`). Only the API role links this module.
//!
//! Config keys read here: `database.url` (`DATABASE_URL`), `database.postgres.*`
//! (`POSTGRES_*`), `database.sqlite_path`, `database.max_connections`,
//! `database.acquire_timeout_ms`.

pub mod calls;
pub mod instances;
mod pg_listen;
pub mod postgres;
mod schema;
pub mod seed;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::config::{DatabaseTarget, Settings};
use crate::domain::{Block, ChannelName};
pub use calls::{CallAudio, CallItem, CallKind, CallStatus, CallerLimits, EnqueueRefusal, NewCall};
pub use instances::{ChannelListeners, ListenerCounts, OtherInstances, QueueSignal};

/// The store's errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had in time (pool exhausted or database down), or the one in
    /// use was lost mid-query (the server restarting).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken.
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The database holds a value this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(diesel::result::Error),
}

impl From<diesel::result::Error> for StoreError {
    /// A query that failed because the connection under it was lost (the server restarting,
    /// stopped, or crashed) is the database being unavailable, which the API answers with
    /// 503 and the client may retry; anything else is a fault of the query.
    fn from(e: diesel::result::Error) -> Self {
        if is_connection_lost(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Query(e)
        }
    }
}

/// The beginnings of the messages PostgreSQL sends as it ends a session or refuses one
/// (SQLSTATE class 57P: admin shutdown, crash shutdown, cannot connect now). diesel keeps
/// the message but not the SQLSTATE, so the message is all there is to go by; these are
/// the server's untranslated texts (`lc_messages` = C, what servers run with by default).
const SESSION_ENDED_MESSAGES: [&str; 2] = ["terminating connection", "the database system is"];

/// Whether `e` says the connection to the database was lost rather than that the query was
/// wrong: the client found the socket closed, could not send, or the server was ending
/// the session. A transaction the lost connection left broken counts too.
fn is_connection_lost(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => SESSION_ENDED_MESSAGES
            .iter()
            .any(|start| info.message().starts_with(start)),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A row of `channel`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub id: Uuid,
    pub name: ChannelName,
    /// The seed's `live` (NULL reads as live, its default).
    pub live: bool,
    pub started_at: Option<DateTime<Utc>>,
}

/// A row of `schedule`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleEntry {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub hour: u8,
    pub block: Block,
    pub prompt: Option<String>,
}

/// One hour of a schedule to write.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotEdit {
    pub hour: u8,
    pub block: Block,
    pub prompt: Option<String>,
}

/// What the API needs from a database. Every method is safe to call from several
/// processes at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Returns the channel named `name`, creating it (live) if absent; `true` when created.
    async fn ensure_channel(&self, name: &ChannelName) -> Result<(Channel, bool)>;
    /// The channel named `name`, if any.
    async fn channel_by_name(&self, name: &ChannelName) -> Result<Option<Channel>>;
    /// All channels, by name.
    async fn list_channels(&self) -> Result<Vec<Channel>>;
    /// A channel's schedule, by hour.
    async fn schedule(&self, channel_id: Uuid) -> Result<Vec<ScheduleEntry>>;
    /// Gives a channel that has no schedule rows one row per hour from `blocks` (hour =
    /// index). Returns how many rows it inserted: 0 when the channel already had a schedule.
    async fn seed_schedule(&self, channel_id: Uuid, blocks: &[Block]) -> Result<usize>;
    /// Sets the block and prompt of one hour of a channel's schedule (insert or replace).
    async fn set_schedule_slot(
        &self,
        channel_id: Uuid,
        hour: u8,
        block: Block,
        prompt: Option<&str>,
    ) -> Result<ScheduleEntry> {
        let slot = SlotEdit {
            hour,
            block,
            prompt: prompt.map(str::to_owned),
        };
        self.set_schedule_slots(channel_id, vec![slot])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("schedule hour {hour}, just written")))
    }
    /// Sets several hours of a channel's schedule in one transaction: all of them, or
    /// (on an error) none. Returns them as written, in the order given.
    async fn set_schedule_slots(
        &self,
        channel_id: Uuid,
        slots: Vec<SlotEdit>,
    ) -> Result<Vec<ScheduleEntry>>;

    // ---- The call-in queue ([`calls`]). Positions count from 1 and follow the queue's
    // order: priority (highest first), then `enqueued_at`, then id.

    /// Adds a call as `queued` (its audio, if any, in `queue_audio`) unless the caller is
    /// over `limits` on that channel, checked in the same transaction. `Ok(Err(_))` is a
    /// refusal; `Ok(Ok((item, position)))` the new item and its place.
    async fn enqueue_call(
        &self,
        call: NewCall,
        limits: CallerLimits,
    ) -> Result<std::result::Result<(CallItem, u32), EnqueueRefusal>>;
    /// Atomically takes the first `queued` item of `channel` and makes it `live`; `None` when
    /// nothing waits. Never hands one item to two callers, even from two processes
    /// (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: an IMMEDIATE transaction).
    async fn claim_next_call(&self, channel: &ChannelName) -> Result<Option<CallItem>>;
    /// One item.
    async fn call(&self, id: Uuid) -> Result<Option<CallItem>>;
    /// The recording of an audio item, while it is kept.
    async fn call_audio(&self, id: Uuid) -> Result<Option<CallAudio>>;
    /// Moves an item to `to` if its status is one of `from` (compare-and-set), recording
    /// `reason` (when given) and, for `done`/`dropped`, `ended_at` (any other `to` clears
    /// it, so an item taken back is not purged as ended). Going back to `queued` from `live`
    /// with reason [`calls::HOST_LOST`] adds one to `requeues`. `None` when the item does not exist or was not in `from`.
    async fn set_call_status(
        &self,
        id: Uuid,
        from: &[CallStatus],
        to: CallStatus,
        reason: Option<&str>,
    ) -> Result<Option<CallItem>>;
    /// Sets an item's priority; `None` when it does not exist.
    async fn set_call_priority(&self, id: Uuid, priority: i32) -> Result<Option<CallItem>>;
    /// Records the transcript of an audio item; `None` when it does not exist.
    async fn set_call_transcript(&self, id: Uuid, transcript: &str) -> Result<Option<CallItem>>;
    /// The `queued` items of `channel` in queue order (position = index + 1).
    async fn queued_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>>;
    /// Items of `channel`, optionally only those in `status`, oldest first, at most `limit`
    /// (the newest `limit` of them).
    async fn list_calls(
        &self,
        channel: &ChannelName,
        status: Option<CallStatus>,
        limit: u32,
    ) -> Result<Vec<CallItem>>;
    /// A caller's items on `channel` that are not final, or ended after `ended_since`,
    /// oldest first (what a reconnecting caller is told about).
    async fn calls_of_user(
        &self,
        channel: &ChannelName,
        user_id: &str,
        ended_since: DateTime<Utc>,
    ) -> Result<Vec<CallItem>>;
    /// The `live` items of `channel` (at most one, unless a host was lost).
    async fn live_calls(&self, channel: &ChannelName) -> Result<Vec<CallItem>>;
    /// Drops (reason `expired`) every `queued` item enqueued before `before`; returns them.
    async fn expire_calls(&self, before: DateTime<Utc>) -> Result<Vec<CallItem>>;
    /// Deletes the recordings of items that ended before `before`; returns how many.
    async fn purge_call_audio(&self, before: DateTime<Utc>) -> Result<u64>;

    // ---- API instances sharing the database ([`instances`]).

    /// This store's instance: one per API process, a random id made when it was opened.
    fn instance_id(&self) -> Uuid;
    /// Records this instance's listener counts as seen now (the database's clock), forgets
    /// instances not seen for `stale_after`, and returns what the other instances seen
    /// within it report.
    async fn report_listeners(
        &self,
        listeners: &ChannelListeners,
        stale_after: Duration,
    ) -> Result<OtherInstances>;
    /// Removes this instance's row (it is stopping); the others stop counting it at once.
    async fn forget_instance(&self) -> Result<()>;
    /// Tells the other instances on this database that `channel`'s queue changed (items
    /// `ids`: added, or changed status or priority). Nothing to do where no other instance
    /// can be (SQLite).
    async fn announce_queue_change(&self, channel: &ChannelName, ids: &[Uuid]) -> Result<()>;
    /// The queue changes other instances announce, as they come, starting with a
    /// [`QueueSignal::Missed`] (and one after every reconnect); `None` where no other
    /// instance can be (SQLite). One listening connection serves all subscribers of a store.
    fn queue_changes(&self) -> Option<tokio::sync::broadcast::Receiver<QueueSignal>>;
}

/// Connects to the store the settings name and applies pending migrations (PostgreSQL under
/// its advisory lock, so API instances starting together migrate once; `radio24 migrate`
/// does the same as a separate release step).
pub async fn connect(settings: &Settings) -> Result<Arc<dyn Store>> {
    let acquire = Duration::from_millis(settings.database.acquire_timeout_ms);
    let size = settings.database.max_connections;
    match settings.database_target() {
        DatabaseTarget::Postgres(url) => {
            let store = postgres::PgStore::connect(&url, size, acquire).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
        DatabaseTarget::Sqlite(path) => {
            let store = sqlite::SqliteStore::open(&path, size, acquire).await?;
            Ok(Arc::new(store))
        }
    }
}

/// Applies pending migrations to the configured database; returns the versions applied.
pub async fn migrate(settings: &Settings) -> Result<Vec<String>> {
    match settings.database_target() {
        DatabaseTarget::Postgres(url) => {
            let store = postgres::PgStore::connect(&url, 1, Duration::from_secs(10)).await?;
            store.migrate().await
        }
        DatabaseTarget::Sqlite(path) => sqlite::migrate_file(&path).await,
    }
}

fn parse_block(raw: &str) -> Result<Block> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("schedule.block {raw:?}")))
}

fn parse_hour(raw: Option<i32>) -> Result<u8> {
    raw.and_then(|h| u8::try_from(h).ok())
        .filter(|h| *h <= 23)
        .ok_or_else(|| StoreError::Corrupt(format!("schedule.hour {raw:?}")))
}

fn parse_channel_name(raw: &str) -> Result<ChannelName> {
    ChannelName::parse(raw).map_err(|_| StoreError::Corrupt(format!("channel.name {raw:?}")))
}

/// Maps constraint violations of a write to the errors callers can act on.
fn map_write_error(e: diesel::result::Error, what: &str) -> StoreError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::Conflict(what.to_owned())
        }
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::NotFound(format!("the channel of this {what}"))
        }
        other => StoreError::from(other),
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::StoreError;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_lost_connection_is_the_database_being_unavailable() {
        for lost in [
            database_error(DatabaseErrorKind::ClosedConnection, "closed"),
            database_error(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            database_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "the database system is shutting down",
            ),
            Error::BrokenTransactionManager,
        ] {
            let shown = lost.to_string();
            assert!(
                matches!(StoreError::from(lost), StoreError::Unavailable(_)),
                "{shown}"
            );
        }
    }

    #[test]
    fn a_wrong_query_stays_a_fault() {
        for wrong in [
            database_error(
                DatabaseErrorKind::Unknown,
                "syntax error at or near \"SELEC\"",
            ),
            database_error(
                DatabaseErrorKind::CheckViolation,
                "violates check constraint",
            ),
            Error::NotFound,
        ] {
            let shown = wrong.to_string();
            assert!(
                matches!(StoreError::from(wrong), StoreError::Query(_)),
                "{shown}"
            );
        }
    }
}
