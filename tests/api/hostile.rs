//! Hostile input on every socket and route, driven by one table of the routes the binary
//! serves ([`ROUTES`]). A test reads the route table out of the source and fails when a
//! route is missing from it, so a new route is attacked (and its token checked) as soon as
//! it is added. Each WebSocket attack runs against every socket in the table; after each,
//! bystanders (a listener, a queued call-in) must be as they were.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use radio24::cli::Role;

use crate::helpers::{ADMIN_TOKEN, BUS_TOKEN, Deadline, NO_QANDA, PATIENCE, TestApp, poll_until};
use crate::raw_ws::{RawWs, frame, header};

/// Who may use a method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone.
    Public,
    /// `Authorization: Bearer <auth.admin_token>`.
    Admin,
    /// `Authorization: Bearer <bus.token>` (the host's bus routes).
    Bus,
}

/// One route as the source declares it, and how the tests reach it.
struct Route {
    /// The source file that declares it.
    file: &'static str,
    /// Its path as written there (inside its scope, if any).
    pattern: &'static str,
    /// Its methods as written there (the `Allow` of a 405).
    allow: &'static str,
    /// A concrete path reaching it (scope included).
    path: &'static str,
    /// The role that serves it.
    role: Role,
    /// Each method it answers and who may use it.
    methods: &'static [(&'static str, Access)],
    /// The method that reads a JSON body, and the most bytes it takes.
    body: Option<(&'static str, usize)>,
    /// A WebSocket (attacked by the socket tests).
    socket: bool,
}

const API_ROUTES: &str = "src/api/routes/mod.rs";
const BUS_ROUTES: &str = "src/bus/http_server.rs";
const HOST_ROUTES: &str = "src/startup.rs";
const METRICS_ROUTES: &str = "src/metrics.rs";
const WEB_APP_ROUTES: &str = "src/api/web_app.rs";

/// Largest JSON body of most routes (`web::MAX_JSON_BYTES`).
const JSON_LIMIT: usize = radio24::web::MAX_JSON_BYTES;

