//! A fake OpenAI at the wire (wiremock on loopback): chat completions, speech,
//! transcriptions and moderations, with chosen latency and failure modes, so the production
//! clients are what the tests run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// How the fake misbehaves.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Latency range of an answer, in real time.
    pub latency: (Duration, Duration),
    /// Share of requests that fail (cycling through 500, garbage and a timeout).
    pub failure_rate: f64,
    /// How long a "timeout" answer takes (longer than the client waits); `None` leaves
    /// timeouts out of the failure modes.
    pub hang: Option<Duration>,
}

impl Behaviour {
    pub fn healthy() -> Self {
        Self {
            latency: (Duration::ZERO, Duration::ZERO),
            failure_rate: 0.0,
            hang: Some(Duration::from_secs(30)),
        }
    }

    pub fn broken() -> Self {
        Self {
            failure_rate: 1.0,
            ..Self::healthy()
        }
    }
}

/// Counts requests and failures.
#[derive(Default)]
pub struct Tally {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// The answer's latency, or the failure to answer with instead.
enum Pick {
    Answer(Duration),
    Fail(ResponseTemplate),
}

fn pick(behaviour: &Behaviour, tally: &Tally) -> Pick {
    let n = tally.requests.fetch_add(1, Ordering::Relaxed);
    let (lo, hi) = behaviour.latency;
    let latency = if hi > lo {
        lo + (hi - lo).mul_f64(rand::random::<f64>())
    } else {
        lo
    };
    if rand::random::<f64>() < behaviour.failure_rate {
        tally.failures.fetch_add(1, Ordering::Relaxed);
        let modes = if behaviour.hang.is_some() { 3 } else { 2 };
        return Pick::Fail(match n % modes {
            0 => ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"message": "server on fire"}}))
                .set_delay(latency),
            1 => ResponseTemplate::new(200)
                .set_body_raw("<html>gateway</html>", "text/html")
                .set_delay(latency),
            _ => ResponseTemplate::new(200).set_delay(behaviour.hang.unwrap_or_default()),
        });
    }
    Pick::Answer(latency)
}

struct Chat {
    behaviour: Behaviour,
    tally: Arc<Tally>,
    script: String,
    bodies: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Respond for Chat {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Ok(body) = serde_json::from_slice::<Value>(&request.body)
            && let Ok(mut bodies) = self.bodies.lock()
            && bodies.len() < 64
        {
            bodies.push(body);
        }
        match pick(&self.behaviour, &self.tally) {
            Pick::Fail(failure) => failure,
            Pick::Answer(latency) => ResponseTemplate::new(200)
                .set_body_json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": self.script}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                }))
                .set_delay(latency),
        }
    }
}

struct Speech {
    behaviour: Behaviour,
    tally: Arc<Tally>,
}

/// One second of a 220 Hz tone, 24 kHz s16le (computed once: tests are debug builds).
fn tone_second() -> &'static [u8] {
    static TONE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TONE.get_or_init(|| {
        (0..24_000)
            .flat_map(|i| {
                let phase = f64::from(i) * 2.0 * std::f64::consts::PI * 220.0 / 24_000.0;
                ((phase.sin() * 6_000.0) as i16).to_le_bytes()
            })
            .collect()
    })
}

/// 24 kHz s16le tone, as long as the text would take to say (8 characters a second).
fn pcm_for(text: &str) -> Vec<u8> {
    let secs = (text.chars().count() as f64 / 8.0).max(0.5);
    let bytes = (secs * 24_000.0) as usize * 2;
    tone_second().iter().copied().cycle().take(bytes).collect()
}

impl Respond for Speech {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match pick(&self.behaviour, &self.tally) {
            Pick::Fail(failure) => failure,
            Pick::Answer(latency) => {
                let input = serde_json::from_slice::<Value>(&request.body)
                    .ok()
                    .and_then(|b| b["input"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                ResponseTemplate::new(200)
                    .set_body_raw(pcm_for(&input), "application/octet-stream")
                    .set_delay(latency)
            }
        }
    }
}

struct Transcriptions {
    behaviour: Behaviour,
    tally: Arc<Tally>,
    transcript: String,
}

/// Whether the request is multipart/form-data with a part named `file` (what the real
/// endpoint refuses the request without).
fn has_file_part(request: &Request) -> bool {
    let Some(boundary) = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("multipart/form-data; boundary="))
    else {
        return false;
    };
    let part = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"");
    request
        .body
        .windows(part.len())
        .any(|w| w == part.as_bytes())
}

