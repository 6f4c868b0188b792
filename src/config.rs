//! Settings: `config/default.toml` → `config/$RADIO24_ENV.toml` → `RADIO24__SECTION__KEY`
//! environment variables → the seed's flat names (`POSTGRES_HOST`, `OPENAI_API_KEY`, …,
//! `DATABASE_URL`, `PORT`). The config directory is `--config-dir`, else `RADIO24_CONFIG_DIR`,
//! else `./config`. A bad value fails at start-up with one line naming the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{Block, ChannelName};

/// The seed's flat environment names and the settings key each one sets. Flat names win
/// over every other layer, so a platform (Cloud Run, Fly, docker compose) can inject them.
const FLAT_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("POSTGRES_HOST", "database.postgres.host"),
    ("POSTGRES_PORT", "database.postgres.port"),
    ("POSTGRES_USER", "database.postgres.user"),
    ("POSTGRES_PASSWORD", "database.postgres.password"),
    ("POSTGRES_DB", "database.postgres.db"),
    ("LIVEKIT_API_KEY", "livekit.api_key"),
    ("LIVEKIT_API_SECRET", "livekit.api_secret"),
    ("LIVEKIT_WS_URL", "livekit.ws_url"),
    ("LIVEKIT_PUBLISH_URL", "livekit.publish_url"),
    ("OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("OPENAI_REALTIME_MODEL", "openai.realtime_model"),
    ("OPENAI_REALTIME_VOICE", "openai.realtime_voice"),
    ("ALLOWED_ORIGIN", "server.allowed_origin"),
    ("PORT", "server.port"),
];

/// Every environment variable the process reads besides `RADIO24__SECTION__KEY`: the seed's
/// flat names (each sets one settings key) and those that pick the config files and the
/// log format. Deployment files are checked against it (`tests/api/deploy_files.rs`).
pub fn env_names() -> impl Iterator<Item = &'static str> {
    FLAT_ENV.iter().map(|(name, _)| *name).chain([
        "RADIO24_ENV",
        "RADIO24_CONFIG_DIR",
        "RADIO24_LOG_FORMAT",
        "RUST_LOG",
    ])
}

/// The settings key a flat environment name sets (`POSTGRES_HOST` → `database.postgres.host`).
pub fn flat_env_key(name: &str) -> Option<&'static str> {
    FLAT_ENV
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, key)| *key)
}

/// Most `host.retries` accepted: each retry can double the wait before the next, and more
/// than ten would hold a segment back for longer than any provider outage is worth waiting
/// out (the fallbacks air instead).
pub const MAX_RETRIES: u32 = 10;
/// Longest `host.retry_backoff_ms` accepted (one minute).
const MAX_RETRY_BACKOFF_MS: u64 = 60_000;
/// Longest `archive.retention_days` accepted (a century; 0 keeps recordings forever).
const MAX_RETENTION_DAYS: u32 = 36_500;

/// Why the settings could not be loaded. Display is one line that names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not `#[source]`: the message already holds the cause, and chains would repeat it.
    #[error("config: {0}")]
    Load(config::ConfigError),
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(e)
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub station: StationSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub broadcast: BroadcastSettings,
    pub host: HostSettings,
    pub schedule: ScheduleSettings,
    pub livekit: LivekitSettings,
    pub openai: OpenAiSettings,
    pub writer: WriterSettings,
    pub voice: VoiceSettings,
    pub audio: AudioSettings,
    pub music: MusicSettings,
    pub news: NewsSettings,
    pub stream: StreamSettings,
    pub archive: ArchiveSettings,
    pub queue: QueueSettings,
    pub moderation: ModerationSettings,
}

/// The call-in queue (`/ws/ptt`, `POST /v1/queue`) and what one caller may put in it (API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Longest typed call-in, in characters.
    pub max_text_chars: usize,
    /// Longest recorded call-in, in seconds.
    pub max_audio_secs: u32,
    /// Largest WebSocket frame a caller may send on `/ws/ptt`, in bytes.
    pub max_frame_bytes: usize,
    /// Items one caller may have waiting on a channel at once.
    pub max_waiting_per_user: u32,
    /// Items one caller may send to a channel in an hour.
    pub max_per_user_per_hour: u32,
    /// Minutes an item may wait before it is dropped as `expired`.
    pub ttl_minutes: u32,
    /// Hours a recording is kept after its item ends.
    pub audio_retention_hours: u32,
    /// Call-ins one client (address) may send per minute, whoever it says it is.
    pub enqueues_per_minute: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationSettings {
    pub name: String,
    pub default_channel: ChannelName,
    pub language: String,
    /// IANA time zone of the station's clock (the schedule's hours), e.g. `Asia/Tokyo`.
    pub timezone: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub api_port: u16,
    pub host_port: u16,
    /// `PORT` (Cloud Run): when set, the port this process listens on, whatever its role.
    pub port: Option<u16>,
    pub workers: usize,
    /// The web app's built files, served at `/` by the API role; empty = none.
    pub web_dir: String,
    pub allowed_origin: String,
    pub max_text_chars: usize,
    pub shutdown_timeout_secs: u64,
    /// Proxies in front that append the client's address to `X-Forwarded-For` (0 = trust
    /// none: the peer address identifies the client).
    pub trusted_proxy_hops: usize,
    /// Send buffer of every accepted connection, bytes; 0 leaves it to the kernel.
    #[serde(default)]
    pub send_buffer_bytes: usize,
    /// Longest a request body may take to arrive, seconds (then 408).
    pub body_timeout_secs: f64,
    /// Longest a connection's client may leave what is sent to it untaken (its receive
    /// window shut, or unacknowledged), seconds, before the kernel closes the connection
    /// (`TCP_USER_TIMEOUT`, Linux); 0 leaves it to the kernel (never, while it answers).
    #[serde(default)]
    pub stall_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Option<SecretString>,
    pub sqlite_path: PathBuf,
    pub max_connections: usize,
    pub acquire_timeout_ms: u64,
    #[serde(default)]
    pub postgres: PostgresParts,
}

