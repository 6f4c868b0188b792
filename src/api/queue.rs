//! The call-in queue as the API runs it: checks what callers send, puts it in the store, and
//! tells everyone concerned when the queue changes: each caller's own sockets (their items'
//! positions and statuses, [`QueueChange`]) and `/ws/broadcast` (the channel's queue length
//! and item ids in order, never text, audio or who sent them). A task drops items that waited
//! longer than `queue.ttl_minutes` and deletes recordings `queue.audio_retention_hours` after
//! their item ended.
//!
//! Changes reach every API instance on the database: each change made here is announced to
//! this instance's sockets and, through the store ([`Store::announce_queue_change`]:
//! PostgreSQL `NOTIFY`), to the other instances, whose announcers hear it on their store's
//! queue feed ([`Store::queue_changes`], one listening connection per instance), read the
//! channel's queue and the changed items, and tell their own sockets exactly as for their
//! own changes. When the feed (re)connects, changes may have been missed: every channel's
//! queue is read again and each caller socket re-reads its items. With SQLite (one instance)
//! there is no feed.
//!
//! Listener audio and call-in text never reach the logs: items are logged by id only.
//!
//! Config keys read (by the caller that builds it): `queue.*`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::api::callers::Caller;
use crate::api::hub::Hub;
use crate::api::{ApiError, Result};
use crate::config::QueueSettings;
use crate::db::{
    CallAudio, CallItem, CallStatus, CallerLimits, EnqueueRefusal, NewCall, QueueSignal, Store,
};
use crate::domain::{ChannelName, InvalidInput, SpokenText};

/// Sample rates a recording may have.
pub const SAMPLE_RATES: [u32; 3] = [16_000, 24_000, 48_000];

/// How often waiting items are checked for expiry and old recordings deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Changes buffered for the sockets; one that falls further behind re-reads its items.
const CHANGES: usize = 1024;

/// A change to one channel's queue: the waiting items in order, and the items whose status
/// changed (each caller's sockets pick out their own).
#[derive(Debug, Clone)]
pub struct QueueChange {
    pub channel: ChannelName,
    /// The `queued` items' ids and callers, first to air first.
    pub order: Arc<Vec<(Uuid, String)>>,
    /// Items that changed status (or were added) in this change.
    pub changed: Vec<CallItem>,
    /// Changes may have been missed (another instance's, while this one did not hear them):
    /// each caller socket of the channel re-reads its items.
    pub resync: bool,
}

impl QueueChange {
    /// `id`'s position (from 1), while it waits.
    pub fn position_of(&self, id: Uuid) -> Option<u32> {
        self.order
            .iter()
            .position(|(item, _)| *item == id)
            .map(|i| i as u32 + 1)
    }
}

/// Most item ids a `queue` frame lists (the first to air); `length` counts them all.
const MAX_LISTED_IDS: usize = 100;

/// What `/ws/broadcast` clients learn of a channel's queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueueSummary {
    pub length: usize,
    pub ids: Vec<Uuid>,
}

/// The limits callers are held to, as the `ready` frame tells them.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct CallLimits {
    pub max_text_chars: usize,
    pub max_audio_secs: u32,
    pub max_frame_bytes: usize,
    pub sample_rates: [u32; 3],
    pub max_waiting: u32,
    pub max_per_hour: u32,
}

/// The queue service.
pub struct CallQueue {
    store: Arc<dyn Store>,
    settings: QueueSettings,
    changes: broadcast::Sender<QueueChange>,
    /// Changes to announce, in order (see [`Announcer`]).
    announcements: mpsc::Sender<Announcement>,
}

/// Changes waiting to be announced before the announcer blocks their senders.
const ANNOUNCE_BACKLOG: usize = 1024;
/// Most changes announced with one read of the queue.
const ANNOUNCE_BATCH: usize = 256;

