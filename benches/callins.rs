//! Benchmark: call-ins.
//!
//! `cargo bench --bench callins` (optionally `-- --listeners 1000 --rate 50 --seconds 20
//! --items 2000`). Needs about 2 × listeners open files (`ulimit -n`).
//!
//! 1. **Enqueue latency over `/ws/ptt`.** A release `radio24 serve` (role all, SQLite, no
//!    voice) in a child process. 50 caller sockets send typed call-ins at `--rate` a second in
//!    all; the time from sending a `text` frame to its `queued` frame is measured. First with
//!    no other clients (the baseline), then while `--listeners` `/ws/broadcast` clients
//!    receive the queue's changes (coalesced to a frame every 250 ms) and the programme.
//!    The listeners run on a runtime (thread) of their own in this process, so that their
//!    reads compete with the callers for the CPU, as remote listeners' traffic would, but
//!    never sit in the callers' task queue.
//! 2. **Claims per second.** On a throw-away PostgreSQL database
//!    (`RADIO24_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`):
//!    `--items` call-ins enqueued through the store, then claimed through
//!    `Store::claim_next_call` by two concurrent claimers until none is left; against the
//!    same number of rows claimed by a raw `UPDATE … FOR UPDATE SKIP LOCKED` loop on the same
//!    table, two claimers too. Also the SQLite store's claims per second on a file.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Report, Server, arg, raise_fd_limit, runtime, start_server};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::{SinkExt, StreamExt};
use radio24::db::postgres::PgStore;
use radio24::db::sqlite::SqliteStore;
use radio24::db::{CallerLimits, NewCall, Store};
use radio24::domain::ChannelName;
use tokio_tungstenite::tungstenite::Message;

/// Callers sending call-ins.
const CALLERS: usize = 50;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(port: u16, path: &str) -> Option<Ws> {
    let url = format!("ws://127.0.0.1:{port}{path}");
    tokio_tungstenite::connect_async(url)
        .await
        .ok()
        .map(|(ws, _)| ws)
}

/// The next text frame as JSON.
async fn next_json(ws: &mut Ws) -> Option<serde_json::Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `n` `/ws/broadcast` clients that read and discard, on a runtime of their own (one
/// thread), as listeners on other machines would be: their reads never queue behind the
/// measuring callers' tasks in one scheduler. They end when the runtime is shut down.
async fn listeners(port: u16, n: usize) -> (tokio::runtime::Runtime, usize) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("listeners' runtime: {e}"),
    };
    let connected = runtime
        .spawn(async move {
            let mut connected = 0;
            for _ in 0..n {
                let Some(mut ws) = connect(port, "/ws/broadcast").await else {
                    continue;
                };
                connected += 1;
                tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
            }
            connected
        })
        .await
        .unwrap_or(0);
    (runtime, connected)
}

