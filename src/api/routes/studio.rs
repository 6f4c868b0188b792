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
use crate::bus::{ScriptRequest, SpeakRequest};
use crate::domain::{ChannelName, SpokenText};

#[tracing::instrument(skip_all, fields(channel, mode))]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelQuery {
    channel: Option<ChannelName>,
}

/// 200 `{"taken": item}`; 409 `queue_empty` when nobody waits; 429 `call_in_progress` when
/// the host is on a call (the caller keeps their place).
#[tracing::instrument(skip_all, fields(channel))]
pub async fn take_next(
    state: web::Data<ApiState>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse> {
    let channel = channel_or_default(&state, query.into_inner().channel).await?;
    tracing::Span::current().record("channel", channel.as_str());
    match state.switchboard.put_through(&channel).await? {
        PutThrough::Taken(item) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "taken": item })))
        }
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
