//! Logging and traces.
//!
//! - Logs: `RUST_LOG` filters (default `info`); `RADIO24_LOG_FORMAT=json` writes one JSON
//!   object a line with Cloud Logging's `severity` (`DEBUG`, `INFO`, `WARNING`, `ERROR`),
//!   `message`, `timestamp`, `target`, the event's fields and its spans ([`CloudJson`]);
//!   otherwise human-readable text.
//! - Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//!   set, spans go over OTLP/HTTP (protobuf) to it, as service `OTEL_SERVICE_NAME`, else
//!   `radio24-<role>`; W3C `traceparent`/`tracestate` are read from incoming requests
//!   ([`RequestSpan`]) and written on the bus client's requests ([`trace_headers`]), so a
//!   studio request is one trace across the API and the host. The standard `OTEL_*`
//!   variables of the exporter and the SDK apply (`OTEL_EXPORTER_OTLP_HEADERS`,
//!   `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, …). Without the endpoint nothing is
//!   exported and no header is read or written.
//!
//! Secrets and listener audio are never recorded: secrets are `SecretString`s, and request
//! spans ([`RequestSpan`]) carry method, route, path and status only: no query string (where
//! a client may put a token), no headers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Span, Subscriber};
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Without `RUST_LOG`: info, but the LiveKit signalling client's own connection lines only
/// when they are errors (the host's publisher logs each attempt and its outcome itself), and
/// webrtc-rs's only when they are warnings.
const DEFAULT_FILTER: &str =
    "info,actix_server=warn,livekit_signaling=error,webrtc=warn,webrtc_ice=warn";

/// What goes into traces, whatever `RUST_LOG` says: our spans at info, and never the
/// exporter's own HTTP stack (its spans would be exported in turn, for ever).
const TRACE_FILTER: &str = "info,actix_server=warn,livekit_signaling=error,webrtc=warn,\
    webrtc_ice=warn,h2=off,hyper=off,hyper_util=off,reqwest=off,opentelemetry=off,\
    opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry_http=off";

/// Whether spans are exported (then trace context is read and written on HTTP).
static TRACING: AtomicBool = AtomicBool::new(false);

/// What [`init`] started; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "call shutdown() before the process exits, or the last spans are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Call it outside the async
    /// runtime (the exporter's HTTP client blocks).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}

/// Installs the global subscriber: logs (JSON when `json`) and, when `traced` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, traces of service `OTEL_SERVICE_NAME`, else
/// `radio24-<role>`. Safe to call more than once (later calls install nothing).
pub fn init(json: bool, role: &str, traced: bool) -> Telemetry {
    let env: HashMap<String, String> = if traced {
        std::env::vars().collect()
    } else {
        HashMap::new()
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![log_layer(json, std::io::stderr).with_filter(filter).boxed()];
    let (tracer, trouble) = match otlp_endpoint(&env) {
        None => (None, None),
        Some(_) => match tracer_provider(&service_name(&env, role)) {
            Ok(provider) => {
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("radio24"))
                    .with_filter(EnvFilter::new(TRACE_FILTER));
                layers.push(layer.boxed());
                (Some(provider), None)
            }
            Err(e) => (None, Some(e)),
        },
    };
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        // Someone installed a subscriber first (a second call, a test): leave it.
        return Telemetry { tracer: None };
    }
    if let Some(e) = trouble {
        tracing::warn!(error = %e, "OTEL_EXPORTER_OTLP_ENDPOINT is set but no trace exporter could be built; no traces");
    }
    if tracer.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        TRACING.store(true, Ordering::Relaxed);
        tracing::info!(service = %service_name(&env, role), "exporting traces over OTLP");
    }
    Telemetry { tracer }
}

/// The log layer: [`CloudJson`] lines, or text, written to `writer`.
fn log_layer<S, W>(json: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(CloudJson)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(writer).boxed()
    }
}

/// Where traces go, if anywhere: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, when set and not empty.
fn otlp_endpoint(env: &HashMap<String, String>) -> Option<&str> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|var| env.get(*var).map(|v| v.trim()).filter(|v| !v.is_empty()))
}

/// `OTEL_SERVICE_NAME`, else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else
/// `radio24-<role>`.
fn service_name(env: &HashMap<String, String>, role: &str) -> String {
    if let Some(name) = env
        .get("OTEL_SERVICE_NAME")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        return name.to_owned();
    }
    env.get("OTEL_RESOURCE_ATTRIBUTES")
        .and_then(|attrs| {
            attrs.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key.trim() == "service.name" && !value.trim().is_empty())
                    .then(|| value.trim().to_owned())
            })
        })
        .unwrap_or_else(|| format!("radio24-{role}"))
}

/// A tracer provider exporting in batches over OTLP/HTTP with protobuf bodies (the
/// endpoint, headers and timeout from the standard `OTEL_EXPORTER_OTLP_*` variables).
fn tracer_provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build())
}

/// The W3C trace context (`traceparent`, `tracestate`) of the current span, as headers for
/// an outgoing request; empty when traces are off.
pub fn trace_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if TRACING.load(Ordering::Relaxed) {
        let context = Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
        });
    }
    headers
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace context a request carries (`traceparent`), when traces
/// are on and it carries one.
fn continue_trace(span: &Span, headers: &actix_web::http::header::HeaderMap) {
    if !TRACING.load(Ordering::Relaxed) || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when the span is not traced (filtered out): then there is nothing to join.
    let _ = span.set_parent(parent);
}

