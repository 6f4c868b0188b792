//! The programme archive: `GET /v1/channels/{name}/archive` lists a channel's hourly
//! recordings, newest first (`{"channel", "recordings": [{"hour_start", "file", "captions",
//! "bytes", "duration_secs", "complete"}]}`), and `GET /v1/channels/{name}/archive/{file}`
//! serves one file, `YYYY-MM-DDTHH.ogg` (`audio/ogg`) or `YYYY-MM-DDTHH.json`
//! (`application/json`, the captions), streamed from the host with its `Content-Length`.
//! The host records and keeps the files; this only asks it over the bus. Unknown channel:
//! 404 `unknown_channel`; no archive on this station: 404 `archive_disabled`; a file that
//! is not there, or a name not of exactly that form: 404 `unknown_recording`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::known_channel;
use crate::api::{ApiError, ApiState, Result};
use crate::bus::{ArchiveFileName, ArchiveListing, ErrorBody};

#[tracing::instrument(skip_all, fields(channel = %name))]
#[utoipa::path(
    get, path = "/v1/channels/{name}/archive", operation_id = "list_archive", tag = "listen",
    description = "The channel's hourly recordings, newest first.",
    params(("name" = String, Path, description = "The channel's name", example = "radio24")),
    responses(
        (status = 200, description = "The recordings", body = ArchiveListing),
        (status = 404, description = "`unknown_channel`, `archive_disabled`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`Retry-After` says when to try again)", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn list(
    req: HttpRequest,
    state: web::Data<ApiState>,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    state.limits.archive_list.check(&state.client_key(&req))?;
    let channel = known_channel(&state, &name).await?;
    let listing = state.bus.archive_list(&channel).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(listing))
}

#[tracing::instrument(skip_all, fields(channel = %path.0))]
#[utoipa::path(
    method(get, head), path = "/v1/channels/{name}/archive/{file}", operation_id = "archive_file", tag = "listen",
    description = "One archive file: `YYYY-MM-DDTHH.ogg` (the hour's audio) or `YYYY-MM-DDTHH.json` (its captions), with its `Content-Length`.",
    params(("name" = String, Path, description = "The channel's name", example = "radio24"), ("file" = String, Path, description = "`YYYY-MM-DDTHH.ogg` or `YYYY-MM-DDTHH.json`", example = "2026-11-28T09.ogg")),
    responses(
        (status = 200, description = "The file", content(("audio/ogg"), ("application/json"))),
        (status = 404, description = "`unknown_channel`, `archive_disabled`, `unknown_recording`", body = ErrorBody),
        (status = 502, description = "`host_error`: the host failed", body = ErrorBody),
        (status = 503, description = "`host_unavailable`: the host is not reachable right now", body = ErrorBody),
        (status = 504, description = "`host_timeout`: the host did not answer in time", body = ErrorBody),
    )
)]
pub async fn file(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (name, file) = path.into_inner();
    let channel = known_channel(&state, &name).await?;
    let file = ArchiveFileName::parse(&file).map_err(|e| ApiError::Host(e.into()))?;
    let found = state.bus.archive_file(&channel, &file).await?;
    let mut response = HttpResponse::Ok();
    response
        .content_type(found.kind.content_type())
        // The hour being recorded still grows; a closed one never changes.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    Ok(match found.length {
        Some(length) => response.body(actix_web::body::SizedStream::new(length, found.body)),
        None => response.streaming(found.body),
    })
}
