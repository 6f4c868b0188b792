//! The bus's wire types: requests, answers and events exchanged between the API and the
//! host. Defined once and used by both sides, in-process and as JSON over HTTP.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Block, ChannelName};

/// Ask the host for a script without airing it (`POST /script/generate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptRequest {
    /// The block to write for; default: the channel's block for the current hour.
    #[serde(default)]
    pub block: Option<Block>,
    /// The topic; default: the next one in the channel's rotation.
    #[serde(default)]
    pub topic: Option<String>,
    /// The channel; default: the station's default channel.
    #[serde(default)]
    pub channel: Option<ChannelName>,
}

/// A script the host wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Script {
    pub channel: ChannelName,
    pub block: Block,
    pub topic: String,
    pub text: String,
    /// Which writer wrote it, e.g. `template` or `openai`.
    pub writer: String,
}

/// When spoken text airs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpeakMode {
    /// After what is already queued.
    #[default]
    Next,
    /// At once, cutting the current segment short.
    Now,
}

/// Make the host say something (`POST /speak`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeakRequest {
    pub text: String,
    #[serde(default)]
    pub channel: Option<ChannelName>,
    #[serde(default)]
    pub mode: SpeakMode,
}

/// The host accepted a speak request; the segment airs when its turn comes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SpeakAccepted {
    pub segment_id: Uuid,
    pub channel: ChannelName,
    pub mode: SpeakMode,
    /// Segments ahead of this one (0 = airs next or now).
    pub queued_ahead: usize,
}

/// One segment of programme: something the host says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    pub id: Uuid,
    pub block: Option<Block>,
    pub topic: Option<String>,
    pub text: String,
    /// Estimated (or, with audio, measured) length of the segment.
    pub duration_ms: u64,
    /// When it started airing; `None` while it waits.
    pub started_at: Option<DateTime<Utc>>,
}

/// A channel's on-air state, as `GET /now` and the snapshot show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OnAir {
    pub channel: ChannelName,
    /// The block the schedule names for the current hour.
    pub block: Option<Block>,
    /// The topic of what is airing, when it has one.
    #[serde(default)]
    pub topic: Option<String>,
    /// What is airing now, if anything.
    pub segment: Option<Segment>,
    /// What airs next, in order.
    pub next: Vec<Segment>,
    /// The writer and voice backends in use.
    pub writer: String,
    pub voice: String,
    /// Seconds of voiced programme ready to air (the rest of the current segment included).
    pub ready_ahead_secs: f64,
    /// Seconds of dead air (nothing to play) since the host started.
    #[serde(default)]
    pub dead_air_secs: f64,
    /// How well the channel's frame clock has kept time since the host started.
    #[serde(default)]
    pub playout: PlayoutTiming,
    /// The host's connection to the channel's LiveKit room; absent when it does not publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livekit: Option<Box<PublisherStatus>>,
}

/// How well a channel's frame clock keeps time: every 20 ms frame should be rendered when
/// it is due. Lateness is real time, whatever the clock's speed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlayoutTiming {
    /// Frames rendered since the host started.
    pub frames: u64,
    /// Ticks that came more than a frame (20 ms) after they were due.
    pub late_ticks: u64,
    /// Frames never rendered because the playout fell more than 2 s of programme behind (a
    /// stall) and skipped ahead.
    pub skipped_frames: u64,
    /// How late ticks came, in milliseconds.
    pub lateness_ms: Lateness,
}

/// Percentiles of tick lateness, in milliseconds (to 0.1 ms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lateness {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Where the host's LiveKit publisher of a channel stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublisherState {
    /// Joining the room (signalling, track, offer/answer, ICE).
    Connecting,
    /// In the room, the programme's audio flowing.
    Connected,
    /// The last attempt failed or the session dropped; the next attempt is waiting.
    Retrying,
    /// Left the room (the host is shutting down or the channel was removed).
    Stopped,
}

