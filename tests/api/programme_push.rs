//! The API's push of the programme (channels and schedules) to the host is retried until the
//! host takes it: a fake host on loopback speaks the bus at the wire (`GET /events` kept
//! open with keep-alive lines, `PUT /programme` refused a set number of times with 503),
//! and a schedule edit reaches it without the event stream reconnecting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use radio24::cli::Role;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, BUS_TOKEN, PATIENCE, TestApp, poll_until};

/// What the fake host saw and how it answers.
#[derive(Default)]
struct FakeHost {
    /// `PUT /programme` requests still to refuse.
    refuse: AtomicUsize,
    /// Every `PUT /programme` body, refused or taken, with whether it was taken.
    puts: Mutex<Vec<(bool, Value)>>,
    /// `GET /events` requests answered.
    subscriptions: AtomicUsize,
}

impl FakeHost {
    fn taken(&self) -> Vec<Value> {
        let puts = self.puts.lock().unwrap();
        puts.iter()
            .filter(|(t, _)| *t)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn refused(&self) -> usize {
        self.puts
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| !*t)
            .count()
    }
}

fn authorised(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {BUS_TOKEN}"))
}

async fn put_programme(
    fake: web::Data<FakeHost>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !authorised(&req) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "unauthorized", "message": "token"}));
    }
    let refuse = fake
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    fake.puts.lock().unwrap().push((!refuse, body.into_inner()));
    if refuse {
        HttpResponse::ServiceUnavailable()
            .json(json!({"error": "unavailable", "message": "not now (the test says)"}))
    } else {
        HttpResponse::NoContent().finish()
    }
}

/// An event stream that never ends: a keep-alive line every 200 ms, no events.
async fn events(fake: web::Data<FakeHost>, req: HttpRequest) -> HttpResponse {
    if !authorised(&req) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": "unauthorized", "message": "token"}));
    }
    fake.subscriptions.fetch_add(1, Ordering::SeqCst);
    let keep_alive = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"\n")), ()))
    });
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(keep_alive)
}

/// Starts the fake host on a port of its own; its address.
fn start_fake(fake: web::Data<FakeHost>) -> (String, actix_web::dev::ServerHandle) {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(fake.clone())
            .route("/programme", web::put().to(put_programme))
            .route("/events", web::get().to(events))
    })
    .workers(1)
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

/// The block the programme pushed to the host gives `hour` of channel radio24.
fn block_at(programme: &Value, hour: u64) -> Option<String> {
    programme["channels"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "radio24")?["schedule"]
        .as_array()?
        .iter()
        .find(|s| s["hour"] == hour)?["block"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_programme_push_the_host_refuses_is_retried_until_it_takes_it() {
    let fake = web::Data::new(FakeHost::default());
    // The push made when the link comes up is refused twice first.
    fake.refuse.store(2, Ordering::SeqCst);
    let (host_url, fake_server) = start_fake(fake.clone());
    let api = TestApp::spawn(Role::Api, &[("RADIO24__BUS__HOST_URL", &host_url)]).await;
    api.wait_for_status("/ready", 200).await;
    poll_until(
        "the connect push to reach the host after two refusals",
        PATIENCE,
        Duration::from_millis(50),
        async || match fake.taken().len() {
            0 => Err(format!("{} refused, none taken", fake.refused())),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(fake.refused(), 2);

    // An operator edits hour 5; the host refuses the push three times, then takes it.
    let before = fake.taken().len();
    let first_block = block_at(&fake.taken()[0], 5).unwrap();
    let new_block = if first_block == "MUSIC" {
        "NEWS"
    } else {
        "MUSIC"
    };
    fake.refuse.store(3, Ordering::SeqCst);
    let resp = api
        .client
        .patch(api.url("/v1/channels/radio24/schedule/5"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"block": new_block}))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["host_updated"], false, "{body}");
    let taken = poll_until(
        "the edit to reach the host",
        PATIENCE,
        Duration::from_millis(50),
        async || {
            let taken = fake.taken();
            match taken.get(before) {
                Some(programme) => Ok(programme.clone()),
                None => Err(format!("{} refused so far", fake.refused())),
            }
        },
    )
    .await;
    assert_eq!(block_at(&taken, 5).as_deref(), Some(new_block), "{taken}");
    assert_eq!(fake.refused(), 5, "two at connect, three after the edit");
    assert_eq!(
        fake.subscriptions.load(Ordering::SeqCst),
        1,
        "delivered by retries, not by a reconnect of the link"
    );
    fake_server.stop(false).await;
}