/// The seed's `POSTGRES_*` variables, assembled into a URL when `database.url` is not set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresParts {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub db: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    pub host_url: String,
    pub token: Option<SecretString>,
    /// How the API proves itself to the host: the shared `token`, or a Google ID token.
    pub auth: BusAuth,
    /// The metadata server's base URL (`…/computeMetadata/v1`), for `google_id_token`.
    pub metadata_url: String,
    /// `google_id_token` on the host: the API's service account, the only caller accepted.
    #[serde(default)]
    pub google_service_account: Option<String>,
    /// The audience of the ID tokens (`google_id_token`); unset = `host_url`.
    #[serde(default)]
    pub audience: Option<String>,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub reconnect_max_ms: u64,
    /// Mutual TLS on the bus: the CA, this role's certificate and its key (PEM files).
    #[serde(default)]
    pub tls: crate::bus::tls::TlsFiles,
}

impl BusSettings {
    /// The audience of bus ID tokens: `bus.audience`, else `bus.host_url`.
    pub fn audience(&self) -> &str {
        self.audience
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.host_url)
    }
}

/// `bus.auth`: what the API presents to the host on every bus request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusAuth {
    /// `bus.token`, shared by both roles.
    Token,
    /// An ID token of the API's service account from the metadata server (Cloud Run); the
    /// host checks its claims (`bus.google_service_account`, audience `bus.host_url`).
    GoogleIdToken,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_token: Option<SecretString>,
    pub admin_token_file: PathBuf,
    /// Signs callers' tokens; unset = derived from the admin token. Every API instance of a
    /// station needs the same one.
    #[serde(default)]
    pub caller_secret: Option<SecretString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastSettings {
    pub client_queue: usize,
    pub recent_captions: usize,
    pub ping_interval_secs: u64,
    pub send_timeout_secs: u64,
    pub max_clients: usize,
    /// Connections a client may open per minute (in a burst of as many).
    pub connects_per_minute: u32,
    /// Frames a client may send on one socket, per second once its burst is spent.
    pub client_frames_per_second: f64,
    /// Frames a client may send on one socket in a burst.
    pub client_frame_burst: u32,
    /// How often this API instance reports its listener counts to the store and reads the
    /// other instances' (an instance not heard from for three of these drops out).
    pub instance_heartbeat_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    pub speak_queue: usize,
    pub event_buffer: usize,
    pub chars_per_second: f64,
    /// Seconds of voiced programme the producer keeps ready ahead of the playout.
    pub lookahead_secs: f64,
    /// Usual length of a talk segment, in seconds.
    pub segment_secs: f64,
    /// Extra attempts at a failing writer or voice before falling back (0..=[`MAX_RETRIES`]).
    pub retries: u32,
    /// First wait before a retry (doubles each time, up to the host's cap).
    pub retry_backoff_ms: u64,
    /// 1 = real time; more runs the programme clock faster (tests, demos).
    pub clock_speed: f64,
    /// With PostgreSQL: how often a standby host tries the lease, and the active host checks
    /// it, in milliseconds.
    pub lease_interval_ms: u64,
    /// How long the active host airs on without its lease connection, in milliseconds.
    pub lease_grace_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// The block of each hour, 0–23, used to create a channel's schedule when it has none.
    pub default: Vec<Block>,
    pub topics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivekitSettings {
    /// `LIVEKIT_API_KEY`: the token issuer.
    pub api_key: Option<String>,
    /// `LIVEKIT_API_SECRET`: signs join tokens (HS256). Never logged.
    pub api_secret: Option<SecretString>,
    /// `LIVEKIT_WS_URL`: the LiveKit server listeners connect to, handed out with each token.
    pub ws_url: Option<String>,
    /// Lifetime of a listener join token, in seconds (60 to 86400).
    pub token_ttl_secs: u64,
    /// Join tokens one client (IP address) may ask for per minute.
    pub join_per_minute: u32,
    /// Whether the host publishes each channel into its LiveKit room (when configured).
    pub publish: bool,
    /// Where the host connects to publish, when it differs from `ws_url` (e.g. an internal
    /// address). Defaults to `ws_url`.
    pub publish_url: Option<String>,
    /// Opus bitrate of the published track, bits per second.
    pub publish_bitrate: u32,
    /// Longest wait between two attempts to rejoin the room after a drop, in milliseconds.
    pub reconnect_max_ms: u64,
}

impl LivekitSettings {
    /// The environment variables still to set before join tokens can be minted: those of
    /// `api_key`, `api_secret` and `ws_url` that are unset or blank. Empty = configured.
    pub fn missing_env(&self) -> Vec<&'static str> {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
        let mut missing = Vec::new();
        if blank(&self.api_key) {
            missing.push("LIVEKIT_API_KEY");
        }
        if !is_set(&self.api_secret) {
            missing.push("LIVEKIT_API_SECRET");
        }
        if blank(&self.ws_url) {
            missing.push("LIVEKIT_WS_URL");
        }
        missing
    }

    /// Where the host publishes: `publish_url`, else `ws_url`; `None` when publishing is
    /// off or LiveKit is not configured.
    pub fn publisher_url(&self) -> Option<String> {
        if !self.publish || !self.missing_env().is_empty() {
            return None;
        }
        self.publish_url
            .as_deref()
            .or(self.ws_url.as_deref())
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSettings {
    pub api_key: Option<SecretString>,
    pub base_url: String,
    pub chat_model: String,
    pub realtime_model: String,
    pub realtime_voice: String,
    pub speech_model: String,
    pub speech_voice: String,
    /// Transcribes recorded call-ins (`/v1/audio/transcriptions`).
    pub transcribe_model: String,
    /// Checks call-ins before they air (`/v1/moderations`).
    pub moderation_model: String,
}

/// What keeps a call-in off air (host).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationSettings {
    /// With `openai.api_key` set, text and transcripts go through `/v1/moderations`.
    pub use_openai: bool,
    /// Words or phrases that keep a call-in off air, matched case-insensitively.
    pub blocked_words: Vec<String>,
}

/// A setting that takes one of a fixed set of spellings. Any other value stops the start
/// with an error that lists them (serde's own enum error, through the `config` crate, names
/// only the value it did not expect).
trait Choice: Sized + Copy + 'static {
    /// Each spelling, as in the TOML file and the environment, and its value.
    const CHOICES: &'static [(&'static str, Self)];

    fn parse_choice(raw: String) -> Result<Self, String> {
        Self::CHOICES
            .iter()
            .find(|(spelling, _)| *spelling == raw)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let spellings: Vec<&str> = Self::CHOICES.iter().map(|(s, _)| *s).collect();
                format!("{raw:?} is not one of: {}", spellings.join(", "))
            })
    }
}