/// The host's LiveKit publisher of a channel, as `GET /now`, the snapshot and `/health` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublisherStatus {
    pub state: PublisherState,
    /// The room (the channel's name) and the host's identity in it (`host-<channel>`).
    pub room: String,
    pub identity: String,
    /// When the publisher entered this state.
    pub since: DateTime<Utc>,
    /// Sessions that reached `connected` since the host started (rejoins = sessions - 1).
    pub sessions: u32,
    /// Failed attempts in a row (0 while connected).
    pub failures: u32,
    /// Why the last attempt or session ended, if one did.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One hour of a channel's schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSlot {
    pub hour: u8,
    pub block: Block,
    pub prompt: Option<String>,
}

/// A channel as the host needs to know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelProgramme {
    pub name: ChannelName,
    pub live: bool,
    pub schedule: Vec<ScheduleSlot>,
}

/// Everything the host needs from the store, pushed by the API (which owns the store), so
/// the host role needs no database. Replaces what the host had before.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Programme {
    pub channels: Vec<ChannelProgramme>,
}

/// Who is speaking in a caption: the host, or a listener on air.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    #[default]
    Host,
    Caller,
}

/// A listener's call, handed to the host to air (`POST /calls`). The API owns the queue and
/// claims the item; the host owns the air and tells how it went with [`HostEvent::CallLive`]
/// and [`HostEvent::CallEnded`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallHandoff {
    /// The queue item's id; the host's events name it.
    pub call_id: Uuid,
    pub channel: ChannelName,
    pub content: CallContent,
}

/// What the caller sent.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CallContent {
    /// A typed call-in: the caller's words.
    Text { text: String },
    /// A recording: mono 16-bit little-endian PCM (`pcm_s16le`), base64 on the wire.
    Audio {
        sample_rate: u32,
        #[serde(with = "base64_bytes")]
        pcm: Vec<u8>,
    },
}

/// Listener data is never logged: `Debug` says only what kind of call it is and how long.
impl std::fmt::Debug for CallHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHandoff")
            .field("call_id", &self.call_id)
            .field("channel", &self.channel)
            .field("content", &self.content)
            .finish()
    }
}

impl std::fmt::Debug for CallContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallContent::Text { text } => write!(f, "Text({} chars)", text.chars().count()),
            CallContent::Audio { sample_rate, pcm } => {
                write!(f, "Audio({sample_rate} Hz, {} bytes)", pcm.len())
            }
        }
    }
}

/// The host took the call: it airs when the current segment ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallAccepted {
    pub call_id: Uuid,
    pub channel: ChannelName,
}

/// How a call ended on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// It aired, and the host answered.
    Done,
    /// It did not air (moderation, a failure, the channel went away); `reason` says why.
    Dropped,
}

/// How many ended calls a [`HostEvent::Hello`] repeats.
pub const RECENT_CALL_REPORTS: usize = 256;

/// How a call went on the host.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallReport {
    pub channel: ChannelName,
    pub call_id: Uuid,
    pub outcome: CallOutcome,
    /// Why it was dropped (`moderation`, `failed: ...`, `channel_removed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a recording said, when it was transcribed. Listener data: not in `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

impl std::fmt::Debug for CallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallReport")
            .field("channel", &self.channel)
            .field("call_id", &self.call_id)
            .field("outcome", &self.outcome)
            .field("reason", &self.reason)
            .field(
                "transcript",
                &self.transcript.as_ref().map(|t| t.chars().count()),
            )
            .finish()
    }
}

/// Bytes as standard base64 in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("audio is not base64: {e}")))
    }
}

