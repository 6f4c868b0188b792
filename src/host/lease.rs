//! The host lease: with PostgreSQL configured, a `--role host` process airs only while it
//! holds a PostgreSQL session advisory lock ([`LEASE_KEY`]) on a connection of its own. A
//! second host started against the same database is a standby: it serves its port, answers
//! bus calls with 503 `standby` ([`HostSlot`]), and tries the lock every
//! `host.lease_interval_ms`; when it gets it, it starts the engine and airs.
//!
//! Why a session lock and not a lease row: the server releases it the moment the holder's
//! connection ends — the process killed, the machine gone (once TCP notices) — with no
//! expiry time to choose, no clocks to trust and nothing to clean up; a standby's next try
//! succeeds. A row would need a renewal loop and an expiry, and a takeover could come no
//! sooner than that expiry.
//!
//! The active host checks its lease connection every `host.lease_interval_ms`. When that
//! connection is lost, it keeps airing while it tries to take the lock again on a new
//! connection: if it gets it, nobody else held it and nothing changed; if another host holds
//! it, or the database stays unreachable for `host.lease_grace_ms`, it stops airing (its
//! bus answers `standby`) and the process ends with an error, so that exactly one host airs
//! and its supervisor starts it again, as a standby.
//!
//! Config keys read here: `database.url` / `database.postgres.*` (through the settings),
//! `host.lease_interval_ms`, `host.lease_grace_ms`.

use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Host, HostError};
use crate::bus::{
    ArchiveFile, ArchiveFileName, ArchiveListing, AudioStream, BusError, CallAccepted, CallHandoff,
    EventStream, HostBus, OnAir, Programme, Script, ScriptRequest, SpeakAccepted, SpeakRequest,
};
use crate::domain::ChannelName;

/// The advisory lock key of the on-air host ("radio24h" in ASCII); the migrations use
/// another.
pub const LEASE_KEY: i64 = 0x7261_6469_6f32_3468;

/// Longest wait for the database to answer one lease query or connection.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors of the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The database cannot be reached or did not answer.
    #[error("lease database unavailable: {0}")]
    Database(String),
    /// Another host holds the lease now: this one stopped airing.
    #[error("the host lease was lost ({0}); this host stopped airing")]
    Lost(String),
    /// The engine could not start once the lease was taken.
    #[error("the host could not start: {0}")]
    Start(#[from] HostError),
}

/// What [`LeaseKeeper::spawn`] needs.
#[derive(Clone)]
pub struct LeaseConfig {
    /// The PostgreSQL URL (never logged).
    pub url: SecretString,
    /// How often a standby tries the lock and the active host checks it.
    pub interval: Duration,
    /// How long the active host airs on without its lease connection before it stops.
    pub grace: Duration,
}

/// Where a host role with a lease is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Another host airs; this one waits for the lease.
    Standby,
    /// This host holds the lease and airs.
    Active,
    /// This host stopped airing (shutdown, or the lease was lost).
    Stopped,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Standby => "standby",
            LeaseState::Active => "active",
            LeaseState::Stopped => "stopped",
        }
    }
}

/// The host as the bus routes see it: the engine while this host airs, else a 503
/// `standby` refusal. Without a lease it holds the engine from the start.
#[derive(Clone)]
pub struct HostSlot {
    slot: watch::Receiver<(LeaseState, Option<Host>)>,
    leased: bool,
}

impl HostSlot {
    /// A slot that is always active with `host` (a host role without a database).
    pub fn active(host: Host) -> Self {
        let (_, slot) = watch::channel((LeaseState::Active, Some(host)));
        Self {
            slot,
            leased: false,
        }
    }

    /// True when this host airs only while it holds the lease.
    pub fn leased(&self) -> bool {
        self.leased
    }

    pub fn state(&self) -> LeaseState {
        self.slot.borrow().0
    }

    /// The engine, while this host airs.
    pub fn host(&self) -> Option<Host> {
        let slot = self.slot.borrow();
        match &*slot {
            (LeaseState::Active, Some(host)) => Some(host.clone()),
            _ => None,
        }
    }

