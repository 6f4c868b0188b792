//! The bus: the one place the API and the host meet. The API holds an `Arc<dyn HostBus>`;
//! in `--role all` that is the host itself (in-process), in `--role api` it is
//! [`HttpHostBus`], a client of the host's HTTP routes ([`http_server`]). Events flow back
//! through [`HostBus::subscribe`], kept alive by [`link::HostLink`]; a channel's live
//! Ogg/Opus audio through [`HostBus::audio_stream`] ([`audio`]); the programme archive
//! through [`HostBus::archive_list`] and [`HostBus::archive_file`] ([`archive`]); listeners' calls
//! through [`HostBus::take_call`], answered by `call_live`/`call_ended` events. The API counts
//! its calls through [`metered::MeteredBus`]. This module imports neither `api` nor `host`.
//!
//! Config keys read here: `bus.host_url`, `bus.token`, `bus.request_timeout_ms`,
//! `bus.connect_timeout_ms`, `bus.reconnect_max_ms`, `bus.tls.*` ([`tls`]).

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::{ChannelName, InvalidInput};

pub mod archive;
pub mod audio;
pub mod google_id;
#[cfg(feature = "api")]
pub mod http_client;
#[cfg(feature = "host")]
pub mod http_server;
pub mod link;
pub mod metered;
pub mod tls;
pub mod wire;

pub use archive::{ArchiveFile, ArchiveFileName, ArchiveListing};
pub use audio::AudioStream;
#[cfg(feature = "api")]
pub use http_client::HttpHostBus;
pub use wire::*;

/// The host's events, in order. It ends when the connection to the host is lost.
pub type EventStream = BoxStream<'static, HostEvent>;

/// Why the host refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The request is malformed or out of bounds (400).
    BadRequest,
    /// It names something the host does not know, e.g. a channel (404).
    NotFound,
    /// The host is at capacity for it, e.g. the channel's queue is full (429).
    Busy,
}

/// Errors of bus calls, the same for both implementations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The host cannot be reached (not running, connection refused, shutting down).
    #[error("host unavailable: {0}")]
    Unavailable(String),
    /// This host is a standby (another host holds the lease and airs) or has stopped
    /// airing: ask the active one. Answered as 503 with the code `standby`.
    #[error("host is a standby: {0}")]
    Standby(String),
    /// The host did not answer in time.
    #[error("host did not answer within {0:?}")]
    Timeout(Duration),
    /// The bus token was missing or wrong.
    #[error("the host refused the bus token")]
    Unauthorized,
    /// The host understood the request and refused it.
    #[error("{message}")]
    Rejected {
        kind: Rejection,
        code: String,
        message: String,
    },
    /// The host failed, or answered something that is not the bus protocol.
    #[error("host error: {0}")]
    Internal(String),
}

impl BusError {
    pub fn rejected(kind: Rejection, code: impl Into<String>, message: impl Into<String>) -> Self {
        BusError::Rejected {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn unknown_channel(channel: &ChannelName) -> Self {
        BusError::rejected(
            Rejection::NotFound,
            "unknown_channel",
            format!("channel {channel:?} is not on this host"),
        )
    }
}

impl From<InvalidInput> for BusError {
    fn from(e: InvalidInput) -> Self {
        BusError::rejected(Rejection::BadRequest, e.code, e.message)
    }
}

/// What the API can ask of the host. Both implementations pass the same contract suite
/// (`tests/api/bus_contract.rs`).
#[async_trait]
pub trait HostBus: Send + Sync + 'static {
    /// Write a script for a block and topic without airing it.
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError>;
    /// Queue text to air next, or now.
    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError>;
    /// What a channel is airing and what comes next.
    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError>;
    /// Replace the host's view of the channels and their schedules.
    async fn set_programme(&self, programme: Programme) -> Result<(), BusError>;
    /// Hand a listener's call to the host to air after the current segment. The host answers
    /// at once; how the call goes comes as [`HostEvent::CallLive`] and
    /// [`HostEvent::CallEnded`]. A channel that already has a call: `Rejected(Busy,
    /// "call_in_progress")`; off air: `Rejected(BadRequest, "channel_off_air")`; a recording
    /// of an unknown rate or too long: `Rejected(BadRequest)`.
    async fn take_call(&self, call: CallHandoff) -> Result<CallAccepted, BusError>;
    /// The host's events from now on, starting with a [`HostEvent::Hello`] snapshot.
    async fn subscribe(&self) -> Result<EventStream, BusError>;
    /// The channel's live Ogg/Opus stream from now on: its two header pages, then live
    /// pages as they air (see [`AudioStream`]). Unknown channel: `Rejected(NotFound)`.
    /// Every call is one listener of the host (the API relays one per channel, see
    /// `api::stream`).
    async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError>;
    /// The channel's recordings, newest first. No archive on the host:
    /// `Rejected(NotFound, "archive_disabled")`; unknown channel: `Rejected(NotFound)`.
    async fn archive_list(&self, channel: &ChannelName) -> Result<ArchiveListing, BusError>;
    /// One recording file (audio or captions) as a byte stream. No such file:
    /// `Rejected(NotFound, "unknown_recording")`; no archive: as [`HostBus::archive_list`].
    async fn archive_file(
        &self,
        channel: &ChannelName,
        file: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError>;
}
