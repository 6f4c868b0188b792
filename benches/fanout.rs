//! Benchmark: fan-out of the host's events to `/ws/broadcast` listeners, against a bare
//! tokio-tungstenite fan-out server measured the same way in the same run.
//!
//! `cargo bench --bench fanout` (optionally `-- --listeners 10000 --rate 10 --seconds 30`).
//! Needs `listeners` + a few open files in this process and in the server (the harness raises
//! its soft limit to the hard one; the child inherits it).
//!
//! - **Events.** This process is the host: a fake host on loopback serves the bus routes a
//!   `radio24 serve --role api` uses (`GET /events`, newline-delimited JSON, and
//!   `PUT /programme`), so each event takes the path a real host's does in a split
//!   deployment: over HTTP into the API's host link, parsed, applied to the hub, serialized
//!   once and fanned out. `--rate` events a second, each a `caption` of about 1 KB whose text
//!   carries its sequence number and the microsecond it was sent.
//! - **Servers.** Each in a child process, so /proc gives its own CPU and RSS: the release
//!   `radio24 serve --role api`, and this benchmark re-invoked as `--baseline-server PORT
//!   --feed PORT`, which reads the same event lines from the fake host and writes each one,
//!   as it is, to every client as a text frame (tokio::sync::broadcast, one task per client,
//!   tokio-tungstenite with its default settings).
//! - **Listeners.** `--listeners` WebSocket clients from 127.0.0.1, in this process on a
//!   runtime of their own (two threads), the same for both servers. Each notes when every
//!   caption arrives. Latency is arrival minus the send time in the caption (one clock: the
//!   same process). Per event, the "last listener" figure is the latest arrival over all
//!   listeners; percentiles are then taken over events. Per-delivery percentiles are over
//!   every caption every listener received.
//! - **Phases, per server.** Connect everyone and wait for each client's first frame; 5 s of
//!   warm-up; `--seconds` measured (deliveries, latency, loss, server CPU, RSS); then 1 % of
//!   the clients stop reading (their sockets stay open) for another `--seconds`, and the
//!   others' p99 is set against their own p99 of the first phase.
//! - **Loss.** Deliveries of the measured phase's events owed to every client that connected
//!   and never read (a client that could not connect shows in the "listeners" column, not
//!   as loss). At the end every reading client reads up to the last event sent (for at most
//!   [`STOP_DRAIN_LIMIT`]) before it is counted; a fixed 3 s did not cover a lag of 6 s. The
//!   clients that stall next first read the rest of the measured phase (up to its last
//!   event, for at most [`STALL_DRAIN_LIMIT`]) and only then stop. Until 2026-12-01 they
//!   stopped at once, and the events still in flight to them (those of the phase's last
//!   second, at a second's lag) were counted as lost: the "384 of 1.99 M lost" of the
//!   first 10 000 run was that. The report says how many such captions they read.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Report, arg, cpu_seconds, raise_fd_limit, rss_mb, runtime, start_server_as};
use futures::{SinkExt, StreamExt};
use radio24::bus::{HostEvent, Speaker};
use radio24::domain::ChannelName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes of caption text per event; with the JSON around it an event is about 1 KB.
const EVENT_TEXT_BYTES: usize = 900;
/// One client in this many stops reading in the stall phase (1 %).
const STALL_ONE_IN: usize = 100;
/// Handshakes in flight at once while the clients connect.
const CONCURRENT_CONNECTS: usize = 64;
/// The bus token the fake host is given (it does not check it; the API must send one).
const BUS_TOKEN: &str = "fanout-bench-bus-token";
/// Events the fake host and the baseline hold for a subscriber that falls behind; the
/// baseline's matches radio24's `broadcast.client_queue`.
const EVENT_QUEUE: usize = 256;
/// Silence on the event stream after which the API reconnects is longer than this.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Microseconds since the benchmark started: the one clock of senders and listeners.
fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

// ---------------------------------------------------------------------------------------
// The fake host: the events, and the bus routes a `--role api` process uses.

/// The host's side of the bus, on loopback: every event line sent goes to each open
/// `GET /events`.
struct FakeHost {
    port: u16,
    lines: broadcast::Sender<Bytes>,
    /// Open `GET /events` streams (the API's host link, or the baseline's feed).
    subscribers: Arc<AtomicUsize>,
}