impl Respond for Transcriptions {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if !has_file_part(request) {
            self.tally.requests.fetch_add(1, Ordering::Relaxed);
            self.tally.failures.fetch_add(1, Ordering::Relaxed);
            return ResponseTemplate::new(400).set_body_json(
                json!({"error": {"message": "expected multipart/form-data with a file part"}}),
            );
        }
        match pick(&self.behaviour, &self.tally) {
            Pick::Fail(failure) => failure,
            Pick::Answer(latency) => ResponseTemplate::new(200)
                .set_body_json(json!({"text": self.transcript}))
                .set_delay(latency),
        }
    }
}

struct Moderations {
    behaviour: Behaviour,
    tally: Arc<Tally>,
    marker: String,
}

impl Respond for Moderations {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match pick(&self.behaviour, &self.tally) {
            Pick::Fail(failure) => failure,
            Pick::Answer(latency) => {
                let input = serde_json::from_slice::<Value>(&request.body)
                    .ok()
                    .and_then(|b| b["input"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let flagged = input.contains(&self.marker);
                ResponseTemplate::new(200)
                    .set_body_json(json!({
                        "id": "modr-1", "model": "omni-moderation-latest",
                        "results": [{
                            "flagged": flagged,
                            "categories": {"harassment": flagged, "violence": false},
                            "category_scores": {"harassment": if flagged { 0.9 } else { 0.01 }, "violence": 0.01}
                        }]
                    }))
                    .set_delay(latency)
            }
        }
    }
}

/// Everything the fake can be told; [`FakeOpenAi::start`] covers chat and speech.
#[derive(Clone, Debug)]
pub struct FakeSetup {
    pub chat: Behaviour,
    pub speech: Behaviour,
    pub transcribe: Behaviour,
    pub moderation: Behaviour,
    /// What chat completions answer.
    pub script: String,
    /// What every transcription answers.
    pub transcript: String,
    /// Moderation flags (as `harassment`) any input containing this.
    pub flag_marker: String,
}

impl Default for FakeSetup {
    fn default() -> Self {
        Self {
            chat: Behaviour::healthy(),
            speech: Behaviour::healthy(),
            transcribe: Behaviour::healthy(),
            moderation: Behaviour::healthy(),
            script: "こんにちは、ラジオ24です。".to_owned(),
            transcript: "もしもし、リクエストをお願いします。".to_owned(),
            flag_marker: "FLAGME".to_owned(),
        }
    }
}

/// The fake server and what it saw.
pub struct FakeOpenAi {
    pub server: MockServer,
    pub chat: Arc<Tally>,
    pub speech: Arc<Tally>,
    pub transcribe: Arc<Tally>,
    pub moderation: Arc<Tally>,
    pub chat_bodies: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl FakeOpenAi {
    pub async fn start(chat: Behaviour, speech: Behaviour, script: &str) -> Self {
        Self::start_with(FakeSetup {
            chat,
            speech,
            script: script.to_owned(),
            ..FakeSetup::default()
        })
        .await
    }

    pub async fn start_with(setup: FakeSetup) -> Self {
        // Nothing reads wiremock's own request log (the tallies and `chat_bodies` do the
        // counting), and over a simulated day it would hold every request in memory.
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let chat_tally = Arc::new(Tally::default());
        let speech_tally = Arc::new(Tally::default());
        let transcribe_tally = Arc::new(Tally::default());
        let moderation_tally = Arc::new(Tally::default());
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Chat {
                behaviour: setup.chat,
                tally: chat_tally.clone(),
                script: setup.script,
                bodies: bodies.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/audio/speech"))
            .respond_with(Speech {
                behaviour: setup.speech,
                tally: speech_tally.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/audio/transcriptions"))
            .respond_with(Transcriptions {
                behaviour: setup.transcribe,
                tally: transcribe_tally.clone(),
                transcript: setup.transcript,
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v1/moderations"))
            .respond_with(Moderations {
                behaviour: setup.moderation,
                tally: moderation_tally.clone(),
                marker: setup.flag_marker,
            })
            .mount(&server)
            .await;
        Self {
            server,
            chat: chat_tally,
            speech: speech_tally,
            transcribe: transcribe_tally,
            moderation: moderation_tally,
            chat_bodies: bodies,
        }
    }

    /// `OPENAI_BASE_URL` for this fake.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }
}
