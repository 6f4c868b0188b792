//! Benchmark: what the HTTP live stream costs.
//!
//! `cargo bench --bench stream` (optionally `-- --listeners 1000 --seconds 20`). Raises its
//! own open-file limit (about 2 × listeners are needed).
//! - Opus encode cost per second of audio (the host's `OggEncoder`, one channel).
//! - CPU of a real `radio24 serve` process (release build, espeak-ng voice when installed,
//!   else captions-only silence) with 1 listener and with N listeners reading the stream
//!   over loopback, measured from /proc for the server process only; the listeners run in
//!   this process.

mod common;

use std::time::{Duration, Instant};

use common::{Report, Server, arg, cpu_seconds, listen, raise_fd_limit, runtime, start_server};
use radio24::domain::ChannelName;
use radio24::host::outputs::ogg_stream::{OggEncoder, OggStreamConfig};

/// Encodes 120 s of speech-like audio; returns (seconds of audio, seconds spent, bytes out).
fn encode_cost() -> (usize, f64, usize) {
    let channel = match ChannelName::parse("radio24") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let Ok((mut encoder, _headers)) = OggEncoder::new(&channel, &OggStreamConfig::default()) else {
        panic!("encoder")
    };
    // Speech-like: a tone whose pitch wanders, with a little noise.
    let secs = 120;
    let frame: Vec<Vec<i16>> = (0..secs * 50)
        .map(|f| {
            (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f64 / 48_000.0;
                    let pitch = 180.0 + 60.0 * (t * 0.7).sin();
                    let noise = ((f * 7919 + i * 104_729) % 2000) as f64 - 1000.0;
                    ((t * pitch * std::f64::consts::TAU).sin() * 8_000.0 + noise) as i16
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut bytes = 0usize;
    for f in &frame {
        match encoder.encode(f) {
            Ok(pages) => bytes += pages.iter().map(|p| p.len()).sum::<usize>(),
            Err(e) => panic!("encode: {e}"),
        }
    }
    (secs, started.elapsed().as_secs_f64(), bytes)
}

async fn measure(server: &Server, listeners: usize, secs: f64) -> (f64, usize) {
    let mut handles = Vec::new();
    for _ in 0..listeners {
        if let Some(h) = listen(server.port, "radio24").await {
            handles.push(h);
        }
    }
    // Let every listener get past its headers before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.child.id().to_string();
    let cpu0 = cpu_seconds(&pid);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let cpu = cpu_seconds(&pid) - cpu0;
    let connected = handles.iter().filter(|h| !h.is_finished()).count();
    for h in handles {
        h.abort();
    }
    (cpu / secs, connected)
}

fn main() {
    let listeners = arg("--listeners", 1000.0) as usize;
    let secs = arg("--seconds", 20.0);
    raise_fd_limit();
    let (audio, spent, bytes) = encode_cost();
    let runtime = runtime();
    let (idle, one, many, connected) = runtime.block_on(async {
        // All the listeners come from this one address: lift the per-client limits on
        // stream opens (`stream.opens_per_minute`, 60) for the measurement.
        let server = start_server(&[("RADIO24__STREAM__OPENS_PER_MINUTE", "1000000")]).await;
        let (idle, _) = measure(&server, 0, secs).await;
        let (one, _) = measure(&server, 1, secs).await;
        let (many, connected) = measure(&server, listeners, secs).await;
        (idle, one, many, connected)
    });
    let mut report = Report::new(
        "HTTP stream: CPU of the server process",
        &["What", "Result"],
    );
    report.row(&[
        "Opus encode, one channel (64 kbit/s, 48 kHz mono, 20 ms frames)".to_owned(),
        format!(
            "{audio} s of audio in {:.0} ms: {:.2} % of one core at real time; {:.1} kbit/s on the wire",
            spent * 1000.0,
            spent / audio as f64 * 100.0,
            bytes as f64 * 8.0 / audio as f64 / 1000.0
        ),
    ]);
    report.row(&[
        "Server, no listener (the station itself)".to_owned(),
        format!("{:.2} % of one core", idle * 100.0),
    ]);
    report.row(&[
        "Server, 1 listener".to_owned(),
        format!("{:.2} % of one core", one * 100.0),
    ]);
    report.row(&[
        format!("Server, {listeners} listeners ({connected} connected at the end)"),
        format!(
            "{:.2} % of one core = **{:.2} % of the 2 cores**; {:.4} % of a core per listener above one",
            many * 100.0,
            many * 50.0,
            (many - one).max(0.0) / (listeners.max(2) - 1) as f64 * 100.0
        ),
    ]);
    let verdict = if many * 50.0 < 10.0 { "met" } else { "missed" };
    report.note(format!(
        "{secs} s per measurement, real time. Target for 1 000 listeners: under 10 % of the 2 cores ({verdict})."
    ));
    report.finish();
}
