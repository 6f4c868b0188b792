//! The LiveKit publisher: the host joins each channel's LiveKit room as `host-<channel>` and
//! publishes one Opus audio track (48 kHz) carrying the programme, so LiveKit fans it out to
//! the listeners who joined with `POST /v1/room/join`. Pure Rust: `livekit-signaling` for the
//! signalling WebSocket (protobuf from `livekit-protocol`), webrtc-rs for the peer
//! connections, libopus for the encoder (see [`session`] for the handshake).
//!
//! One task per channel ([`Publisher`]) keeps a session up. It mints its own token (publish
//! only, nothing to subscribe to), joins, publishes, and sends the playout's frames once the
//! publisher PeerConnection reports `connected`. It stays in the room across segments. When
//! the signalling socket or the PeerConnection drops (a network blip, a LiveKit restart, the
//! server asking it to leave) the session ends and the task joins again: at once after a
//! session that had connected, then 250 ms doubling to `livekit.reconnect_max_ms` while
//! attempts fail. [`Publisher::shutdown`] sends `Leave` and closes the connections. Every
//! change of state is recorded on the channel ([`PublisherStatus`] in its `OnAir`), so
//! `GET /now`, the broadcast snapshot and `/health` show it.
//!
//! Config keys read here: `livekit.api_key`, `livekit.api_secret`, `livekit.ws_url`,
//! `livekit.publish`, `livekit.publish_url`, `livekit.publish_bitrate`,
//! `livekit.reconnect_max_ms`.

mod session;

use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{PublisherState, PublisherStatus};
use crate::domain::ChannelName;
use crate::host::station::ChannelStation;

/// First wait after a failed attempt; it doubles up to `reconnect_max`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Where and how the host publishes (`livekit.*`).
#[derive(Debug, Clone)]
pub struct LivekitConfig {
    /// The LiveKit server the host connects to (`publish_url`, else `ws_url`).
    pub url: String,
    pub api_key: String,
    pub api_secret: SecretString,
    /// Opus bitrate of the track, bits per second.
    pub bitrate: u32,
    /// Longest wait between two attempts.
    pub reconnect_max: Duration,
}

/// Why a session could not start, or ended.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("could not mint the host's access token: {0}")]
    Token(String),
    #[error("signalling: {0}")]
    Signal(#[from] livekit_signaling::SignalError),
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::Error),
    #[error("Opus encoder: {0}")]
    Opus(#[from] opus::Error),
    /// The session was up and ended: signalling closed, the PeerConnection failed, the
    /// server asked the host to leave.
    #[error("{0}")]
    Dropped(String),
    #[error("not connected within {0:?} of joining")]
    Timeout(Duration),
}

/// A channel's publisher task. Dropping it stops the task (after it leaves the room).
pub struct Publisher {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The task sees the flag, leaves the room and ends by itself.
        let _ = self.stop.send(true);
    }
}

impl Publisher {
    /// Starts publishing the station's programme into the room named after its channel.
    pub fn spawn(station: &Arc<ChannelStation>, config: LivekitConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(
            Arc::downgrade(station),
            station.name.clone(),
            config,
            stopped,
        ));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Leaves the room and waits until the connections are closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Records the publisher's state on its channel (and so in `OnAir`).
struct Reporter {
    station: Weak<ChannelStation>,
    status: PublisherStatus,
}

impl Reporter {
    fn set(&mut self, state: PublisherState, last_error: Option<String>) {
        self.status.state = state;
        self.status.since = chrono::Utc::now();
        if last_error.is_some() {
            self.status.last_error = last_error;
        }
        if let Some(station) = self.station.upgrade() {
            station.set_livekit_status(self.status.clone());
        }
    }
}

/// The wait before the next attempt after one more failure.
fn next_backoff(previous: Duration, max: Duration) -> Duration {
    (previous * 2).clamp(FIRST_BACKOFF, max.max(FIRST_BACKOFF))
}

/// Keeps a session up until told to stop (or the channel is gone).
async fn supervise(
    station: Weak<ChannelStation>,
    channel: ChannelName,
    config: LivekitConfig,
    mut stop: watch::Receiver<bool>,
) {
    let identity = format!("host-{channel}");
    let mut reporter = Reporter {
        station: station.clone(),
        status: PublisherStatus {
            state: PublisherState::Connecting,
            room: channel.to_string(),
            identity: identity.clone(),
            since: chrono::Utc::now(),
            sessions: 0,
            failures: 0,
            last_error: None,
        },
    };
    let target = session::Target {
        channel: &channel,
        identity: &identity,
        config: &config,
    };
    let mut backoff = Duration::ZERO;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(frames) = station.upgrade().map(|s| s.playout.subscribe()) else {
            break;
        };
        reporter.set(PublisherState::Connecting, None);
        let mut connected = false;
        let outcome = session::run(&target, frames, &mut stop, || {
            connected = true;
            reporter.status.sessions += 1;
            reporter.status.failures = 0;
            reporter.set(PublisherState::Connected, None);
            tracing::info!(%channel, %identity, url = %config.url, "publishing into the LiveKit room");
        })
        .await;
        match outcome {
            Ok(()) => break,
            Err(e) => {
                let message = e.to_string();
                if connected {
                    tracing::warn!(%channel, error = %message, "left the LiveKit room; rejoining");
                    backoff = Duration::ZERO;
                } else {
                    reporter.status.failures += 1;
                    backoff = next_backoff(backoff, config.reconnect_max);
                    tracing::warn!(
                        %channel,
                        url = %config.url,
                        error = %message,
                        failures = reporter.status.failures,
                        retry_in_ms = backoff.as_millis() as u64,
                        "could not publish into the LiveKit room"
                    );
                }
                reporter.set(PublisherState::Retrying, Some(message));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    reporter.set(PublisherState::Stopped, None);
    tracing::info!(%channel, "LiveKit publisher stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_between_failed_attempts_doubles_up_to_the_limit() {
        let max = Duration::from_secs(2);
        let mut backoff = Duration::ZERO;
        let waits: Vec<u64> = (0..6)
            .map(|_| {
                backoff = next_backoff(backoff, max);
                backoff.as_millis() as u64
            })
            .collect();
        assert_eq!(waits, vec![250, 500, 1000, 2000, 2000, 2000]);
        // A limit below the first wait does not make the clamp panic.
        assert_eq!(
            next_backoff(Duration::ZERO, Duration::from_millis(100)),
            FIRST_BACKOFF
        );
    }
}
