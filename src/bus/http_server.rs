//! The host side of the HTTP bus: exposes any `dyn HostBus` (in practice the host) as the
//! routes `POST /script/generate`, `POST /speak`, `GET /now`, `PUT /programme`,
//! `GET /events` (newline-delimited JSON, one [`HostEvent`] a line, a blank keep-alive line
//! every [`KEEPALIVE`]) and `GET /stream?channel=NAME` (the channel's live Ogg/Opus stream,
//! header pages then live pages; the API relays one per channel), `GET /archive?channel=NAME`
//! (the channel's recordings) and `GET /archive/{file}?channel=NAME` (one recording file,
//! streamed from disk with its length), and `POST /calls` (a listener's call to air, JSON
//! with the recording base64, up to [`MAX_CALL_BODY`]). All of them require
//! `Authorization: Bearer <bus.token>`, or with `bus.auth = "google_id_token"` a Google ID
//! token whose claims fit ([`super::google_id`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, ResponseError, web};
use bytes::Bytes;
use futures::StreamExt;
use secrecy::SecretString;
use serde::Deserialize;

use super::archive::ArchiveFileName;
use super::google_id::IdTokenCheck;
use super::{BusError, CallHandoff, HostBus, Programme, Rejection, ScriptRequest, SpeakRequest};
use crate::domain::ChannelName;
use crate::web::{BearerProtected, error_response, require_bearer};

/// How often the event stream sends a blank line when there are no events, so the API can
/// tell a quiet host from a dead connection.
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// Largest `POST /calls` body: two minutes of 48 kHz 16-bit audio, base64 (15.4 MB), and
/// the JSON around it. The host checks the recording's length itself.
pub const MAX_CALL_BODY: usize = 16 * 1024 * 1024;

/// What the bus routes need.
#[derive(Clone)]
pub struct BusServer {
    pub bus: Arc<dyn HostBus>,
    pub token: SecretString,
    /// With `bus.auth = "google_id_token"`: the ID tokens accepted instead of `token`.
    pub id_tokens: Option<IdTokenCheck>,
    /// The channel used when a request names none.
    pub default_channel: ChannelName,
}

impl ResponseError for BusError {
    fn status_code(&self) -> StatusCode {
        match self {
            BusError::Unavailable(_) | BusError::Standby(_) => StatusCode::SERVICE_UNAVAILABLE,
            BusError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            BusError::Unauthorized => StatusCode::UNAUTHORIZED,
            BusError::Rejected { kind, .. } => match kind {
                Rejection::BadRequest => StatusCode::BAD_REQUEST,
                Rejection::NotFound => StatusCode::NOT_FOUND,
                Rejection::Busy => StatusCode::TOO_MANY_REQUESTS,
            },
            BusError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            BusError::Rejected { code, message, .. } => error_response(status, code, message),
            BusError::Unauthorized => error_response(
                status,
                "unauthorized",
                "missing or wrong bearer token (bus.token)",
            ),
            BusError::Standby(message) => error_response(status, "standby", message),
            BusError::Unavailable(_) | BusError::Timeout(_) => {
                error_response(status, "host_unavailable", &self.to_string())
            }
            BusError::Internal(cause) => {
                tracing::error!(%cause, "bus request failed");
                error_response(status, "internal", "the host failed; see its logs")
            }
        }
    }
}

/// Mounts the bus routes, each behind the bus token (checked before a body is read).
pub fn configure(cfg: &mut web::ServiceConfig, server: BusServer) {
    cfg.app_data(web::Data::new(server))
        .service(behind_token(
            "/script/generate",
            "POST",
            web::post().to(generate_script),
        ))
        .service(behind_token("/speak", "POST", web::post().to(speak)))
        .service(
            crate::web::resource("/calls", "POST")
                // The shared config's JSON errors (413, 408), with this route's own limit.
                .app_data(crate::web::json_config().limit(MAX_CALL_BODY))
                .wrap(from_fn(require_bearer::<BusServer, _>))
                .route(web::post().to(take_call)),
        )
        .service(behind_token("/now", "GET", web::get().to(now)))
        .service(behind_token(
            "/programme",
            "PUT",
            web::put().to(set_programme),
        ))
        .service(behind_token("/events", "GET", web::get().to(events)))
        .service(behind_token("/stream", "GET", web::get().to(stream)))
        .service(behind_token("/archive", "GET", web::get().to(archive_list)))
        .service(behind_token(
            "/archive/{file}",
            "GET",
            web::get().to(archive_file),
        ));
}