/// Every route of every role. `route_table_is_complete` keeps it in step with the source.
const ROUTES: &[Route] = &[
    Route {
        file: API_ROUTES,
        pattern: "/health",
        allow: "GET, HEAD",
        path: "/health",
        role: Role::All,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/openapi.json",
        allow: "GET",
        path: "/openapi.json",
        role: Role::All,
        methods: &[("GET", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/ready",
        allow: "GET, HEAD",
        path: "/ready",
        role: Role::All,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/ws/broadcast",
        allow: "GET",
        path: "/ws/broadcast?channel=radio24",
        role: Role::All,
        methods: &[("GET", Access::Public)],
        body: None,
        socket: true,
    },
    Route {
        file: API_ROUTES,
        pattern: "/ws/ptt",
        allow: "GET",
        path: "/ws/ptt?channel=radio24",
        role: Role::All,
        methods: &[("GET", Access::Public)],
        body: None,
        socket: true,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/queue",
        allow: "GET, POST",
        path: "/v1/queue",
        role: Role::All,
        methods: &[("GET", Access::Admin), ("POST", Access::Public)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/queue/{id}/audio",
        allow: "GET",
        path: "/v1/queue/00000000-0000-4000-8000-000000000000/audio",
        role: Role::All,
        methods: &[("GET", Access::Admin)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/queue/{id}",
        allow: "PATCH",
        path: "/v1/queue/00000000-0000-4000-8000-000000000000",
        role: Role::All,
        methods: &[("PATCH", Access::Admin)],
        body: Some(("PATCH", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/room/join",
        allow: "POST",
        path: "/v1/room/join",
        role: Role::All,
        methods: &[("POST", Access::Public)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels",
        allow: "GET",
        path: "/v1/channels",
        role: Role::All,
        methods: &[("GET", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels/{name}/schedule",
        allow: "GET, PUT",
        path: "/v1/channels/radio24/schedule",
        role: Role::All,
        methods: &[("GET", Access::Public), ("PUT", Access::Admin)],
        body: Some(("PUT", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels/{name}/schedule/{hour}",
        allow: "PATCH",
        path: "/v1/channels/radio24/schedule/9",
        role: Role::All,
        methods: &[("PATCH", Access::Admin)],
        body: Some(("PATCH", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels/{name}/stream",
        allow: "GET, HEAD",
        path: "/v1/channels/radio24/stream",
        role: Role::All,
        methods: &[("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels/{name}/archive",
        allow: "GET",
        path: "/v1/channels/radio24/archive",
        role: Role::All,
        methods: &[("GET", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/v1/channels/{name}/archive/{file}",
        allow: "GET, HEAD",
        path: "/v1/channels/radio24/archive/2026-11-28T09.ogg",
        role: Role::All,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/speak",
        allow: "POST",
        path: "/v1/studio/speak",
        role: Role::All,
        methods: &[("POST", Access::Admin)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/script",
        allow: "POST",
        path: "/v1/studio/script",
        role: Role::All,
        methods: &[("POST", Access::Admin)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/take-next",
        allow: "POST",
        path: "/v1/studio/take-next",
        role: Role::All,
        methods: &[("POST", Access::Admin)],
        body: None,
        socket: false,
    },
    Route {
        file: API_ROUTES,
        pattern: "/health",
        allow: "GET",
        path: "/v1/studio/health",
        role: Role::All,
        methods: &[("GET", Access::Admin)],
        body: None,
        socket: false,
    },
    Route {
        file: METRICS_ROUTES,
        pattern: "/metrics",
        allow: "GET, HEAD",
        path: "/metrics",
        role: Role::All,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: WEB_APP_ROUTES,
        pattern: "/",
        allow: "GET, HEAD",
        path: "/",
        role: Role::All,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/script/generate",
        allow: "POST",
        path: "/script/generate",
        role: Role::Host,
        methods: &[("POST", Access::Bus)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/speak",
        allow: "POST",
        path: "/speak",
        role: Role::Host,
        methods: &[("POST", Access::Bus)],
        body: Some(("POST", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/calls",
        allow: "POST",
        path: "/calls",
        role: Role::Host,
        methods: &[("POST", Access::Bus)],
        body: Some(("POST", radio24::bus::http_server::MAX_CALL_BODY)),
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/now",
        allow: "GET",
        path: "/now",
        role: Role::Host,
        methods: &[("GET", Access::Bus)],
        body: None,
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/programme",
        allow: "PUT",
        path: "/programme",
        role: Role::Host,
        methods: &[("PUT", Access::Bus)],
        body: Some(("PUT", JSON_LIMIT)),
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/events",
        allow: "GET",
        path: "/events",
        role: Role::Host,
        methods: &[("GET", Access::Bus)],
        body: None,
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/stream",
        allow: "GET",
        path: "/stream?channel=radio24",
        role: Role::Host,
        methods: &[("GET", Access::Bus)],
        body: None,
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/archive",
        allow: "GET",
        path: "/archive?channel=radio24",
        role: Role::Host,
        methods: &[("GET", Access::Bus)],
        body: None,
        socket: false,
    },
    Route {
        file: BUS_ROUTES,
        pattern: "/archive/{file}",
        allow: "GET",
        path: "/archive/2026-11-28T09.ogg?channel=radio24",
        role: Role::Host,
        methods: &[("GET", Access::Bus)],
        body: None,
        socket: false,
    },
    Route {
        file: HOST_ROUTES,
        pattern: "/health",
        allow: "GET, HEAD",
        path: "/health",
        role: Role::Host,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
    Route {
        file: HOST_ROUTES,
        pattern: "/ready",
        allow: "GET, HEAD",
        path: "/ready",
        role: Role::Host,
        methods: &[("GET", Access::Public), ("HEAD", Access::Public)],
        body: None,
        socket: false,
    },
];

/// Scopes the route files open (their resources' patterns are inside them).
const SCOPES: &[(&str, &str)] = &[(API_ROUTES, "/v1/studio")];

/// The string literals that follow each `call(` in `source`: e.g. for
/// `resource("/health", "GET, HEAD")`, `["/health", "GET, HEAD"]`. A call whose first
/// argument is not a literal (a function's own definition) is skipped.
fn literal_arguments(source: &str, call: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices(call) {
        let mut rest = &source[at + call.len()..];
        let mut literals = Vec::new();
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            let Some(inner) = rest.strip_prefix('"') else {
                break;
            };
            let Some(end) = inner.find('"') else {
                break;
            };
            literals.push(inner[..end].to_owned());
            rest = &inner[end + 1..];
        }
        if !literals.is_empty() {
            found.push(literals);
        }
    }
    found
}

fn source(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn route_table_is_complete() {
    let files = [
        API_ROUTES,
        BUS_ROUTES,
        HOST_ROUTES,
        METRICS_ROUTES,
        WEB_APP_ROUTES,
    ];
    let mut declared = Vec::new();
    for file in files {
        let text = source(file);
        for call in ["resource(", "behind_token("] {
            for args in literal_arguments(&text, call) {
                let [pattern, allow, ..] = &args[..] else {
                    panic!("{file}: {call} with one literal: {args:?}");
                };
                declared.push((file, pattern.clone(), allow.clone()));
            }
        }
        for args in literal_arguments(&text, "scope(") {
            assert!(
                SCOPES.contains(&(file, args[0].as_str())),
                "{file} opens scope {:?}: add it to SCOPES and its routes to ROUTES",
                args[0]
            );
        }
    }
    let mut listed: Vec<(&str, String, String)> = ROUTES
        .iter()
        .map(|r| (r.file, r.pattern.to_owned(), r.allow.to_owned()))
        .collect();
    for route in &declared {
        let Some(i) = listed.iter().position(|l| l == route) else {
            panic!(
                "{} declares {} ({}), which is not in ROUTES in tests/api/hostile.rs: add it, \
                 with who may use it, so its token and limits are tried",
                route.0, route.1, route.2
            );
        };
        listed.remove(i);
    }
    assert!(
        listed.is_empty(),
        "ROUTES lists routes no source declares: {listed:?}"
    );
    // Every method a route allows has its access stated (HEAD of a stream is enough to
    // try it: its GET is the same route).
    for route in ROUTES {
        for method in route.allow.split(", ") {
            let stated = route.methods.iter().any(|(m, _)| *m == method)
                || (method == "GET" && route.methods.iter().any(|(m, _)| *m == "HEAD"));
            assert!(stated, "{} {}: no access stated", method, route.path);
        }
    }
}

// --- Raw HTTP ----------------------------------------------------------------------------

/// An answer read off a raw connection: its status and JSON body (if any).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

/// Reads one answer (head, and a body of the `Content-Length` it gives) within
/// [`PATIENCE`]; `None` when the server closes the connection first.
async fn read_answer(tcp: &mut TcpStream, what: &str) -> Option<Answer> {
    let mut bytes = Vec::new();
    let deadline = Deadline::new(what, PATIENCE);
    let end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        match deadline.step(tcp.read(&mut chunk)).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: not an HTTP answer: {head}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = bytes[end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        match deadline.step(tcp.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Answer {
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// A request head for `method path` with `token` (if any) and `extra` header lines.
fn request_head(method: &str, path: &str, token: Option<&str>, extra: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{extra}\r\n")
}

/// Whether the server has closed `tcp` (reads to its end), within [`PATIENCE`].
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

// --- WebSockets ----------------------------------------------------------------------------

/// Frame limits of the app the socket tests run: both sockets take frames and messages up to
/// 4 KiB (`/ws/ptt` skips single frames up to 16 times that).
const FRAME_LIMIT: usize = 4 * 1024;
/// Frames a client may send in a burst on the app the socket tests run.
const FRAME_BURST: usize = 100;

const MESSAGE_TOO_BIG: u16 = 1009;
const POLICY_VIOLATION: u16 = 1008;
const INVALID_PAYLOAD: u16 = 1007;

/// The WebSocket routes of the table.
fn sockets() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(|r| r.socket)
}

async fn socket_test_app(extra: &[(&str, &str)]) -> TestApp {
    let burst = FRAME_BURST.to_string();
    let frame_limit = FRAME_LIMIT.to_string();
    let mut overrides = vec![
        ("RADIO24__QUEUE__MAX_FRAME_BYTES", frame_limit.as_str()),
        ("RADIO24__BROADCAST__CLIENT_FRAME_BURST", burst.as_str()),
        // The bystanders' call-in must still wait when the attack is over: in a QANDA hour
        // the host would take it on air (20:00 in Tokyo is QANDA in the default schedule).
        ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
    ];
    overrides.extend_from_slice(extra);
    TestApp::spawn(Role::All, &overrides).await
}

/// A listener and a waiting call-in, there before an attack, that must be served as before
/// after it.
struct Bystanders {
    listener: RawWs,
    call_in: String,
}

impl Bystanders {
    async fn arrive(app: &TestApp) -> Self {
        let listener = RawWs::open(app.port, "/ws/broadcast?channel=radio24", None).await;
        let resp = app
            .post(
                "/v1/queue",
                None,
                &json!({"text": "A question that must not be lost."}),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let queued: Value = resp.json().await.unwrap();
        Self {
            listener,
            call_in: queued["id"].as_str().unwrap().to_owned(),
        }
    }

    /// Fails the test unless the server answers, the listener's socket still answers a
    /// ping, and the call-in still waits.
    async fn still_served(&mut self, app: &TestApp, after: &str) {
        app.wait_for_status("/health", 200).await;
        let payload = after.as_bytes()[..after.len().min(125)].to_vec();
        self.listener.send(&frame(true, 9, &payload)).await.unwrap();
        let mut deadline = Deadline::new(format!("the listener's pong after {after}"), PATIENCE);
        loop {
            match deadline.step(self.listener.next_frame()).await {
                Some(f) if f.opcode == 10 && f.payload == payload => break,
                Some(f) if f.opcode == 8 => {
                    deadline.fail(format!("the listener was closed: {:?}", f.close_code()))
                }
                Some(f) => deadline.saw(format!("opcode {}", f.opcode)),
                None => deadline.fail("the listener's connection was dropped"),
            }
        }
        let queue: Value = app
            .admin_get("/v1/queue?channel=radio24")
            .await
            .json()
            .await
            .unwrap();
        let waiting = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == self.call_in.as_str() && i["status"] == "queued");
        assert!(waiting, "after {after}, the call-in is gone: {queue}");
    }
}

/// Runs `attack` against every socket, checking the bystanders after each.
async fn attack_every_socket(
    app: &TestApp,
    name: &str,
    attack: impl AsyncFn(&TestApp, &str) -> (),
) {
    let mut bystanders = Bystanders::arrive(app).await;
    for route in sockets() {
        attack(app, route.path).await;
        bystanders
            .still_served(app, &format!("{name} on {}", route.path))
            .await;
    }
}

/// Sends `bytes` on a new socket at `path` and expects a close with `code`.
async fn expect_close(app: &TestApp, path: &str, bytes: &[u8], code: u16, what: &str) {
    let mut ws = RawWs::open(app.port, path, None).await;
    // The server may close (and stop reading) before all of it is written.
    let _ = ws.send(bytes).await;
    let got = ws.close_code(&format!("{what} on {path}")).await;
    assert_eq!(got, Some(code), "{what} on {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_limit_are_closed_with_1009_on_every_socket() {
    let app = socket_test_app(&[]).await;
    attack_every_socket(&app, "a frame claiming 2^40 bytes", async |app, path| {
        let mut bomb = header(true, 2, 1 << 40);
        bomb.extend(vec![0x42; 1024]);
        expect_close(app, path, &bomb, MESSAGE_TOO_BIG, "a 2^40-byte frame").await;
    })
    .await;
    attack_every_socket(&app, "fragments over the limit", async |app, path| {
        // Each fragment within the frame limit; together one over the message limit.
        let piece = vec![b'a'; 1024];
        let mut fragments = frame(false, 1, &piece);
        for _ in 0..FRAME_LIMIT / piece.len() {
            fragments.extend(frame(false, 0, &piece));
        }
        expect_close(app, path, &fragments, MESSAGE_TOO_BIG, "5 KiB of fragments").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_endless_fragments_are_closed_with_1008_on_every_socket() {
    let app = socket_test_app(&[]).await;
    attack_every_socket(&app, "a flood of small messages", async |app, path| {
        // Each costs a reply (an error frame), so each costs the server work.
        let mut flood = Vec::new();
        for _ in 0..FRAME_BURST * 2 {
            flood.extend(frame(true, 1, b"{}"));
        }
        expect_close(app, path, &flood, POLICY_VIOLATION, "a message flood").await;
    })
    .await;
    attack_every_socket(&app, "a message that never ends", async |app, path| {
        // Empty fragments: the message never grows, and never ends.
        let mut endless = frame(false, 1, b"a");
        for _ in 0..FRAME_BURST * 2 {
            endless.extend(frame(false, 0, b""));
        }
        expect_close(app, path, &endless, POLICY_VIOLATION, "endless fragments").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_is_closed_with_1007_on_every_socket() {
    let app = socket_test_app(&[]).await;
    attack_every_socket(&app, "a text frame that is not UTF-8", async |app, path| {
        let text = frame(true, 1, &[b'{', 0xff, 0xfe, b'}']);
        expect_close(app, path, &text, INVALID_PAYLOAD, "invalid UTF-8").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_from_every_socket() {
    // No frame limit to lean on: only the send timeout can end these, and only the stall
    // timeout can close their connections (the HTTP layer's write to them is stuck).
    let app = socket_test_app(&[
        ("RADIO24__BROADCAST__SEND_TIMEOUT_SECS", "1"),
        ("RADIO24__SERVER__STALL_TIMEOUT_SECS", "2"),
        ("RADIO24__SERVER__SEND_BUFFER_BYTES", "4096"),
        ("RADIO24__BROADCAST__CLIENT_FRAME_BURST", "1000000"),
        ("RADIO24__BROADCAST__CLIENT_FRAMES_PER_SECOND", "1000000"),
    ])
    .await;
    attack_every_socket(&app, "a client that never reads", async |app, path| {
        let ws = RawWs::open_with_small_receive_buffer(app.port, path).await;
        // Frames that each make the server answer with an error frame; never a read. The
        // server stops reading when it cannot send, so the writes stall: a write that
        // fails is the server having dropped the connection.
        let (_read_half, mut write) = ws.tcp.into_split();
        let junk = frame(true, 1, b"not json at all");
        let dropped = tokio::time::timeout(PATIENCE, async {
            loop {
                if write.write_all(&junk).await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(
            dropped.is_ok(),
            "{path}: still connected after {PATIENCE:?} of not reading"
        );
    })
    .await;
}

/// Sends `bytes` a byte every 100 ms (a slowloris client) until the server stops taking
/// them.
fn trickle(
    mut write: tokio::net::tcp::OwnedWriteHalf,
    bytes: impl Iterator<Item = u8> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for byte in bytes {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Writes `head` a byte at a time, a byte every 100 ms, never finishing; the server must
/// end the connection (408 or a close) while the bytes still come.
async fn trickled_head_is_cut_off(port: u16, head: &[u8], what: &str) {
    let tcp = connect(port).await;
    let (mut read, write) = tcp.into_split();
    // Owned: the trickle outlives this call's borrow.
    let head = head.to_vec();
    let trickle = trickle(write, head.into_iter().cycle());
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(
        ended.is_ok(),
        "{what}: the connection was still open after {PATIENCE:?} of a trickled head"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{what}: {answer}"
    );
}

/// The head of a request that never ends: header lines, each `X-N: slow`, forever.
fn endless_head(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a-byte-at-a-time\r\n")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_whose_headers_trickle_in_is_cut_off_on_every_socket() {
    let app = socket_test_app(&[]).await;
    attack_every_socket(&app, "a trickled upgrade", async |app, path| {
        trickled_head_is_cut_off(app.port, &endless_head("GET", path), path).await;
    })
    .await;
    attack_every_socket(&app, "an upgrade never finished", async |app, path| {
        let mut tcp = connect(app.port).await;
        tcp.write_all(&endless_head("GET", path)).await.unwrap();
        assert!(closed_by_server(&mut tcp).await, "{path}: held open");
    })
    .await;
}

// --- HTTP ----------------------------------------------------------------------------------

/// A request body declared as `declared` bytes (none of which is sent), with `token`.
async fn declared_body(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    declared: u64,
) -> (Answer, TcpStream) {
    let mut tcp = connect(port).await;
    let extra = format!("Content-Type: application/json\r\nContent-Length: {declared}\r\n");
    tcp.write_all(request_head(method, path, token, &extra).as_bytes())
        .await
        .unwrap();
    let what = format!("{method} {path} with {declared} bytes declared and none sent");
    let answer = read_answer(&mut tcp, &what)
        .await
        .unwrap_or_else(|| panic!("{what}: closed without an answer"));
    (answer, tcp)
}

/// The token a method of a route needs, if any.
fn token_for(access: Access) -> Option<&'static str> {
    match access {
        Access::Public => None,
        Access::Admin => Some(ADMIN_TOKEN),
        Access::Bus => Some(BUS_TOKEN),
    }
}

/// One app of each role the table names, with no body timeout to lean on (a refusal must
/// come from the headers, or from the body's size).
async fn route_apps() -> (TestApp, TestApp) {
    let patient = [("RADIO24__SERVER__BODY_TIMEOUT_SECS", "3600")];
    (
        TestApp::spawn(Role::All, &patient).await,
        TestApp::spawn(Role::Host, &patient).await,
    )
}

fn app_for<'a>(route: &Route, all: &'a TestApp, host: &'a TestApp) -> &'a TestApp {
    if route.role == Role::Host { host } else { all }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_refuses_wrong_or_missing_tokens() {
    let (all, host) = route_apps().await;
    let wrong_tokens: [(&str, Option<String>); 6] = [
        ("no token", None),
        ("a wrong token", Some("Bearer not-the-token".to_owned())),
        ("the other role's token", None),
        ("the token as Basic", Some(format!("Basic {ADMIN_TOKEN}"))),
        (
            "the token with more",
            Some(format!("Bearer {ADMIN_TOKEN}x")),
        ),
        ("an empty bearer", Some("Bearer ".to_owned())),
    ];
    let mut tried = 0;
    for route in ROUTES {
        let app = app_for(route, &all, &host);
        for &(method, access) in route.methods {
            let method_ = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let Some(token) = token_for(access) else {
                // Public: no token is asked for.
                let resp = app
                    .client
                    .request(method_.clone(), app.url(route.path))
                    .send()
                    .await
                    .unwrap();
                assert_ne!(resp.status(), 401, "{method} {}: public", route.path);
                continue;
            };
            for (what, authorization) in &wrong_tokens {
                let authorization = match (*what, access) {
                    ("the other role's token", Access::Admin) => {
                        Some(format!("Bearer {BUS_TOKEN}"))
                    }
                    ("the other role's token", _) => Some(format!("Bearer {ADMIN_TOKEN}")),
                    _ => authorization.clone(),
                };
                let mut req = app.client.request(method_.clone(), app.url(route.path));
                if let Some(value) = authorization {
                    req = req.header("authorization", value);
                }
                if route.body.is_some_and(|(m, _)| m == method) {
                    req = req.json(&json!({}));
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                assert_eq!(
                    (status, body["error"].as_str()),
                    (401, Some("unauthorized")),
                    "{method} {} with {what}: {body}",
                    route.path
                );
                assert!(body["message"].is_string(), "{body}");
                tried += 1;
            }
            // The right token passes the check (whatever the route then makes of the
            // request), so the refusals above were the token's.
            let resp = app
                .client
                .request(method_, app.url(route.path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_ne!(resp.status(), 401, "{method} {} with its token", route.path);
        }
    }
    assert!(tried > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_body_is_refused_before_it_is_read() {
    let (all, host) = route_apps().await;
    for route in ROUTES {
        let app = app_for(route, &all, &host);
        for &(method, access) in route.methods {
            if access == Access::Public || route.socket || method == "GET" || method == "HEAD" {
                continue;
            }
            // A gigabyte declared, not a byte of it sent: the answer can only come from the
            // headers.
            let (answer, mut tcp) =
                declared_body(app.port, method, route.path, Some("wrong"), 1 << 30).await;
            assert_eq!(
                (answer.status, answer.body["error"].as_str()),
                (401, Some("unauthorized")),
                "{method} {}: {answer:?}",
                route.path
            );
            // And the connection is not kept waiting for the rest.
            assert!(
                closed_by_server(&mut tcp).await,
                "{method} {}: the connection waits for the unread body",
                route.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_over_its_limit_gets_413_unread() {
    let (all, host) = route_apps().await;
    for route in ROUTES {
        let Some((method, limit)) = route.body else {
            continue;
        };
        let app = app_for(route, &all, &host);
        let access = route
            .methods
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(Access::Public, |(_, a)| *a);
        let token = token_for(access);

        // Declared over the limit: refused from the headers.
        let declared = limit as u64 + 1;
        let (answer, _) = declared_body(app.port, method, route.path, token, declared).await;
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (413, Some("payload_too_large")),
            "{method} {} declaring {declared} bytes: {answer:?}",
            route.path
        );

        // Chunked, so only reading tells the size: refused once the limit is passed, while
        // the rest is still owed (the body timeout is an hour).
        let mut tcp = connect(app.port).await;
        let extra = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
        tcp.write_all(request_head(method, route.path, token, extra).as_bytes())
            .await
            .unwrap();
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent <= limit {
            let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
            piece.extend_from_slice(&chunk);
            piece.extend_from_slice(b"\r\n");
            if tcp.write_all(&piece).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        let what = format!("{method} {} chunked past {limit} bytes", route.path);
        let answer = read_answer(&mut tcp, &what)
            .await
            .unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (413, Some("payload_too_large")),
            "{what}: {answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_that_reads_no_body_answers_without_waiting_for_one() {
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__BODY_TIMEOUT_SECS", "3600")]).await;
    let (answer, mut tcp) = declared_body(
        app.port,
        "POST",
        "/v1/studio/take-next",
        Some(ADMIN_TOKEN),
        1 << 30,
    )
    .await;
    assert_eq!(answer.body["error"], "queue_empty", "{answer:?}");
    assert!(
        closed_by_server(&mut tcp).await,
        "the connection waits for a body no one reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_that_trickle_in_are_cut_off() {
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__BODY_TIMEOUT_SECS", "1")]).await;
    // A first request whose head never ends.
    trickled_head_is_cut_off(app.port, &endless_head("GET", "/health"), "a first request").await;

    // The second request of a kept-alive connection, likewise.
    let mut tcp = connect(app.port).await;
    tcp.write_all(request_head("GET", "/health", None, "").as_bytes())
        .await
        .unwrap();
    let first = read_answer(&mut tcp, "a first request").await.unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    let (mut read, write) = tcp.into_split();
    let trickle = trickle(write, endless_head("GET", "/health").into_iter().cycle());
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, read.read_to_end(&mut rest)).await;
    trickle.abort();
    assert!(
        ended.is_ok(),
        "a kept-alive connection's second head trickled for {PATIENCE:?} and was not cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_that_trickles_in_gets_408() {
    let quick = [("RADIO24__SERVER__BODY_TIMEOUT_SECS", "1")];
    let all = TestApp::spawn(Role::All, &quick).await;
    let host = TestApp::spawn(Role::Host, &quick).await;
    for route in ROUTES {
        let Some((method, limit)) = route.body else {
            continue;
        };
        let app = app_for(route, &all, &host);
        let token = route
            .methods
            .iter()
            .find(|(m, _)| *m == method)
            .and_then(|(_, access)| token_for(*access));
        // A byte every 100 ms, under the size limit, so only time can refuse it: the
        // body's whole time is bounded, not the gap between its bytes.
        let declared = limit.min(60_000);
        let mut tcp = connect(app.port).await;
        let extra = format!("Content-Type: application/json\r\nContent-Length: {declared}\r\n");
        tcp.write_all(request_head(method, route.path, token, &extra).as_bytes())
            .await
            .unwrap();
        let (mut read, write) = tcp.into_split();
        let trickle = trickle(write, std::iter::repeat(b' '));
        let mut answer = Vec::new();
        let ended = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer)).await;
        trickle.abort();
        let what = format!("{method} {}", route.path);
        assert!(ended.is_ok(), "{what}: a trickled body was not cut off");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        assert!(
            answer.contains(r#""error":"body_timeout""#),
            "{what}: {answer}"
        );
    }
}

/// Raw request targets that try to leave a folder; none may be answered with a file.
const PATH_TRICKS: &[&str] = &[
    "..",
    "../",
    "%2e%2e",
    "%2e%2e%2f",
    "..%2f..%2f",
    "..%5c..%5c",
    "%2e%2e/%2e%2e/",
    "%252e%252e%252f",
    "%c0%ae%c0%ae/",
    "%2f",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "%00",
    "secret%00.html",
    "index.html%00",
];

/// Asks `GET prefix + trick + suffix` for each trick, raw, so nothing normalises the target
/// first; no answer may be a 5xx or hold `secret`, and every refusal the app makes is JSON.
async fn tricks_never_leave(app: &TestApp, prefix: &str, suffix: &str, secret: &str) {
    let overlong = "a".repeat(300);
    let nested = "a/".repeat(300);
    let mut targets: Vec<String> = PATH_TRICKS
        .iter()
        .flat_map(|t| {
            [
                format!("{prefix}{t}{suffix}"),
                format!("{prefix}{t}{t}{t}{suffix}"),
            ]
        })
        .collect();
    targets.push(format!("{prefix}{overlong}{suffix}"));
    targets.push(format!("{prefix}{nested}{suffix}"));
    for target in targets {
        let mut tcp = connect(app.port).await;
        let head = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut raw))
            .await
            .unwrap_or_else(|_| panic!("GET {target}: no answer"))
            .unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let status: u16 = raw
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // A trick that comes back inside the folder (`/%2f` is `/`) may be served what is
        // there; nothing is a server error.
        assert!(
            (200..500).contains(&status),
            "GET {target}: {status}: {raw}"
        );
        assert!(
            !raw.contains(secret),
            "GET {target} served the secret: {raw}"
        );
        // The HTTP layer's own refusals of what it cannot parse have no body; the app's are
        // JSON.
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if status >= 400 && !body.is_empty() {
            let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            assert!(body["error"].is_string(), "GET {target}: {raw}");
        }
    }
}

fn visible_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_never_leave_the_web_app_folder() {
    // Side by side in one folder, with names that are not hidden (actix-files refuses
    // hidden names anyway: `../.tmpX` would prove nothing).
    let outside = visible_tempdir("radio24-outside-");
    std::fs::write(outside.path().join("secret.html"), "OUTSIDE-SECRET").unwrap();
    let web = visible_tempdir("radio24-web-");
    std::fs::write(web.path().join("index.html"), "<h1>listener page</h1>").unwrap();
    // A symlink in the build output that leads out of it, to a file and to a folder.
    std::os::unix::fs::symlink(
        outside.path().join("secret.html"),
        web.path().join("leak.html"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), web.path().join("leakdir")).unwrap();
    let web_dir = web.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__WEB_DIR", &web_dir)]).await;
    assert_eq!(app.get("/").await.status(), 200);

    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    tricks_never_leave(&app, "/", "", "OUTSIDE-SECRET").await;
    tricks_never_leave(
        &app,
        "/",
        &format!("{outside_name}/secret.html"),
        "OUTSIDE-SECRET",
    )
    .await;
    for path in ["/leak.html", "/leakdir/secret.html", "/leakdir/"] {
        let resp = app.get(path).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("OUTSIDE-SECRET"), "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_never_leave_the_archive_folder() {
    let archive = visible_tempdir("radio24-archive-");
    let outside = visible_tempdir("radio24-outside-");
    std::fs::write(outside.path().join("secret"), "OUTSIDE-SECRET").unwrap();
    let channel_dir = archive.path().join("radio24");
    std::fs::create_dir_all(&channel_dir).unwrap();
    // What could be left in a channel's folder under a recording's name: a symlink out, a
    // folder, a FIFO (opening one waits for a writer).
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        channel_dir.join("2026-11-28T09.ogg"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        channel_dir.join("2026-11-28T09.json"),
    )
    .unwrap();
    std::fs::create_dir(channel_dir.join("2026-11-28T10.ogg")).unwrap();
    let fifo = channel_dir.join("2026-11-28T11.ogg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let archive_dir = archive.path().to_str().unwrap().to_owned();
    let app = TestApp::spawn(Role::All, &[("RADIO24__ARCHIVE__DIR", &archive_dir)]).await;

    for file in [
        "2026-11-28T09.ogg",
        "2026-11-28T09.json",
        "2026-11-28T10.ogg",
        "2026-11-28T11.ogg",
    ] {
        let path = format!("/v1/channels/radio24/archive/{file}");
        let resp = app.get(&path).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 404, "{path}: {text}");
        assert!(!text.contains("OUTSIDE-SECRET"), "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(body["error"], "unknown_recording", "{path}: {text}");
    }
    // The listing names none of them (and reads none: the FIFO would hold it).
    let listing: Value = app
        .get("/v1/channels/radio24/archive")
        .await
        .json()
        .await
        .unwrap();
    let recordings = listing["recordings"].as_array().unwrap();
    let names: Vec<&Value> = recordings.iter().map(|r| &r["file"]).collect();
    assert!(
        names.iter().all(|n| ![
            "2026-11-28T09.ogg",
            "2026-11-28T10.ogg",
            "2026-11-28T11.ogg"
        ]
        .contains(&n.as_str().unwrap_or(""))),
        "{listing}"
    );

    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    let out_of_it = format!("{outside_name}%2fsecret");
    tricks_never_leave(&app, "/v1/channels/radio24/archive/", "", "OUTSIDE-SECRET").await;
    tricks_never_leave(
        &app,
        "/v1/channels/radio24/archive/",
        &out_of_it,
        "OUTSIDE-SECRET",
    )
    .await;
    tricks_never_leave(&app, "/v1/channels/", "", "OUTSIDE-SECRET").await;
    poll_until(
        "the server still answering",
        PATIENCE,
        Duration::from_millis(50),
        async || match app.client.get(app.url("/health")).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}
