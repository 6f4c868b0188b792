//! The switchboard puts callers through to the host. The API owns the queue and the host
//! owns the air; they meet at the bus:
//! - the host says a channel wants a caller (`caller_wanted`: a QANDA hour, between
//!   segments), or an operator asks for the next one (`POST /v1/studio/take-next`);
//! - the switchboard claims the channel's next item (atomic in the store, so two API
//!   instances never take one item) and hands it over with [`HostBus::take_call`]: its text,
//!   or its recording and format;
//! - the host's `call_live` and `call_ended` drive the item's status: `done`, or `dropped`
//!   with the host's reason (the transcript is kept with it).
//!
//! Every API instance hears `caller_wanted` and tries: claims are atomic, so each instance
//! claims a different item (or none), and the host takes the first handover that reaches it
//! and refuses the others as busy (`call_in_progress`). A host that is busy gets the item
//! back in the queue, in its place, uncounted (its caller never sees it `live`); one that
//! refuses it (bad recording, unknown channel) has it dropped with `failed: <code>`. An
//! answer that never came (a timeout, a broken connection) leaves the item `live` until the
//! host says it holds it, or a grace passes ([`confirm_grace`]): then it goes back to the queue.
//!
//! A host that dies takes its calls with it. Every `hello` (the host's first event on each
//! connection) lists the calls the host holds and the last ones that ended: after the
//! grace (handovers in flight, here or on another API instance, settle), each
//! `live` item of the host's channels that it neither holds nor ended is re-queued once
//! (reason `host_lost`); a second time it is dropped with reason `host_lost`. Ended calls
//! the API missed are recorded as they ended.
//!
//! Every API instance hears the host, so a call going live or ending reaches the callers on
//! every instance at once, whichever instance put it through.
//!
//! Items are logged by id only: never their text, transcript or audio.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::queue::CallQueue;
use super::{ApiError, Result};
use crate::bus::{
    BusError, CallContent, CallHandoff, CallOutcome, CallReport, HostBus, HostEvent, Rejection,
};
use crate::db::calls::HOST_LOST;
use crate::db::{CallItem, CallKind, CallStatus, Store};
use crate::domain::ChannelName;
use crate::sync::lock;

/// How long a handover may stay unconfirmed before the item is taken back: a bus request's
/// timeout, twice, and a margin.
pub fn confirm_grace(request_timeout: Duration) -> Duration {
    request_timeout * 2 + Duration::from_secs(1)
}

/// Puts callers through to the host.
pub struct Switchboard {
    store: Arc<dyn Store>,
    bus: Arc<dyn HostBus>,
    queue: Arc<CallQueue>,
    /// Channels with a handover under way from this instance (one at a time per channel).
    dialing: Mutex<HashSet<ChannelName>>,
    /// Items this instance is handing over right now.
    in_flight: Mutex<HashSet<Uuid>>,
    /// Items the host said it holds or ended, since the last `hello`.
    confirmed: Mutex<HashSet<Uuid>>,
    /// Counts `hello`s: a check after an older one gives way to the newer one's.
    hellos: AtomicU64,
    grace: Duration,
}

/// What a handover came to.
#[derive(Debug)]
pub enum PutThrough {
    /// Nothing waits on the channel (or a handover is already under way here).
    Nobody,
    /// The host took this item.
    Taken(CallItem),
    /// The host is busy with a call; the item is back in its place.
    Busy,
}

/// Takes a channel out of `dialing` when the handover ends, however it ends.
struct Dialing<'a> {
    board: &'a Switchboard,
    channel: ChannelName,
}

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        lock(&self.board.dialing).remove(&self.channel);
    }
}

