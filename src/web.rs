//! HTTP pieces shared by the API routes and the host's bus routes: the JSON error body,
//! bearer-token checks, and a JSON extractor config whose errors are JSON too.

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};

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

/// True when the request carries `Authorization: Bearer <expected>`. Compared in constant
/// time, so the token cannot be guessed byte by byte from response times.
pub fn bearer_matches(req: &HttpRequest, expected: &SecretString) -> bool {
    let Some(given) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let expected = expected.expose_secret().as_bytes();
    let given = given.trim().as_bytes();
    if expected.is_empty() || given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
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