/// Cloud Logging's name for a level.
fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARNING",
        tracing::Level::INFO => "INFO",
        tracing::Level::DEBUG | tracing::Level::TRACE => "DEBUG",
    }
}

/// One JSON object a line, as Cloud Logging reads it: `timestamp` (RFC 3339, UTC),
/// `severity`, `message`, the event's other fields, `target`, and `spans` (the spans the
/// event is in, outermost first, each its `name` and fields).
pub struct CloudJson;

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("severity".into(), severity(meta.level()).into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        if let Some(message) = fields.fields.remove("message") {
            line.insert("message".into(), message);
        }
        line.extend(fields.fields);
        // Events from the `log` crate carry their real target as a field.
        let target = fields
            .log_target
            .unwrap_or_else(|| meta.target().to_owned());
        line.insert("target".into(), target.into());
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut fields = span
                        .extensions()
                        .get::<FormattedFields<N>>()
                        .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                        .unwrap_or_default();
                    fields.insert("name".into(), span.name().into());
                    Value::Object(fields)
                })
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), spans.into());
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
#[derive(Default)]
struct JsonVisitor {
    fields: Map<String, Value>,
    log_target: Option<String>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        match field.name() {
            "log.target" => self.log_target = value.as_str().map(str::to_owned),
            name if name.starts_with("log.") => {}
            name => {
                self.fields.insert(name.to_owned(), value);
            }
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// The span of each HTTP request: method, route, path (never the query string, where a
/// client may have put a token), and on its end the status and, for errors, what failed.
/// Used as `TracingLogger::<RequestSpan>::new()`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request.match_pattern().unwrap_or_else(|| "default".into());
        let span = tracing::info_span!(
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
        );
        continue_trace(&span, request.headers());
        span
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

/// Log capture for unit tests anywhere in the crate.
#[cfg(test)]
pub(crate) mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use crate::sync::lock;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&lock(&self.0)).into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `work` returns, and what it logs on this thread as plain text.
    pub(crate) fn logged<T>(work: impl FnOnce() -> T) -> (T, String) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, work);
        (out, captured.text())
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::capture::Captured;
    use super::*;

    /// What `work` logs, as text.
    fn logged(work: impl FnOnce()) -> String {
        super::capture::logged(work).1
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

    /// What `work` logs as JSON lines, through the layer [`init`] installs.
    fn logged_json(work: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(true, move || writer.clone()).with_filter(EnvFilter::new("debug")));
        tracing::subscriber::with_default(subscriber, work);
        captured
            .text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn json_lines_carry_cloud_loggings_severity_message_time_target_and_spans() {
        let lines = logged_json(|| {
            let span = tracing::info_span!("bus call", channel = "radio24", attempt = 2);
            span.in_scope(|| {
                tracing::debug!(n = 1, "at debug");
                tracing::info!(ok = true, "at info");
                tracing::warn!(error = "slow", "at warn");
                tracing::error!("at error");
            });
        });
        let severities: Vec<&str> = lines
            .iter()
            .map(|l| l["severity"].as_str().unwrap())
            .collect();
        assert_eq!(
            severities,
            ["DEBUG", "INFO", "WARNING", "ERROR"],
            "{lines:?}"
        );
        let warn = &lines[2];
        assert_eq!(warn["message"], "at warn");
        assert_eq!(warn["error"], "slow");
        assert_eq!(warn["target"], module_path!());
        let at = warn["timestamp"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        assert!(
            (chrono::Utc::now() - at.to_utc()).num_minutes().abs() < 60,
            "{at}"
        );
        assert_eq!(
            warn["spans"],
            serde_json::json!([{"name": "bus call", "channel": "radio24", "attempt": 2}])
        );
        assert_eq!(lines[0]["n"], 1);
        assert_eq!(lines[1]["ok"], true);
        assert!(lines.iter().all(|l| l.get("level").is_none()), "{lines:?}");
    }

    #[test]
    fn a_request_span_in_json_has_the_path_and_no_query_string() {
        let lines = logged_json(|| {
            let request = actix_web::test::TestRequest::get()
                .uri("/v1/channels/radio24/stream?token=s3cret")
                .to_srv_request();
            let span = RequestSpan::on_request_start(&request);
            span.in_scope(|| tracing::warn!("inside"));
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["severity"], "WARNING");
        assert_eq!(
            lines[0]["spans"][0]["http.target"],
            "/v1/channels/radio24/stream"
        );
        assert!(!lines[0].to_string().contains("s3cret"), "{lines:?}");
    }

    #[test]
    fn traces_are_exported_only_with_an_endpoint_and_named_after_the_role() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(otlp_endpoint(&env(&[])), None);
        assert_eq!(
            otlp_endpoint(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            None
        );
        assert_eq!(
            otlp_endpoint(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])),
            Some("http://c:4318")
        );
        assert_eq!(service_name(&env(&[]), "api"), "radio24-api");
        assert_eq!(
            service_name(&env(&[("OTEL_SERVICE_NAME", "station-host")]), "host"),
            "station-host"
        );
        assert_eq!(
            service_name(
                &env(&[(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod,service.name=r24"
                )]),
                "host"
            ),
            "r24"
        );
        // Without the exporter, no trace context goes out.
        assert!(trace_headers().is_empty());
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
