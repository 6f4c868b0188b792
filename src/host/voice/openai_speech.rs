//! OpenAI speech (`POST {base_url}/audio/speech`, `response_format: "pcm"`): raw 24 kHz s16le
//! mono, streamed into samples as the body arrives so playout can start on the first bytes
//! (OpenAI sends them after about a second, then runs ahead of realtime).
//!
//! Config it reads (through [`SpeechConfig`], filled by the engine from `openai.*`):
//! `openai.base_url`, `openai.api_key` (`OPENAI_API_KEY`), the speech model and voice, and
//! the timeouts. The key is sent as a bearer token and never logged or put in an error.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Instant, timeout_at};

use super::shared;
use super::shared::{
    MAX_MESSAGE_CHARS, Pace, S16leDecoder, SampleBudget, TransportFailure, body_error, error_chain,
    openai_error_message, over_budget, provider_message, send_error, truncate_chars,
};
use super::{Voice, VoiceAudio, VoiceError};

/// The sample rate of `response_format: "pcm"`.
pub const RATE: u32 = 24_000;
/// The speech model unless configured otherwise.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini-tts";
/// The voice unless configured otherwise.
pub const DEFAULT_VOICE: &str = "marin";
/// Longest input the endpoint accepts, in characters; longer text is cut, not refused.
pub const MAX_INPUT_CHARS: usize = 4096;
/// Most of an error body read to find the provider's message.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// How to reach the speech endpoint and what to ask it for.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// E.g. `https://api.openai.com/v1`; a trailing slash is fine.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: SecretString,
    /// E.g. `gpt-4o-mini-tts`.
    pub model: String,
    /// E.g. `marin`, `cedar`.
    pub voice: String,
    /// Delivery steering (tone, pace) for models that take it; sent only when set.
    pub instructions: Option<String>,
    /// From sending the request to the first audio byte, connecting included.
    pub first_byte_timeout: Duration,
    /// Longest silence between two body chunks once audio flows, and furthest the audio may
    /// fall behind real time (see `shared::Pace`).
    pub idle_timeout: Duration,
}

impl SpeechConfig {
    /// Defaults: model [`DEFAULT_MODEL`], voice [`DEFAULT_VOICE`], no instructions, 10 s to
    /// the first byte, 10 s between chunks.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            model: DEFAULT_MODEL.to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            instructions: None,
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The OpenAI speech voice. Holds one HTTP client (and so one connection pool) for all calls.
pub struct OpenAiSpeech {
    client: reqwest::Client,
    url: String,
    config: SpeechConfig,
}

impl OpenAiSpeech {
    /// Builds the client. Fails (Unavailable) only if the TLS stack cannot be set up.
    pub fn new(config: SpeechConfig) -> Result<Self, VoiceError> {
        // reqwest is built without a crypto provider of its own; installing ours again is
        // harmless and saves a panic if the caller forgot.
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.first_byte_timeout)
            .build()
            .map_err(|e| VoiceError::Unavailable(error_chain(&e)))?;
        let url = format!("{}/audio/speech", config.base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            url,
            config,
        })
    }

    fn request_body(&self, input: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": self.config.model,
            "input": input,
            "voice": self.config.voice,
            "response_format": "pcm",
        });
        if let Some(instructions) = self.config.instructions.as_deref() {
            body["instructions"] = instructions.into();
        }
        body
    }

    fn key(&self) -> Option<&SecretString> {
        Some(&self.config.api_key)
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Reads up to `limit` bytes of `body` before `deadline`; whatever arrived if it runs out.
async fn read_some(body: &mut Body, limit: usize, deadline: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())])
            }
            _ => break,
        }
    }
    out
}

/// What the audio stream carries between polls.
struct Reader {
    body: Body,
    decoder: S16leDecoder,
    budget: SampleBudget,
    idle: Duration,
    /// Set when the first samples came: bounds the rest of the body.
    pace: Option<Pace>,
    /// An item decided earlier and not yet handed out.
    queued: Option<Result<Vec<i16>, VoiceError>>,
    /// Nothing more after `queued`.
    done: bool,
}

impl Reader {
    /// Counts `samples` against the cap; past it, queues the error after what fits.
    fn admit(&mut self, mut samples: Vec<i16>) -> Result<Vec<i16>, VoiceError> {
        self.pace
            .get_or_insert_with(|| Pace::new(RATE, self.idle))
            .received(samples.len());
        if self.budget.take(&mut samples) {
            return Ok(samples);
        }
        self.done = true;
        if samples.is_empty() {
            return Err(over_budget());
        }
        self.queued = Some(Err(over_budget()));
        Ok(samples)
    }

