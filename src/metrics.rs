//! Metrics in Prometheus text format at `GET /metrics`, served by every role on its own port.
//!
//! One recorder per process ([`install`], idempotent: tests build many apps in one process),
//! from `metrics` + `metrics-exporter-prometheus` without its HTTP listener: the route renders
//! the handle. Every family's name is a `pub const` here, with its help text registered
//! through `describe_*` in [`describe`], and recorded through the small functions below, so
//! each recording site is one line and the names exist in this one place (the dashboard and
//! the alert rules in `deploy/` are checked against a scrape by `tests/api/metrics.rs`).
//!
//! Labels are bounded: channels come from the store (or the programme the API pushed), never
//! from a client; providers, services, operations and error kinds are fixed small sets.
//!
//! `/metrics` needs no token: it shows counts and timings only (no text, no client, no
//! secret), about what the public `/health` already shows. Where the API port faces the
//! internet and that is unwanted, keep `/metrics` off the public route at the load balancer
//! (Prometheus scrapes the services on the private network).
//!
//! No config keys.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::ChannelName;

/// Listeners on this instance (gauge; `channel`, `transport` = `stream` | `broadcast`).
pub const LISTENERS: &str = "radio24_listeners";
/// Call-ins waiting (gauge; `channel`).
pub const QUEUE_DEPTH: &str = "radio24_queue_depth";
/// From a call-in's enqueue to the host taking it (histogram, seconds; `channel`).
pub const QUEUE_WAIT: &str = "radio24_queue_wait_seconds";
/// Segments that started airing (counter; `channel`, `kind`).
pub const SEGMENTS_AIRED: &str = "radio24_segments_aired_total";
/// Dead-air gaps that ended (counter; `channel`).
pub const GAPS: &str = "radio24_gaps_total";
/// Dead air, in milliseconds (counter; `channel`).
pub const DEAD_AIR: &str = "radio24_dead_air_milliseconds_total";
/// Segments cut for the filler because they aired blank (counter; `channel`).
pub const BLANK_AIR: &str = "radio24_blank_air_total";
/// From asking the LLM for a script to its first token (histogram, seconds; `provider`).
pub const LLM_FIRST_TOKEN: &str = "radio24_llm_first_token_seconds";
/// From asking a voice to speak to its first audio (histogram, seconds; `provider`).
pub const TTS_FIRST_AUDIO: &str = "radio24_tts_first_audio_seconds";
/// A call-in's transcription, request to answer (histogram, seconds; `provider`).
pub const TRANSCRIPTION: &str = "radio24_transcription_seconds";
/// Failed provider calls (counter; `service`, `provider`, `kind`).
pub const PROVIDER_ERRORS: &str = "radio24_provider_errors_total";
/// Calls over the bus, from the API's side (counter; `operation`).
pub const BUS_CALLS: &str = "radio24_bus_calls_total";
/// Bus calls that failed (counter; `operation`, `kind`).
pub const BUS_ERRORS: &str = "radio24_bus_errors_total";
/// How long bus calls took to answer (histogram, seconds; `operation`).
pub const BUS_CALL_DURATION: &str = "radio24_bus_call_seconds";
/// WebSocket clients that lagged (counter; `outcome` = `resynced` | `dropped`).
pub const WS_LAGGING: &str = "radio24_ws_lagging_total";
/// Bytes of Ogg/Opus written to the archive (counter; `channel`).
pub const ARCHIVE_BYTES: &str = "radio24_archive_bytes_total";
/// Archive writes the disk refused, and failed tries to create an hour's file (counter; `channel`).
pub const ARCHIVE_WRITE_ERRORS: &str = "radio24_archive_write_errors_total";
/// 1 when the API hears from the host, else 0 (gauge; API and all roles).
pub const HOST_LINK_UP: &str = "radio24_host_link_up";

/// When the process started (gauge, Unix seconds): resets of the counters show against it.
pub const PROCESS_START: &str = "radio24_process_start_time_seconds";

