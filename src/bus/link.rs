//! [`HostLink`] keeps the API subscribed to the host's events over any [`HostBus`]:
//! it subscribes, hands each event to a [`LinkHandler`], and when the stream ends or cannot
//! be opened it reconnects with exponential backoff (100 ms doubling up to
//! `bus.reconnect_max_ms`, with jitter). Its [`LinkStatus`] is what `/health` and `/ready`
//! report as the state of the host link, and the `radio24_host_link_up` gauge.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{HostBus, HostEvent};

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// What the subscriber does with the link.
#[async_trait]
pub trait LinkHandler: Send + Sync + 'static {
    /// The stream is (re)opened; called before any of its events are handed over.
    async fn connected(&self);
    /// One event, in order.
    async fn event(&self, event: HostEvent);
    /// The stream is gone; a reconnect follows.
    async fn disconnected(&self);
}

/// The state of the link to the host.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LinkStatus {
    /// `connecting`, `up` or `down`.
    pub state: LinkState,
    /// When it entered that state.
    pub since: DateTime<Utc>,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Successful (re)connections so far.
    pub connects: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Up,
    Down,
}

/// A running subscription; dropping it stops the reconnect loop.
pub struct HostLink {
    status: watch::Receiver<LinkStatus>,
    task: JoinHandle<()>,
}

impl HostLink {
    /// Starts subscribing in the background.
    pub fn spawn(
        bus: Arc<dyn HostBus>,
        handler: Arc<dyn LinkHandler>,
        max_backoff: Duration,
    ) -> Self {
        let (tx, rx) = watch::channel(LinkStatus {
            state: LinkState::Connecting,
            since: Utc::now(),
            error: None,
            connects: 0,
        });
        let task = tokio::spawn(run(bus, handler, tx, max_backoff.max(FIRST_RETRY)));
        Self { status: rx, task }
    }

    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    pub fn is_up(&self) -> bool {
        self.status.borrow().state == LinkState::Up
    }

    /// A receiver that sees every change of state (tests wait on it).
    pub fn watch(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    bus: Arc<dyn HostBus>,
    handler: Arc<dyn LinkHandler>,
    status: watch::Sender<LinkStatus>,
    max_backoff: Duration,
) {
    let mut backoff = FIRST_RETRY;
    let mut connects = 0u64;
    let set = |state, error: Option<String>, connects| {
        crate::metrics::set_host_link_up(state == LinkState::Up);
        status.send_replace(LinkStatus {
            state,
            since: Utc::now(),
            error,
            connects,
        });
    };
    loop {
        match bus.subscribe().await {
            Ok(mut events) => {
                connects += 1;
                backoff = FIRST_RETRY;
                tracing::info!(connects, "host link up");
                set(LinkState::Up, None, connects);
                handler.connected().await;
                while let Some(event) = events.next().await {
                    handler.event(event).await;
                }
                tracing::warn!("host link down: the event stream ended");
                set(
                    LinkState::Down,
                    Some("the event stream ended".into()),
                    connects,
                );
                handler.disconnected().await;
            }
            Err(e) => {
                let error = e.to_string();
                let unchanged = {
                    let now = status.borrow();
                    now.state == LinkState::Down && now.error.as_deref() == Some(error.as_str())
                };
                // Log and restamp only changes, so a host that stays away does not flood logs.
                if !unchanged {
                    tracing::warn!(%error, retry_in = ?backoff, "host link down");
                    set(LinkState::Down, Some(error), connects);
                }
            }
        }
        let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 4);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}