/// What the host tells its subscribers, in order. Serialized with a `"type"` tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostEvent {
    /// First event of every subscription (and after a subscriber fell behind): the whole
    /// state, so the subscriber can forget what it had.
    Hello {
        version: String,
        channels: Vec<OnAir>,
        /// The calls the host holds (accepted, not yet ended). A `live` item the host
        /// neither holds nor ended was lost with an earlier host.
        #[serde(default)]
        calls: Vec<Uuid>,
        /// Calls that ended lately (the last [`RECENT_CALL_REPORTS`]), so an API that missed
        /// their `call_ended` still records how they went.
        #[serde(default)]
        ended: Vec<CallReport>,
    },
    SegmentStarted {
        channel: ChannelName,
        segment: Segment,
    },
    /// One sentence, sent when it airs.
    Caption {
        channel: ChannelName,
        segment_id: Uuid,
        index: u32,
        text: String,
        at: DateTime<Utc>,
        /// The host's words, or a caller's on air.
        #[serde(default)]
        speaker: Speaker,
    },
    SegmentEnded {
        channel: ChannelName,
        segment_id: Uuid,
        /// True when a `now` request cut it short.
        interrupted: bool,
    },
    /// What is on air and next changed (a segment was queued): the whole state again.
    OnAir { state: OnAir },
    /// The channel is ready for a caller (a QANDA hour, between segments, with no call on):
    /// the API may hand one over ([`crate::bus::HostBus::take_call`]). Repeated while it
    /// stays so.
    CallerWanted { channel: ChannelName },
    /// The host holds the call: it airs after the current segment. Sent when the host
    /// accepts it, so every API instance knows that no other host has it.
    CallLive { channel: ChannelName, call_id: Uuid },
    /// A call ended: aired and answered (`done`), or not aired (`dropped`, with a reason).
    CallEnded(CallReport),
}

impl HostEvent {
    /// The channel an event concerns; `None` for station-wide events.
    pub fn channel(&self) -> Option<&ChannelName> {
        match self {
            HostEvent::Hello { .. } => None,
            HostEvent::SegmentStarted { channel, .. }
            | HostEvent::Caption { channel, .. }
            | HostEvent::SegmentEnded { channel, .. }
            | HostEvent::CallerWanted { channel }
            | HostEvent::CallLive { channel, .. } => Some(channel),
            HostEvent::CallEnded(report) => Some(&report.channel),
            HostEvent::OnAir { state } => Some(&state.channel),
        }
    }
}

/// `GET /health` of the host role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostHealth {
    pub status: String,
    pub role: String,
    pub version: String,
    /// With the host lease (PostgreSQL configured): `active`, `standby` or `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Listeners of each channel's live stream (each API relay is one).
    #[serde(default)]
    pub stream_listeners: std::collections::BTreeMap<ChannelName, usize>,
    /// Each channel's LiveKit publisher; empty when the host does not publish.
    #[serde(default)]
    pub livekit: std::collections::BTreeMap<ChannelName, PublisherStatus>,
    /// Each channel's frame clock: lateness, late ticks, skipped frames.
    #[serde(default)]
    pub playout: std::collections::BTreeMap<ChannelName, PlayoutTiming>,
}

/// The JSON body of every error answer: `{"error": "snake_code", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_a_type_tag() {
        let ev = HostEvent::Caption {
            channel: ChannelName::parse("radio24").unwrap(),
            segment_id: Uuid::nil(),
            index: 0,
            text: "hi".into(),
            at: DateTime::<Utc>::UNIX_EPOCH,
            speaker: Speaker::Caller,
        };
        let json: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "caption");
        assert_eq!(json["text"], "hi");
        assert_eq!(json["speaker"], "caller");
        assert_eq!(serde_json::from_value::<HostEvent>(json).unwrap(), ev);
    }

    #[test]
    fn speak_requests_default_to_next_and_refuse_unknown_fields() {
        let req: SpeakRequest = serde_json::from_str(r#"{"text":"hi"}"#).unwrap();
        assert_eq!(req.mode, SpeakMode::Next);
        assert!(serde_json::from_str::<SpeakRequest>(r#"{"text":"hi","volume":3}"#).is_err());
        assert!(serde_json::from_str::<SpeakRequest>(r#"{"text":"hi","channel":"Bad!"}"#).is_err());
    }
}