    async fn next_item(&mut self) -> Option<Result<Vec<i16>, VoiceError>> {
        if let Some(item) = self.queued.take() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        loop {
            let deadline = match &self.pace {
                Some(pace) => pace.deadline(),
                None => Instant::now() + self.idle,
            };
            match timeout_at(deadline, self.body.next()).await {
                Err(_) => {
                    self.done = true;
                    return Some(Err(VoiceError::Timeout));
                }
                Ok(None) => {
                    self.done = true;
                    if self.decoder.has_partial() {
                        tracing::debug!("speech body ended on half a sample; dropped it");
                    }
                    return None;
                }
                Ok(Some(Err(e))) => {
                    self.done = true;
                    return Some(Err(body_error(e, "the audio stream")));
                }
                Ok(Some(Ok(bytes))) => {
                    let samples = self.decoder.push(&bytes);
                    if !samples.is_empty() {
                        return Some(self.admit(samples));
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Voice for OpenAiSpeech {
    fn name(&self) -> &'static str {
        "openai-speech"
    }

    #[tracing::instrument(skip_all, fields(voice = "openai-speech", chars = text.chars().count()))]
    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError> {
        let Some(input) = shared::input_text(text, MAX_INPUT_CHARS, self.name()) else {
            return Ok(shared::silence(RATE));
        };
        let deadline = Instant::now() + self.config.first_byte_timeout;
        let send = self
            .client
            .post(&self.url)
            .bearer_auth(self.config.api_key.expose_secret())
            .json(&self.request_body(&input))
            .send();
        let response = timeout_at(deadline, send)
            .await
            .map_err(|_| VoiceError::Timeout)?
            .map_err(send_error)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut body: Body = Box::pin(response.bytes_stream());

        if !status.is_success() {
            let raw = read_some(&mut body, MAX_ERROR_BODY, deadline).await;
            let message = openai_error_message(&raw, self.key());
            tracing::warn!(status = status.as_u16(), %message, "speech request refused");
            return Err(VoiceError::Rejected(format!("HTTP {status}: {message}")));
        }
        // OpenAI sends errors as JSON; a proxy in the way may send an HTML or text page
        // with 200. Neither is audio, and playing it would be loud noise.
        if content_type.starts_with("application/json")
            || content_type.contains("+json")
            || content_type.starts_with("text/")
        {
            let raw = read_some(&mut body, MAX_MESSAGE_CHARS, deadline).await;
            let snippet = provider_message(&String::from_utf8_lossy(&raw), self.key());
            return Err(VoiceError::BadAnswer(format!(
                "expected audio, got {}: {}",
                truncate_chars(&content_type, 80),
                snippet
            )));
        }

        let mut reader = Reader {
            body,
            decoder: S16leDecoder::default(),
            budget: SampleBudget::new(RATE),
            idle: self.config.idle_timeout,
            pace: None,
            queued: None,
            done: false,
        };
        // Wait for the first samples here, so a provider that answers nothing is an error
        // the engine can fall back on before it commits the segment to air.
        let first = loop {
            match timeout_at(deadline, reader.body.next()).await {
                Err(_) => return Err(VoiceError::Timeout),
                Ok(None) => {
                    return Err(VoiceError::BadAnswer("empty audio body".to_owned()));
                }
                Ok(Some(Err(e))) => return Err(body_error(e, "the audio stream")),
                Ok(Some(Ok(bytes))) => {
                    let samples = reader.decoder.push(&bytes);
                    if !samples.is_empty() {
                        break samples;
                    }
                }
            }
        };
        reader.queued = Some(reader.admit(first));
        let chunks = futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next_item().await?;
            Some((item, reader))
        });
        Ok(VoiceAudio {
            rate: RATE,
            chunks: chunks.boxed(),
        })
    }
}

impl TransportFailure for VoiceError {
    fn timeout() -> Self {
        VoiceError::Timeout
    }

    fn unavailable(cause: String) -> Self {
        VoiceError::Unavailable(cause)
    }

    fn bad_answer(cause: String) -> Self {
        VoiceError::BadAnswer(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const KEY: &str = "sk-test-key-1234";

    fn config(base_url: String) -> SpeechConfig {
        let mut c = SpeechConfig::new(base_url, SecretString::from(KEY));
        c.first_byte_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_millis(500);
        c
    }

    fn voice(base_url: String) -> OpenAiSpeech {
        crate::install_crypto_provider();
        OpenAiSpeech::new(config(base_url)).unwrap()
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    async fn collect(audio: VoiceAudio) -> Vec<Result<Vec<i16>, VoiceError>> {
        tokio::time::timeout(Duration::from_secs(10), audio.chunks.collect::<Vec<_>>())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn posts_pcm_request_and_decodes_the_body() {
        let server = MockServer::start().await;
        let samples: Vec<i16> = (0..4800).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        Mock::given(method("POST"))
            .and(path("/v1/audio/speech"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(body_partial_json(serde_json::json!({
                "model": "gpt-4o-mini-tts",
                "voice": "marin",
                "input": "こんにちは、ラジオ24です。",
                "response_format": "pcm",
                "instructions": "Warm and calm.",
            })))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "audio/pcm")
                    .set_body_bytes(pcm(&samples)),
            )
            .expect(1)
            .mount(&server)
            .await;
        // A trailing slash on the base URL must not double up in the path.
        let mut c = config(format!("{}/v1/", server.uri()));
        c.instructions = Some("Warm and calm.".to_owned());
        crate::install_crypto_provider();
        let v = OpenAiSpeech::new(c).unwrap();
        assert_eq!(v.name(), "openai-speech");
        let audio = v
            .synthesize("  こんにちは、ラジオ24です。\n")
            .await
            .unwrap();
        assert_eq!(audio.rate, 24_000);
        let got: Vec<i16> = collect(audio)
            .await
            .into_iter()
            .flat_map(|c| c.unwrap())
            .collect();
        assert_eq!(got, samples);
    }

    #[tokio::test]
    async fn instructions_are_left_out_when_unset() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(pcm(&[5, 6])))
            .mount(&server)
            .await;
        let audio = voice(format!("{}/v1", server.uri()))
            .synthesize("Hi.")
            .await
            .unwrap();
        assert_eq!(collect(audio).await.len(), 1);
        let requests = server.received_requests().await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert!(body.get("instructions").is_none(), "{body}");
        assert_eq!(body["input"], "Hi.");
    }

    #[tokio::test]
    async fn provider_error_is_rejected_with_its_message_and_no_key() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_json(serde_json::json!({
                "error": {
                    "message": format!("The server had an error (key {KEY})"),
                    "type": "server_error",
                }
            })))
            .mount(&server)
            .await;
        let err = voice(format!("{}/v1", server.uri()))
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        let VoiceError::Rejected(message) = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert!(message.contains("500"), "{message}");
        assert!(message.contains("The server had an error"), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }

    #[tokio::test]
    async fn json_with_200_is_a_bad_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"audio": "nope"})),
            )
            .mount(&server)
            .await;
        let err = voice(format!("{}/v1", server.uri()))
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, VoiceError::BadAnswer(m) if m.contains("application/json")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn empty_body_is_a_bad_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).insert_header("content-type", "audio/pcm"))
            .mount(&server)
            .await;
        let err = voice(format!("{}/v1", server.uri()))
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::BadAnswer(_)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_answer_times_out() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_bytes(pcm(&[1, 2]))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let mut c = config(format!("{}/v1", server.uri()));
        c.first_byte_timeout = Duration::from_millis(200);
        crate::install_crypto_provider();
        let err = OpenAiSpeech::new(c)
            .unwrap()
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = voice(format!("http://127.0.0.1:{port}/v1"))
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY));
    }

    #[tokio::test]
    async fn blank_text_is_silence_without_a_request() {
        // No server at all: a request would fail.
        let audio = voice("http://127.0.0.1:9/v1".to_owned())
            .synthesize(" \n ")
            .await
            .unwrap();
        assert!(collect(audio).await.is_empty());
    }

    /// A one-shot HTTP server that answers with a chunked body, writing each part it is
    /// sent on the returned channel as it comes, and ending the body when the channel closes.
    async fn chunked_server() -> (String, mpsc::UnboundedSender<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before its request ended");
                head.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\n\
                      transfer-encoding: chunked\r\n\r\n",
                )
                .await
                .unwrap();
            while let Some(part) = rx.recv().await {
                let mut frame = format!("{:x}\r\n", part.len()).into_bytes();
                frame.extend_from_slice(&part);
                frame.extend_from_slice(b"\r\n");
                socket.write_all(&frame).await.unwrap();
                socket.flush().await.unwrap();
            }
            socket.write_all(b"0\r\n\r\n").await.unwrap();
            // Hold the socket until the client has read the end of the body.
            let _ = socket.read(&mut buf).await;
        });
        (base, tx)
    }

    #[tokio::test]
    async fn audio_streams_before_the_body_ends_and_odd_splits_rejoin() {
        let (base, parts) = chunked_server().await;
        let bytes = pcm(&[100, -200, 300]);
        // First part ends halfway through the second sample.
        parts.send(bytes[..3].to_vec()).unwrap();
        let mut audio = voice(base).synthesize("Hello.").await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), audio.chunks.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // The server has not sent the rest yet: this chunk was streamed, not buffered.
        assert_eq!(first, vec![100]);
        parts.send(bytes[3..].to_vec()).unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), audio.chunks.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(second, vec![-200, 300]);
        drop(parts);
        let end = tokio::time::timeout(Duration::from_secs(10), audio.chunks.next())
            .await
            .unwrap();
        assert!(end.is_none(), "{end:?}");
    }

    #[tokio::test]
    async fn silence_mid_body_is_a_timeout_item() {
        let (base, parts) = chunked_server().await;
        parts.send(pcm(&[7, 8])).unwrap();
        let mut c = config(base);
        c.idle_timeout = Duration::from_millis(200);
        crate::install_crypto_provider();
        let audio = OpenAiSpeech::new(c)
            .unwrap()
            .synthesize("Hello.")
            .await
            .unwrap();
        // `parts` stays alive: the server keeps the body open and sends nothing more.
        let items = collect(audio).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap(), &vec![7, 8]);
        assert!(matches!(items[1], Err(VoiceError::Timeout)), "{items:?}");
        drop(parts);
    }
}
