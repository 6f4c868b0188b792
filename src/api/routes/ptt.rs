//! `GET /ws/ptt?channel=NAME`: one listener's call-in socket (push-to-talk and typed).
//!
//! Client → server, JSON text frames: `hello` first (`{"type":"hello","user_id"?,
//! "caller_token"?}`), then any of `text` (`{"text"}`), `audio_start` (`{"encoding":
//! "pcm_s16le","sample_rate":16000|24000|48000}`) followed by binary frames of audio and
//! `audio_end`, and `cancel` (`{"id"}`). Server → client: `ready` (`{user_id, caller_token,
//! limits}`), `queued` (`{id, position}`), `position` (`{id, position}`) as the queue moves,
//! `status` (`{id, status, reason?}`) and `error` (`{error, message}`, as an HTTP error's
//! body). Every mistake gets an `error` frame and the socket stays usable; nothing partial
//! reaches the queue (a socket that closes mid-recording leaves no item). Frames over
//! `queue.max_frame_bytes` are skipped with an error (up to 16 times that; bigger closes the
//! socket with 1009).
//!
//! The audio and the text are never logged.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use super::known_channel;
use super::sockets::{self, SocketSlot};
use crate::api::callers::Caller;
use crate::api::queue::{CallLimits, QueueChange};
use crate::api::ws::{self, WsReceiver, WsSender};
use crate::api::{ApiError, ApiState, Result};
use crate::bus::ErrorBody;
use crate::db::{CallAudio, CallItem, CallStatus};
use crate::domain::{ChannelName, InvalidInput};

/// How much bigger than the frame limit a frame may be and still be skipped with an error
/// rather than close the socket.
const SKIPPABLE_FRAMES: usize = 16;

/// How long ago an item may have ended and still be reported to a reconnecting caller.
const RECENT: chrono::Duration = chrono::Duration::hours(1);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PttQuery {
    /// The channel to call in to; `station.default_channel` when absent.
    channel: Option<String>,
}

/// A frame from the caller: a JSON text frame (binary frames carry a recording's audio,
/// between `audio_start` and `audio_end`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = PttClientFrame)]
pub enum ClientFrame {
    Hello {
        user_id: Option<String>,
        caller_token: Option<String>,
    },
    Text {
        text: String,
    },
    AudioStart {
        encoding: String,
        sample_rate: u32,
    },
    AudioEnd,
    Cancel {
        id: String,
    },
}

