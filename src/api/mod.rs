//! The API: what listeners and operators talk to. Routes by resource in [`routes`], the
//! broadcast hub in [`hub`], the live audio relay in [`stream`], the call-in queue in
//! [`queue`] with callers' identities in [`callers`], callers put through to the host in
//! [`switchboard`], every WebSocket's bounds in [`ws`],
//! per-client rates in [`rate_limit`], errors in [`error`]. It owns the store and reaches
//! the host only through the bus (`Arc<dyn HostBus>`); it never imports `host`.
//!
//! Config keys read here: `auth.*`, `broadcast.*`, `server.allowed_origin`,
//! `server.max_text_chars`, `station.default_channel`, `schedule.default`, `livekit.*`,
//! `stream.*`, `queue.*`, `bus.request_timeout_ms` (how long a handover may go unconfirmed).

pub mod callers;
pub mod error;
pub mod hub;
pub mod programme;
pub mod queue;
pub mod rate_limit;
pub mod routes;
pub mod stream;
pub mod switchboard;
pub mod web_app;
pub mod ws;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use actix_web::web;
use secrecy::SecretString;

use crate::bus::HostBus;
use crate::bus::link::HostLink;
use crate::config::LivekitSettings;
use crate::db::Store;
use crate::domain::ChannelName;
pub use error::{ApiError, Result};
use hub::Hub;
use rate_limit::ClientLimiter;

/// Everything the API's routes share.
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn HostBus>,
    pub hub: Arc<Hub>,
    pub link: HostLink,
    pub admin_token: SecretString,
    /// `all` or `api`, as `/health` reports it.
    pub role: &'static str,
    /// True when the host runs in another process (`--role api`).
    pub split: bool,
    pub default_channel: ChannelName,
    /// The station's time zone (`station.timezone`): the schedule's hours are hours there.
    pub timezone: chrono_tz::Tz,
    pub max_text_chars: usize,
    pub ws: WsLimits,
    pub ws_clients: AtomicUsize,
    /// What `POST /v1/room/join` signs listener tokens with.
    pub livekit: LivekitJoin,
    /// Per-client rate limits of the routes that cost the server work.
    pub limits: ClientLimits,
    /// Most stream listeners on this instance (`stream.max_listeners`).
    pub max_stream_listeners: usize,
    /// Proxies in front of this server that append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    /// The live audio relay (one upstream per channel).
    pub streams: Arc<stream::StreamRelay>,
    /// The call-in queue.
    pub queue: Arc<queue::CallQueue>,
    /// Puts callers through to the host.
    pub switchboard: Arc<switchboard::Switchboard>,
    /// Pushes the programme to the host, retrying until it takes it.
    pub programme: Arc<programme::ProgrammePusher>,
    /// Issues and checks callers' tokens.
    pub callers: callers::CallerKeys,
    /// Turns true when the server starts shutting down: every WebSocket closes with 1001
    /// (going away) so its client reconnects elsewhere.
    pub going_away: tokio::sync::watch::Receiver<bool>,
}

