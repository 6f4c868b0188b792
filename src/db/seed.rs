//! First-start setup: the default channel and its 24-hour schedule, created when absent.
//! Idempotent and safe with two processes starting at once (the store's inserts are
//! conflict-tolerant).

use super::{Channel, Result, Store};
use crate::domain::{Block, ChannelName};

/// Ensures `name` exists with a schedule; returns the channel.
pub async fn ensure_default_channel(
    store: &dyn Store,
    name: &ChannelName,
    schedule: &[Block],
) -> Result<Channel> {
    let (channel, created) = store.ensure_channel(name).await?;
    let inserted = store.seed_schedule(channel.id, schedule).await?;
    if created || inserted > 0 {
        tracing::info!(channel = %name, schedule_rows = inserted, "created the default channel");
    }
    Ok(channel)
}
