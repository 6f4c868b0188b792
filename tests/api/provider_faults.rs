//! Provider faults the station must ride out, faked at the wire so the production clients
//! run: a speech answer that stalls mid-body or is cut off mid-audio, random bytes sent as
//! audio, a Realtime socket that dies mid-answer, and a chat completion that stalls or
//! breaks off mid-body. (500s, garbage pages and answers that never start are in
//! `engine::failing_providers_are_retried_then_replaced_and_the_station_keeps_airing`.)
//!
//! In each case the failed call is retried, then replaced (the espeak-ng voice, or captions
//! where espeak-ng is missing; the template writer), the station keeps airing talk
//! segments, and the failure is counted in `radio24_provider_errors_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use radio24::bus::{HostBus, HostEvent};
use radio24::host::Host;
use radio24::host::clock::ScaledClock;
use radio24::metrics::PROVIDER_ERRORS;

use crate::engine::{host_at, radio24};
use crate::fake_openai::{Behaviour, FakeOpenAi};
use crate::fake_realtime::{Answering, FakeRealtime};
use crate::faulty_provider::{Fault, FaultyProvider, tone_pcm};
use crate::helpers::{Deadline, NO_QANDA, PROGRAMME_PATIENCE};

/// A host at 20× on a talk-only day whose OpenAI is at `base`, with `writer` and `voice`
/// as its backends, a second for each provider call and one retry.
async fn host_on(base: &str, writer: &str, voice: &str) -> (Host, Arc<ScaledClock>) {
    host_at(
        "2026-11-28T09:10:00+09:00",
        20.0,
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", base),
            ("RADIO24__WRITER__BACKEND", writer),
            ("RADIO24__VOICE__BACKEND", voice),
            ("RADIO24__VOICE__TIMEOUT_SECS", "1"),
            ("RADIO24__WRITER__TIMEOUT_SECS", "1"),
            ("RADIO24__HOST__RETRIES", "1"),
            ("RADIO24__HOST__RETRY_BACKOFF_MS", "200"),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
        ],
    )
    .await
}

/// Which writer and voice made a talk segment that aired.
#[derive(Debug)]
struct Aired {
    writer: String,
    voice: String,
}

/// Waits for `n` talk segments to start airing; says who made each (read from the rundown
/// as it starts).
async fn aired_talk(host: &Host, n: usize) -> Vec<Aired> {
    let station = host.station(&radio24()).unwrap();
    let mut events = host.subscribe().await.unwrap();
    let mut deadline = Deadline::new(format!("{n} talk segments"), PROGRAMME_PATIENCE);
    let mut aired = Vec::new();
    while aired.len() < n {
        let Some(event) = deadline.step(events.next()).await else {
            deadline.fail("the event stream ended");
        };
        let HostEvent::SegmentStarted { segment, .. } = event else {
            continue;
        };
        deadline.saw(format!("{:?} {:?}", segment.block, segment.topic));
        if segment.topic.is_none() {
            continue;
        }
        let (on_air, next) = station.playout.rundown.snapshot();
        if let Some(found) = on_air
            .iter()
            .chain(next.iter())
            .find(|s| s.meta.id == segment.id)
        {
            aired.push(Aired {
                writer: found.writer.clone(),
                voice: found.voice(),
            });
        }
    }
    aired
}

/// `radio24_provider_errors_total` for one service, provider and kind, in this process.
fn provider_errors(service: &str, provider: &str, kind: &str) -> f64 {
    let text = radio24::metrics::install().render();
    crate::metrics::parse(&text)
        .unwrap()
        .sum(
            PROVIDER_ERRORS,
            &[("service", service), ("provider", provider), ("kind", kind)],
        )
        .unwrap_or(0.0)
}

/// Asserts every talk segment was voiced by the fallback, not by `failing`.
fn voiced_by_the_fallback(aired: &[Aired], failing: &str) {
    for segment in aired {
        assert!(
            ["espeak-ng", "captions"].contains(&segment.voice.as_str()),
            "{failing} failed, yet: {aired:?}"
        );
    }
}

