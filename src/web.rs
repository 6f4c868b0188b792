//! HTTP pieces shared by the API routes and the host's bus routes: the JSON error body,
//! bearer-token checks (and the middleware that makes them before a body is read), and a
//! JSON extractor config whose errors are JSON too.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
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
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
    else {
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

/// Middleware for routes behind a bearer token: a request without the token `expected`
/// finds in the app data gets `unauthorized` before anything reads its body, so a client
/// without the token can make the server hold nothing.
pub async fn require_bearer<T: BearerProtected, B: MessageBody>(
    protected: web::Data<T>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    if bearer_matches(req.request(), protected.token()) {
        next.call(req)
            .await
            .map(ServiceResponse::map_into_left_body)
    } else {
        let refused = error_response(StatusCode::UNAUTHORIZED, "unauthorized", T::REFUSAL);
        Ok(req.into_response(refused).map_into_right_body())
    }
}

/// App data that holds the token a group of routes is behind ([`require_bearer`]).
pub trait BearerProtected: 'static {
    /// What a refused client is told (never the token).
    const REFUSAL: &'static str;
    /// The token the routes need.
    fn token(&self) -> &SecretString;
}

/// JSON extractor settings: a size limit and JSON error bodies for bad payloads.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_JSON_BYTES)
        .error_handler(|err, _req| {
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
