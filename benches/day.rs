//! Benchmark: a simulated day of programme, and what the playout costs.
//!
//! `cargo bench --bench day` (optionally `-- --hours 24 --speed 360`). Providers are the
//! fake OpenAI of the tests (wiremock on loopback) with 1–3 s latency and 5 % failures, so
//! the production clients, producer and playout all run. The fake runs in a child process
//! (this benchmark re-invoked with `--fake-providers SPEED`) so that what is measured is the
//! host alone: wiremock keeps every request a mock has matched for the mock's lifetime
//! (`MountedMock::matched_requests`, whatever `disable_request_recording` says), about
//! 130 KB a segment, which in the same process read as a leak in the host. Reported:
//! - gaps between segments (count, p99, max) and dead-air seconds over the day;
//! - resident memory at the start, middle and end (sampled every programme hour);
//! - filler share (station IDs aired because nothing else was ready);
//! - CPU: the host per second of programme, and the playout alone per second of
//!   programme (as a share of one core at real time);
//! - `speak now` latency: from the voice's first audio bytes to the first frame that airs them.

mod common;

#[path = "../tests/api/fake_openai.rs"]
#[allow(dead_code)]
mod fake_openai;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use radio24::bus::{HostBus, HostEvent, SpeakMode, SpeakRequest};
use radio24::domain::ChannelName;
use radio24::host::clock::{Clock, ScaledClock, SystemClock};
use radio24::host::playout::{FillerSource, Playout, QueuedSegment, SegmentKind};
use radio24::host::{Host, HostConfig};

use common::{Report, arg, cpu_seconds, rss_mb, runtime, settings};
use fake_openai::{Behaviour, FakeOpenAi, Tally};

fn radio24() -> ChannelName {
    match ChannelName::parse("radio24") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// What the soak's fake writes: about 45 s of speech.
fn soak_script() -> String {
    "ラジオの時間です。今日も一緒に過ごしましょう。ゆっくり聴いてください。".repeat(4)
}

/// The soak's providers: 1–3 s of programme time to answer, 5 % failures.
fn flaky(speed: f64) -> Behaviour {
    Behaviour {
        latency: (
            Duration::from_secs_f64(1.0 / speed),
            Duration::from_secs_f64(3.0 / speed),
        ),
        failure_rate: 0.05,
        hang: None,
    }
}

/// Child mode (`--fake-providers SPEED`): serves the fake OpenAI, prints its base URL on
/// the first line of stdout, answers `GET /bench/tally` with what it counted, and exits when
/// its stdin closes (the parent ended or dropped it).
async fn serve_fake_providers(speed: f64) {
    let fake = FakeOpenAi::start(flaky(speed), flaky(speed), &soak_script()).await;
    let (chat, speech) = (fake.chat.clone(), fake.speech.clone());
    let count = |t: &Tally| {
        serde_json::json!({
            "requests": t.requests.load(Ordering::Relaxed),
            "failures": t.failures.load(Ordering::Relaxed),
        })
    };
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path("/bench/tally"))
        .respond_with(move |_: &wiremock::Request| {
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"chat": count(&chat), "speech": count(&speech)}))
        })
        .mount(&fake.server)
        .await;
    println!("{}", fake.base_url());
    let mut stdin = tokio::io::stdin();
    let mut byte = [0u8; 1];
    while matches!(tokio::io::AsyncReadExt::read(&mut stdin, &mut byte).await, Ok(n) if n > 0) {}
}

/// The fake providers in a child process; killed when dropped.
struct FakeProviders {
    child: std::process::Child,
    base: String,
}

