//! Benchmark: `speak now` latency per voice backend, from the studio request to the first
//! frame on air.
//!
//! `cargo bench --bench voice` (optionally `-- --rounds 20`). An in-process host on the
//! system clock airs its programme (scripts from the fake OpenAI's chat) while the studio
//! asks it, `--rounds` times per text, to speak a one-sentence and a three-sentence text
//! `now`. Measured: from just before the request to the `started_at` of the segment it
//! queued (when its first frame aired). Each voice is the production client against a fake
//! at the wire on loopback that holds every answer's first audio back 300 ms:
//! - `espeak-ng`: the local program (no fake, no added delay);
//! - `openai-speech`: the HTTP fake of the tests, answering after 300 ms;
//! - `openai-realtime`: the Realtime fake of the tests, first audio 300 ms after
//!   `response.create`; once with an instant upgrade (loopback) and once with 150 ms before
//!   the upgrade is answered, as a TLS handshake to a distant server takes. The fake counts
//!   connections, `session.update`s and responses (the programme's sentences included),
//!   which shows whether sessions are reused.

mod common;

#[path = "../tests/api/fake_openai.rs"]
#[allow(dead_code)]
mod fake_openai;
#[path = "../tests/api/fake_realtime.rs"]
#[allow(clippy::unwrap_used)]
mod fake_realtime;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use radio24::bus::{HostBus, HostEvent, SpeakMode, SpeakRequest};
use radio24::host::clock::{Clock, SystemClock};
use radio24::host::{Host, HostConfig};

use common::{Latencies, Report, arg, raise_fd_limit, runtime, settings};
use fake_openai::{Behaviour, FakeOpenAi};
use fake_realtime::{Delays, FakeRealtime};

/// How long every fake holds back an answer's first audio.
const FIRST_AUDIO: Duration = Duration::from_millis(300);
/// The upgrade delay of the second Realtime run.
const DISTANT_UPGRADE: Duration = Duration::from_millis(150);
/// Pause between requests, so the channel is airing (and the last cut-in has started).
const BETWEEN: Duration = Duration::from_millis(700);

const TEXTS: [(&str, &str); 2] = [
    ("1 sentence", "速報です。"),
    (
        "3 sentences",
        "速報です。関東地方に大雨の警報が出ました。お出かけの際は最新の情報に気をつけてください。",
    ),
];

/// One voice backend under test, and how its fakes are set up.
struct Backend {
    label: &'static str,
    backend: &'static str,
    /// `None` for the voices that do not use the Realtime fake.
    realtime: Option<Delays>,
}

/// The figures of one text on one backend.
struct Measured {
    latencies: Latencies,
    /// (connections, session.updates, responses) the Realtime fake served meanwhile.
    realtime: Option<(usize, usize, usize)>,
}

