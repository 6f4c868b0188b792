//! `GET /ws/broadcast?channel=NAME`: a read-only WebSocket of JSON text frames, each with a
//! `"type"`. First a `snapshot` (channel, on-air state, recent captions), then the host's
//! events as they happen (`segment_started`, `caption`, `segment_ended`), a `queue` frame
//! when the call-in queue changes and a `listeners` frame when the listener counts do, and
//! a new `snapshot` with `"resync": true` if the client fell behind. Pings every
//! `broadcast.ping_interval_secs`; a client that answers nothing for two intervals, or whose
//! socket accepts nothing for `broadcast.send_timeout_secs`, is dropped. An unknown channel
//! gets an `error` frame and a close with the reason. A frame over 4 KiB (or a fragmented
//! message over it in all) closes the socket with 1009 as soon as its header says so.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::known_channel;
use super::sockets::{self, SocketSlot};
use crate::api::hub::Room;
use crate::api::ws::{WsReceiver, WsSender};
use crate::api::{ApiState, Result};
use crate::bus::ErrorBody;

/// Largest frame accepted from a client (they have nothing to say here but pongs).
const MAX_CLIENT_FRAME: usize = 4 * 1024;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BroadcastQuery {
    /// The channel to follow; `station.default_channel` when absent.
    channel: Option<String>,
}

/// The frame a client gets when its socket is refused (then closed), when it sends a data
/// frame (this socket only sends), or a frame over the limit.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastErrorFrame)]
pub struct ErrorFrame {
    /// Always `error`.
    r#type: &'static str,
    /// `unknown_channel`, `read_only`, `frame_too_big`, ...
    error: &'static str,
    message: String,
}

impl ErrorFrame {
    fn new(error: &'static str, message: String) -> Self {
        Self {
            r#type: "error",
            error,
            message,
        }
    }
}

#[utoipa::path(
    get, path = "/ws/broadcast", tag = "sockets",
    description = "A read-only WebSocket of JSON text frames, each with a `type`. The server sends a `Snapshot` first (and again, with `resync: true`, when the client fell behind), then `HostEvent` frames of types `on_air`, `segment_started`, `caption` and `segment_ended` as they happen, a `QueueFrame` when the call-in queue changes and a `ListenersFrame` when the listener counts do. A client sends nothing but pings and pongs: a data frame gets a `BroadcastErrorFrame` (`read_only`); an unknown channel gets a `BroadcastErrorFrame` (`unknown_channel`) and a close (1008). Frames over 4 KiB close the socket (1009). Schemas: `#/components/schemas/Snapshot`, `HostEvent`, `QueueFrame`, `ListenersFrame`, `BroadcastErrorFrame`.",
    params(BroadcastQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol; server→client frames: `Snapshot`, `HostEvent`, `QueueFrame`, `ListenersFrame`, `BroadcastErrorFrame`"),
        (status = 400, description = "`websocket_required`: not a WebSocket upgrade", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client opens sockets too fast (`Retry-After` says when to try again)", body = ErrorBody),
        (status = 503, description = "`overloaded`: this instance has as many sockets as it takes", body = ErrorBody),
    )
)]
pub async fn broadcast_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<ApiState>,
    query: web::Query<BroadcastQuery>,
) -> Result<HttpResponse> {
    let slot = SocketSlot::take(&state, &req)?;
    let limits = state.ws.socket(MAX_CLIENT_FRAME);
    let (response, sender, receiver) = sockets::upgrade(&req, body, limits).await?;
    let requested = query
        .into_inner()
        .channel
        .unwrap_or_else(|| state.default_channel.to_string());
    let channel = match known_channel(&state, &requested).await {
        Ok(channel) => channel,
        Err(e) => {
            let (code, message) = sockets::error_frame_of(&e);
            let frame = ErrorFrame::new(code, message.clone());
            sockets::refuse(sender, slot, &frame, message);
            return Ok(response);
        }
    };
    let room = state.hub.room(&channel);
    actix_web::rt::spawn(async move {
        serve_client(&state, &room, sender, receiver).await;
        drop(slot);
    });
    Ok(response)
}

async fn serve_client(
    state: &ApiState,
    room: &Room,
    mut sender: WsSender,
    mut receiver: WsReceiver,
) {
    let limits = state.ws;
    let subscription = room.subscribe(state.hub.host_connected());
    let mut frames = subscription.frames;
    if sender.text(subscription.snapshot).await.is_err() {
        return;
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut last_heard = Instant::now();
    let going_away = crate::api::going_away(state.going_away.clone());
    tokio::pin!(going_away);
    let ending = loop {
        tokio::select! {
            () = &mut going_away => {
                break Ending::Close(CloseCode::Away, Some(crate::api::GOING_AWAY.to_owned()));
            }
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if sender.text(frame).await.is_err() {
                        break Ending::Gone;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "broadcast client fell behind; resyncing it");
                    crate::metrics::ws_lagged(crate::metrics::Lag::Resynced);
                    let snapshot = room.resync(&mut frames, state.hub.host_connected());
                    if sender.text(snapshot).await.is_err() {
                        break Ending::Gone;
                    }
                }
                Err(RecvError::Closed) => break Ending::Close(CloseCode::Away, None),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_interval * 2 + Duration::from_secs(1) {
                    tracing::info!("dropping a broadcast client that stopped answering pings");
                    break Ending::Close(CloseCode::Away, None);
                }
                if sender.ping().await.is_err() {
                    break Ending::Gone;
                }
            }
            incoming = receiver.recv() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Ping(bytes))) => {
                        if sender.pong(&bytes).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break Ending::Gone,
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let frame = ErrorFrame::new(
                            "read_only",
                            "this socket only sends; use the HTTP routes to talk to the station".to_owned(),
                        );
                        if sender.text(sockets::to_text(&frame)).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => match e.close_code() {
                        Some(code) => {
                            tracing::info!(error = %e, "broadcast client sent a frame it may not; closing");
                            break Ending::Close(code, Some(e.to_string()));
                        }
                        None => {
                            let frame = ErrorFrame::new("frame_too_big", e.to_string());
                            if sender.text(sockets::to_text(&frame)).await.is_err() {
                                break Ending::Gone;
                            }
                        }
                    },
                }
            }
        }
    };
    match ending {
        Ending::Gone => tracing::debug!("broadcast client gone"),
        Ending::Close(code, reason) => sender.close(code, reason.as_deref()).await,
    }
}

/// How a client's socket ends.
enum Ending {
    /// It closed, or stopped reading: nothing more to send.
    Gone,
    /// Close it with this code and reason.
    Close(CloseCode, Option<String>),
}
