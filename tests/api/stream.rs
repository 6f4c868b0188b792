//! `GET /v1/channels/{name}/stream`: read the live Ogg/Opus stream over HTTP, decode it with
//! the `ogg` and `opus` crates, and check what a listener would hear. "Seconds" below are
//! programme seconds, measured by the stream's own granule positions (48 kHz samples of
//! programme), never by the wall clock.
//!
//! That the stream is contiguous (no page of programme missing) is checked at real time
//! (`host.clock_speed` 1). Faster than real time, a machine too busy to keep up skips
//! programme (the frame clock skips ahead, a sink that falls behind misses frames), so the
//! tests that run faster check only that pages come in order.

use std::time::Duration;

use radio24::bus::audio::{PageSplitter, granule_position};
use radio24::cli::Role;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, PATIENCE, TestApp};

const RATE: u64 = 48_000;
/// Samples per page: 5 packets of 20 ms (`stream.page_packets` = 5).
const PAGE_SAMPLES: u64 = 5 * 960;

/// An open stream, read page by page.
struct Listener {
    resp: reqwest::Response,
    splitter: PageSplitter,
    /// Every page read so far, in order.
    pages: Vec<bytes::Bytes>,
}

impl Listener {
    async fn open(app: &TestApp, channel: &str) -> Self {
        let resp = app.get(&format!("/v1/channels/{channel}/stream")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "audio/ogg");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        Self {
            resp,
            splitter: PageSplitter::new(),
            pages: Vec::new(),
        }
    }

    /// The next page; `None` when the server ended the stream.
    async fn next_page(&mut self) -> Option<bytes::Bytes> {
        loop {
            if let Some(page) = self.splitter.next_page().expect("the body is Ogg") {
                self.pages.push(page.clone());
                return Some(page);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.resp.chunk())
                .await
                .expect("stream data in time");
            match chunk {
                Ok(Some(bytes)) => self.splitter.push(&bytes),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Reads until `secs` of programme audio (after the headers) have arrived.
    async fn read_programme(&mut self, secs: u64) {
        let target = self.audio_pages().len() as u64 + secs * RATE / PAGE_SAMPLES;
        while (self.audio_pages().len() as u64) < target {
            self.next_page().await.expect("the stream goes on");
        }
    }

    fn audio_pages(&self) -> &[bytes::Bytes] {
        self.pages.get(2..).unwrap_or_default()
    }

    fn bytes(&self) -> Vec<u8> {
        self.pages.iter().flat_map(|p| p.to_vec()).collect()
    }
}

/// What a decoder makes of a stream.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub sample_rate: u32,
    pub channels: u8,
    pub samples: Vec<i16>,
}

impl Decoded {
    fn rms(&self) -> f64 {
        let sum: f64 = self.samples.iter().map(|s| f64::from(*s).powi(2)).sum();
        (sum / self.samples.len().max(1) as f64).sqrt()
    }
}

/// Parses pages into packets (`ogg`), checks the two headers, decodes the rest (`opus`).
pub(crate) fn decode(bytes: Vec<u8>) -> Decoded {
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let head = reader.read_packet().unwrap().expect("OpusHead");
    assert!(head.first_in_stream());
    assert_eq!(&head.data[..8], b"OpusHead");
    let serial = head.stream_serial();
    let channels = head.data[9];
    let sample_rate = u32::from_le_bytes(head.data[12..16].try_into().unwrap());
    let tags = reader.read_packet().unwrap().expect("OpusTags");
    assert_eq!(&tags.data[..8], b"OpusTags");
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut samples = Vec::new();
    let mut out = vec![0i16; 5760];
    while let Some(packet) = reader.read_packet().unwrap() {
        assert_eq!(packet.stream_serial(), serial, "one logical stream");
        let n = decoder.decode(&packet.data, &mut out, false).unwrap();
        samples.extend_from_slice(&out[..n]);
    }
    Decoded {
        sample_rate,
        channels,
        samples,
    }
}

/// Granule positions of the audio pages go up by exactly one page of programme each: the
/// listener missed nothing that aired.
/// Pages in programme order, whole pages apart (gaps allowed: see the module's doc).
fn assert_in_order(pages: &[bytes::Bytes]) {
    let granules: Vec<u64> = pages.iter().map(|p| granule_position(p).unwrap()).collect();
    for pair in granules.windows(2) {
        assert!(
            pair[1] > pair[0] && (pair[1] - pair[0]) % PAGE_SAMPLES == 0,
            "pages out of order: {granules:?}"
        );
    }
}

/// Not a page of programme missing (at real time).
fn assert_contiguous(pages: &[bytes::Bytes]) {
    let granules: Vec<u64> = pages.iter().map(|p| granule_position(p).unwrap()).collect();
    for pair in granules.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            PAGE_SAMPLES,
            "a gap in the programme: {granules:?}"
        );
    }
}

