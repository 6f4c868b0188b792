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

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::api::ApiState;
use crate::bus::link::LinkStatus;

#[derive(Serialize)]
struct StoreHealth {
    backend: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct HostLinkHealth {
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

pub async fn health(state: web::Data<ApiState>) -> HttpResponse {
    health_with(&state, Detail::Public).await
}

/// `GET /v1/studio/health`: `/health` with the store's and the host link's error text.
pub async fn health_for_operators(state: web::Data<ApiState>) -> HttpResponse {
    health_with(&state, Detail::Admin).await
}

async fn health_with(state: &ApiState, detail: Detail) -> HttpResponse {
    let store = store_health(state, detail).await;
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": state.role,
        "version": env!("CARGO_PKG_VERSION"),
        "store": store,
        "host_link": host_link(state, detail),
        "broadcast_clients": state.hub.clients(),
        "stream_listeners": state.streams.listeners(),
        "listeners": {
            "station": state.hub.station_listeners(),
            "this_instance": state.hub.own_listeners(),
            "instances": state.hub.instances(),
        },
        "livekit": state.hub.livekit_status(),
        "playout": state.hub.playout_timing(),
    }))
}

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
    let mut body = json!({ "ready": problems.is_empty(), "store": store, "host_link": link });
    if !problems.is_empty() {
        body["error"] = json!("not_ready");
        body["message"] = json!(problems.join("; "));
    }
    HttpResponse::build(status).json(body)
}
