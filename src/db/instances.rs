//! What API instances sharing one database tell each other: their listener counts (a row
//! per instance in `api_instances`, written every heartbeat with the time it was seen, so
//! counts of an instance that stopped drop out once it is stale), and which channel's queue
//! they changed (PostgreSQL `NOTIFY` on [`QUEUE_CHANNEL`], heard by one listening
//! connection per instance; see [`super::pg_listen`]). SQLite serves one instance: its
//! heartbeat works the same and it has no queue feed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::ChannelName;

/// The PostgreSQL notification channel queue changes are announced on.
pub const QUEUE_CHANNEL: &str = "radio24_queue";

/// Most item ids one notification carries (a payload stays well under PostgreSQL's 8000
/// bytes); more are sent in several.
pub const IDS_PER_NOTIFICATION: usize = 100;

/// Who listens to one channel on one instance, or on all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerCounts {
    /// Listeners of the HTTP live stream.
    pub stream: u64,
    /// `/ws/broadcast` clients.
    pub broadcast: u64,
}

impl std::ops::AddAssign for ListenerCounts {
    fn add_assign(&mut self, other: Self) {
        self.stream = self.stream.saturating_add(other.stream);
        self.broadcast = self.broadcast.saturating_add(other.broadcast);
    }
}

/// Listener counts by channel.
pub type ChannelListeners = BTreeMap<ChannelName, ListenerCounts>;

/// What the other live instances (seen within the staleness limit) report, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherInstances {
    /// How many there are (this one not counted).
    pub instances: usize,
    /// Their listeners, summed by channel.
    pub listeners: ChannelListeners,
}

impl OtherInstances {
    /// Sums the rows of other instances as the adapters read them (`listeners` JSON).
    pub(super) fn sum(rows: impl IntoIterator<Item = (Uuid, serde_json::Value)>) -> Result<Self> {
        let mut others = Self::default();
        for (id, listeners) in rows {
            let listeners: ChannelListeners = serde_json::from_value(listeners)
                .map_err(|e| StoreError::Corrupt(format!("api_instances {id}: {e}")))?;
            others.instances += 1;
            for (channel, counts) in listeners {
                *others.listeners.entry(channel).or_default() += counts;
            }
        }
        Ok(others)
    }
}

/// `listeners` as a row holds it.
pub(super) fn listeners_json(listeners: &ChannelListeners) -> Result<serde_json::Value> {
    serde_json::to_value(listeners)
        .map_err(|e| StoreError::Query(diesel::result::Error::SerializationError(Box::new(e))))
}

/// A change of one channel's queue made by another instance, or news that some may have
/// been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSignal {
    /// Another instance changed `channel`'s queue; `ids` are the items that changed (empty:
    /// only the order or length).
    Changed {
        channel: ChannelName,
        ids: Vec<Uuid>,
    },
    /// The feed (re)connected, or fell behind: changes may have been missed, so every
    /// channel's queue is to be read again.
    Missed,
}

/// A notification's payload.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Payload {
    /// The instance that made the change (it does not hear its own).
    pub from: Uuid,
    pub channel: ChannelName,
    #[serde(default)]
    pub ids: Vec<Uuid>,
}

impl Payload {
    /// The payloads announcing a change of `channel` with `ids` (in chunks).
    pub fn chunks(from: Uuid, channel: &ChannelName, ids: &[Uuid]) -> Vec<String> {
        let payload = |ids: &[Uuid]| {
            serde_json::to_string(&Payload {
                from,
                channel: channel.clone(),
                ids: ids.to_vec(),
            })
            .unwrap_or_default()
        };
        if ids.is_empty() {
            return vec![payload(&[])];
        }
        ids.chunks(IDS_PER_NOTIFICATION).map(payload).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn other_instances_are_summed_by_channel() {
        let rows = [
            (
                Uuid::new_v4(),
                json!({"radio24": {"stream": 2, "broadcast": 1}, "other": {"stream": 0, "broadcast": 4}}),
            ),
            (
                Uuid::new_v4(),
                json!({"radio24": {"stream": 1, "broadcast": 5}}),
            ),
        ];
        let others = OtherInstances::sum(rows).unwrap();
        assert_eq!(others.instances, 2);
        let radio24 = ChannelName::parse("radio24").unwrap();
        assert_eq!(
            others.listeners[&radio24],
            ListenerCounts {
                stream: 3,
                broadcast: 6
            }
        );
        assert!(matches!(
            OtherInstances::sum([(Uuid::nil(), json!({"radio24": 3}))]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn payloads_stay_small_and_round_trip() {
        let channel = ChannelName::parse("radio24").unwrap();
        let ids: Vec<Uuid> = (0..250).map(|_| Uuid::new_v4()).collect();
        let chunks = Payload::chunks(Uuid::nil(), &channel, &ids);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() < 8000));
        let back: Vec<Uuid> = chunks
            .iter()
            .flat_map(|c| serde_json::from_str::<Payload>(c).unwrap().ids)
            .collect();
        assert_eq!(back, ids);
        assert_eq!(Payload::chunks(Uuid::nil(), &channel, &[]).len(), 1);
    }
}