/// Who writes scripts (`writer.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum WriterBackend {
    /// OpenAI when `openai.api_key` is set, else templates.
    Auto,
    /// OpenAI Chat Completions (the key is required).
    Openai,
    /// The offline template writer.
    Template,
}

impl Choice for WriterBackend {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("auto", Self::Auto),
        ("openai", Self::Openai),
        ("template", Self::Template),
    ];
}

impl TryFrom<String> for WriterBackend {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse_choice(raw)
    }
}

/// Who speaks (`voice.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum VoiceBackend {
    /// OpenAI speech when `openai.api_key` is set, else espeak-ng when it runs, else
    /// captions only.
    Auto,
    /// OpenAI `/v1/audio/speech` (the key is required), espeak-ng as the fallback.
    OpenaiSpeech,
    /// OpenAI Realtime (the key is required), espeak-ng as the fallback.
    OpenaiRealtime,
    /// espeak-ng only (it must run).
    EspeakNg,
    /// No voice: captions only.
    CaptionsOnly,
}

impl Choice for VoiceBackend {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("auto", Self::Auto),
        ("openai-speech", Self::OpenaiSpeech),
        ("openai-realtime", Self::OpenaiRealtime),
        ("espeak-ng", Self::EspeakNg),
        ("none", Self::CaptionsOnly),
    ];
}

