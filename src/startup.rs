//! Builds the application for a role: binds the port, wires the store, the bus and the
//! modules, and returns an [`Application`] to run. `main` and the tests build it the same way.
//!
//! - `all`:  store + host in-process; the API holds the host as `Arc<dyn HostBus>`; the bus
//!   routes are served on the same port too.
//! - `api`:  store + [`crate::bus::HttpHostBus`] to `bus.host_url`.
//! - `host`: the host and its bus routes. With PostgreSQL configured it airs only while it
//!   holds the host lease, else it waits as a standby ([`crate::host::lease`]); without, as
//!   before, it airs at once.
//!
//! Every role serves `GET /metrics` ([`crate::metrics`]), whose recorder is installed here.
//!
//! Shutdown (SIGTERM or SIGINT, or [`ServerHandle::stop`]): the server stops accepting,
//! every WebSocket is closed with 1001 (going away), and the host stops airing (the current
//! frame faded out, the archive's hour files closed, LiveKit left, the lease released), all
//! within `server.shutdown_timeout_secs` for open connections.
//!
//! Config keys read here: `server.*`, `bus.token`, `bus.auth` (and what it needs), `bus.tls.*`
//! (the host role serves its bus over mutual TLS, the api role's bus client uses it), `auth.*`,
//! `broadcast.*`, `livekit.*`, `host.lease_*`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};
use secrecy::SecretString;
use tracing_actix_web::TracingLogger;

use crate::cli::Role;
use crate::config::{BusAuth, Settings, is_set};
use crate::web::{
    json_config, json_errors, limit_body_time, limit_request_head, not_found, query_config,
};

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    role: Role,
    server: Server,
    /// The on-air engine in roles host and all: it stops airing at shutdown. `None` in a
    /// host role with a lease (the keeper starts and stops it).
    #[cfg(feature = "host")]
    engine: Option<crate::host::Host>,
    /// The host lease, in a host role with PostgreSQL.
    #[cfg(feature = "host")]
    lease: Option<crate::host::lease::LeaseKeeper>,
    /// Turned true at shutdown: the WebSockets close with 1001.
    going_away: tokio::sync::watch::Sender<bool>,
}

/// What [`Application::build_with`] may be given besides the settings.
#[derive(Default)]
pub struct BuildOptions {
    /// The clock the host runs by, instead of the one `host.clock_speed` makes (tests start
    /// the station at a chosen moment on a virtual clock).
    #[cfg(feature = "host")]
    pub host_clock: Option<Arc<dyn crate::host::clock::Clock>>,
}

impl Application {
    /// Builds the app for `role`. Fails with a clear message when this build lacks the role,
    /// a required setting is missing, the port is taken or the store cannot be opened.
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Self> {
        Self::build_with(settings, role, BuildOptions::default()).await
    }