/// Runs the station with speech answered by `fault`: each sentence is asked of the speech
/// endpoint twice (a retry), then voiced by the fallback; the failures are counted as
/// `kind`.
async fn speech_fault_is_ridden_out(fault: Fault, kind: &str) {
    radio24::metrics::install();
    let upstream = FakeOpenAi::start(Behaviour::healthy(), Behaviour::healthy(), "unused").await;
    let faulty = FaultyProvider::start(&upstream.server.uri(), "/v1/audio/speech", fault).await;
    let before = provider_errors("tts", "openai-speech", kind);
    let (host, _clock) = host_on(&faulty.base_url, "template", "openai-speech").await;
    let aired = aired_talk(&host, 2).await;
    voiced_by_the_fallback(&aired, "openai-speech");
    // Retried: at least two tries of each sentence (the station ID's and the talk's).
    assert!(
        faulty.faulted() >= 4,
        "{} speech requests",
        faulty.faulted()
    );
    let counted = provider_errors("tts", "openai-speech", kind) - before;
    assert!(counted >= 2.0, "{counted} {kind} errors counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_that_stalls_mid_body_times_out_and_the_fallback_voice_airs() {
    speech_fault_is_ridden_out(
        Fault::StallMidBody {
            content_type: "audio/pcm",
            sent: tone_pcm(220.0, 0.5, 6_000.0),
        },
        "timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_cut_off_mid_audio_is_retried_then_replaced() {
    speech_fault_is_ridden_out(
        Fault::CutMidBody {
            content_type: "audio/pcm",
            sent: tone_pcm(220.0, 0.5, 6_000.0),
        },
        "protocol",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_sent_as_audio_are_refused_and_never_air() {
    let garbage: Vec<u8> = (0..48_000).map(|_| rand::random::<u8>()).collect();
    let upstream = FakeOpenAi::start(Behaviour::healthy(), Behaviour::healthy(), "unused").await;
    let faulty = FaultyProvider::start(
        &upstream.server.uri(),
        "/v1/audio/speech",
        Fault::Answer {
            content_type: "audio/pcm",
            body: garbage,
        },
    )
    .await;
    radio24::metrics::install();
    let before = provider_errors("tts", "openai-speech", "protocol");
    let (host, _clock) = host_on(&faulty.base_url, "template", "openai-speech").await;
    // Every frame that airs meanwhile is judged: none may be noise.
    let mut frames = host.station(&radio24()).unwrap().playout.subscribe();
    let heard = Arc::new(AtomicUsize::new(0));
    let noisy = Arc::new(AtomicUsize::new(0));
    let judging = tokio::spawn({
        let (heard, noisy) = (heard.clone(), noisy.clone());
        async move {
            use radio24::host::voice::noise::{Verdict, judge};
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match frames.recv().await {
                    Ok(frame) => {
                        heard.fetch_add(1, Ordering::Relaxed);
                        if judge(&frame) == Verdict::Noise {
                            noisy.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
    let aired = aired_talk(&host, 2).await;
    judging.abort();
    voiced_by_the_fallback(&aired, "openai-speech");
    assert!(
        faulty.faulted() >= 4,
        "{} speech requests",
        faulty.faulted()
    );
    let counted = provider_errors("tts", "openai-speech", "protocol") - before;
    assert!(counted >= 2.0, "{counted} protocol errors counted");
    let (heard, noisy) = (heard.load(Ordering::Relaxed), noisy.load(Ordering::Relaxed));
    assert!(heard > 0, "no frame heard");
    assert_eq!(noisy, 0, "{noisy} of {heard} frames aired were noise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_realtime_socket_dropped_mid_answer_is_retried_then_replaced() {
    radio24::metrics::install();
    let http = FakeOpenAi::start(Behaviour::healthy(), Behaviour::healthy(), "unused").await;
    let realtime =
        FakeRealtime::start_answering(&http.server.uri(), Answering::DropMidAnswer).await;
    let before = provider_errors("tts", "openai-realtime", "protocol");
    let (host, _clock) = host_on(&realtime.base_url, "template", "openai-realtime").await;
    let aired = aired_talk(&host, 2).await;
    voiced_by_the_fallback(&aired, "openai-realtime");
    let answers = realtime.served.responses.load(Ordering::Relaxed);
    assert!(answers >= 4, "{answers} realtime responses asked for");
    let counted = provider_errors("tts", "openai-realtime", "protocol") - before;
    assert!(counted >= 2.0, "{counted} protocol errors counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_answer_that_stalls_or_breaks_off_mid_body_falls_back_to_templates() {
    radio24::metrics::install();
    // The start of a chat completion, whose end never comes.
    let partial = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"NEVER AIRED"#.to_vec();
    for (fault, kind) in [
        (
            Fault::StallMidBody {
                content_type: "application/json",
                sent: partial.clone(),
            },
            "timeout",
        ),
        (
            Fault::CutMidBody {
                content_type: "application/json",
                sent: partial.clone(),
            },
            "protocol",
        ),
    ] {
        let upstream =
            FakeOpenAi::start(Behaviour::healthy(), Behaviour::healthy(), "unused").await;
        let faulty =
            FaultyProvider::start(&upstream.server.uri(), "/v1/chat/completions", fault).await;
        let before = provider_errors("llm", "openai", kind);
        let (host, _clock) = host_on(&faulty.base_url, "openai", "none").await;
        let aired = aired_talk(&host, 2).await;
        assert!(
            aired.iter().all(|s| s.writer == "template"),
            "{kind}: {aired:?}"
        );
        assert!(
            faulty.faulted() >= 4,
            "{kind}: {} chat requests",
            faulty.faulted()
        );
        let counted = provider_errors("llm", "openai", kind) - before;
        assert!(counted >= 2.0, "{counted} {kind} errors counted");
    }
}
