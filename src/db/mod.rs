//! The store: channels and schedules (and, later, the call-in queue) behind one [`Store`]
//! trait, with two adapters — [`postgres::PgStore`] (production; the seed's schema exactly,
//! through diesel-async without libpq) and [`sqlite::SqliteStore`] (a file, the default, so
//! `radio24 serve` needs nothing installed). One conformance suite runs against both
//! (`tests/api/store_conformance.rs`). Only the API role links this module.
//!
//! Config keys read here: `database.url` (`DATABASE_URL`), `database.postgres.*`
//! (`POSTGRES_*`), `database.sqlite_path`, `database.max_connections`,
//! `database.acquire_timeout_ms`.

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

/// The store's errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had in time (pool exhausted or database down).
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
    Query(#[from] diesel::result::Error),
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
    ) -> Result<ScheduleEntry>;
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
        other => StoreError::Query(other),
    }
}
