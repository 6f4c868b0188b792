//! `GET /health` (liveness: always 200, with the state of the store and the host link, the
//! listeners per channel on the whole station and on this instance (`listeners.station`,
//! `listeners.this_instance`, and how many API instances the station counts;
//! `stream_listeners` and `broadcast_clients` are this instance's), and the host's LiveKit publisher
//! per channel and each channel's frame clock timing (late ticks, skipped frames, tick
//! lateness percentiles), as the host last reported them) and
//! `GET /ready` (503 while the store or, in split mode, the host cannot be reached).
//!
//! Both are public, so they say *whether* the store or the host link fails, never *why*:
//! error text can name hosts, users and paths. The why is logged, and shown to operators by
//! `GET /v1/studio/health` (admin token), which is `/health` with the errors.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::hub::Listeners;
use crate::bus::link::LinkStatus;
use crate::bus::{PlayoutTiming, PublisherStatus};
use crate::domain::ChannelName;

#[derive(Serialize, ToSchema)]
pub struct StoreHealth {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    ok: bool,
    /// Why the store is unreachable (`/v1/studio/health` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HostLinkHealth {
    /// `in_process` (role all) or `http` (role api).
    transport: &'static str,
    #[serde(flatten)]
    status: LinkStatus,
}

/// Whether the answer may carry error text (the admin view) or not (the public one).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    Public,
    Admin,
}

async fn store_health(state: &ApiState, detail: Detail) -> StoreHealth {
    match state.store.ping().await {
        Ok(()) => StoreHealth {
            backend: state.store.backend(),
            ok: true,
            error: None,
        },
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store is unreachable");
            StoreHealth {
                backend: state.store.backend(),
                ok: false,
                error: (detail == Detail::Admin).then(|| e.to_string()),
            }
        }
    }
}

fn host_link(state: &ApiState, detail: Detail) -> HostLinkHealth {
    let mut status = state.link.status();
    if detail == Detail::Public {
        status.error = None;
    }
    HostLinkHealth {
        transport: if state.split { "http" } else { "in_process" },
        status,
    }
}

#[utoipa::path(
    method(get, head), path = "/health", tag = "health",
    description = "Liveness: always 200, with the state of the store and the host link (whether they fail, never why), listeners, LiveKit publishers and playout timing.",
    responses((status = 200, description = "The process answers", body = Health))
)]
pub async fn health(state: web::Data<ApiState>) -> HttpResponse {
    health_with(&state, Detail::Public).await
}

/// `GET /v1/studio/health`: `/health` with the store's and the host link's error text.
#[utoipa::path(
    get, path = "/v1/studio/health", tag = "studio",
    description = "`/health` with the store's and the host link's error text.",
    security(("bearer" = [])),
    responses((status = 200, description = "The process answers", body = Health))
)]
pub async fn health_for_operators(state: web::Data<ApiState>) -> HttpResponse {
    health_with(&state, Detail::Admin).await
}

/// The answer of `GET /health` (and, with error text, of `GET /v1/studio/health`).
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    status: &'static str,
    /// `all` or `api`.
    role: &'static str,
    version: &'static str,
    store: StoreHealth,
    host_link: HostLinkHealth,
    /// `/ws/broadcast` clients of this instance.
    broadcast_clients: usize,
    /// HTTP stream listeners of this instance, per channel.
    stream_listeners: BTreeMap<ChannelName, usize>,
    listeners: StationListeners,
    /// The host's LiveKit publisher per channel, as the host last reported it.
    livekit: BTreeMap<ChannelName, PublisherStatus>,
    /// Each channel's frame clock timing, as the host last reported it.
    playout: BTreeMap<ChannelName, PlayoutTiming>,
}

/// Who listens, per channel: on the whole station and on this instance.
#[derive(Serialize, ToSchema)]
pub struct StationListeners {
    station: BTreeMap<ChannelName, Listeners>,
    this_instance: BTreeMap<ChannelName, Listeners>,
    /// API instances the station counts (this one included).
    instances: usize,
}

async fn health_with(state: &ApiState, detail: Detail) -> HttpResponse {
    let store = store_health(state, detail).await;
    HttpResponse::Ok().json(Health {
        status: "ok",
        role: state.role,
        version: env!("CARGO_PKG_VERSION"),
        store,
        host_link: host_link(state, detail),
        broadcast_clients: state.hub.clients(),
        stream_listeners: state.streams.listeners(),
        listeners: StationListeners {
            station: state.hub.station_listeners(),
            this_instance: state.hub.own_listeners(),
            instances: state.hub.instances(),
        },
        livekit: state.hub.livekit_status(),
        playout: state.hub.playout_timing(),
    })
}

/// The answer of `GET /ready`: 200 when ready; 503 with `error` (`not_ready`) and `message`
/// when the store or the host cannot be reached.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    ready: bool,
    store: StoreHealth,
    host_link: HostLinkHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// What is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[utoipa::path(
    method(get, head), path = "/ready", tag = "health",
    description = "Readiness: 503 while the store or (split roles) the host cannot be reached.",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`not_ready`: the store or the host is unreachable", body = Readiness),
    )
)]
pub async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let store = store_health(&state, Detail::Public).await;
    let link = host_link(&state, Detail::Public);
    let host_ok = state.link.is_up();
    let mut problems = Vec::new();
    if !store.ok {
        problems.push("the store is unreachable");
    }
    if !host_ok {
        problems.push("the host is unreachable");
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let ready = problems.is_empty();
    HttpResponse::build(status).json(Readiness {
        ready,
        store,
        host_link: link,
        error: (!ready).then_some("not_ready"),
        message: (!ready).then(|| problems.join("; ")),
    })
}
