//! Two API instances (A and B) and one host, all in this process over the HTTP bus, on one
//! PostgreSQL database: a call-in posted to A shows on B's broadcast clients at once,
//! captions reach both, listener counts are the station's, and exactly one instance hands
//! each call to the host (the other's claim goes back to its place, uncounted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use radio24::cli::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::broadcast::captions_of;
use crate::helpers::{
    ADMIN_TOKEN, NO_QANDA, PATIENCE, PROGRAMME_PATIENCE, TestApp, TestDb, WsClient, poll_until,
};

/// Starts `--role host` on a port of its own, the programme at `speed` (1: real time).
async fn host(speed: &str) -> TestApp {
    let settings = crate::helpers::settings(&[
        ("RADIO24__HOST__CLOCK_SPEED", speed),
        ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
    ]);
    let app = tokio::time::timeout(
        PATIENCE,
        radio24::startup::Application::build(settings, Role::Host),
    )
    .await
    .unwrap_or_else(|_| panic!("the host not built after {PATIENCE:?}"))
    .expect("the host starts");
    TestApp::run(app, None)
}

/// An API instance for `host` on database `db`, on a day without a QANDA hour, reporting
/// its listener counts every 200 ms; ready.
async fn api(host: &TestApp, db: &TestDb) -> TestApp {
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__HOST_URL", host.address.as_str()),
            ("RADIO24__DATABASE__URL", db.url.as_str()),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
            ("RADIO24__BROADCAST__INSTANCE_HEARTBEAT_MS", "200"),
            ("RADIO24__BUS__REQUEST_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    api.wait_for_status("/ready", 200).await;
    api
}

/// Calls in with `words` over HTTP (a new caller each time); the item's id.
async fn call_in(api: &TestApp, words: &str) -> String {
    let resp = api.post("/v1/queue", None, &json!({"text": words})).await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A broadcast client of `api`'s channel radio24, its snapshot read.
async fn listener(api: &TestApp) -> (WsClient, Value) {
    let mut ws = api.broadcast("radio24").await;
    let snapshot = ws.next_json().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    (ws, snapshot)
}

/// `GET /health`'s `listeners` of channel radio24: the station's, this instance's, and
/// how many instances are counted.
async fn health_listeners(api: &TestApp) -> Result<(Value, Value, Value), String> {
    let health: Value = api
        .get("/health")
        .await
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let l = &health["listeners"];
    Ok((
        l["station"]["radio24"].clone(),
        l["this_instance"]["radio24"].clone(),
        l["instances"].clone(),
    ))
}

/// Waits until `api`'s `/health` says the station has `broadcast` clients of radio24 (no
/// stream listeners), `own` of them on `api`, over two instances.
async fn station_counts(api: &TestApp, broadcast: u64, own: u64) {
    let expected = (
        json!({"stream": 0, "broadcast": broadcast}),
        json!({"stream": 0, "broadcast": own}),
        json!(2),
    );
    poll_until(
        &format!("{} to count {broadcast} broadcast clients", api.address),
        PATIENCE,
        Duration::from_millis(50),
        async || match health_listeners(api).await? {
            got if got == expected => Ok(()),
            got => Err(format!("{got:?}")),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_serve_one_station() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let host = host("20").await;
    let a = api(&host, &db).await;
    let b = api(&host, &db).await;

    // A call-in posted to A shows on B's broadcast client; nothing else happens on B.
    let (mut on_b, snapshot) = listener(&b).await;
    assert_eq!(snapshot["queue"]["length"], 0, "{snapshot}");
    let id = call_in(&a, "Hello from instance A.").await;
    let queue = on_b
        .scan("a queue frame with A's call-in", |f| {
            // A client that fell behind gets a snapshot in place of what it missed.
            let queue = match f["type"].as_str() {
                Some("queue") => f,
                Some("snapshot") => &f["queue"],
                _ => return None,
            };
            let ids = queue["ids"].as_array()?;
            ids.iter().any(|i| i == id.as_str()).then(|| queue.clone())
        })
        .await;
    assert_eq!(queue["length"], 1, "{queue}");

    // A speak on A: its captions reach the broadcast clients of both.
    let (mut on_a, snapshot) = listener(&a).await;
    // One client on each: A's client hears that there are two (B's reported within a
    // heartbeat), if its snapshot did not say so already.
    if snapshot["listeners"]["broadcast"] != 2 {
        counted(&mut on_a, 2).await;
    }
    let resp = a.speak("Both instances hear this.").await;
    assert_eq!(resp.status(), 202);
    let segment: Value = resp.json().await.unwrap();
    let segment = segment["segment_id"].as_str().unwrap().to_owned();
    assert_eq!(
        captions_of(&mut on_a, &segment).await,
        ["Both instances hear this."]
    );
    assert_eq!(
        captions_of(&mut on_b, &segment).await,
        ["Both instances hear this."]
    );

    // One client on each: both say two, one of them their own.
    station_counts(&a, 2, 1).await;
    station_counts(&b, 2, 1).await;
    // A second client on B: its snapshot counts all three, and A's clients hear it.
    let (_second_on_b, snapshot) = listener(&b).await;
    assert_eq!(
        snapshot["listeners"],
        json!({"stream": 0, "broadcast": 3}),
        "{snapshot}"
    );
    counted(&mut on_a, 3).await;
    station_counts(&a, 3, 1).await;
    station_counts(&b, 3, 2).await;
    // B's first client leaves: both count two again.
    drop(on_b);
    counted(&mut on_a, 2).await;
    station_counts(&b, 2, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_the_host_refuses_as_busy_goes_back_to_its_place_uncounted() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    // Real time: the first call lasts while B tries.
    let host = host("1").await;
    let a = api(&host, &db).await;
    let b = api(&host, &db).await;
    let words = "A question that takes a long while to read out. ".repeat(8);
    let first = call_in(&a, words.trim()).await;
    let second = call_in(&a, "The second in line.").await;
    let third = call_in(&a, "The third in line.").await;

    let taken = a.take_next().await;
    assert_eq!(taken.status(), 200);
    assert_eq!(
        taken.json::<Value>().await.unwrap()["taken"]["id"],
        first.as_str()
    );
    // B claims the next one; the host, busy with A's, refuses it.
    let refused = b.take_next().await;
    assert_eq!(refused.status(), 409);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "call_in_progress"
    );
    let items: Value = b
        .admin_get("/v1/queue?channel=radio24")
        .await
        .json()
        .await
        .unwrap();
    let item = |id: &str| {
        items["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(item(&first)["status"], "live");
    let back = item(&second);
    assert_eq!(
        (&back["status"], &back["requeues"], &back["reason"]),
        (&json!("queued"), &json!(0), &Value::Null),
        "back, not counted as a failed attempt: {back}"
    );
    // In its old place, first in line: on both instances.
    let expected = json!([second, third]);
    for api in [&a, &b] {
        let (mut ws, snapshot) = listener(api).await;
        if snapshot["queue"]["ids"] != expected {
            ws.scan("the queue with the second first", |f| {
                let ids = match f["type"].as_str() {
                    Some("queue") => &f["ids"],
                    Some("snapshot") => &f["queue"]["ids"],
                    _ => return None,
                };
                (*ids == expected).then_some(())
            })
            .await;
        }
    }
}

/// Waits for a `listeners` frame (or a resync's snapshot, which replaces the frames a
/// client that fell behind missed) counting `broadcast` clients.
async fn counted(ws: &mut WsClient, broadcast: u64) {
    ws.scan(&format!("a count of {broadcast} broadcast clients"), |f| {
        let counted = matches!(f["type"].as_str(), Some("listeners" | "snapshot"))
            && f["listeners"]["broadcast"] == broadcast;
        counted.then_some(())
    })
    .await;
}

/// Counts each text's caller captions as they air on `ws`.
fn count_caller_captions(mut ws: WsClient) -> Arc<Mutex<HashMap<String, usize>>> {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let counting = counts.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "caption" && frame["speaker"] == "caller" {
                let text = frame["text"].as_str().unwrap_or_default().to_owned();
                *counting.lock().unwrap().entry(text).or_insert(0) += 1;
            }
        }
    });
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_instances_hear_the_host_want_a_caller_and_each_call_airs_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let host = host("20").await;
    let a = api(&host, &db).await;
    let b = api(&host, &db).await;
    let texts = [
        "First caller here.",
        "Second caller here.",
        "Third caller here.",
    ];
    let mut ids = Vec::new();
    for text in texts {
        ids.push(call_in(&a, text).await);
    }
    let (ws, _) = listener(&b).await;
    let counts = count_caller_captions(ws);

    // Every hour becomes QANDA: the host wants callers, and both instances hear it.
    let day: Vec<Value> = (0..24)
        .map(|h| json!({"hour": h, "block": "QANDA"}))
        .collect();
    let resp = a
        .client
        .put(a.url("/v1/channels/radio24/schedule"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"hours": day}))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let done = poll_until(
        "every call done",
        PROGRAMME_PATIENCE,
        Duration::from_millis(200),
        async || {
            let items: Value = a
                .admin_get("/v1/queue?channel=radio24")
                .await
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let items = items["items"].as_array().cloned().unwrap_or_default();
            if items.len() == ids.len() && items.iter().all(|i| i["status"] == "done") {
                Ok(items)
            } else {
                let statuses: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
                Err(format!("{statuses:?}"))
            }
        },
    )
    .await;
    for item in &done {
        assert_eq!(item["requeues"], 0, "never lost: {item}");
    }
    // Each aired: its caption reached B's listener; and only once.
    poll_until(
        "every caller's words on air",
        PATIENCE,
        Duration::from_millis(50),
        async || {
            let counts = counts.lock().unwrap().clone();
            if texts.iter().all(|t| counts.contains_key(*t)) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    let counts = counts.lock().unwrap().clone();
    for text in texts {
        assert_eq!(counts[text], 1, "aired once: {counts:?}");
    }
}