/// Every family.
pub const FAMILIES: [&str; 19] = [
    LISTENERS,
    QUEUE_DEPTH,
    QUEUE_WAIT,
    SEGMENTS_AIRED,
    GAPS,
    DEAD_AIR,
    BLANK_AIR,
    LLM_FIRST_TOKEN,
    TTS_FIRST_AUDIO,
    TRANSCRIPTION,
    PROVIDER_ERRORS,
    BUS_CALLS,
    BUS_ERRORS,
    BUS_CALL_DURATION,
    WS_LAGGING,
    ARCHIVE_BYTES,
    ARCHIVE_WRITE_ERRORS,
    HOST_LINK_UP,
    PROCESS_START,
];

/// Buckets of provider latencies (seconds): a fast local fake to a slow provider's timeout.
const PROVIDER_BUCKETS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
];
/// Buckets of queue waits (seconds): seconds to the queue's time to live (an hour) and past.
const QUEUE_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
];
/// Buckets of bus calls (seconds): in-process microseconds to the request timeout.
const BUS_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// How often histogram samples are folded in when nobody scrapes (they would pile up).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder once and returns its handle; later calls return the same
/// handle. Should another recorder already be installed, the handle renders an empty page
/// and a warning says why.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "metrics: histogram buckets refused; using summaries");
                PrometheusBuilder::new()
            })
            .build_recorder();
        let handle = recorder.handle();
        if let Err(e) = ::metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics stays empty");
        }
        describe();
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ::metrics::gauge!(PROCESS_START).set(started);
        for outcome in [Lag::Resynced, Lag::Dropped] {
            ::metrics::counter!(WS_LAGGING, "outcome" => outcome.as_str()).increment(0);
        }
        // Histogram samples wait in the recorder until a scrape or an upkeep folds them in:
        // a thread does it, so a process nobody scrapes does not grow.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics: no upkeep thread; histograms fold in at scrapes only");
        }
        handle
    })
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in [LLM_FIRST_TOKEN, TTS_FIRST_AUDIO, TRANSCRIPTION] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), &PROVIDER_BUCKETS)?;
    }
    builder = builder.set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), &QUEUE_BUCKETS)?;
    builder.set_buckets_for_metric(Matcher::Full(BUS_CALL_DURATION.into()), &BUS_BUCKETS)
}

/// Registers each family's help text.
fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        LISTENERS,
        "Listeners of a channel on this API instance, by transport (stream: the HTTP live stream; broadcast: /ws/broadcast), as of the last check (every 5 s)"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Call-ins waiting in a channel's queue, as of this instance's last change of it"
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "From a call-in's enqueue to the host taking it"
    );
    describe_counter!(
        SEGMENTS_AIRED,
        "Segments that started airing, by kind (talk, speak, station_id, music, filler, caller, call_host)"
    );
    describe_counter!(
        GAPS,
        "Dead-air gaps (runs of frames with nothing to play) that ended"
    );
    describe_counter!(
        DEAD_AIR,
        Unit::Milliseconds,
        "Dead air: milliseconds of programme with nothing to play"
    );
    describe_counter!(
        BLANK_AIR,
        "Spoken segments cut for the station ID filler because their audio stayed below audio.blank_air_dbfs for more than audio.blank_air_secs"
    );
    describe_histogram!(
        LLM_FIRST_TOKEN,
        Unit::Seconds,
        "From asking the LLM for a script to its first token (answers are not streamed: the whole answer)"
    );
    describe_histogram!(
        TTS_FIRST_AUDIO,
        Unit::Seconds,
        "From asking a voice to speak to its first audio"
    );
    describe_histogram!(
        TRANSCRIPTION,
        Unit::Seconds,
        "A recorded call-in's transcription, request to answer"
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Failed provider calls, by service (llm, tts, transcription, moderation), provider and kind (timeout, unavailable, http_4xx, http_5xx, refused, protocol)"
    );
    describe_counter!(
        BUS_CALLS,
        "Calls the API made to the host over the bus (in-process or HTTP), by operation"
    );
    describe_counter!(
        BUS_ERRORS,
        "Bus calls that failed, by operation and kind (unavailable, timeout, unauthorized, rejected, internal)"
    );
    describe_histogram!(
        BUS_CALL_DURATION,
        Unit::Seconds,
        "How long bus calls took to answer (streams: to open)"
    );
    describe_counter!(
        WS_LAGGING,
        "WebSocket clients that fell behind: resynced (a broadcast client given a fresh snapshot) or dropped (a send timed out)"
    );
    describe_counter!(
        ARCHIVE_BYTES,
        Unit::Bytes,
        "Bytes of Ogg/Opus audio written to the archive"
    );
    describe_counter!(
        ARCHIVE_WRITE_ERRORS,
        "Archive writes the disk refused (a full disk) and failed tries to create an hour's file: the first of a failure and each retry"
    );
    describe_gauge!(
        HOST_LINK_UP,
        "1 when this API instance hears the host's events, else 0"
    );
    describe_gauge!(
        PROCESS_START,
        Unit::Seconds,
        "When this process started, in Unix seconds"
    );
}

