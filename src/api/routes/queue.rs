//! The call-in queue over HTTP.
//!
//! - `POST /v1/queue` `{channel?, text, user_id?, caller_token?}` → 201 `{id, position,
//!   user_id, caller_token}`: a typed call-in, with the same identity rules and limits as
//!   `/ws/ptt` (an id without its valid token gets a new caller).
//! - Operators (admin token): `GET /v1/queue?channel&status&limit` (oldest first, with text
//!   and transcript, never audio), `GET /v1/queue/{id}/audio` (the recording as WAV), and
//!   `PATCH /v1/queue/{id}` `{status?: "dropped"|"queued", priority?}`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::channel_or_default;
use crate::api::{ApiError, ApiState, Result};
use crate::bus::ErrorBody;
use crate::db::{CallItem, CallStatus};
use crate::domain::{ChannelName, InvalidInput};

/// Most items one listing returns.
const MAX_LISTED: u32 = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// `station.default_channel` when absent.
    channel: Option<ChannelName>,
    /// The caller's words (at most `queue.max_text_chars` characters).
    text: String,
    /// A caller id from an earlier answer; with its `caller_token`, the call-in is theirs.
    user_id: Option<String>,
    caller_token: Option<String>,
}

/// The answer of `POST /v1/queue`: the item, its place, and who the caller is (keep both to
/// be known on a later call-in).
#[derive(Serialize, ToSchema)]
pub struct Enqueued {
    id: Uuid,
    position: u32,
    user_id: String,
    caller_token: String,
}

/// `POST /v1/queue`.
#[utoipa::path(
    post, path = "/v1/queue", tag = "queue",
    description = "A typed call-in, with the same identity rules and limits as `/ws/ptt` (an id without its valid token gets a new caller).",
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Queued", body = Enqueued),
        (status = 400, description = "`empty_text`, `text_too_long`, `invalid_text`, `invalid_channel`", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, `too_many_waiting`, `too_many_this_hour`", body = ErrorBody),
    )
)]
pub async fn enqueue(
    req: HttpRequest,
    state: web::Data<ApiState>,
    body: web::Json<EnqueueRequest>,
) -> Result<HttpResponse> {
    state.limits.call_ins.check(&state.client_key(&req))?;
    let body = body.into_inner();
    let text = state.queue.check_text(&body.text)?;
    let channel = channel_or_default(&state, body.channel).await?;
    let (caller, _) = state
        .callers
        .resolve(body.user_id.as_deref(), body.caller_token.as_deref());
    let (item, position) = state
        .queue
        .enqueue(&channel, &caller, Some(text), None)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Enqueued {
            id: item.id,
            position,
            user_id: caller.user_id,
            caller_token: caller.token,
        }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `station.default_channel` when absent.
    #[param(value_type = Option<String>)]
    channel: Option<ChannelName>,
    /// Only items in this status.
    #[param(value_type = Option<CallStatus>)]
    status: Option<String>,
    /// Most items returned: 1-500 (out of range is clamped), 100 when absent.
    limit: Option<u32>,
}

/// The answer of `GET /v1/queue`: items oldest first, with text and transcript.
#[derive(Serialize, ToSchema)]
pub struct CallListing {
    channel: ChannelName,
    items: Vec<CallItem>,
}

/// `GET /v1/queue` (admin; the route's POST is public, so the token is checked here: a GET
/// has no body to hold).
#[utoipa::path(
    get, path = "/v1/queue", operation_id = "list_queue", tag = "queue",
    description = "The queue, oldest first, with text and transcript (never audio).",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The items", body = CallListing),
        (status = 400, description = "`invalid_status`", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    if !crate::web::bearer_matches(&req, &state.admin_token) {
        return Err(ApiError::Unauthorized);
    }
    let query = query.into_inner();
    let channel = channel_or_default(&state, query.channel).await?;
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<CallStatus>().map_err(|()| {
            InvalidInput::new(
                "invalid_status",
                "status must be queued, live, done or dropped",
            )
        })?),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LISTED);
    let items = state.store.list_calls(&channel, status, limit).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CallListing { channel, items }))
}

fn parse_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| unknown_item())
}

