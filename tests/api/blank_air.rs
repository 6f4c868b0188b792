//! Blank air: a voice that answers silence (well-formed PCM, all zeros) makes talk segments
//! that would air as seconds of nothing. The playout cuts such a segment once it has been
//! blank for `audio.blank_air_secs` (2 s) below `audio.blank_air_dbfs` (−40 dBFS), logs and
//! counts it (`radio24_blank_air_total{channel}`), and airs the station ID filler, which is
//! heard. Quiet speech is not blank air. On the virtual clock, at 5× (the frames are judged
//! one by one as they air).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{FutureExt, StreamExt};
use radio24::bus::{HostBus, HostEvent};
use radio24::domain::{Block, ChannelName};
use radio24::host::Host;
use radio24::host::clock::ScaledClock;
use radio24::metrics::BLANK_AIR;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::engine::host_at;
use crate::fake_openai::{Behaviour, FakeOpenAi};
use crate::faulty_provider::{Fault, FaultyProvider, tone_pcm};
use crate::helpers::{Deadline, NO_QANDA, PROGRAMME_PATIENCE};

/// Its own channel, so its counter is this test's alone.
const CHANNEL: &str = "blank-air";

fn channel() -> ChannelName {
    ChannelName::parse(CHANNEL).unwrap()
}

/// A station at 5× on a talk-only day whose speech voice answers every sentence with
/// `pcm` (24 kHz s16le), and the fakes it talks to (they must outlive it).
async fn station_whose_voice_answers(
    pcm: Vec<u8>,
) -> (Host, Arc<ScaledClock>, (FaultyProvider, FakeOpenAi)) {
    let upstream = FakeOpenAi::start(Behaviour::healthy(), Behaviour::healthy(), "unused").await;
    let speech = FaultyProvider::start(
        &upstream.server.uri(),
        "/v1/audio/speech",
        Fault::Answer {
            content_type: "audio/pcm",
            body: pcm,
        },
    )
    .await;
    let (host, clock) = host_at(
        "2026-11-28T09:10:00+09:00",
        5.0,
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", &speech.base_url),
            ("RADIO24__WRITER__BACKEND", "template"),
            ("RADIO24__VOICE__BACKEND", "openai-speech"),
            ("RADIO24__STATION__DEFAULT_CHANNEL", CHANNEL),
            ("RADIO24__SCHEDULE__DEFAULT", NO_QANDA),
        ],
    )
    .await;
    (host, clock, (speech, upstream))
}

/// Whether a frame's RMS is below −40 dBFS.
fn is_blank(frame: &[i16]) -> bool {
    let mean_square = frame.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / frame.len() as f64;
    mean_square < (32_768.0f64 * 0.01).powi(2)
}

/// `radio24_blank_air_total` of [`CHANNEL`].
fn blank_air_counted() -> f64 {
    let text = radio24::metrics::install().render();
    crate::metrics::parse(&text)
        .unwrap()
        .sum(BLANK_AIR, &[("channel", CHANNEL)])
        .unwrap_or(0.0)
}

/// Where the programme is, as the frames air.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Other,
    /// A talk segment is on air.
    Talk(Uuid),
    /// That talk segment was cut short.
    Cut(Uuid),
    /// The filler airs in its place.
    FillerAfterCut,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_that_answers_silence_is_cut_for_the_filler_and_counted() {
    radio24::metrics::install();
    // Two seconds of zeros for every sentence.
    let (host, _clock, (speech, _upstream)) =
        station_whose_voice_answers(vec![0; 24_000 * 2 * 2]).await;
    let station = host.station(&channel()).unwrap();
    let mut events = host.subscribe().await.unwrap();
    let mut frames = station.playout.subscribe();
    let mut seen = Seen::Other;
    let mut deadline = Deadline::new(
        "a silent talk segment cut, then the filler heard",
        PROGRAMME_PATIENCE,
    )
    .showing(8);
    loop {
        let frame = match deadline.step(frames.recv()).await {
            Ok(frame) => frame,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => deadline.fail("the playout stopped"),
        };
        // A frame's events are sent before the frame: all of them are waiting by now.
        while let Some(Some(event)) = events.next().now_or_never() {
            seen = match event {
                HostEvent::SegmentStarted { channel, segment } if channel == self::channel() => {
                    match (seen, segment.topic) {
                        (_, Some(_)) => Seen::Talk(segment.id),
                        (Seen::Cut(_), None) if segment.block == Some(Block::Jingle) => {
                            Seen::FillerAfterCut
                        }
                        _ => Seen::Other,
                    }
                }
                HostEvent::SegmentEnded {
                    segment_id,
                    interrupted: true,
                    ..
                } if seen == Seen::Talk(segment_id) => Seen::Cut(segment_id),
                _ => seen,
            };
            deadline.saw(format!("{seen:?}"));
        }
        if seen == Seen::FillerAfterCut && !is_blank(&frame) {
            break;
        }
    }
    assert!(station.playout.stats.blank_air.load(Ordering::Relaxed) >= 1);
    assert!(
        blank_air_counted() >= 1.0,
        "radio24_blank_air_total not counted"
    );
    assert!(speech.faulted() > 0, "the silent voice was never asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_speech_is_not_blank_air() {
    // A 220 Hz tone at about −50 dBFS RMS, two seconds a sentence: quiet, not silent (the
    // loudness normaliser lifts it by up to 24 dB, to about −26 dBFS).
    let (host, _clock, _fakes) = station_whose_voice_answers(tone_pcm(220.0, 2.0, 150.0)).await;
    let station = host.station(&channel()).unwrap();
    let mut events = host.subscribe().await.unwrap();
    let mut talks: Vec<Uuid> = Vec::new();
    let mut whole = 0;
    let mut deadline = Deadline::new("two quiet talk segments aired whole", PROGRAMME_PATIENCE);
    while whole < 2 {
        let Some(event) = deadline.step(events.next()).await else {
            deadline.fail("the event stream ended");
        };
        match event {
            HostEvent::SegmentStarted { channel, segment }
                if channel == self::channel() && segment.topic.is_some() =>
            {
                let (on_air, _) = station.playout.rundown.snapshot();
                let voice = on_air.map(|s| s.voice()).unwrap_or_default();
                assert_eq!(voice, "openai-speech", "the quiet voice itself airs");
                talks.push(segment.id);
            }
            HostEvent::SegmentEnded {
                segment_id,
                interrupted,
                ..
            } if talks.contains(&segment_id) => {
                assert!(!interrupted, "a quiet talk segment was cut");
                whole += 1;
            }
            _ => {}
        }
        deadline.saw(format!("{} talks started, {whole} whole", talks.len()));
    }
    assert_eq!(station.playout.stats.blank_air.load(Ordering::Relaxed), 0);
}