impl FakeProviders {
    fn spawn(speed: f64) -> Self {
        use std::io::BufRead;
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => panic!("current_exe: {e}"),
        };
        let mut child = match std::process::Command::new(exe)
            .args(["--bench", "--fake-providers", &speed.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("spawn the fake providers: {e}"),
        };
        let mut base = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut base);
        }
        let base = base.trim().to_owned();
        if !base.starts_with("http://") {
            let _ = child.kill();
            panic!("the fake providers did not start (said {base:?})");
        }
        Self { child, base }
    }

    /// (requests, failures) of chat and of speech, as the fake counted them.
    async fn tally(&self) -> [(u64, u64); 2] {
        let url = format!("{}/bench/tally", self.base.trim_end_matches("/v1"));
        let body: serde_json::Value = match reqwest::get(&url).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => panic!("tally: {e}"),
        };
        let of = |api: &str| {
            let n = |k: &str| body[api][k].as_u64().unwrap_or(0);
            (n("requests"), n("failures"))
        };
        [of("chat"), of("speech")]
    }
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn day(hours: f64, speed: f64) {
    let fake = FakeProviders::spawn(speed);
    let base = fake.base.clone();
    let origin: DateTime<Utc> = Utc::now();
    let clock = Arc::new(ScaledClock::new(origin, speed));
    let config = HostConfig::from_settings(&settings(&[
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &base),
        ("RADIO24__VOICE__BACKEND", "openai-speech"),
    ]));
    let cpu0 = cpu_seconds("self");
    let wall0 = Instant::now();
    let host = match Host::start_with_clock(config, clock.clone()).await {
        Ok(h) => h,
        Err(e) => panic!("host: {e}"),
    };
    let Some(station) = host.station(&radio24()) else {
        panic!("no station")
    };
    let end = origin + chrono::Duration::milliseconds((hours * 3_600_000.0) as i64);
    // Resident memory once per programme hour (and at the start): a leak shows as a trend.
    let pid = std::process::id();
    let mut rss = vec![(0.0, rss_mb(pid))];
    let mut next_sample = origin + chrono::Duration::hours(1);
    while clock.now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if clock.now() >= next_sample {
            let hour = (next_sample - origin).num_minutes() as f64 / 60.0;
            rss.push((hour, rss_mb(pid)));
            next_sample += chrono::Duration::hours(1);
        }
    }
    rss.push((hours, rss_mb(pid)));
    let cpu = cpu_seconds("self") - cpu0;
    let programme_secs = hours * 3600.0;
    let stats = &station.playout.stats;
    let gaps = stats.gaps();
    let segments = stats.segments.load(Ordering::Relaxed);
    let fillers = stats.fillers.load(Ordering::Relaxed);
    let mut report = Report::new(
        &format!("On-air soak: {hours} h of programme at {speed}x on the virtual clock"),
        &["What", "Result"],
    );
    report.row(&[
        "Programme aired".to_owned(),
        format!(
            "{hours} h in {:.0} s wall: {segments} segments, {fillers} fillers (station IDs while nothing else was ready)",
            wall0.elapsed().as_secs_f64()
        ),
    ]);
    report.row(&[
        "Gaps between segments".to_owned(),
        format!(
            "count {}, p99 {} ms, max {} ms",
            gaps.count, gaps.p99_ms, gaps.max_ms
        ),
    ]);
    report.row(&[
        "Dead air".to_owned(),
        format!("{:.2} s", gaps.dead_air_secs),
    ]);
    let [(chat, chat_failed), (speech, speech_failed)] = fake.tally().await;
    report.row(&[
        "Provider calls (1–3 s latency, 5 % failures: 500s and garbage)".to_owned(),
        format!("chat {chat} ({chat_failed} failed), speech {speech} ({speech_failed} failed)"),
    ]);
    report.row(&[
        "Host CPU (the fake providers run in a child process)".to_owned(),
        format!(
            "{:.3} % of one core at real time ({cpu:.1} CPU s for {programme_secs:.0} s of programme)",
            cpu / programme_secs * 100.0
        ),
    ]);
    let at = |share: f64| rss[((rss.len() - 1) as f64 * share).round() as usize];
    let (start, middle, last) = (at(0.0), at(0.5), at(1.0));
    let peak = rss.iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
    report.row(&[
        "RSS (the host's process) at start / middle / end".to_owned(),
        format!(
            "{:.1} MB (h {:.0}) / {:.1} MB (h {:.0}) / {:.1} MB (h {:.0}); peak {peak:.1} MB",
            start.1, start.0, middle.1, middle.0, last.1, last.0
        ),
    ]);
    let second_half: Vec<f64> = rss[rss.len() / 2..].iter().map(|(_, mb)| *mb).collect();
    let growth =
        second_half.last().copied().unwrap_or(0.0) - second_half.first().copied().unwrap_or(0.0);
    report.note(format!(
        "Targets: no gap, no dead air, no RSS growth trend (second half of the run: {growth:+.1} MB). RSS per hour: {}. The fake providers' own process (wiremock, which keeps every request it matched) ended at {:.0} MB.",
        rss.iter()
            .map(|(h, mb)| format!("h{h:.0} {mb:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        rss_mb(fake.child.id()),
    ));
    report.finish();
}

struct Silence;

impl FillerSource for Silence {
    fn filler(&self) -> Arc<QueuedSegment> {
        let seg = QueuedSegment::new(
            radio24::bus::Segment {
                id: uuid::Uuid::now_v7(),
                block: None,
                topic: None,
                text: String::new(),
                duration_ms: 0,
                started_at: None,
            },
            SegmentKind::Filler,
            "bench",
            "bench",
        );
        // Ten minutes of a quiet tone per filler, so the playout never waits.
        seg.push_sentence("tone");
        seg.push_audio(
            (0..48_000 * 600)
                .map(|i| ((i % 96) as i16 - 48) * 50)
                .collect(),
        );
        seg.finish();
        seg
    }
}

async fn playout_alone(hours: f64, speed: f64) {
    let clock = Arc::new(ScaledClock::new(Utc::now(), speed));
    let (events, mut rx) = tokio::sync::broadcast::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_ok() {} });
    let playout = match Playout::spawn(radio24(), clock.clone(), events, Arc::new(Silence)) {
        Ok(p) => p,
        Err(e) => panic!("playout: {e}"),
    };
    let mut sink = playout.subscribe();
    tokio::spawn(async move {
        while let Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) =
            sink.recv().await
        {}
    });
    let cpu0 = cpu_seconds("self");
    let start = clock.now();
    let end = start + chrono::Duration::milliseconds((hours * 3_600_000.0) as i64);
    while clock.now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_seconds("self") - cpu0;
    let frames = playout.stats.frames.load(Ordering::Relaxed);
    let programme_secs = frames as f64 * 0.02;
    let mut report = Report::new(
        &format!(
            "The playout alone: {programme_secs:.0} s of programme at {speed}x, one sink attached"
        ),
        &["What", "Result"],
    );
    report.row(&[
        "CPU".to_owned(),
        format!(
            "{:.4} % of one core at real time ({cpu:.2} CPU s, {frames} frames, {:.2} µs a 20 ms frame)",
            cpu / programme_secs * 100.0,
            cpu / frames as f64 * 1e6
        ),
    ]);
    report.finish();
}