    /// [`Application::build`] with [`BuildOptions`].
    pub async fn build_with(
        settings: Settings,
        role: Role,
        options: BuildOptions,
    ) -> anyhow::Result<Self> {
        check_role_is_built(role)?;
        crate::metrics::install();
        let port = role.listen_port(&settings.server);
        let bind = settings.server.bind.clone();
        let listener = TcpListener::bind((bind.as_str(), port)).with_context(|| {
            format!("cannot listen on {bind}:{port} (server.bind, server.*_port, PORT)")
        })?;
        let port = listener.local_addr()?.port();

        let google = settings.bus.auth == BusAuth::GoogleIdToken;
        if google
            && role == Role::Host
            && settings
                .bus
                .google_service_account
                .as_deref()
                .is_none_or(|a| a.trim().is_empty())
        {
            bail!(
                "config key `bus.google_service_account`: required by --role host with bus.auth = \"google_id_token\" (the API's service account); set RADIO24__BUS__GOOGLE_SERVICE_ACCOUNT"
            );
        }
        let bus_token = match settings.bus.token.clone() {
            Some(token) if is_set(&Some(token.clone())) => token,
            // Role all, or split with ID tokens: a random token nobody is told (the host
            // then accepts only ID tokens).
            _ if google || role == Role::All => SecretString::from(crate::random_token()),
            _ => bail!(
                "config key `bus.token`: required by --role {} (the secret shared by the api and host roles); set RADIO24__BUS__TOKEN",
                role.as_str()
            ),
        };
        let bus_tls = crate::bus::tls::BusTls::load(&settings.bus.tls)?;
        if bus_tls.is_some() && role == Role::All {
            tracing::warn!("bus.tls.* is set but --role all has no HTTP bus; ignored");
        }
        // Checked before the host starts, so a bad certificate stops nothing half-started.
        #[cfg(feature = "host")]
        let server_tls = match (role, &bus_tls) {
            (Role::Host, Some(tls)) => Some(tls.server_config()?),
            _ => None,
        };
        let (going_away, going_away_rx) = tokio::sync::watch::channel(false);
        let (parts, _lease) = Parts::build(
            &settings,
            role,
            bus_token,
            bus_tls.as_ref(),
            options,
            going_away_rx,
        )
        .await?;
        #[cfg(feature = "host")]
        let engine = parts.engine.clone();

        let workers = match settings.server.workers {
            // Four per core: see `server.workers` in config/default.toml.
            0 => 4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let allowed_origin = settings.server.allowed_origin.clone();
        let send_buffer = settings.server.send_buffer_bytes;
        let body_timeout = Duration::from_secs_f64(settings.server.body_timeout_secs);
        let stall_timeout = Duration::from_secs(settings.server.stall_timeout_secs);
        let server = HttpServer::new(move || {
            let parts = parts.clone();
            let app = App::new()
                .app_data(json_config())
                .app_data(query_config())
                .configure(move |cfg| parts.configure(cfg))
                .default_service(web::to(not_found));
            // Innermost first: the body's time limit, CORS, the head's size limits, JSON
            // bodies for what they refuse, and the request's span around everything.
            let app = app.wrap(from_fn(move |req, next| {
                limit_body_time(body_timeout, req, next)
            }));
            #[cfg(feature = "api")]
            let app = app.wrap(cors(&allowed_origin));
            #[cfg(not(feature = "api"))]
            let _ = &allowed_origin;
            app.wrap(from_fn(limit_request_head))
                .wrap(from_fn(json_errors))
                .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
        })
        .workers(workers)
        .on_connect(move |conn, _| {
            limit_send_buffer(conn, send_buffer);
            limit_stall(conn, stall_timeout);
        })
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Signals are ours (`run_until_stopped`): WebSockets are told to close first.
        .disable_signals();
        #[cfg(feature = "host")]
        let (server, tls) = match server_tls {
            Some(config) => (server.listen_rustls_0_23(listener, config)?, true),
            None => (server.listen(listener)?, false),
        };
        #[cfg(not(feature = "host"))]
        let (server, tls) = (server.listen(listener)?, false);
        let server = server.run();
        tracing::info!(role = role.as_str(), %bind, port, workers, tls, "radio24 listening");
        Ok(Self {
            port,
            role,
            server,
            #[cfg(feature = "host")]
            engine,
            #[cfg(feature = "host")]
            lease: _lease,
            going_away,
        })
    }

    /// The port actually bound (useful when the settings asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// A handle to stop the server (tests use it to kill a role).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The on-air engine, in roles host and all (tests attach to its playout).
    #[cfg(feature = "host")]
    pub fn engine(&self) -> Option<crate::host::Host> {
        self.engine.clone()
    }

    /// Serves until SIGTERM or SIGINT, or [`ServerHandle::stop`], then shuts down: stops
    /// accepting, closes every WebSocket with 1001 (going away), and lets the host stop
    /// airing (see the module's doc) while open connections finish. A host that lost its
    /// lease stops the same way and returns the error.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            going_away,
            #[cfg(feature = "host")]
            engine,
            #[cfg(feature = "host")]
            mut lease,
            ..
        } = self;
        let handle = server.handle();
        let mut server = server;
        #[cfg(feature = "host")]
        let lease_failed = async {
            match lease.as_mut() {
                Some(keeper) => Some(anyhow::Error::from(keeper.failed().await)),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(feature = "host"))]
        let lease_failed = std::future::pending::<Option<anyhow::Error>>();
        let mut failure: Option<anyhow::Error> = None;
        let stopped_by_handle = tokio::select! {
            served = &mut server => Some(served),
            () = termination() => None,
            lost = lease_failed => {
                failure = lost;
                None
            }
        };
        tracing::info!("shutting down");
        going_away.send_replace(true);
        let served = async {
            match stopped_by_handle {
                Some(served) => served,
                // The stop completes as the server future runs: poll both.
                None => tokio::join!(handle.stop(true), server).1,
            }
        };
        let host = async {
            #[cfg(feature = "host")]
            {
                if let Some(engine) = engine {
                    engine.shutdown().await;
                }
                if let Some(keeper) = lease {
                    keeper.shutdown().await;
                }
            }
        };
        let (served, ()) = tokio::join!(served, host);
        served?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Caps a new connection's send buffer (`server.send_buffer_bytes`): a live-stream listener
/// that stops reading then fills it within seconds, its queue fills next, and it is dropped
/// (see `bus::audio::listener_stream`), instead of the kernel quietly buffering megabytes.
fn limit_send_buffer(conn: &dyn std::any::Any, bytes: usize) {
    if bytes == 0 {
        return;
    }
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(e) = socket2::SockRef::from(tcp).set_send_buffer_size(bytes)
    {
        tracing::warn!(error = %e, "could not cap a connection's send buffer");
    }
}

/// Has the kernel close a connection whose client takes nothing it is sent for `timeout`
/// (`server.stall_timeout_secs`). Needed because a client that never reads leaves the HTTP
/// layer's write stuck, and nothing above it can close the connection then: a WebSocket
/// dropped for lagging would otherwise hold its connection, and what was buffered for it,
/// for as long as the client likes. Zero window probes count (Linux 5.11 on).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn limit_stall(conn: &dyn std::any::Any, timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout))
    {
        tracing::warn!(error = %e, "could not set a connection's stall timeout");
    }
}