/// A change to announce; `done` hears when it was.
struct Announcement {
    channel: ChannelName,
    changed: Vec<CallItem>,
    /// Made by this instance (the others are told), or heard from another.
    local: bool,
    /// Changes may have been missed (see [`QueueChange::resync`]).
    resync: bool,
    done: Option<oneshot::Sender<()>>,
}

/// Announces queue changes one batch at a time, in the order they were made or heard: a
/// batch's changes of a channel go out as one [`QueueChange`] built from one read of the
/// queue, so a burst of call-ins costs one read rather than one each, an enqueue need not
/// wait for it, and no announcement overtakes a later one with an older state of the queue.
/// It also hears the other instances' changes (the store's queue feed) and announces them
/// here the same way.
struct Announcer {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    changes: broadcast::Sender<QueueChange>,
}

/// One channel's share of a batch.
struct ChannelBatch {
    channel: ChannelName,
    changed: Vec<CallItem>,
    /// Some change of this instance's is among them: tell the other instances.
    local: bool,
    resync: bool,
}

impl Announcer {
    async fn run(self, mut announcements: mpsc::Receiver<Announcement>) {
        let mut feed = self.store.queue_changes();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = announcements.recv_many(&mut batch, ANNOUNCE_BATCH) => {
                    // Every sender (the queue service) is gone.
                    if n == 0 {
                        return;
                    }
                }
                signal = next_signal(&mut feed) => match signal {
                    Some(signal) => self.heard(signal, &mut batch).await,
                    None => {
                        feed = None;
                        continue;
                    }
                },
            }
            let mut by_channel: Vec<ChannelBatch> = Vec::new();
            for a in &mut batch {
                let changed = std::mem::take(&mut a.changed);
                match by_channel.iter_mut().find(|c| c.channel == a.channel) {
                    Some(c) => {
                        c.changed.extend(changed);
                        c.local |= a.local;
                        c.resync |= a.resync;
                    }
                    None => by_channel.push(ChannelBatch {
                        channel: a.channel.clone(),
                        changed,
                        local: a.local,
                        resync: a.resync,
                    }),
                }
            }
            for c in by_channel {
                self.publish(c).await;
            }
            for a in batch.drain(..) {
                if let Some(done) = a.done {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Turns another instance's change (or news of missed ones) into announcements.
    async fn heard(&self, signal: QueueSignal, batch: &mut Vec<Announcement>) {
        match signal {
            QueueSignal::Changed { channel, ids } => {
                let mut changed = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.store.call(id).await {
                        Ok(Some(item)) => changed.push(item),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(call = %id, error = %e, "could not read a call another instance changed")
                        }
                    }
                }
                batch.push(Announcement {
                    channel,
                    changed,
                    local: false,
                    resync: false,
                    done: None,
                });
            }
            QueueSignal::Missed => match self.store.list_channels().await {
                Ok(channels) => {
                    for channel in channels {
                        batch.push(Announcement {
                            channel: channel.name,
                            changed: Vec::new(),
                            local: false,
                            resync: true,
                            done: None,
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the channels to read their queues again")
                }
            },
        }
    }

    /// Tells the caller sockets and `/ws/broadcast` about a change of a channel's queue, and
    /// the other instances when it was made here.
    async fn publish(&self, batch: ChannelBatch) {
        let ChannelBatch {
            channel,
            changed,
            local,
            resync,
        } = batch;
        if local {
            let ids: Vec<Uuid> = changed.iter().map(|i| i.id).collect();
            if let Err(e) = self.store.announce_queue_change(&channel, &ids).await {
                tracing::warn!(%channel, error = %e, "could not tell the other instances about a queue change");
            }
        }
        let queued = match self.store.queued_calls(&channel).await {
            Ok(queued) => queued,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "could not read the queue to announce a change");
                return;
            }
        };
        let order: Vec<(Uuid, String)> = queued.iter().map(|i| (i.id, i.user_id.clone())).collect();
        crate::metrics::set_queue_depth(&channel, order.len());
        self.hub.room(&channel).set_queue(QueueSummary {
            length: order.len(),
            ids: order
                .iter()
                .take(MAX_LISTED_IDS)
                .map(|(id, _)| *id)
                .collect(),
        });
        // Nobody subscribed is normal.
        let _ = self.changes.send(QueueChange {
            channel,
            order: Arc::new(order),
            changed,
            resync,
        });
    }
}

/// The next signal of the store's queue feed; `None` when it has ended (never, without one).
/// A subscriber that fell behind has missed changes.
async fn next_signal(feed: &mut Option<broadcast::Receiver<QueueSignal>>) -> Option<QueueSignal> {
    let Some(feed) = feed else {
        return std::future::pending().await;
    };
    match feed.recv().await {
        Ok(signal) => Some(signal),
        Err(broadcast::error::RecvError::Lagged(_)) => Some(QueueSignal::Missed),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

impl CallQueue {
    /// The queue service, and its announcer on a task of its own (which ends with it).
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>, settings: QueueSettings) -> Arc<Self> {
        let (changes, _) = broadcast::channel(CHANGES);
        let (announcements, receiver) = mpsc::channel(ANNOUNCE_BACKLOG);
        let announcer = Announcer {
            store: store.clone(),
            hub,
            changes: changes.clone(),
        };
        tokio::spawn(announcer.run(receiver));
        Arc::new(Self {
            store,
            settings,
            changes,
            announcements,
        })
    }

    /// The limits, as callers are told them.
    pub fn limits(&self) -> CallLimits {
        CallLimits {
            max_text_chars: self.settings.max_text_chars,
            max_audio_secs: self.settings.max_audio_secs,
            max_frame_bytes: self.settings.max_frame_bytes,
            sample_rates: SAMPLE_RATES,
            max_waiting: self.settings.max_waiting_per_user,
            max_per_hour: self.settings.max_per_user_per_hour,
        }
    }

    /// Most bytes of PCM a recording at `sample_rate` may have.
    pub fn max_audio_bytes(&self, sample_rate: u32) -> usize {
        self.settings.max_audio_secs as usize * sample_rate as usize * 2
    }

    /// Changes to every channel's queue on this instance, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<QueueChange> {
        self.changes.subscribe()
    }

    /// Checks a typed call-in: trimmed, 1 to `queue.max_text_chars` characters, no control
    /// characters.
    pub fn check_text(&self, raw: &str) -> std::result::Result<String, InvalidInput> {
        SpokenText::parse(raw, self.settings.max_text_chars).map(|t| t.as_str().to_owned())
    }

    /// Checks a recording's announced format.
    pub fn check_format(
        &self,
        encoding: &str,
        sample_rate: u32,
    ) -> std::result::Result<(), InvalidInput> {
        if encoding != "pcm_s16le" {
            return Err(InvalidInput::new(
                "unsupported_encoding",
                "encoding must be pcm_s16le (16-bit little-endian mono PCM)",
            ));
        }
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(InvalidInput::new(
                "unsupported_sample_rate",
                "sample_rate must be 16000, 24000 or 48000",
            ));
        }
        Ok(())
    }