impl Switchboard {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn HostBus>,
        queue: Arc<CallQueue>,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            bus,
            queue,
            dialing: Mutex::new(HashSet::new()),
            in_flight: Mutex::new(HashSet::new()),
            confirmed: Mutex::new(HashSet::new()),
            hellos: AtomicU64::new(0),
            grace,
        })
    }

    /// A host event, in order (from the link). Quick: the work runs on tasks of its own.
    pub fn event(self: &Arc<Self>, event: &HostEvent) {
        match event {
            HostEvent::CallerWanted { channel } => {
                let board = self.clone();
                let channel = channel.clone();
                tokio::spawn(async move {
                    if let Err(e) = board.put_through(&channel).await {
                        tracing::warn!(%channel, error = %e, "could not put a caller through");
                    }
                });
            }
            HostEvent::CallLive { call_id, .. } => {
                lock(&self.confirmed).insert(*call_id);
                // The instance that put it through told its own sockets; every instance
                // hears the host, so this one tells its callers too.
                let board = self.clone();
                let id = *call_id;
                tokio::spawn(async move { board.announce_as_stored(id).await });
            }
            HostEvent::CallEnded(report) => {
                lock(&self.confirmed).insert(report.call_id);
                let board = self.clone();
                let report = report.clone();
                tokio::spawn(async move { board.record(&report).await });
            }
            HostEvent::Hello {
                channels,
                calls,
                ended,
                ..
            } => {
                let generation = self.hellos.fetch_add(1, Ordering::SeqCst) + 1;
                lock(&self.confirmed).clear();
                let board = self.clone();
                let channels: Vec<ChannelName> =
                    channels.iter().map(|c| c.channel.clone()).collect();
                let held: HashSet<Uuid> = calls.iter().copied().collect();
                let ended = ended.clone();
                tokio::spawn(async move {
                    board.reconcile(generation, channels, held, ended).await;
                });
            }
            _ => {}
        }
    }

    /// Claims `channel`'s next item and hands it to the host.
    pub async fn put_through(self: &Arc<Self>, channel: &ChannelName) -> Result<PutThrough> {
        if !lock(&self.dialing).insert(channel.clone()) {
            return Ok(PutThrough::Nobody);
        }
        let _dialing = Dialing {
            board: self.as_ref(),
            channel: channel.clone(),
        };
        let Some(item) = self.store.claim_next_call(channel).await? else {
            return Ok(PutThrough::Nobody);
        };
        tracing::info!(%channel, call = %item.id, "putting a caller through");
        // Announced once the host took it: an item it hands back (busy: another instance's
        // caller got there first) goes back to its place without its caller ever seeing it
        // `live`.
        let content = match item.kind {
            CallKind::Text => CallContent::Text {
                text: item.text.clone().unwrap_or_default(),
            },
            CallKind::Audio => match self.store.call_audio(item.id).await? {
                Some(audio) => CallContent::Audio {
                    sample_rate: audio.sample_rate,
                    pcm: audio.pcm,
                },
                None => {
                    self.finish(
                        &item,
                        CallStatus::Dropped,
                        Some("failed: recording missing"),
                    )
                    .await?;
                    return Ok(PutThrough::Nobody);
                }
            },
        };
        lock(&self.in_flight).insert(item.id);
        let handed = self
            .bus
            .take_call(CallHandoff {
                call_id: item.id,
                channel: channel.clone(),
                content,
            })
            .await;
        lock(&self.in_flight).remove(&item.id);
        match handed {
            Ok(_) => {
                crate::metrics::queue_waited(channel, item.enqueued_at);
                self.announce(item.clone()).await;
                Ok(PutThrough::Taken(item))
            }
            Err(BusError::Rejected {
                kind: Rejection::Busy,
                ..
            }) => {
                self.hand_back(&item).await?;
                Ok(PutThrough::Busy)
            }
            Err(BusError::Rejected { code, message, .. }) => {
                tracing::warn!(call = %item.id, %code, %message, "the host refused a call");
                self.finish(&item, CallStatus::Dropped, Some(&format!("failed: {code}")))
                    .await?;
                Err(ApiError::Host(BusError::rejected(
                    Rejection::BadRequest,
                    code,
                    message,
                )))
            }
            Err(e @ (BusError::Unavailable(_) | BusError::Standby(_) | BusError::Unauthorized)) => {
                // Never delivered: back in its place.
                self.hand_back(&item).await?;
                Err(ApiError::Host(e))
            }
            Err(e) => {
                // The host may have taken it: wait for it to say so.
                self.confirm_later(item.id);
                Err(ApiError::Host(e))
            }
        }
    }

    /// Tells the item's caller and the channel's listeners that it changed.
    async fn announce(&self, item: CallItem) {
        let channel = item.channel.clone();
        self.queue.announce(&channel, vec![item]).await;
    }

    /// Tells this instance's sockets about item `id` as the store has it.
    async fn announce_as_stored(&self, id: Uuid) {
        match self.store.call(id).await {
            Ok(Some(item)) => self.announce(item).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "could not read a call to announce it")
            }
        }
    }

    /// Moves item `id` from `live` to `to` (compare-and-set) and tells everyone; the item
    /// when it moved, `None` when it was no longer live.
    async fn move_live(
        &self,
        id: Uuid,
        to: CallStatus,
        reason: Option<&str>,
    ) -> Result<Option<CallItem>> {
        let moved = self
            .store
            .set_call_status(id, &[CallStatus::Live], to, reason)
            .await?;
        if let Some(item) = &moved {
            self.announce(item.clone()).await;
        }
        Ok(moved)
    }

    /// Back in the queue, unaired and uncounted.
    async fn hand_back(&self, item: &CallItem) -> Result<()> {
        self.move_live(item.id, CallStatus::Queued, None).await?;
        Ok(())
    }

    async fn finish(&self, item: &CallItem, to: CallStatus, reason: Option<&str>) -> Result<()> {
        self.move_live(item.id, to, reason).await?;
        Ok(())
    }

    /// After the grace, takes `id` back unless the host said it holds it.
    fn confirm_later(self: &Arc<Self>, id: Uuid) {
        let board = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(board.grace).await;
            if lock(&board.confirmed).contains(&id) {
                return;
            }
            match board.move_live(id, CallStatus::Queued, None).await {
                Ok(Some(_)) => {
                    tracing::info!(call = %id, "the host never confirmed a call; back in the queue")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(call = %id, error = %e, "could not take a call back"),
            }
        });
    }

    /// Records how a call ended.
    async fn record(&self, report: &CallReport) {
        let to = match report.outcome {
            CallOutcome::Done => CallStatus::Done,
            CallOutcome::Dropped => CallStatus::Dropped,
        };
        if let Some(transcript) = &report.transcript
            && let Err(e) = self
                .store
                .set_call_transcript(report.call_id, transcript)
                .await
        {
            tracing::warn!(call = %report.call_id, error = %e, "could not keep a transcript");
        }
        match self
            .store
            .set_call_status(
                report.call_id,
                &[CallStatus::Live, CallStatus::Queued],
                to,
                report.reason.as_deref().or(Some("aired")),
            )
            .await
        {
            Ok(Some(item)) => {
                tracing::info!(call = %item.id, status = to.as_str(), "call ended");
                self.announce(item).await;
            }
            // Recorded already (by another API instance: tell this one's callers), or
            // dropped by an operator meanwhile.
            Ok(None) => self.announce_as_stored(report.call_id).await,
            Err(e) => {
                tracing::warn!(call = %report.call_id, error = %e, "could not record how a call ended")
            }
        }
    }

    /// After a `hello`: records the ended calls, then (after the grace) re-queues or drops
    /// the `live` items of `channels` that the host neither holds nor ended.
    async fn reconcile(
        &self,
        generation: u64,
        channels: Vec<ChannelName>,
        held: HashSet<Uuid>,
        ended: Vec<CallReport>,
    ) {
        for report in &ended {
            self.record(report).await;
        }
        tokio::time::sleep(self.grace).await;
        if self.hellos.load(Ordering::SeqCst) != generation {
            return;
        }
        let ended: HashSet<Uuid> = ended.iter().map(|r| r.call_id).collect();
        for channel in channels {
            let live = match self.store.live_calls(&channel).await {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "could not check live calls after the host came back");
                    continue;
                }
            };
            for item in live {
                let known = held.contains(&item.id)
                    || ended.contains(&item.id)
                    || lock(&self.confirmed).contains(&item.id)
                    || lock(&self.in_flight).contains(&item.id);
                if known || self.hellos.load(Ordering::SeqCst) != generation {
                    continue;
                }
                let (to, what) = if item.requeues == 0 {
                    (CallStatus::Queued, "re-queued")
                } else {
                    (CallStatus::Dropped, "dropped")
                };
                match self.move_live(item.id, to, Some(HOST_LOST)).await {
                    Ok(Some(_)) => {
                        tracing::warn!(%channel, call = %item.id, "the host lost a live call; {what}");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(call = %item.id, error = %e, "could not re-queue a lost call")
                    }
                }
            }
        }
    }
}