/// Elsewhere there is no such option: stalled connections wait for the client to go.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn limit_stall(_conn: &dyn std::any::Any, _timeout: Duration) {}

fn check_role_is_built(role: Role) -> anyhow::Result<()> {
    let built: Vec<&str> = [
        cfg!(feature = "api").then_some("api"),
        cfg!(feature = "host").then_some("host"),
        cfg!(all(feature = "api", feature = "host")).then_some("all"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if built.contains(&role.as_str()) {
        Ok(())
    } else {
        bail!(
            "role `{}` is not in this build (it was compiled without the `{}` feature); this binary serves: {}",
            role.as_str(),
            if cfg!(feature = "api") { "host" } else { "api" },
            built.join(", ")
        )
    }
}

/// What each worker's app mounts, by role.
#[derive(Clone)]
struct Parts {
    /// What `/metrics` runs before it renders.
    before_scrape: Option<crate::metrics::BeforeScrape>,
    #[cfg(feature = "api")]
    api: Option<web::Data<crate::api::ApiState>>,
    /// The web app at `/`, with the API (mounted after every other route).
    #[cfg(feature = "api")]
    web_app: Option<crate::api::web_app::WebApp>,
    #[cfg(feature = "host")]
    bus_server: Option<crate::bus::http_server::BusServer>,
    /// The engine, started at once (roles all, and host without a lease).
    #[cfg(feature = "host")]
    engine: Option<crate::host::Host>,
    /// The host as its bus sees it, for the host role's `/health` and `/ready`.
    #[cfg(feature = "host")]
    host_slot: Option<crate::host::lease::HostSlot>,
}

/// What [`Parts::build`] returns besides the parts: the lease keeper, in a host role with a
/// lease.
#[cfg(feature = "host")]
type Keeper = Option<crate::host::lease::LeaseKeeper>;
#[cfg(not(feature = "host"))]
type Keeper = ();

impl Parts {
    async fn build(
        settings: &Settings,
        role: Role,
        bus_token: SecretString,
        bus_tls: Option<&crate::bus::tls::BusTls>,
        options: BuildOptions,
        going_away: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<(Self, Keeper)> {
        #[cfg(feature = "host")]
        let (engine, host_slot, keeper) = host_parts(settings, role, options).await?;
        #[cfg(not(feature = "host"))]
        let (BuildOptions {}, keeper) = (options, ());
        #[cfg(feature = "host")]
        let host: Option<Arc<dyn crate::bus::HostBus>> = match (&engine, &host_slot) {
            (Some(engine), _) => Some(Arc::new(engine.clone())),
            (None, Some(slot)) => Some(Arc::new(slot.clone())),
            (None, None) => None,
        };
        #[cfg(feature = "host")]
        let bus_server = host.clone().map(|bus| crate::bus::http_server::BusServer {
            bus,
            token: bus_token.clone(),
            id_tokens: (role == Role::Host && settings.bus.auth == BusAuth::GoogleIdToken).then(
                || {
                    crate::bus::google_id::IdTokenCheck::new(
                        settings.bus.audience(),
                        settings
                            .bus
                            .google_service_account
                            .as_deref()
                            .unwrap_or_default(),
                    )
                },
            ),
            default_channel: settings.station.default_channel.clone(),
        });

        #[cfg(feature = "api")]
        let api = match role {
            Role::Host => None,
            Role::Api | Role::All => {
                let bus: Arc<dyn crate::bus::HostBus> = match role {
                    #[cfg(feature = "host")]
                    Role::All => host.clone().context("the all role builds a host")?,
                    _ => Arc::new(http_bus(settings, bus_token.clone(), bus_tls)?),
                };
                let bus = crate::bus::metered::MeteredBus::wrap(bus);
                Some(web::Data::new(
                    api_state(settings, role, bus, going_away.clone()).await?,
                ))
            }
        };
        let _ = (&bus_token, role, bus_tls, &going_away);
        // An API's scrape says whether its own link is up now.
        #[cfg(feature = "api")]
        let before_scrape = api.as_ref().map(|api| {
            let link = api.link.watch();
            Arc::new(move || {
                let up = link.borrow().state == crate::bus::link::LinkState::Up;
                crate::metrics::set_host_link_up(up);
            }) as crate::metrics::BeforeScrape
        });
        #[cfg(not(feature = "api"))]
        let before_scrape = None;
        #[cfg(feature = "api")]
        let web_app = api
            .is_some()
            .then(|| crate::api::web_app::WebApp::new(&settings.server.web_dir));
        let parts = Self {
            before_scrape,
            #[cfg(feature = "api")]
            api,
            #[cfg(feature = "api")]
            web_app,
            #[cfg(feature = "host")]
            bus_server,
            #[cfg(feature = "host")]
            engine,
            #[cfg(feature = "host")]
            host_slot,
        };
        Ok((parts, keeper))
    }

    fn configure(&self, cfg: &mut web::ServiceConfig) {
        // Every role serves /metrics on its own port (one route in role all).
        crate::metrics::configure(cfg, self.before_scrape.clone());
        #[cfg(feature = "api")]
        if let Some(api) = &self.api {
            crate::api::configure(cfg, api.clone());
        }
        #[cfg(feature = "host")]
        if let Some(server) = &self.bus_server {
            crate::bus::http_server::configure(cfg, server.clone());
            #[cfg(feature = "api")]
            let serves_api = self.api.is_some();
            #[cfg(not(feature = "api"))]
            let serves_api = false;
            if !serves_api && let Some(slot) = &self.host_slot {
                cfg.app_data(web::Data::new(slot.clone()))
                    .service(
                        crate::web::resource("/health", "GET, HEAD")
                            .route(web::get().to(host_health))
                            .route(web::head().to(host_health)),
                    )
                    .service(
                        crate::web::resource("/ready", "GET, HEAD")
                            .route(web::get().to(host_ready))
                            .route(web::head().to(host_ready)),
                    );
            }
        }
        #[cfg(feature = "api")]
        if let Some(web_app) = &self.web_app {
            web_app.mount(cfg);
        }
    }
}

/// The engine of a host role: started at once, or, with PostgreSQL configured, by the lease
/// keeper once this host holds the lease (a standby until then).
#[cfg(feature = "host")]
async fn host_parts(
    settings: &Settings,
    role: Role,
    options: BuildOptions,
) -> anyhow::Result<(
    Option<crate::host::Host>,
    Option<crate::host::lease::HostSlot>,
    Keeper,
)> {
    use crate::host::lease::{HostSlot, LeaseConfig, LeaseKeeper, start_with};
    use crate::host::{Host, HostConfig};
    if role == Role::Api {
        return Ok((None, None, None));
    }
    let config = HostConfig::from_settings(settings);
    let clock = options.host_clock;
    let start = move || async move {
        match clock {
            Some(clock) => Host::start_with_clock(config, clock).await,
            None => Host::start(config).await,
        }
    };
    match (role, settings.database_target()) {
        (Role::Host, crate::config::DatabaseTarget::Postgres(url)) => {
            let keeper = LeaseKeeper::spawn(
                LeaseConfig {
                    url,
                    interval: Duration::from_millis(settings.host.lease_interval_ms),
                    grace: Duration::from_millis(settings.host.lease_grace_ms),
                },
                start_with(start),
            );
            Ok((None, Some(keeper.slot()), Some(keeper)))
        }
        _ => {
            let engine = start().await?;
            Ok((Some(engine.clone()), Some(HostSlot::active(engine)), None))
        }
    }
}

#[cfg(feature = "host")]
async fn host_health(slot: web::Data<crate::host::lease::HostSlot>) -> actix_web::HttpResponse {
    let host = slot.host();
    actix_web::HttpResponse::Ok().json(crate::bus::HostHealth {
        status: "ok".into(),
        role: "host".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        state: slot.leased().then(|| slot.state().as_str().to_owned()),
        stream_listeners: host
            .as_ref()
            .map(|h| h.stream_listeners())
            .unwrap_or_default(),
        livekit: host
            .as_ref()
            .map(|h| h.livekit_status())
            .unwrap_or_default(),
        playout: host
            .as_ref()
            .map(|h| h.playout_timing())
            .unwrap_or_default(),
    })
}

/// The API's HTTP client of the host's bus, presenting the bus token or, with
/// `bus.auth = "google_id_token"`, ID tokens for `bus.host_url`.
#[cfg(feature = "api")]
fn http_bus(
    settings: &Settings,
    token: SecretString,
    tls: Option<&crate::bus::tls::BusTls>,
) -> anyhow::Result<crate::bus::HttpHostBus> {
    let bus = crate::bus::HttpHostBus::with_tls(
        &settings.bus.host_url,
        token,
        Duration::from_millis(settings.bus.connect_timeout_ms),
        Duration::from_millis(settings.bus.request_timeout_ms),
        tls,
    )?;
    Ok(match settings.bus.auth {
        BusAuth::Token => bus,
        BusAuth::GoogleIdToken => bus.with_id_tokens(Arc::new(
            crate::bus::google_id::IdTokenSource::new(
                &settings.bus.metadata_url,
                settings.bus.audience(),
            )
            .context("bus.metadata_url")?,
        )),
    })
}

/// 200 while this host airs; 503 while it is a standby or has stopped.
#[cfg(feature = "host")]
async fn host_ready(slot: web::Data<crate::host::lease::HostSlot>) -> actix_web::HttpResponse {
    let state = slot.state().as_str();
    let body = serde_json::json!({"ready": slot.host().is_some(), "state": state});
    if slot.host().is_some() {
        actix_web::HttpResponse::Ok().json(body)
    } else {
        actix_web::HttpResponse::ServiceUnavailable().json(body)
    }
}

#[cfg(feature = "api")]
async fn api_state(
    settings: &Settings,
    role: Role,
    bus: Arc<dyn crate::bus::HostBus>,
    going_away: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<crate::api::ApiState> {
    use crate::api::rate_limit::ClientLimiter;
    use crate::api::{
        ApiState, ClientLimits, LivekitJoin, WsLimits, hub::Hub, programme::ProgrammeSync,
    };
    use crate::bus::link::HostLink;

    let store = crate::db::connect(settings)
        .await
        .context("opening the store (database.*, DATABASE_URL, POSTGRES_*)")?;
    crate::db::seed::ensure_default_channel(
        store.as_ref(),
        &settings.station.default_channel,
        &settings.schedule.default,
    )
    .await
    .context("creating the default channel")?;
    let admin_token = crate::api::admin_token(
        settings
            .auth
            .admin_token
            .clone()
            .filter(|t| is_set(&Some(t.clone()))),
        &settings.auth.admin_token_file,
    )?;
    let streams = crate::api::stream::StreamRelay::new(
        bus.clone(),
        crate::api::stream::RelayConfig {
            listener_buffer_pages: settings.stream.listener_buffer_pages,
            open_timeout: std::time::Duration::from_millis(settings.bus.request_timeout_ms),
            reconnect_max: std::time::Duration::from_millis(settings.bus.reconnect_max_ms),
        },
    );
    let hub = Arc::new(
        Hub::new(
            settings.broadcast.client_queue,
            settings.broadcast.recent_captions,
        )
        .with_stream_listeners(streams.clone()),
    );
    hub.spawn_listener_checks();
    hub.spawn_instance_heartbeat(
        store.clone(),
        std::time::Duration::from_millis(settings.broadcast.instance_heartbeat_ms),
    );
    let callers = crate::api::callers::CallerKeys::new(
        settings
            .auth
            .caller_secret
            .as_ref()
            .filter(|s| is_set(&Some((*s).clone())))
            .unwrap_or(&admin_token),
    );
    let queue =
        crate::api::queue::CallQueue::new(store.clone(), hub.clone(), settings.queue.clone());
    queue.spawn_sweeper();
    let switchboard = crate::api::switchboard::Switchboard::new(
        store.clone(),
        bus.clone(),
        queue.clone(),
        crate::api::switchboard::confirm_grace(std::time::Duration::from_millis(
            settings.bus.request_timeout_ms,
        )),
    );
    let programme = crate::api::programme::ProgrammePusher::new(
        store.clone(),
        bus.clone(),
        std::time::Duration::from_millis(settings.bus.reconnect_max_ms),
    );
    let link = HostLink::spawn(
        bus.clone(),
        Arc::new(ProgrammeSync {
            pusher: programme.clone(),
            hub: hub.clone(),
            switchboard: switchboard.clone(),
        }),
        std::time::Duration::from_millis(settings.bus.reconnect_max_ms),
    );
    let livekit = LivekitJoin::from_settings(&settings.livekit);
    if let Err(missing) = &livekit.credentials {
        tracing::warn!(
            missing = %missing.join(", "),
            "LiveKit is not configured: POST /v1/room/join answers 503 until these are set"
        );
    }
    Ok(ApiState {
        store,
        bus,
        hub,
        link,
        admin_token,
        role: role.as_str(),
        split: role == Role::Api,
        default_channel: settings.station.default_channel.clone(),
        // Checked when the settings were loaded.
        timezone: settings
            .station
            .timezone
            .parse()
            .unwrap_or(chrono_tz::Asia::Tokyo),
        max_text_chars: settings.server.max_text_chars,
        ws: WsLimits {
            ping_interval: std::time::Duration::from_secs(settings.broadcast.ping_interval_secs),
            send_timeout: std::time::Duration::from_secs(settings.broadcast.send_timeout_secs),
            max_clients: settings.broadcast.max_clients,
            frame_rate: crate::api::ws::FrameRate {
                per_second: settings.broadcast.client_frames_per_second,
                burst: settings.broadcast.client_frame_burst,
            },
        },
        ws_clients: Default::default(),
        livekit,
        limits: ClientLimits {
            join: ClientLimiter::per_minute("room joins", settings.livekit.join_per_minute),
            broadcast: ClientLimiter::per_minute(
                "broadcast connects",
                settings.broadcast.connects_per_minute,
            ),
            stream: ClientLimiter::per_minute("stream opens", settings.stream.opens_per_minute),
            archive_list: ClientLimiter::per_minute(
                "archive listings",
                settings.archive.list_per_minute,
            ),
            call_ins: ClientLimiter::per_minute("call-ins", settings.queue.enqueues_per_minute),
        },
        queue,
        switchboard,
        programme,
        callers,
        max_stream_listeners: settings.stream.max_listeners,
        trusted_proxy_hops: settings.server.trusted_proxy_hops,
        streams,
        going_away,
    })
}

/// CORS from `server.allowed_origin` (`ALLOWED_ORIGIN`): a comma-separated list of origins,
/// or `*`. Empty allows no cross-origin browser requests (same-origin ones are unaffected).
#[cfg(feature = "api")]
fn cors(allowed: &str) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
        ])
        .max_age(3600);
    for origin in allowed.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}
