//! What one client can make the server hold, tried as an attacker would: frames whose headers
//! claim terabytes, fragments without end, bodies that never finish, ping floods from a
//! client that never reads. Each is refused or dropped, and the server goes on serving.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use radio24::cli::Role;

use crate::helpers::{ADMIN_TOKEN, PATIENCE, TestApp, poll_until};
use crate::raw_ws::{RawWs, frame, header};

/// `/ws/broadcast`'s limit on what a client sends (the route's frame limit).
const BROADCAST_FRAME_LIMIT: usize = 4 * 1024;
/// Close code for a message too big (RFC 6455 §7.4.1).
const MESSAGE_TOO_BIG: u16 = 1009;

#[tokio::test]
async fn a_frame_header_claiming_a_terabyte_is_closed_with_1009_before_its_payload() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = RawWs::open(app.port, "/ws/broadcast", None).await;
    // The header and 1 KiB of the 2^40 bytes it claims; the server must not wait for more.
    let mut bomb = header(true, 2, 1 << 40);
    bomb.extend(vec![0x42; 1024]);
    ws.send(&bomb).await.unwrap();
    let code = ws
        .close_code("a close after a 2^40-byte frame header")
        .await;
    assert_eq!(code, Some(MESSAGE_TOO_BIG));
    // The server goes on serving.
    app.wait_for_status("/health", 200).await;
}

#[tokio::test]
async fn a_fragmented_message_is_bounded_as_a_whole() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = RawWs::open(app.port, "/ws/broadcast", None).await;
    // Fragments of 1 KiB, each within the frame limit; the fifth takes the message over it.
    // Nothing more is sent, so a close proves the server did not need more than that.
    let piece = vec![b'a'; 1024];
    ws.send(&frame(false, 1, &piece)).await.unwrap();
    for _ in 0..BROADCAST_FRAME_LIMIT / piece.len() {
        ws.send(&frame(false, 0, &piece)).await.unwrap();
    }
    let code = ws.close_code("a close after 5 KiB of fragments").await;
    assert_eq!(code, Some(MESSAGE_TOO_BIG));
}

#[tokio::test]
async fn a_fragmented_message_within_the_limit_is_taken() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = RawWs::open(app.port, "/ws/broadcast", None).await;
    let piece = vec![b'a'; 1024];
    ws.send(&frame(false, 1, &piece)).await.unwrap();
    ws.send(&frame(true, 0, &piece)).await.unwrap();
    // A ping after it is answered: the socket is still open and read.
    ws.send(&frame(true, 9, b"still there?")).await.unwrap();
    loop {
        let frame = tokio::time::timeout(PATIENCE, ws.next_frame())
            .await
            .expect("a pong in time")
            .expect("the socket stays open");
        assert_ne!(frame.opcode, 8, "closed: {:?}", frame.close_code());
        if frame.opcode == 10 {
            assert_eq!(frame.payload, b"still there?");
            break;
        }
    }
}

/// The number of broadcast clients `/health` counts.
async fn broadcast_clients(app: &TestApp) -> Result<u64, String> {
    let health: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    health["broadcast_clients"]
        .as_u64()
        .ok_or_else(|| format!("no broadcast_clients in {health}"))
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_is_dropped() {
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__BROADCAST__SEND_TIMEOUT_SECS", "1"),
            ("RADIO24__SERVER__SEND_BUFFER_BYTES", "4096"),
        ],
    )
    .await;
    let ws = RawWs::open_with_small_receive_buffer(app.port, "/ws/broadcast").await;
    poll_until(
        "the flooding client counted",
        PATIENCE,
        Duration::from_millis(20),
        async || match broadcast_clients(&app).await? {
            1 => Ok(()),
            n => Err(format!("{n} clients")),
        },
    )
    .await;
    // 20 000 pings of 125 bytes, never reading a pong. The writes stop when the server stops
    // reading; that is fine, the flood only has to fill the way back.
    let (_, mut write) = ws.tcp.into_split();
    let flood = tokio::spawn(async move {
        let ping = frame(true, 9, &[0x50; 125]);
        for _ in 0..20_000 {
            if write.write_all(&ping).await.is_err() {
                break;
            }
        }
        write
    });
    // Dropped within the send timeout (1 s) of its pongs backing up.
    poll_until(
        "the flooding client dropped",
        PATIENCE,
        Duration::from_millis(50),
        async || match broadcast_clients(&app).await? {
            0 => Ok(()),
            n => Err(format!("{n} clients")),
        },
    )
    .await;
    flood.abort();
}

