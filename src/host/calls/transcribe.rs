//! OpenAI transcription (`POST {base_url}/audio/transcriptions`): a recorded call-in, sent
//! as a 16-bit mono WAV, comes back as text the host can check and caption before it airs.
//!
//! Config it reads (through [`TranscriberConfig`], filled by the engine): `openai.base_url`,
//! `openai.api_key` (`OPENAI_API_KEY`), `openai.transcribe_model`, and a timeout. The key is
//! sent as a bearer token and never logged or put in an error. The audio and the transcript
//! are the listener's: only their lengths are logged, and no error carries either.
//!
//! The multipart body is written here rather than by reqwest (built without its
//! `multipart` feature): one file part and three short text fields, under a random boundary.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use secrecy::{ExposeSecret, SecretString};

use crate::host::voice::shared::{
    Capped, TransportFailure, body_error, error_chain, openai_error_message, read_capped,
    send_error, truncate_chars,
};

/// The transcription model unless configured otherwise (`openai.transcribe_model`).
pub const DEFAULT_MODEL: &str = "gpt-4o-mini-transcribe";
/// Longest transcript kept, in characters; a call-in is a minute or two of speech.
pub const MAX_TRANSCRIPT_CHARS: usize = 2000;
/// Largest upload the endpoint takes (25 MB); longer audio is refused before sending.
pub const MAX_UPLOAD_BYTES: usize = 25 * 1000 * 1000;
/// Most of a successful answer read: 2000 characters of JSON-escaped text fit many times.
const MAX_ANSWER_BODY: usize = 64 * 1024;
/// Most of an error body read to find the provider's message.
const MAX_ERROR_BODY: usize = 16 * 1024;
/// The canonical WAV header's length.
const WAV_HEADER_BYTES: usize = 44;

/// How to reach the transcription endpoint and what to ask it for.
#[derive(Debug, Clone)]
pub struct TranscriberConfig {
    /// E.g. `https://api.openai.com/v1`; a trailing slash is fine.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: SecretString,
    /// `openai.transcribe_model`, e.g. [`DEFAULT_MODEL`].
    pub model: String,
    /// From connecting to the last byte of the answer, the upload included.
    pub timeout: Duration,
}

/// Why a call-in has no transcript.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TranscribeError {
    /// The provider cannot be reached (or the client cannot be built).
    #[error("transcription unavailable: {0}")]
    Unavailable(String),
    #[error("transcription timed out")]
    Timeout,
    /// The provider answered with an error status; `message` is bounded and key-free.
    #[error("transcription refused: HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    /// The provider answered something that is not a transcript.
    #[error("transcription answered something unusable: {0}")]
    BadAnswer(String),
    /// The audio cannot be sent as it is (no sample rate, or over [`MAX_UPLOAD_BYTES`]).
    #[error("audio not sendable for transcription: {0}")]
    InvalidAudio(String),
}

/// The OpenAI transcriber. Holds one HTTP client (and so one connection pool) for all calls.
pub struct Transcriber {
    client: reqwest::Client,
    url: String,
    config: TranscriberConfig,
}

#[derive(serde::Deserialize)]
struct Answer {
    text: String,
}

impl Transcriber {
    /// Builds the client. Fails (Unavailable) only if the TLS stack cannot be set up.
    pub fn new(config: TranscriberConfig) -> Result<Self, TranscribeError> {
        // reqwest is built without a crypto provider of its own; installing ours again is
        // harmless and saves a panic if the caller forgot.
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| TranscribeError::Unavailable(error_chain(&e)))?;
        let url = format!(
            "{}/audio/transcriptions",
            config.base_url.trim_end_matches('/')
        );
        Ok(Self {
            client,
            url,
            config,
        })
    }

    /// The text spoken in `pcm` (mono s16 at `sample_rate` Hz), in `language` (a BCP 47
    /// tag such as `ja-JP`; only its primary subtag is sent, and none when it is not one).
    /// Trimmed and cut to [`MAX_TRANSCRIPT_CHARS`]; no audio gives `""` without a request.
    #[tracing::instrument(skip_all, fields(samples = pcm.len(), sample_rate = sample_rate))]
    pub async fn transcribe(
        &self,
        pcm: &[i16],
        sample_rate: u32,
        language: &str,
    ) -> Result<String, TranscribeError> {
        if sample_rate == 0 {
            return Err(TranscribeError::InvalidAudio("sample rate 0".to_owned()));
        }
        if pcm.is_empty() {
            return Ok(String::new());
        }
        if WAV_HEADER_BYTES + pcm.len() * 2 > MAX_UPLOAD_BYTES {
            return Err(TranscribeError::InvalidAudio(format!(
                "{:.0} s of audio is over the {MAX_UPLOAD_BYTES}-byte upload limit",
                pcm.len() as f64 / f64::from(sample_rate)
            )));
        }
        let boundary = format!("radio24-{}", uuid::Uuid::new_v4().simple());
        let mut fields = vec![
            ("model", self.config.model.as_str()),
            ("response_format", "json"),
        ];
        let language = primary_language(language);
        if let Some(language) = language.as_deref() {
            fields.push(("language", language));
        }
        let body = multipart_body(&boundary, &wav(pcm, sample_rate), &fields);
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(self.config.api_key.expose_secret())
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status();
        if !status.is_success() {
            let raw = read_capped(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let message = openai_error_message(&raw.bytes, Some(&self.config.api_key));
            tracing::warn!(status = status.as_u16(), %message, "transcription refused");
            return Err(TranscribeError::Rejected {
                status: status.as_u16(),
                message,
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let Capped { bytes, cut } = read_capped(response, MAX_ANSWER_BODY)
            .await
            .map_err(|e| body_error(e, "the answer"))?;
        if cut {
            return Err(TranscribeError::BadAnswer(format!(
                "answer over {MAX_ANSWER_BODY} bytes"
            )));
        }
        // The parser's own message may quote the answer, which may quote the listener.
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
            TranscribeError::BadAnswer(format!(
                "expected JSON with a `text` field, got {} bytes of {}",
                bytes.len(),
                truncate_chars(&content_type, 80)
            ))
        })?;
        let text = answer.text.trim();
        let chars = text.chars().count();
        if chars > MAX_TRANSCRIPT_CHARS {
            tracing::warn!(
                chars,
                max = MAX_TRANSCRIPT_CHARS,
                "transcript too long; cut"
            );
        }
        let text: String = text.chars().take(MAX_TRANSCRIPT_CHARS).collect();
        tracing::info!(
            chars = text.chars().count(),
            language = language.as_deref().unwrap_or("auto"),
            "call-in transcribed"
        );
        Ok(text)
    }
}

/// The primary subtag of a BCP 47 tag, lowercased (`ja` from `ja-JP`, `en` from `en_US`);
/// `None` when it is not 2 or 3 ASCII letters, so the provider detects the language instead
/// of being sent something it refuses (or something that breaks the form).
fn primary_language(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_']).next()?;
    ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| primary.to_ascii_lowercase())
}

