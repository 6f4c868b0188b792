use radio24::api::ws::FRAGMENT_BYTES;
use radio24::cli::Role;
use serde_json::Value;

use crate::helpers::{PATIENCE, TestApp, WsRead};
use crate::raw_ws::RawWs;

/// Speaks `text` and returns the captions of its segment, in order, until it ends.
pub async fn captions_of(ws: &mut crate::helpers::WsClient, segment_id: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let what = format!("the end of segment {segment_id}");
    ws.scan(&what, |frame| match frame["type"].as_str() {
        Some("caption") if frame["segment_id"] == segment_id => {
            texts.push(frame["text"].as_str().unwrap().to_owned());
            None
        }
        Some("segment_ended") if frame["segment_id"] == segment_id => Some(()),
        _ => None,
    })
    .await;
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_first_then_captions_of_what_the_studio_says() {
    let app = TestApp::spawn(Role::All, &[]).await;
    app.wait_for_status("/ready", 200).await;
    let mut ws = app.broadcast("radio24").await;
    let snapshot = ws.next_json().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["channel"], "radio24");
    assert!(snapshot["captions"].is_array());

    let resp = app.speak("こんにちは、Radio24です。今日もよろしく！").await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["segment_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["channel"], "radio24");

    let started = ws
        .wait_for("segment_started", |f| f["segment"]["id"] == id)
        .await;
    assert_eq!(started["channel"], "radio24");
    assert!(started["segment"]["duration_ms"].as_u64().unwrap() > 0);
    let captions = captions_of(&mut ws, &id).await;
    assert_eq!(captions, ["こんにちは、Radio24です。", "今日もよろしく！"]);

    // A client joining later finds those captions in its snapshot.
    let mut late = app.broadcast("radio24").await;
    let snapshot = late.next_json().await;
    let ours = snapshot_captions_of(&snapshot, &id);
    assert_eq!(ours, ["こんにちは、Radio24です。", "今日もよろしく！"]);
    assert_eq!(snapshot["host_connected"], true);
}

/// The texts of segment `id`'s captions in a snapshot.
fn snapshot_captions_of<'a>(snapshot: &'a Value, id: &str) -> Vec<&'a str> {
    snapshot["captions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["segment_id"] == id)
        .map(|c| c["text"].as_str().unwrap())
        .collect()
}

