//! What the WebSocket routes share: the per-client connect rate and the per-instance cap
//! (`broadcast.connects_per_minute`, `broadcast.max_clients`, one budget for all sockets),
//! the bounded upgrade, what an error frame says for an [`ApiError`], and refusing a socket
//! with an error frame and a close.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::CloseCode;

use crate::api::ws::{self, SocketLimits, WsReceiver, WsSender};
use crate::api::{ApiError, ApiState, Result};
use crate::domain::InvalidInput;

/// A connected socket, counted against `broadcast.max_clients` for as long as it lives.
pub(super) struct SocketSlot(web::Data<ApiState>);

impl SocketSlot {
    /// A place for the client of `req`: 429 when it opens sockets too fast, 503 when this
    /// instance has as many as it takes.
    pub(super) fn take(state: &web::Data<ApiState>, req: &HttpRequest) -> Result<Self> {
        state.limits.broadcast.check(&state.client_key(req))?;
        if state.ws_clients.fetch_add(1, Ordering::Relaxed) >= state.ws.max_clients {
            state.ws_clients.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::Overloaded(
                "too many sockets on this instance; try again later".into(),
            ));
        }
        Ok(Self(state.clone()))
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Upgrades to a WebSocket bounded by `limits`; a request that is not an upgrade gets 400
/// `websocket_required`.
pub(super) async fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    limits: SocketLimits,
) -> Result<(HttpResponse, WsSender, WsReceiver)> {
    ws::upgrade(req, body, limits).await.map_err(|e| {
        ApiError::Invalid(InvalidInput::new(
            "websocket_required",
            format!("this route needs a WebSocket upgrade: {e}"),
        ))
    })
}

/// Sends `frame` (an `error` frame) and closes with 1008 and `reason`, in the background;
/// the slot is held until then.
pub(super) fn refuse(
    mut sender: WsSender,
    slot: SocketSlot,
    frame: &impl serde::Serialize,
    reason: String,
) {
    let frame = to_text(frame);
    actix_web::rt::spawn(async move {
        let _ = sender.text(frame).await;
        sender.close(CloseCode::Policy, Some(&reason)).await;
        drop(slot);
    });
}

/// A frame as the JSON text sent. The frames are plain structs and enums, which always
/// serialise; an empty text would be the sign of a bug, not a crash.
pub(super) fn to_text(frame: &impl serde::Serialize) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

/// The code and message an error frame carries for `e`. Failures of ours are generic, and
/// their cause is logged (a socket has no request span to log it).
pub(super) fn error_frame_of(e: &ApiError) -> (&'static str, String) {
    use actix_web::ResponseError;
    let code = match e {
        ApiError::Invalid(i) => i.code,
        ApiError::Limited { code, .. } => code,
        ApiError::UnknownChannel(_) => "unknown_channel",
        ApiError::RateLimited(_) => "rate_limited",
        ApiError::Store(_) => "store_unavailable",
        _ => "internal",
    };
    if e.status_code().is_server_error() {
        tracing::warn!(error = %e, "a socket's request failed");
        (
            code,
            "the station cannot do that right now; try again shortly".to_owned(),
        )
    } else {
        (code, e.to_string())
    }
}