/// A RIFF/WAVE file of 16-bit PCM, mono, at `rate` Hz. The caller keeps `pcm` within
/// [`MAX_UPLOAD_BYTES`], so every size fits its 32-bit field.
fn wav(pcm: &[i16], rate: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(WAV_HEADER_BYTES + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes a second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes a frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits a sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// A multipart/form-data body (RFC 7578): `wav` as the `file` part, then `fields`. The
/// boundary is a random UUID, so it does not turn up in the audio by chance; the fields are
/// our own config values and a sanitised language code.
fn multipart_body(boundary: &str, wav: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wav.len() + 512);
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"call.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(wav);
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

impl TransportFailure for TranscribeError {
    fn timeout() -> Self {
        TranscribeError::Timeout
    }

    fn unavailable(cause: String) -> Self {
        TranscribeError::Unavailable(cause)
    }

    fn bad_answer(cause: String) -> Self {
        TranscribeError::BadAnswer(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    const KEY: &str = "sk-test-key-1234";

    fn transcriber(base_url: String, timeout: Duration) -> Transcriber {
        Transcriber::new(TranscriberConfig {
            base_url,
            api_key: SecretString::from(KEY),
            model: DEFAULT_MODEL.to_owned(),
            timeout,
        })
        .unwrap()
    }

    /// One multipart part: its name, filename and content type if given, and its bytes.
    #[derive(Debug)]
    struct Part {
        name: String,
        filename: Option<String>,
        content_type: Option<String>,
        body: Vec<u8>,
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// Parses the request as the provider would: boundary from the content type, then
    /// each part's headers and body.
    fn parts(request: &Request) -> Vec<Part> {
        let content_type = request.headers["content-type"].to_str().unwrap();
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap_or_else(|| panic!("not multipart: {content_type}"));
        let delimiter = format!("--{boundary}");
        let mut rest = &request.body[..];
        let mut out = Vec::new();
        let start = find(rest, delimiter.as_bytes()).unwrap();
        rest = &rest[start + delimiter.len()..];
        while !rest.starts_with(b"--") {
            rest = rest.strip_prefix(b"\r\n").unwrap();
            let head_end = find(rest, b"\r\n\r\n").unwrap();
            let head = std::str::from_utf8(&rest[..head_end]).unwrap();
            rest = &rest[head_end + 4..];
            let next = find(rest, format!("\r\n{delimiter}").as_bytes()).unwrap();
            let body = rest[..next].to_vec();
            rest = &rest[next + 2 + delimiter.len()..];
            let disposition = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Disposition: form-data;"))
                .unwrap();
            let param = |key: &str| {
                disposition
                    .split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            let content_type = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .map(str::to_owned);
            out.push(Part {
                name: param("name").unwrap(),
                filename: param("filename"),
                content_type,
                body,
            });
        }
        out
    }

    fn field<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
        parts.iter().find(|p| p.name == name)
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    #[tokio::test]
    async fn sends_a_wav_with_model_and_language_and_returns_the_text() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/audio/transcriptions"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"text": "  もしもし、聞こえますか？\n"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        // 0.5 s at 16 kHz; a trailing slash on the base URL must not double up in the path.
        let pcm: Vec<i16> = (0..8000).map(|i| ((i * 91) % 4000 - 2000) as i16).collect();
        let text = transcriber(format!("{}/v1/", server.uri()), Duration::from_secs(5))
            .transcribe(&pcm, 16_000, "ja-JP")
            .await
            .unwrap();
        assert_eq!(text, "もしもし、聞こえますか？");

        let requests = server.received_requests().await.unwrap();
        let parts = parts(&requests[0]);
        let file = field(&parts, "file").unwrap();
        assert_eq!(file.filename.as_deref(), Some("call.wav"));
        assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
        let wav = &file.body;
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32_at(wav, 4) as usize, wav.len() - 8);
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(u16_at(wav, 20), 1, "PCM");
        assert_eq!(u16_at(wav, 22), 1, "mono");
        assert_eq!(u32_at(wav, 24), 16_000, "sample rate");
        assert_eq!(u32_at(wav, 28), 32_000, "byte rate");
        assert_eq!(u16_at(wav, 34), 16, "bits");
        assert_eq!(&wav[36..40], b"data");
        assert_eq!(u32_at(wav, 40), 16_000, "data length");
        let samples: Vec<i16> = wav[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples, pcm);
        assert_eq!(
            field(&parts, "model").unwrap().body,
            b"gpt-4o-mini-transcribe"
        );
        assert_eq!(field(&parts, "language").unwrap().body, b"ja");
        assert_eq!(field(&parts, "response_format").unwrap().body, b"json");
    }

    #[tokio::test]
    async fn a_language_that_is_not_a_tag_is_left_to_the_provider() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(serde_json::json!({"text": "hi"})),
            )
            .mount(&server)
            .await;
        let t = transcriber(format!("{}/v1", server.uri()), Duration::from_secs(5));
        t.transcribe(&[1, 2, 3], 24_000, "\"\r\nx").await.unwrap();
        t.transcribe(&[1, 2, 3], 24_000, "EN_us").await.unwrap();
        let requests = server.received_requests().await.unwrap();
        assert!(field(&parts(&requests[0]), "language").is_none());
        assert_eq!(field(&parts(&requests[1]), "language").unwrap().body, b"en");
    }

    #[tokio::test]
    async fn a_long_transcript_is_cut() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"text": "あ".repeat(5000)})),
            )
            .mount(&server)
            .await;
        let text = transcriber(format!("{}/v1", server.uri()), Duration::from_secs(5))
            .transcribe(&[1, 2, 3], 16_000, "ja")
            .await
            .unwrap();
        assert_eq!(text.chars().count(), MAX_TRANSCRIPT_CHARS);
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
        let err = transcriber(format!("{}/v1", server.uri()), Duration::from_secs(5))
            .transcribe(&[1, 2, 3], 16_000, "ja")
            .await
            .unwrap_err();
        let TranscribeError::Rejected { status, message } = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert_eq!(*status, 500);
        assert!(message.contains("The server had an error"), "{message}");
        assert!(!err.to_string().contains(KEY), "{err}");
        assert!(!format!("{err:?}").contains(KEY), "{err:?}");
    }

    #[tokio::test]
    async fn slow_answer_times_out() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"text": "late"}))
                    .set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let started = std::time::Instant::now();
        let err = transcriber(format!("{}/v1", server.uri()), Duration::from_millis(200))
            .transcribe(&[1, 2, 3], 16_000, "ja")
            .await
            .unwrap_err();
        assert!(matches!(err, TranscribeError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn garbage_is_a_bad_answer_that_does_not_quote_it() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                r#"{"text": 5, "note": "listener said SECRET"}"#,
                "application/json",
            ))
            .mount(&server)
            .await;
        let err = transcriber(format!("{}/v1", server.uri()), Duration::from_secs(5))
            .transcribe(&[1, 2, 3], 16_000, "ja")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TranscribeError::BadAnswer(m) if m.contains("application/json")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_answer_is_a_bad_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"text": "x".repeat(MAX_ANSWER_BODY + 1)})),
            )
            .mount(&server)
            .await;
        let err = transcriber(format!("{}/v1", server.uri()), Duration::from_secs(5))
            .transcribe(&[1, 2, 3], 16_000, "ja")
            .await
            .unwrap_err();
        assert!(matches!(err, TranscribeError::BadAnswer(_)), "{err:?}");
    }

    #[tokio::test]
    async fn no_audio_is_empty_text_without_a_request() {
        // No server at all: a request would fail.
        let t = transcriber("http://127.0.0.1:9/v1".to_owned(), Duration::from_secs(1));
        assert_eq!(t.transcribe(&[], 16_000, "ja").await.unwrap(), "");
        let err = t.transcribe(&[1], 0, "ja").await.unwrap_err();
        assert!(matches!(err, TranscribeError::InvalidAudio(_)), "{err:?}");
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = transcriber(
            format!("http://127.0.0.1:{port}/v1"),
            Duration::from_secs(5),
        )
        .transcribe(&[1, 2, 3], 16_000, "ja")
        .await
        .unwrap_err();
        assert!(matches!(err, TranscribeError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains(KEY));
    }
}