/// Writes a request's head and the start of its body, then returns the connection.
async fn stalled_request(app: &TestApp, head: &str) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"{").await.unwrap();
    tcp
}

/// Reads an answer to the end (the server closes the connection after it).
async fn read_answer(tcp: &mut tokio::net::TcpStream, what: &str) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer and no close after {PATIENCE:?}"))
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_connection_is_closed() {
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__BODY_TIMEOUT_SECS", "1")]).await;
    let head = format!(
        "POST /v1/studio/speak HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut tcp = stalled_request(&app, &head).await;
    let answer = read_answer(&mut tcp, "a stalled body").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"body_timeout""#), "{answer}");
}

#[tokio::test]
async fn a_body_without_the_token_is_refused_unread() {
    // No body timeout to lean on: the refusal must come from the headers alone.
    let app = TestApp::spawn(Role::All, &[("RADIO24__SERVER__BODY_TIMEOUT_SECS", "3600")]).await;
    let head = "POST /v1/studio/speak HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let mut tcp = stalled_request(&app, head).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut answer))
        .await
        .expect("401 while the body is still owed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

/// An answer's status and JSON body.
async fn status_and_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_wrong_method_gets_405_with_allow() {
    let app = TestApp::spawn(Role::All, &[]).await;
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/health", "GET, HEAD"),
        (reqwest::Method::DELETE, "/v1/room/join", "POST"),
        (
            reqwest::Method::POST,
            "/v1/channels/radio24/stream",
            "GET, HEAD",
        ),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        let (status, body) = status_and_json(resp).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(body["error"], "method_not_allowed", "{body}");
    }
    // A path nothing answers is still 404.
    let (status, body) = status_and_json(app.get("/v1/nothing").await).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn over_long_targets_and_heads_and_refused_preflights_get_json() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let long = format!("/v1/channels/{}/archive", "a".repeat(20_000));
    let (status, body) = status_and_json(app.get(&long).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (414, Some("uri_too_long")),
        "{body}"
    );

    let resp = app
        .client
        .get(app.url("/health"))
        .header("x-padding", "p".repeat(100_000))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (431, Some("headers_too_large")),
        "{body}"
    );

    // No origin is allowed by default: a cross-origin preflight is refused, in JSON.
    let resp = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/room/join"))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(resp).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
}

#[tokio::test]
async fn busy_clients_are_rate_limited_per_route_with_retry_after() {
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__ARCHIVE__LIST_PER_MINUTE", "2"),
            ("RADIO24__BROADCAST__CONNECTS_PER_MINUTE", "2"),
        ],
    )
    .await;
    // The archive is off here: the listing answers 404, which still counts.
    for _ in 0..2 {
        let resp = app.get("/v1/channels/radio24/archive").await;
        assert_ne!(resp.status(), 429);
    }
    let resp = app.get("/v1/channels/radio24/archive").await;
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, body) = status_and_json(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("rate_limited"))
    );

    let _first = app.broadcast("radio24").await;
    let _second = app.broadcast("radio24").await;
    let third = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/ws/broadcast?channel=radio24",
        app.port
    ))
    .await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
        }
        other => panic!("a third connect in a minute: {other:?}"),
    }
}

#[tokio::test]
async fn stream_listeners_are_capped_per_instance() {
    let app = TestApp::spawn(
        Role::All,
        &[
            ("RADIO24__STREAM__MAX_LISTENERS", "1"),
            ("RADIO24__STREAM__OPENS_PER_MINUTE", "100000"),
        ],
    )
    .await;
    let first = app.get("/v1/channels/radio24/stream").await;
    assert_eq!(first.status(), 200);
    let (status, body) = status_and_json(app.get("/v1/channels/radio24/stream").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("overloaded")),
        "{body}"
    );
    drop(first);
    // The place is free again once the first listener has gone.
    poll_until(
        "a stream place free again",
        PATIENCE,
        Duration::from_millis(50),
        async || {
            let resp = app.get("/v1/channels/radio24/stream").await;
            match resp.status().as_u16() {
                200 => Ok(()),
                other => Err(format!("{other}")),
            }
        },
    )
    .await;
}
