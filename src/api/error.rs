//! The API's error type: every failure a route can have, each mapped to a status and a JSON
//! body `{"error": "snake_code", "message": "..."}`. 5xx answers carry a generic message;
//! their cause is logged, never sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::bus::{BusError, Rejection};
use crate::db::StoreError;
use crate::domain::InvalidInput;
use crate::web::error_response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Made by [`ApiError::unknown_channel`], which bounds what is echoed.
    #[error("no channel named '{0}'")]
    UnknownChannel(String),
    #[error("{0}")]
    Overloaded(String),
    #[error(transparent)]
    Host(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// LiveKit credentials are incomplete; holds the environment variables still to set.
    #[error("LiveKit is not configured: set {}", .0.join(", "))]
    LivekitNotConfigured(Vec<&'static str>),
    /// Minting a LiveKit token failed (its cause never names the secret).
    #[error("minting a LiveKit token failed")]
    LivekitToken(#[source] livekit_api::access_token::AccessTokenError),
    /// Too many requests from one client; it may try again after this many seconds.
    #[error("too many requests from this client; try again in {0} s")]
    RateLimited(u64),
    /// Over a per-caller limit of the call-in queue (`too_many_waiting`, ...).
    #[error("{message}")]
    Limited { code: &'static str, message: String },
    /// The request cannot be done in the state things are in (`queue_empty`, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The most of a client's channel name an error echoes back.
const MAX_ECHOED_CHARS: usize = 64;

impl ApiError {
    /// `unknown_channel` for the name a client sent, echoing at most
    /// [`MAX_ECHOED_CHARS`] characters of it (a path segment can be kilobytes long).
    pub fn unknown_channel(name: &str) -> Self {
        let mut echoed: String = name.chars().take(MAX_ECHOED_CHARS).collect();
        if echoed.len() < name.len() {
            echoed.push('…');
        }
        ApiError::UnknownChannel(echoed)
    }
}

impl ApiError {
    /// A failure that is a bug or a broken dependency, not a client's mistake nor the
    /// station being unavailable for a while.
    fn is_fault(&self) -> bool {
        matches!(
            self,
            ApiError::Host(BusError::Internal(_) | BusError::Unauthorized)
                | ApiError::Store(
                    StoreError::Corrupt(_) | StoreError::Migration(_) | StoreError::Query(_)
                )
                | ApiError::LivekitToken(_)
        )
    }
}

/// What a 503 for a database or host that cannot be reached tells the client to wait: the
/// pool opens a fresh connection on the next request, and the API moves on to a standby host
/// within a second or two, so a short wait is enough to find out.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

impl ApiError {
    /// The `Retry-After` a refusal carries: the rate limiter's wait, or a short one when a
    /// dependency is down for a while (none for answers a retry cannot change).
    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited(secs) => Some(*secs),
            ApiError::Store(StoreError::Unavailable(_))
            | ApiError::Host(BusError::Unavailable(_) | BusError::Standby(_)) => {
                Some(UNAVAILABLE_RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownChannel(_) => StatusCode::NOT_FOUND,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Host(e) => match e {
                BusError::Unavailable(_) | BusError::Standby(_) => StatusCode::SERVICE_UNAVAILABLE,
                BusError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                BusError::Unauthorized | BusError::Internal(_) => StatusCode::BAD_GATEWAY,
                BusError::Rejected { kind, .. } => match kind {
                    Rejection::BadRequest => StatusCode::BAD_REQUEST,
                    Rejection::NotFound => StatusCode::NOT_FOUND,
                    Rejection::Busy => StatusCode::TOO_MANY_REQUESTS,
                },
            },
            ApiError::Store(e) => match e {
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Conflict(_) => StatusCode::CONFLICT,
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Corrupt(_) | StoreError::Migration(_) | StoreError::Query(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::LivekitNotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::LivekitToken(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RateLimited(_) | ApiError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (code, message): (&str, String) = match self {
            ApiError::Invalid(e) => (e.code, e.message.clone()),
            ApiError::Unauthorized => ("unauthorized", self.to_string()),
            ApiError::UnknownChannel(_) => ("unknown_channel", self.to_string()),
            ApiError::Overloaded(_) => ("overloaded", self.to_string()),
            ApiError::Host(BusError::Rejected { code, message, .. }) => (code, message.clone()),
            ApiError::Host(BusError::Unavailable(_) | BusError::Standby(_)) => (
                "host_unavailable",
                "the host is not reachable right now; try again shortly".to_owned(),
            ),
            ApiError::Host(BusError::Timeout(_)) => {
                ("host_timeout", "the host did not answer in time".to_owned())
            }
            ApiError::Host(_) => ("host_error", "the host failed; see the logs".to_owned()),
            ApiError::Store(StoreError::Unavailable(_)) => (
                "store_unavailable",
                "the database is not reachable right now".to_owned(),
            ),
            ApiError::Store(StoreError::Conflict(_)) => ("conflict", self.to_string()),
            ApiError::Store(StoreError::NotFound(_)) => ("not_found", self.to_string()),
            ApiError::Store(_) => ("internal", "internal error; see the logs".to_owned()),
            // Names only the variables to set, never their values: safe to tell the client,
            // and it is what the operator needs to read.
            ApiError::LivekitNotConfigured(_) => ("livekit_not_configured", self.to_string()),
            ApiError::LivekitToken(_) => ("internal", "internal error; see the logs".to_owned()),
            ApiError::RateLimited(_) => ("rate_limited", self.to_string()),
            ApiError::Limited { code, message } | ApiError::Conflict { code, message } => {
                (*code, message.clone())
            }
        };
        // Only faults of ours are errors; the station being (partly) unavailable is a
        // warning, logged once per request by the request's span (telemetry::RequestSpan).
        if self.is_fault() {
            tracing::error!(error = %self, cause = ?self, "request failed on a fault");
        }
        let mut response = error_response(status, code, &message);
        if let Some(secs) = self.retry_after_secs() {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(secs),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use actix_web::http::header::RETRY_AFTER;

    use super::ApiError;
    use crate::bus::BusError;
    use crate::db::StoreError;

    fn retry_after(error: &ApiError) -> Option<String> {
        let response = error.error_response();
        response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    #[test]
    fn a_dependency_that_is_down_answers_503_with_retry_after() {
        for error in [
            ApiError::Store(StoreError::Unavailable("refused".into())),
            ApiError::Host(BusError::Unavailable("refused".into())),
            ApiError::Host(BusError::Standby("standby".into())),
        ] {
            assert_eq!(error.status_code(), 503, "{error}");
            assert_eq!(retry_after(&error).as_deref(), Some("2"), "{error}");
        }
    }

    #[test]
    fn a_fault_carries_no_retry_after() {
        let error = ApiError::Store(StoreError::Corrupt("schedule.hour".into()));
        assert_eq!(error.status_code(), 500);
        assert_eq!(retry_after(&error), None);
    }
}
