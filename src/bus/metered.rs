//! [`MeteredBus`]: any [`HostBus`] with its calls counted (`radio24_bus_calls_total`,
//! `radio24_bus_errors_total`, `radio24_bus_call_seconds`, see [`crate::metrics`]). The API
//! wraps the bus it holds, in-process or HTTP, so both implementations are counted the same
//! way, on the caller's side.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    ArchiveFile, ArchiveFileName, ArchiveListing, AudioStream, BusError, CallAccepted, CallHandoff,
    EventStream, HostBus, OnAir, Programme, Script, ScriptRequest, SpeakAccepted, SpeakRequest,
};
use crate::domain::ChannelName;

/// A bus whose calls are counted.
pub struct MeteredBus(Arc<dyn HostBus>);

impl MeteredBus {
    /// `bus`, counted.
    pub fn wrap(bus: Arc<dyn HostBus>) -> Arc<dyn HostBus> {
        Arc::new(Self(bus))
    }
}

/// The `kind` label of a bus error.
fn kind(e: &BusError) -> &'static str {
    match e {
        BusError::Unavailable(_) => "unavailable",
        BusError::Standby(_) => "standby",
        BusError::Timeout(_) => "timeout",
        BusError::Unauthorized => "unauthorized",
        BusError::Rejected { .. } => "rejected",
        BusError::Internal(_) => "internal",
    }
}

async fn metered<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    let started = Instant::now();
    let result = call.await;
    crate::metrics::bus_call(operation, started, result.as_ref().err().map(kind));
    result
}

#[async_trait]
impl HostBus for MeteredBus {
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError> {
        metered("generate_script", self.0.generate_script(req)).await
    }

    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError> {
        metered("speak", self.0.speak(req)).await
    }

    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError> {
        metered("now_playing", self.0.now_playing(channel)).await
    }

    async fn set_programme(&self, programme: Programme) -> Result<(), BusError> {
        metered("set_programme", self.0.set_programme(programme)).await
    }

    async fn take_call(&self, call: CallHandoff) -> Result<CallAccepted, BusError> {
        metered("take_call", self.0.take_call(call)).await
    }

    async fn subscribe(&self) -> Result<EventStream, BusError> {
        metered("subscribe", self.0.subscribe()).await
    }

    async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
        metered("audio_stream", self.0.audio_stream(channel)).await
    }

    async fn archive_list(&self, channel: &ChannelName) -> Result<ArchiveListing, BusError> {
        metered("archive_list", self.0.archive_list(channel)).await
    }

    async fn archive_file(
        &self,
        channel: &ChannelName,
        file: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError> {
        metered("archive_file", self.0.archive_file(channel, file)).await
    }
}
