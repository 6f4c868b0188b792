//! Keeps the host's view of the programme in step with the store: every time the host link
//! (re)connects, and after every schedule edit, the channels and their schedules are read
//! from the store and pushed over the bus, so a restarted host picks up where it was. A push
//! the host does not take is retried with backoff ([`FIRST_RETRY`] doubling to
//! `bus.reconnect_max_ms`) until one succeeds; a newer push supersedes the retries (each
//! attempt reads the store afresh, so what reaches the host is always the latest). The first
//! failure and the recovery are logged, the attempts between them only at debug level.
//! Host events go to the [`Hub`] and the [`Switchboard`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::hub::Hub;
use super::switchboard::Switchboard;
use crate::bus::link::LinkHandler;
use crate::bus::{BusError, ChannelProgramme, HostBus, HostEvent, Programme, ScheduleSlot};
use crate::db::{Store, StoreError};

/// The wait before the first retry of a push that failed.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Reads the whole programme from the store.
pub async fn load(store: &dyn Store) -> Result<Programme, StoreError> {
    let mut channels = Vec::new();
    for channel in store.list_channels().await? {
        let schedule = store
            .schedule(channel.id)
            .await?
            .into_iter()
            .map(|e| ScheduleSlot {
                hour: e.hour,
                block: e.block,
                prompt: e.prompt,
            })
            .collect();
        channels.push(ChannelProgramme {
            name: channel.name,
            live: channel.live,
            schedule,
        });
    }
    Ok(Programme { channels })
}

/// Pushes the store's programme to the host, once.
pub async fn push(store: &dyn Store, bus: &dyn HostBus) -> anyhow::Result<()> {
    let programme = load(store).await?;
    let channels = programme.channels.len();
    bus.set_programme(programme)
        .await
        .map_err(|e: BusError| anyhow::anyhow!(e))?;
    tracing::debug!(channels, "programme sent to the host");
    Ok(())
}

/// Pushes the programme to the host and retries it until the host has it.
pub struct ProgrammePusher {
    store: Arc<dyn Store>,
    bus: Arc<dyn HostBus>,
    /// One push at a time, each reading the store when it holds this: pushes reach the
    /// host in the order they read the store, so an older programme never lands last.
    sending: tokio::sync::Mutex<()>,
    /// The number of the latest push asked for, and of the latest that reached the host
    /// (pushes are numbered from 1 in the order they are asked for).
    wanted: AtomicU64,
    delivered: AtomicU64,
    /// Failed pushes since the host last took one (the first is logged, and the recovery).
    failures: AtomicU64,
    /// Wakes the retry task.
    retry: Arc<Notify>,
    max_backoff: Duration,
}

impl ProgrammePusher {
    /// The pusher, and its retry task (which ends with it).
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn HostBus>, max_backoff: Duration) -> Arc<Self> {
        let pusher = Arc::new(Self {
            store,
            bus,
            sending: tokio::sync::Mutex::new(()),
            wanted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            retry: Arc::new(Notify::new()),
            max_backoff: max_backoff.max(FIRST_RETRY),
        });
        tokio::spawn(retry_until_delivered(
            Arc::downgrade(&pusher),
            pusher.retry.clone(),
        ));
        pusher
    }

    /// Pushes the store's programme now; whether the host took it. When it did not, the
    /// push is retried in the background until it does (or a newer one does).
    pub async fn push(&self) -> bool {
        let number = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        let delivered = self.attempt(number).await;
        if !delivered {
            self.retry.notify_one();
        }
        delivered
    }

    /// Whether a push is still owed to the host.
    pub fn pending(&self) -> bool {
        self.delivered.load(Ordering::SeqCst) < self.wanted.load(Ordering::SeqCst)
    }

    /// One attempt at the programme as the store has it now, for push `number` (or a later
    /// one: whatever the store holds when the attempt reads it).
    async fn attempt(&self, number: u64) -> bool {
        let _sending = self.sending.lock().await;
        if self.delivered.load(Ordering::SeqCst) >= number {
            // A later push read the store after this one was asked for, and got through.
            return true;
        }
        // Everything asked for up to now is covered by what is read next.
        let covers = self.wanted.load(Ordering::SeqCst);
        match push(self.store.as_ref(), self.bus.as_ref()).await {
            Ok(()) => {
                self.delivered.fetch_max(covers, Ordering::SeqCst);
                let failed = self.failures.swap(0, Ordering::SeqCst);
                if failed > 0 {
                    tracing::info!(
                        failed_attempts = failed,
                        "programme sent to the host after it failed"
                    );
                } else {
                    tracing::info!("programme sent to the host");
                }
                true
            }
            Err(e) => {
                let failed = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                if failed == 1 {
                    tracing::warn!(error = %e, retry_in = ?FIRST_RETRY, "could not send the programme to the host; retrying until it takes it");
                } else {
                    tracing::debug!(error = %e, failed, "the programme still does not reach the host");
                }
                false
            }
        }
    }
}

/// The retry task of a [`ProgrammePusher`]: after a failed push, tries again after
/// [`FIRST_RETRY`], doubling up to the pusher's most, until the host has the latest
/// programme. It holds the pusher only while it works, so it ends with it (the pusher wakes
/// it when it goes).
async fn retry_until_delivered(pusher: Weak<ProgrammePusher>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(mut p) = pusher.upgrade() else {
            return;
        };
        let mut backoff = FIRST_RETRY;
        // A later push that got through may have settled it already.
        while p.pending() {
            let max = p.max_backoff;
            drop(p);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
            let Some(again) = pusher.upgrade() else {
                return;
            };
            p = again;
            let number = p.wanted.load(Ordering::SeqCst);
            p.attempt(number).await;
        }
    }
}

impl Drop for ProgrammePusher {
    fn drop(&mut self) {
        // The retry task wakes, finds the pusher gone, and ends.
        self.retry.notify_one();
    }
}

/// The API's [`LinkHandler`].
pub struct ProgrammeSync {
    pub pusher: Arc<ProgrammePusher>,
    pub hub: Arc<Hub>,
    pub switchboard: Arc<Switchboard>,
}

#[async_trait]
impl LinkHandler for ProgrammeSync {
    async fn connected(&self) {
        self.hub.set_host_connected(true);
        self.pusher.push().await;
    }

    async fn event(&self, event: HostEvent) {
        self.switchboard.event(&event);
        self.hub.apply(event);
    }

    async fn disconnected(&self) {
        self.hub.set_host_connected(false);
    }
}
