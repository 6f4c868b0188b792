//! Benchmark: does the frame clock keep time when the machine is saturated?
//!
//! `cargo bench --bench timing` (optionally `-- --minutes 3 --listeners 1000 --busy-threads 2
//! --blocking-tasks 2 --hog 2`). The station runs in this process (role all, real time,
//! the espeak-ng voice when it is installed, else captions only) on a two-worker runtime,
//! as `radio24 serve` runs on a 2-core machine, while:
//! - `--busy-threads` threads of this process spin on the CPU;
//! - `--blocking-tasks` tasks on the station's own runtime hold a worker for 25 ms at a time
//!   (blocking work a library or a test does on the runtime), then sleep 25 ms;
//! - `--listeners` listeners read the HTTP stream over loopback (on the same runtime);
//! - the studio asks for a sentence every 5 s, so the producer keeps voicing;
//! - `stress-ng --cpu N` (`--hog`, from Debian) runs beside it, when installed.
//!
//! Reported, from the host's own count: ticks of the frame clock, how late they came (real
//! time; p50, p99, max), ticks later than a frame (20 ms) and frames skipped. Targets: no
//! frame skipped, p99 under 10 ms.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Report, arg, listen, raise_fd_limit, settings};
use radio24::cli::Role;
use radio24::domain::ChannelName;
use radio24::startup::Application;

/// Spins for `d` on this thread.
fn spin(d: Duration) {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// `stress-ng --cpu N` beside this process, killed on drop.
struct Hog(Option<std::process::Child>);

impl Drop for Hog {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn hog(workers: usize, secs: u64) -> Hog {
    if workers == 0 {
        return Hog(None);
    }
    let child = Command::new("stress-ng")
        .args([
            "--cpu",
            &workers.to_string(),
            "--timeout",
            &format!("{secs}s"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Hog(Some(child)),
        Err(e) => {
            println!("(stress-ng not run: {e}; `apt-get install stress-ng`)");
            Hog(None)
        }
    }
}

async fn run(
    minutes: f64,
    listeners: usize,
    busy_threads: usize,
    blocking_tasks: usize,
    hog_workers: usize,
) {
    let data = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let db = data.path().join("r.db");
    let token_file = data.path().join("admin-token");
    let voice = if Command::new("espeak-ng").arg("--version").output().is_ok() {
        "espeak-ng"
    } else {
        "none"
    };
    let app = Application::build(
        settings(&[
            ("RADIO24__SERVER__PORT", "0"),
            ("RADIO24__SERVER__WORKERS", "2"),
            ("RADIO24__AUTH__ADMIN_TOKEN", "bench"),
            (
                "RADIO24__AUTH__ADMIN_TOKEN_FILE",
                token_file.to_str().unwrap_or_default(),
            ),
            (
                "RADIO24__DATABASE__SQLITE_PATH",
                db.to_str().unwrap_or_default(),
            ),
            ("RADIO24__VOICE__BACKEND", voice),
        ]),
        Role::All,
    )
    .await;
    let app = match app {
        Ok(app) => app,
        Err(e) => panic!("radio24: {e:#}"),
    };
    let port = app.port();
    let Some(engine) = app.engine() else {
        panic!("role all has an engine")
    };
    tokio::spawn(app.run_until_stopped());
    let secs = minutes * 60.0;
    println!(
        "(station in this process: role all, real time, voice {voice}; {} s; {listeners} stream listeners; {busy_threads} busy threads; {blocking_tasks} blocking tasks on the runtime; stress-ng --cpu {hog_workers})",
        secs.round()
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    for _ in 0..busy_threads {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                spin(Duration::from_millis(10));
            }
        }));
    }
    let mut tasks = Vec::new();
    for _ in 0..blocking_tasks {
        tasks.push(tokio::spawn(async {
            loop {
                spin(Duration::from_millis(25));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    let _hog = hog(hog_workers, secs as u64 + 30);
    let mut readers = Vec::new();
    for _ in 0..listeners {
        if let Some(h) = listen(port, "radio24").await {
            readers.push(h);
        }
    }
    let client = reqwest::Client::new();
    let speaker = tokio::spawn(async move {
        loop {
            let _ = client
                .post(format!("http://127.0.0.1:{port}/v1/studio/speak"))
                .bearer_auth("bench")
                .json(&serde_json::json!({
                    "text": "This is Radio24 on a busy machine. Every frame should still go out on time, twenty milliseconds apart."
                }))
                .send()
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;

    let channel = match ChannelName::parse("radio24") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let timing = engine.playout_timing().remove(&channel).unwrap_or_default();
    let connected = readers.iter().filter(|h| !h.is_finished()).count();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    speaker.abort();
    tasks.iter().for_each(|t| t.abort());
    readers.iter().for_each(|r| r.abort());
    for t in threads {
        let _ = t.join();
    }
    let mut report = Report::new(
        &format!(
            "The frame clock under load ({} s at real time)",
            secs.round()
        ),
        &[
            "ticks",
            "lateness p50",
            "p99",
            "max",
            "late ticks (> 20 ms)",
            "frames skipped",
            "stream listeners at the end",
        ],
    );
    report.row(&[
        timing.frames.to_string(),
        format!("{:.1} ms", timing.lateness_ms.p50),
        format!("{:.1} ms", timing.lateness_ms.p99),
        format!("{:.1} ms", timing.lateness_ms.max),
        timing.late_ticks.to_string(),
        timing.skipped_frames.to_string(),
        format!("{connected} of {listeners}"),
    ]);
    let verdict = if timing.skipped_frames == 0 && timing.lateness_ms.p99 < 10.0 {
        "met"
    } else {
        "missed"
    };
    report.note(format!(
        "Load: {busy_threads} busy threads, {blocking_tasks} blocking tasks on the station's runtime, stress-ng --cpu {hog_workers}, voice {voice}. Targets: no frame skipped, p99 under 10 ms ({verdict})."
    ));
    report.finish();
}

fn main() {
    let minutes = arg("--minutes", 3.0);
    let listeners = arg("--listeners", 1000.0) as usize;
    let busy_threads = arg("--busy-threads", 2.0) as usize;
    let blocking_tasks = arg("--blocking-tasks", 2.0) as usize;
    let hog_workers = arg("--hog", 2.0) as usize;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    runtime.block_on(run(
        minutes,
        listeners,
        busy_threads,
        blocking_tasks,
        hog_workers,
    ));
    // The station's tasks are still on the runtime: do not wait for them.
    runtime.shutdown_background();
}