async fn stream_listeners(app: &TestApp, channel: &str) -> u64 {
    let health: Value = app.get("/health").await.json().await.unwrap();
    health["stream_listeners"][channel].as_u64().unwrap_or(0)
}

async fn wait_for_listeners(app: &TestApp, channel: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE * 4;
    loop {
        let now = stream_listeners(app, channel).await;
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never had {n} stream listeners (has {now})",
            app.address
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_decodes_to_the_programme_with_its_speech() {
    // Real time: the contiguity check below must hold however busy the machine is.
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__VOICE__BACKEND", "espeak-ng"),
            ("RADIO24__HOST__CLOCK_SPEED", "1"),
        ],
    )
    .await;
    let mut listener = Listener::open(&app, "radio24").await;
    wait_for_listeners(&app, "radio24", 1).await;
    let resp = app
        .post(
            "/v1/studio/speak",
            Some(ADMIN_TOKEN),
            &json!({"text": "This is Radio24, live on the stream, with words you can hear.", "mode": "now"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    listener.read_programme(5).await;

    assert_contiguous(listener.audio_pages());
    let decoded = decode(listener.bytes());
    assert_eq!((decoded.sample_rate, decoded.channels), (48_000, 1));
    let pages = listener.audio_pages().len() as u64;
    assert_eq!(decoded.samples.len() as u64, pages * PAGE_SAMPLES);
    assert!(pages * PAGE_SAMPLES >= 5 * RATE);
    let rms = decoded.rms();
    let peak = decoded.samples.iter().map(|s| s.saturating_abs()).max();
    assert!(rms > 300.0, "speech is heard: rms {rms:.0}, peak {peak:?}");

    // The same bytes through the reference decoder, when it is installed.
    if let Ok(dir) = tempfile::tempdir()
        && std::process::Command::new("opusdec")
            .arg("--version")
            .output()
            .is_ok()
    {
        let input = dir.path().join("stream.opus");
        let output = dir.path().join("stream.wav");
        std::fs::write(&input, listener.bytes()).unwrap();
        let status = std::process::Command::new("opusdec")
            .arg("--quiet")
            .arg(&input)
            .arg(&output)
            .status()
            .unwrap();
        assert!(status.success(), "opusdec accepts the stream");
        let wav = std::fs::metadata(&output).unwrap().len();
        // 16-bit mono at 48 kHz, give or take the pre-skip and the WAV header.
        assert!(
            wav >= (pages * PAGE_SAMPLES - 960) * 2,
            "opusdec wrote {wav} bytes"
        );
    }

    drop(listener);
    wait_for_listeners(&app, "radio24", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_listener_is_dropped_without_delaying_the_others() {
    // A small send buffer and listener queue, and speech (silence encodes to a few bytes a
    // page), so the stall shows after a few seconds of programme; real time, so the
    // reader's stream must be contiguous.
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__VOICE__BACKEND", "espeak-ng"),
            ("RADIO24__SERVER__SEND_BUFFER_BYTES", "16384"),
            ("RADIO24__STREAM__LISTENER_BUFFER_PAGES", "10"),
            ("RADIO24__HOST__CLOCK_SPEED", "1"),
        ],
    )
    .await;
    let mut reader = Listener::open(&app, "radio24").await;
    // Opens the stream and never reads a byte, with a small receive buffer (as a phone on a
    // bad network would have) so that its socket fills up instead of the kernel absorbing
    // megabytes on loopback.
    let stalled = stalled_listener(&app, "radio24").await;
    wait_for_listeners(&app, "radio24", 2).await;

    // Keep reading while the stalled one fills its socket and its queue, until it is dropped.
    let deadline = tokio::time::Instant::now() + PATIENCE * 8;
    loop {
        reader.read_programme(1).await;
        if stream_listeners(&app, "radio24").await == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled listener was never dropped"
        );
    }
    // And the reader goes on after it.
    reader.read_programme(2).await;
    assert_contiguous(reader.audio_pages());
    let decoded = decode(reader.bytes());
    assert_eq!(
        decoded.samples.len() as u64,
        reader.audio_pages().len() as u64 * PAGE_SAMPLES
    );

    // The stalled listener's stream ends once it reads what was queued for it.
    let received = read_to_end(stalled).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        &received[..20]
    );
    assert!(
        received.windows(4).any(|w| w == b"OggS"),
        "it got pages before it stalled"
    );
    assert_eq!(stream_listeners(&app, "radio24").await, 1);
}

/// A raw HTTP client of the stream with a 4 KiB receive buffer that reads nothing.
async fn stalled_listener(app: &TestApp, channel: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .unwrap();
    stream
        .write_all(
            format!("GET /v1/channels/{channel}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

/// Everything the server still sends on `stream`, until it closes or goes quiet.
async fn read_to_end(mut stream: tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // A dropped listener's body ends (the chunked terminator), though the connection may
    // stay open for keep-alive: stop at the terminator, or at the close.
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                received.extend_from_slice(&buf[..n]);
                if received.ends_with(b"\r\n0\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("the stalled listener's stream never ended"),
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_split_mode_listeners_share_one_upstream_to_the_host() {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let url = host.address.clone();
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__HOST_URL", &url),
            ("RADIO24__BUS__REQUEST_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    api.wait_for_status("/ready", 200).await;

    let mut first = Listener::open(&api, "radio24").await;
    let mut second = Listener::open(&api, "radio24").await;
    wait_for_listeners(&api, "radio24", 2).await;
    wait_for_listeners(&host, "radio24", 1).await;
    for listener in [&mut first, &mut second] {
        listener.read_programme(3).await;
        assert_in_order(listener.audio_pages());
        let decoded = decode(listener.bytes());
        assert_eq!(decoded.sample_rate, 48_000);
        assert_eq!(
            decoded.samples.len() as u64,
            listener.audio_pages().len() as u64 * PAGE_SAMPLES
        );
    }
    // Both hear the same stream: the same serial number.
    assert_eq!(first.pages[0], second.pages[0]);
    assert_eq!(stream_listeners(&host, "radio24").await, 1);

    // The last listener leaving closes the upstream.
    drop(first);
    drop(second);
    wait_for_listeners(&api, "radio24", 0).await;
    wait_for_listeners(&host, "radio24", 0).await;

    // With the host gone, a listener's stream ends (after bus.request_timeout_ms), and
    // new requests are told so instead of hanging.
    let mut orphan = Listener::open(&api, "radio24").await;
    orphan.read_programme(1).await;
    host.stop().await;
    while orphan.next_page().await.is_some() {}
    wait_for_listeners(&api, "radio24", 0).await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let resp = api
            .client
            .request(method.clone(), api.url("/v1/channels/radio24/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{method}");
        if method == reqwest::Method::GET {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "host_unavailable");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_range_and_unknown_channels() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let head = app
        .client
        .head(app.url("/v1/channels/radio24/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "audio/ogg");
    assert_eq!(head.headers()["cache-control"], "no-store");
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(stream_listeners(&app, "radio24").await, 0);

    // A live stream is not seekable: a Range is answered with the stream from now.
    let mut ranged = app
        .client
        .get(app.url("/v1/channels/radio24/stream"))
        .header("Range", "bytes=100-200")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 200);
    assert_eq!(ranged.headers()["accept-ranges"], "none");
    let first = tokio::time::timeout(PATIENCE, ranged.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..4], b"OggS");
    drop(ranged);

    for path in [
        "/v1/channels/nowhere/stream",
        "/v1/channels/Bad%20Name!/stream",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unknown_channel", "{path}");
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 404, "HEAD {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_host_restart_listeners_restart_on_the_new_stream() {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let url = host.address.clone();
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &url)]).await;
    api.wait_for_status("/ready", 200).await;
    let mut before = Listener::open(&api, "radio24").await;
    before.read_programme(1).await;

    let host_port = host.port;
    host.stop().await;
    let settings = crate::helpers::settings(&[("RADIO24__SERVER__PORT", &host_port.to_string())]);
    let app = radio24::startup::Application::build(settings, Role::Host)
        .await
        .expect("host restarts on its port");
    let _host = TestApp::run(app, None);

    // The relay reconnects, finds a new Ogg stream (new serial) and ends the old listener,
    // whose player would reconnect: a new listener hears the new stream.
    while before.next_page().await.is_some() {}
    let mut after = Listener::open(&api, "radio24").await;
    after.read_programme(1).await;
    assert_ne!(before.pages[0], after.pages[0], "a new stream, new headers");
    let decoded = decode(after.bytes());
    assert_eq!(
        decoded.samples.len() as u64,
        after.audio_pages().len() as u64 * PAGE_SAMPLES
    );
    assert_in_order(before.audio_pages());
}