    /// Adds a call-in of `caller` to `channel`'s queue; the item and its position.
    pub async fn enqueue(
        &self,
        channel: &ChannelName,
        caller: &Caller,
        text: Option<String>,
        audio: Option<CallAudio>,
    ) -> Result<(CallItem, u32)> {
        if let Some(audio) = &audio {
            if audio.pcm.is_empty() || audio.pcm.len() % 2 != 0 {
                return Err(InvalidInput::new(
                    "invalid_audio",
                    "the recording is empty or not whole 16-bit samples",
                )
                .into());
            }
        }
        let call = NewCall {
            channel: channel.clone(),
            user_id: caller.user_id.clone(),
            text,
            audio,
        };
        let limits = CallerLimits {
            max_waiting: self.settings.max_waiting_per_user,
            max_per_hour: self.settings.max_per_user_per_hour,
        };
        match self.store.enqueue_call(call, limits).await? {
            Ok((item, position)) => {
                tracing::info!(id = %item.id, %channel, kind = item.kind.as_str(), position, "call-in queued");
                // The caller hears `queued` first (its socket handles changes after this);
                // the rest of the world a moment later.
                self.announce_soon(channel, vec![item.clone()]).await;
                Ok((item, position))
            }
            Err(EnqueueRefusal::TooManyWaiting) => Err(ApiError::Limited {
                code: "too_many_waiting",
                message: format!(
                    "you already have {} call-ins waiting on this channel",
                    limits.max_waiting
                ),
            }),
            Err(EnqueueRefusal::TooManyThisHour) => Err(ApiError::Limited {
                code: "too_many_this_hour",
                message: format!(
                    "you sent {} call-ins to this channel in the last hour; try again later",
                    limits.max_per_hour
                ),
            }),
        }
    }

