//! The host publishes into LiveKit: the station (role all, real clock, espeak-ng voice) joins
//! a fake LiveKit server on loopback (`fake_livekit`), which checks its token, completes the
//! handshake and decodes the Opus RTP packets. What it decodes is compared with what the
//! engine aired over the same stretch: as many 20 ms frames (within 5 %), speech where speech
//! aired. Then the fake crashes and comes back: the host rejoins and audio flows again; at
//! shutdown it leaves.

use radio24::cli::Role;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::fake_livekit::{API_KEY, API_SECRET, FakeLivekit, SfuEvent};
use crate::helpers::{ADMIN_TOKEN, PATIENCE, TestApp, WsClient};

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

/// Waits until decoded audio arrives.
async fn expect_audio(events: &mut mpsc::UnboundedReceiver<SfuEvent>) {
    loop {
        if let SfuEvent::Audio { samples, .. } = next_event(events).await {
            assert_eq!(samples, 960, "20 ms Opus packets");
            return;
        }
    }
}

/// The publisher's state in the next snapshot or `on_air` frame.
async fn next_publisher_status(ws: &mut WsClient) -> Value {
    loop {
        let mut frame = ws.next_json().await;
        let on_air = match frame["type"].as_str() {
            Some("snapshot") => frame["on_air"].take(),
            Some("on_air") => frame["state"].take(),
            _ => continue,
        };
        return on_air["livekit"].clone();
    }
}

/// Waits until the publisher is in `state` after `sessions` sessions.
async fn expect_publisher(ws: &mut WsClient, state: &str, sessions: u64) -> Value {
    loop {
        let livekit = next_publisher_status(ws).await;
        if livekit["state"] == state && livekit["sessions"] == sessions {
            return livekit;
        }
    }
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
    expect_audio(&mut sfu.events).await;

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
    aired.recv().await.unwrap();
    while sfu.events.try_recv().is_ok() {}
    let (mut aired_frames, mut aired_speech) = (0usize, 0usize);
    while aired_frames < WINDOW_FRAMES {
        let frame = aired.recv().await.expect("the playout airs every frame");
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
    for _ in 0..50 {
        expect_audio(&mut sfu.events).await;
    }

    // Shutting down, the host leaves the room.
    app.stop().await;
    loop {
        if let SfuEvent::Left = next_event(&mut sfu.events).await {
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
    loop {
        let livekit = next_publisher_status(&mut ws).await;
        if livekit["state"] == "retrying" && livekit["failures"].as_u64() >= Some(2) {
            assert!(
                livekit["last_error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty()),
                "the reason is shown: {livekit}"
            );
            assert_eq!(livekit["sessions"], 0);
            break;
        }
    }
    // The station itself is unaffected.
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["livekit"]["radio24"]["state"], "retrying");
}

fn rms(frame: &[i16]) -> f64 {
    let sum: f64 = frame.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / frame.len().max(1) as f64).sqrt()
}
