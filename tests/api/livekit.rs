//! The host publishes into LiveKit: the station (role all, real clock, espeak-ng voice) joins
//! a fake LiveKit server on loopback (`fake_livekit`), which checks its token, completes the
//! handshake and decodes the Opus RTP packets. What it decodes is compared with what the
//! engine aired over the same stretch: as many 20 ms frames (within 5 %), speech where speech
//! aired. Then the fake crashes and comes back: the host rejoins and audio flows again; at
//! shutdown it leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use radio24::cli::Role;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::fake_livekit::{API_KEY, API_SECRET, FakeLivekit, SfuEvent};
use crate::helpers::{ADMIN_TOKEN, Deadline, PATIENCE, PROGRAMME_PATIENCE, TestApp, WsClient};

/// Frames of programme compared (10 s).
const WINDOW_FRAMES: usize = 500;
/// A 20 ms frame louder than this holds speech (the programme is normalised to −16 LUFS).
const SPEECH_RMS: f64 = 300.0;

async fn next_event(events: &mut mpsc::UnboundedReceiver<SfuEvent>) -> SfuEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("the fake LiveKit hears from the host in time")
        .expect("the fake LiveKit runs")
}

/// Waits for the host's join and checks what its token allows.
async fn expect_join(events: &mut mpsc::UnboundedReceiver<SfuEvent>) {
    match next_event(events).await {
        SfuEvent::Joined {
            identity,
            room,
            can_publish,
            can_subscribe,
        } => {
            assert_eq!(identity, "host-radio24");
            assert_eq!(room, "radio24");
            assert!(can_publish, "the host may publish");
            assert!(!can_subscribe, "the host subscribes to nothing");
        }
        other => panic!("expected the host to join, got {other:?}"),
    }
}

/// The next event at the fake within `deadline`, which notes it as seen.
async fn next_event_by(
    events: &mut mpsc::UnboundedReceiver<SfuEvent>,
    deadline: &mut Deadline,
) -> SfuEvent {
    let event = deadline
        .step(events.recv())
        .await
        .expect("the fake LiveKit runs");
    match &event {
        // Packets differ only in their loudness: listed as one line, with a count.
        SfuEvent::Audio { samples, .. } => deadline.saw(format!("audio, {samples} samples")),
        other => deadline.saw(format!("{other:?}")),
    }
    event
}

/// Waits until `packets` packets of decoded audio have arrived.
async fn expect_audio(events: &mut mpsc::UnboundedReceiver<SfuEvent>, packets: usize) {
    let mut deadline = Deadline::new(
        format!("{packets} audio packet(s) at the fake LiveKit"),
        PROGRAMME_PATIENCE,
    );
    let mut arrived = 0;
    while arrived < packets {
        if let SfuEvent::Audio { samples, .. } = next_event_by(events, &mut deadline).await {
            assert_eq!(samples, 960, "20 ms Opus packets");
            arrived += 1;
        }
    }
}

/// Reads frames until the publisher's state (in a snapshot or `on_air` frame) satisfies
/// `done`; giving up, the message lists the frames and the states that came instead.
async fn await_publisher(ws: &mut WsClient, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut deadline = Deadline::new(what, PROGRAMME_PATIENCE);
    loop {
        let mut frame = ws.next_json_by(&mut deadline).await;
        let mut on_air = match frame["type"].as_str() {
            Some("snapshot") => frame["on_air"].take(),
            Some("on_air") => frame["state"].take(),
            _ => continue,
        };
        let livekit = on_air["livekit"].take();
        deadline.saw(format!("  livekit: {livekit}"));
        if done(&livekit) {
            return livekit;
        }
    }
}