    /// Withdraws a waiting item of `caller`'s.
    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> Result<CallItem> {
        let not_yours = || {
            ApiError::Invalid(InvalidInput::new(
                "unknown_item",
                "no waiting call-in of yours has that id",
            ))
        };
        let item = self.store.call(id).await?.ok_or_else(not_yours)?;
        if item.user_id != caller.user_id {
            return Err(not_yours());
        }
        let dropped = self
            .store
            .set_call_status(
                id,
                &[CallStatus::Queued],
                CallStatus::Dropped,
                Some("cancelled"),
            )
            .await?
            .ok_or_else(|| {
                ApiError::Invalid(InvalidInput::new(
                    "not_waiting",
                    "that call-in is no longer waiting",
                ))
            })?;
        tracing::info!(%id, "call-in cancelled by its caller");
        self.announce(&dropped.channel, vec![dropped.clone()]).await;
        Ok(dropped)
    }

    /// Tells the caller sockets and `/ws/broadcast` about a change of `channel`'s queue in
    /// which `changed` items changed, and returns once they were told.
    pub async fn announce(&self, channel: &ChannelName, changed: Vec<CallItem>) {
        let (done, told) = oneshot::channel();
        let announcement = Announcement {
            channel: channel.clone(),
            changed,
            local: true,
            resync: false,
            done: Some(done),
        };
        if self.announcements.send(announcement).await.is_ok() {
            let _ = told.await;
        }
    }

    /// As [`Self::announce`], without waiting for it (the announcer keeps the order).
    async fn announce_soon(&self, channel: &ChannelName, changed: Vec<CallItem>) {
        let _ = self
            .announcements
            .send(Announcement {
                channel: channel.clone(),
                changed,
                local: true,
                resync: false,
                done: None,
            })
            .await;
    }

    /// Drops items that waited too long and deletes old recordings, every
    /// [`SWEEP_EVERY`], for as long as the runtime runs.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                let Some(queue) = queue.upgrade() else { return };
                queue.sweep().await;
            }
        });
    }

    async fn sweep(&self) {
        let now = Utc::now();
        let ttl = chrono::Duration::minutes(i64::from(self.settings.ttl_minutes));
        match self.store.expire_calls(now - ttl).await {
            Ok(expired) => {
                let mut channels: Vec<ChannelName> =
                    expired.iter().map(|i| i.channel.clone()).collect();
                channels.sort();
                channels.dedup();
                for channel in channels {
                    let changed: Vec<CallItem> = expired
                        .iter()
                        .filter(|i| i.channel == channel)
                        .cloned()
                        .collect();
                    tracing::info!(%channel, expired = changed.len(), "call-ins expired");
                    self.announce(&channel, changed).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not expire old call-ins"),
        }
        let kept = chrono::Duration::hours(i64::from(self.settings.audio_retention_hours));
        match self.store.purge_call_audio(now - kept).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(recordings = n, "old call-in recordings deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete old call-in recordings"),
        }
    }
}
