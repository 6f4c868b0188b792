//! `--role host` and `--role api` as two servers talking over the HTTP bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use radio24::cli::Role;
use serde_json::{Value, json};

use crate::broadcast::captions_of;
use crate::helpers::{
    ADMIN_TOKEN, BUS_TOKEN, NO_QANDA, PATIENCE, PROGRAMME_PATIENCE, TestApp, poll_until,
};

async fn spawn_pair() -> (TestApp, TestApp) {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let url = host.address.clone();
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &url)]).await;
    (host, api)
}

/// Starts `--role host` on `port` (0: any), where the API expects it.
async fn host_on(port: u16) -> TestApp {
    host_with(port, &[]).await
}

/// Starts `--role host` on `port` with the programme at real speed (a call lasts).
async fn slow_host_on(port: u16) -> TestApp {
    host_with(
        port,
        &[
            ("RADIO24__HOST__CLOCK_SPEED", "1"),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
        ],
    )
    .await
}

async fn host_with(port: u16, overrides: &[(&str, &str)]) -> TestApp {
    let port_text = port.to_string();
    let mut all = vec![("RADIO24__SERVER__PORT", port_text.as_str())];
    all.extend_from_slice(overrides);
    let settings = crate::helpers::settings(&all);
    let app = tokio::time::timeout(
        PATIENCE,
        radio24::startup::Application::build(settings, Role::Host),
    )
    .await
    .unwrap_or_else(|_| panic!("the host on port {port} not built after {PATIENCE:?}"))
    .expect("host starts on its port");
    TestApp::run(app, None)
}

