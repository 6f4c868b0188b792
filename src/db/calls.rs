//! The call-in queue's rows: what a listener sent (text, or audio kept in a table of its
//! own), its place, and its state, `queued` → `live` → `done` | `dropped`. The seed's `queue`
//! table holds them as they are (`user_id`, `kind`, `text`, `status`, `enqueued_at`); what
//! the seed has no column for lives in `meta` (JSON): channel, priority, duration, sample
//! rate, transcript, reason, requeues, ended_at. The audio is in `queue_audio` (additive),
//! deleted `queue.audio_retention_hours` after its item ends.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Result, StoreError};
use crate::domain::ChannelName;

/// The reason an item goes back from `live` to `queued` when its host was lost (it counts in
/// `requeues`; a second loss drops it). An item handed back unaired (the host was busy)
/// goes back without a reason and is not counted.
pub const HOST_LOST: &str = "host_lost";

/// `queue.kind`. (The seed also allows `phone`, which nothing creates yet.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Text,
    Audio,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Text => "text",
            CallKind::Audio => "audio",
        }
    }
}

/// `queue.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Queued,
    Live,
    Done,
    Dropped,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Live => "live",
            CallStatus::Done => "done",
            CallStatus::Dropped => "dropped",
        }
    }

    /// `done` or `dropped`: the item will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, CallStatus::Done | CallStatus::Dropped)
    }
}

impl std::str::FromStr for CallStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "queued" => Ok(CallStatus::Queued),
            "live" => Ok(CallStatus::Live),
            "done" => Ok(CallStatus::Done),
            "dropped" => Ok(CallStatus::Dropped),
            _ => Err(()),
        }
    }
}

/// A recording a caller sent: 16-bit little-endian mono PCM.
#[derive(Clone, PartialEq, Eq)]
pub struct CallAudio {
    /// 16000, 24000 or 48000.
    pub sample_rate: u32,
    /// The samples, `pcm_s16le` (so an even number of bytes).
    pub pcm: Vec<u8>,
}

impl CallAudio {
    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        (self.pcm.len() as u64 / 2) * 1000 / u64::from(self.sample_rate.max(1))
    }
}

/// Listener audio is never logged: its `Debug` says only how long it is.
impl std::fmt::Debug for CallAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CallAudio({} Hz, {} ms)",
            self.sample_rate,
            self.duration_ms()
        )
    }
}

/// A call-in to add to the queue.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub channel: ChannelName,
    pub user_id: String,
    /// Text calls: what the caller typed. Audio calls: `None`.
    pub text: Option<String>,
    /// Audio calls: the recording. Text calls: `None`.
    pub audio: Option<CallAudio>,
}

impl NewCall {
    pub fn kind(&self) -> CallKind {
        if self.audio.is_some() {
            CallKind::Audio
        } else {
            CallKind::Text
        }
    }
}

/// What one caller may have in the queue (`queue.max_waiting_per_user`,
/// `queue.max_per_user_per_hour`). Checked in the same transaction as the insert, so two
/// sockets of one caller cannot both slip under a limit.
#[derive(Debug, Clone, Copy)]
pub struct CallerLimits {
    /// Items of the caller's on the channel in `queued` at once.
    pub max_waiting: u32,
    /// Items the caller enqueued on the channel in the last hour, whatever became of them.
    pub max_per_hour: u32,
}

/// Why an enqueue was refused (not a failure of the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueRefusal {
    /// The caller already has `max_waiting` items waiting.
    TooManyWaiting,
    /// The caller enqueued `max_per_hour` items in the last hour.
    TooManyThisHour,
}

