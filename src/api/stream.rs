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
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::bus::audio::listener_stream;
use crate::bus::{AudioStream, BusError, HostBus, Rejection};
use crate::domain::ChannelName;

/// Live pages buffered between the upstream and the listeners' own queues.
const FANOUT_PAGES: usize = 64;
/// First wait before reconnecting a dropped upstream.
const RECONNECT_MIN: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections leave the data consistent: a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
    /// Held while an upstream is being opened, so two first listeners open one upstream.
    opening: tokio::sync::Mutex<()>,
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
            opening: tokio::sync::Mutex::new(()),
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
        let _opening = self.opening.lock().await;
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