async fn speak_and_hear(api: &TestApp, ws: &mut crate::helpers::WsClient, text: &str) {
    let resp = api.speak(text).await;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["segment_id"].as_str().unwrap();
    assert_eq!(captions_of(ws, id).await, [text]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reaches_a_separate_host_and_survives_its_restart() {
    let (host, api) = spawn_pair().await;
    let ready = api.wait_for_status("/ready", 200).await;
    assert_eq!(ready["host_link"]["transport"], "http");
    let health: Value = api.get("/health").await.json().await.unwrap();
    assert_eq!(health["role"], "api");

    let mut ws = api.broadcast("radio24").await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    speak_and_hear(&api, &mut ws, "First words over the bus.").await;
    let script = api
        .post(
            "/v1/studio/script",
            Some(ADMIN_TOKEN),
            &json!({"block": "OP"}),
        )
        .await;
    assert_eq!(script.status(), 200);

    // Kill the host: the API stays up and says what is wrong.
    let host_port = host.port;
    host.stop().await;
    let not_ready = api.wait_for_status("/ready", 503).await;
    assert_eq!(not_ready["error"], "not_ready");
    let health: Value = api.get("/health").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["host_link"]["state"], "down");
    // Why it is down (addresses, OS errors) is for operators: the logs and the studio view.
    assert!(health["host_link"].get("error").is_none(), "{health}");
    assert!(not_ready["host_link"].get("error").is_none(), "{not_ready}");
    let for_operators = poll_until(
        "the studio health view saying why the link is down",
        PATIENCE,
        std::time::Duration::from_millis(50),
        async || {
            let resp = api
                .client
                .get(api.url("/v1/studio/health"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            match body["host_link"]["error"].as_str() {
                Some(error) if !error.is_empty() => Ok(body),
                _ => Err(body.to_string()),
            }
        },
    )
    .await;
    assert_eq!(for_operators["host_link"]["state"], "down");
    let anonymous = api.get("/v1/studio/health").await;
    assert_eq!(anonymous.status(), 401);
    for (path, body) in [
        ("/v1/studio/speak", json!({"text": "anyone there?"})),
        ("/v1/studio/script", json!({})),
    ] {
        let resp = api.post(path, Some(ADMIN_TOKEN), &body).await;
        assert_eq!(resp.status(), 503, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "host_unavailable");
    }

    // Start it again on the same port: captions flow again, same API, same socket.
    let _host = host_on(host_port).await;
    api.wait_for_status("/ready", 200).await;
    let resync = ws.wait_for("snapshot", |f| f["resync"] == true).await;
    assert_eq!(resync["channel"], "radio24");
    speak_and_hear(&api, &mut ws, "Back on air.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_need_the_bus_token() {
    let (host, _api) = spawn_pair().await;
    let routes: [(&str, &str, Value); 5] = [
        ("POST", "/speak", json!({"text": "hi"})),
        ("POST", "/script/generate", json!({})),
        ("PUT", "/programme", json!({"channels": []})),
        ("GET", "/events", Value::Null),
        ("GET", "/stream?channel=radio24", Value::Null),
    ];
    for (method, path, body) in &routes {
        for token in [None, Some("wrong"), Some(ADMIN_TOKEN)] {
            let mut req = host.client.request(method.parse().unwrap(), host.url(path));
            if !body.is_null() {
                req = req.json(body);
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.timeout(PATIENCE).send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let resp = host
        .client
        .post(host.url("/speak"))
        .bearer_auth(BUS_TOKEN)
        .json(&json!({"text": "hi"}))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // /health is open, for load balancers.
    let health: Value = host.get("/health").await.json().await.unwrap();
    assert_eq!(health["role"], "host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_with_the_wrong_bus_token_reports_the_link_down() {
    let host = TestApp::spawn(Role::Host, &[]).await;
    let url = host.address.clone();
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__HOST_URL", &url),
            ("RADIO24__BUS__TOKEN", "not-the-token"),
        ],
    )
    .await;
    let health = api.wait_for_status("/ready", 503).await;
    assert_eq!(health["host_link"]["state"], "down");
    let resp = api.speak("hello").await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "host_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_started_before_its_host_connects_when_the_host_arrives() {
    // Reserve a port for the host, then free it for the host to take later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &url)]).await;
    api.wait_for_status("/ready", 503).await;
    let _host = host_on(port).await;
    api.wait_for_status("/ready", 200).await;
    let mut ws = api.broadcast("radio24").await;
    ws.next_json().await;
    speak_and_hear(&api, &mut ws, "Late but here.").await;
}

/// `radio24 serve --role host` as a process of its own on `port`, the programme at `speed`.
fn host_process(port: u16, speed: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_radio24"))
        .args(["serve", "--role", "host", "--config-dir"])
        .arg(crate::helpers::config_dir())
        .env("RADIO24__SERVER__PORT", port.to_string())
        .env("RADIO24__BUS__TOKEN", BUS_TOKEN)
        .env("RADIO24__HOST__CLOCK_SPEED", speed)
        .env("RADIO24__VOICE__BACKEND", "none")
        .env("RADIO24__SCHEDULE__DEFAULT", NO_QANDA)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the radio24 binary starts")
}

/// Kills the host process on drop, so a failing test leaves no process behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The call-in `id` as the operators' queue shows it.
async fn queue_item(api: &TestApp, id: &str) -> Result<Value, String> {
    let body: Value = api
        .admin_get("/v1/queue?channel=radio24")
        .await
        .json()
        .await
        .map_err(|e| e.to_string())?;
    body["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id).cloned())
        .ok_or_else(|| format!("no item {id}: {body}"))
}

/// An API for the host at `host_url`, on a day without a QANDA hour (callers go through
/// only by `take-next`), taking back unconfirmed handovers after 3 s.
async fn api_for_calls(host_url: &str) -> TestApp {
    let api = TestApp::spawn(
        Role::Api,
        &[
            ("RADIO24__BUS__HOST_URL", host_url),
            ("RADIO24__BUS__REQUEST_TIMEOUT_MS", "1000"),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
        ],
    )
    .await;
    api.wait_for_status("/ready", 200).await;
    api
}

/// Calls in with `words` over HTTP; the item's id.
async fn call_in(api: &TestApp, words: &str) -> String {
    let resp = api.post("/v1/queue", None, &json!({"text": words})).await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the item `id` has `status`; the item.
async fn item_when(api: &TestApp, id: &str, status: &str) -> Value {
    poll_until(
        &format!("call {id} {status}"),
        PROGRAMME_PATIENCE,
        std::time::Duration::from_millis(100),
        async || match queue_item(api, id).await? {
            item if item["status"] == status => Ok(item),
            item => Err(item.to_string()),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_live_on_a_killed_host_is_requeued_and_aired_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Real time: the caller's turn (a long text, captions only) lasts tens of seconds.
    let host = Killed(host_process(port, "1"));
    let api = api_for_calls(&format!("http://127.0.0.1:{port}")).await;
    let words = "This is a long question about mountains. ".repeat(10);
    let id = call_in(&api, words.trim()).await;
    assert_eq!(api.take_next().await.status(), 200);
    let item = queue_item(&api, &id).await.unwrap();
    assert_eq!(
        (item["status"].as_str(), item["requeues"].as_u64()),
        (Some("live"), Some(0))
    );

    // kill -9 while it airs, and start a new host on the same port (fast this time).
    drop(host);
    let _host = Killed(host_process(port, "20"));
    // Count the caller's captions from here on.
    let mut ws = api.broadcast("radio24").await;
    let caller_captions = Arc::new(AtomicUsize::new(0));
    let counter = caller_captions.clone();
    let counting = tokio::spawn(async move {
        loop {
            let frame = ws.next_json().await;
            if frame["type"] == "caption" && frame["speaker"] == "caller" {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let back = item_when(&api, &id, "queued").await;
    assert_eq!(
        (back["requeues"].as_u64(), back["reason"].as_str()),
        (Some(1), Some("host_lost"))
    );

    // Put through again, it airs once on the new host, and ends done.
    assert_eq!(api.take_next().await.status(), 200);
    let done = item_when(&api, &id, "done").await;
    assert_eq!(done["requeues"], 1);
    // Done comes after the answer aired, so the caller's turn has aired in full: once.
    counting.abort();
    assert_eq!(
        caller_captions.load(Ordering::SeqCst),
        10,
        "one caption per sentence, once"
    );
    // Nothing is left waiting.
    let taken = api.take_next().await;
    assert_eq!(taken.status(), 409);
    assert_eq!(taken.json::<Value>().await.unwrap()["error"], "queue_empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_lost_with_two_hosts_is_dropped() {
    let mut host = slow_host_on(0).await;
    let port = host.port;
    let api = api_for_calls(&host.address).await;
    let words = "A question that takes a long while to read out. ".repeat(8);
    let id = call_in(&api, words.trim()).await;
    for lost in 1..=2 {
        assert_eq!(api.take_next().await.status(), 200, "take {lost}");
        host.stop().await;
        host = slow_host_on(port).await;
        let item = item_when(&api, &id, if lost == 1 { "queued" } else { "dropped" }).await;
        assert_eq!(item["reason"], "host_lost", "{item}");
        assert_eq!(item["requeues"], 1, "{item}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_on_one_api_instance_hears_a_call_put_through_by_another() {
    let Some(db) = crate::helpers::TestDb::create().await else {
        return;
    };
    let host = host_on(0).await;
    let overrides = [
        ("RADIO24__BUS__HOST_URL", host.address.as_str()),
        ("RADIO24__DATABASE__URL", db.url.as_str()),
        ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
    ];
    let first = TestApp::spawn(Role::Api, &overrides).await;
    let second = TestApp::spawn(Role::Api, &overrides).await;
    first.wait_for_status("/ready", 200).await;
    second.wait_for_status("/ready", 200).await;
    let (mut caller, _) = crate::callins::Ptt::greeted(&first, None).await;
    let id = caller.call("Which instance am I on?").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The second instance puts the call through; the caller, on the first, hears it all.
    assert_eq!(second.take_next().await.status(), 200);
    for status in ["live", "done"] {
        caller
            .ws
            .wait_for("status", |f| {
                f["id"] == id.as_str() && f["status"] == status
            })
            .await;
    }
}

/// The answer of a route that needs the host while there is none: 503 `host_unavailable`
/// with a message and a `Retry-After`.
async fn expect_host_unavailable(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status(), 503, "{what}");
    assert!(
        resp.headers().contains_key("retry-after"),
        "{what}: a Retry-After says when to try again"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "host_unavailable", "{what}: {body}");
    assert!(body["message"].is_string(), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_host_killed_the_api_stays_up_keeps_every_call_in_and_a_new_host_resumes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = Killed(host_process(port, "20"));
    let api = api_for_calls(&format!("http://127.0.0.1:{port}")).await;
    let mut listener = api.broadcast("radio24").await;
    assert_eq!(listener.next_json().await["type"], "snapshot");
    // The programme airs (captions only: no voice).
    listener.wait_for("caption", |_| true).await;
    let mut queued = vec![call_in(&api, "Before the host dies.").await];

    // SIGKILL mid-programme.
    drop(host);
    let not_ready = api.wait_for_status("/ready", 503).await;
    assert_eq!(not_ready["error"], "not_ready");
    let health: Value = api.get("/health").await.json().await.unwrap();
    assert_eq!(
        (
            health["status"].as_str(),
            health["host_link"]["state"].as_str()
        ),
        (Some("ok"), Some("down")),
        "{health}"
    );
    // Routes that need the host say so.
    expect_host_unavailable(api.speak("Anyone there?").await, "speak").await;
    expect_host_unavailable(
        api.post("/v1/studio/script", Some(ADMIN_TOKEN), &json!({}))
            .await,
        "script",
    )
    .await;
    expect_host_unavailable(
        api.get("/v1/channels/radio24/stream").await,
        "the live stream",
    )
    .await;
    // Call-ins are still taken, over HTTP and over /ws/ptt, and wait in the queue.
    for n in 1..=3 {
        queued.push(call_in(&api, &format!("Call {n} while the host is down.")).await);
    }
    let (mut caller, _) = crate::callins::Ptt::greeted(&api, None).await;
    let by_ptt = caller
        .call("A push-to-talk call while the host is down.")
        .await;
    queued.push(by_ptt["id"].as_str().unwrap().to_owned());
    assert_eq!(
        api.get("/v1/channels/radio24/schedule").await.status(),
        200,
        "what needs only the database is served"
    );

    // A host again, on the same port: the listener, still connected, is resynced and hears
    // the programme again; every call-in is still queued.
    let _host = Killed(host_process(port, "20"));
    api.wait_for_status("/ready", 200).await;
    let resync = listener.wait_for("snapshot", |f| f["resync"] == true).await;
    assert_eq!(resync["channel"], "radio24");
    listener.wait_for("caption", |_| true).await;
    for id in &queued {
        let item = queue_item(&api, id).await.unwrap();
        assert_eq!(item["status"], "queued", "{item}");
    }
    let resp = api.get("/v1/channels/radio24/stream").await;
    assert_eq!(resp.status(), 200, "the live stream is back");
}
