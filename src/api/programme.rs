//! Keeps the host's view of the programme in step with the store: every time the host link
//! (re)connects, the channels and their schedules are read from the store and pushed over
//! the bus, so a restarted host picks up where it was. Host events go to the [`Hub`] and the
//! [`Switchboard`].

use std::sync::Arc;

use async_trait::async_trait;

use super::hub::Hub;
use super::switchboard::Switchboard;
use crate::bus::link::LinkHandler;
use crate::bus::{BusError, ChannelProgramme, HostBus, HostEvent, Programme, ScheduleSlot};
use crate::db::{Store, StoreError};

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

/// Pushes the store's programme to the host.
pub async fn push(store: &dyn Store, bus: &dyn HostBus) -> anyhow::Result<()> {
    let programme = load(store).await?;
    let channels = programme.channels.len();
    bus.set_programme(programme)
        .await
        .map_err(|e: BusError| anyhow::anyhow!(e))?;
    tracing::info!(channels, "programme sent to the host");
    Ok(())
}

/// The API's [`LinkHandler`].
pub struct ProgrammeSync {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn HostBus>,
    pub hub: Arc<Hub>,
    pub switchboard: Arc<Switchboard>,
}

#[async_trait]
impl LinkHandler for ProgrammeSync {
    async fn connected(&self) {
        self.hub.set_host_connected(true);
        if let Err(e) = push(self.store.as_ref(), self.bus.as_ref()).await {
            tracing::error!(error = %e, "could not send the programme to the host; it keeps its defaults");
        }
    }

    async fn event(&self, event: HostEvent) {
        self.switchboard.event(&event);
        self.hub.apply(event);
    }

    async fn disconnected(&self) {
        self.hub.set_host_connected(false);
    }
}
