//! Benchmark: LiveKit join tokens, `POST /v1/room/join`, against `GET /health` of the same
//! binary.
//!
//! `cargo bench --bench join` (optionally `-- --connections 64 --seconds 10 --rate 5000`).
//! A release `radio24 serve` (role all, SQLite, LiveKit credentials set so it mints tokens,
//! publishing off, the join rate limit lifted for the benchmark's one address) in a child
//! process; the clients are reqwest on this process's runtime.
//!
//! 1. **Closed loop.** `--connections` keep-alive connections, each sending its next request
//!    as soon as the last one's answer is read, for `--seconds`: first `GET /health`, then
//!    `POST /v1/room/join`, then both again; requests per second and the server's CPU time
//!    per 1000 requests (from /proc). Target: join at least 0.4 × health.
//! 2. **Open loop.** Joins sent at `--rate` a second on a fixed schedule (5 per millisecond
//!    tick) whatever the answers, for `--seconds`; latency counted from when each request was
//!    due, so a stall shows in the figures rather than slowing the sender. Achieved rate,
//!    p50/p99/max.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Latencies, Report, Server, arg, cpu_seconds, raise_fd_limit, runtime, start_server};

/// Requests in flight at most in the open loop; past it a due request is counted as not
/// sent rather than queued without bound.
const MAX_IN_FLIGHT: usize = 4096;

/// One of the two requests compared.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    Health,
    Join,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Health => "GET /health",
            Route::Join => "POST /v1/room/join",
        }
    }

    /// Sends the request and reads its whole answer; true when it was the expected 200
    /// (a join answer with a token in it).
    async fn send(self, client: &reqwest::Client, port: u16) -> bool {
        let answer = match self {
            Route::Health => {
                client
                    .get(format!("http://127.0.0.1:{port}/health"))
                    .send()
                    .await
            }
            Route::Join => {
                client
                    .post(format!("http://127.0.0.1:{port}/v1/room/join"))
                    .header("content-type", "application/json")
                    .body(r#"{"name":"bench"}"#)
                    .send()
                    .await
            }
        };
        let Ok(answer) = answer else { return false };
        let ok = answer.status() == reqwest::StatusCode::OK;
        match answer.bytes().await {
            Ok(body) => {
                ok && (self == Route::Health || body.windows(8).any(|w| w == b"\"token\":"))
            }
            Err(_) => false,
        }
    }
}

fn client(connections: usize) -> reqwest::Client {
    match reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    }
}

/// What one closed-loop run did.
struct ClosedLoop {
    ok: usize,
    failed: usize,
    secs: f64,
    server_cpu: f64,
}

/// `connections` workers sending `route` back to back for `secs`.
async fn closed_loop(server: &Server, route: Route, connections: usize, secs: f64) -> ClosedLoop {
    let client = client(connections);
    let port = server.port;
    let pid = server.child.id().to_string();
    // Open the connections before the clock starts.
    futures::future::join_all((0..connections).map(|_| route.send(&client, port))).await;
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds(&pid);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, ok, failed) = (client.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let counter = if route.send(&client, port).await {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    futures::future::join_all(workers).await;
    ClosedLoop {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        server_cpu: cpu_seconds(&pid) - cpu0,
    }
}

/// What the open-loop run did.
struct OpenLoop {
    latencies: Latencies,
    failed: usize,
    not_sent: usize,
    secs: f64,
}

/// Joins due at `rate` a second for `secs`, each timed from when it was due.
async fn open_loop(server: &Server, rate: f64, secs: f64) -> OpenLoop {
    const TICK: Duration = Duration::from_millis(1);
    let per_tick = (rate * TICK.as_secs_f64()).round().max(1.0) as usize;
    let ticks = (secs / TICK.as_secs_f64()) as usize;
    let client = client(MAX_IN_FLIGHT);
    let port = server.port;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut not_sent = 0;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(ticks * per_tick);
    for tick in 0..ticks {
        let due = start + TICK * tick as u32;
        tokio::time::sleep_until(due).await;
        for _ in 0..per_tick {
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                not_sent += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (client, in_flight) = (client.clone(), in_flight.clone());
            tasks.push(tokio::spawn(async move {
                let ok = Route::Join.send(&client, port).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                ok.then(|| due.elapsed().as_secs_f64() * 1000.0)
            }));
        }
    }
    let mut latencies = Latencies::default();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Some(ms)) => latencies.push(ms),
            _ => failed += 1,
        }
    }
    OpenLoop {
        latencies,
        failed,
        not_sent,
        secs: start.elapsed().as_secs_f64(),
    }
}

fn main() {
    raise_fd_limit();
    // reqwest is built without a TLS provider of its own; the binary installs this one.
    radio24::install_crypto_provider();
    let connections = arg("--connections", 64.0) as usize;
    let secs = arg("--seconds", 10.0);
    let rate = arg("--rate", 5000.0);
    runtime().block_on(async {
        let server = start_server(&[
            ("RADIO24__LIVEKIT__API_KEY", "bench-key"),
            ("RADIO24__LIVEKIT__API_SECRET", "bench-secret-bench-secret-bench-secret"),
            ("RADIO24__LIVEKIT__WS_URL", "ws://127.0.0.1:9/"),
            ("RADIO24__LIVEKIT__PUBLISH", "false"),
            ("RADIO24__LIVEKIT__JOIN_PER_MINUTE", "4000000000"),
        ])
        .await;

        let mut closed = Report::new(
            "Join tokens: closed loop against /health",
            &[
                "request",
                "run",
                "requests/s",
                "failed",
                "server CPU ms per 1000",
            ],
        );
        let mut rates = [(Route::Health, 0.0, 0usize), (Route::Join, 0.0, 0usize)];
        for run in 1..=2 {
            for (route, total_ok, total_failed) in &mut rates {
                let r = closed_loop(&server, *route, connections, secs / 2.0).await;
                let per_sec = r.ok as f64 / r.secs;
                *total_ok += per_sec / 2.0;
                *total_failed += r.failed;
                closed.row(&[
                    route.name().to_owned(),
                    run.to_string(),
                    format!("{per_sec:.0}"),
                    r.failed.to_string(),
                    format!("{:.1}", r.server_cpu * 1e6 / r.ok.max(1) as f64),
                ]);
            }
        }
        let [(_, health, _), (_, join, join_failed)] = rates;
        let ratio = join / health;
        closed.note(format!(
            "{connections} keep-alive connections, {:.0} s per run. Mean of the two runs: health {health:.0}/s, join {join:.0}/s ({join_failed} failed): join/health = {ratio:.2} (target ≥ 0.40: {}).",
            secs / 2.0,
            if ratio >= 0.4 { "met" } else { "MISSED" }
        ));
        closed.finish();

        let mut o = open_loop(&server, rate, secs).await;
        let mut open = Report::new(
            "Join tokens: open loop",
            &[
                "asked rate/s",
                "achieved rate/s",
                "p50 / p99 / max (ms)",
                "failed",
                "not sent (in-flight cap)",
            ],
        );
        open.row(&[
            format!("{rate:.0}"),
            format!("{:.0}", o.latencies.len() as f64 / o.secs),
            o.latencies.summary(),
            o.failed.to_string(),
            o.not_sent.to_string(),
        ]);
        open.note(format!(
            "{secs:.0} s; latency from when each request was due (not when it was sent) to its whole answer; in flight at most {MAX_IN_FLIGHT}."
        ));
        open.finish();
    });
}