/// A frame to the caller.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = PttServerFrame)]
pub enum ServerFrame {
    /// The answer to `hello`: who the caller is (keep both to be known on a reconnect) and
    /// the limits they are held to.
    Ready {
        user_id: String,
        caller_token: String,
        limits: CallLimits,
    },
    /// A call-in was queued, at this place.
    Queued { id: Uuid, position: u32 },
    /// A waiting call-in moved in the queue.
    Position { id: Uuid, position: u32 },
    /// A call-in of the caller's changed status (`reason`: why it was dropped).
    Status {
        id: Uuid,
        status: CallStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A frame or request was refused; the socket stays usable. `error` is the same
    /// snake_case code an HTTP answer would give.
    Error {
        error: &'static str,
        message: String,
    },
}

/// An error frame's code and message.
#[derive(Debug)]
pub struct Refusal(pub &'static str, pub String);

impl From<InvalidInput> for Refusal {
    fn from(e: InvalidInput) -> Self {
        Refusal(e.code, e.message)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        let (code, message) = sockets::error_frame_of(&e);
        Refusal(code, message)
    }
}

/// Reads a text frame from the caller, or says why it cannot be read (the `error` frame's
/// code and message). Public so the fuzzer (`fuzz/fuzz_targets/ptt_frames.rs`) can feed it.
pub fn parse_client_frame(text: &str) -> std::result::Result<ClientFrame, Refusal> {
    serde_json::from_str::<ClientFrame>(text).map_err(|e| {
        if serde_json::from_str::<serde_json::Value>(text).is_ok() {
            // serde's message may quote what was sent: at most 200 characters.
            let why: String = e.to_string().chars().take(200).collect();
            Refusal("invalid_frame", format!("frame not understood: {why}"))
        } else {
            Refusal("invalid_json", "the frame is not JSON".to_owned())
        }
    })
}

#[utoipa::path(
    get, path = "/ws/ptt", tag = "sockets",
    description = "One listener's call-in socket (push-to-talk and typed). Client→server: JSON text frames `PttClientFrame` (`hello` first, then `text`, `audio_start`, binary frames of 16-bit little-endian mono PCM, `audio_end`, `cancel`). Server→client: JSON text frames `PttServerFrame` (`ready`, `queued`, `position`, `status`, `error`). Every mistake gets an `error` frame and the socket stays usable; an unknown channel gets an `error` frame and a close (1008). Schemas: `#/components/schemas/PttClientFrame`, `PttServerFrame`.",
    params(PttQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol; client→server frames: `PttClientFrame`; server→client frames: `PttServerFrame`"),
        (status = 400, description = "`websocket_required`: not a WebSocket upgrade", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this client opens sockets too fast (`Retry-After` says when to try again)", body = ErrorBody),
        (status = 503, description = "`overloaded`: this instance has as many sockets as it takes", body = ErrorBody),
    )
)]
pub async fn ptt_ws(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<ApiState>,
    query: web::Query<PttQuery>,
) -> Result<HttpResponse> {
    let slot = SocketSlot::take(&state, &req)?;
    let client = state.client_key(&req);
    let max_frame = state.queue.limits().max_frame_bytes;
    let limits = ws::SocketLimits {
        max_frame,
        // A recording is sent in frames; a message is one frame.
        max_message: max_frame,
        skip_up_to: Some(max_frame * SKIPPABLE_FRAMES),
        send_timeout: state.ws.send_timeout,
        frame_rate: state.ws.frame_rate,
    };
    let (response, sender, receiver) = sockets::upgrade(&req, body, limits).await?;
    let requested = query
        .into_inner()
        .channel
        .unwrap_or_else(|| state.default_channel.to_string());
    let channel = match known_channel(&state, &requested).await {
        Ok(channel) => channel,
        Err(e) => {
            let (code, message) = sockets::error_frame_of(&e);
            let frame = ServerFrame::Error {
                error: code,
                message: message.clone(),
            };
            sockets::refuse(sender, slot, &frame, message);
            return Ok(response);
        }
    };
    actix_web::rt::spawn(async move {
        Call::new(state.clone(), channel, client, sender)
            .serve(receiver)
            .await;
        drop(slot);
    });
    Ok(response)
}

/// What handling one event left: `Ok` to go on, or `Err` to end the socket, with the close
/// code and reason to send (`None` when the caller is gone already).
type Step = std::result::Result<(), Option<(CloseCode, String)>>;

/// A recording being received.
struct Recording {
    sample_rate: u32,
    pcm: Vec<u8>,
    /// Set when it went over the limit: the rest is ignored until `audio_end`.
    over: bool,
}

/// One call-in socket's state.
struct Call {
    state: web::Data<ApiState>,
    channel: ChannelName,
    /// The client's rate-limit key (`queue.enqueues_per_minute` holds per address).
    client: String,
    sender: WsSender,
    caller: Option<Caller>,
    recording: Option<Recording>,
    /// The caller's items this socket follows: last status and position sent.
    mine: HashMap<Uuid, (CallStatus, Option<u32>)>,
}

impl Call {
    fn new(
        state: web::Data<ApiState>,
        channel: ChannelName,
        client: String,
        sender: WsSender,
    ) -> Self {
        Self {
            state,
            channel,
            client,
            sender,
            caller: None,
            recording: None,
            mine: HashMap::new(),
        }
    }

