//! The API's relay of live audio: per channel ONE upstream [`HostBus::audio_stream`] (one
//! HTTP connection to the host in split mode, one in-process listener in `all`), fanned out
//! to every listener of `GET /v1/channels/{name}/stream` on this instance. The upstream is
//! opened by the first listener, kept while anyone listens (reconnecting with backoff when
//! it drops), and closed when the last listener has gone. The relay keeps the two header
//! pages and replays them to each new listener, so every listener gets a valid Ogg stream;
//! live pages go through [`listener_stream`], which drops a listener that falls
//! `stream.listener_buffer_pages` behind rather than wait for it.
//!
//! An upstream that cannot be reopened within `bus.request_timeout_ms` ends the listeners
//! (their players reconnect and get 503 until the host is back) rather than leave them on
//! silence. After a reconnect the host normally sends the same header pages (its encoder lives as
//! long as the channel) and listeners carry on. Different headers mean a new Ogg stream
//! (the host restarted): a player cannot splice that into the old one, so the relay ends
//! the current listeners (their players reconnect) and serves the new stream to new ones.
//!
//! Config keys read here: `stream.listener_buffer_pages`, `bus.request_timeout_ms`,
//! `bus.reconnect_max_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::bus::audio::listener_stream;
use crate::bus::{AudioStream, BusError, HostBus, Rejection};
use crate::domain::ChannelName;
use crate::sync::lock;

/// Live pages buffered between the upstream and the listeners' own queues.
const FANOUT_PAGES: usize = 64;
/// First wait before reconnecting a dropped upstream.
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Settings of the relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Pages a listener may fall behind by before it is dropped.
    pub listener_buffer_pages: usize,
    /// How long opening the upstream (up to its header pages) may take.
    pub open_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
}

/// Every channel's relay on this API instance.
pub struct StreamRelay {
    bus: Arc<dyn HostBus>,
    config: RelayConfig,
    relays: Mutex<HashMap<ChannelName, Arc<Relay>>>,
    /// Per channel, held while its upstream is being opened, so two first listeners open one
    /// upstream; one lock per channel, so a slow or failing host stream of one channel never
    /// delays the listeners of another. Entries stay (one per channel ever listened to: the
    /// routes only ask for channels in the store).
    opening: Mutex<HashMap<ChannelName, Arc<tokio::sync::Mutex<()>>>>,
}

struct Relay {
    channel: ChannelName,
    headers: Mutex<Vec<Bytes>>,
    /// Replaced (ending the current listeners) when the host starts a new Ogg stream.
    pages: Mutex<broadcast::Sender<Bytes>>,
    listeners: Arc<AtomicUsize>,
    stopped: AtomicBool,
}

impl StreamRelay {
    /// A relay with no upstream yet: each channel's opens with its first listener.
    pub fn new(bus: Arc<dyn HostBus>, config: RelayConfig) -> Arc<Self> {
        Arc::new(Self {
            bus,
            config,
            relays: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
        })
    }

    /// Listeners of each channel on this instance.
    pub fn listeners(&self) -> BTreeMap<ChannelName, usize> {
        lock(&self.relays)
            .iter()
            .map(|(name, r)| (name.clone(), r.listeners.load(Ordering::Relaxed)))
            .collect()
    }

    /// Listeners of `channel` on this instance.
    pub fn listeners_of(&self, channel: &ChannelName) -> usize {
        lock(&self.relays)
            .get(channel)
            .map_or(0, |r| r.listeners.load(Ordering::Relaxed))
    }

    /// A new listener of `channel`: its header pages, then live pages. Opens the upstream
    /// if this is the channel's first listener; its errors are the bus's (unknown channel,
    /// host unavailable, …).
    pub async fn listen(self: &Arc<Self>, channel: &ChannelName) -> Result<AudioStream, BusError> {
        if let Some(listener) = self.join(channel) {
            return Ok(listener);
        }
        let opening = lock(&self.opening)
            .entry(channel.clone())
            .or_default()
            .clone();
        let _opening = opening.lock().await;
        if let Some(listener) = self.join(channel) {
            return Ok(listener);
        }
        let (headers, upstream) = self.open(channel).await?;
        let (pages, _) = broadcast::channel(FANOUT_PAGES);
        let relay = Arc::new(Relay {
            channel: channel.clone(),
            headers: Mutex::new(headers),
            pages: Mutex::new(pages),
            listeners: Arc::new(AtomicUsize::new(0)),
            stopped: AtomicBool::new(false),
        });
        let listener = {
            let mut relays = lock(&self.relays);
            relays.insert(channel.clone(), relay.clone());
            self.subscribe(&relay)
        };
        tracing::info!(%channel, "stream relay: upstream opened");
        tokio::spawn(pump(Arc::downgrade(self), relay, upstream));
        Ok(listener)
    }