/// `rounds` `speak now` requests of `text`, each timed from the request to its segment's
/// first frame on air.
async fn speak_now(host: &Host, text: &str, rounds: usize) -> Latencies {
    let Ok(mut events) = host.subscribe().await else {
        panic!("subscribe")
    };
    let clock = SystemClock;
    let mut latencies = Latencies::default();
    for _ in 0..rounds {
        tokio::time::sleep(BETWEEN).await;
        let asked = clock.now();
        let accepted = match host
            .speak(SpeakRequest {
                text: text.into(),
                channel: None,
                mode: SpeakMode::Now,
            })
            .await
        {
            Ok(a) => a,
            Err(e) => panic!("speak: {e}"),
        };
        loop {
            match events.next().await {
                Some(HostEvent::SegmentStarted { segment, .. })
                    if segment.id == accepted.segment_id =>
                {
                    if let Some(at) = segment.started_at {
                        let us = (at - asked).num_microseconds().unwrap_or(0);
                        latencies.push(us as f64 / 1000.0);
                    }
                    break;
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    }
    latencies
}

/// Starts the fakes and a host speaking with `backend`, and measures each of [`TEXTS`].
async fn measure(backend: &Backend, rounds: usize) -> Vec<Measured> {
    let speech = Behaviour {
        latency: (FIRST_AUDIO, FIRST_AUDIO),
        failure_rate: 0.0,
        hang: None,
    };
    let openai = FakeOpenAi::start(Behaviour::healthy(), speech, "今日の話題です。").await;
    let realtime = match backend.realtime {
        Some(delays) => Some(FakeRealtime::start_with(&openai.server.uri(), delays).await),
        None => None,
    };
    let base = realtime
        .as_ref()
        .map_or_else(|| openai.base_url(), |r| r.base_url.clone());
    let config = HostConfig::from_settings(&settings(&[
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &base),
        ("RADIO24__VOICE__BACKEND", backend.backend),
    ]));
    let host = match Host::start_with_clock(config, Arc::new(SystemClock)).await {
        Ok(h) => h,
        Err(e) => panic!("host: {e}"),
    };
    let mut measured = Vec::new();
    for (_, text) in TEXTS {
        let before = realtime.as_ref().map(|r| r.served.counts());
        let latencies = speak_now(&host, text, rounds).await;
        let realtime = realtime.as_ref().zip(before).map(|(r, (c0, u0, r0))| {
            let (c, u, n) = r.served.counts();
            (c - c0, u - u0, n - r0)
        });
        measured.push(Measured {
            latencies,
            realtime,
        });
    }
    // The voice that actually aired, so a silent fallback cannot pass for the backend.
    match voice_on_air(&host).await {
        Some(voice) if voice == backend.backend => {}
        other => panic!("{} was asked for, {other:?} aired", backend.backend),
    }
    host.shutdown().await;
    measured
}

/// The voice in use on the default channel, as `/now` shows it.
async fn voice_on_air(host: &Host) -> Option<String> {
    let channel = radio24::domain::ChannelName::parse("radio24").ok()?;
    host.now_playing(&channel).await.ok().map(|on| on.voice)
}

fn main() {
    raise_fd_limit();
    let rounds = arg("--rounds", 20.0) as usize;
    let backends = [
        Backend {
            label: "espeak-ng (local, no added delay)",
            backend: "espeak-ng",
            realtime: None,
        },
        Backend {
            label: "openai-speech (HTTP, 300 ms first byte)",
            backend: "openai-speech",
            realtime: None,
        },
        Backend {
            label: "openai-realtime (300 ms first audio, instant upgrade)",
            backend: "openai-realtime",
            realtime: Some(Delays {
                upgrade: Duration::ZERO,
                first_audio: FIRST_AUDIO,
            }),
        },
        Backend {
            label: "openai-realtime (300 ms first audio, 150 ms upgrade)",
            backend: "openai-realtime",
            realtime: Some(Delays {
                upgrade: DISTANT_UPGRADE,
                first_audio: FIRST_AUDIO,
            }),
        },
    ];
    let mut report = Report::new(
        "Voice latency: speak now request → first frame on air",
        &[
            "voice",
            "text",
            "requests",
            "p50 / p99 / max (ms)",
            "p50 over the fake's delay (ms)",
            "Realtime connections / session.updates / responses meanwhile",
        ],
    );
    runtime().block_on(async {
        for backend in &backends {
            let measured = measure(backend, rounds).await;
            for ((text, _), mut m) in TEXTS.into_iter().zip(measured) {
                let added = match backend.backend {
                    "espeak-ng" => Duration::ZERO,
                    _ => FIRST_AUDIO,
                };
                let over = m.latencies.percentile(0.5) - added.as_secs_f64() * 1000.0;
                let served = m
                    .realtime
                    .map_or_else(|| "–".to_owned(), |(c, u, r)| format!("{c} / {u} / {r}"));
                report.row(&[
                    backend.label.to_owned(),
                    text.to_owned(),
                    m.latencies.len().to_string(),
                    m.latencies.summary(),
                    format!("{over:.1}"),
                    served,
                ]);
            }
        }
    });
    report.note(format!(
        "Each request is `speak` with mode `now`, {} ms after the last one's segment started; the channel airs its programme (scripts from the fake chat, voiced by the same backend) all along, so the Realtime counts include the programme's sentences. \"Over the fake's delay\" subtracts the 300 ms first-audio delay of the remote voices (not the upgrade delay: that is paid only when a connection is opened).",
        BETWEEN.as_millis()
    ));
    report.finish();
}
