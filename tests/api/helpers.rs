//! Test harness: builds the real application (as `main` does) on port 0, a WebSocket
//! client, and throw-away PostgreSQL databases.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{SinkExt, StreamExt};
use radio24::cli::Role;
use radio24::config::Settings;
use radio24::host::clock::Clock;
use radio24::startup::{Application, BuildOptions};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const BUS_TOKEN: &str = "test-bus-token";
/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Settings as a test run uses them: shipped files plus `overrides` (env var names).
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    radio24::install_crypto_provider();
    let mut env: HashMap<String, String> = [
        ("RADIO24__SERVER__PORT", "0"),
        ("RADIO24__SERVER__WORKERS", "2"),
        ("RADIO24__SERVER__SHUTDOWN_TIMEOUT_SECS", "1"),
        ("RADIO24__AUTH__ADMIN_TOKEN", ADMIN_TOKEN),
        ("RADIO24__BUS__TOKEN", BUS_TOKEN),
        ("RADIO24__BUS__RECONNECT_MAX_MS", "300"),
        // The programme runs 20 times faster than real time, captions only (no voice), so a
        // talk segment airs in a second or two and tests never wait long for their turn.
        ("RADIO24__HOST__CLOCK_SPEED", "20"),
        ("RADIO24__VOICE__BACKEND", "none"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::load(&config_dir(), &env).expect("test settings load")
}

/// A running server of one role.
pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub handle: actix_web::dev::ServerHandle,
    pub client: reqwest::Client,
    _data: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Starts `role` with a fresh SQLite file (unless `overrides` names a database).
    pub async fn spawn(role: Role, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_with(role, overrides, BuildOptions::default()).await
    }

    /// Starts `role` as [`TestApp::spawn`] does, with the host running on `clock` (e.g. a
    /// virtual clock set just before the top of an hour).
    pub async fn spawn_on_clock(
        role: Role,
        overrides: &[(&str, &str)],
        clock: Arc<dyn Clock>,
    ) -> Self {
        let options = BuildOptions {
            host_clock: Some(clock),
        };
        Self::spawn_with(role, overrides, options).await
    }

    async fn spawn_with(role: Role, overrides: &[(&str, &str)], options: BuildOptions) -> Self {
        let (app, data) = Self::build_with(role, overrides, options).await;
        Self::run(app, Some(data))
    }

    /// Builds `role` as [`TestApp::spawn`] does, without running it yet (to take its engine).
    pub async fn build(role: Role, overrides: &[(&str, &str)]) -> (Application, tempfile::TempDir) {
        Self::build_with(role, overrides, BuildOptions::default()).await
    }

    async fn build_with(
        role: Role,
        overrides: &[(&str, &str)],
        options: BuildOptions,
    ) -> (Application, tempfile::TempDir) {
        let data = tempfile::tempdir().expect("tempdir");
        let db = data.path().join("radio24.db");
        let token_file = data.path().join("admin-token");
        let mut all: Vec<(&str, &str)> = vec![
            ("RADIO24__DATABASE__SQLITE_PATH", db.to_str().unwrap()),
            (
                "RADIO24__AUTH__ADMIN_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
        ];
        all.extend_from_slice(overrides);
        let app = Application::build_with(settings(&all), role, options)
            .await
            .expect("application builds");
        (app, data)
    }

    pub fn run(app: Application, data: Option<tempfile::TempDir>) -> Self {
        let port = app.port();
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self {
            port,
            address: format!("http://127.0.0.1:{port}"),
            handle,
            client: reqwest::Client::new(),
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// POST JSON with an optional bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("POST")
    }

    pub async fn speak(&self, text: &str) -> reqwest::Response {
        self.post(
            "/v1/studio/speak",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "text": text }),
        )
        .await
    }

    /// Waits until `GET path` answers `status`.
    pub async fn wait_for_status(&self, path: &str, status: u16) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(resp) = self.client.get(self.url(path)).send().await
                && resp.status().as_u16() == status
            {
                return resp.json().await.unwrap_or(Value::Null);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    pub async fn broadcast(&self, channel: &str) -> WsClient {
        WsClient::connect(&format!(
            "ws://127.0.0.1:{}/ws/broadcast?channel={channel}",
            self.port
        ))
        .await
    }
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `/ws/broadcast` client.
pub struct WsClient {
    pub ws: WsStream,
}

/// What a read from the socket gave.
#[derive(Debug)]
pub enum WsRead {
    Json(Value),
    Closed(Option<(u16, String)>),
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Self { ws }
    }

    /// The next text frame as JSON, or the close.
    pub async fn read(&mut self) -> WsRead {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time");
            match msg {
                Some(Ok(Message::Text(text))) => {
                    return WsRead::Json(serde_json::from_str(&text).expect("frames are JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsRead::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    );
                }
                Some(Ok(Message::Ping(p))) => {
                    let _ = self.ws.send(Message::Pong(p)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return WsRead::Closed(None),
            }
        }
    }

    pub async fn next_json(&mut self) -> Value {
        match self.read().await {
            WsRead::Json(v) => v,
            WsRead::Closed(c) => panic!("socket closed: {c:?}"),
        }
    }

    /// Skips frames until one of `type` satisfying `pred` arrives.
    pub async fn wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame["type"] == kind && pred(&frame) {
                return frame;
            }
        }
    }
}

/// Admin URL of the test PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("RADIO24_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A throw-away PostgreSQL database, dropped when this is dropped (even after a panic).
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Creates an empty database. Without a reachable server the test fails, unless
    /// `RADIO24_SKIP_POSTGRES=1`, which returns `None` (and says so).
    pub async fn create() -> Option<Self> {
        let admin = postgres_admin_url();
        let mut conn = match AsyncPgConnection::establish(&admin).await {
            Ok(c) => c,
            Err(e) if std::env::var("RADIO24_SKIP_POSTGRES").is_ok_and(|v| v == "1") => {
                eprintln!("SKIPPED: PostgreSQL unreachable ({e}) and RADIO24_SKIP_POSTGRES=1");
                return None;
            }
            Err(e) => panic!(
                "PostgreSQL tests need a server at RADIO24_TEST_DATABASE_URL ({admin}): {e}. \
                 Start one (see README), or set RADIO24_SKIP_POSTGRES=1 to skip them."
            ),
        };
        let name = format!("radio24_test_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join();
    }
}
