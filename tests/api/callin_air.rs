//! Call-ins on air, end to end: listeners call in over `/ws/ptt` before a QANDA hour, the
//! host (on a virtual clock, OpenAI faked at the wire) takes them in order when the hour
//! comes, and everyone hears it: `/ws/broadcast` shows each caller's turn and then the
//! host's answer, each caller's socket sees `live` then `done`, and the recording a caller
//! sent is found in the live stream. With the Realtime voice, the recording goes into a
//! Realtime session and its spoken answer airs. An operator's `take-next` puts one caller
//! through at a time.

use std::sync::Arc;

use chrono::DateTime;
use futures::StreamExt;
use serde_json::{Value, json};

use radio24::cli::Role;
use radio24::host::clock::ScaledClock;

use crate::callins::{Ptt, tone_at};
use crate::fake_openai::{FakeOpenAi, FakeSetup};
use crate::fake_realtime::{ANSWER_HZ, Answering, FakeRealtime};
use crate::helpers::{Deadline, NO_QANDA, PROGRAMME_PATIENCE, TestApp};

/// What the fake's chat model answers (the host's answer).
const ANSWER: &str = "Mount Everest is the tallest, at 8849 metres.";
/// What the fake's transcription hears in any recording.
const TRANSCRIPT: &str = "I sang a long note for you.";
/// The caller's tone: a pitch nothing else on air has.
const TONE_HZ: f64 = 1000.0;

/// Power at `hz` (Goertzel) as a share of a 48 kHz window's whole power.
fn tone_share(window: &[i16], hz: f64) -> f64 {
    tone_share_at(window, hz, 48_000.0)
}

/// Power at `hz` (Goertzel) as a share of the window's whole power, at `rate`.
fn tone_share_at(window: &[i16], hz: f64, rate: f64) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * hz / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in window {
        let x = f64::from(x);
        energy += x * x;
        let s = x + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - k * s1 * s2;
    if energy < 1.0 {
        return 0.0;
    }
    // A pure tone over n samples has Goertzel power n/2 × its energy.
    power / (energy * window.len() as f64 / 2.0)
}

