//! Logging: `RUST_LOG` filters (default `info`); `RADIO24_LOG_FORMAT=json` writes one JSON
//! object a line (for Cloud Logging and the like), otherwise human-readable text.
//! Secrets and listener audio are never recorded: secrets are `SecretString`s, and request
//! spans ([`RequestSpan`]) carry method, route, path and status only: no query string (where
//! a client may put a token), no headers.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: info, but the LiveKit signalling client's own connection lines only
/// when they are errors (the host's publisher logs each attempt and its outcome itself), and
/// webrtc-rs's only when they are warnings.
const DEFAULT_FILTER: &str =
    "info,actix_server=warn,livekit_signaling=error,webrtc=warn,webrtc_ice=warn";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The span of each HTTP request: method, route, path (never the query string, where a
/// client may have put a token), and on its end the status and, for errors, what failed.
/// Used as `TracingLogger::<RequestSpan>::new()`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %request.path(),
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{} {route}", request.method()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    /// Records the outcome on the span and logs a failed request once: a client's mistake
    /// (4xx) at INFO, a failure of ours (5xx) at WARN. Where a 5xx has a cause worth an
    /// ERROR (a query that failed, a bug), the error that made it logs that itself.
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let failure = match outcome {
            Ok(response) => response
                .response()
                .error()
                .map(|e| (response.status(), e.to_string())),
            Err(e) => Some((e.as_response_error().status_code(), e.to_string())),
        };
        if let Some((status, error)) = failure {
            // At most 200 characters of it: an error may quote what the client sent.
            let error: String = error.chars().take(200).collect();
            span.in_scope(|| {
                if status.is_server_error() {
                    tracing::warn!(status = status.as_u16(), %error, "request failed");
                } else {
                    tracing::info!(status = status.as_u16(), %error, "request refused");
                }
            });
        }
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `work` logs, as text.
    fn logged(work: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn request_logs_carry_the_path_but_never_the_query_string() {
        let log = logged(|| {
            let request = actix_web::test::TestRequest::get()
                .uri("/v1/channels/radio24/stream?token=s3cret&x=1")
                .to_srv_request();
            let span = RequestSpan::on_request_start(&request);
            span.in_scope(|| tracing::warn!("something in the request"));
        });
        assert!(log.contains("/v1/channels/radio24/stream"), "{log}");
        assert!(log.contains("something in the request"), "{log}");
        assert!(!log.contains("s3cret"), "{log}");
        assert!(!log.contains('?'), "{log}");
    }

    /// What the log says for a request that ended with `error`.
    fn log_of_failure(error: actix_web::Error) -> String {
        logged(|| {
            let request = actix_web::test::TestRequest::post()
                .uri("/v1/room/join")
                .to_srv_request();
            let span = RequestSpan::on_request_start(&request);
            let outcome: Result<ServiceResponse, Error> = Err(error);
            RequestSpan::on_request_end(span, &outcome);
        })
    }

    #[test]
    fn a_failed_request_is_logged_once_at_a_level_that_says_whose_fault() {
        let client_error = actix_web::error::ErrorBadRequest("the body is not JSON");
        let log = log_of_failure(client_error);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains(" INFO ") && log.contains("status=400"),
            "{log}"
        );
        assert!(log.contains("the body is not JSON"), "{log}");

        let unavailable = actix_web::error::ErrorServiceUnavailable("the host is down");
        let log = log_of_failure(unavailable);
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains(" WARN ") && log.contains("status=503"),
            "{log}"
        );

        // What a client sent, quoted in an error, is cut to 200 characters.
        let long = actix_web::error::ErrorBadRequest("x".repeat(5_000));
        let log = log_of_failure(long);
        assert!(log.len() < 1_000, "{} bytes logged", log.len());
    }
}
