//! HTTP pieces shared by the API routes and the host's bus routes: the JSON error body,
//! bearer-token checks (and the middleware that makes them before a body is read), the time
//! limit on reading a request body, and a JSON extractor config whose errors are JSON too.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::Future;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::bus::ErrorBody;

/// Largest JSON request body accepted by any route.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// An error answer: `{"error": code, "message": message}` with a status.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: code.to_owned(),
        message: message.to_owned(),
    })
}

/// True when the request carries `Authorization: Bearer <expected>` (the scheme in any
/// case, RFC 9110). The tokens are compared as SHA-256 digests in constant time, so neither
/// their bytes nor their length can be learnt from response times.
pub fn bearer_matches(req: &HttpRequest, expected: &SecretString) -> bool {
    let Some(given) = bearer(req) else {
        return false;
    };
    let expected = expected.expose_secret().as_bytes();
    if expected.is_empty() {
        return false;
    }
    let given = Sha256::digest(given.trim().as_bytes());
    let expected = Sha256::digest(expected);
    given.ct_eq(&expected).into()
}

/// The token of the request's `Authorization: Bearer <token>` (the scheme in any case).
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
}

/// Middleware for routes behind a bearer token: a request without the token `expected`
/// finds in the app data gets `unauthorized` before anything reads its body, so a client
/// without the token can make the server hold nothing.
pub async fn require_bearer<T: BearerProtected, B: MessageBody>(
    protected: web::Data<T>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if protected.accepts(req.request()) {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_left_body)
    } else {
        let refused = error_response(StatusCode::UNAUTHORIZED, "unauthorized", T::REFUSAL);
        Ok(req.into_response(refused).map_into_right_body())
    }
}

/// [`require_bearer`] for requests that change something: `GET` and `HEAD` pass, so one
/// resource can be public to read and behind the token to write (the token is still
/// checked before a body is read).
pub async fn require_bearer_to_write<T: BearerProtected, B: MessageBody>(
    protected: web::Data<T>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let method = req.method();
    if method == actix_web::http::Method::GET || method == actix_web::http::Method::HEAD {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    require_bearer(protected, req, next).await
}

/// App data that holds the token a group of routes is behind ([`require_bearer`]).
pub trait BearerProtected: 'static {
    /// What a refused client is told (never the token).
    const REFUSAL: &'static str;
    /// The token the routes need.
    fn token(&self) -> &SecretString;
    /// Whether the request may pass: by default, when it carries [`Self::token`].
    fn accepts(&self, req: &HttpRequest) -> bool {
        bearer_matches(req, self.token())
    }
}

/// Middleware giving every request body `timeout` to arrive in full, counted from when its
/// headers were read. A body still incomplete then fails to read; the extractors answer
/// 408 `body_timeout` and close the connection. WebSocket upgrades are left alone: their
/// "body" is the socket, bounded in `api::ws`.
pub async fn limit_body_time<B: MessageBody>(
    timeout: Duration,
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    if !req.headers().contains_key(header::UPGRADE) {
        let body = actix_web::HttpMessage::take_payload(&mut req);
        let timed: Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, PayloadError>>>> =
            Box::pin(TimedBody {
                body,
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            });
        req.set_payload(Payload::Stream { payload: timed });
    }
    next.call(req).await
}