/// What `/metrics` runs before it renders (the API sets its host-link gauge from its own link,
/// so the scrape shows this instance's state now).
pub type BeforeScrape = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Mounts `GET /metrics` (and `HEAD`). `before` runs before each render.
pub fn configure(cfg: &mut web::ServiceConfig, before: Option<BeforeScrape>) {
    cfg.app_data(web::Data::new(Scrape { before })).service(
        crate::web::resource("/metrics", "GET, HEAD")
            .route(web::get().to(scrape))
            .route(web::head().to(scrape)),
    );
}

struct Scrape {
    before: Option<BeforeScrape>,
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4). No token (see the module doc).
#[utoipa::path(
    method(get, head), path = "/metrics", tag = "meta",
    description = "Prometheus metrics, text format 0.0.4. No token.",
    responses((status = 200, description = "The metrics", content(("text/plain; version=0.0.4; charset=utf-8"))))
)]
async fn scrape(scrape: web::Data<Scrape>) -> HttpResponse {
    if let Some(before) = &scrape.before {
        before();
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(install().render())
}

fn channel_label(channel: &ChannelName) -> String {
    channel.as_str().to_owned()
}

/// A channel's listeners on this instance.
pub fn set_listeners(channel: &ChannelName, stream: usize, broadcast: usize) {
    let name = channel_label(channel);
    ::metrics::gauge!(LISTENERS, "channel" => name.clone(), "transport" => "stream")
        .set(stream as f64);
    ::metrics::gauge!(LISTENERS, "channel" => name, "transport" => "broadcast")
        .set(broadcast as f64);
}

/// A channel's queue length.
pub fn set_queue_depth(channel: &ChannelName, depth: usize) {
    ::metrics::gauge!(QUEUE_DEPTH, "channel" => channel_label(channel)).set(depth as f64);
}

/// A call-in enqueued at `enqueued_at` was handed to the host now.
pub fn queue_waited(channel: &ChannelName, enqueued_at: chrono::DateTime<chrono::Utc>) {
    let waited = (chrono::Utc::now() - enqueued_at)
        .to_std()
        .unwrap_or_default();
    ::metrics::histogram!(QUEUE_WAIT, "channel" => channel_label(channel))
        .record(waited.as_secs_f64());
}

/// A channel's playout started: its gap, dead-air and blank-air counters exist from now on,
/// at 0, so `increase()` and the alerts see them before the first gap.
pub fn playout_started(channel: &ChannelName) {
    ::metrics::counter!(GAPS, "channel" => channel_label(channel)).increment(0);
    ::metrics::counter!(DEAD_AIR, "channel" => channel_label(channel)).increment(0);
    ::metrics::counter!(BLANK_AIR, "channel" => channel_label(channel)).increment(0);
}

/// A segment of a channel aired blank and was cut for the filler.
pub fn blank_air(channel: &ChannelName) {
    ::metrics::counter!(BLANK_AIR, "channel" => channel_label(channel)).increment(1);
}

/// A segment of `kind` started airing.
#[cfg(feature = "host")]
pub fn segment_aired(channel: &ChannelName, kind: crate::host::playout::SegmentKind) {
    use crate::host::playout::SegmentKind;
    let kind = match kind {
        SegmentKind::Talk => "talk",
        SegmentKind::Speak => "speak",
        SegmentKind::StationId => "station_id",
        SegmentKind::Music => "music",
        SegmentKind::Filler => "filler",
        SegmentKind::Caller => "caller",
        SegmentKind::CallHost => "call_host",
    };
    ::metrics::counter!(SEGMENTS_AIRED, "channel" => channel_label(channel), "kind" => kind)
        .increment(1);
}

/// `duration` of dead air (a frame with nothing to play).
pub fn dead_air(channel: &ChannelName, duration: Duration) {
    ::metrics::counter!(DEAD_AIR, "channel" => channel_label(channel))
        .increment(duration.as_millis() as u64);
}

/// A dead-air gap ended.
pub fn gap(channel: &ChannelName) {
    ::metrics::counter!(GAPS, "channel" => channel_label(channel)).increment(1);
}

/// `bytes` of audio written to a channel's archive.
pub fn archive_written(channel: &ChannelName, bytes: usize) {
    ::metrics::counter!(ARCHIVE_BYTES, "channel" => channel_label(channel)).increment(bytes as u64);
}

/// The disk refused a write of a channel's archive, or the creation of an hour's file.
pub fn archive_write_failed(channel: &ChannelName) {
    ::metrics::counter!(ARCHIVE_WRITE_ERRORS, "channel" => channel_label(channel)).increment(1);
}

/// Whether the API's link to the host is up.
pub fn set_host_link_up(up: bool) {
    ::metrics::gauge!(HOST_LINK_UP).set(if up { 1.0 } else { 0.0 });
}

/// What a WebSocket client that lagged came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// A broadcast client fell behind the channel's ring and was given a fresh snapshot.
    Resynced,
    /// A send timed out (the client stopped reading): the socket was dropped.
    Dropped,
}

