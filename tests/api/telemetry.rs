//! The real binary's telemetry: traces exported over OTLP/HTTP to a receiver on loopback make
//! one trace of a studio request across `--role api` and `--role host`; JSON logs carry
//! Cloud Logging's `severity` and no client's token.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{BUS_TOKEN, PATIENCE, config_dir, poll_until};

/// A port free a moment ago, for a process to take.
fn free_port() -> u16 {
    // This test's own HTTP clients need it.
    radio24::install_crypto_provider();
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `radio24 serve --role ROLE` as a process of its own, its log in `log`; killed on drop
/// unless it was stopped.
struct Radio24 {
    child: tokio::process::Child,
    log: std::path::PathBuf,
}

impl Radio24 {
    fn start(role: &str, env: &[(&str, &str)], log: &Path) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_radio24"));
        command
            .args(["serve", "--role", role, "--config-dir"])
            .arg(config_dir())
            // Whatever the machine has set, only what the test says applies.
            .env_remove("DATABASE_URL")
            .env_remove("POSTGRES_HOST")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_RESOURCE_ATTRIBUTES")
            .env_remove("RADIO24_LOG_FORMAT")
            .env("RADIO24__SERVER__WORKERS", "2")
            .env("RADIO24__SERVER__SHUTDOWN_TIMEOUT_SECS", "1")
            .env("RADIO24__BUS__TOKEN", BUS_TOKEN)
            .env("RADIO24__HOST__CLOCK_SPEED", "20")
            .env("RADIO24__VOICE__BACKEND", "none")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .kill_on_drop(true);
        Self {
            child: command.spawn().expect("the radio24 binary starts"),
            log: log.to_owned(),
        }
    }

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as a platform stops it; waits for it to exit.
    async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "still running {PATIENCE:?} after SIGTERM; it logged:\n{}",
                    self.log()
                )
            })
            .unwrap();
        assert!(
            status.success(),
            "exit {status}; it logged:\n{}",
            self.log()
        );
        self.log()
    }
}

/// Waits until `GET url` answers 200.
async fn wait_ready(url: &str, process: &Radio24) {
    let client = reqwest::Client::new();
    let what = format!("GET {url} answering 200");
    let log = || process.log();
    poll_until(
        &what,
        PATIENCE,
        Duration::from_millis(100),
        async || match client.get(url).send().await {
            Ok(resp) if resp.status() == 200 => Ok(()),
            Ok(resp) => Err(format!("{}; log: {}", resp.status(), log())),
            Err(e) => Err(format!("{e}; log: {}", log())),
        },
    )
    .await
}

/// One exported span, with the service that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

