//! `POST /v1/room/join`: listener tokens checked with LiveKit's own verifier, defaults,
//! errors, and the per-client rate limit.

use livekit_api::access_token::TokenVerifier;
use radio24::cli::Role;
use serde_json::{Value, json};

use crate::helpers::{PATIENCE, TestApp};

const KEY: &str = "test-livekit-key";
const SECRET: &str = "test-livekit-secret-that-is-long-enough";
const WS_URL: &str = "wss://livekit.example.test";
const JOIN: &str = "/v1/room/join";

fn livekit(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        ("LIVEKIT_API_KEY", KEY),
        ("LIVEKIT_API_SECRET", SECRET),
        ("LIVEKIT_WS_URL", WS_URL),
        // These tests are about listeners' tokens: the host does not try to publish.
        ("RADIO24__LIVEKIT__PUBLISH", "false"),
    ];
    all.extend_from_slice(extra);
    all
}

async fn error_code(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    assert!(body["message"].is_string(), "{body}");
    let code = body["error"].as_str().unwrap_or_default().to_owned();
    (status, code, body)
}

/// POST /v1/room/join as the client at `forwarded_for`.
async fn join_as(app: &TestApp, forwarded_for: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(JOIN))
        .header("x-forwarded-for", forwarded_for)
        .json(body)
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_mints_a_subscribe_only_token_livekit_accepts() {
    let app = TestApp::spawn(
        Role::All,
        &livekit(&[("RADIO24__LIVEKIT__TOKEN_TTL_SECS", "900")]),
    )
    .await;
    let long_tail = "y".repeat(80);
    let raw_name = format!("  \u{7}Ai\nko {long_tail}\t ");
    let resp = app
        .post(JOIN, None, &json!({"channel": "radio24", "name": raw_name}))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let answer: Value = resp.json().await.unwrap();
    let token = answer["token"].as_str().expect("a token");

    let claims = TokenVerifier::with_api_key(KEY, SECRET)
        .verify(token)
        .expect("LiveKit's verifier accepts the token");
    // Control characters gone, trimmed, cut to 64 characters.
    let expected_name: String = format!("Aiko {long_tail}").chars().take(64).collect();
    assert_eq!(claims.name, expected_name);
    assert_eq!(claims.name.chars().count(), 64);
    assert!(claims.sub.starts_with("listener-"), "{}", claims.sub);
    assert!(
        uuid::Uuid::parse_str(&claims.sub["listener-".len()..]).is_ok(),
        "{}",
        claims.sub
    );
    assert_eq!(claims.iss, KEY);
    let video = &claims.video;
    assert_eq!(video.room, "radio24");
    assert!(video.room_join);
    assert_eq!(video.can_subscribe, Some(true));
    assert_eq!(video.can_publish, Some(false));
    assert_eq!(video.can_publish_data, Some(false));
    assert!(!video.room_admin && !video.room_create && !video.room_list);
    assert!(!video.room_record && !video.hidden && !video.recorder);
    assert!(video.can_publish_sources.is_empty());
    // The configured lifetime (the token's own times, no wall clock involved).
    let ttl = claims.exp as i64 - claims.nbf as i64;
    assert!((898..=902).contains(&ttl), "exp - nbf = {ttl}");

    assert_eq!(answer["url"], WS_URL);
    assert_eq!(answer["room"], "radio24");
    assert_eq!(answer["identity"], claims.sub.as_str());
    let expires_at = chrono::DateTime::parse_from_rfc3339(answer["expires_at"].as_str().unwrap())
        .expect("expires_at is RFC 3339");
    assert_eq!(expires_at.timestamp(), claims.exp as i64);

    // Signed with our secret only: another secret, or another key, does not verify it.
    assert!(
        TokenVerifier::with_api_key(KEY, "another-secret-entirely")
            .verify(token)
            .is_err()
    );
    assert!(
        TokenVerifier::with_api_key("another-key", SECRET)
            .verify(token)
            .is_err()
    );

    // Each join is a new participant.
    let again: Value = app.post(JOIN, None, &json!({})).await.json().await.unwrap();
    assert_ne!(again["identity"], answer["identity"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_defaults_to_the_default_channel_and_a_generated_name() {
    let app = TestApp::spawn(Role::All, &livekit(&[])).await;
    // Players learn from the channel list that joins are possible.
    let channels: Value = app.get("/v1/channels").await.json().await.unwrap();
    assert_eq!(channels["livekit"], true, "{channels}");
    let verifier = TokenVerifier::with_api_key(KEY, SECRET);
    for body in [json!({}), json!({"name": "  \u{1b}\u{7} "})] {
        let resp = app.post(JOIN, None, &body).await;
        assert_eq!(resp.status(), 200, "for {body}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["room"], "radio24");
        let claims = verifier.verify(answer["token"].as_str().unwrap()).unwrap();
        assert_eq!(claims.video.room, "radio24");
        assert!(
            claims.name.starts_with("listener-") && claims.name.len() > "listener-".len(),
            "generated name: {:?}",
            claims.name
        );
        // The default lifetime is an hour.
        let ttl = claims.exp as i64 - claims.nbf as i64;
        assert!((3598..=3602).contains(&ttl), "exp - nbf = {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_join_requests_get_clear_4xx_errors() {
    let app = TestApp::spawn(Role::All, &livekit(&[])).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"channel": "nope"}), 404, "unknown_channel"),
        (json!({"channel": "Bad Name!"}), 400, "invalid_json"),
        (json!({"room": "radio24"}), 400, "invalid_json"),
        (json!({"name": 7}), 400, "invalid_json"),
        (json!("radio24"), 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let resp = app.post(JOIN, None, &body).await;
        let (got_status, got_code, got) = error_code(resp).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "for {body}: {got}"
        );
    }
    let resp = app
        .client
        .post(app.url(JOIN))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_without_livekit_settings_is_503_naming_what_is_missing() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let (status, code, body) = error_code(app.post(JOIN, None, &json!({})).await).await;
    assert_eq!((status, code.as_str()), (503, "livekit_not_configured"));
    let message = body["message"].as_str().unwrap();
    for var in ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_WS_URL"] {
        assert!(message.contains(var), "{message}");
    }

    // Only the secret missing (blank counts as missing): the message names just that one.
    let app = TestApp::spawn(
        Role::All,
        &[
            ("LIVEKIT_API_KEY", KEY),
            ("RADIO24__LIVEKIT__API_SECRET", " "),
            ("LIVEKIT_WS_URL", WS_URL),
        ],
    )
    .await;
    let (status, code, body) = error_code(app.post(JOIN, None, &json!({})).await).await;
    assert_eq!((status, code.as_str()), (503, "livekit_not_configured"));
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("LIVEKIT_API_SECRET"), "{message}");
    let channels: Value = app.get("/v1/channels").await.json().await.unwrap();
    assert_eq!(channels["livekit"], false, "{channels}");
    assert!(!message.contains("LIVEKIT_API_KEY"), "{message}");
    assert!(!message.contains("LIVEKIT_WS_URL"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_rate_limited_per_client() {
    // Behind one proxy (as on Cloud Run or Fly), which appends the client's address.
    let app = TestApp::spawn(
        Role::All,
        &livekit(&[
            ("RADIO24__LIVEKIT__JOIN_PER_MINUTE", "3"),
            ("RADIO24__SERVER__TRUSTED_PROXY_HOPS", "1"),
        ]),
    )
    .await;
    for i in 0..3 {
        let resp = join_as(&app, "203.0.113.7", &json!({})).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let resp = join_as(&app, "203.0.113.7", &json!({})).await;
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));

    // What the client itself puts in front of the proxy's entry does not buy a new budget.
    let resp = join_as(&app, "10.9.9.9, 203.0.113.7", &json!({})).await;
    assert_eq!(resp.status(), 429);

    // Another client has its own budget.
    let resp = join_as(&app, "198.51.100.20", &json!({})).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        TokenVerifier::with_api_key(KEY, SECRET)
            .verify(answer["token"].as_str().unwrap())
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_forwarded_headers_are_ignored() {
    let app = TestApp::spawn(
        Role::All,
        &livekit(&[("RADIO24__LIVEKIT__JOIN_PER_MINUTE", "2")]),
    )
    .await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(join_as(&app, forwarded, &json!({})).await.status(), 200);
    }
    // Same peer (loopback), whatever it claims: out of budget.
    let resp = join_as(&app, "198.51.100.3", &json!({})).await;
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn browsers_of_the_allowed_origin_may_join_and_others_may_not() {
    let app = TestApp::spawn(
        Role::All,
        &livekit(&[("ALLOWED_ORIGIN", "https://radio.example")]),
    )
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url(JOIN))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .timeout(PATIENCE)
            .send()
    };
    let allowed = preflight("https://radio.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://radio.example"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let other = preflight("https://elsewhere.example").await.unwrap();
    assert!(
        !other.headers().contains_key("access-control-allow-origin"),
        "another origin is not allowed: {:?}",
        other.headers()
    );

    // The request itself carries the header for the allowed origin.
    let resp = app
        .client
        .post(app.url(JOIN))
        .header("origin", "https://radio.example")
        .json(&json!({}))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://radio.example"
    );
}
