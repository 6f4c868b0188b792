//! Operator routes (bearer `auth.admin_token`): `POST /v1/studio/speak` makes the host say
//! something next or now; `POST /v1/studio/script` previews a script without airing it;
//! `POST /v1/studio/take-next?channel=NAME` puts the next caller through at once, whatever
//! the hour's block. All go through the bus. The token is checked before the body is read (the scope's
//! middleware, see `routes::configure`).

use actix_web::{HttpResponse, web};

use serde::Deserialize;

use super::channel_or_default;
use crate::api::switchboard::PutThrough;
use crate::api::{ApiError, ApiState, Result};
use crate::bus::{ErrorBody, Script, ScriptRequest, SpeakAccepted, SpeakRequest};
use crate::domain::{ChannelName, SpokenText};

#[tracing::instrument(skip_all, fields(channel, mode))]
#[utoipa::path(
    post, path = "/v1/studio/speak", tag = "studio",
    description = "Makes the host say something, next (after what is queued) or now (cutting the current segment short).",
    request_body = SpeakRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The host took it; it airs when its turn comes", body = SpeakAccepted),
        (status = 400, description = "`empty_text`, `text_too_long`, `invalid_text`, `invalid_channel`, or the host's refusal", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 429, description = "The host is busy", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn speak(
    state: web::Data<ApiState>,
    body: web::Json<SpeakRequest>,
) -> Result<HttpResponse> {
    let mut body = body.into_inner();
    let text = SpokenText::parse(&body.text, state.max_text_chars)?;
    let channel = channel_or_default(&state, body.channel.take()).await?;
    tracing::Span::current()
        .record("channel", channel.as_str())
        .record("mode", format!("{:?}", body.mode));
    let accepted = state
        .bus
        .speak(SpeakRequest {
            text: text.into_string(),
            channel: Some(channel),
            mode: body.mode,
        })
        .await?;
    Ok(HttpResponse::Accepted().json(accepted))
}

#[tracing::instrument(skip_all, fields(channel))]
#[utoipa::path(
    post, path = "/v1/studio/script", tag = "studio",
    description = "A script the host writes without airing it.",
    request_body = ScriptRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The script", body = Script),
        (status = 400, description = "`invalid_channel`, `invalid_block`, or the host's refusal", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 429, description = "The host is busy", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn script(
    state: web::Data<ApiState>,
    body: web::Json<ScriptRequest>,
) -> Result<HttpResponse> {
    let mut body = body.into_inner();
    let channel = channel_or_default(&state, body.channel.take()).await?;
    tracing::Span::current().record("channel", channel.as_str());
    body.channel = Some(channel);
    let script = state.bus.generate_script(body).await?;
    Ok(HttpResponse::Ok().json(script))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChannelQuery {
    /// `station.default_channel` when absent.
    #[param(value_type = Option<String>)]
    channel: Option<ChannelName>,
}

/// The answer of `POST /v1/studio/take-next`: the call-in put through.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Taken {
    taken: crate::db::CallItem,
}

/// 200 `{"taken": item}`; 409 `queue_empty` when nobody waits; 409 `call_in_progress` when
/// the host is on a call (the caller keeps their place).
#[tracing::instrument(skip_all, fields(channel))]
#[utoipa::path(
    post, path = "/v1/studio/take-next", tag = "studio",
    description = "Puts the next caller through at once, whatever the hour's block.",
    params(ChannelQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call-in put through", body = Taken),
        (status = 400, description = "`invalid_channel`, or the host's refusal", body = ErrorBody),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 409, description = "`queue_empty` (nobody waits), `call_in_progress` (the host is on a call; the next caller keeps their place)", body = ErrorBody),
        (status = 429, description = "The host is busy", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn take_next(
    state: web::Data<ApiState>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse> {
    let channel = channel_or_default(&state, query.into_inner().channel).await?;
    tracing::Span::current().record("channel", channel.as_str());
    match state.switchboard.put_through(&channel).await? {
        PutThrough::Taken(item) => Ok(HttpResponse::Ok().json(Taken { taken: item })),
        PutThrough::Busy => Err(ApiError::Conflict {
            code: "call_in_progress",
            message: "the host is on a call; the next caller keeps their place".into(),
        }),
        PutThrough::Nobody => Err(ApiError::Conflict {
            code: "queue_empty",
            message: format!(
                "nobody is waiting on channel {channel} (or one is being put through)"
            ),
        }),
    }
}
