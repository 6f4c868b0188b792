//! `GET /openapi.json`: the API's OpenAPI 3.1 document, made from the code. Each route's
//! operation comes from the `#[utoipa::path]` on its handler, each schema from the
//! `ToSchema` derive on the type that is really sent or taken, and the WebSocket frames are
//! named schemas the socket routes' descriptions point at. What every route may answer
//! whatever it does (the refusals of the middleware and the extractors, the bearer check, a
//! fault of ours) is added here once, from what the operation takes ([`CommonAnswers`]), so
//! it cannot be forgotten on a new route.
//!
//! The host role's bus routes are not here: the API role never serves them (they are the
//! host's, on its own port, for the API alone).

use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref};
use utoipa::{Modify, OpenApi};

use super::{archive, broadcast, channels, health, ptt, queue, room, stream, studio};
use crate::api::hub::{ListenersFrame, QueueFrame, Snapshot};
use crate::bus::{ErrorBody, HostEvent};

/// The document: every operation of the API role, and the frames of its sockets.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Radio24",
        description = "A 24-hour AI radio station: listen, follow what airs, call in, and run the studio. Every error answer is `{\"error\": \"snake_code\", \"message\": \"...\"}` (the `ErrorBody` schema). A known path asked with a method it does not answer gets 405 `method_not_allowed` with `Allow`; a path no route matches gets 404 `not_found`. Operator routes need `Authorization: Bearer <auth.admin_token>`. The WebSocket routes' frames are the schemas their descriptions name.",
    ),
    paths(
        health::health,
        health::ready,
        health::health_for_operators,
        broadcast::broadcast_ws,
        ptt::ptt_ws,
        queue::enqueue,
        queue::list,
        queue::audio,
        queue::moderate,
        room::join,
        channels::list,
        channels::schedule,
        channels::replace,
        channels::edit_hour,
        stream::stream_channel,
        stream::head_stream,
        archive::list,
        archive::file,
        studio::speak,
        studio::script,
        studio::take_next,
        openapi_json,
        crate::metrics::scrape,
    ),
    components(schemas(
        ErrorBody,
        Snapshot,
        HostEvent,
        QueueFrame,
        ListenersFrame,
        broadcast::ErrorFrame,
        ptt::ClientFrame,
        ptt::ServerFrame,
    )),
    modifiers(&WebApp, &CommonAnswers),
    tags(
        (name = "listen", description = "Hearing the station: the live stream, LiveKit tokens, the archive"),
        (name = "channels", description = "Channels and their schedules"),
        (name = "queue", description = "The call-in queue"),
        (name = "sockets", description = "WebSockets: what airs, and calling in"),
        (name = "studio", description = "Operators (admin token)"),
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "This document, metrics, the web app"),
    ),
)]
pub struct ApiDoc;

/// The document as served, made once.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// The operations no request to which reaches the store (the rest may answer 503
/// `store_unavailable` when the database is unreachable).
const STORELESS: &[&str] = &[
    "health",
    "ready",
    "health_for_operators",
    "openapi_json",
    "scrape",
    "web_app",
];

#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    description = "This document (OpenAPI 3.1).",
    responses((status = 200, description = "The document", content_type = "application/json"))
)]
pub async fn openapi_json() -> HttpResponse {
    match &*DOCUMENT {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone()),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document does not serialise");
            crate::web::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the logs",
            )
        }
    }
}

/// Adds to every operation what any route answers, as the middleware and extractors in
/// `crate::web` and `crate::startup` really do, and the bearer scheme operator routes name.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("auth.admin_token"))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                add_common_answers(operation);
            }
            // One handler for GET and HEAD names both operations after itself; operation ids
            // must be unique.
            if let (Some(get), Some(head)) = (&item.get, &mut item.head)
                && get.operation_id == head.operation_id
                && let Some(id) = &mut head.operation_id
            {
                *id = format!("{id}_head");
            }
        }
    }
}

/// Every operation of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn add_common_answers(operation: &mut Operation) {
    add_error(
        operation,
        414,
        "`uri_too_long`: the path and query are over 8 KiB",
    );
    add_error(
        operation,
        431,
        "`headers_too_large`: the headers are over 32 KiB",
    );
    if operation.request_body.is_some() {
        add_error(
            operation,
            400,
            "`invalid_json`: the body is not JSON, or not of the schema",
        );
        add_error(
            operation,
            408,
            "`body_timeout`: the body did not arrive in time (the connection is closed)",
        );
        add_error(
            operation,
            413,
            "`payload_too_large`: the body is over 64 KiB",
        );
        add_error(
            operation,
            415,
            "`unsupported_media_type`: the body is not `application/json`",
        );
    }
    let has_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    if has_query {
        add_error(
            operation,
            400,
            "`invalid_query`: the query string is not valid",
        );
    }
    if operation.security.is_some() {
        add_error(
            operation,
            401,
            "`unauthorized`: missing or wrong bearer token (checked before the body is read)",
        );
    }
    let id = operation.operation_id.as_deref().unwrap_or_default();
    if !STORELESS.contains(&id) {
        add_error(
            operation,
            503,
            "`store_unavailable`: the database is not reachable right now",
        );
        add_error(
            operation,
            500,
            "`internal`: a fault of ours; the cause is logged, never sent",
        );
    }
}

/// Adds an error answer of `status` with an [`ErrorBody`]; a status the operation already
/// answers gets `description` appended to its own.
fn add_error(operation: &mut Operation, status: u16, description: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(utoipa::openapi::RefOr::T(response)) => {
            response.description = format!("{}; {description}", response.description);
        }
        Some(utoipa::openapi::RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_string(), error_response(description).into());
        }
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// `/`: the web app's files (`server.web_dir`), served by `actix-files` rather than by a
/// handler, or, when the app is not built, a page saying how to build it. Mounted only when
/// `server.web_dir` is set.
struct WebApp;

impl Modify for WebApp {
    fn modify(&self, doc: &mut Document) {
        let page = || {
            let mut operation = Operation::new();
            operation.operation_id = Some("web_app".to_owned());
            operation.tags = Some(vec!["meta".to_owned()]);
            operation.description = Some(
                "The web app (`server.web_dir`), or a page saying how to build it; only when `server.web_dir` is set. Other paths under `/` are the app's files; a file that is not there gets 404 `not_found`."
                    .to_owned(),
            );
            operation.responses.responses.insert(
                "200".to_owned(),
                ResponseBuilder::new()
                    .description("The page")
                    .content("text/html", ContentBuilder::new().build())
                    .build()
                    .into(),
            );
            operation
        };
        let item = PathItemBuilder::new()
            .operation(HttpMethod::Get, page())
            .operation(HttpMethod::Head, page())
            .build();
        doc.paths.paths.insert("/".to_owned(), item);
    }
}
