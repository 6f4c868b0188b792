//! `GET /ws/broadcast?channel=NAME`: a read-only WebSocket of JSON text frames, each with a
//! `"type"`. First a `snapshot` (channel, on-air state, recent captions), then the host's
//! events as they happen (`segment_started`, `caption`, `segment_ended`), and a new
//! `snapshot` with `"resync": true` if the client fell behind. Pings every
//! `broadcast.ping_interval_secs`; a client that answers nothing for two intervals, or whose
//! socket accepts nothing for `broadcast.send_timeout_secs`, is dropped. An unknown channel
//! gets an `error` frame and a close with the reason.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use bytestring::ByteString;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::api::hub::Room;
use crate::api::{ApiError, ApiState, Result};
use crate::domain::ChannelName;

/// Largest frame accepted from a client (they have nothing to say here but pongs).
const MAX_CLIENT_FRAME: usize = 4 * 1024;

#[derive(Deserialize)]
pub struct BroadcastQuery {
    channel: Option<String>,
}

/// Counts a connected client for as long as it lives.
struct ClientSlot(web::Data<ApiState>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.ws_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn broadcast_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<ApiState>,
    query: web::Query<BroadcastQuery>,
) -> Result<HttpResponse> {
    if state.ws_clients.fetch_add(1, Ordering::Relaxed) >= state.ws.max_clients {
        state.ws_clients.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::Overloaded(
            "too many broadcast clients on this instance; try again later".into(),
        ));
    }
    let slot = ClientSlot(state.clone());
    let (response, mut session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::Invalid(crate::domain::InvalidInput::new(
            "websocket_required",
            format!("this route needs a WebSocket upgrade: {e}"),
        ))
    })?;
    let requested = query
        .into_inner()
        .channel
        .unwrap_or_else(|| state.default_channel.to_string());
    let channel = match ChannelName::parse(&requested) {
        Ok(name) => match state.store.channel_by_name(&name).await {
            Ok(Some(_)) => Ok(name),
            Ok(None) => Err(("unknown_channel", format!("no channel named '{requested}'"))),
            Err(e) => {
                tracing::error!(error = %e, "store lookup failed for a broadcast client");
                Err((
                    "store_unavailable",
                    "the database is not reachable right now".to_owned(),
                ))
            }
        },
        Err(e) => Err(("unknown_channel", e.message)),
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err((code, message)) => {
            actix_web::rt::spawn(async move {
                let frame = json!({"type": "error", "error": code, "message": message});
                let _ = session.text(frame.to_string()).await;
                let reason: String = message.chars().take(120).collect();
                let _ = session
                    .close(Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some(reason),
                    }))
                    .await;
                drop(slot);
            });
            return Ok(response);
        }
    };
    let room = state.hub.room(&channel);
    let stream = stream.max_frame_size(MAX_CLIENT_FRAME);
    actix_web::rt::spawn(async move {
        serve_client(&state, &room, session, stream).await;
        drop(slot);
    });
    Ok(response)
}

async fn serve_client(
    state: &ApiState,
    room: &Room,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    let limits = state.ws;
    let send = |session: &mut actix_ws::Session, frame: ByteString| {
        let mut session = session.clone();
        async move {
            match tokio::time::timeout(limits.send_timeout, session.text(frame)).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    tracing::info!("dropping a broadcast client that stopped reading");
                    false
                }
            }
        }
    };
    let subscription = room.subscribe(state.hub.host_connected());
    let mut frames = subscription.frames;
    if !send(&mut session, subscription.snapshot).await {
        return;
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut last_heard = Instant::now();
    let reason = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if !send(&mut session, frame).await {
                        break None;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "broadcast client fell behind; resyncing it");
                    let snapshot = room.resync(&mut frames, state.hub.host_connected());
                    if !send(&mut session, snapshot).await {
                        break None;
                    }
                }
                Err(RecvError::Closed) => break Some(CloseCode::Away),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_interval * 2 + Duration::from_secs(1) {
                    tracing::info!("dropping a broadcast client that stopped answering pings");
                    break Some(CloseCode::Away);
                }
                let ping_sent = tokio::time::timeout(limits.send_timeout, session.ping(b"")).await;
                if !matches!(ping_sent, Ok(Ok(()))) {
                    break None;
                }
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let frame = json!({
                            "type": "error",
                            "error": "read_only",
                            "message": "this socket only sends; use the HTTP routes to talk to the station",
                        });
                        if !send(&mut session, frame.to_string().into()).await {
                            break None;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "broadcast client sent a bad frame; closing");
                        break Some(CloseCode::Protocol);
                    }
                }
            }
        }
    };
    if let Some(code) = reason {
        let _ = session
            .close(Some(CloseReason {
                code,
                description: None,
            }))
            .await;
    }
}
