//! Call-ins over real sockets: `/ws/ptt` frame by frame, `POST /v1/queue`, the operators'
//! queue routes, and what `/ws/broadcast` learns of the queue. The main flow runs on SQLite
//! and on PostgreSQL.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use radio24::cli::Role;

use crate::helpers::{ADMIN_TOKEN, NO_QANDA, TestApp, TestDb, WsClient, WsRead};

/// A `/ws/ptt` client.
pub(crate) struct Ptt {
    pub(crate) ws: WsClient,
}

impl Ptt {
    pub(crate) async fn open(app: &TestApp) -> Self {
        let url = format!("ws://127.0.0.1:{}/ws/ptt?channel=radio24", app.port);
        Self {
            ws: WsClient::connect(&url).await,
        }
    }

    /// Opens a socket and says hello (as `identity`, when given); the `ready` frame.
    pub(crate) async fn greeted(app: &TestApp, identity: Option<(&str, &str)>) -> (Self, Value) {
        let mut ptt = Self::open(app).await;
        let hello = match identity {
            Some((user_id, token)) => {
                json!({"type": "hello", "user_id": user_id, "caller_token": token})
            }
            None => json!({"type": "hello"}),
        };
        ptt.send(hello).await;
        let ready = ptt.next().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        (ptt, ready)
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.ws
            .ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .ws
            .send(Message::Binary(bytes.into()))
            .await
            .unwrap();
    }

    pub(crate) async fn next(&mut self) -> Value {
        self.ws.next_json().await
    }

    /// Sends `frame` and expects an error frame with `code`.
    pub(crate) async fn refused(&mut self, frame: Value, code: &str) {
        self.send(frame.clone()).await;
        let answer = self.next().await;
        assert_eq!(answer["type"], "error", "{frame} → {answer}");
        assert_eq!(answer["error"], code, "{frame} → {answer}");
        assert!(answer["message"].is_string());
    }

    /// Sends a text call-in and returns the `queued` frame.
    pub(crate) async fn call(&mut self, text: &str) -> Value {
        self.send(json!({"type": "text", "text": text})).await;
        let queued = self.next().await;
        assert_eq!(queued["type"], "queued", "{queued}");
        queued
    }
}

/// `secs` of a 440 Hz tone at `rate`, as 16-bit little-endian PCM.
fn tone(rate: u32, secs: f64) -> Vec<u8> {
    tone_at(rate, 440.0, secs)
}

/// `secs` of a `hz` tone at `rate`, as 16-bit little-endian PCM.
pub(crate) fn tone_at(rate: u32, hz: f64, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as usize;
    (0..n)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            (((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16).to_le_bytes()
        })
        .collect()
}

