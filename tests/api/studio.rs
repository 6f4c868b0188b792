use radio24::cli::Role;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, BUS_TOKEN, PATIENCE, TestApp};

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    assert!(body["message"].is_string(), "{body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_routes_need_the_admin_token() {
    let app = TestApp::spawn(Role::All, &[]).await;
    for token in [None, Some("wrong"), Some(BUS_TOKEN)] {
        let resp = app
            .post("/v1/studio/speak", token, &json!({"text": "hi"}))
            .await;
        assert_eq!(error_code(resp).await, (401, "unauthorized".into()));
        let resp = app.post("/v1/studio/script", token, &json!({})).await;
        assert_eq!(error_code(resp).await, (401, "unauthorized".into()));
    }
}

/// Sends `head` (request line and headers) and the start of a body that never finishes;
/// returns what the server answers within [`PATIENCE`] (empty if nothing).
async fn answer_to_a_stalled_body(app: &TestApp, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    socket
        .write_all(
            format!("{head}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_checked_before_the_body_is_read() {
    let app = TestApp::spawn(Role::All, &[]).await;
    // Without the token: 401 at once, though the body has not arrived (and never will).
    for head in [
        "POST /v1/studio/speak HTTP/1.1\r\nHost: radio24\r\n",
        "POST /v1/studio/speak HTTP/1.1\r\nHost: radio24\r\nAuthorization: Bearer wrong\r\n",
        // The host's bus routes, served on the same port in role all.
        "POST /speak HTTP/1.1\r\nHost: radio24\r\n",
        "PUT /programme HTTP/1.1\r\nHost: radio24\r\n",
    ] {
        let answer = answer_to_a_stalled_body(&app, head).await;
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "{head:?} got {answer:?}"
        );
        assert!(answer.contains(r#""error":"unauthorized""#), "{answer}");
    }
    // With it, the server waits for the body as it should.
    let head = format!(
        "POST /v1/studio/speak HTTP/1.1\r\nHost: radio24\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
    );
    let answer = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        answer_to_a_stalled_body(&app, &head),
    )
    .await;
    assert!(answer.is_err(), "answered before the body came: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let speak_with = async |authorization: &str| {
        app.client
            .post(app.url("/v1/studio/speak"))
            .header("Authorization", authorization)
            .json(&json!({"text": "hi"}))
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap()
            .status()
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let status = speak_with(&format!("{scheme} {ADMIN_TOKEN}")).await;
        assert_eq!(status, 202, "{scheme}");
    }
    for header in ["Basic dGVzdA==", "Bearer", "Bearertest-admin-token", ""] {
        assert_eq!(speak_with(header).await, 401, "{header:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_speak_requests_get_clear_4xx_errors() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let long = "あ".repeat(2001);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"text": ""}), 400, "empty_text"),
        (json!({"text": "   "}), 400, "empty_text"),
        (json!({"text": long}), 400, "text_too_long"),
        (
            json!({"text": "hi", "channel": "nope"}),
            404,
            "unknown_channel",
        ),
        (
            json!({"text": "hi", "channel": "Bad Name!"}),
            400,
            "invalid_json",
        ),
        (json!({"text": "hi", "mode": "later"}), 400, "invalid_json"),
        (json!({"txt": "hi"}), 400, "invalid_json"),
        (json!("hi"), 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let resp = app.post("/v1/studio/speak", Some(ADMIN_TOKEN), &body).await;
        assert_eq!(error_code(resp).await, (status, code.into()), "for {body}");
    }
    let resp = app
        .client
        .post(app.url("/v1/studio/speak"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (400, "invalid_json".into()));
    let resp = app
        .client
        .post(app.url("/v1/studio/speak"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 100 * 1024])
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (413, "payload_too_large".into()));
    // Exactly at the limit is fine, and the process is still serving.
    let resp = app.speak(&"あ".repeat(2000)).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_preview_names_block_topic_and_writer_without_airing() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = app.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let resp = app
        .post(
            "/v1/studio/script",
            Some(ADMIN_TOKEN),
            &json!({"block": "NEWS", "topic": "宇宙"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let script: Value = resp.json().await.unwrap();
    assert_eq!(script["block"], "NEWS");
    assert_eq!(script["topic"], "宇宙");
    assert_eq!(script["channel"], "radio24");
    assert_eq!(script["writer"], "template");
    assert!(!script["text"].as_str().unwrap().is_empty());
    // Nothing aired: until a segment spoken after the preview has aired, nothing on the
    // preview's topic (which is not in the rotation) starts.
    let marker: Value = app.speak("marker").await.json().await.unwrap();
    let what = format!("the start of the marker, {}", marker["segment_id"]);
    ws.scan(&what, |frame| {
        if frame["type"] != "segment_started" {
            return None;
        }
        assert_ne!(
            frame["segment"]["topic"], "宇宙",
            "the preview aired: {frame}"
        );
        (frame["segment"]["id"] == marker["segment_id"]).then_some(())
    })
    .await;

    // Without a topic, consecutive scripts rotate through the configured topics.
    let mut topics = Vec::new();
    for _ in 0..3 {
        let s: Value = app
            .post(
                "/v1/studio/script",
                Some(ADMIN_TOKEN),
                &json!({"block": "TOPIC_A"}),
            )
            .await
            .json()
            .await
            .unwrap();
        topics.push(s["topic"].as_str().unwrap().to_owned());
    }
    // The station's own producer takes topics from the same rotation, so it may have taken
    // some before or between these calls: each call gets the next one in the configured
    // order, possibly a step or two further on.
    let configured = crate::helpers::settings(&[]).schedule.topics;
    let turns: Vec<usize> = topics
        .iter()
        .map(|t| {
            configured
                .iter()
                .position(|c| c == t)
                .unwrap_or_else(|| panic!("{t} is not a configured topic"))
        })
        .collect();
    for pair in turns.windows(2) {
        let step = (pair[1] + configured.len() - pair[0]) % configured.len();
        assert!((1..=3).contains(&step), "the rotation moves on: {topics:?}");
    }

    let resp = app
        .post(
            "/v1/studio/script",
            Some(ADMIN_TOKEN),
            &json!({"block": "DJ"}),
        )
        .await;
    assert_eq!(error_code(resp).await, (400, "invalid_json".into()));
    let resp = app
        .post(
            "/v1/studio/script",
            Some(ADMIN_TOKEN),
            &json!({"topic": ""}),
        )
        .await;
    assert_eq!(error_code(resp).await, (400, "invalid_topic".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_are_named_for_people_and_briefly() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let resp = app
        .post(
            "/v1/studio/speak",
            Some(ADMIN_TOKEN),
            &json!({"text": "hi", "channel": "nochannel"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unknown_channel", "{body}");
    assert_eq!(body["message"], "no channel named 'nochannel'", "{body}");
    // A 5 KB path segment (under the 8 KiB target limit) is not echoed back whole.
    let long = "a".repeat(5_000);
    let resp = app.get(&format!("/v1/channels/{long}/stream")).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unknown_channel", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.chars().count() < 100, "{message}");
    assert!(message.starts_with("no channel named 'aaaa"), "{message}");
}

/// Many operators at once: at most `host.speak_queue` segments are taken, the rest are told
/// 429 `queue_full`. The programme clock all but stands still, so nothing leaves the queue
/// meanwhile: exactly the limit is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_speak_requests_never_overfill_the_queue() {
    const LIMIT: usize = 3;
    const REQUESTS: usize = 24;
    let clock = std::sync::Arc::new(radio24::host::clock::ScaledClock::new(
        chrono::Utc::now(),
        1e-6,
    ));
    let app = TestApp::spawn_on_clock(
        Role::All,
        &[
            ("RADIO24__HOST__SPEAK_QUEUE", "3"),
            // More server threads than cores: requests really run at the same time.
            ("RADIO24__SERVER__WORKERS", "8"),
        ],
        clock,
    )
    .await;
    let texts: Vec<String> = (0..REQUESTS).map(|i| format!("{i}番目です。")).collect();
    let answers = futures::future::join_all(texts.iter().map(|text| app.speak(text))).await;
    let mut accepted = 0;
    for resp in answers {
        match resp.status().as_u16() {
            202 => accepted += 1,
            _ => assert_eq!(error_code(resp).await, (429, "queue_full".into())),
        }
    }
    assert_eq!(accepted, LIMIT, "{accepted} of {REQUESTS} taken");
}
