//! Channels and schedules over HTTP: public reads, admin writes (token before body), every
//! validation error, and a change reaching the host's `now` at once.

use std::sync::Arc;

use chrono::DateTime;
use serde_json::{Value, json};

use radio24::cli::Role;
use radio24::host::clock::ScaledClock;

use crate::helpers::{ADMIN_TOKEN, PATIENCE, TestApp, poll_until};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).json(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn day(block: &str) -> Vec<Value> {
    (0..24)
        .map(|hour| json!({"hour": hour, "block": block}))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_read_by_anyone_and_edited_by_operators() {
    // 10:30 in Tokyo, real speed: hour 10 (MUSIC by default) is on air for the whole test.
    let start = DateTime::parse_from_rfc3339("2026-11-28T10:30:00+09:00")
        .unwrap()
        .to_utc();
    let app = TestApp::spawn_on_clock(Role::All, &[], Arc::new(ScaledClock::new(start, 1.0))).await;
    app.wait_for_status("/ready", 200).await;

    let channels: Value = app.get("/v1/channels").await.json().await.unwrap();
    assert_eq!(
        channels,
        json!({"channels": [{"name": "radio24", "live": true}], "livekit": false})
    );

    let schedule: Value = app
        .get("/v1/channels/radio24/schedule")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(schedule["timezone"], "Asia/Tokyo");
    let hours = schedule["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(
        hours[9],
        json!({"hour": 9, "block": "QANDA", "prompt": null})
    );
    assert!((0..24).contains(&schedule["current_hour"].as_u64().unwrap()));
    assert_eq!(app.get("/v1/channels/nowhere/schedule").await.status(), 404);

    // Writes need the admin token.
    use reqwest::Method;
    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/channels/radio24/schedule",
            json!({"hours": day("NEWS")}),
        ),
        (
            Method::PATCH,
            "/v1/channels/radio24/schedule/10",
            json!({"block": "NEWS"}),
        ),
    ] {
        for token in [None, Some("wrong")] {
            let (status, body) = send(&app, method.clone(), path, token, &body).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("unauthorized")),
                "{path}"
            );
        }
    }

    // One hour: the one on air. The host's `now` follows at once, and listeners hear of it
    // (an `on_air` frame) without waiting for the next segment.
    let mut listener = app.broadcast("radio24").await;
    let (status, body) = send(
        &app,
        Method::PATCH,
        "/v1/channels/radio24/schedule/10",
        Some(ADMIN_TOKEN),
        &json!({"block": "NEWS", "prompt": "  Only the weather, please.  "}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["host_updated"], true);
    assert_eq!(
        body["hours"][10],
        json!({"hour": 10, "block": "NEWS", "prompt": "Only the weather, please."})
    );
    poll_until(
        "the host's block for 10:00 to be NEWS",
        PATIENCE,
        std::time::Duration::from_millis(50),
        async || {
            let now = app.host_now("/now?channel=radio24").await?;
            (now["block"] == "NEWS")
                .then_some(())
                .ok_or(now.to_string())
        },
    )
    .await;
    listener
        .wait_for("on_air", |f| f["state"]["block"] == "NEWS")
        .await;
    // What is left out stays; `null` clears the prompt.
    let (_, body) = send(
        &app,
        Method::PATCH,
        "/v1/channels/radio24/schedule/10",
        Some(ADMIN_TOKEN),
        &json!({"prompt": null}),
    )
    .await;
    assert_eq!(
        body["hours"][10],
        json!({"hour": 10, "block": "NEWS", "prompt": null})
    );

    // The whole day.
    let (status, body) = send(
        &app,
        Method::PUT,
        "/v1/channels/radio24/schedule",
        Some(ADMIN_TOKEN),
        &json!({"hours": day("TOPIC_A")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["hours"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["block"] == "TOPIC_A")
    );

    // Every mistake has its code, and nothing is changed by it.
    let mut short = day("MUSIC");
    short.pop();
    let mut twice = day("MUSIC");
    twice[23]["hour"] = json!(0);
    let mut bad_block = day("MUSIC");
    bad_block[5]["block"] = json!("DJ");
    let mut long_prompt = day("MUSIC");
    long_prompt[5]["prompt"] = json!("x".repeat(2001));
    let mut late = day("MUSIC");
    late[23]["hour"] = json!(24);
    for (body, code) in [
        (json!({"hours": short}), "invalid_schedule"),
        (json!({"hours": twice}), "invalid_schedule"),
        (json!({"hours": bad_block}), "invalid_block"),
        (json!({"hours": long_prompt}), "prompt_too_long"),
        (json!({"hours": late}), "invalid_hour"),
    ] {
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/channels/radio24/schedule",
            Some(ADMIN_TOKEN),
            &body,
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{answer}"
        );
    }
    for (path, body, status, code) in [
        (
            "/v1/channels/radio24/schedule/24",
            json!({"block": "NEWS"}),
            400,
            "invalid_hour",
        ),
        (
            "/v1/channels/radio24/schedule/x",
            json!({"block": "NEWS"}),
            400,
            "invalid_hour",
        ),
        (
            "/v1/channels/radio24/schedule/3",
            json!({"block": "news!"}),
            400,
            "invalid_block",
        ),
        (
            "/v1/channels/radio24/schedule/3",
            json!({"prompt": "a\u{0}b"}),
            400,
            "invalid_prompt",
        ),
        (
            "/v1/channels/nowhere/schedule/3",
            json!({"block": "NEWS"}),
            404,
            "unknown_channel",
        ),
    ] {
        let (got, answer) = send(&app, Method::PATCH, path, Some(ADMIN_TOKEN), &body).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{path} {answer}"
        );
    }
    let schedule: Value = app
        .get("/v1/channels/radio24/schedule")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        schedule["hours"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["block"] == "TOPIC_A"),
        "refused edits changed nothing: {schedule}"
    );
}

/// An operator's edit reaches listeners at once: the host announces the hour's new block (an
/// `on_air` frame) without waiting for its next segment. The clock runs a thousand times
/// slower than real time, so once the look-ahead is filled nothing else would announce it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_edit_reaches_listeners_without_waiting_for_a_segment() {
    use futures::StreamExt;
    let start = DateTime::parse_from_rfc3339("2026-11-28T10:30:00+09:00")
        .unwrap()
        .to_utc();
    let app =
        TestApp::spawn_on_clock(Role::All, &[], Arc::new(ScaledClock::new(start, 0.001))).await;
    app.wait_for_status("/ready", 200).await;
    let mut listener = app.broadcast("radio24").await;
    // Until the programme is quiet: two seconds without a frame (or enough trying).
    let settle = crate::helpers::Deadline::new("a quiet programme", PATIENCE);
    while !settle.passed() {
        match tokio::time::timeout(std::time::Duration::from_secs(2), listener.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the broadcast socket ended: {other:?}"),
        }
    }
    let (status, body) = send(
        &app,
        reqwest::Method::PATCH,
        "/v1/channels/radio24/schedule/10",
        Some(ADMIN_TOKEN),
        &json!({"block": "NEWS"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    listener
        .wait_for("on_air", |f| f["state"]["block"] == "NEWS")
        .await;
}