/// Every span the receiver got.
async fn exported(receiver: &MockServer) -> Vec<Exported> {
    let mut spans = Vec::new();
    for request in receiver.received_requests().await.unwrap_or_default() {
        let batch = ExportTraceServiceRequest::decode(request.body.as_slice())
            .expect("an OTLP/HTTP protobuf body");
        for resource_spans in batch.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Exported {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_studio_request_is_one_trace_across_the_api_and_the_host() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let endpoint = receiver.uri();
    let dir = tempfile::tempdir().unwrap();
    let (host_port, api_port) = (free_port().to_string(), free_port().to_string());
    let host = Radio24::start(
        "host",
        &[
            ("RADIO24__SERVER__PORT", &host_port),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        &dir.path().join("host.log"),
    );
    let host_url = format!("http://127.0.0.1:{host_port}");
    let db = dir.path().join("radio24.db");
    let token_file = dir.path().join("admin-token");
    let api = Radio24::start(
        "api",
        &[
            ("RADIO24__SERVER__PORT", &api_port),
            ("RADIO24__BUS__HOST_URL", &host_url),
            ("RADIO24__DATABASE__SQLITE_PATH", db.to_str().unwrap()),
            ("RADIO24__AUTH__ADMIN_TOKEN", "trace-admin"),
            (
                "RADIO24__AUTH__ADMIN_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
        &dir.path().join("api.log"),
    );
    let api_url = format!("http://127.0.0.1:{api_port}");
    wait_ready(&format!("{api_url}/ready"), &api).await;

    let script = tokio::time::timeout(
        PATIENCE,
        reqwest::Client::new()
            .post(format!("{api_url}/v1/studio/script"))
            .bearer_auth("trace-admin")
            .json(&json!({"block": "OP"}))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(script.status(), 200);

    // Stopped as a platform stops them: each exports what it still holds before it exits.
    api.terminate().await;
    host.terminate().await;

    let (api_request, host_request, spans) = poll_until(
        "the studio request's spans from both roles",
        PATIENCE,
        Duration::from_millis(200),
        async || {
            let spans = exported(&receiver).await;
            let find = |service: &str, name: &str| {
                spans
                    .iter()
                    .find(|s| s.service == service && s.name == name)
                    .cloned()
            };
            match (
                find("radio24-api", "POST /v1/studio/script"),
                find("radio24-host", "POST /script/generate"),
            ) {
                (Some(api), Some(host)) => Ok((api, host, spans)),
                _ => Err(format!(
                    "{:?}",
                    spans
                        .iter()
                        .map(|s| format!("{} {}", s.service, s.name))
                        .collect::<Vec<_>>()
                )),
            }
        },
    )
    .await;
    assert_eq!(
        host_request.trace_id, api_request.trace_id,
        "the host's handling is in the API request's trace"
    );
    let api_spans: HashSet<&[u8]> = spans
        .iter()
        .filter(|s| s.service == "radio24-api" && s.trace_id == api_request.trace_id)
        .map(|s| s.span_id.as_slice())
        .collect();
    assert!(
        api_spans.contains(host_request.parent_span_id.as_slice()),
        "the host's bus span's parent is a span of the API: {host_request:?} in {spans:?}"
    );
    // The API's request span is the trace's root.
    assert!(api_request.parent_span_id.is_empty(), "{api_request:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_a_severity_and_no_client_token() {
    const ADMIN: &str = "adm1n-t0ken-in-a-header";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let db = dir.path().join("radio24.db");
    let token_file = dir.path().join("admin-token");
    let station = Radio24::start(
        "all",
        &[
            ("RADIO24__SERVER__PORT", &port),
            ("RADIO24__DATABASE__SQLITE_PATH", db.to_str().unwrap()),
            ("RADIO24__AUTH__ADMIN_TOKEN", ADMIN),
            (
                "RADIO24__AUTH__ADMIN_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
            ("RADIO24_LOG_FORMAT", "json"),
            // Our own code at debug: nothing there may log a token either.
            ("RUST_LOG", "info,radio24=debug"),
        ],
        &dir.path().join("station.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/ready"), &station).await;
    let client = reqwest::Client::new();
    let send = async |request: reqwest::RequestBuilder| {
        tokio::time::timeout(PATIENCE, request.send())
            .await
            .unwrap()
            .unwrap()
    };

    // Tokens in headers, right and wrong; in query strings; in bodies.
    let mut secrets = vec![ADMIN.to_owned()];
    let spoken = send(
        client
            .post(format!("{base}/v1/studio/speak"))
            .bearer_auth(ADMIN)
            .json(&json!({"text": "Logged without tokens."})),
    )
    .await;
    assert_eq!(spoken.status(), 202);
    let wrong = "wr0ng-admin-t0ken";
    secrets.push(wrong.into());
    let refused = send(
        client
            .post(format!("{base}/v1/studio/speak"))
            .bearer_auth(wrong)
            .json(&json!({"text": "no"})),
    )
    .await;
    assert_eq!(refused.status(), 401);
    for (i, path) in [
        "/v1/channels/radio24/stream",
        "/v1/queue",
        "/ws/broadcast",
        "/v1/nowhere",
    ]
    .iter()
    .enumerate()
    {
        let in_query = format!("qu3ry-t0ken-{i}");
        let in_header = format!("h3ader-t0ken-{i}");
        // Whatever each answers (refused, or a stream dropped at once).
        drop(
            send(
                client
                    .get(format!("{base}{path}?channel=radio24&token={in_query}"))
                    .bearer_auth(&in_header),
            )
            .await,
        );
        secrets.extend([in_query, in_header]);
    }
    // A typed call-in, then another as the same caller: their caller token is a secret.
    let first: Value = send(
        client
            .post(format!("{base}/v1/queue"))
            .json(&json!({"text": "hello"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let (user_id, caller_token) = (
        first["user_id"].as_str().unwrap().to_owned(),
        first["caller_token"].as_str().unwrap().to_owned(),
    );
    secrets.push(caller_token.clone());
    let again = send(client.post(format!("{base}/v1/queue")).json(&json!({
        "text": "hello again", "user_id": user_id, "caller_token": caller_token,
    })))
    .await;
    assert_eq!(again.status(), 201);
    let forged = "f0rged-caller-t0ken";
    secrets.push(forged.into());
    let bad_body = send(client.post(format!("{base}/v1/queue")).json(&json!({
        "text": ["not text"], "user_id": user_id, "caller_token": forged,
    })))
    .await;
    assert_eq!(bad_body.status(), 400);
    // The push-to-talk socket: the caller token in its hello.
    let (mut ptt, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/ptt?channel=radio24")),
    )
    .await
    .unwrap()
    .unwrap();
    let hello = json!({"type": "hello", "user_id": user_id, "caller_token": caller_token});
    ptt.send(Message::text(hello.to_string())).await.unwrap();
    let ready = tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = ptt.next().await {
            if let Message::Text(text) = frame.unwrap() {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "ready" {
                    return frame;
                }
            }
        }
        panic!("the socket closed before ready");
    })
    .await
    .expect("ready in time");
    assert_eq!(ready["user_id"], user_id.as_str());
    let _ = ptt.close(None).await;

    let log = station.terminate().await;
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let severities: HashMap<&str, usize> = lines.iter().fold(HashMap::new(), |mut seen, l| {
        let severity = l["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("no severity: {l}"));
        assert!(
            ["DEBUG", "INFO", "WARNING", "ERROR"].contains(&severity),
            "{severity}: {l}"
        );
        *seen.entry(severity).or_default() += 1;
        seen
    });
    assert!(severities.contains_key("INFO"), "{severities:?}");
    // The request logs are there: the call-in with a bad body, with its path, says why.
    let refusal = lines
        .iter()
        .find(|l| l["message"] == "request refused" && l["spans"][0]["http.target"] == "/v1/queue")
        .unwrap_or_else(|| panic!("no refused call-in logged:\n{log}"));
    assert_eq!(refusal["status"], 400, "{refusal}");
    assert_eq!(refusal["severity"], "INFO", "{refusal}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} is in the log:\n{log}"
        );
    }
    assert!(
        !log.contains("token="),
        "a query string is in the log:\n{log}"
    );
}