    fn on_air(&self) -> Result<Host, BusError> {
        self.host().ok_or_else(|| {
            BusError::Standby(match self.state() {
                LeaseState::Stopped => "this host has stopped airing".into(),
                _ => "this host is a standby; another host is on air".into(),
            })
        })
    }
}

#[async_trait]
impl HostBus for HostSlot {
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError> {
        self.on_air()?.generate_script(req).await
    }

    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError> {
        self.on_air()?.speak(req).await
    }

    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError> {
        self.on_air()?.now_playing(channel).await
    }

    async fn set_programme(&self, programme: Programme) -> Result<(), BusError> {
        self.on_air()?.set_programme(programme).await
    }

    async fn take_call(&self, call: CallHandoff) -> Result<CallAccepted, BusError> {
        self.on_air()?.take_call(call).await
    }

    async fn subscribe(&self) -> Result<EventStream, BusError> {
        self.on_air()?.subscribe().await
    }

    async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
        self.on_air()?.audio_stream(channel).await
    }

    async fn archive_list(&self, channel: &ChannelName) -> Result<ArchiveListing, BusError> {
        self.on_air()?.archive_list(channel).await
    }

    async fn archive_file(
        &self,
        channel: &ChannelName,
        file: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError> {
        self.on_air()?.archive_file(channel, file).await
    }
}

/// Starts the engine once the lease is taken.
pub type StartHost = Box<dyn FnOnce() -> BoxFuture<'static, Result<Host, HostError>> + Send>;

/// Holds the lease in the background: waits as a standby, starts the engine when the lease
/// is taken, and keeps checking it.
pub struct LeaseKeeper {
    slot: HostSlot,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), LeaseError>>>,
}

impl LeaseKeeper {
    /// Starts as a standby; `start` builds the engine when the lease is taken.
    pub fn spawn(config: LeaseConfig, start: StartHost) -> Self {
        let (tx, slot) = watch::channel((LeaseState::Standby, None));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(keep(config, start, tx, stopped));
        Self {
            slot: HostSlot { slot, leased: true },
            stop,
            task: Some(task),
        }
    }

    pub fn slot(&self) -> HostSlot {
        self.slot.clone()
    }

    /// Resolves when the keeper ends on its own: the lease was lost or the engine could not
    /// start (an error), never while it runs.
    pub async fn failed(&mut self) -> LeaseError {
        match self.task.as_mut() {
            Some(task) => {
                let outcome = task.await;
                self.task = None;
                match outcome {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => LeaseError::Lost("the lease keeper ended".into()),
                    Err(e) => LeaseError::Lost(format!("the lease keeper failed: {e}")),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// At shutdown: a standby stops waiting; the active host stops airing (fade, archive,
    /// LiveKit: [`Host::shutdown`]) and then releases the lease.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the lease keeper ended with an error"),
                Err(e) => tracing::warn!(error = %e, "the lease keeper failed"),
            }
        }
    }
}

/// The lock, held on a connection of its own.
struct Lease {
    conn: AsyncPgConnection,
}

#[derive(diesel::QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

fn db_error(e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Database(e.to_string())
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, LeaseError> {
    match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
        Ok(result) => result.map_err(db_error),
        Err(_) => Err(LeaseError::Database(format!(
            "{what}: no answer within {QUERY_TIMEOUT:?}"
        ))),
    }
}

impl Lease {
    /// Connects and tries the lock: `None` when another session holds it.
    async fn try_take(url: &SecretString) -> Result<Option<Self>, LeaseError> {
        let mut conn = bounded(
            "connecting",
            AsyncPgConnection::establish(url.expose_secret()),
        )
        .await?;
        let taken: Taken = bounded(
            "pg_try_advisory_lock",
            diesel::sql_query("SELECT pg_try_advisory_lock($1) AS taken")
                .bind::<BigInt, _>(LEASE_KEY)
                .get_result(&mut conn),
        )
        .await?;
        Ok(taken.taken.then_some(Self { conn }))
    }

