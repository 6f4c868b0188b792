//! Test harness: builds the real application (as `main` does) on port 0, a WebSocket
//! client, and throw-away PostgreSQL databases.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
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
/// `RADIO24__SCHEDULE__DEFAULT` for a day without a QANDA hour, so that no caller is put
/// through unless a test asks (`take-next`).
pub const NO_QANDA: &str = "TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,\
TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,\
TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A,TOPIC_A";

pub const PATIENCE: Duration = Duration::from_secs(15);
/// How long a test waits for something the programme has to bring about first (a segment
/// to air in full, a link to come back): a few segments on the test clock, with room for a
/// busy 2-core machine. A bound on a wait, never a measure of it.
pub const PROGRAMME_PATIENCE: Duration = PATIENCE.saturating_mul(4);

/// One overall deadline for a wait of many steps (frames, events, polls), and the last
/// things the wait saw. A timeout per step alone never ends a wait whose steps keep coming
/// while what it awaits does not; and when the wait gives up, its message says what came
/// instead.
pub struct Deadline {
    what: String,
    patience: Duration,
    at: tokio::time::Instant,
    /// The last things seen, oldest first, each with how many times it came in a row.
    seen: VecDeque<(String, usize)>,
    /// How many of them the message shows.
    shown: usize,
    /// Things seen in all.
    count: usize,
}

impl Deadline {
    /// A wait for `what` (as the failure message names it) that gives up after `patience`.
    pub fn new(what: impl Into<String>, patience: Duration) -> Self {
        Self {
            what: what.into(),
            patience,
            at: tokio::time::Instant::now() + patience,
            seen: VecDeque::new(),
            shown: 20,
            count: 0,
        }
    }

    /// Shows only the last `n` things seen (a poll's values can be long).
    pub fn showing(mut self, n: usize) -> Self {
        self.shown = n.max(1);
        self
    }

    /// Notes one thing the wait saw: a frame, an event, a value polled.
    pub fn saw(&mut self, thing: impl Display) {
        let thing = thing.to_string();
        self.count += 1;
        match self.seen.back_mut() {
            Some((last, times)) if *last == thing => *times += 1,
            _ => {
                if self.seen.len() == self.shown {
                    self.seen.pop_front();
                }
                self.seen.push_back((thing, 1));
            }
        }
    }

    /// Awaits one step of the wait, or fails it (see [`Deadline::fail`]) when the deadline
    /// passes first.
    pub async fn step<F: IntoFuture>(&self, step: F) -> F::Output {
        match tokio::time::timeout_at(self.at, step).await {
            Ok(out) => out,
            Err(_) => self.fail(format!("gave up after {:?}", self.patience)),
        }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.at
    }

    /// Panics, saying what was awaited, `why` the wait stopped, and what it saw.
    pub fn fail(&self, why: impl Display) -> ! {
        if self.count == 0 {
            panic!("awaiting {}: {why}; saw nothing", self.what);
        }
        let last: Vec<String> = self
            .seen
            .iter()
            .map(|(thing, times)| match times {
                1 => format!("  {thing}"),
                n => format!("  {thing}  (x{n})"),
            })
            .collect();
        panic!(
            "awaiting {}: {why}; saw {} in all, the last (oldest first):\n{}",
            self.what,
            self.count,
            last.join("\n")
        );
    }
}

/// Calls `probe` every `every` until it gives `Ok`, within `patience` all told (the calls
/// included). Each `Err` says what the probe saw instead; the last few are in the message
/// when the wait gives up.
pub async fn poll_until<T>(
    what: &str,
    patience: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let mut deadline = Deadline::new(what, patience).showing(3);
    loop {
        match deadline.step(probe()).await {
            Ok(found) => return found,
            Err(seen) => deadline.saw(seen),
        }
        if deadline.passed() {
            deadline.fail(format!("gave up after {patience:?}"));
        }
        tokio::time::sleep(every).await;
    }
}