impl Lag {
    pub fn as_str(self) -> &'static str {
        match self {
            Lag::Resynced => "resynced",
            Lag::Dropped => "dropped",
        }
    }
}

/// A WebSocket client lagged.
pub fn ws_lagged(outcome: Lag) {
    ::metrics::counter!(WS_LAGGING, "outcome" => outcome.as_str()).increment(1);
}

/// A bus call `operation` that took from `started` and failed with `error` (a kind) or not.
pub fn bus_call(operation: &'static str, started: Instant, error: Option<&'static str>) {
    ::metrics::counter!(BUS_CALLS, "operation" => operation).increment(1);
    ::metrics::histogram!(BUS_CALL_DURATION, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Some(kind) = error {
        ::metrics::counter!(BUS_ERRORS, "operation" => operation, "kind" => kind).increment(1);
    }
}

/// The providers' services, as the `service` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Scripts (chat completions).
    Llm,
    /// Voices.
    Tts,
    /// Call-in transcription.
    Transcription,
    /// Call-in moderation.
    Moderation,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Llm => "llm",
            Service::Tts => "tts",
            Service::Transcription => "transcription",
            Service::Moderation => "moderation",
        }
    }

    /// Its latency family; moderation has none.
    fn latency(self) -> Option<&'static str> {
        match self {
            Service::Llm => Some(LLM_FIRST_TOKEN),
            Service::Tts => Some(TTS_FIRST_AUDIO),
            Service::Transcription => Some(TRANSCRIPTION),
            Service::Moderation => None,
        }
    }
}

/// Why a provider call failed, as the `kind` label names it: a fixed small set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer in time.
    Timeout,
    /// Cannot connect, or cannot run (a missing program).
    Unavailable,
    /// An HTTP 4xx answer (a bad key, a quota, a bad request).
    Http4xx,
    /// An HTTP 5xx answer.
    Http5xx,
    /// The provider refused in its own protocol (a Realtime `error` event).
    Refused,
    /// An answer that is not what the protocol promises (garbage, an empty body).
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::Refused => "refused",
            ErrorKind::Protocol => "protocol",
        }
    }

    /// The kind of an HTTP error status.
    pub fn of_status(status: u16) -> Self {
        if status >= 500 {
            ErrorKind::Http5xx
        } else {
            ErrorKind::Http4xx
        }
    }

    /// The kind of a message that starts `HTTP <status>` (how the clients report statuses),
    /// else `otherwise`.
    pub fn of_message(message: &str, otherwise: Self) -> Self {
        message
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .map_or(otherwise, Self::of_status)
    }
}