/// One item of the queue (no audio bytes: [`crate::db::Store::call_audio`] has them).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallItem {
    pub id: Uuid,
    pub user_id: String,
    pub channel: ChannelName,
    pub kind: CallKind,
    /// Text calls: the caller's words. Never logged.
    pub text: Option<String>,
    pub status: CallStatus,
    pub enqueued_at: DateTime<Utc>,
    /// Higher airs first; 0 by default. Operators raise it.
    pub priority: i32,
    /// Audio calls: length and rate of the recording.
    pub duration_ms: Option<u64>,
    pub sample_rate: Option<u32>,
    /// Audio calls, once transcribed: what the caller said. Never logged.
    pub transcript: Option<String>,
    /// Why it was dropped (`expired`, `moderation`, `host_lost`, `cancelled`, `operator`,
    /// `failed: ...`), or how it ended.
    pub reason: Option<String>,
    /// Times it went back from `live` to `queued` (the host was lost while it aired).
    pub requeues: u32,
    /// When it became `done` or `dropped`.
    pub ended_at: Option<DateTime<Utc>>,
}

// ---- How the adapters store an item. `meta` is read, edited and written here only, so the
// two adapters cannot disagree on it; they move columns in and out and run the SQL.

/// The time now, to the microsecond: what both databases keep, so an item read back equals
/// the one returned when it was written.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A timestamp the store writes as text (`meta.ended_at`, SQLite's `enqueued_at`): RFC 3339
/// in UTC with exactly six fractional digits. One fixed width, so comparing the text (in SQL,
/// against a bound written the same way) compares the times; `%.f` or chrono's own RFC 3339
/// writer drop trailing zeros, and `…00Z` sorts after `…00.5Z`.
pub(super) fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads a timestamp written by [`stamp`] (or any RFC 3339 time, such as SQLite's column
/// default).
pub(super) fn parse_stamp(raw: &str, what: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("{what} {raw:?}")))
}

/// `meta.ended_at` in [`stamp`]'s form.
mod stamp_serde {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::stamp(*at)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(raw) => DateTime::parse_from_rfc3339(&raw)
                .map(|at| Some(at.with_timezone(&Utc)))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What `queue.meta` holds. Absent keys read as `None`/0; a key of the wrong type makes the
/// row unreadable. Keys this version does not know are kept as they are, so an edit never
/// drops what another version wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub channel: ChannelName,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub requeues: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "stamp_serde")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Meta {
    /// A new item's meta: its channel, priority 0, no requeues, and the recording's length
    /// and rate for audio.
    pub fn new(call: &NewCall) -> Self {
        Self {
            channel: call.channel.clone(),
            priority: 0,
            duration_ms: call.audio.as_ref().map(CallAudio::duration_ms),
            sample_rate: call.audio.as_ref().map(|a| a.sample_rate),
            transcript: None,
            reason: None,
            requeues: 0,
            ended_at: None,
            other: serde_json::Map::new(),
        }
    }

    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self)
            .map_err(|e| StoreError::Query(diesel::result::Error::SerializationError(Box::new(e))))
    }
}

/// A `queue` row's columns in Rust types, as the adapters read them, not yet checked.
pub(super) struct CallColumns {
    pub id: Uuid,
    pub user_id: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub meta: Option<serde_json::Value>,
    pub enqueued_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
}

/// A `queue` row, checked: what the adapters edit and write back (`status` and `meta`).
#[derive(Debug, Clone)]
pub(super) struct StoredCall {
    pub id: Uuid,
    pub user_id: String,
    pub kind: CallKind,
    pub text: Option<String>,
    pub status: CallStatus,
    pub enqueued_at: DateTime<Utc>,
    pub meta: Meta,
}

impl TryFrom<CallColumns> for StoredCall {
    type Error = StoreError;