impl TryFrom<String> for VoiceBackend {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse_choice(raw)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSettings {
    pub backend: WriterBackend,
    pub timeout_secs: u64,
    pub max_tokens: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceSettings {
    pub backend: VoiceBackend,
    pub timeout_secs: u64,
    pub espeak_binary: String,
    pub espeak_wpm: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSettings {
    pub target_lufs: f64,
    /// Output quieter than this (RMS, dBFS) while a spoken segment airs is blank…
    pub blank_air_dbfs: f64,
    /// …once it lasts longer than this: the segment is cut for the filler.
    pub blank_air_secs: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MusicSettings {
    pub dir: Option<PathBuf>,
    pub max_track_secs: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsSettings {
    pub feeds: Vec<String>,
    pub max_items: usize,
    pub refresh_secs: u64,
    pub timeout_secs: u64,
}

/// The HTTP live stream (`GET /v1/channels/{name}/stream`, Ogg/Opus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Opus bitrate in bits per second (host).
    pub bitrate: u32,
    /// Opus packets (20 ms each) per Ogg page: how often the stream is flushed (host).
    pub page_packets: usize,
    /// Pages a listener may fall behind by before it is dropped (host and API).
    pub listener_buffer_pages: usize,
    /// Listeners one API instance serves at most, all channels together (API).
    pub max_listeners: usize,
    /// Streams a client may open per minute (API).
    pub opens_per_minute: u32,
}

/// The programme archive: hourly Ogg/Opus recordings with caption sidecars (host).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Folder of the recordings, one sub-folder per channel; empty = no archive.
    pub dir: PathBuf,
    /// Days a recording is kept; 0 = forever.
    pub retention_days: u32,
    /// Listings a client may ask for per minute (API).
    pub list_per_minute: u32,
}

impl ArchiveSettings {
    /// The archive folder, when the archive is on.
    pub fn enabled_dir(&self) -> Option<&Path> {
        (!self.dir.as_os_str().is_empty()).then_some(self.dir.as_path())
    }
}

/// Where the store lives, decided from `database.*`.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    Postgres(SecretString),
    Sqlite(PathBuf),
}

/// True when a secret is present and not blank.
pub fn is_set(secret: &Option<SecretString>) -> bool {
    secret
        .as_ref()
        .is_some_and(|s| !s.expose_secret().trim().is_empty())
}

/// The shipped `config/default.toml`, built into the binary: `radio24 serve` runs from any
/// folder, and the files of the config folder only override what they name.
pub const BUILT_IN_DEFAULTS: &str = include_str!("../config/default.toml");

impl Settings {
    /// Loads the layers: the built-in defaults, then `config_dir`'s `default.toml` and
    /// `$RADIO24_ENV.toml` where they exist, then environment variables from `env` (the
    /// process environment in `main`, a map in tests).
    pub fn load(config_dir: &Path, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            BUILT_IN_DEFAULTS,
            config::FileFormat::Toml,
        ));
        let default_file = config_dir.join("default.toml");
        if default_file.is_file() {
            builder = builder.add_source(config::File::from(default_file).required(true));
        }
        if let Some(overlay) = env.get("RADIO24_ENV").filter(|v| !v.trim().is_empty()) {
            let file = config_dir.join(format!("{}.toml", overlay.trim()));
            if !file.is_file() {
                return Err(invalid(
                    "RADIO24_ENV",
                    format!("{overlay:?} names {}, which does not exist", file.display()),
                ));
            }
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let prefixed: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("RADIO24__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("RADIO24")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // Lists from the environment are comma-separated.
                .list_separator(",")
                .with_list_parse_key("news.feeds")
                .with_list_parse_key("schedule.topics")
                .with_list_parse_key("schedule.default")
                .with_list_parse_key("moderation.blocked_words")
                .source(Some(prefixed)),
        );
        for (var, key) in FLAT_ENV {
            let value = env.get(*var).filter(|v| !v.trim().is_empty());
            builder = builder.set_override_option(*key, value.cloned())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.schedule.default.len() != 24 {
            return Err(invalid(
                "schedule.default",
                format!(
                    "must name 24 blocks, one per hour 0-23; found {}",
                    self.schedule.default.len()
                ),
            ));
        }
        if self.schedule.topics.is_empty()
            || self.schedule.topics.iter().any(|t| t.trim().is_empty())
        {
            return Err(invalid(
                "schedule.topics",
                "must list at least one non-empty topic",
            ));
        }
        if self.server.max_text_chars == 0 {
            return Err(invalid("server.max_text_chars", "must be at least 1"));
        }
        let body_timeout = self.server.body_timeout_secs;
        if !(body_timeout.is_finite() && (0.1..=3600.0).contains(&body_timeout)) {
            return Err(invalid(
                "server.body_timeout_secs",
                "must be between 0.1 and 3600 seconds",
            ));
        }
        if self.broadcast.instance_heartbeat_ms < 100 {
            return Err(invalid(
                "broadcast.instance_heartbeat_ms",
                "must be at least 100",
            ));
        }
        if self.broadcast.client_queue == 0 {
            return Err(invalid("broadcast.client_queue", "must be at least 1"));
        }
        if !(self.broadcast.client_frames_per_second.is_finite()
            && self.broadcast.client_frames_per_second >= 1.0)
        {
            return Err(invalid(
                "broadcast.client_frames_per_second",
                "must be at least 1",
            ));
        }
        if self.broadcast.client_frame_burst == 0 {
            return Err(invalid(
                "broadcast.client_frame_burst",
                "must be at least 1",
            ));
        }
        if self.broadcast.ping_interval_secs == 0 {
            return Err(invalid(
                "broadcast.ping_interval_secs",
                "must be at least 1",
            ));
        }
        if self.host.speak_queue == 0 || self.host.event_buffer == 0 {
            return Err(invalid(
                "host.speak_queue",
                "queues must hold at least 1 item",
            ));
        }
        if self.host.chars_per_second.is_nan() || self.host.chars_per_second <= 0.0 {
            return Err(invalid(
                "host.chars_per_second",
                "must be a positive number",
            ));
        }
        if self.station.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid(
                "station.timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. Asia/Tokyo)",
                    self.station.timezone
                ),
            ));
        }
        if self.host.retries > MAX_RETRIES {
            return Err(invalid(
                "host.retries",
                format!(
                    "must be between 0 and {MAX_RETRIES}; found {}",
                    self.host.retries
                ),
            ));
        }
        if self.host.retry_backoff_ms > MAX_RETRY_BACKOFF_MS {
            return Err(invalid(
                "host.retry_backoff_ms",
                format!(
                    "must be between 0 and {MAX_RETRY_BACKOFF_MS}; found {}",
                    self.host.retry_backoff_ms
                ),
            ));
        }
        if !(self.host.clock_speed.is_finite() && self.host.clock_speed > 0.0) {
            return Err(invalid("host.clock_speed", "must be a positive number"));
        }
        if !(self.host.lookahead_secs.is_finite() && self.host.lookahead_secs >= 0.0) {
            return Err(invalid("host.lookahead_secs", "must be 0 or more"));
        }
        if !(self.host.segment_secs.is_finite() && self.host.segment_secs >= 5.0) {
            return Err(invalid("host.segment_secs", "must be at least 5"));
        }
        if !(self.audio.target_lufs.is_finite() && (-40.0..=-5.0).contains(&self.audio.target_lufs))
        {
            return Err(invalid("audio.target_lufs", "must be between -40 and -5"));
        }
        if !(self.audio.blank_air_dbfs.is_finite()
            && (-90.0..=-10.0).contains(&self.audio.blank_air_dbfs))
        {
            return Err(invalid(
                "audio.blank_air_dbfs",
                "must be between -90 and -10",
            ));
        }
        if !(self.audio.blank_air_secs.is_finite()
            && (0.5..=60.0).contains(&self.audio.blank_air_secs))
        {
            return Err(invalid(
                "audio.blank_air_secs",
                "must be between 0.5 and 60",
            ));
        }
        if !(60..=86_400).contains(&self.livekit.token_ttl_secs) {
            return Err(invalid(
                "livekit.token_ttl_secs",
                "must be between 60 and 86400 seconds",
            ));
        }
        for (key, per_minute) in [
            ("livekit.join_per_minute", self.livekit.join_per_minute),
            (
                "broadcast.connects_per_minute",
                self.broadcast.connects_per_minute,
            ),
            ("stream.opens_per_minute", self.stream.opens_per_minute),
            ("archive.list_per_minute", self.archive.list_per_minute),
            ("queue.enqueues_per_minute", self.queue.enqueues_per_minute),
        ] {
            if per_minute == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        let queue = &self.queue;
        for (key, value) in [
            ("queue.max_text_chars", queue.max_text_chars as u64),
            ("queue.max_audio_secs", u64::from(queue.max_audio_secs)),
            (
                "queue.max_waiting_per_user",
                u64::from(queue.max_waiting_per_user),
            ),
            (
                "queue.max_per_user_per_hour",
                u64::from(queue.max_per_user_per_hour),
            ),
            ("queue.ttl_minutes", u64::from(queue.ttl_minutes)),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if !(1024..=1024 * 1024).contains(&queue.max_frame_bytes) {
            return Err(invalid(
                "queue.max_frame_bytes",
                "must be between 1024 and 1048576 bytes",
            ));
        }
        if self.stream.max_listeners == 0 {
            return Err(invalid("stream.max_listeners", "must be at least 1"));
        }
        let words = &self.moderation.blocked_words;
        if words.len() > 10_000 {
            return Err(invalid(
                "moderation.blocked_words",
                "holds more than 10000 entries",
            ));
        }
        if let Some(bad) = words
            .iter()
            .find(|w| w.trim().is_empty() || w.chars().count() > 200)
        {
            return Err(invalid(
                "moderation.blocked_words",
                format!("{bad:?}: each entry must be 1 to 200 characters"),
            ));
        }
        for (key, url) in [
            ("livekit.ws_url", &self.livekit.ws_url),
            ("livekit.publish_url", &self.livekit.publish_url),
        ] {
            let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) else {
                continue;
            };
            // Checked here so a typo stops the start instead of every connection.
            match reqwest::Url::parse(url.trim()) {
                Ok(u) if matches!(u.scheme(), "ws" | "wss" | "http" | "https") => {}
                _ => {
                    return Err(invalid(
                        key,
                        format!("{url:?} is not a ws(s):// or http(s):// URL"),
                    ));
                }
            }
        }
        if !(6_000..=510_000).contains(&self.livekit.publish_bitrate) {
            return Err(invalid(
                "livekit.publish_bitrate",
                "must be between 6000 and 510000 bits per second (Opus)",
            ));
        }
        if !(100..=600_000).contains(&self.livekit.reconnect_max_ms) {
            return Err(invalid(
                "livekit.reconnect_max_ms",
                "must be between 100 and 600000 milliseconds",
            ));
        }
        if !(6_000..=510_000).contains(&self.stream.bitrate) {
            return Err(invalid(
                "stream.bitrate",
                "must be between 6000 and 510000 bits per second (Opus)",
            ));
        }
        if !(1..=50).contains(&self.stream.page_packets) {
            return Err(invalid("stream.page_packets", "must be between 1 and 50"));
        }
        if self.stream.listener_buffer_pages < 4 {
            return Err(invalid(
                "stream.listener_buffer_pages",
                "must be at least 4",
            ));
        }
        if self.archive.retention_days > MAX_RETENTION_DAYS {
            return Err(invalid(
                "archive.retention_days",
                format!("must be 0 (keep forever) to {MAX_RETENTION_DAYS}"),
            ));
        }
        if let Some(dir) = self.archive.enabled_dir()
            && dir.exists()
            && !dir.is_dir()
        {
            return Err(invalid(
                "archive.dir",
                format!("{} exists and is not a folder", dir.display()),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        // One URL, or several separated by commas (an active host and its standbys).
        let host_urls: Vec<&str> = self
            .bus
            .host_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if host_urls.is_empty() {
            return Err(invalid("bus.host_url", "names no URL"));
        }
        for host_url in host_urls {
            match reqwest::Url::parse(host_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return Err(invalid(
                        "bus.host_url",
                        format!("{host_url:?} is not an http(s) URL"),
                    ));
                }
            }
        }
        if let Err(e) = self.bus.tls.configured() {
            return Err(invalid(e.key, e.message));
        }
        if self.bus.auth == BusAuth::GoogleIdToken {
            match reqwest::Url::parse(self.bus.metadata_url.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return Err(invalid(
                        "bus.metadata_url",
                        format!("{:?} is not an http(s) URL", self.bus.metadata_url),
                    ));
                }
            }
        }
        if self.host.lease_interval_ms == 0 {
            return Err(invalid("host.lease_interval_ms", "must be at least 1"));
        }
        if self.bus.request_timeout_ms == 0 || self.bus.connect_timeout_ms == 0 {
            return Err(invalid(
                "bus.request_timeout_ms",
                "timeouts must be at least 1 ms",
            ));
        }
        if let Some(url) = &self.database.url {
            let url = url.expose_secret();
            if !url.is_empty()
                && !url.starts_with("postgres://")
                && !url.starts_with("postgresql://")
            {
                // Never echo the URL: it may carry a password.
                return Err(invalid(
                    "database.url",
                    "must start with postgres:// or postgresql:// (leave it unset for SQLite)",
                ));
            }
        }
        Ok(())
    }

    /// Postgres when `database.url` (`DATABASE_URL`) or `POSTGRES_HOST` is set, else SQLite.
    pub fn database_target(&self) -> DatabaseTarget {
        if let Some(url) = self
            .database
            .url
            .as_ref()
            .filter(|u| !u.expose_secret().is_empty())
        {
            return DatabaseTarget::Postgres(url.clone());
        }
        let pg = &self.database.postgres;
        if let Some(host) = pg.host.as_deref().filter(|h| !h.is_empty()) {
            let user = pg.user.as_deref().unwrap_or("postgres");
            let password = pg
                .password
                .as_ref()
                .map(|p| format!(":{}", percent_encode(p.expose_secret())))
                .unwrap_or_default();
            let port = pg.port.unwrap_or(5432);
            let db = pg.db.as_deref().unwrap_or("radio24");
            let url = format!(
                "postgres://{}{password}@{}:{port}/{}",
                percent_encode(user),
                url_host(host.trim()),
                percent_encode(db)
            );
            return DatabaseTarget::Postgres(SecretString::from(url));
        }
        DatabaseTarget::Sqlite(self.database.sqlite_path.clone())
    }
}

/// `POSTGRES_HOST` as the host part of a URL: a name or IPv4 address as it is, an IPv6
/// address in brackets, and a path (a Unix socket folder, e.g. Cloud SQL's
/// `/cloudsql/PROJECT:REGION:INSTANCE`) percent-encoded, which tokio-postgres decodes and
/// takes as a socket folder holding `.s.PGSQL.<port>`.
fn url_host(host: &str) -> String {
    if host.starts_with('/') {
        percent_encode(host)
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Percent-encodes everything but unreserved characters, for URL userinfo and path parts.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The config directory: `--config-dir`, else `RADIO24_CONFIG_DIR`, else `./config`. The
/// default may be missing (the built-in defaults apply); a folder asked for must exist, so a
/// typo in its name is not silently ignored.
pub fn config_dir(cli: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    let asked = cli.or_else(|| std::env::var_os("RADIO24_CONFIG_DIR").map(PathBuf::from));
    match asked {
        Some(dir) if !dir.is_dir() => Err(invalid(
            "config_dir",
            format!(
                "{} is not a folder (from --config-dir or RADIO24_CONFIG_DIR)",
                dir.display()
            ),
        )),
        Some(dir) => Ok(dir),
        None => Ok(PathBuf::from("config")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_shipped_file_parses() {
        for entry in std::fs::read_dir(shipped()).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("toml") || stem == "default" {
                continue;
            }
            Settings::load(&shipped(), &env(&[("RADIO24_ENV", stem)]))
                .unwrap_or_else(|e| panic!("{stem}.toml: {e}"));
        }
        let s = Settings::load(&shipped(), &env(&[])).unwrap();
        assert_eq!(s.server.api_port, 8080);
        assert_eq!(s.server.host_port, 8082);
        assert_eq!(s.bus.host_url, "http://127.0.0.1:8082");
        assert_eq!(s.station.default_channel.as_str(), "radio24");
        assert!(matches!(s.database_target(), DatabaseTarget::Sqlite(_)));
    }

    #[test]
    fn seed_flat_names_and_prefixed_env_apply() {
        let s = Settings::load(
            &shipped(),
            &env(&[
                ("POSTGRES_HOST", "db"),
                ("POSTGRES_USER", "radio"),
                ("POSTGRES_PASSWORD", "p@ss word"),
                ("POSTGRES_DB", "radio24"),
                ("PORT", "9000"),
                ("ALLOWED_ORIGIN", "https://radio.example"),
                ("OPENAI_REALTIME_VOICE", "cedar"),
                ("RADIO24__BUS__HOST_URL", "http://host:8082"),
                ("RADIO24__SERVER__MAX_TEXT_CHARS", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, Some(9000));
        assert_eq!(s.server.allowed_origin, "https://radio.example");
        assert_eq!(s.openai.realtime_voice, "cedar");
        assert_eq!(s.bus.host_url, "http://host:8082");
        assert_eq!(s.server.max_text_chars, 500);
        match s.database_target() {
            DatabaseTarget::Postgres(url) => assert_eq!(
                url.expose_secret(),
                "postgres://radio:p%40ss%20word@db:5432/radio24"
            ),
            other => panic!("expected postgres, got {other:?}"),
        }
        let s = Settings::load(&shipped(), &env(&[("DATABASE_URL", "postgres://u@h/d")])).unwrap();
        assert!(matches!(s.database_target(), DatabaseTarget::Postgres(_)));
        // Cloud SQL's Unix socket folder, and an IPv6 address.
        for (host, url) in [
            (
                "/cloudsql/my-project:asia-northeast1:radio24",
                "postgres://postgres@%2Fcloudsql%2Fmy-project%3Aasia-northeast1%3Aradio24:5432/radio24",
            ),
            ("fd00::5", "postgres://postgres@[fd00::5]:5432/radio24"),
        ] {
            let s = Settings::load(&shipped(), &env(&[("POSTGRES_HOST", host)])).unwrap();
            match s.database_target() {
                DatabaseTarget::Postgres(u) => assert_eq!(u.expose_secret(), url),
                other => panic!("expected postgres, got {other:?}"),
            }
        }
        assert!(matches!(s.database_target(), DatabaseTarget::Postgres(_)));
    }

    #[test]
    fn the_defaults_are_built_in_and_the_folder_overrides_them() {
        // No config folder at all: the built-in defaults.
        let nowhere = tempfile::tempdir().unwrap();
        let s = Settings::load(&nowhere.path().join("config"), &env(&[])).unwrap();
        assert_eq!(s.server.api_port, 8080);
        assert_eq!(s.station.default_channel.as_str(), "radio24");
        assert_eq!(s.schedule.topics.len(), 8);

        // A folder's default.toml names only what it changes.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[server]\napi_port = 9090\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("lab.toml"), "[station]\nname = \"Lab\"\n").unwrap();
        let s = Settings::load(dir.path(), &env(&[("RADIO24_ENV", "lab")])).unwrap();
        assert_eq!(s.server.api_port, 9090);
        assert_eq!(s.station.name, "Lab");
        assert_eq!(s.server.host_port, 8082, "the rest stays built in");
    }

    #[test]
    fn a_config_folder_asked_for_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            config_dir(Some(dir.path().to_owned())).unwrap(),
            dir.path().to_owned()
        );
        let err = config_dir(Some(dir.path().join("nope"))).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn blank_air_defaults_and_bounds() {
        let s = Settings::load(&shipped(), &env(&[])).unwrap();
        assert_eq!(
            (s.audio.blank_air_dbfs, s.audio.blank_air_secs),
            (-40.0, 2.0)
        );
        for (key, value, named) in [
            (
                "RADIO24__AUDIO__BLANK_AIR_DBFS",
                "0",
                "audio.blank_air_dbfs",
            ),
            (
                "RADIO24__AUDIO__BLANK_AIR_DBFS",
                "-120",
                "audio.blank_air_dbfs",
            ),
            (
                "RADIO24__AUDIO__BLANK_AIR_SECS",
                "0",
                "audio.blank_air_secs",
            ),
            (
                "RADIO24__AUDIO__BLANK_AIR_SECS",
                "NaN",
                "audio.blank_air_secs",
            ),
        ] {
            let err = Settings::load(&shipped(), &env(&[(key, value)])).unwrap_err();
            assert!(err.to_string().contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = Settings::load(&shipped(), &env(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("server.port"), "{err}");
        let err =
            Settings::load(&shipped(), &env(&[("RADIO24__BUS__HOST_URL", "nope")])).unwrap_err();
        assert!(err.to_string().contains("bus.host_url"), "{err}");
        let err = Settings::load(&shipped(), &env(&[("RADIO24__SERVER__NOPE", "1")])).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err =
            Settings::load(&shipped(), &env(&[("DATABASE_URL", "mysql://secret@x")])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let err = Settings::load(&shipped(), &env(&[("RADIO24_ENV", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("RADIO24_ENV"), "{err}");
        // The bus's TLS files go together: half of them stops the start, naming what is missing.
        let err = Settings::load(
            &shipped(),
            &env(&[
                ("RADIO24__BUS__TLS__CA", "/etc/ca.pem"),
                ("RADIO24__BUS__TLS__CERT", "/etc/bus.pem"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`bus.tls.key`"), "{err}");
        let s = Settings::load(
            &shipped(),
            &env(&[
                ("RADIO24__BUS__TLS__CA", "/etc/ca.pem"),
                ("RADIO24__BUS__TLS__CERT", "/etc/bus.pem"),
                ("RADIO24__BUS__TLS__KEY", "/etc/bus-key.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.bus.tls.key.as_deref(),
            Some(Path::new("/etc/bus-key.pem"))
        );
    }

    #[test]
    fn the_archive_is_off_by_default_and_its_keys_are_checked() {
        let s = Settings::load(&shipped(), &env(&[])).unwrap();
        assert_eq!(s.archive.enabled_dir(), None);
        assert_eq!(s.archive.retention_days, 14);
        let s = Settings::load(
            &shipped(),
            &env(&[
                ("RADIO24__ARCHIVE__DIR", "/srv/radio24-archive"),
                ("RADIO24__ARCHIVE__RETENTION_DAYS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.archive.enabled_dir(),
            Some(Path::new("/srv/radio24-archive"))
        );
        assert_eq!(s.archive.retention_days, 0);
        let err = Settings::load(
            &shipped(),
            &env(&[("RADIO24__ARCHIVE__RETENTION_DAYS", "36501")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("archive.retention_days"), "{err}");
        let err = Settings::load(
            &shipped(),
            &env(&[("RADIO24__ARCHIVE__RETENTION_DAYS", "-1")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("retention_days"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = Settings::load(
            &shipped(),
            &env(&[("RADIO24__ARCHIVE__DIR", file.path().to_str().unwrap())]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("archive.dir"), "{err}");
    }

    #[test]
    fn retries_and_their_first_wait_are_bounded_naming_the_range() {
        let load = |key: &str, value: &str| Settings::load(&shipped(), &env(&[(key, value)]));
        let s = load("RADIO24__HOST__RETRIES", "10").unwrap();
        assert_eq!(s.host.retries, MAX_RETRIES);
        // u32::MAX once fed `2u32.pow(attempt)` and overflowed it.
        for too_many in ["11", "4294967295"] {
            let err = load("RADIO24__HOST__RETRIES", too_many)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`host.retries`") && err.contains("between 0 and 10"),
                "{err}"
            );
        }
        assert_eq!(
            load("RADIO24__HOST__RETRY_BACKOFF_MS", "60000")
                .unwrap()
                .host
                .retry_backoff_ms,
            60_000
        );
        let err = load("RADIO24__HOST__RETRY_BACKOFF_MS", "60001")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`host.retry_backoff_ms`") && err.contains("between 0 and 60000"),
            "{err}"
        );
    }

    #[test]
    fn backends_parse_into_their_kinds_and_others_are_refused_listing_the_choices() {
        let load = |pairs: &[(&str, &str)]| Settings::load(&shipped(), &env(pairs));
        let s = load(&[]).unwrap();
        assert_eq!(s.writer.backend, WriterBackend::Auto);
        assert_eq!(s.voice.backend, VoiceBackend::Auto);
        for (spelling, backend) in [
            ("auto", WriterBackend::Auto),
            ("openai", WriterBackend::Openai),
            ("template", WriterBackend::Template),
        ] {
            let s = load(&[("RADIO24__WRITER__BACKEND", spelling)]).unwrap();
            assert_eq!(s.writer.backend, backend, "{spelling}");
        }
        for (spelling, backend) in [
            ("auto", VoiceBackend::Auto),
            ("openai-speech", VoiceBackend::OpenaiSpeech),
            ("openai-realtime", VoiceBackend::OpenaiRealtime),
            ("espeak-ng", VoiceBackend::EspeakNg),
            ("none", VoiceBackend::CaptionsOnly),
        ] {
            let s = load(&[("RADIO24__VOICE__BACKEND", spelling)]).unwrap();
            assert_eq!(s.voice.backend, backend, "{spelling}");
        }
        let err = load(&[("RADIO24__WRITER__BACKEND", "gpt")])
            .unwrap_err()
            .to_string();
        for expected in ["writer.backend", "\"gpt\"", "auto, openai, template"] {
            assert!(err.contains(expected), "{expected} not in: {err}");
        }
        // The Rust spelling of a variant is not a config spelling.
        let err = load(&[("RADIO24__VOICE__BACKEND", "espeak_ng")])
            .unwrap_err()
            .to_string();
        for expected in [
            "voice.backend",
            "auto, openai-speech, openai-realtime, espeak-ng, none",
        ] {
            assert!(err.contains(expected), "{expected} not in: {err}");
        }
        assert!(load(&[("RADIO24__VOICE__BACKEND", "captions-only")]).is_err());
    }

    #[test]
    fn livekit_join_settings_are_checked_and_report_what_is_missing() {
        let s = Settings::load(&shipped(), &env(&[])).unwrap();
        assert_eq!(s.livekit.token_ttl_secs, 3600);
        assert_eq!(s.livekit.join_per_minute, 20);
        assert_eq!(
            s.livekit.missing_env(),
            ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_WS_URL"]
        );
        let s = Settings::load(
            &shipped(),
            &env(&[
                ("LIVEKIT_API_KEY", "key"),
                ("LIVEKIT_API_SECRET", "secret"),
                ("LIVEKIT_WS_URL", "wss://lk.example"),
                ("RADIO24__LIVEKIT__TOKEN_TTL_SECS", "60"),
            ]),
        )
        .unwrap();
        assert!(s.livekit.missing_env().is_empty());
        assert_eq!(s.livekit.token_ttl_secs, 60);
        // A blank secret (e.g. an empty env var in a compose file) counts as missing.
        let s = Settings::load(
            &shipped(),
            &env(&[
                ("RADIO24__LIVEKIT__API_KEY", "key"),
                ("RADIO24__LIVEKIT__API_SECRET", "  "),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.livekit.missing_env(),
            ["LIVEKIT_API_SECRET", "LIVEKIT_WS_URL"]
        );
        for (var, value, key) in [
            (
                "RADIO24__LIVEKIT__TOKEN_TTL_SECS",
                "59",
                "livekit.token_ttl_secs",
            ),
            (
                "RADIO24__LIVEKIT__TOKEN_TTL_SECS",
                "86401",
                "livekit.token_ttl_secs",
            ),
            (
                "RADIO24__LIVEKIT__JOIN_PER_MINUTE",
                "0",
                "livekit.join_per_minute",
            ),
            ("LIVEKIT_WS_URL", "livekit:7880", "livekit.ws_url"),
        ] {
            let err = Settings::load(&shipped(), &env(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(key), "{var}={value}: {err}");
        }
        assert!(
            Settings::load(
                &shipped(),
                &env(&[("RADIO24__LIVEKIT__TOKEN_TTL_SECS", "86400")])
            )
            .is_ok()
        );
    }
}