/// A provider call of `service` to `provider` answered (first token, first audio, the
/// transcript) `started` ago.
pub fn provider_answered(service: Service, provider: &'static str, started: Instant) {
    if let Some(family) = service.latency() {
        ::metrics::histogram!(family, "provider" => provider)
            .record(started.elapsed().as_secs_f64());
    }
}

/// A provider call of `service` to `provider` failed.
pub fn provider_failed(service: Service, provider: &'static str, kind: ErrorKind) {
    ::metrics::counter!(
        PROVIDER_ERRORS,
        "service" => service.as_str(),
        "provider" => provider,
        "kind" => kind.as_str()
    )
    .increment(1);
}

/// The kinds of the host's provider errors.
#[cfg(feature = "host")]
mod host_kinds {
    use super::ErrorKind;
    use crate::host::calls::moderation::ModerationError;
    use crate::host::calls::transcribe::TranscribeError;
    use crate::host::voice::VoiceError;
    use crate::host::writer::WriterError;

    impl From<&WriterError> for ErrorKind {
        fn from(e: &WriterError) -> Self {
            match e {
                WriterError::Timeout => ErrorKind::Timeout,
                // Statuses come as "HTTP 503"; the rest is connecting or the client.
                WriterError::Unavailable(m) => ErrorKind::of_message(m, ErrorKind::Unavailable),
                WriterError::BadAnswer(_) => ErrorKind::Protocol,
            }
        }
    }

    impl From<&VoiceError> for ErrorKind {
        fn from(e: &VoiceError) -> Self {
            match e {
                VoiceError::Timeout => ErrorKind::Timeout,
                VoiceError::Unavailable(_) => ErrorKind::Unavailable,
                // "HTTP 500: ..." from the speech endpoint or the Realtime handshake, else
                // a Realtime `error` event.
                VoiceError::Rejected(m) => ErrorKind::of_message(m, ErrorKind::Refused),
                VoiceError::BadAnswer(_) => ErrorKind::Protocol,
            }
        }
    }

    impl From<&TranscribeError> for ErrorKind {
        fn from(e: &TranscribeError) -> Self {
            match e {
                TranscribeError::Timeout => ErrorKind::Timeout,
                TranscribeError::Unavailable(_) => ErrorKind::Unavailable,
                TranscribeError::Rejected { status, .. } => ErrorKind::of_status(*status),
                TranscribeError::BadAnswer(_) | TranscribeError::InvalidAudio(_) => {
                    ErrorKind::Protocol
                }
            }
        }
    }

    impl From<&ModerationError> for ErrorKind {
        fn from(e: &ModerationError) -> Self {
            match e {
                ModerationError::Timeout => ErrorKind::Timeout,
                ModerationError::Unavailable(_) => ErrorKind::Unavailable,
                ModerationError::Rejected { status, .. } => ErrorKind::of_status(*status),
                ModerationError::BadAnswer(_) => ErrorKind::Protocol,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_messages_give_their_class() {
        let other = ErrorKind::Unavailable;
        assert_eq!(ErrorKind::of_message("HTTP 503", other), ErrorKind::Http5xx);
        assert_eq!(
            ErrorKind::of_message("HTTP 429 Too Many Requests: slow down", other),
            ErrorKind::Http4xx
        );
        assert_eq!(ErrorKind::of_message("HTTP", other), other);
        assert_eq!(ErrorKind::of_message("cannot connect", other), other);
    }

    #[test]
    fn one_recorder_renders_described_families_with_buckets() {
        let first = install();
        let second = install();
        let channel = ChannelName::parse("metrics-unit").unwrap();
        queue_waited(&channel, chrono::Utc::now() - chrono::Duration::seconds(3));
        let text = second.render();
        assert!(std::ptr::eq(first, second));
        assert!(
            text.contains("# TYPE radio24_queue_wait_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(r#"radio24_queue_wait_seconds_bucket{channel="metrics-unit",le="5"} 1"#),
            "{text}"
        );
        assert!(text.contains("# HELP radio24_queue_wait_seconds"), "{text}");
    }
}