    /// A row this version cannot read (NULLs the store never writes, an unknown kind or
    /// status, unreadable meta) is `Corrupt`.
    fn try_from(row: CallColumns) -> Result<Self> {
        let corrupt = |what: String| StoreError::Corrupt(format!("queue {}: {what}", row.id));
        let kind = match row.kind.as_str() {
            "text" => CallKind::Text,
            "audio" => CallKind::Audio,
            other => return Err(corrupt(format!("kind {other:?}"))),
        };
        let status = row
            .status
            .as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(format!("status {:?}", row.status)))?;
        let meta = row.meta.ok_or_else(|| corrupt("meta NULL".into()))?;
        let meta: Meta = serde_json::from_value(meta).map_err(|e| corrupt(format!("meta: {e}")))?;
        Ok(Self {
            id: row.id,
            user_id: row.user_id.ok_or_else(|| corrupt("user_id NULL".into()))?,
            kind,
            text: row.text,
            status,
            enqueued_at: row
                .enqueued_at
                .ok_or_else(|| corrupt("enqueued_at NULL".into()))?,
            meta,
        })
    }
}

impl StoredCall {
    pub fn item(&self) -> CallItem {
        CallItem {
            id: self.id,
            user_id: self.user_id.clone(),
            channel: self.meta.channel.clone(),
            kind: self.kind,
            text: self.text.clone(),
            status: self.status,
            enqueued_at: self.enqueued_at,
            priority: self.meta.priority,
            duration_ms: self.meta.duration_ms,
            sample_rate: self.meta.sample_rate,
            transcript: self.meta.transcript.clone(),
            reason: self.meta.reason.clone(),
            requeues: self.meta.requeues,
            ended_at: self.meta.ended_at,
        }
    }