/// The longest run of 100 ms windows in which the tone carries most of the power, in
/// seconds of programme.
fn longest_tone(samples: &[i16], hz: f64) -> f64 {
    let mut best = 0usize;
    let mut run = 0usize;
    for window in samples.chunks_exact(4_800) {
        if tone_share(window, hz) > 0.8 {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best as f64 / 10.0
}

/// The station in `role all`, its host's clock at `start` (Tokyo time) running 10× fast.
async fn station_at(start: &str, overrides: &[(&str, &str)]) -> TestApp {
    let start = DateTime::parse_from_rfc3339(start).unwrap().to_utc();
    let clock = Arc::new(ScaledClock::new(start, 10.0));
    TestApp::spawn_on_clock(Role::All, overrides, clock).await
}

/// Records the live stream from now until the server stops; the task returns its bytes.
async fn record_stream(app: &TestApp) -> tokio::task::JoinHandle<Vec<u8>> {
    let stream = app
        .client
        .get(app.url("/v1/channels/radio24/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let mut body = stream.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    })
}

/// Stops the station and decodes what its stream carried.
async fn what_aired(app: &TestApp, recording: tokio::task::JoinHandle<Vec<u8>>) -> Vec<i16> {
    app.stop().await;
    let bytes = tokio::time::timeout(PROGRAMME_PATIENCE, recording)
        .await
        .expect("the stream ends with the server")
        .unwrap();
    crate::stream::decode(bytes).samples
}

/// Sends `secs` of the caller's tone at `rate` as one recording; its `queued` frame's id.
async fn send_recording(ptt: &mut Ptt, rate: u32, secs: f64) -> String {
    ptt.send(json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": rate}))
        .await;
    for chunk in tone_at(rate, TONE_HZ, secs).chunks(rate as usize) {
        ptt.send_binary(chunk.to_vec()).await;
    }
    ptt.send(json!({"type": "audio_end"})).await;
    let queued = ptt.next().await;
    assert_eq!(queued["type"], "queued", "{queued}");
    queued["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qanda_hour_airs_the_callers_in_order_with_answers() {
    let openai = FakeOpenAi::start_with(FakeSetup {
        script: ANSWER.into(),
        transcript: TRANSCRIPT.into(),
        ..FakeSetup::default()
    })
    .await;
    let base = openai.base_url();
    // 08:59:40 in Tokyo: TOPIC_A until 09:00, then QANDA (the default schedule).
    let app = station_at(
        "2026-11-28T08:59:40+09:00",
        &[
            ("RADIO24__OPENAI__API_KEY", "sk-test-callins"),
            ("RADIO24__OPENAI__BASE_URL", &base),
            ("RADIO24__VOICE__BACKEND", "none"),
        ],
    )
    .await;
    // Everything the station airs from now on.
    let recording = record_stream(&app).await;
    let mut broadcast = app.broadcast("radio24").await;

    // Two callers before the hour: typed, then recorded.
    let (mut aiko, _) = Ptt::greeted(&app, None).await;
    let typed = aiko.call("What is the tallest mountain?").await;
    let typed_id = typed["id"].as_str().unwrap().to_owned();
    let (mut ben, _) = Ptt::greeted(&app, None).await;
    let recorded_id = send_recording(&mut ben, 16_000, 2.0).await;
    // Each caller's socket: live, then done.
    for (ptt, id) in [(&mut aiko, &typed_id), (&mut ben, &recorded_id)] {
        for status in ["live", "done"] {
            let frame = ptt
                .ws
                .wait_for("status", |f| {
                    f["id"] == id.as_str() && f["status"] == status
                })
                .await;
            assert!(frame.get("reason").is_none() || status == "done", "{frame}");
        }
    }

    // The captions: the typed caller's words, the host's answer, the recorded caller's
    // transcript, the host's answer again; in that order, marked by speaker.
    let mut turns: Vec<(String, String)> = Vec::new();
    let mut deadline = Deadline::new("both calls' captions", PROGRAMME_PATIENCE);
    let wanted = [
        ("caller", "What is the tallest mountain?"),
        ("host", ANSWER),
        ("caller", TRANSCRIPT),
        ("host", ANSWER),
    ];
    while turns.len() < wanted.len() {
        let frame: Value = broadcast.next_json_by(&mut deadline).await;
        if frame["type"] != "caption" {
            continue;
        }
        let speaker = frame["speaker"].as_str().unwrap_or("").to_owned();
        let text = frame["text"].as_str().unwrap_or("").to_owned();
        let (want_speaker, want_text) = wanted[turns.len()];
        // Sentences of the answer arrive one caption each; the first names it.
        if speaker == want_speaker && want_text.starts_with(text.trim_end_matches('.')) {
            turns.push((speaker, text));
        }
    }

    // The store has both done, the recording's transcript kept.
    let items: Value = app
        .admin_get("/v1/queue?channel=radio24")
        .await
        .json()
        .await
        .unwrap();
    let items = items["items"].as_array().unwrap();
    let by_id = |id: &str| items.iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(by_id(&typed_id)["status"], "done");
    let audio = by_id(&recorded_id);
    assert_eq!(audio["status"], "done", "{audio}");
    assert_eq!(audio["transcript"], TRANSCRIPT);

    // The caller's recording aired: the tone is in the stream, about as long as it was sent.
    let aired = longest_tone(&what_aired(&app, recording).await, TONE_HZ);
    assert!(
        (1.5..=2.3).contains(&aired),
        "the 2 s tone aired for {aired} s"
    );
    assert!(
        openai
            .transcribe
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the recording was transcribed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_next_puts_one_caller_through_at_a_time() {
    let app = TestApp::spawn(Role::All, &[("RADIO24__SCHEDULE__DEFAULT", NO_QANDA)]).await;
    app.wait_for_status("/ready", 200).await;
    let take_next = async || app.take_next().await;
    let empty = take_next().await;
    assert_eq!(empty.status(), 409);
    assert_eq!(empty.json::<Value>().await.unwrap()["error"], "queue_empty");
    let anonymous = app
        .client
        .post(app.url("/v1/studio/take-next"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Two long calls (each takes seconds to read out, even at this clock's speed).
    let words = "A long question, read out word by word on air. ".repeat(8);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = app
            .post("/v1/queue", None, &json!({"text": words.trim()}))
            .await;
        assert_eq!(resp.status(), 201);
        ids.push(
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let first = take_next().await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<Value>().await.unwrap()["taken"]["id"],
        ids[0].as_str()
    );
    // The host is on the first call: the second stays first in line, uncounted.
    let busy = take_next().await;
    assert_eq!(busy.status(), 409);
    assert_eq!(
        busy.json::<Value>().await.unwrap()["error"],
        "call_in_progress"
    );
    let items: Value = app
        .admin_get("/v1/queue?channel=radio24&status=queued")
        .await
        .json()
        .await
        .unwrap();
    let waiting = items["items"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{items}");
    assert_eq!(waiting[0]["id"], ids[1].as_str());
    assert_eq!(
        (
            waiting[0]["requeues"].as_u64(),
            waiting[0]["status"].as_str()
        ),
        (Some(0), Some("queued"))
    );
}

/// The station with the Realtime voice, 10 s before a QANDA hour, its fake Realtime server
/// answering recordings as `answering` says (keep the fakes for as long as the station).
async fn realtime_station(answering: Answering) -> (FakeOpenAi, FakeRealtime, TestApp) {
    let openai = FakeOpenAi::start_with(FakeSetup {
        script: ANSWER.into(),
        transcript: TRANSCRIPT.into(),
        ..FakeSetup::default()
    })
    .await;
    let realtime = FakeRealtime::start_answering(&openai.server.uri(), answering).await;
    let app = station_at(
        "2026-11-28T08:59:50+09:00",
        &[
            ("RADIO24__OPENAI__API_KEY", "sk-test-realtime"),
            ("RADIO24__OPENAI__BASE_URL", &realtime.base_url),
            ("RADIO24__VOICE__BACKEND", "openai-realtime"),
        ],
    )
    .await;
    (openai, realtime, app)
}

/// A new caller sends 2 s of their tone at 48 kHz; returns when their call is done.
async fn call_with_a_recording_until_done(app: &TestApp) {
    let (mut caller, _) = Ptt::greeted(app, None).await;
    let id = send_recording(&mut caller, 48_000, 2.0).await;
    caller
        .ws
        .wait_for("status", |f| {
            f["id"] == id.as_str() && f["status"] == "done"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_realtime_voice_a_session_hears_the_recording_and_answers() {
    let (_openai, realtime, app) = realtime_station(Answering::Whole).await;
    let recording = record_stream(&app).await;
    call_with_a_recording_until_done(&app).await;

    // The session heard the recording: 2 s at 24 kHz, the caller's pitch.
    let heard = realtime.recordings.lock().unwrap().clone();
    assert_eq!(heard.len(), 1, "one recording sent to the Realtime session");
    let secs = heard[0].len() as f64 / 24_000.0;
    assert!((1.9..=2.1).contains(&secs), "{secs} s sent");
    let middle = &heard[0][12_000..36_000];
    let at_24k: Vec<i16> = middle.to_vec();
    assert!(
        tone_share_at(&at_24k, TONE_HZ, 24_000.0) > 0.8,
        "the caller's tone reached the session"
    );

    // Its answer aired: a second of its pitch in the stream, after the caller's tone.
    let samples = what_aired(&app, recording).await;
    let caller_aired = longest_tone(&samples, TONE_HZ);
    let answer_aired = longest_tone(&samples, ANSWER_HZ);
    assert!(
        (1.5..=2.3).contains(&caller_aired),
        "caller {caller_aired} s"
    );
    assert!(
        (0.7..=1.2).contains(&answer_aired),
        "answer {answer_aired} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_answer_that_is_noise_never_airs_and_the_writer_answers_instead() {
    let (_openai, realtime, app) = realtime_station(Answering::NoiseToRecordings).await;
    let recording = record_stream(&app).await;
    let mut broadcast = app.broadcast("radio24").await;
    call_with_a_recording_until_done(&app).await;
    assert_eq!(
        realtime.recordings.lock().unwrap().len(),
        1,
        "the recording went to the Realtime session, which answered noise"
    );
    // After the caller's turn, the host's caption is the writer's answer to the transcript,
    // not the Realtime answer's marker.
    let caption = |frame: &Value, speaker: &str| {
        (frame["type"] == "caption" && frame["speaker"] == speaker)
            .then(|| frame["text"].as_str().unwrap_or("").to_owned())
    };
    broadcast
        .scan("the caller's turn", |frame| {
            caption(frame, "caller").filter(|text| text == TRANSCRIPT)
        })
        .await;
    let answer = broadcast
        .scan("the host's answer", |frame| caption(frame, "host"))
        .await;
    assert!(
        ANSWER.starts_with(answer.trim_end_matches('.')),
        "the host answered {answer:?}"
    );

    // What aired: the caller's tone, and not one 100 ms of noise.
    let samples = what_aired(&app, recording).await;
    let caller_aired = longest_tone(&samples, TONE_HZ);
    assert!(
        (1.5..=2.3).contains(&caller_aired),
        "caller {caller_aired} s"
    );
    use radio24::host::voice::noise::{Verdict, judge};
    let noisy = samples
        .chunks_exact(4_800)
        .filter(|window| judge(window) == Verdict::Noise)
        .count();
    assert_eq!(noisy, 0, "{noisy} windows of 100 ms aired were noise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagged_call_ins_are_dropped_before_they_air() {
    // The fake flags anything with its marker; the word list is checked offline.
    let openai = FakeOpenAi::start_with(FakeSetup::default()).await;
    let base = openai.base_url();
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__OPENAI__API_KEY", "sk-test-moderation"),
            ("RADIO24__OPENAI__BASE_URL", &base),
            ("RADIO24__VOICE__BACKEND", "none"),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
            ("RADIO24__MODERATION__BLOCKED_WORDS", "sprocket,ねじ"),
        ],
    )
    .await;
    app.wait_for_status("/ready", 200).await;
    let mut broadcast = app.broadcast("radio24").await;
    let (mut caller, _) = Ptt::greeted(&app, None).await;
    for text in [
        "Please say FLAGME on air",
        "I love my Sprocket.",
        "このねじを見てください",
    ] {
        let id = caller.call(text).await["id"].as_str().unwrap().to_owned();
        let taken = app.take_next().await;
        assert_eq!(taken.status(), 200, "{text}");
        let dropped = caller
            .ws
            .wait_for("status", |f| {
                f["id"] == id.as_str() && f["status"] != "live"
            })
            .await;
        assert_eq!(
            (dropped["status"].as_str(), dropped["reason"].as_str()),
            (Some("dropped"), Some("moderation")),
            "{text}"
        );
    }
    // Nothing of theirs aired: up to a studio line spoken after them, no caller's caption.
    assert_eq!(app.speak("That is all for now.").await.status(), 202);
    broadcast
        .scan("the studio line's caption", |frame| {
            assert_ne!(frame["speaker"], "caller", "a flagged call aired: {frame}");
            (frame["type"] == "caption" && frame["text"] == "That is all for now.").then_some(())
        })
        .await;
    assert!(
        openai
            .moderation
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the OpenAI moderation was asked"
    );
}