    /// Whether the connection, and so the lock, is still there.
    async fn check(&mut self) -> Result<(), LeaseError> {
        bounded(
            "checking the lease",
            diesel::sql_query("SELECT 1").execute(&mut self.conn),
        )
        .await
        .map(|_| ())
    }

    /// Unlocks and closes the connection (closing alone would release it too).
    async fn release(mut self) {
        let unlocked = bounded(
            "pg_advisory_unlock",
            diesel::sql_query("SELECT pg_advisory_unlock($1) AS taken")
                .bind::<BigInt, _>(LEASE_KEY)
                .get_result::<Taken>(&mut self.conn),
        )
        .await;
        match unlocked {
            Ok(_) => tracing::info!("host lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "releasing the host lease; closing its connection releases it")
            }
        }
    }
}

type SlotSender = watch::Sender<(LeaseState, Option<Host>)>;

/// Resolves when shutdown is asked for (or the keeper is dropped).
async fn stop_asked(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn keep(
    config: LeaseConfig,
    start: StartHost,
    slot: SlotSender,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), LeaseError> {
    // Standby: try the lock until it is ours.
    let mut last_error: Option<String> = None;
    let mut said_standby = false;
    let mut lease = loop {
        match Lease::try_take(&config.url).await {
            Ok(Some(lease)) => break lease,
            Ok(None) => {
                if !said_standby {
                    tracing::info!(
                        "standby: another host holds the lease; trying every {:?}",
                        config.interval
                    );
                    said_standby = true;
                }
                last_error = None;
            }
            Err(e) => {
                let error = e.to_string();
                if last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(%error, "standby: cannot try the host lease");
                }
                last_error = Some(error);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = stop_asked(&mut stopped) => {
                slot.send_replace((LeaseState::Stopped, None));
                return Ok(());
            }
        }
    };
    tracing::info!("host lease taken: this host goes on air");
    let host = match start().await {
        Ok(host) => host,
        Err(e) => {
            slot.send_replace((LeaseState::Stopped, None));
            lease.release().await;
            return Err(e.into());
        }
    };
    slot.send_replace((LeaseState::Active, Some(host.clone())));

    // Active: check the lease; on a lost connection, take it again or stop airing.
    let lost = loop {
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = stop_asked(&mut stopped) => break None,
        }
        let Err(e) = lease.check().await else {
            continue;
        };
        tracing::warn!(error = %e, "the host lease's connection is lost; taking the lease again");
        match retake(&config, &mut stopped).await {
            Retake::Taken(new) => {
                tracing::info!("host lease taken again on a new connection; still on air");
                lease = *new;
            }
            Retake::Stop => break None,
            Retake::Lost(why) => break Some(why),
        }
    };
    slot.send_replace((LeaseState::Stopped, None));
    host.shutdown().await;
    match lost {
        None => {
            lease.release().await;
            Ok(())
        }
        Some(why) => {
            tracing::error!(%why, "host lease lost: this host stopped airing");
            Err(LeaseError::Lost(why))
        }
    }
}

enum Retake {
    Taken(Box<Lease>),
    /// Shutdown was asked for meanwhile.
    Stop,
    Lost(String),
}

/// Tries to take the lock again on new connections for up to `config.grace`.
async fn retake(config: &LeaseConfig, stopped: &mut watch::Receiver<bool>) -> Retake {
    let deadline = Instant::now() + config.grace;
    loop {
        match Lease::try_take(&config.url).await {
            Ok(Some(lease)) => return Retake::Taken(Box::new(lease)),
            Ok(None) => return Retake::Lost("another host holds it".into()),
            Err(e) if Instant::now() >= deadline => {
                return Retake::Lost(format!(
                    "the database was unreachable for {:?}: {e}",
                    config.grace
                ));
            }
            Err(e) => tracing::warn!(error = %e, "taking the host lease again"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = stop_asked(stopped) => return Retake::Stop,
        }
    }
}

/// A [`StartHost`] from a function returning a future.
pub fn start_with<F, Fut>(f: F) -> StartHost
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Host, HostError>> + Send + 'static,
{
    Box::new(move || Box::pin(f()))
}