async fn queue_items(app: &TestApp) -> Vec<Value> {
    let resp = app.admin_get("/v1/queue?channel=radio24").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

/// The flow every store must carry: text and audio call-ins, positions, limits, identity,
/// cancel, moderation, the recording back as WAV.
async fn the_call_in_flow(app: &TestApp) {
    let mut broadcast = app.broadcast("radio24").await;
    let snapshot = broadcast.next_json().await;
    assert_eq!(snapshot["queue"]["length"], 0, "{snapshot}");

    let (mut aiko, ready) = Ptt::greeted(app, None).await;
    let aiko_id = ready["user_id"].as_str().unwrap().to_owned();
    let aiko_token = ready["caller_token"].as_str().unwrap().to_owned();
    assert!(aiko_id.len() >= 32, "{aiko_id}");
    assert_eq!(ready["limits"]["max_text_chars"], 500);
    assert_eq!(ready["limits"]["max_waiting"], 3);

    // A typed call-in, then a recorded one.
    let first = aiko.call("こんにちは、質問があります。").await;
    assert_eq!(first["position"], 1);
    aiko.send(json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 16000}))
        .await;
    let recording = tone(16_000, 1.0);
    for chunk in recording.chunks(8_000) {
        aiko.send_binary(chunk.to_vec()).await;
    }
    aiko.send(json!({"type": "audio_end"})).await;
    let second = aiko.next().await;
    assert_eq!(second["type"], "queued", "{second}");
    assert_eq!(second["position"], 2);
    let second_id = second["id"].as_str().unwrap().to_owned();

    // /ws/broadcast sees the queue: its length and ids, never the text.
    let frame = broadcast.wait_for("queue", |f| f["length"] == 2).await;
    assert_eq!(frame["ids"][1], second_id.as_str());
    assert!(!frame.to_string().contains("質問"), "{frame}");
    assert!(!frame.to_string().contains(&aiko_id), "{frame}");

    // The operators' view: text, duration, no audio; the recording as WAV.
    let items = queue_items(app).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["text"], "こんにちは、質問があります。");
    assert_eq!(items[1]["kind"], "audio");
    assert_eq!(items[1]["duration_ms"], 1000);
    let wav = app.admin_get(&format!("/v1/queue/{second_id}/audio")).await;
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    let wav = wav.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[44..], &recording[..], "the recording, byte for byte");

    // A third, then the limit of three waiting: refused, and the socket still works.
    aiko.call("三つ目").await;
    aiko.refused(
        json!({"type": "text", "text": "四つ目"}),
        "too_many_waiting",
    )
    .await;

    // Another caller queues behind; a reconnect with the token is the same caller and hears
    // about its items again; a borrowed id without the token is a new caller.
    let (mut ken, _) = Ptt::greeted(app, None).await;
    let kens = ken.call("ケンです").await;
    assert_eq!(kens["position"], 4);
    let (mut again, ready) = Ptt::greeted(app, Some((&aiko_id, &aiko_token))).await;
    assert_eq!(ready["user_id"], aiko_id.as_str());
    let mut statuses = 0;
    while statuses < 3 {
        let frame = again.next().await;
        if frame["type"] == "status" {
            assert_eq!(frame["status"], "queued", "{frame}");
            statuses += 1;
        }
    }
    let (_, stranger) = Ptt::greeted(app, Some((&aiko_id, "00".repeat(32).as_str()))).await;
    assert_ne!(stranger["user_id"], aiko_id.as_str());

    // Ken cannot cancel Aiko's item; Aiko can. Ken moves up, and hears it.
    let first_id = first["id"].as_str().unwrap();
    ken.refused(json!({"type": "cancel", "id": first_id}), "unknown_item")
        .await;
    aiko.send(json!({"type": "cancel", "id": first_id})).await;
    let cancelled = aiko.next().await;
    assert_eq!(
        (cancelled["type"].as_str(), cancelled["status"].as_str()),
        (Some("status"), Some("dropped")),
        "{cancelled}"
    );
    assert_eq!(cancelled["reason"], "cancelled");
    let moved = ken.next().await;
    assert_eq!(
        (moved["type"].as_str(), moved["position"].as_u64()),
        (Some("position"), Some(3)),
        "{moved}"
    );

    // An operator raises Ken to the front, then drops him.
    let ken_id = kens["id"].as_str().unwrap();
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/v1/queue/{ken_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let raised = patch(json!({"priority": 10})).await.unwrap();
    assert_eq!(raised.status(), 200);
    let moved = ken.next().await;
    assert_eq!(moved["position"], 1, "{moved}");
    let dropped = patch(json!({"status": "dropped"})).await.unwrap();
    assert_eq!(dropped.status(), 200);
    let status = ken.next().await;
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("dropped"), Some("operator")),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_in_flow_on_sqlite() {
    // No QANDA hour: the flow counts call-ins that stay queued until the operator acts.
    let app = TestApp::spawn(Role::All, &[("RADIO24__SCHEDULE__DEFAULT", NO_QANDA)]).await;
    the_call_in_flow(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_in_flow_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__DATABASE__URL", &db.url),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
        ],
    )
    .await;
    the_call_in_flow(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mistake_gets_an_error_frame_and_the_socket_stays_usable() {
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__QUEUE__MAX_AUDIO_SECS", "1"),
            ("RADIO24__QUEUE__MAX_FRAME_BYTES", "4096"),
        ],
    )
    .await;
    let mut ptt = Ptt::open(&app).await;
    ptt.refused(json!({"type": "text", "text": "hi"}), "hello_first")
        .await;
    ptt.send(json!({"type": "hello"})).await;
    assert_eq!(ptt.next().await["type"], "ready");

    ptt.send_binary(b"not json".to_vec()).await;
    let answer = ptt.next().await;
    assert_eq!(answer["error"], "audio_not_started", "{answer}");
    ptt.ws
        .ws
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(ptt.next().await["error"], "invalid_json");
    ptt.refused(json!({"type": "shout"}), "invalid_frame").await;
    ptt.refused(json!({"type": "text"}), "invalid_frame").await;
    ptt.refused(
        json!({"type": "text", "text": "x".repeat(501)}),
        "text_too_long",
    )
    .await;
    ptt.refused(json!({"type": "text", "text": "   "}), "empty_text")
        .await;
    ptt.refused(
        json!({"type": "audio_start", "encoding": "mp3", "sample_rate": 16000}),
        "unsupported_encoding",
    )
    .await;
    ptt.refused(
        json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 44100}),
        "unsupported_sample_rate",
    )
    .await;
    ptt.refused(json!({"type": "audio_end"}), "audio_not_started")
        .await;
    ptt.refused(json!({"type": "cancel", "id": "nope"}), "unknown_item")
        .await;

    // A frame over the limit is skipped with an error; the socket goes on.
    ptt.send_binary(vec![0; 10_000]).await;
    assert_eq!(ptt.next().await["error"], "frame_too_big");

    // A recording over 1 s: refused when it goes over, and nothing is queued.
    ptt.send(json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 16000}))
        .await;
    ptt.refused(
        json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 16000}),
        "audio_in_progress",
    )
    .await;
    for chunk in tone(16_000, 1.5).chunks(4_000) {
        ptt.send_binary(chunk.to_vec()).await;
    }
    assert_eq!(ptt.next().await["error"], "audio_too_long");
    ptt.send(json!({"type": "audio_end"})).await;

    // Still usable: a call-in goes through, and it is the only item.
    let queued = ptt.call("まだ使えます").await;
    assert_eq!(queued["position"], 1);
    assert_eq!(queue_items(&app).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_closes_mid_recording_leaves_no_item() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let (mut ptt, _) = Ptt::greeted(&app, None).await;
    ptt.send(json!({"type": "audio_start", "encoding": "pcm_s16le", "sample_rate": 48000}))
        .await;
    ptt.send_binary(tone(48_000, 0.5)).await;
    ptt.ws.ws.close(None).await.unwrap();
    drop(ptt);
    // A later call-in of someone else's is first: nothing was left behind.
    let (mut other, _) = Ptt::greeted(&app, None).await;
    assert_eq!(other.call("次の人").await["position"], 1);
    assert_eq!(queue_items(&app).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_get_an_error_frame_and_a_close() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = WsClient::connect(&format!(
        "ws://127.0.0.1:{}/ws/ptt?channel=nowhere",
        app.port
    ))
    .await;
    let frame = ws.next_json().await;
    assert_eq!(frame["error"], "unknown_channel", "{frame}");
    match ws.read().await {
        WsRead::Closed(Some((code, _))) => assert_eq!(code, 1008),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_call_ins_over_http_follow_the_same_rules() {
    let app = TestApp::spawn(Role::All, &[("RADIO24__QUEUE__MAX_PER_USER_PER_HOUR", "2")]).await;
    let resp = app
        .post("/v1/queue", None, &json!({"text": "HTTPから"}))
        .await;
    assert_eq!(resp.status(), 201);
    let first: Value = resp.json().await.unwrap();
    assert_eq!(first["position"], 1);
    let (user_id, token) = (
        first["user_id"].as_str().unwrap().to_owned(),
        first["caller_token"].as_str().unwrap().to_owned(),
    );
    // The same caller, proven by the token.
    let resp = app
        .post(
            "/v1/queue",
            None,
            &json!({"text": "二回目", "user_id": user_id, "caller_token": token}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second["user_id"], user_id.as_str());
    assert_eq!(second["position"], 2);
    // Its hourly limit (2 here) is reached.
    let resp = app
        .post(
            "/v1/queue",
            None,
            &json!({"text": "三回目", "user_id": user_id, "caller_token": token}),
        )
        .await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "too_many_this_hour");
    // A borrowed id without its token is a new caller.
    let resp = app
        .post(
            "/v1/queue",
            None,
            &json!({"text": "なりすまし", "user_id": user_id}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let other: Value = resp.json().await.unwrap();
    assert_ne!(other["user_id"], user_id.as_str());

    for (body, status, code) in [
        (json!({"text": ""}), 400, "empty_text"),
        (json!({"text": "x".repeat(501)}), 400, "text_too_long"),
        (
            json!({"text": "hi", "channel": "nowhere"}),
            404,
            "unknown_channel",
        ),
        (json!({"txt": "hi"}), 400, "invalid_json"),
    ] {
        let resp = app.post("/v1/queue", None, &body).await;
        assert_eq!(resp.status(), status, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"], code, "{body}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_routes_need_the_admin_token() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let id = uuid::Uuid::new_v4();
    let anonymous = [
        app.client.get(app.url("/v1/queue")).send().await.unwrap(),
        app.client
            .get(app.url(&format!("/v1/queue/{id}/audio")))
            .send()
            .await
            .unwrap(),
        app.client
            .patch(app.url(&format!("/v1/queue/{id}")))
            .json(&json!({"status": "dropped"}))
            .send()
            .await
            .unwrap(),
    ];
    for resp in anonymous {
        assert_eq!(resp.status(), 401, "{}", resp.url());
    }
    let resp = app.admin_get(&format!("/v1/queue/{id}/audio")).await;
    assert_eq!(resp.status(), 404);
    let resp = app.admin_get("/v1/queue?status=sideways").await;
    assert_eq!(resp.status(), 400);
}