    /// Joins a running relay (under the registry lock, so it cannot stop meanwhile).
    fn join(&self, channel: &ChannelName) -> Option<AudioStream> {
        let relays = lock(&self.relays);
        let relay = relays.get(channel)?;
        if relay.stopped.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.subscribe(relay))
    }

    fn subscribe(&self, relay: &Relay) -> AudioStream {
        let receiver = lock(&relay.pages).subscribe();
        listener_stream(
            lock(&relay.headers).clone(),
            receiver,
            relay.listeners.clone(),
            self.config.listener_buffer_pages,
            "api",
        )
    }

    /// Opens the upstream and reads its two header pages.
    async fn open(&self, channel: &ChannelName) -> Result<(Vec<Bytes>, AudioStream), BusError> {
        let timeout = self.config.open_timeout;
        tokio::time::timeout(timeout, async {
            let mut upstream = self.bus.audio_stream(channel).await?;
            let mut headers = Vec::with_capacity(2);
            while headers.len() < 2 {
                match upstream.next().await {
                    Some(page) => headers.push(page),
                    None => {
                        return Err(BusError::Unavailable(
                            "the host's stream ended before its headers".into(),
                        ));
                    }
                }
            }
            Ok((headers, upstream))
        })
        .await
        .map_err(|_| BusError::Timeout(timeout))?
    }

    /// Stops the relay if nobody listens; true if it stopped.
    fn stop_if_unheard(&self, relay: &Arc<Relay>) -> bool {
        let mut relays = lock(&self.relays);
        if relay.listeners.load(Ordering::Relaxed) > 0 {
            return false;
        }
        self.remove(&mut relays, relay);
        true
    }

    fn remove(&self, relays: &mut HashMap<ChannelName, Arc<Relay>>, relay: &Arc<Relay>) {
        relay.stopped.store(true, Ordering::Relaxed);
        if relays
            .get(&relay.channel)
            .is_some_and(|r| Arc::ptr_eq(r, relay))
        {
            relays.remove(&relay.channel);
        }
    }
}

/// Moves upstream pages to the listeners; reconnects while anyone listens.
async fn pump(owner: Weak<StreamRelay>, relay: Arc<Relay>, mut upstream: AudioStream) {
    let channel = relay.channel.clone();
    let Some(reconnect_max) = owner.upgrade().map(|o| o.config.reconnect_max) else {
        return;
    };
    loop {
        while let Some(page) = upstream.next().await {
            // No receiver for a moment is fine: the page is simply not heard.
            let _ = lock(&relay.pages).send(page);
            if relay.listeners.load(Ordering::Relaxed) == 0 {
                let Some(owner) = owner.upgrade() else { return };
                if owner.stop_if_unheard(&relay) {
                    tracing::info!(%channel, "stream relay: last listener left; upstream closed");
                    return;
                }
            }
        }
        drop(upstream);
        tracing::warn!(%channel, "stream relay: upstream ended; reconnecting");
        let lost_at = tokio::time::Instant::now();
        let mut delay = RECONNECT_MIN;
        upstream = loop {
            let Some(owner) = owner.upgrade() else { return };
            if owner.stop_if_unheard(&relay) {
                return;
            }
            if lost_at.elapsed() > owner.config.open_timeout {
                // Listeners should not hang on silence: end them; their players reconnect
                // and are told 503 until the host is back.
                tracing::warn!(%channel, "stream relay: the host stays unreachable; listeners end");
                let mut relays = lock(&owner.relays);
                owner.remove(&mut relays, &relay);
                return;
            }
            match owner.open(&channel).await {
                Ok((headers, upstream)) => {
                    let mut current = lock(&relay.headers);
                    if *current != headers {
                        tracing::info!(%channel, "stream relay: the host began a new stream; listeners restart");
                        *current = headers;
                        // Dropping the old sender ends the listeners of the old stream.
                        *lock(&relay.pages) = broadcast::channel(FANOUT_PAGES).0;
                    }
                    break upstream;
                }
                Err(BusError::Rejected {
                    kind: Rejection::NotFound,
                    ..
                }) => {
                    tracing::info!(%channel, "stream relay: the channel is gone; listeners end");
                    let mut relays = lock(&owner.relays);
                    owner.remove(&mut relays, &relay);
                    return;
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, ?delay, "stream relay: reconnect failed");
                }
            }
            drop(owner);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(reconnect_max);
        };
    }
}