async fn speak_now_latency(rounds: usize) {
    // Real time; the fake speech answers after 300 ms. Latency = when the segment's first
    // frame airs − (request + 300 ms).
    let answer = Duration::from_millis(300);
    let speech = Behaviour {
        latency: (answer, answer),
        failure_rate: 0.0,
        hang: None,
    };
    let fake = FakeOpenAi::start(Behaviour::healthy(), speech, "今日の話題です。").await;
    let base = fake.base_url();
    let config = HostConfig::from_settings(&settings(&[
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &base),
        ("RADIO24__VOICE__BACKEND", "openai-speech"),
    ]));
    let clock = Arc::new(SystemClock);
    let host = match Host::start_with_clock(config, clock.clone()).await {
        Ok(h) => h,
        Err(e) => panic!("host: {e}"),
    };
    let Ok(mut events) = host.subscribe().await else {
        panic!("subscribe")
    };
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let asked = clock.now();
        let Ok(accepted) = host
            .speak(SpeakRequest {
                text: "速報です。".into(),
                channel: None,
                mode: SpeakMode::Now,
            })
            .await
        else {
            panic!("speak")
        };
        loop {
            match events.next().await {
                Some(HostEvent::SegmentStarted { segment, .. })
                    if segment.id == accepted.segment_id =>
                {
                    let Some(at) = segment.started_at else { break };
                    let ms = (at - asked).num_microseconds().unwrap_or(0) as f64 / 1000.0
                        - answer.as_secs_f64() * 1000.0;
                    latencies.push(ms);
                    break;
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut report = Report::new(
        &format!(
            "`speak now`: first audio bytes → first frame on air ({rounds} requests, real time)"
        ),
        &["p50", "p99", "max"],
    );
    report.row(&[
        format!("{:.1} ms", pct(0.5)),
        format!("{:.1} ms", pct(0.99)),
        format!("{:.1} ms", pct(1.0)),
    ]);
    report.note("Includes the HTTP transfer of the first bytes and the resampler's block. Target: under 100 ms.");
    report.finish();
}

fn main() {
    let runtime = runtime();
    let hours = arg("--hours", 24.0);
    let speed = arg("--speed", 360.0);
    let fake_speed = arg("--fake-providers", 0.0);
    if fake_speed > 0.0 {
        runtime.block_on(serve_fake_providers(fake_speed));
        return;
    }
    runtime.block_on(async {
        playout_alone(hours.min(6.0), 600.0).await;
        speak_now_latency(20).await;
        day(hours, speed).await;
    });
}