/// The response to `request` (its status and headers; a body may go on streaming), within
/// [`PATIENCE`].
async fn answered(
    method: &str,
    path: &str,
    request: impl Future<Output = reqwest::Result<reqwest::Response>>,
) -> reqwest::Response {
    tokio::time::timeout(PATIENCE, request)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer after {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

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
        let app = tokio::time::timeout(
            PATIENCE,
            Application::build_with(settings(&all), role, options),
        )
        .await
        .unwrap_or_else(|_| panic!("role {} not built after {PATIENCE:?}", role.as_str()))
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
        answered("GET", path, self.client.get(self.url(path)).send()).await
    }

    /// The host's `GET /now` (`path` with its query) as the bus sees it: the JSON, or why
    /// it could not be read (for `poll_until`).
    pub async fn host_now(&self, path: &str) -> Result<Value, String> {
        self.client
            .get(self.url(path))
            .bearer_auth(BUS_TOKEN)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }

    /// GET as an operator (the admin token).
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        let req = self.client.get(self.url(path)).bearer_auth(ADMIN_TOKEN);
        answered("GET", path, req.send()).await
    }

    /// `POST /v1/studio/take-next` (the default channel) as an operator.
    pub async fn take_next(&self) -> reqwest::Response {
        self.post("/v1/studio/take-next", Some(ADMIN_TOKEN), &Value::Null)
            .await
    }

    /// POST JSON with an optional bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        answered("POST", path, req.send()).await
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
        let what = format!("GET {path} answering {status}");
        poll_until(&what, PATIENCE, Duration::from_millis(50), async || {
            let resp = self
                .client
                .get(self.url(path))
                .send()
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            let got = resp.status().as_u16();
            let body = resp.json().await.unwrap_or(Value::Null);
            if got == status {
                Ok(body)
            } else {
                Err(format!("{got} {body}"))
            }
        })
        .await
    }

    pub async fn stop(&self) {
        tokio::time::timeout(PATIENCE, self.handle.stop(false))
            .await
            .unwrap_or_else(|_| panic!("{} not stopped after {PATIENCE:?}", self.address));
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
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("{url}: no handshake after {PATIENCE:?}"))
            .expect("websocket connects");
        Self { ws }
    }

    /// The next text frame as JSON, or the close, within [`PATIENCE`].
    pub async fn read(&mut self) -> WsRead {
        tokio::time::timeout(PATIENCE, self.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no frame after {PATIENCE:?}"))
    }

    /// The next text frame as JSON, or the close, however long it takes (callers bound it).
    async fn read_frame(&mut self) -> WsRead {
        loop {
            match self.ws.next().await {
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

    /// The next text frame as JSON, within `deadline`, which notes it as seen; a close
    /// fails the wait.
    pub async fn next_json_by(&mut self, deadline: &mut Deadline) -> Value {
        match deadline.step(self.read_frame()).await {
            WsRead::Json(frame) => {
                deadline.saw(frame_summary(&frame));
                frame
            }
            WsRead::Closed(close) => deadline.fail(format!("the socket closed: {close:?}")),
        }
    }

    /// Reads frames until `step` makes something of one, within [`PROGRAMME_PATIENCE`] all
    /// told; giving up, it names `what` it awaited and the last frames that came instead.
    pub async fn scan<T>(&mut self, what: &str, mut step: impl FnMut(&Value) -> Option<T>) -> T {
        let mut deadline = Deadline::new(what, PROGRAMME_PATIENCE);
        loop {
            let frame = self.next_json_by(&mut deadline).await;
            if let Some(found) = step(&frame) {
                return found;
            }
        }
    }

    /// Skips frames until one of `type` satisfying `pred` arrives (see [`WsClient::scan`]).
    pub async fn wait_for(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.scan(&format!("a {kind} frame"), |frame| {
            (frame["type"] == kind && pred(frame)).then(|| frame.clone())
        })
        .await
    }
}

/// A frame as a failure message lists it: its type, the segment it is about, its error
/// code or text.
fn frame_summary(frame: &Value) -> String {
    let mut summary = frame["type"].as_str().unwrap_or("(no type)").to_owned();
    if let Some(id) = frame["segment_id"]
        .as_str()
        .or_else(|| frame["segment"]["id"].as_str())
    {
        summary = format!("{summary} {id}");
    }
    if let Some(error) = frame["error"].as_str() {
        summary = format!("{summary} {error}");
    }
    if let Some(text) = frame["text"].as_str() {
        summary = format!("{summary} {text:?}");
    }
    if frame["resync"] == true {
        summary.push_str(" (resync)");
    }
    summary
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
        let connected =
            match tokio::time::timeout(PATIENCE, AsyncPgConnection::establish(&admin)).await {
                Ok(connected) => connected.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer after {PATIENCE:?}")),
            };
        let mut conn = match connected {
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
        // CREATE DATABASE copies the template, and concurrent ones wait for each other: with
        // many tests starting at once on a busy 2-core machine it took over 15 s in CI. It
        // is the test's setup, not what it measures, so it gets the programme's patience.
        tokio::time::timeout(
            PROGRAMME_PATIENCE,
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("CREATE DATABASE {name}: no answer after {PROGRAMME_PATIENCE:?}")
        })
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
            // A server that stops answering leaves the database behind, not the test hanging.
            // The timeout is made inside the runtime: made outside, it has no timer to
            // register with and panics, and the database was left behind.
            let dropped = rt.block_on(async {
                tokio::time::timeout(PATIENCE, async {
                    if let Ok(mut conn) = AsyncPgConnection::establish(&admin).await {
                        let _ = diesel::sql_query(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        ))
                        .execute(&mut conn)
                        .await;
                    }
                })
                .await
            });
            if dropped.is_err() {
                eprintln!("test database {name} left behind: no answer after {PATIENCE:?}");
            }
        })
        .join();
    }
}