/// A snapshot longer than [`FRAGMENT_BYTES`] (recent captions of long sentences) arrives
/// whole, as one message, sent in fragments of at most that: the server never hands a
/// listener's connection more than that at once, so its write buffer stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_snapshot_arrives_whole_in_fragments() {
    // Captions air at once: the test waits for none of the sentences' speaking time.
    let app = TestApp::spawn(Role::All, &[("RADIO24__HOST__CHARS_PER_SECOND", "100000")]).await;
    app.wait_for_status("/ready", 200).await;
    let mut ws = app.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let sentence = format!("{}。", "あ".repeat(600));
    let resp = app.speak(&sentence.repeat(3)).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["segment_id"].as_str().unwrap().to_owned();
    assert_eq!(captions_of(&mut ws, &id).await.len(), 3);

    let mut late = app.broadcast("radio24").await;
    let snapshot = late.next_json().await;
    assert_eq!(snapshot["type"], "snapshot");
    let ours = snapshot_captions_of(&snapshot, &id);
    assert_eq!(ours, [sentence.as_str(); 3]);

    // On the wire: a text frame without FIN, then continuations, none over the limit.
    let mut raw = RawWs::open(app.port, "/ws/broadcast?channel=radio24", None).await;
    let (mut opcodes, mut message) = (Vec::new(), Vec::new());
    loop {
        let frame = tokio::time::timeout(PATIENCE, raw.next_frame())
            .await
            .expect("the snapshot in time")
            .expect("the snapshot before the socket closes");
        assert!(
            frame.payload.len() <= FRAGMENT_BYTES,
            "a fragment of {} bytes",
            frame.payload.len()
        );
        opcodes.push(frame.opcode);
        message.extend_from_slice(&frame.payload);
        if frame.fin {
            break;
        }
    }
    assert!(opcodes.len() >= 2, "{} bytes in {opcodes:?}", message.len());
    assert_eq!(opcodes[0], 1, "a text message");
    assert!(opcodes[1..].iter().all(|&op| op == 0), "{opcodes:?}");
    let snapshot: Value = serde_json::from_slice(&message).expect("the fragments make JSON");
    assert_eq!(snapshot["type"], "snapshot");
    let texts = snapshot["captions"].as_array().unwrap().iter();
    assert_eq!(texts.filter(|c| c["segment_id"] == id).count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speak_now_cuts_the_current_segment_short() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = app.broadcast("radio24").await;
    ws.next_json().await;
    let long = "This is a long segment. ".repeat(20);
    let first: Value = app.speak(&long).await.json().await.unwrap();
    let first_id = first["segment_id"].as_str().unwrap().to_owned();
    ws.wait_for("segment_started", |f| f["segment"]["id"] == first_id)
        .await;
    let resp = app
        .post(
            "/v1/studio/speak",
            Some(crate::helpers::ADMIN_TOKEN),
            &serde_json::json!({"text": "Breaking in.", "mode": "now"}),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let now: Value = resp.json().await.unwrap();
    assert_eq!(now["mode"], "now");
    assert_eq!(now["queued_ahead"], 0);
    let ended = ws
        .wait_for("segment_ended", |f| f["segment_id"] == first_id)
        .await;
    assert_eq!(ended["interrupted"], true);
    let next = ws.wait_for("segment_started", |_| true).await;
    assert_eq!(next["segment"]["id"], now["segment_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_gets_an_error_frame_and_a_close_with_the_reason() {
    let app = TestApp::spawn(Role::All, &[]).await;
    for channel in ["nope", "Bad%20Name"] {
        let mut ws = app.broadcast(channel).await;
        let frame = ws.next_json().await;
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["error"], "unknown_channel");
        match ws.read().await {
            WsRead::Closed(Some((code, reason))) => {
                assert_eq!(code, 1008);
                assert!(!reason.is_empty());
            }
            other => panic!("expected a close with a reason, got {other:?}"),
        }
    }
    // The server is still fine.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_read_only_and_says_so() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = app.broadcast("radio24").await;
    ws.next_json().await;
    use futures::SinkExt;
    ws.ws
        .send(tokio_tungstenite::tungstenite::Message::Text(
            "hello".into(),
        ))
        .await
        .unwrap();
    // A resync snapshot may come first (the host's hello reaching the API after the
    // client subscribed): the answer is the next error frame.
    let frame = ws.wait_for("error", |_| true).await;
    assert_eq!(frame["error"], "read_only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_socket_route_is_a_json_400() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let resp = app.get("/ws/broadcast?channel=radio24").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "websocket_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_counts_the_channels_listeners_on_this_instance() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = app.broadcast("radio24").await;
    let snapshot = ws.next_json().await;
    assert_eq!(
        snapshot["listeners"],
        serde_json::json!({"stream": 0, "broadcast": 1}),
        "{snapshot}"
    );

    // A stream listener: counted once its first page has arrived.
    let mut stream = app.get("/v1/channels/radio24/stream").await;
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(PATIENCE, stream.chunk())
        .await
        .unwrap_or_else(|_| panic!("no stream page after {PATIENCE:?}"));
    assert!(first.unwrap().is_some());
    let mut second = app.broadcast("radio24").await;
    let snapshot = second.next_json().await;
    assert_eq!(
        snapshot["listeners"],
        serde_json::json!({"stream": 1, "broadcast": 2}),
        "{snapshot}"
    );
    drop(stream);
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hear_when_the_channels_listener_count_changes() {
    let app = TestApp::spawn(Role::All, &[]).await;
    let mut ws = app.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");

    let listeners =
        |stream: u64, broadcast: u64| serde_json::json!({"stream": stream, "broadcast": broadcast});
    // A check before the second client came may report the first alone: wait for two.
    let mut second = app.broadcast("radio24").await;
    let frame = ws
        .wait_for("listeners", |f| f["listeners"]["broadcast"] == 2)
        .await;
    assert_eq!(frame["channel"], "radio24");
    assert_eq!(frame["listeners"], listeners(0, 2), "{frame}");
    assert_eq!(second.next_json().await["type"], "snapshot");

    // And when it goes down: the next listeners frame says the second left.
    drop(second);
    let frame = ws.wait_for("listeners", |_| true).await;
    assert_eq!(frame["listeners"], listeners(0, 1), "{frame}");
}