    async fn serve(mut self, mut receiver: WsReceiver) {
        let limits = self.state.ws;
        let mut changes = self.state.queue.subscribe();
        let mut ping =
            tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
        let mut last_heard = Instant::now();
        let going_away = crate::api::going_away(self.state.going_away.clone());
        tokio::pin!(going_away);
        let close = loop {
            let step = tokio::select! {
                () = &mut going_away => {
                    Err(Some((CloseCode::Away, crate::api::GOING_AWAY.to_owned())))
                }
                incoming = receiver.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Some(Ok(message)) => self.on_message(message).await,
                        Some(Err(e)) => match e.close_code() {
                            Some(code) => Err(Some((code, e.to_string()))),
                            None => self.refuse(Refusal("frame_too_big", e.to_string())).await,
                        },
                        None => Err(None),
                    }
                }
                change = changes.recv() => match change {
                    Ok(change) => self.on_change(&change).await,
                    Err(RecvError::Lagged(_)) => self.resync().await,
                    Err(RecvError::Closed) => Err(Some((CloseCode::Away, String::new()))),
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > limits.ping_interval * 2 + Duration::from_secs(1) {
                        Err(Some((CloseCode::Away, "no answer to pings".to_owned())))
                    } else {
                        self.sender.ping().await.map_err(|_| None)
                    }
                }
            };
            if let Err(close) = step {
                break close;
            }
        };
        if let Some((code, reason)) = close {
            let reason = (!reason.is_empty()).then_some(reason);
            self.sender.close(code, reason.as_deref()).await;
        }
    }

    /// Sends `frame`; `Err(None)` when the caller is gone.
    async fn send(&mut self, frame: ServerFrame) -> Step {
        self.sender
            .text(sockets::to_text(&frame))
            .await
            .map_err(|_| None)
    }

    async fn refuse(&mut self, Refusal(code, message): Refusal) -> Step {
        self.send(ServerFrame::Error {
            error: code,
            message,
        })
        .await
    }

    async fn on_message(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) => match parse_client_frame(&text) {
                Ok(frame) => self.on_frame(frame).await,
                Err(refusal) => self.refuse(refusal).await,
            },
            Message::Binary(bytes) => self.on_audio(&bytes).await,
            Message::Ping(bytes) => self.sender.pong(&bytes).await.map_err(|_| None),
            Message::Close(_) => Err(None),
            _ => Ok(()),
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Step {
        if let ClientFrame::Hello {
            user_id,
            caller_token,
        } = frame
        {
            return self
                .hello(user_id.as_deref(), caller_token.as_deref())
                .await;
        }
        let Some(caller) = self.caller.clone() else {
            return self
                .refuse(Refusal(
                    "hello_first",
                    "send a hello frame first".to_owned(),
                ))
                .await;
        };
        match frame {
            ClientFrame::Hello { .. } => Ok(()),
            ClientFrame::Text { text } => {
                if self.recording.is_some() {
                    return self
                        .refuse(Refusal(
                            "audio_in_progress",
                            "finish the recording (audio_end) first".to_owned(),
                        ))
                        .await;
                }
                let text = match self.state.queue.check_text(&text) {
                    Ok(text) => text,
                    Err(e) => return self.refuse(e.into()).await,
                };
                self.enqueue(&caller, Some(text), None).await
            }
            ClientFrame::AudioStart {
                encoding,
                sample_rate,
            } => {
                if self.recording.is_some() {
                    return self
                        .refuse(Refusal(
                            "audio_in_progress",
                            "a recording is already open; send audio_end first".to_owned(),
                        ))
                        .await;
                }
                if let Err(e) = self.state.queue.check_format(&encoding, sample_rate) {
                    return self.refuse(e.into()).await;
                }
                self.recording = Some(Recording {
                    sample_rate,
                    pcm: Vec::new(),
                    over: false,
                });
                Ok(())
            }
            ClientFrame::AudioEnd => {
                let Some(recording) = self.recording.take() else {
                    return self
                        .refuse(Refusal(
                            "audio_not_started",
                            "no recording is open (send audio_start first)".to_owned(),
                        ))
                        .await;
                };
                if recording.over {
                    // Already refused when it went over; nothing is queued.
                    return Ok(());
                }
                let audio = CallAudio {
                    sample_rate: recording.sample_rate,
                    pcm: recording.pcm,
                };
                self.enqueue(&caller, None, Some(audio)).await
            }
            ClientFrame::Cancel { id } => {
                let Ok(id) = Uuid::parse_str(&id) else {
                    return self
                        .refuse(Refusal(
                            "unknown_item",
                            "no waiting call-in of yours has that id".to_owned(),
                        ))
                        .await;
                };
                match self.state.queue.cancel(&caller, id).await {
                    // The change reaches this socket as a status frame.
                    Ok(_) => Ok(()),
                    Err(e) => self.refuse(e.into()).await,
                }
            }
        }
    }

    async fn hello(&mut self, user_id: Option<&str>, token: Option<&str>) -> Step {
        if self.caller.is_some() {
            return self
                .refuse(Refusal(
                    "already_greeted",
                    "hello was already sent on this socket".to_owned(),
                ))
                .await;
        }
        let (caller, known) = self.state.callers.resolve(user_id, token);
        let ready = ServerFrame::Ready {
            user_id: caller.user_id.clone(),
            caller_token: caller.token.clone(),
            limits: self.state.queue.limits(),
        };
        self.caller = Some(caller);
        self.send(ready).await?;
        if known {
            self.resync().await?;
        }
        Ok(())
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Step {
        let max = match &self.recording {
            Some(recording) => self.state.queue.max_audio_bytes(recording.sample_rate),
            None => {
                return self
                    .refuse(Refusal(
                        "audio_not_started",
                        "binary frames are audio: send audio_start first".to_owned(),
                    ))
                    .await;
            }
        };
        let Some(recording) = self.recording.as_mut() else {
            return Ok(());
        };
        if recording.over {
            return Ok(());
        }
        if recording.pcm.len() + bytes.len() > max {
            recording.over = true;
            recording.pcm = Vec::new();
            let secs = self.state.queue.limits().max_audio_secs;
            return self
                .refuse(Refusal(
                    "audio_too_long",
                    format!("a recording may last {secs} s; this one is dropped"),
                ))
                .await;
        }
        recording.pcm.extend_from_slice(bytes);
        Ok(())
    }

    async fn enqueue(
        &mut self,
        caller: &Caller,
        text: Option<String>,
        audio: Option<CallAudio>,
    ) -> Step {
        if let Err(e) = self.state.limits.call_ins.check(&self.client) {
            return self.refuse(Refusal("rate_limited", e.to_string())).await;
        }
        match self
            .state
            .queue
            .enqueue(&self.channel, caller, text, audio)
            .await
        {
            Ok((item, position)) => {
                self.mine
                    .insert(item.id, (CallStatus::Queued, Some(position)));
                self.send(ServerFrame::Queued {
                    id: item.id,
                    position,
                })
                .await
            }
            Err(e) => self.refuse(e.into()).await,
        }
    }

    /// Sends what changed for this caller's items.
    async fn on_change(&mut self, change: &QueueChange) -> Step {
        let Some(caller) = &self.caller else {
            return Ok(());
        };
        if change.channel != self.channel {
            return Ok(());
        }
        if change.resync {
            return self.resync().await;
        }
        let user_id = caller.user_id.clone();
        for item in change.changed.iter().filter(|i| i.user_id == user_id) {
            self.report(item, change.position_of(item.id)).await?;
        }
        let waiting: Vec<Uuid> = self
            .mine
            .iter()
            .filter(|(_, (status, _))| *status == CallStatus::Queued)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            let position = change.position_of(id);
            if let (Some(position), Some((_, last))) = (position, self.mine.get(&id))
                && *last != Some(position)
            {
                self.mine.insert(id, (CallStatus::Queued, Some(position)));
                self.send(ServerFrame::Position { id, position }).await?;
            }
        }
        Ok(())
    }

    /// Sends `item`'s status (and position) if they differ from what was last sent.
    async fn report(&mut self, item: &CallItem, position: Option<u32>) -> Step {
        let last = self.mine.get(&item.id).copied();
        let position = if item.status == CallStatus::Queued {
            position
        } else {
            None
        };
        // A new status, or an item this socket did not know of (sent from another socket
        // of the caller's, or before a reconnect).
        if last.map(|(status, _)| status) != Some(item.status) {
            self.send(ServerFrame::Status {
                id: item.id,
                status: item.status,
                reason: item.reason.clone(),
            })
            .await?;
        }
        if let Some(position) = position
            && last.and_then(|(_, p)| p) != Some(position)
        {
            self.send(ServerFrame::Position {
                id: item.id,
                position,
            })
            .await?;
        }
        self.mine.insert(item.id, (item.status, position));
        Ok(())
    }

    /// Reads this caller's items again and reports what differs (after a reconnect, or when
    /// this socket fell behind the queue's changes).
    async fn resync(&mut self) -> Step {
        let Some(caller) = self.caller.clone() else {
            return Ok(());
        };
        let store = &self.state.store;
        let since = chrono::Utc::now() - RECENT;
        let (items, queued) = match tokio::try_join!(
            store.calls_of_user(&self.channel, &caller.user_id, since),
            store.queued_calls(&self.channel),
        ) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not read a caller's items");
                return self
                    .refuse(Refusal(
                        "store_unavailable",
                        "your call-ins cannot be read right now".to_owned(),
                    ))
                    .await;
            }
        };
        for item in &items {
            let position = queued
                .iter()
                .position(|q| q.id == item.id)
                .map(|i| i as u32 + 1);
            self.report(item, position).await?;
        }
        Ok(())
    }
}