impl crate::api::hub::StreamListeners for StreamRelay {
    fn stream_listeners(&self, channel: &ChannelName) -> usize {
        self.listeners_of(channel)
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::bus::{
        ArchiveFile, ArchiveFileName, ArchiveListing, CallAccepted, CallHandoff, EventStream,
        OnAir, Programme, Script, ScriptRequest, SpeakAccepted, SpeakRequest,
    };

    const HEADERS: [&[u8]; 2] = [b"OpusHead", b"OpusTags"];

    /// A host whose `stalled` channel never answers a stream request (as a hung host or a
    /// black-holed connection), and whose other channels answer with their two header pages
    /// and then stay quiet. Every stream request is reported on `asked`.
    struct StallingHost {
        stalled: ChannelName,
        asked: mpsc::UnboundedSender<ChannelName>,
    }

    fn not_here() -> BusError {
        BusError::Unavailable("not part of this fake".into())
    }

    #[async_trait]
    impl HostBus for StallingHost {
        async fn generate_script(&self, _: ScriptRequest) -> Result<Script, BusError> {
            Err(not_here())
        }
        async fn speak(&self, _: SpeakRequest) -> Result<SpeakAccepted, BusError> {
            Err(not_here())
        }
        async fn now_playing(&self, _: &ChannelName) -> Result<OnAir, BusError> {
            Err(not_here())
        }
        async fn set_programme(&self, _: Programme) -> Result<(), BusError> {
            Err(not_here())
        }
        async fn take_call(&self, _: CallHandoff) -> Result<CallAccepted, BusError> {
            Err(not_here())
        }
        async fn subscribe(&self) -> Result<EventStream, BusError> {
            Err(not_here())
        }
        async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
            let _ = self.asked.send(channel.clone());
            if *channel == self.stalled {
                return futures::future::pending().await;
            }
            let headers = HEADERS.map(Bytes::from_static);
            Ok(futures::stream::iter(headers)
                .chain(futures::stream::pending())
                .boxed())
        }
        async fn archive_list(&self, _: &ChannelName) -> Result<ArchiveListing, BusError> {
            Err(not_here())
        }
        async fn archive_file(
            &self,
            _: &ChannelName,
            _: &ArchiveFileName,
        ) -> Result<ArchiveFile, BusError> {
            Err(not_here())
        }
    }

    /// On a paused clock nothing times out unless every task waits on time: had the second
    /// channel's open waited for the first's, the runtime would have jumped to the first's
    /// open timeout and failed it. No wall-clock time is measured.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_upstream_of_one_channel_does_not_hold_up_another_channels_listeners() {
        let stalled = ChannelName::parse("stalled").unwrap();
        let live = ChannelName::parse("live").unwrap();
        let (asked, mut requests) = mpsc::unbounded_channel();
        let open_timeout = Duration::from_secs(3600);
        let relay = StreamRelay::new(
            Arc::new(StallingHost {
                stalled: stalled.clone(),
                asked,
            }),
            RelayConfig {
                listener_buffer_pages: 8,
                open_timeout,
                reconnect_max: Duration::from_secs(1),
            },
        );
        let started = tokio::time::Instant::now();
        let first_listener = tokio::spawn({
            let (relay, stalled) = (relay.clone(), stalled.clone());
            async move { relay.listen(&stalled).await.map(|_| ()) }
        });
        assert_eq!(requests.recv().await.as_ref(), Some(&stalled));

        let mut listener = match relay.listen(&live).await {
            Ok(listener) => listener,
            Err(e) => panic!("the live channel's listener was refused: {e}"),
        };
        for header in HEADERS {
            assert_eq!(listener.next().await.as_deref(), Some(header));
        }
        assert!(
            !first_listener.is_finished(),
            "the stalled channel's open must still be waiting: {:?}",
            first_listener.await
        );
        assert!(
            started.elapsed() < open_timeout,
            "the live channel waited out the stalled one's open timeout"
        );
        assert_eq!(relay.listeners_of(&live), 1);
        assert_eq!(relay.listeners_of(&stalled), 0);
        first_listener.abort();
    }
}