    /// [`crate::db::Store::set_call_status`] on the row: `false` (and no change) when its
    /// status is not in `from`. `ended_at` is `at` for a final status and cleared otherwise,
    /// so an item taken back from `done` is not purged as ended.
    pub fn change_status(
        &mut self,
        from: &[CallStatus],
        to: CallStatus,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> bool {
        if !from.contains(&self.status) {
            return false;
        }
        if self.status == CallStatus::Live && to == CallStatus::Queued && reason == Some(HOST_LOST)
        {
            self.meta.requeues = self.meta.requeues.saturating_add(1);
        }
        if let Some(reason) = reason {
            self.meta.reason = Some(reason.to_owned());
        }
        self.meta.ended_at = to.is_final().then_some(at);
        self.status = to;
        true
    }
}

/// `queue_audio.sample_rate` for a recording's rate (an INTEGER column).
pub(super) fn rate_column(audio: &CallAudio) -> Result<i32> {
    i32::try_from(audio.sample_rate)
        .map_err(|e| StoreError::Query(diesel::result::Error::SerializationError(Box::new(e))))
}

/// A `queue_audio` row read back.
pub(super) fn audio_from_columns(id: Uuid, sample_rate: i32, pcm: Vec<u8>) -> Result<CallAudio> {
    let sample_rate = u32::try_from(sample_rate)
        .map_err(|_| StoreError::Corrupt(format!("queue_audio {id}: sample_rate {sample_rate}")))?;
    Ok(CallAudio { sample_rate, pcm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn columns(meta: serde_json::Value) -> CallColumns {
        CallColumns {
            id: Uuid::nil(),
            user_id: Some("ann".into()),
            kind: "text".into(),
            text: Some("hi".into()),
            meta: Some(meta),
            enqueued_at: Some(Utc::now()),
            status: Some("queued".into()),
        }
    }

    #[test]
    fn stamps_have_one_width_so_text_order_is_time_order() {
        let whole = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let times = [
            whole,
            whole + chrono::TimeDelta::microseconds(1),
            whole + chrono::TimeDelta::milliseconds(500),
            whole + chrono::TimeDelta::seconds(1),
        ];
        let stamps: Vec<String> = times.iter().map(|t| stamp(*t)).collect();
        assert_eq!(stamps[0], "2026-11-30T12:00:00.000000Z");
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        for (time, text) in times.iter().zip(&stamps) {
            assert_eq!(parse_stamp(text, "t").unwrap(), *time);
        }
        // SQLite's column default (milliseconds) reads too; what is not a time is corrupt.
        assert!(parse_stamp("2026-11-30T12:00:00.123Z", "t").is_ok());
        assert!(matches!(
            parse_stamp("yesterday", "t"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn absent_meta_keys_read_as_none_or_zero_and_unknown_ones_are_kept() {
        let call =
            StoredCall::try_from(columns(json!({"channel": "radio24", "later": [1]}))).unwrap();
        let item = call.item();
        assert_eq!((item.priority, item.requeues), (0, 0));
        assert_eq!((item.duration_ms, item.sample_rate), (None, None));
        assert_eq!(
            (item.transcript, item.reason, item.ended_at),
            (None, None, None)
        );
        let written = call.meta.to_json().unwrap();
        assert_eq!(
            written,
            json!({"channel": "radio24", "priority": 0, "requeues": 0, "later": [1]})
        );
    }

    #[test]
    fn a_new_audio_call_records_its_length_and_rate() {
        let call = NewCall {
            channel: ChannelName::parse("radio24").unwrap(),
            user_id: "bob".into(),
            text: None,
            audio: Some(CallAudio {
                sample_rate: 16_000,
                pcm: vec![0; 32_000],
            }),
        };
        assert_eq!(
            Meta::new(&call).to_json().unwrap(),
            json!({"channel": "radio24", "priority": 0, "duration_ms": 1000,
                   "sample_rate": 16000, "requeues": 0})
        );
    }

    #[test]
    fn rows_that_cannot_be_read_are_corrupt() {
        let corrupt =
            |row: CallColumns| matches!(StoredCall::try_from(row), Err(StoreError::Corrupt(_)));
        assert!(corrupt(columns(json!({"priority": 1}))), "no channel");
        assert!(corrupt(columns(json!({"channel": "Bad Name"}))));
        assert!(corrupt(columns(
            json!({"channel": "a", "priority": "high"})
        )));
        assert!(corrupt(columns(
            json!({"channel": "a", "ended_at": "soon"})
        )));
        assert!(corrupt(CallColumns {
            meta: None,
            ..columns(json!({}))
        }));
        assert!(corrupt(CallColumns {
            kind: "phone".into(),
            ..columns(json!({"channel": "a"}))
        }));
        assert!(corrupt(CallColumns {
            status: None,
            ..columns(json!({"channel": "a"}))
        }));
        assert!(corrupt(CallColumns {
            user_id: None,
            ..columns(json!({"channel": "a"}))
        }));
    }

    #[test]
    fn status_changes_compare_and_set_and_keep_the_item_s_history() {
        let at = now();
        let mut call = StoredCall::try_from(columns(json!({"channel": "a"}))).unwrap();
        assert!(!call.change_status(&[CallStatus::Live], CallStatus::Done, Some("x"), at));
        assert_eq!(
            (call.status, &call.meta.reason),
            (CallStatus::Queued, &None)
        );

        assert!(call.change_status(&[CallStatus::Queued], CallStatus::Live, None, at));
        // Handed back unaired (the host was busy): not a requeue.
        assert!(call.change_status(&[CallStatus::Live], CallStatus::Queued, None, at));
        assert_eq!(call.meta.requeues, 0);
        assert!(call.change_status(&[CallStatus::Queued], CallStatus::Live, None, at));
        assert!(call.change_status(&[CallStatus::Live], CallStatus::Queued, Some(HOST_LOST), at));
        assert_eq!(call.meta.requeues, 1);
        assert_eq!(call.meta.ended_at, None);
        assert!(call.change_status(&[CallStatus::Queued], CallStatus::Dropped, None, at));
        assert_eq!(call.meta.ended_at, Some(at));
        assert_eq!(
            call.meta.reason.as_deref(),
            Some("host_lost"),
            "kept without a new one"
        );
        // Taken back from a final status: no longer ended (so its recording is kept).
        assert!(call.change_status(&[CallStatus::Dropped], CallStatus::Queued, None, at));
        assert_eq!((call.meta.ended_at, call.meta.requeues), (None, 1));
        let ended = call.meta.to_json().unwrap();
        assert!(ended.get("ended_at").is_none(), "{ended}");
    }
}