/// Enqueue latencies (ms, sorted) of `rate` call-ins a second for `secs` from [`CALLERS`]
/// sockets.
async fn enqueue_latencies(port: u16, rate: f64, secs: f64) -> Vec<f64> {
    let per_caller = Duration::from_secs_f64(CALLERS as f64 / rate);
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(port, "/ws/ptt").await?;
            ws.send(Message::Text(r#"{"type":"hello"}"#.into()))
                .await
                .ok()?;
            next_json(&mut ws).await?;
            // Stagger the callers over one interval.
            tokio::time::sleep(per_caller.mul_f64(i as f64 / CALLERS as f64)).await;
            let mut every = tokio::time::interval(per_caller);
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut latencies = Vec::new();
            while Instant::now() < end {
                every.tick().await;
                let sent = Instant::now();
                let frame = serde_json::json!({"type": "text", "text": "ベンチマークの質問です"});
                ws.send(Message::Text(frame.to_string().into()))
                    .await
                    .ok()?;
                loop {
                    let answer = next_json(&mut ws).await?;
                    match answer["type"].as_str() {
                        Some("queued") => break,
                        Some("error") => panic!("refused: {answer}"),
                        _ => {}
                    }
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            Some(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        if let Ok(Some(latencies)) = task.await {
            all.extend(latencies);
        }
    }
    all.sort_by(f64::total_cmp);
    all
}

async fn enqueue_benchmark(listeners_n: usize, rate: f64, secs: f64) {
    let mut report = Report::new(
        &format!(
            "Call-in enqueue latency over /ws/ptt: {rate} call-ins/s from {CALLERS} callers, {secs} s each"
        ),
        &["broadcast listeners", "call-ins", "p50", "p99", "max"],
    );
    // A fresh server (and queue) for each, so both start from an empty queue.
    let mut p99_loaded = f64::NAN;
    for n in [0, listeners_n] {
        let server = bench_server().await;
        let (listening, clients) = listeners(server.port, n).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let latencies = enqueue_latencies(server.port, rate, secs).await;
        p99_loaded = percentile(&latencies, 0.99);
        report.row(&[
            clients.to_string(),
            latencies.len().to_string(),
            format!("{:.2} ms", percentile(&latencies, 0.5)),
            format!("{p99_loaded:.2} ms"),
            format!("{:.2} ms", latencies.last().copied().unwrap_or(f64::NAN)),
        ]);
        listening.shutdown_background();
    }
    let verdict = if p99_loaded <= 10.0 { "met" } else { "missed" };
    report.note(format!(
        "The first row is the baseline (no other clients). Target: p99 ≤ 10 ms with {listeners_n} listeners ({verdict})."
    ));
    report.finish();
}

async fn bench_server() -> Server {
    start_server(&[
        ("RADIO24__VOICE__BACKEND", "none"),
        ("RADIO24__QUEUE__MAX_WAITING_PER_USER", "1000000"),
        ("RADIO24__QUEUE__MAX_PER_USER_PER_HOUR", "1000000"),
        ("RADIO24__QUEUE__ENQUEUES_PER_MINUTE", "1000000"),
        ("RADIO24__BROADCAST__CONNECTS_PER_MINUTE", "1000000"),
    ])
    .await
}

fn channel() -> ChannelName {
    match ChannelName::parse("bench") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Enqueues `items` call-ins of distinct callers.
async fn fill(store: &dyn Store, items: usize) {
    let limits = CallerLimits {
        max_waiting: 1_000_000,
        max_per_hour: 1_000_000,
    };
    for i in 0..items {
        let call = NewCall {
            channel: channel(),
            user_id: format!("c_bench{i}"),
            text: Some("質問".to_owned()),
            audio: None,
        };
        if let Err(e) = store.enqueue_call(call, limits).await {
            panic!("enqueue: {e}");
        }
    }
}

/// Claims per second of two `claimer`s at once, each claiming until it finds nothing left
/// (it returns how many it claimed).
async fn two_claimers<F, Fut>(claimer: F) -> (usize, f64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let started = Instant::now();
    let claimers: Vec<_> = (0..2).map(|_| tokio::spawn(claimer())).collect();
    let mut claimed = 0;
    for c in claimers {
        claimed += c.await.unwrap_or(0);
    }
    (claimed, claimed as f64 / started.elapsed().as_secs_f64())
}

/// Claims per second through the store.
async fn store_claims(store: Arc<dyn Store>) -> (usize, f64) {
    two_claimers(|| {
        let store = store.clone();
        async move {
            let mut n = 0;
            while let Ok(Some(_)) = store.claim_next_call(&channel()).await {
                n += 1;
            }
            n
        }
    })
    .await
}

#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    #[allow(dead_code)]
    id: uuid::Uuid,
}

/// Claims per second by a raw `SKIP LOCKED` loop, a connection per claimer.
async fn raw_claims(url: &str) -> (usize, f64) {
    two_claimers(|| {
        let url = url.to_owned();
        async move {
            let Ok(mut conn) = AsyncPgConnection::establish(&url).await else {
                return 0;
            };
            let mut n = 0;
            loop {
                let claimed: Vec<Claimed> = match diesel::sql_query(
                    "UPDATE queue SET status = 'live' WHERE id = (SELECT id FROM queue \
                     WHERE status = 'queued' ORDER BY enqueued_at, id LIMIT 1 \
                     FOR UPDATE SKIP LOCKED) RETURNING id",
                )
                .load(&mut conn)
                .await
                {
                    Ok(rows) => rows,
                    Err(e) => panic!("raw claim: {e}"),
                };
                if claimed.is_empty() {
                    return n;
                }
                n += 1;
            }
        }
    })
    .await
}

async fn execute(url: &str, sql: &str) {
    let mut conn = match AsyncPgConnection::establish(url).await {
        Ok(c) => c,
        Err(e) => panic!("PostgreSQL at {url}: {e}"),
    };
    if let Err(e) = diesel::sql_query(sql).execute(&mut conn).await {
        panic!("{sql}: {e}");
    }
}

async fn claim_benchmark(items: usize) {
    let admin = std::env::var("RADIO24_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("radio24_bench_{}", uuid::Uuid::new_v4().simple());
    execute(&admin, &format!("CREATE DATABASE {name}")).await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let secret = secrecy::SecretString::from(url.clone());
    let store = match PgStore::connect(&secret, 4, Duration::from_secs(10)).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = store.migrate().await {
        panic!("{e}");
    }
    let store: Arc<dyn Store> = Arc::new(store);
    if let Err(e) = store.ensure_channel(&channel()).await {
        panic!("{e}");
    }
    // Raw first, on rows the store wrote, then the store on fresh rows: same table, same size.
    fill(store.as_ref(), items).await;
    let (raw_n, raw_rate) = raw_claims(&url).await;
    execute(&url, "DELETE FROM queue").await;
    fill(store.as_ref(), items).await;
    let (store_n, store_rate) = store_claims(store.clone()).await;
    let mut report = Report::new(
        &format!("Call-in claims per second: {items} items, two claimers at once"),
        &["claimer", "claimed", "claims/s", "vs raw SQL"],
    );
    report.row(&[
        "raw `UPDATE … FOR UPDATE SKIP LOCKED` (PostgreSQL)".to_owned(),
        raw_n.to_string(),
        format!("{raw_rate:.0}"),
        "1.00".to_owned(),
    ]);
    report.row(&[
        "`Store::claim_next_call` (PostgreSQL)".to_owned(),
        store_n.to_string(),
        format!("{store_rate:.0}"),
        format!("{:.2}", store_rate / raw_rate),
    ]);
    drop(store);
    execute(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let sqlite =
        match SqliteStore::open(&dir.path().join("bench.db"), 4, Duration::from_secs(10)).await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
    let sqlite: Arc<dyn Store> = Arc::new(sqlite);
    if let Err(e) = sqlite.ensure_channel(&channel()).await {
        panic!("{e}");
    }
    fill(sqlite.as_ref(), items).await;
    let (n, rate) = store_claims(sqlite).await;
    report.row(&[
        "`Store::claim_next_call` (SQLite file)".to_owned(),
        n.to_string(),
        format!("{rate:.0}"),
        "—".to_owned(),
    ]);
    let verdict = if store_rate >= 0.5 * raw_rate {
        "met"
    } else {
        "missed"
    };
    report.note(format!(
        "Target: PostgreSQL claims ≥ 0.5× raw SQL ({verdict})."
    ));
    report.finish();
}

fn main() {
    let listeners_n = arg("--listeners", 1000.0) as usize;
    let rate = arg("--rate", 50.0);
    let secs = arg("--seconds", 20.0);
    let items = arg("--items", 2000.0) as usize;
    raise_fd_limit();
    let runtime = runtime();
    runtime.block_on(async {
        enqueue_benchmark(listeners_n, rate, secs).await;
        claim_benchmark(items).await;
    });
}