/// Resolves when the server starts shutting down (see [`ApiState::going_away`]); never, if
/// it does not.
pub async fn going_away(mut signal: tokio::sync::watch::Receiver<bool>) {
    if signal.wait_for(|going| *going).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The reason sent with the close frame (1001) of every socket at shutdown.
pub const GOING_AWAY: &str = "the server is shutting down; reconnect";

/// The per-client rate limits, one per kind of request.
pub struct ClientLimits {
    /// `POST /v1/room/join` (`livekit.join_per_minute`).
    pub join: ClientLimiter,
    /// `GET /ws/broadcast` (`broadcast.connects_per_minute`).
    pub broadcast: ClientLimiter,
    /// `GET /v1/channels/{name}/stream` (`stream.opens_per_minute`).
    pub stream: ClientLimiter,
    /// `GET /v1/channels/{name}/archive` (`archive.list_per_minute`).
    pub archive_list: ClientLimiter,
    /// Call-ins, over `/ws/ptt` and `POST /v1/queue` (`queue.enqueues_per_minute`).
    pub call_ins: ClientLimiter,
}

impl ApiState {
    /// The rate-limit key of the client that sent `req` (see [`rate_limit::client_address`]).
    pub fn client_key(&self, req: &actix_web::HttpRequest) -> String {
        rate_limit::client_key(rate_limit::client_address(req, self.trusted_proxy_hops).as_deref())
    }
}

/// The LiveKit settings listener join tokens need, checked once at start-up.
pub struct LivekitJoin {
    /// `Err` lists the environment variables still to set (`LIVEKIT_API_KEY`, ...).
    pub credentials: std::result::Result<LivekitCredentials, Vec<&'static str>>,
    /// Lifetime of a join token (`livekit.token_ttl_secs`).
    pub token_ttl: Duration,
}

/// A complete set of LiveKit credentials. No `Debug`: it holds the API secret.
pub struct LivekitCredentials {
    pub api_key: String,
    pub api_secret: SecretString,
    /// Where listeners connect (`livekit.ws_url`), handed out with each token.
    pub ws_url: String,
}

impl LivekitJoin {
    /// From `livekit.*`: credentials when the key, the secret and the URL are all set (and
    /// not blank), else the list of what is missing.
    pub fn from_settings(settings: &LivekitSettings) -> Self {
        let missing = settings.missing_env();
        let credentials = match (&settings.api_key, &settings.api_secret, &settings.ws_url) {
            (Some(api_key), Some(api_secret), Some(ws_url)) if missing.is_empty() => {
                // Key and secret verbatim: the LiveKit server compares them byte for byte.
                Ok(LivekitCredentials {
                    api_key: api_key.clone(),
                    api_secret: api_secret.clone(),
                    ws_url: ws_url.trim().to_owned(),
                })
            }
            _ => Err(missing),
        };
        Self {
            credentials,
            token_ttl: Duration::from_secs(settings.token_ttl_secs),
        }
    }
}

/// Limits of every WebSocket (`broadcast.*`).
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub ping_interval: Duration,
    pub send_timeout: Duration,
    pub max_clients: usize,
    /// How fast a client may send frames on any socket (`broadcast.client_frames_*`).
    pub frame_rate: ws::FrameRate,
}

impl WsLimits {
    /// The bounds of one socket whose client may send frames and messages of `max_frame` bytes.
    pub fn socket(&self, max_frame: usize) -> ws::SocketLimits {
        ws::SocketLimits {
            max_frame,
            max_message: max_frame,
            skip_up_to: None,
            send_timeout: self.send_timeout,
            frame_rate: self.frame_rate,
        }
    }
}

/// Mounts every API route.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<ApiState>) {
    cfg.app_data(state).configure(routes::configure);
}

impl crate::web::BearerProtected for ApiState {
    const REFUSAL: &'static str = "missing or wrong bearer token (auth.admin_token)";

    fn token(&self) -> &SecretString {
        &self.admin_token
    }
}

/// The admin token: `auth.admin_token` when set, else the one kept in `admin_token_file`,
/// else a new random one written there (mode 0600). Its value is never logged.
pub fn admin_token(configured: Option<SecretString>, file: &Path) -> anyhow::Result<SecretString> {
    use anyhow::Context;
    if let Some(token) = configured {
        return Ok(token);
    }
    if let Ok(existing) = std::fs::read_to_string(file) {
        let existing = existing.trim();
        if !existing.is_empty() {
            tracing::info!(file = %file.display(), "admin token read from file");
            return Ok(SecretString::from(existing.to_owned()));
        }
    }
    let token = crate::random_token();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(file, &token).with_context(|| format!("writing {}", file.display()))?;
    tracing::warn!(
        file = %file.display(),
        "auth.admin_token is not set: generated one; operator routes need `Authorization: Bearer <contents of that file>`"
    );
    Ok(SecretString::from(token))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}