impl FakeHost {
    async fn start() -> Self {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("fake host: {e}"),
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(e) => panic!("fake host: {e}"),
        };
        let (lines, _) = broadcast::channel(EVENT_QUEUE);
        let subscribers = Arc::new(AtomicUsize::new(0));
        let (sender, count) = (lines.clone(), subscribers.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_bus_connection(socket, sender.clone(), count.clone()));
            }
        });
        Self {
            port,
            lines,
            subscribers,
        }
    }

    /// Waits until exactly one event stream is open (the server under test has subscribed).
    async fn wait_for_subscriber(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.subscribers.load(Ordering::SeqCst) != 1 {
            assert!(
                Instant::now() < deadline,
                "the server never subscribed to the fake host's events"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One HTTP/1.1 connection to the fake host: `GET /events` streams event lines until the
/// client goes (a close-delimited body, as HTTP/1.1 allows); `PUT /programme` is taken
/// (204); anything else is 404 with the bus's error body.
async fn serve_bus_connection(
    socket: TcpStream,
    lines: broadcast::Sender<Bytes>,
    subscribers: Arc<AtomicUsize>,
) {
    let mut reader = BufReader::new(socket);
    loop {
        let Some((path, body_len)) = read_request_head(&mut reader).await else {
            return;
        };
        let mut body = vec![0u8; body_len];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let answer = if path.starts_with("/events") {
            subscribers.fetch_add(1, Ordering::SeqCst);
            stream_events(reader.get_mut(), lines.subscribe()).await;
            subscribers.fetch_sub(1, Ordering::SeqCst);
            return;
        } else if path.starts_with("/programme") {
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        } else {
            let body = r#"{"error":"not_found","message":"the fake host has no such route"}"#;
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The path and `Content-Length` of the next request; `None` when the client has gone.
async fn read_request_head(reader: &mut BufReader<TcpStream>) -> Option<(String, usize)> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut body_len = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
        let header = line.trim_end();
        if header.is_empty() {
            return Some((path, body_len));
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            body_len = value.trim().parse().ok()?;
        }
    }
}

/// Answers `GET /events`: a `hello`, then every event line, with a blank line as keep-alive.
async fn stream_events(socket: &mut TcpStream, mut lines: broadcast::Receiver<Bytes>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n\
                {\"type\":\"hello\",\"version\":\"fanout-bench\",\"channels\":[]}\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    loop {
        let out = tokio::select! {
            line = lines.recv() => match line {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keepalive.tick() => Bytes::from_static(b"\n"),
        };
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Sends `rate` captions a second to the fake host's subscribers, for ever, numbering them
/// from 0 in `next_seq`. Each carries its number and the microsecond it was sent.
async fn inject_events(lines: broadcast::Sender<Bytes>, rate: f64, next_seq: Arc<AtomicU64>) {
    let channel = match ChannelName::parse("radio24") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let padding = "Radio24 fan-out benchmark caption text. ".repeat(EVENT_TEXT_BYTES / 40 + 1);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // A late tick (a busy machine) sends late, never a burst to catch up: the rate stays.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let seq = next_seq.load(Ordering::SeqCst);
        let mut text = format!("fanout seq={seq} sent={} ", now_us());
        text.push_str(&padding[..EVENT_TEXT_BYTES - text.len()]);
        let event = HostEvent::Caption {
            channel: channel.clone(),
            segment_id: uuid::Uuid::nil(),
            index: seq as u32,
            text,
            at: chrono::Utc::now(),
            speaker: Speaker::Host,
        };
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(e) => panic!("event: {e}"),
        };
        line.push(b'\n');
        next_seq.store(seq + 1, Ordering::SeqCst);
        // Nobody subscribed (between two servers) is fine: the event is simply not heard.
        let _ = lines.send(Bytes::from(line));
    }
}

// ---------------------------------------------------------------------------------------
// The baseline server (this benchmark re-invoked with `--baseline-server PORT --feed PORT`).

/// The simplest correct fan-out: read the host's event lines, and write each, as it is, to
/// every connected WebSocket client as a text frame (serialized once: the frame's bytes are
/// shared). A client that falls behind by [`EVENT_QUEUE`] events misses the oldest.
fn baseline_server(port: u16, feed_port: u16) {
    runtime().block_on(async {
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => panic!("baseline: {e}"),
        };
        let (frames, _) =
            broadcast::channel::<tokio_tungstenite::tungstenite::Utf8Bytes>(EVENT_QUEUE);
        let feed = frames.clone();
        tokio::spawn(async move {
            let Ok(mut socket) = TcpStream::connect(("127.0.0.1", feed_port)).await else {
                panic!("baseline: no feed");
            };
            let request = format!(
                "GET /events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {BUS_TOKEN}\r\n\r\n"
            );
            if socket.write_all(request.as_bytes()).await.is_err() {
                panic!("baseline: feed refused");
            }
            let mut reader = BufReader::new(socket);
            let mut line = String::new();
            // The answer's head, then one event a line.
            while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                if line.trim().is_empty() {
                    line.clear();
                    continue;
                }
                if line.starts_with('{') {
                    let _ = feed.send(line.trim_end().to_owned().into());
                }
                line.clear();
            }
        });
        while let Ok((socket, _)) = listener.accept().await {
            let receiver = frames.subscribe();
            tokio::spawn(baseline_client(socket, receiver));
        }
    });
}

/// One baseline client: a hello frame once subscribed (as radio24's snapshot), then every
/// frame; it ends when the client goes.
async fn baseline_client(
    socket: TcpStream,
    mut frames: broadcast::Receiver<tokio_tungstenite::tungstenite::Utf8Bytes>,
) {
    let Ok(ws) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    let (mut sink, mut incoming) = ws.split();
    if sink
        .send(Message::text("{\"type\":\"hello\"}"))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            message = incoming.next() => match message {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// The baseline in a child process; killed when dropped.
struct BaselineServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts [`BaselineServer`] on a free port, reading events from the fake host on
/// `feed_port`, and waits until it accepts.
async fn start_baseline(feed_port: u16) -> BaselineServer {
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("port: {e}"),
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => panic!("this benchmark's path: {e}"),
    };
    let child = std::process::Command::new(exe)
        .args(["--baseline-server", &port.to_string()])
        .args(["--feed", &feed_port.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn();
    let server = match child {
        Ok(child) => BaselineServer { child, port },
        Err(e) => panic!("spawn the baseline: {e}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the baseline did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
}

// ---------------------------------------------------------------------------------------
// The listeners.

/// What the measuring side tells every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Read everything.
    Read,
    /// The clients chosen to stall stop reading (their sockets stay open) once they have
    /// read up to the event before `from`, the first of the stall phase (or after
    /// [`STALL_DRAIN_LIMIT`]); the others read on.
    Stall { from: u64 },
    /// Hand in what was heard: at once for a client that is not reading, else once it has
    /// read up to the event before `end` (or after [`STOP_DRAIN_LIMIT`]).
    Stop { end: u64 },
}

/// Longest a client that is to stall goes on reading the measured phase's last events.
const STALL_DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// Longest a reading client goes on reading the stall phase's last events at the end.
const STOP_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// What one client heard.
#[derive(Default)]
struct Heard {
    /// Whether this client was one of those that stop reading in the stall phase.
    stalls: bool,
    /// It connected and had its first frame (the others are counted apart, not as loss).
    connected: bool,
    /// Every caption: (sequence number, latency in µs); 32 bits each, as 10 000 clients
    /// keep hundreds each.
    captions: Vec<(u32, u32)>,
    /// Snapshots that replaced frames it fell behind on.
    resyncs: u32,
    /// Captions of the measured phase a stalling client read after it was told to stall:
    /// what it still had to read of that phase (in flight, or queued for it) then.
    drained: u32,
    /// The server closed the socket (or it failed) before the end.
    dropped: bool,
}

impl Heard {
    /// The sequence number of the last caption read.
    fn last_seq(&self) -> Option<u64> {
        self.captions.last().map(|&(seq, _)| u64::from(seq))
    }

    fn frame(&mut self, text: &str, arrived_us: u64) {
        if text.starts_with("{\"type\":\"caption\"") {
            let (Some(seq), Some(sent)) = (number_after(text, "seq="), number_after(text, "sent="))
            else {
                return;
            };
            let latency = arrived_us.saturating_sub(sent).min(u64::from(u32::MAX));
            self.captions.push((seq as u32, latency as u32));
        } else if text.contains("\"resync\":true") {
            self.resyncs += 1;
        }
    }
}

/// The decimal number that follows the first `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(&text[start..], |end| &text[start..start + end]);
    digits.parse().ok()
}

/// Counts of clients that have their first frame, and of those that could not connect.
#[derive(Default)]
struct Connecting {
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// Why the first client that could not connect could not.
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Connecting {
    fn failed(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut first = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert(why);
    }
}

/// One listener: connects (one of [`CONCURRENT_CONNECTS`] at a time), counts itself ready at
/// its first frame, then notes every caption until told to stop.
async fn listener(
    url: String,
    stalls: bool,
    gate: Arc<Semaphore>,
    connecting: Arc<Connecting>,
    mut phase: watch::Receiver<Phase>,
) -> Heard {
    let mut heard = Heard {
        stalls,
        ..Heard::default()
    };
    // A small read buffer: 10 000 clients in this process, and frames of about 1 KB.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let permit = gate.acquire().await;
    let connected = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => {
            connecting.failed(format!("connect: {e}"));
            heard.dropped = true;
            return heard;
        }
    };
    match ws.next().await {
        Some(Ok(_)) => {
            heard.connected = true;
            connecting.ready.fetch_add(1, Ordering::SeqCst)
        }
        other => {
            connecting.failed(format!("first frame: {other:?}"));
            heard.dropped = true;
            return heard;
        }
    };
    drop(permit);
    let mut reading = true;
    // A client told to stall first reads what it still has of the measured phase, up to the
    // event before this one: what it has not read of it is not lost, only unread.
    let mut stall_from: Option<u64> = None;
    let drain_limit = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(drain_limit);
    // Likewise at the end: a reading client reads up to the last event sent before it stops.
    let mut stop_at: Option<u64> = None;
    let stop_limit = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(stop_limit);
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                match *phase.borrow_and_update() {
                    Phase::Read => reading = true,
                    Phase::Stall { from } if stalls => {
                        let caught_up = heard.last_seq().is_some_and(|seq| seq + 1 >= from);
                        if caught_up {
                            reading = false;
                        } else {
                            stall_from = Some(from);
                            drain_limit
                                .as_mut()
                                .reset(tokio::time::Instant::now() + STALL_DRAIN_LIMIT);
                        }
                    }
                    Phase::Stall { .. } => {}
                    Phase::Stop { end } => {
                        let caught_up = heard.last_seq().is_some_and(|seq| seq + 1 >= end);
                        if !reading || stall_from.is_some() || caught_up {
                            break;
                        }
                        stop_at = Some(end);
                        stop_limit
                            .as_mut()
                            .reset(tokio::time::Instant::now() + STOP_DRAIN_LIMIT);
                    }
                }
            }
            () = &mut stop_limit, if stop_at.is_some() => break,
            () = &mut drain_limit, if stall_from.is_some() => {
                stall_from = None;
                reading = false;
            }
            message = ws.next(), if reading => match message {
                Some(Ok(Message::Text(text))) => {
                    let captions = heard.captions.len();
                    heard.frame(&text, now_us());
                    let caption = heard.captions.len() > captions;
                    if let Some(from) = stall_from
                        && caption
                        && let Some(seq) = heard.last_seq()
                    {
                        if seq < from {
                            heard.drained += 1;
                        }
                        if seq + 1 >= from {
                            stall_from = None;
                            reading = false;
                        }
                    }
                    if let Some(end) = stop_at
                        && caption
                        && heard.last_seq().is_some_and(|seq| seq + 1 >= end)
                    {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    heard.dropped = true;
                    break;
                }
            },
        }
    }
    heard
}

// ---------------------------------------------------------------------------------------
// Measuring one server.

/// One server's figures.
struct Figures {
    connected: usize,
    listeners: usize,
    unstalled: PhaseFigures,
    /// The clients that keep reading, in the first phase and while 1 % stall.
    others_before: PhaseFigures,
    others_stalled: PhaseFigures,
    /// Server CPU over the first phase, seconds.
    cpu_seconds: f64,
    /// This process's CPU over the first phase (the listeners, and the fake host), seconds.
    listeners_cpu_seconds: f64,
    rss_idle_mb: f64,
    rss_connected_mb: f64,
    /// Clients the server dropped, by the end (the stalled ones among them apart).
    dropped_reading: usize,
    dropped_stalled: usize,
    resyncs: u32,
    /// Captions of the measured phase the stalling clients read after being told to stall.
    drained: u64,
}

impl Figures {
    fn cpu_us_per_delivery(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.unstalled.deliveries.max(1) as f64
    }

    fn rss_kb_per_connection(&self) -> f64 {
        (self.rss_connected_mb - self.rss_idle_mb) * 1024.0 / self.connected.max(1) as f64
    }

    /// The others' per-delivery p99 while 1 % stall, over their own before: 1.0 = unchanged.
    fn stall_ratio(&self) -> f64 {
        self.others_stalled.per_delivery.p99 / self.others_before.per_delivery.p99
    }
}

/// p50, p99 and max of some latencies, in ms.
#[derive(Clone, Copy, Default)]
struct Spread {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Spread {
    fn of(mut us: Vec<u64>) -> Self {
        if us.is_empty() {
            return Self {
                p50: f64::NAN,
                p99: f64::NAN,
                max: f64::NAN,
            };
        }
        us.sort_unstable();
        let at = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        Self {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    fn cells(&self) -> String {
        format!("{:.1} / {:.1} / {:.1}", self.p50, self.p99, self.max)
    }
}

/// Deliveries and latencies of the events numbered in `events`, to some clients.
#[derive(Clone, Copy, Default)]
struct PhaseFigures {
    deliveries: usize,
    /// Deliveries per second of the phase.
    per_second: f64,
    /// Per event, the latest arrival over the clients (percentiles over events).
    last_listener: Spread,
    per_delivery: Spread,
    /// Deliveries owed to these clients (events × clients) and not made.
    lost: usize,
    owed: usize,
}

impl PhaseFigures {
    fn of<'a>(
        clients: impl Iterator<Item = &'a Heard>,
        events: std::ops::Range<u64>,
        seconds: f64,
    ) -> Self {
        let count = (events.end - events.start) as usize;
        let mut latest = vec![None::<u64>; count];
        let mut per_delivery = Vec::new();
        let mut lost = 0;
        let mut owed = 0;
        for heard in clients {
            let mut got = vec![false; count];
            for &(seq, latency) in &heard.captions {
                let (seq, latency) = (u64::from(seq), u64::from(latency));
                if !events.contains(&seq) {
                    continue;
                }
                let i = (seq - events.start) as usize;
                if std::mem::replace(&mut got[i], true) {
                    continue; // a duplicate is not a second delivery
                }
                per_delivery.push(latency);
                latest[i] = Some(latest[i].map_or(latency, |l| l.max(latency)));
            }
            owed += count;
            lost += got.iter().filter(|g| !**g).count();
        }
        Self {
            deliveries: per_delivery.len(),
            per_second: per_delivery.len() as f64 / seconds,
            last_listener: Spread::of(latest.into_iter().flatten().collect()),
            per_delivery: Spread::of(per_delivery),
            lost,
            owed,
        }
    }
}

/// Everything the measurement of one server needs.
struct Bench {
    host: FakeHost,
    next_seq: Arc<AtomicU64>,
    listeners: usize,
    seconds: f64,
    /// The listeners' runtime.
    clients: tokio::runtime::Handle,
}

impl Bench {
    /// Connects the listeners to `url` of the server with process id `pid`, runs both phases, and works out the
    /// figures.
    async fn measure(&self, pid: u32, url: &str) -> Figures {
        self.host.wait_for_subscriber().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle_mb = rss_mb(pid);

        let (phase, watching) = watch::channel(Phase::Read);
        let gate = Arc::new(Semaphore::new(CONCURRENT_CONNECTS));
        let connecting = Arc::new(Connecting::default());
        let clients: Vec<_> = (0..self.listeners)
            .map(|i| {
                self.clients.spawn(listener(
                    url.to_owned(),
                    i % STALL_ONE_IN == 0,
                    gate.clone(),
                    connecting.clone(),
                    watching.clone(),
                ))
            })
            .collect();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(600);
        loop {
            let ready = connecting.ready.load(Ordering::SeqCst);
            let failed = connecting.failed.load(Ordering::SeqCst);
            if ready + failed == self.listeners {
                let why = connecting
                    .first_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .map_or(String::new(), |why| format!("; the first: {why}"));
                println!(
                    "  {ready} listeners connected in {:.1} s ({failed} could not{why})",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "listeners still connecting: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Warm-up: every connection has sent and received a few frames.
        tokio::time::sleep(Duration::from_secs(5)).await;

        let pid_text = pid.to_string();
        let first = self.next_seq.load(Ordering::SeqCst);
        let cpu_before = cpu_seconds(&pid_text);
        let own_cpu_before = cpu_seconds("self");
        tokio::time::sleep(Duration::from_secs_f64(self.seconds)).await;
        let listeners_cpu_seconds = cpu_seconds("self") - own_cpu_before;
        let cpu_seconds = cpu_seconds(&pid_text) - cpu_before;
        let rss_connected_mb = rss_mb(pid);
        let stall_from = self.next_seq.load(Ordering::SeqCst);
        println!("  measured; now 1 % of the listeners stop reading");
        let _ = phase.send(Phase::Stall { from: stall_from });
        tokio::time::sleep(Duration::from_secs_f64(self.seconds)).await;
        let stall_to = self.next_seq.load(Ordering::SeqCst);
        // Everyone reads up to the last event sent (stragglers included), then hands in what
        // it heard.
        let _ = phase.send(Phase::Stop { end: stall_to });
        let stopping = Instant::now();
        let mut heard = Vec::with_capacity(clients.len());
        for client in clients {
            match client.await {
                Ok(h) => heard.push(h),
                Err(e) => panic!("a listener failed: {e}"),
            }
        }
        println!(
            "  the listeners had read up to the last event {:.1} s after it",
            stopping.elapsed().as_secs_f64()
        );

        let connected = connecting.ready.load(Ordering::SeqCst);
        // Loss is counted over the clients that connected; those that could not are the
        // "listeners" column's shortfall.
        let heard: Vec<Heard> = heard.into_iter().filter(|h| h.connected).collect();
        let unstalled = PhaseFigures::of(heard.iter(), first..stall_from, self.seconds);
        let others = || heard.iter().filter(|h| !h.stalls);
        Figures {
            connected,
            listeners: self.listeners,
            unstalled,
            others_before: PhaseFigures::of(others(), first..stall_from, self.seconds),
            others_stalled: PhaseFigures::of(others(), stall_from..stall_to, self.seconds),
            cpu_seconds,
            listeners_cpu_seconds,
            rss_idle_mb,
            rss_connected_mb,
            dropped_reading: others().filter(|h| h.dropped).count(),
            dropped_stalled: heard.iter().filter(|h| h.stalls && h.dropped).count(),
            resyncs: heard.iter().map(|h| h.resyncs).sum(),
            drained: heard.iter().map(|h| u64::from(h.drained)).sum(),
        }
    }
}

/// The listeners' own runtime, two threads: their reads never queue behind the fake host's
/// or the measuring tasks.
fn listeners_runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fanout-listener")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("listeners' runtime: {e}"),
    }
}

fn row(report: &mut Report, name: &str, f: &Figures) {
    report.row(&[
        name.to_owned(),
        format!("{} of {}", f.connected, f.listeners),
        format!("{:.0}", f.unstalled.per_second),
        f.unstalled.last_listener.cells(),
        f.unstalled.per_delivery.cells(),
        format!("{} of {}", f.unstalled.lost, f.unstalled.owed),
        format!("{:.2}", f.cpu_us_per_delivery()),
        format!("{:.1}", f.rss_kb_per_connection()),
        format!(
            "{:.1} vs {:.1} ({:+.0} %)",
            f.others_stalled.per_delivery.p99,
            f.others_before.per_delivery.p99,
            (f.stall_ratio() - 1.0) * 100.0
        ),
    ]);
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn main() {
    let baseline_port = arg("--baseline-server", 0.0) as u16;
    if baseline_port != 0 {
        baseline_server(baseline_port, arg("--feed", 0.0) as u16);
        return;
    }
    let fd_limit = raise_fd_limit();
    let listeners = arg("--listeners", 10_000.0) as usize;
    let rate = arg("--rate", 10.0);
    let seconds = arg("--seconds", 30.0);
    println!(
        "fan-out: {listeners} listeners, {rate} events/s of about 1 KB, {seconds} s a phase; \
         open-file limit {fd_limit}"
    );
    let clients = listeners_runtime();
    let (baseline, radio24) = runtime().block_on(async {
        now_us();
        let host = FakeHost::start().await;
        let next_seq = Arc::new(AtomicU64::new(0));
        tokio::spawn(inject_events(host.lines.clone(), rate, next_seq.clone()));
        let bench = Bench {
            host,
            next_seq,
            listeners,
            seconds,
            clients: clients.handle().clone(),
        };

        println!("baseline (tokio-tungstenite fan-out):");
        let server = start_baseline(bench.host.port).await;
        let url = format!("ws://127.0.0.1:{}/", server.port);
        let baseline = bench.measure(server.child.id(), &url).await;
        drop(server);

        println!("radio24 serve --role api:");
        let host_url = format!("http://127.0.0.1:{}", bench.host.port);
        let max_clients = (listeners + 100).to_string();
        let server = start_server_as(
            "api",
            &[
                ("RADIO24__BUS__HOST_URL", host_url.as_str()),
                ("RADIO24__BUS__TOKEN", BUS_TOKEN),
                // Every listener comes from 127.0.0.1: lift the per-client connect rate and
                // the per-process cap for the measurement.
                ("RADIO24__BROADCAST__CONNECTS_PER_MINUTE", "100000000"),
                ("RADIO24__BROADCAST__MAX_CLIENTS", max_clients.as_str()),
            ],
        )
        .await;
        let url = format!(
            "ws://127.0.0.1:{}/ws/broadcast?channel=radio24",
            server.port
        );
        let radio24 = bench.measure(server.child.id(), &url).await;
        drop(server);
        (baseline, radio24)
    });
    clients.shutdown_background();

    let mut report = Report::new(
        &format!("Broadcast fan-out: {listeners} listeners × {rate} events/s of ~1 KB"),
        &[
            "server",
            "listeners",
            "deliveries/s",
            "last listener p50 / p99 / max (ms)",
            "per delivery p50 / p99 / max (ms)",
            "lost (clients keeping up)",
            "server CPU µs/delivery",
            "RSS KB/connection",
            "others' p99 with 1 % stalled vs before (ms)",
        ],
    );
    row(&mut report, "baseline: tokio-tungstenite", &baseline);
    row(&mut report, "radio24 serve --role api", &radio24);
    let cpu_ratio = radio24.cpu_us_per_delivery() / baseline.cpu_us_per_delivery();
    let r = &radio24;
    report.note(format!(
        "Targets for radio24: no loss for clients that keep up ({} lost: {}); last-listener \
         p99 ≤ 150 ms ({:.1} ms: {}); CPU per delivery ≤ 1.5 × baseline ({cpu_ratio:.2} ×: {}); \
         ≤ 32 KB per connection ({:.1} KB: {}); 1 % stalled raise the others' p99 by ≤ 10 % \
         ({:+.0} %: {}).",
        r.unstalled.lost,
        verdict(r.unstalled.lost == 0),
        r.unstalled.last_listener.p99,
        verdict(r.unstalled.last_listener.p99 <= 150.0),
        verdict(cpu_ratio <= 1.5),
        r.rss_kb_per_connection(),
        verdict(r.rss_kb_per_connection() <= 32.0),
        (r.stall_ratio() - 1.0) * 100.0,
        verdict(r.stall_ratio() <= 1.10),
    ));
    for (name, f) in [("baseline", &baseline), ("radio24", &radio24)] {
        report.note(format!(
            "{name}: server CPU {:.2} s over the {seconds} s phase ({:.0} % of one core), the \
             listeners' {:.2} s ({:.0} %); RSS \
             {:.1} MB idle, {:.1} MB with the listeners; measured phase: {} lost to the \
             clients that read throughout, {} to the 1 % that stall next, which read {} of its \
             captions after being told to stall (counted as lost before they were let read \
             them); while 1 % stalled: {} lost of {} owed to the others; dropped by the end: \
             {} reading, {} of the stalled; resync snapshots: {}.",
            f.cpu_seconds,
            f.cpu_seconds / seconds * 100.0,
            f.listeners_cpu_seconds,
            f.listeners_cpu_seconds / seconds * 100.0,
            f.rss_idle_mb,
            f.rss_connected_mb,
            f.others_before.lost,
            f.unstalled.lost - f.others_before.lost,
            f.drained,
            f.others_stalled.lost,
            f.others_stalled.owed,
            f.dropped_reading,
            f.dropped_stalled,
            f.resyncs,
        ));
    }
    report.note(
        "Latency is from the fake host writing the event to the listener reading it, both in \
         this process; the listeners (two threads) share the machine's cores with the server.",
    );
    report.finish();
}