fn unknown_item() -> ApiError {
    ApiError::Store(crate::db::StoreError::NotFound(
        "no call-in with that id".into(),
    ))
}

/// `GET /v1/queue/{id}/audio` (admin): the recording as a 16-bit mono WAV file.
#[utoipa::path(
    get, path = "/v1/queue/{id}/audio", tag = "queue",
    description = "A call-in's recording as a 16-bit mono WAV file.",
    params(("id" = String, Path, description = "The call-in's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The recording", content(("audio/wav"))),
        (status = 404, description = "`not_found`: no such call-in, or it has no recording", body = ErrorBody),
    )
)]
pub async fn audio(state: web::Data<ApiState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id = parse_id(&id)?;
    let audio = state.store.call_audio(id).await?.ok_or_else(|| {
        ApiError::Store(crate::db::StoreError::NotFound(
            "no recording for that call-in (a text call-in, or deleted after queue.audio_retention_hours)".into(),
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("audio/wav")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(wav(audio.sample_rate, &audio.pcm)))
}

/// A WAV file of 16-bit mono PCM.
fn wav(sample_rate: u32, pcm: &[u8]) -> Vec<u8> {
    let data = pcm.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerateRequest {
    /// `dropped` (from `queued`) or `queued` (from `dropped`).
    #[schema(value_type = Option<CallStatus>)]
    status: Option<String>,
    /// Higher airs first: -1000 to 1000.
    #[schema(minimum = -1000, maximum = 1000)]
    priority: Option<i32>,
}

/// `PATCH /v1/queue/{id}` (admin): drop an item, put a dropped one back, or change its
/// priority.
#[utoipa::path(
    patch, path = "/v1/queue/{id}", tag = "queue",
    description = "Drop a waiting call-in, put a dropped one back, or change its priority.",
    params(("id" = String, Path, description = "The call-in's id (a UUID)")),
    request_body = ModerateRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call-in as it is now", body = CallItem),
        (status = 400, description = "`nothing_to_change`, `invalid_priority`, `invalid_status`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such call-in", body = ErrorBody),
        (status = 409, description = "`conflict`: the call-in is not in a status it can leave that way", body = ErrorBody),
    )
)]
pub async fn moderate(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Json<ModerateRequest>,
) -> Result<HttpResponse> {
    let id = parse_id(&id)?;
    let body = body.into_inner();
    if body.status.is_none() && body.priority.is_none() {
        return Err(InvalidInput::new("nothing_to_change", "send status and/or priority").into());
    }
    let mut item: CallItem = state.store.call(id).await?.ok_or_else(unknown_item)?;
    let mut changed = Vec::new();
    if let Some(priority) = body.priority {
        if !(-1000..=1000).contains(&priority) {
            return Err(InvalidInput::new(
                "invalid_priority",
                "priority must be between -1000 and 1000",
            )
            .into());
        }
        item = state
            .store
            .set_call_priority(id, priority)
            .await?
            .ok_or_else(unknown_item)?;
        changed.push(item.clone());
    }
    if let Some(status) = body.status.as_deref() {
        let (from, to, reason): (&[CallStatus], CallStatus, Option<&str>) = match status {
            "dropped" => (&[CallStatus::Queued], CallStatus::Dropped, Some("operator")),
            "queued" => (&[CallStatus::Dropped], CallStatus::Queued, None),
            _ => {
                return Err(InvalidInput::new(
                    "invalid_status",
                    "status must be dropped (from queued) or queued (from dropped)",
                )
                .into());
            }
        };
        if item.status != to {
            item = state
                .store
                .set_call_status(id, from, to, reason)
                .await?
                .ok_or_else(|| {
                    ApiError::Store(crate::db::StoreError::Conflict(format!(
                        "the call-in is {}, so it cannot become {status}",
                        item.status.as_str()
                    )))
                })?;
            changed.push(item.clone());
        }
    }
    tracing::info!(%id, status = item.status.as_str(), priority = item.priority, "call-in changed by an operator");
    if !changed.is_empty() {
        state.queue.announce(&item.channel, changed).await;
    }
    Ok(HttpResponse::Ok().json(item))
}
