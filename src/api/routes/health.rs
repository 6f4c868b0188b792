//! `GET /health` (liveness: always 200, with the state of the store and the host link, the
//! live stream's listeners per channel on this instance, and the host's LiveKit publisher
//! per channel and each channel's frame clock timing (late ticks, skipped frames, tick
//! lateness percentiles), as the host last reported them) and
//! `GET /ready` (503 while the store or, in split mode, the host cannot be reached).

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

async fn store_health(state: &ApiState) -> StoreHealth {
    match state.store.ping().await {
        Ok(()) => StoreHealth {
            backend: state.store.backend(),
            ok: true,
            error: None,
        },
        Err(e) => StoreHealth {
            backend: state.store.backend(),
            ok: false,
            error: Some(e.to_string()),
        },
    }
}

fn host_link(state: &ApiState) -> HostLinkHealth {
    HostLinkHealth {
        transport: if state.split { "http" } else { "in_process" },
        status: state.link.status(),
    }
}

pub async fn health(state: web::Data<ApiState>) -> HttpResponse {
    let store = store_health(&state).await;
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "role": state.role,
        "version": env!("CARGO_PKG_VERSION"),
        "store": store,
        "host_link": host_link(&state),
        "broadcast_clients": state.hub.clients(),
        "stream_listeners": state.streams.listeners(),
        "livekit": state.hub.livekit_status(),
        "playout": state.hub.playout_timing(),
    }))
}

pub async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let store = store_health(&state).await;
    let link = host_link(&state);
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
