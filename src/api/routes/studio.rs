//! Operator routes (bearer `auth.admin_token`): `POST /v1/studio/speak` makes the host say
//! something next or now; `POST /v1/studio/script` previews a script without airing it.
//! Both go through the bus. The token is checked before the body is read (the scope's
//! middleware, see `routes::configure`).

use actix_web::{HttpResponse, web};

use super::channel_or_default;
use crate::api::{ApiState, Result};
use crate::bus::{ScriptRequest, SpeakRequest};
use crate::domain::SpokenText;

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
