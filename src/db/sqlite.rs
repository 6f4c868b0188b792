//! SQLite adapter: a file (default `data/radio24.db`, created with its folder on first
//! start) in WAL mode with a busy timeout, so the API's workers (and a second process) can
//! share it. Queries run through diesel-async's `SyncConnectionWrapper` on blocking threads.
//! Migrations from `migrations/sqlite` are applied on open, inside one IMMEDIATE
//! transaction so two processes starting at once do not both apply them.

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

use super::schema::sqlite::{channel, schedule};
use super::{
    Channel, Result, ScheduleEntry, Store, StoreError, map_write_error, parse_block,
    parse_channel_name, parse_hour,
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
        };
        store.ping().await?;
        tracing::info!(file = %path.display(), "SQLite store open");
        Ok(store)
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

    async fn set_schedule_slot(
        &self,
        channel_id: Uuid,
        hour: u8,
        block: Block,
        prompt: Option<&str>,
    ) -> Result<ScheduleEntry> {
        let mut conn = self.conn().await?;
        let channel_key = channel_id.to_string();
        diesel::insert_into(schedule::table)
            .values((
                schedule::id.eq(Uuid::now_v7().to_string()),
                schedule::channel_id.eq(Some(channel_key.clone())),
                schedule::hour.eq(Some(i32::from(hour))),
                schedule::block.eq(block.as_str()),
                schedule::prompt.eq(prompt),
                schedule::created_at.eq(Some(Utc::now())),
            ))
            .on_conflict((schedule::channel_id, schedule::hour))
            .do_update()
            .set((
                schedule::block.eq(block.as_str()),
                schedule::prompt.eq(prompt),
            ))
            .execute(&mut conn)
            .await
            .map_err(|e| map_write_error(e, "schedule slot"))?;
        let row: ScheduleRow = schedule::table
            .filter(schedule::channel_id.eq(&channel_key))
            .filter(schedule::hour.eq(Some(i32::from(hour))))
            .select(SCHEDULE_COLUMNS)
            .first(&mut conn)
            .await?;
        to_entry(row)
    }
}
