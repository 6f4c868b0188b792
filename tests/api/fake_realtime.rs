//! A fake OpenAI Realtime endpoint at the wire, in front of the HTTP fake: a WebSocket
//! upgrade to `/v1/realtime` is served here, any other request is passed through to the
//! HTTP fake (wiremock), so one `openai.base_url` serves both, as OpenAI's does.
//!
//! The Realtime side reads text aloud (a 220 Hz tone as long as the text) and answers a
//! recording (`input_audio_buffer.append`… `commit`, `response.create`) with a second of a
//! 660 Hz tone, keeping each recording it heard. It counts the connections, `session.update`s
//! and responses it served (so a test or benchmark can see sessions being reused), and can
//! hold back each response's first audio and each upgrade, as a distant server would. Told
//! to ([`Answering::DropMidAnswer`]), it drops the connection after the first audio of each
//! answer instead; or ([`Answering::NoiseToRecordings`]) it answers recordings with random
//! bytes, as a server speaking another audio format would seem to.

// The delays and counters are read by benches/voice.rs, not by every test.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The answer's pitch.
pub const ANSWER_HZ: f64 = 660.0;

/// How long the fake makes its client wait.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delays {
    /// Before answering a WebSocket upgrade (TCP, TLS and the handshake over a real network).
    pub upgrade: Duration,
    /// From `response.create` to the response's first audio.
    pub first_audio: Duration,
}

/// What the fake served, counted as it happens.
#[derive(Debug, Default)]
pub struct Served {
    /// WebSocket connections accepted.
    pub connections: AtomicUsize,
    /// `session.update` events received.
    pub session_updates: AtomicUsize,
    /// `response.create` events answered.
    pub responses: AtomicUsize,
}

impl Served {
    /// (connections, session updates, responses) so far.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.session_updates.load(Ordering::SeqCst),
            self.responses.load(Ordering::SeqCst),
        )
    }
}

/// How the fake answers `response.create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answering {
    /// All the audio, then `response.done`.
    Whole,
    /// The first audio delta, then the TCP connection dropped (no close frame, no
    /// `response.done`): a socket that dies mid-answer.
    DropMidAnswer,
    /// Text read aloud as [`Answering::Whole`]; a recording answered with a second of random
    /// bytes.
    NoiseToRecordings,
}

/// The fake, the recordings it was sent (24 kHz samples), and what it served.
pub struct FakeRealtime {
    pub base_url: String,
    pub recordings: Arc<Mutex<Vec<Vec<i16>>>>,
    pub served: Arc<Served>,
}

fn tone_bytes(hz: f64, samples: usize) -> Vec<u8> {
    (0..samples)
        .flat_map(|i| {
            let t = i as f64 / 24_000.0;
            (((t * hz * std::f64::consts::TAU).sin() * 8000.0) as i16).to_le_bytes()
        })
        .collect()
}

impl FakeRealtime {
    /// Serves Realtime upgrades and passes the rest on to `http_base` (`http://host:port`).
    pub async fn start(http_base: &str) -> Self {
        Self::start_with(http_base, Delays::default()).await
    }

    /// [`FakeRealtime::start`], answering as `answering` says.
    pub async fn start_answering(http_base: &str, answering: Answering) -> Self {
        Self::serving(http_base, Delays::default(), answering).await
    }

    /// [`FakeRealtime::start`], making its client wait `delays`.
    pub async fn start_with(http_base: &str, delays: Delays) -> Self {
        Self::serving(http_base, delays, Answering::Whole).await
    }

    async fn serving(http_base: &str, delays: Delays, answering: Answering) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let upstream = http_base.trim_start_matches("http://").to_owned();
        let recordings = Arc::new(Mutex::new(Vec::new()));
        let kept = recordings.clone();
        let served = Arc::new(Served::default());
        let counted = served.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let kept = kept.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    if is_realtime_upgrade(&tcp).await {
                        tokio::time::sleep(delays.upgrade).await;
                        if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                            counted.connections.fetch_add(1, Ordering::SeqCst);
                            serve(ws, kept, counted, delays.first_audio, answering).await;
                        }
                    } else if let Ok(mut to) = TcpStream::connect(&upstream).await {
                        let mut tcp = tcp;
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut to).await;
                    }
                });
            }
        });
        Self {
            base_url,
            recordings,
            served,
        }
    }
}

/// Whether the request waiting on `tcp` is a GET of the Realtime path (peeked, not read).
async fn is_realtime_upgrade(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        match tcp.peek(&mut buf).await {
            Ok(n) if n >= 16 => return buf[..n].starts_with(b"GET /v1/realtime"),
            Ok(0) | Err(_) => return false,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
    false
}

/// One connection: a session that may serve any number of responses, each from the input
/// given since the last one.
async fn serve(
    mut ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    kept: Arc<Mutex<Vec<Vec<i16>>>>,
    served: Arc<Served>,
    first_audio: Duration,
    answering: Answering,
) {
    let mut appended: Vec<u8> = Vec::new();
    let mut text_chars = 0usize;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        match event["type"].as_str().unwrap_or("") {
            "session.update" => {
                served.session_updates.fetch_add(1, Ordering::SeqCst);
            }
            "input_audio_buffer.append" => {
                let audio = event["audio"].as_str().unwrap_or("");
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(audio) {
                    appended.extend(bytes);
                }
            }
            "conversation.item.create" => {
                text_chars = event["item"]["content"][0]["text"]
                    .as_str()
                    .map_or(0, |t| t.chars().count());
            }
            "response.create" => {
                served.responses.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(first_audio).await;
                let audio = if appended.is_empty() {
                    tone_bytes(220.0, (text_chars.max(4) * 24_000 / 8).min(24_000 * 10))
                } else {
                    let samples = appended
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    kept.lock().unwrap().push(samples);
                    if answering == Answering::NoiseToRecordings {
                        (0..48_000).map(|_| rand::random::<u8>()).collect()
                    } else {
                        tone_bytes(ANSWER_HZ, 24_000)
                    }
                };
                // The next response answers only what comes after this one.
                appended.clear();
                text_chars = 0;
                for chunk in audio.chunks(9_600) {
                    let delta = json!({
                        "type": "response.output_audio.delta",
                        "delta": base64::engine::general_purpose::STANDARD.encode(chunk),
                    });
                    if ws.send(Message::text(delta.to_string())).await.is_err() {
                        return;
                    }
                    if answering == Answering::DropMidAnswer {
                        // Dropping the socket closes the TCP connection without a close frame.
                        return;
                    }
                }
                let done = json!({"type": "response.done", "response": {"status": "completed"}});
                let _ = ws.send(Message::text(done.to_string())).await;
            }
            _ => {}
        }
    }
}
