//! `GET /v1/channels/{name}/stream`: the channel's live audio as Ogg/Opus (48 kHz mono),
//! for any player that reads Ogg/Opus over HTTP (browsers' `<audio>`, ffplay, VLC, mpv).
//! The body is chunked and never ends while the channel airs: the two header pages, then
//! live pages (every 100 ms by default) through this instance's relay ([`crate::api::stream`]).
//! `HEAD` answers the same headers with no body. Unknown channel: 404; host unreachable: 503.
//!
//! A live stream has no fixed length and cannot be seeked, so `Range` is ignored (RFC 9110
//! §14.2 lets a server do that): every request gets 200 and the stream from now, with
//! `Accept-Ranges: none` saying so. Browsers send `Range: bytes=0-` for media and accept 200.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use futures::StreamExt;

use super::known_channel;
use crate::api::{ApiError, ApiState, Result};
use crate::bus::ErrorBody;

fn ogg_headers() -> HttpResponseBuilder {
    let mut builder = HttpResponse::Ok();
    builder
        .content_type("audio/ogg")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::ACCEPT_RANGES, "none"))
        // A proxy must not buffer a live stream (nginx honours this).
        .insert_header(("X-Accel-Buffering", "no"));
    builder
}

#[tracing::instrument(skip_all, fields(channel = %name))]
#[utoipa::path(
    get, path = "/v1/channels/{name}/stream", tag = "listen",
    description = "The channel's live audio as Ogg/Opus (48 kHz mono); the body never ends while the channel airs. `Range` is ignored (`Accept-Ranges: none`).",
    params(("name" = String, Path, description = "The channel's name", example = "radio24")),
    responses(
        (status = 200, description = "The live stream", content(("audio/ogg"))),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`Retry-After` says when to try again)", body = ErrorBody),
        (status = 503, description = "`overloaded` (this instance has as many stream listeners as it takes), `host_unavailable`", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn stream_channel(
    req: HttpRequest,
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    state.limits.stream.check(&state.client_key(&req))?;
    let channel = known_channel(&state, &name).await?;
    let listening: usize = state.streams.listeners().values().sum();
    if listening >= state.max_stream_listeners {
        return Err(ApiError::Overloaded(
            "this instance has as many stream listeners as it takes; try again later".into(),
        ));
    }
    let pages = state.streams.listen(&channel).await?;
    tracing::info!("stream listener joined");
    Ok(ogg_headers().streaming(pages.map(Ok::<_, actix_web::Error>)))
}

/// `HEAD`: the same answer as `GET` without opening the stream; asks the host about the
/// channel so that an unreachable host is a 503 here too.
#[tracing::instrument(skip_all, fields(channel = %name))]
#[utoipa::path(
    head, path = "/v1/channels/{name}/stream", tag = "listen",
    description = "The stream's headers, without opening it (the host is asked about the channel).",
    params(("name" = String, Path, description = "The channel's name", example = "radio24")),
    responses(
        (status = 200, description = "The stream's headers", content(("audio/ogg"))),
        (status = 404, description = "`unknown_channel`", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn head_stream(
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let channel = known_channel(&state, &name).await?;
    state.bus.now_playing(&channel).await?;
    Ok(ogg_headers().streaming(futures::stream::empty::<
        Result<bytes::Bytes, actix_web::Error>,
    >()))
}