/// A request body that fails with `TimedOut` once its deadline passes.
struct TimedBody {
    body: Payload,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl futures::Stream for TimedBody {
    type Item = Result<bytes::Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(item) = Pin::new(&mut this.body).poll_next(cx) {
            return Poll::Ready(item);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the request body did not arrive within {} s",
                    this.timeout.as_secs_f64()
                ),
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The answer for a body that did not arrive in time: 408, and the connection closed (what
/// is left of the body is never read).
fn body_timeout(message: &str) -> HttpResponse {
    let mut response = error_response(StatusCode::REQUEST_TIMEOUT, "body_timeout", message);
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

/// The I/O error of a body read that ran out of time ([`limit_body_time`]).
fn timed_out(err: &JsonPayloadError) -> Option<&std::io::Error> {
    match err {
        JsonPayloadError::Payload(PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Some(e)
        }
        _ => None,
    }
}

/// JSON extractor settings: a size limit and JSON error bodies for bad payloads.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BYTES)
        .error_handler(|err, _req| {
            if let Some(e) = timed_out(&err) {
                let response = body_timeout(&e.to_string());
                return actix_web::error::InternalError::from_response(err, response).into();
            }
            let (status, code) = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                }
                JsonPayloadError::ContentType => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                }
                _ => (StatusCode::BAD_REQUEST, "invalid_json"),
            };
            let message = match &err {
                JsonPayloadError::Deserialize(e) => format!("request body is not valid: {e}"),
                JsonPayloadError::ContentType => {
                    "expected Content-Type: application/json".to_owned()
                }
                other => other.to_string(),
            };
            actix_web::error::InternalError::from_response(
                err,
                error_response(status, code, &message),
            )
            .into()
        })
}

/// Query-string extractor settings with JSON error bodies.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = format!("query string is not valid: {err}");
        actix_web::error::InternalError::from_response(
            err,
            error_response(StatusCode::BAD_REQUEST, "invalid_query", &message),
        )
        .into()
    })
}

/// Answers for paths no route matches.
pub async fn not_found() -> HttpResponse {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Longest request target (path and query) the app takes; longer gets 414. (The HTTP layer
/// itself refuses targets over 64 KiB with an empty 400, before the app sees them.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most header bytes (names and values) the app takes; more gets 431. (The HTTP layer itself
/// refuses heads over 128 KiB, or with more than 96 headers, with an empty 431 or 400.)
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware refusing a request whose target or headers are over [`MAX_URI_BYTES`] or
/// [`MAX_HEADER_BYTES`], with a JSON error, before any route runs.
pub async fn limit_request_head<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let refusal = if target > MAX_URI_BYTES {
        Some(error_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            &format!("the request target is {target} bytes; the limit is {MAX_URI_BYTES}"),
        ))
    } else {
        let headers: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        (headers > MAX_HEADER_BYTES).then(|| {
            error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                &format!("the headers are {headers} bytes; the limit is {MAX_HEADER_BYTES}"),
            )
        })
    };
    match refusal {
        Some(refusal) => Ok(req.into_response(refusal).map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

/// Middleware giving JSON bodies to errors that middleware inside it (CORS) answers in plain
/// text, so every answer the app gives is `{"error", "message"}`.
pub async fn json_errors<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match next.call(req).await {
        Ok(response) => match response.response().error() {
            Some(error) if !is_json(response.response()) => {
                let json = as_json(response.status(), &error.to_string());
                let (request, _) = response.into_parts();
                Ok(ServiceResponse::new(request, json).map_into_right_body())
            }
            _ => Ok(response.map_into_left_body()),
        },
        Err(error) => {
            let answer = error.error_response();
            if is_json(&answer) {
                return Err(error);
            }
            let json = as_json(answer.status(), &error.to_string());
            Err(actix_web::error::InternalError::from_response(error.to_string(), json).into())
        }
    }
}

/// The JSON error answer for a plain-text one of `status` saying `message`.
fn as_json(status: StatusCode, message: &str) -> HttpResponse {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::FORBIDDEN => "forbidden",
        s if s.is_server_error() => "internal",
        _ => "refused",
    };
    if status.is_server_error() {
        error_response(status, code, "internal error; see the logs")
    } else {
        error_response(status, code, message)
    }
}

fn is_json<B>(response: &HttpResponse<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A resource's answer to a method it does not serve: 405 naming the ones it does, in
/// `Allow` and in the message. Set as each resource's default service ([`resource`]).
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this route answers {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// A resource at `path` that answers the methods in `allow` (e.g. `"GET, HEAD"`) with the
/// routes added to it, and any other method with 405 ([`method_not_allowed`]).
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}