/// Waits until the publisher is in `state` after `sessions` sessions.
async fn expect_publisher(ws: &mut WsClient, state: &str, sessions: u64) -> Value {
    let what = format!("the LiveKit publisher {state} after {sessions} session(s)");
    await_publisher(ws, &what, |livekit| {
        livekit["state"] == state && livekit["sessions"] == sessions
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_publishes_the_programme_into_livekit_and_rejoins_after_a_restart() {
    let mut sfu = FakeLivekit::start(0).await;
    let url = sfu.url();
    let (app, data) = TestApp::build(
        Role::All,
        &[
            ("RADIO24__VOICE__BACKEND", "espeak-ng"),
            // Real time: the RTP stream is paced by the programme clock.
            ("RADIO24__HOST__CLOCK_SPEED", "1"),
            ("RADIO24__LIVEKIT__API_KEY", API_KEY),
            ("RADIO24__LIVEKIT__API_SECRET", API_SECRET),
            ("RADIO24__LIVEKIT__WS_URL", &url),
            ("RADIO24__LIVEKIT__RECONNECT_MAX_MS", "500"),
        ],
    )
    .await;
    let engine = app.engine().expect("role all runs the host");
    let app = TestApp::run(app, Some(data));
    let mut ws = app.broadcast("radio24").await;

    expect_join(&mut sfu.events).await;
    let status = expect_publisher(&mut ws, "connected", 1).await;
    assert_eq!(status["identity"], "host-radio24");
    assert_eq!(status["room"], "radio24");
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["livekit"]["radio24"]["state"], "connected");
    expect_audio(&mut sfu.events, 1).await;

    // Something to hear, then compare a stretch of what aired with what LiveKit received.
    let resp = app
        .post(
            "/v1/studio/speak",
            Some(ADMIN_TOKEN),
            &json!({"text": "This is Radio24, live in the LiveKit room, with words you can hear. Stay with us for the news and music of the hour.", "mode": "now"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let station = engine
        .station(&radio24::domain::ChannelName::parse("radio24").unwrap())
        .unwrap();
    let mut aired = station.playout.subscribe();
    // Start both counts at the same instant: what reached the fake so far is discarded.
    tokio::time::timeout(PATIENCE, aired.recv())
        .await
        .unwrap_or_else(|_| panic!("the playout aired no frame after {PATIENCE:?}"))
        .unwrap();
    while sfu.events.try_recv().is_ok() {}
    let (mut aired_frames, mut aired_speech) = (0usize, 0usize);
    // 10 s of programme at real time; the deadline leaves room for a busy machine.
    let mut window = Deadline::new(
        format!("{WINDOW_FRAMES} frames of programme"),
        PROGRAMME_PATIENCE,
    );
    while aired_frames < WINDOW_FRAMES {
        let frame = window
            .step(aired.recv())
            .await
            .expect("the playout airs every frame");
        window.saw("a frame aired");
        aired_frames += 1;
        if rms(&frame) > SPEECH_RMS {
            aired_speech += 1;
        }
    }
    let (mut received, mut received_speech) = (0usize, 0usize);
    while let Ok(event) = sfu.events.try_recv() {
        if let SfuEvent::Audio { samples, rms } = event {
            assert_eq!(samples, 960);
            received += 1;
            if rms > SPEECH_RMS {
                received_speech += 1;
            }
        }
    }
    let ratio = received as f64 / aired_frames as f64;
    eprintln!(
        "aired {aired_frames} frames ({aired_speech} speech); LiveKit decoded {received} ({received_speech} speech)"
    );
    assert!(
        (0.95..=1.05).contains(&ratio),
        "LiveKit received {received} packets while {aired_frames} frames aired"
    );
    assert!(
        aired_speech > WINDOW_FRAMES / 5,
        "speech aired: {aired_speech} of {aired_frames} frames"
    );
    let speech_ratio = received_speech as f64 / aired_speech as f64;
    assert!(
        (0.8..=1.2).contains(&speech_ratio),
        "speech reached LiveKit: {received_speech} loud packets for {aired_speech} loud frames"
    );

    // LiveKit goes away and comes back on the same address: the host rejoins by itself.
    let port = sfu.crash().await;
    let mut sfu = FakeLivekit::start(port).await;
    expect_join(&mut sfu.events).await;
    expect_publisher(&mut ws, "connected", 2).await;
    expect_audio(&mut sfu.events, 50).await;

    // Shutting down, the host leaves the room.
    app.stop().await;
    let mut deadline = Deadline::new("the host leaving the room", PATIENCE);
    loop {
        if let SfuEvent::Left = next_event_by(&mut sfu.events, &mut deadline).await {
            break;
        }
    }
}

#[tokio::test]
async fn a_host_that_livekit_refuses_keeps_retrying_and_says_why() {
    let sfu = FakeLivekit::start(0).await;
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__LIVEKIT__API_KEY", API_KEY),
            (
                "RADIO24__LIVEKIT__API_SECRET",
                "not-the-secret-livekit-knows",
            ),
            ("RADIO24__LIVEKIT__WS_URL", &sfu.url()),
            ("RADIO24__LIVEKIT__RECONNECT_MAX_MS", "200"),
        ],
    )
    .await;
    let mut ws = app.broadcast("radio24").await;
    let livekit = await_publisher(
        &mut ws,
        "the LiveKit publisher retrying after 2 failures",
        |livekit| livekit["state"] == "retrying" && livekit["failures"].as_u64() >= Some(2),
    )
    .await;
    assert!(
        livekit["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "the reason is shown: {livekit}"
    );
    assert_eq!(livekit["sessions"], 0);
    // The station itself is unaffected.
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["livekit"]["radio24"]["state"], "retrying");
}

/// Counts the Ogg pages a live-stream listener receives, on a task of its own, for as long
/// as the stream lasts.
fn count_stream_pages(
    mut stream: reqwest::Response,
) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let pages = Arc::new(AtomicUsize::new(0));
    let counter = pages.clone();
    let task = tokio::spawn(async move {
        // The capture pattern may straddle two chunks: keep the last three bytes.
        let mut tail: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = stream.chunk().await {
            tail.extend_from_slice(&chunk);
            let found = tail.windows(4).filter(|w| w == b"OggS").count();
            counter.fetch_add(found, Ordering::SeqCst);
            tail.drain(..tail.len().saturating_sub(3));
        }
    });
    (pages, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_livekit_cut_the_station_airs_on_over_http_and_the_publisher_rejoins_with_backoff() {
    let mut sfu = FakeLivekit::start(0).await;
    let url = sfu.url();
    let app = TestApp::spawn(
        Role::All,
        &[
            // Real time: the RTP stream is paced by the programme clock.
            ("RADIO24__HOST__CLOCK_SPEED", "1"),
            ("RADIO24__LIVEKIT__API_KEY", API_KEY),
            ("RADIO24__LIVEKIT__API_SECRET", API_SECRET),
            ("RADIO24__LIVEKIT__WS_URL", &url),
            ("RADIO24__LIVEKIT__RECONNECT_MAX_MS", "1000"),
        ],
    )
    .await;
    let mut ws = app.broadcast("radio24").await;
    expect_join(&mut sfu.events).await;
    expect_publisher(&mut ws, "connected", 1).await;
    expect_audio(&mut sfu.events, 10).await;
    let stream = app.get("/v1/channels/radio24/stream").await;
    assert_eq!(stream.status(), 200);
    let (pages, counting) = count_stream_pages(stream);

    // The link is cut: every session's connection closes and nothing listens any more.
    let port = sfu.crash().await;
    let pages_at_cut = pages.load(Ordering::SeqCst);
    // The publisher notices and keeps trying, each failure waiting longer (250 ms, 500 ms,
    // then 1 s): two failures in a row is at least one wait.
    let retrying = await_publisher(
        &mut ws,
        "the LiveKit publisher retrying after 2 failures",
        |livekit| livekit["state"] == "retrying" && livekit["failures"].as_u64() >= Some(2),
    )
    .await;
    assert_eq!(retrying["sessions"], 1, "{retrying}");
    assert!(retrying["last_error"].is_string(), "{retrying}");
    // Meanwhile the station airs on: captions, and the HTTP stream's pages.
    let resp = app
        .post(
            "/v1/studio/speak",
            Some(ADMIN_TOKEN),
            &json!({"text": "Still on air without LiveKit.", "mode": "now"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let segment: Value = resp.json().await.unwrap();
    let captions =
        crate::broadcast::captions_of(&mut ws, segment["segment_id"].as_str().unwrap()).await;
    assert_eq!(captions, ["Still on air without LiveKit."]);
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["livekit"]["radio24"]["state"], "retrying",
        "{health}"
    );
    crate::helpers::poll_until(
        "the HTTP stream going on while LiveKit is away (10 pages: 1 s)",
        PROGRAMME_PATIENCE,
        std::time::Duration::from_millis(100),
        async || {
            let during = pages.load(Ordering::SeqCst) - pages_at_cut;
            if during >= 10 {
                Ok(())
            } else {
                Err(format!("{during} pages"))
            }
        },
    )
    .await;
    assert!(
        !counting.is_finished(),
        "the stream listener is still connected"
    );

    // LiveKit is back on the same address: the publisher rejoins and publishes again.
    let mut sfu = FakeLivekit::start(port).await;
    expect_join(&mut sfu.events).await;
    expect_publisher(&mut ws, "connected", 2).await;
    expect_audio(&mut sfu.events, 50).await;
    assert!(!counting.is_finished(), "the stream listener was never cut");
    counting.abort();
}

fn rms(frame: &[i16]) -> f64 {
    let sum: f64 = frame.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / frame.len().max(1) as f64).sqrt()
}