/// One bus route, behind `bus.token`. Per resource rather than a scope: in role all the
/// bus routes share the root with the API's.
/// Other methods get 405 with `Allow: allow`.
fn behind_token(
    path: &str,
    allow: &'static str,
    route: actix_web::Route,
) -> impl HttpServiceFactory + use<> {
    crate::web::resource(path, allow)
        .wrap(from_fn(require_bearer::<BusServer, _>))
        .route(route)
}

impl BusServer {
    /// The channel a query names, or the default one.
    fn channel_or_default(&self, query: ChannelQuery) -> ChannelName {
        query
            .channel
            .unwrap_or_else(|| self.default_channel.clone())
    }
}

impl BearerProtected for BusServer {
    const REFUSAL: &'static str = "missing or wrong bearer token (bus.token)";

    fn token(&self) -> &SecretString {
        &self.token
    }

    fn accepts(&self, req: &actix_web::HttpRequest) -> bool {
        let Some(check) = &self.id_tokens else {
            return crate::web::bearer_matches(req, &self.token);
        };
        let Some(token) = crate::web::bearer(req) else {
            return false;
        };
        match check.check(&SecretString::from(token.trim())) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "bus request refused: its ID token does not fit");
                false
            }
        }
    }
}

#[tracing::instrument(skip_all)]
async fn generate_script(
    server: web::Data<BusServer>,
    body: web::Json<ScriptRequest>,
) -> Result<HttpResponse, BusError> {
    let script = server.bus.generate_script(body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(script))
}

#[tracing::instrument(skip_all)]
async fn speak(
    server: web::Data<BusServer>,
    body: web::Json<SpeakRequest>,
) -> Result<HttpResponse, BusError> {
    let accepted = server.bus.speak(body.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(accepted))
}

#[tracing::instrument(skip_all)]
async fn take_call(
    server: web::Data<BusServer>,
    body: web::Json<CallHandoff>,
) -> Result<HttpResponse, BusError> {
    let accepted = server.bus.take_call(body.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(accepted))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelQuery {
    channel: Option<ChannelName>,
}

async fn now(
    server: web::Data<BusServer>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, BusError> {
    let channel = server.channel_or_default(query.into_inner());
    Ok(HttpResponse::Ok().json(server.bus.now_playing(&channel).await?))
}

#[tracing::instrument(skip_all)]
async fn set_programme(
    server: web::Data<BusServer>,
    body: web::Json<Programme>,
) -> Result<HttpResponse, BusError> {
    server.bus.set_programme(body.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn events(server: web::Data<BusServer>) -> Result<HttpResponse, BusError> {
    let events = server
        .bus
        .subscribe()
        .await?
        .filter_map(|event| async move {
            match serde_json::to_vec(&event) {
                Ok(mut line) => {
                    line.push(b'\n');
                    Some(Bytes::from(line))
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not serialize a host event; skipped");
                    None
                }
            }
        });
    let keepalive = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(KEEPALIVE))
        .map(|_| Bytes::from_static(b"\n"));
    let body = futures::stream::select(events, keepalive).map(Ok::<_, actix_web::Error>);
    tracing::info!("an API instance subscribed to host events");
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(body))
}

async fn stream(
    server: web::Data<BusServer>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, BusError> {
    let channel = server.channel_or_default(query.into_inner());
    let pages = server.bus.audio_stream(&channel).await?;
    tracing::info!(%channel, "an API instance opened the live stream");
    Ok(HttpResponse::Ok()
        .content_type("audio/ogg")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(pages.map(Ok::<_, actix_web::Error>)))
}

async fn archive_list(
    server: web::Data<BusServer>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, BusError> {
    let channel = server.channel_or_default(query.into_inner());
    Ok(HttpResponse::Ok().json(server.bus.archive_list(&channel).await?))
}

async fn archive_file(
    server: web::Data<BusServer>,
    file: web::Path<String>,
    query: web::Query<ChannelQuery>,
) -> Result<HttpResponse, BusError> {
    let channel = server.channel_or_default(query.into_inner());
    let name = ArchiveFileName::parse(&file)?;
    let file = server.bus.archive_file(&channel, &name).await?;
    let mut response = HttpResponse::Ok();
    response.content_type(file.kind.content_type());
    Ok(match file.length {
        Some(length) => response.body(actix_web::body::SizedStream::new(length, file.body)),
        None => response.streaming(file.body),
    })
}
