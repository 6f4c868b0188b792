//! PostgreSQL adapter: diesel-async's `AsyncPgConnection` (pure Rust, no libpq) in a
//! deadpool pool, and migrations from `migrations/postgres` applied under an advisory lock
//! so two processes never migrate at once.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::schema::pg::{channel, schedule};
use super::{
    Channel, Result, ScheduleEntry, Store, StoreError, map_write_error, parse_block,
    parse_channel_name, parse_hour,
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

pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    url: SecretString,
    acquire_timeout: Duration,
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

    async fn set_schedule_slot(
        &self,
        channel_id: Uuid,
        hour: u8,
        block: Block,
        prompt: Option<&str>,
    ) -> Result<ScheduleEntry> {
        let mut conn = self.conn().await?;
        let row: ScheduleRow = diesel::insert_into(schedule::table)
            .values((
                schedule::channel_id.eq(Some(channel_id)),
                schedule::hour.eq(Some(i32::from(hour))),
                schedule::block.eq(block.as_str()),
                schedule::prompt.eq(prompt),
            ))
            .on_conflict((schedule::channel_id, schedule::hour))
            .do_update()
            .set((
                schedule::block.eq(block.as_str()),
                schedule::prompt.eq(prompt),
            ))
            .returning(SCHEDULE_COLUMNS)
            .get_result(&mut conn)
            .await
            .map_err(|e| map_write_error(e, "schedule slot"))?;
        to_entry(row)
    }
}
