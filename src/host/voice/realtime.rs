//! OpenAI Realtime as a voice, GA protocol: a WebSocket to `{base_url}/realtime?model=…`
//! (https→wss), bearer key, no `OpenAI-Beta` header. A new connection sends
//! `session.update` (audio out only, 24 kHz pcm, instructions); every call then sends its
//! input, then `response.create`, and streams the base64 s16le of
//! `response.output_audio.delta` until `response.done`; the first audio is awaited before the
//! call returns, so a refusal is an error. Two calls share that path:
//!
//! - [`Voice::synthesize`] reads text aloud: the instructions say to read it verbatim, and
//!   the text goes as a user message. Its sessions are kept between sentences: a session
//!   whose response ended cleanly waits (up to [`IDLE_KEEP`]) for the next sentence, so a
//!   segment's sentences, read one after another, share one connection and one
//!   `session.update` instead of paying the handshake and the session set-up each time. A
//!   session is retired after [`RESPONSES_PER_SESSION`] sentences (each stays in its
//!   conversation, as context billed again with the next), and never reused after an error,
//!   a skipped sentence or an over-long answer. One session runs one response at a time, so
//!   sentences voiced at once (the engine's look-ahead) each have their own, up to
//!   [`MAX_IDLE_SESSIONS`] kept. When a kept session turns out to be gone (the provider
//!   closed it while it waited) before any audio, the sentence is sent again on a new
//!   connection; any other failure is the caller's to retry or fall back on, as before.
//! - [`RealtimeVoice::answer_recording`] answers a caller: the instructions are the host
//!   persona the engine gives, the input audio is 24 kHz pcm with turn detection off, and
//!   the recording (at most [`MAX_RECORDING_SECS`]) goes as `input_audio_buffer.append`
//!   events of half a second each, then `input_audio_buffer.commit`.
//!
//! OpenAI retires its speech models on 2027-01-06 with Realtime as the successor, so this
//! path must work.
//!
//! Config it reads (through [`RealtimeConfig`], filled by the engine): `openai.base_url`,
//! `openai.api_key` (`OPENAI_API_KEY`), `openai.realtime_model` (`OPENAI_REALTIME_MODEL`),
//! `openai.realtime_voice` (`OPENAI_REALTIME_VOICE`), and the timeouts. The key is never
//! logged or put in an error, and a caller's audio is never logged.

use std::sync::{Arc, Mutex, PoisonError};

use crate::sync::lock;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::shared;
use super::shared::{
    Pace, S16leDecoder, SampleBudget, error_chain, openai_error_message, over_budget,
    provider_message,
};
use super::{Voice, VoiceAudio, VoiceError};

/// The output rate asked for in `session.update`.
pub const RATE: u32 = 24_000;
/// The model unless configured otherwise.
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// The voice unless configured otherwise.
pub const DEFAULT_VOICE: &str = "marin";
/// Longest text sent in one call, in characters; longer text is cut, not refused.
pub const MAX_INPUT_CHARS: usize = 4096;
/// Longest recording answered, in seconds; a longer one is cut, not refused.
pub const MAX_RECORDING_SECS: usize = 120;
/// Samples per `input_audio_buffer.append`: half a second. Base64 makes each event about
/// 32 KB however long the recording; 120 s in one event would be some 7.7 MB.
const APPEND_SAMPLES: usize = RATE as usize / 2;
/// Largest WebSocket message accepted. Audio deltas are a few KB; this only stops a
/// runaway peer from making us buffer without bound.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long the closing handshake may take once the audio is done; it runs off the
/// audio path.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a reading session may wait unused for its next sentence before it is closed
/// instead: enough to bridge a segment's sentences and the step to the next segment, short
/// enough not to hold idle sockets open against the provider.
pub const IDLE_KEEP: Duration = Duration::from_secs(30);
/// Sentences one session reads before it is retired: each stays in its conversation, so a
/// session is kept to about a segment's worth.
pub const RESPONSES_PER_SESSION: u32 = 12;
/// Reading sessions kept waiting at most: as many as the engine voices sentences at once.
pub const MAX_IDLE_SESSIONS: usize = 4;

/// What the model is told, so that it reads the text rather than answering it.
const INSTRUCTIONS: &str = "You are a text-to-speech reader for a radio station. Read the \
user's message aloud exactly as written, word for word, in the language it is written in. \
Do not answer it, comment on it, translate it, or add or leave out anything. Speak in a \
warm, clear radio-host voice.";

/// How to reach the Realtime endpoint and what to ask it for.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// E.g. `https://api.openai.com/v1` (`http://` becomes `ws://`, `https://` `wss://`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged.
    pub api_key: SecretString,
    /// E.g. `gpt-realtime`.
    pub model: String,
    /// E.g. `marin`, `cedar`.
    pub voice: String,
    /// TCP, TLS and the WebSocket handshake, together.
    pub connect_timeout: Duration,
    /// Longest time to send a call's events, and then from the last event sent to the
    /// first audio delta.
    pub first_audio_timeout: Duration,
    /// Longest wait for the next audio delta (or the end) once audio flows, and furthest
    /// the audio may fall behind real time (see `shared::Pace`).
    pub idle_timeout: Duration,
}

impl RealtimeConfig {
    /// Defaults: model [`DEFAULT_MODEL`], voice [`DEFAULT_VOICE`], 10 s to connect, 10 s to
    /// the first audio, 10 s between deltas.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            model: DEFAULT_MODEL.to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            connect_timeout: Duration::from_secs(10),
            first_audio_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The OpenAI Realtime voice.
pub struct RealtimeVoice {
    url: Url,
    config: RealtimeConfig,
    /// Reading sessions waiting for their next sentence.
    idle: Arc<SessionPool>,
}

impl RealtimeVoice {
    /// Checks the base URL and derives the WebSocket URL. A base URL that is not
    /// http(s) or ws(s) is Unavailable: there is nothing to connect to.
    pub fn new(config: RealtimeConfig) -> Result<Self, VoiceError> {
        let url = realtime_url(&config.base_url, &config.model)?;
        // tungstenite's TLS picks the process-wide provider; make sure there is one.
        crate::install_crypto_provider();
        Ok(Self {
            url,
            config,
            idle: Arc::default(),
        })
    }
}

/// `{base_url}/realtime?model=…` with the scheme switched to its WebSocket twin.
fn realtime_url(base_url: &str, model: &str) -> Result<Url, VoiceError> {
    let bad = |why: String| VoiceError::Unavailable(format!("openai.base_url: {why}"));
    let mut url = Url::parse(base_url.trim()).map_err(|e| bad(e.to_string()))?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => return Err(bad(format!("scheme {other:?} is not http(s)"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| bad("cannot switch to a WebSocket scheme".to_owned()))?;
    url.path_segments_mut()
        .map_err(|()| bad("cannot hold a path".to_owned()))?
        .pop_if_empty()
        .push("realtime");
    url.set_query(None);
    url.query_pairs_mut().append_pair("model", model);
    Ok(url)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A failed connect: nobody listening, or the server refusing the upgrade.
fn connect_error(e: tungstenite::Error, key: &SecretString) -> VoiceError {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            let message = openai_error_message(body, Some(key));
            VoiceError::Rejected(format!("HTTP {}: {message}", response.status()))
        }
        other => VoiceError::Unavailable(error_chain(&other)),
    }
}

/// What one server message means to a caller waiting for audio.
enum Event {
    Audio(Vec<u8>),
    Done,
    /// The server closed the socket.
    Closed,
    Ignore,
}

/// Why a call on a session failed.
struct SessionError {
    error: VoiceError,
    /// The socket itself was gone: closed, reset, or broken while sending. On a session
    /// that waited between sentences, the provider may simply have dropped it meanwhile.
    dropped: bool,
}

impl SessionError {
    fn dropped(error: VoiceError) -> Self {
        Self {
            error,
            dropped: true,
        }
    }
}

impl From<VoiceError> for SessionError {
    fn from(error: VoiceError) -> Self {
        Self {
            error,
            dropped: false,
        }
    }
}

/// A connection, configured by its `session.update`, and the current call's decoding state.
struct Session {
    ws: Socket,
    decoder: S16leDecoder,
    budget: SampleBudget,
    key: SecretString,
    /// Responses asked for on this connection so far.
    responses: u32,
}

impl Session {
    fn classify(&self, message: Message) -> Result<Event, VoiceError> {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(Event::Closed),
            // Pings are answered by tungstenite itself; binary frames are not part of the
            // protocol and carry nothing we use.
            _ => return Ok(Event::Ignore),
        };
        let event: Value = serde_json::from_str(text.as_str())
            .map_err(|e| VoiceError::BadAnswer(format!("a server event is not JSON: {e}")))?;
        match event.get("type").and_then(Value::as_str).unwrap_or("") {
            "response.output_audio.delta" => {
                let delta = event.get("delta").and_then(Value::as_str).unwrap_or("");
                base64::engine::general_purpose::STANDARD
                    .decode(delta)
                    .map(Event::Audio)
                    .map_err(|e| VoiceError::BadAnswer(format!("audio delta is not base64: {e}")))
            }
            "response.done" => {
                let response = event.get("response").unwrap_or(&Value::Null);
                match response.get("status").and_then(Value::as_str) {
                    Some("failed") => {
                        let raw = response
                            .pointer("/status_details/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or("response failed");
                        Err(VoiceError::Rejected(provider_message(raw, Some(&self.key))))
                    }
                    Some(status @ ("cancelled" | "incomplete")) => {
                        // The audio so far is all there will be; air it rather than nothing.
                        tracing::warn!(status, "realtime response ended early");
                        Ok(Event::Done)
                    }
                    _ => Ok(Event::Done),
                }
            }
            "error" => {
                let raw = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("error event without a message");
                let message = provider_message(raw, Some(&self.key));
                tracing::warn!(%message, "realtime error event");
                Err(VoiceError::Rejected(message))
            }
            _ => Ok(Event::Ignore),
        }
    }

    /// The next non-empty samples, or None at `response.done`.
    async fn next_samples(&mut self, deadline: Instant) -> Result<Option<Vec<i16>>, SessionError> {
        loop {
            let message = match timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(VoiceError::Timeout.into()),
                Ok(None) => return Err(SessionError::dropped(closed_early())),
                Ok(Some(Err(e))) => {
                    return Err(SessionError::dropped(VoiceError::BadAnswer(format!(
                        "the socket broke: {}",
                        error_chain(&e)
                    ))));
                }
                Ok(Some(Ok(message))) => message,
            };
            match self.classify(message)? {
                Event::Closed => return Err(SessionError::dropped(closed_early())),
                Event::Audio(bytes) => {
                    let samples = self.decoder.push(&bytes);
                    if !samples.is_empty() {
                        return Ok(Some(samples));
                    }
                }
                Event::Done => return Ok(None),
                Event::Ignore => {}
            }
        }
    }

    /// Closes the socket politely without holding up the caller. Outside a runtime (a
    /// stream dropped late at shutdown) the socket is simply dropped.
    fn close(mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = timeout(CLOSE_GRACE, async {
                if self.ws.close(None).await.is_ok() {
                    // Read until the server's close frame, which completes the handshake.
                    while let Some(Ok(_)) = self.ws.next().await {}
                }
            })
            .await;
        });
    }
}

fn closed_early() -> VoiceError {
    VoiceError::BadAnswer("the socket closed before response.done".to_owned())
}

/// Reading sessions between sentences: open, configured, with no response running, each
/// with when it was put back.
#[derive(Default)]
struct SessionPool {
    idle: Mutex<Vec<(Session, Instant)>>,
}

impl SessionPool {
    /// The session put back last, unless it waited longer than [`IDLE_KEEP`]; those that
    /// did are closed.
    fn take(&self) -> Option<Session> {
        let mut idle = lock(&self.idle);
        let fresh_from = idle
            .iter()
            .position(|(_, since)| since.elapsed() < IDLE_KEEP)
            .unwrap_or(idle.len());
        let expired: Vec<(Session, Instant)> = idle.drain(..fresh_from).collect();
        let taken = idle.pop().map(|(session, _)| session);
        drop(idle);
        for (session, _) in expired {
            session.close();
        }
        taken
    }

    /// Keeps `session`, whose response ended cleanly, for the next sentence; closes it
    /// instead when it has read its share or enough sessions are waiting.
    fn put(&self, session: Session) {
        if session.responses >= RESPONSES_PER_SESSION {
            session.close();
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() >= MAX_IDLE_SESSIONS {
            drop(idle);
            session.close();
            return;
        }
        idle.push((session, Instant::now()));
    }
}

impl Drop for SessionPool {
    /// The voice is going away: its waiting sessions are closed politely.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        for (session, _) in idle {
            session.close();
        }
    }
}

/// What the audio stream carries between polls.
struct Reader {
    /// None once the call is over (the socket is closed, closing, or kept for reuse).
    session: Option<Session>,
    /// Bounds the wait for each delta, and the whole response (see `shared::Pace`).
    pace: Pace,
    /// Where the session goes after a clean `response.done`; None closes it.
    pool: Option<Arc<SessionPool>>,
    queued: Option<Result<Vec<i16>, VoiceError>>,
}

impl Reader {
    /// Counts `samples` against the cap; past it, queues the error after what fits and
    /// ends the call.
    fn admit(&mut self, mut samples: Vec<i16>) -> Result<Vec<i16>, VoiceError> {
        self.pace.received(samples.len());
        let Some(session) = self.session.as_mut() else {
            return Ok(samples);
        };
        if session.budget.take(&mut samples) {
            return Ok(samples);
        }
        self.finish();
        if samples.is_empty() {
            return Err(over_budget());
        }
        self.queued = Some(Err(over_budget()));
        Ok(samples)
    }

    fn finish(&mut self) {
        if let Some(session) = self.session.take() {
            session.close();
        }
    }

    /// The response is complete: the session is kept for the next call, if it may be.
    fn release(&mut self) {
        if let Some(session) = self.session.take() {
            match &self.pool {
                Some(pool) => pool.put(session),
                None => session.close(),
            }
        }
    }

    async fn next_item(&mut self) -> Option<Result<Vec<i16>, VoiceError>> {
        if let Some(item) = self.queued.take() {
            return Some(item);
        }
        let deadline = self.pace.deadline();
        let session = self.session.as_mut()?;
        match session.next_samples(deadline).await {
            Ok(Some(samples)) => Some(self.admit(samples)),
            Ok(None) => {
                self.release();
                None
            }
            Err(e) => {
                self.finish();
                Some(Err(e.error))
            }
        }
    }
}

impl Drop for Reader {
    /// A stream dropped before the end (a skipped segment) still closes its socket, which
    /// also tells OpenAI to stop generating.
    fn drop(&mut self) {
        self.finish();
    }
}

impl RealtimeVoice {
    /// Answers a caller: `pcm` is their mono recording at [`RATE`], `instructions` tell the
    /// model who it is and how to answer (the host persona; the caller's words are data,
    /// not instructions). The recording goes up as `input_audio_buffer.append` events and
    /// is committed by hand (no server turn detection), then the spoken answer streams
    /// back as [`Voice::synthesize`]'s audio does: its first audio is awaited here, so a
    /// refusal is an error. Past [`MAX_RECORDING_SECS`] the recording is cut, not refused;
    /// an empty one is an error without a connection. The audio is never logged.
    #[tracing::instrument(skip_all, fields(voice = "openai-realtime", samples = pcm.len()))]
    pub async fn answer_recording(
        &self,
        pcm: &[i16],
        instructions: &str,
    ) -> Result<VoiceAudio, VoiceError> {
        if pcm.is_empty() {
            return Err(VoiceError::BadAnswer("empty recording".to_owned()));
        }
        let max = MAX_RECORDING_SECS * RATE as usize;
        if pcm.len() > max {
            tracing::warn!(
                max_secs = MAX_RECORDING_SECS,
                "recording too long for an answer; cut"
            );
        }
        let pcm = &pcm[..pcm.len().min(max)];
        let input = json!({
            "format": {"type": "audio/pcm", "rate": RATE},
            // We commit the whole recording ourselves; the server must not cut turns.
            "turn_detection": null,
        });
        let events = std::iter::once(self.session_update(instructions, Some(input)))
            .chain(pcm.chunks(APPEND_SAMPLES).map(|chunk| {
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                json!({
                    "type": "input_audio_buffer.append",
                    "audio": base64::engine::general_purpose::STANDARD.encode(bytes),
                })
            }))
            .chain([
                json!({"type": "input_audio_buffer.commit"}),
                json!({"type": "response.create"}),
            ])
            // Built up front: a lazy iterator borrowing `pcm` would make the call's future
            // not `Send` for every lifetime, and callers spawn it.
            .collect::<Vec<Value>>();
        // A session of its own, closed after the answer: its instructions and input settings
        // are this call's, and a caller's recording is not left in a session for others.
        let session = self.connect().await?;
        self.respond(session, events, None)
            .await
            .map_err(|e| e.error)
    }

    /// `session.update` for one spoken response: audio out only, in our voice at [`RATE`],
    /// with `instructions`, and `input` as the input audio settings when the call sends
    /// audio.
    fn session_update(&self, instructions: &str, input: Option<Value>) -> Value {
        let mut audio = serde_json::Map::new();
        if let Some(input) = input {
            audio.insert("input".to_owned(), input);
        }
        audio.insert(
            "output".to_owned(),
            json!({
                "voice": self.config.voice,
                "format": {"type": "audio/pcm", "rate": RATE},
            }),
        );
        json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "instructions": instructions,
                "audio": audio,
            },
        })
    }

    /// Opens the WebSocket, within the connect timeout.
    async fn connect(&self) -> Result<Session, VoiceError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| VoiceError::Unavailable(error_chain(&e)))?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.config.api_key.expose_secret()))
                .map_err(|_| {
                    VoiceError::Unavailable("the API key is not a valid header".to_owned())
                })?;
        auth.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, auth);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
        let (ws, _) = timeout(self.config.connect_timeout, connect)
            .await
            .map_err(|_| VoiceError::Timeout)?
            .map_err(|e| connect_error(e, &self.config.api_key))?;
        Ok(Session {
            ws,
            decoder: S16leDecoder::default(),
            budget: SampleBudget::new(RATE),
            key: self.config.api_key.clone(),
            responses: 0,
        })
    }

    /// One call on `session`: sends `events` in order (one `response.create` among them),
    /// and streams the response's audio; after a clean end the session goes to `pool`, if
    /// any, else it is closed. Sending may take up to the first-audio timeout (a recording
    /// is many events); the wait for the first audio starts once the last event is out.
    async fn respond(
        &self,
        mut session: Session,
        events: Vec<Value>,
        pool: Option<Arc<SessionPool>>,
    ) -> Result<VoiceAudio, SessionError> {
        session.decoder = S16leDecoder::default();
        session.budget = SampleBudget::new(RATE);
        session.responses += 1;
        let sending = Instant::now() + self.config.first_audio_timeout;
        for event in events {
            let sent = timeout_at(sending, session.ws.send(Message::text(event.to_string())))
                .await
                .map_err(|_| VoiceError::Timeout)?;
            if let Err(e) = sent {
                return Err(SessionError::dropped(VoiceError::Unavailable(format!(
                    "the socket broke while sending: {}",
                    error_chain(&e)
                ))));
            }
        }

        // Wait for the first audio here, so a refusal is an error the engine can fall
        // back on before it commits the segment to air.
        let deadline = Instant::now() + self.config.first_audio_timeout;
        let first = match session.next_samples(deadline).await {
            Ok(Some(samples)) => samples,
            Ok(None) => {
                session.close();
                return Err(VoiceError::BadAnswer(
                    "the response finished without audio".to_owned(),
                )
                .into());
            }
            Err(e) => {
                session.close();
                return Err(e);
            }
        };
        let mut reader = Reader {
            session: Some(session),
            pace: Pace::new(RATE, self.config.idle_timeout),
            pool,
            queued: None,
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

#[async_trait]
impl Voice for RealtimeVoice {
    fn name(&self) -> &'static str {
        "openai-realtime"
    }

    #[tracing::instrument(skip_all, fields(voice = "openai-realtime", chars = text.chars().count()))]
    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError> {
        let Some(input) = shared::input_text(text, MAX_INPUT_CHARS, self.name()) else {
            return Ok(shared::silence(RATE));
        };
        let turn = [
            json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": input}],
                },
            }),
            json!({"type": "response.create"}),
        ];
        if let Some(session) = self.idle.take() {
            match self
                .respond(session, turn.to_vec(), Some(self.idle.clone()))
                .await
            {
                Err(SessionError {
                    error,
                    dropped: true,
                }) => {
                    // Nothing aired from it: the sentence goes again on a new connection.
                    tracing::debug!(%error, "the kept realtime session was gone; reconnecting");
                }
                answered => return answered.map_err(|e| e.error),
            }
        }
        let session = self.connect().await?;
        let events = std::iter::once(self.session_update(INSTRUCTIONS, None))
            .chain(turn)
            .collect();
        self.respond(session, events, Some(self.idle.clone()))
            .await
            .map_err(|e| e.error)
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake callback fixes its Err type"
)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

    const KEY: &str = "sk-rt-test-9876";

    /// What the fake server saw of the upgrade request.
    #[derive(Debug, Default, Clone)]
    struct Upgrade {
        path_and_query: String,
        authorization: Option<String>,
        beta_header: bool,
    }

    type ServerSocket = WebSocketStream<TcpStream>;

    /// A one-connection Realtime fake on loopback. `script` plays the server's side and
    /// returns what it wants the test to check.
    async fn fake_server<F, Fut, T>(script: F) -> (String, Arc<Mutex<Upgrade>>, JoinHandle<T>)
    where
        F: FnOnce(ServerSocket) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
        T: Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Upgrade::default()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_hdr_async(
                tcp,
                move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let mut up = record.lock().unwrap();
                    up.path_and_query = req.uri().to_string();
                    up.authorization = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    up.beta_header = req.headers().contains_key("openai-beta");
                    Ok(resp)
                },
            )
            .await
            .unwrap();
            script(ws).await
        });
        (base, seen, task)
    }

    async fn recv_json(ws: &mut ServerSocket) -> Value {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected client message {other:?}"),
            }
        }
    }

    async fn send_json(ws: &mut ServerSocket, event: Value) {
        ws.send(Message::text(event.to_string())).await.unwrap();
    }

    fn delta(bytes: &[u8]) -> Value {
        json!({
            "type": "response.output_audio.delta",
            "event_id": "ev",
            "response_id": "resp_1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn voice(base: String) -> RealtimeVoice {
        let mut c = RealtimeConfig::new(base, SecretString::from(KEY));
        c.connect_timeout = Duration::from_secs(5);
        c.first_audio_timeout = Duration::from_secs(5);
        c.idle_timeout = Duration::from_secs(5);
        RealtimeVoice::new(c).unwrap()
    }

    async fn collect(audio: VoiceAudio) -> Vec<Result<Vec<i16>, VoiceError>> {
        tokio::time::timeout(Duration::from_secs(10), audio.chunks.collect::<Vec<_>>())
            .await
            .unwrap()
    }

    #[test]
    fn url_switches_scheme_and_keeps_the_base_path() {
        let u = realtime_url("https://api.openai.com/v1", "gpt-realtime").unwrap();
        assert_eq!(
            u.as_str(),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        let u = realtime_url("http://127.0.0.1:9/v1/", "m x").unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:9/v1/realtime?model=m+x");
        assert!(matches!(
            realtime_url("ftp://x/v1", "m"),
            Err(VoiceError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn speaks_the_ga_protocol_and_streams_the_deltas() {
        let samples: Vec<i16> = vec![0, 1000, -1000, i16::MAX, i16::MIN, 42, -42];
        let bytes = pcm(&samples);
        let served = bytes.clone();
        let (base, seen, server) = fake_server(move |mut ws| async move {
            send_json(&mut ws, json!({"type": "session.created", "session": {}})).await;
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(recv_json(&mut ws).await);
            }
            send_json(&mut ws, json!({"type": "session.updated", "session": {}})).await;
            send_json(&mut ws, delta(&served[..4])).await;
            send_json(
                &mut ws,
                json!({"type": "response.output_audio_transcript.delta", "delta": "Hello"}),
            )
            .await;
            // Split in the middle of a sample: the decoder must rejoin it.
            send_json(&mut ws, delta(&served[4..9])).await;
            send_json(&mut ws, delta(&served[9..])).await;
            send_json(
                &mut ws,
                json!({"type": "response.done", "response": {"status": "completed"}}),
            )
            .await;
            // The client closes cleanly: a Close frame, then the end of the stream.
            let mut closed = false;
            while let Some(Ok(m)) = ws.next().await {
                closed |= matches!(m, Message::Close(_));
            }
            (got, closed)
        })
        .await;

        let v = voice(base);
        assert_eq!(v.name(), "openai-realtime");
        let audio = v.synthesize("Hello, 世界.").await.unwrap();
        assert_eq!(audio.rate, 24_000);
        let items = collect(audio).await;
        assert_eq!(items.len(), 3, "each delta is a chunk: {items:?}");
        let got: Vec<i16> = items.into_iter().flat_map(|c| c.unwrap()).collect();
        assert_eq!(got, samples);
        // The session waits for the next sentence until the voice goes away.
        drop(v);

        let (messages, closed) = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(closed, "the client should send a Close frame");
        let up = seen.lock().unwrap().clone();
        assert_eq!(up.path_and_query, "/v1/realtime?model=gpt-realtime");
        assert_eq!(up.authorization.as_deref(), Some("Bearer sk-rt-test-9876"));
        assert!(!up.beta_header, "GA must not send OpenAI-Beta");

        let update = &messages[0];
        assert_eq!(update["type"], "session.update");
        let session = &update["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["output_modalities"], json!(["audio"]));
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(
            session["audio"]["output"]["format"],
            json!({"type": "audio/pcm", "rate": 24000})
        );
        assert!(
            session["instructions"]
                .as_str()
                .unwrap()
                .contains("exactly")
        );
        assert!(session.get("modalities").is_none() && session.get("voice").is_none());

        let item = &messages[1];
        assert_eq!(item["type"], "conversation.item.create");
        assert_eq!(item["item"]["role"], "user");
        assert_eq!(
            item["item"]["content"],
            json!([{"type": "input_text", "text": "Hello, 世界."}])
        );
        assert_eq!(messages[2]["type"], "response.create");
    }

    /// Every client event a multi-connection fake received, with its connection's number.
    type EventLog = Arc<Mutex<Vec<(usize, Value)>>>;

    /// A Realtime fake on loopback for any number of connections, numbered from 0. Each
    /// answers every `response.create` with the samples `[n + 1, 7]` (n: its number), so a
    /// test sees which connection spoke, and logs what it received. Connection 0 closes its
    /// socket after `close_first_after` responses, if given. Returns the base URL, the
    /// connections accepted so far, and the log.
    async fn fake_sessions(
        close_first_after: Option<usize>,
    ) -> (String, Arc<AtomicUsize>, EventLog) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let log = EventLog::default();
        let (counted, logged) = (connections.clone(), log.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let log = logged.clone();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let mut responses = 0;
                    while let Some(Ok(message)) = ws.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        let event: Value = serde_json::from_str(text.as_str()).unwrap();
                        let respond = event["type"] == "response.create";
                        log.lock().unwrap().push((n, event));
                        if !respond {
                            continue;
                        }
                        send_json(&mut ws, delta(&pcm(&[n as i16 + 1, 7]))).await;
                        send_json(
                            &mut ws,
                            json!({"type": "response.done", "response": {"status": "completed"}}),
                        )
                        .await;
                        responses += 1;
                        if n == 0 && close_first_after == Some(responses) {
                            // The client is not reading (its session waits): no
                            // closing handshake to wait for, the socket just goes.
                            ws.close(None).await.unwrap();
                            log.lock().unwrap().push((n, json!({"type": "(closed)"})));
                            return;
                        }
                    }
                });
            }
        });
        (base, connections, log)
    }

    /// All of a sentence's samples; panics on an error item.
    async fn read_aloud(v: &RealtimeVoice, text: &str) -> Vec<i16> {
        let audio = v.synthesize(text).await.unwrap();
        collect(audio)
            .await
            .into_iter()
            .flat_map(|c| c.unwrap())
            .collect()
    }

    /// (connection, type, text of a conversation item) of each logged event.
    fn turns(log: &EventLog) -> Vec<(usize, String, String)> {
        log.lock()
            .unwrap()
            .iter()
            .map(|(n, e)| {
                let text = e["item"]["content"][0]["text"].as_str().unwrap_or("");
                (*n, e["type"].as_str().unwrap().to_owned(), text.to_owned())
            })
            .collect()
    }

    fn turn(n: usize, kind: &str, text: &str) -> (usize, String, String) {
        (n, kind.to_owned(), text.to_owned())
    }

    #[tokio::test]
    async fn a_segments_sentences_share_one_session() {
        let (base, connections, log) = fake_sessions(None).await;
        let v = voice(base);
        for text in ["One.", "Two.", "Three."] {
            assert_eq!(read_aloud(&v, text).await, [1, 7], "{text}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection");
        assert_eq!(
            turns(&log),
            [
                turn(0, "session.update", ""),
                turn(0, "conversation.item.create", "One."),
                turn(0, "response.create", ""),
                turn(0, "conversation.item.create", "Two."),
                turn(0, "response.create", ""),
                turn(0, "conversation.item.create", "Three."),
                turn(0, "response.create", ""),
            ],
            "one session.update, then one turn per sentence"
        );
    }

    #[tokio::test]
    async fn a_session_dropped_between_sentences_is_replaced_and_the_sentence_sent_again() {
        let (base, connections, log) = fake_sessions(Some(1)).await;
        let v = voice(base);
        assert_eq!(read_aloud(&v, "One.").await, [1, 7]);
        // The provider drops the waiting session.
        let dropped = async {
            while !turns(&log).iter().any(|(_, kind, _)| kind == "(closed)") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .unwrap();
        // The next sentence finds it gone before any audio, and is spoken on a new one.
        assert_eq!(read_aloud(&v, "Two.").await, [2, 7]);
        assert_eq!(read_aloud(&v, "Three.").await, [2, 7]);
        assert_eq!(connections.load(Ordering::SeqCst), 2, "one reconnection");
        let log = turns(&log);
        assert_eq!(
            log.iter()
                .filter(|(n, _, _)| *n == 1)
                .cloned()
                .collect::<Vec<_>>(),
            [
                turn(1, "session.update", ""),
                turn(1, "conversation.item.create", "Two."),
                turn(1, "response.create", ""),
                turn(1, "conversation.item.create", "Three."),
                turn(1, "response.create", ""),
            ],
            "{log:?}"
        );
        assert_eq!(
            log.iter()
                .filter(|(_, kind, _)| kind == "session.update")
                .count(),
            2,
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn a_session_is_not_reused_after_an_error() {
        // Connection 0 refuses its first response; the next sentence must not land on it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    recv_until(&mut ws, "response.create").await;
                    if n == 0 {
                        send_json(
                            &mut ws,
                            json!({"type": "error", "error": {"message": "try later"}}),
                        )
                        .await;
                    } else {
                        send_json(&mut ws, delta(&pcm(&[9]))).await;
                        send_json(
                            &mut ws,
                            json!({"type": "response.done", "response": {"status": "completed"}}),
                        )
                        .await;
                    }
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        let v = voice(base);
        let err = v.synthesize("One.").await.err().unwrap();
        assert!(
            matches!(&err, VoiceError::Rejected(m) if m.contains("try later")),
            "{err:?}"
        );
        assert_eq!(read_aloud(&v, "Two.").await, [9]);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// Reads client events up to and including the first of type `last`.
    async fn recv_until(ws: &mut ServerSocket, last: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = recv_json(ws).await;
            let done = event["type"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The samples in an `input_audio_buffer.append` event.
    fn appended(event: &Value) -> Vec<i16> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(event["audio"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len() % 2, 0, "an append ends mid-sample");
        bytes
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect()
    }

    const PERSONA: &str = "You are Aoi, the host of Radio24. Answer the caller briefly.";

    #[tokio::test]
    async fn answers_a_recording_sent_as_appends_then_a_commit() {
        // Two and a half chunks, every extreme in it, no two neighbours alike.
        let recording: Vec<i16> = (0..2 * APPEND_SAMPLES + 6001)
            .map(|i| match i % 5 {
                0 => i16::MIN,
                1 => i16::MAX,
                _ => (i as i32 * 7919 % 65_536 - 32_768) as i16,
            })
            .collect();
        let answer: Vec<i16> = vec![5, -5, 300, -300, 12_345];
        let served = pcm(&answer);
        let (base, _, server) = fake_server(move |mut ws| async move {
            let events = recv_until(&mut ws, "response.create").await;
            send_json(&mut ws, delta(&served[..3])).await;
            send_json(&mut ws, delta(&served[3..])).await;
            send_json(
                &mut ws,
                json!({"type": "response.done", "response": {"status": "completed"}}),
            )
            .await;
            while let Some(Ok(_)) = ws.next().await {}
            events
        })
        .await;

        let audio = voice(base)
            .answer_recording(&recording, PERSONA)
            .await
            .unwrap();
        assert_eq!(audio.rate, RATE);
        let got: Vec<i16> = collect(audio)
            .await
            .into_iter()
            .flat_map(|c| c.unwrap())
            .collect();
        assert_eq!(got, answer);

        let events = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "session.update",
                "input_audio_buffer.append",
                "input_audio_buffer.append",
                "input_audio_buffer.append",
                "input_audio_buffer.commit",
                "response.create",
            ]
        );

        let session = &events[0]["session"];
        assert_eq!(session["type"], "realtime");
        assert_eq!(session["output_modalities"], json!(["audio"]));
        assert_eq!(session["instructions"], PERSONA);
        let input = &session["audio"]["input"];
        assert_eq!(input["format"], json!({"type": "audio/pcm", "rate": 24000}));
        assert_eq!(
            input.get("turn_detection"),
            Some(&Value::Null),
            "turn detection must be sent, as null: {input}"
        );
        assert_eq!(session["audio"]["output"]["voice"], "marin");
        assert_eq!(
            session["audio"]["output"]["format"],
            json!({"type": "audio/pcm", "rate": 24000})
        );

        let chunks: Vec<Vec<i16>> = events[1..4].iter().map(appended).collect();
        assert!(
            chunks.iter().all(|c| !c.is_empty() && c.len() <= 12_000),
            "chunk sizes {:?}",
            chunks.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert_eq!(chunks.concat(), recording);
    }

    #[tokio::test]
    async fn a_long_recording_is_cut_at_the_cap() {
        let cap = MAX_RECORDING_SECS * RATE as usize;
        let recording: Vec<i16> = (0..cap + 1000).map(|i| (i % 1000) as i16).collect();
        let (base, _, server) = fake_server(move |mut ws| async move {
            let events = recv_until(&mut ws, "response.create").await;
            send_json(&mut ws, delta(&pcm(&[1]))).await;
            send_json(
                &mut ws,
                json!({"type": "response.done", "response": {"status": "completed"}}),
            )
            .await;
            while let Some(Ok(_)) = ws.next().await {}
            let sent: Vec<i16> = events
                .iter()
                .filter(|e| e["type"] == "input_audio_buffer.append")
                .flat_map(appended)
                .collect();
            sent
        })
        .await;
        let audio = voice(base)
            .answer_recording(&recording, PERSONA)
            .await
            .unwrap();
        assert_eq!(collect(audio).await.len(), 1);
        let sent = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(sent.len(), cap, "the first {MAX_RECORDING_SECS} s go up");
        assert!(sent[..] == recording[..cap]);
    }

    #[tokio::test]
    async fn an_error_after_the_commit_is_rejected() {
        let (base, _, _server) = fake_server(|mut ws| async move {
            recv_until(&mut ws, "input_audio_buffer.commit").await;
            send_json(
                &mut ws,
                json!({"type": "error", "error": {
                    "type": "invalid_request_error",
                    "message": "Error committing input audio buffer: buffer too small.",
                }}),
            )
            .await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let err = voice(base)
            .answer_recording(&[1, 2, 3], PERSONA)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, VoiceError::Rejected(m) if m.contains("buffer too small")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_recording_is_an_error_without_a_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let err = voice(base)
            .answer_recording(&[], PERSONA)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, VoiceError::BadAnswer(m) if m == "empty recording"),
            "{err:?}"
        );
        // A connection made before the call returned would be waiting in the backlog.
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the voice connected: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn error_event_is_rejected_with_its_message() {
        let (base, _, _server) = fake_server(|mut ws| async move {
            for _ in 0..3 {
                recv_json(&mut ws).await;
            }
            send_json(
                &mut ws,
                json!({"type": "error", "error": {
                    "type": "invalid_request_error",
                    "message": "Invalid value: 'nova'. Supported voices are: marin, cedar.",
                }}),
            )
            .await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let err = voice(base).synthesize("Hello.").await.err().unwrap();
        assert!(
            matches!(&err, VoiceError::Rejected(m) if m.contains("Invalid value: 'nova'")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn failed_response_is_rejected() {
        let (base, _, _server) = fake_server(|mut ws| async move {
            for _ in 0..3 {
                recv_json(&mut ws).await;
            }
            send_json(
                &mut ws,
                json!({"type": "response.done", "response": {"status": "failed",
                    "status_details": {"error": {"message": "quota exceeded"}}}}),
            )
            .await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let err = voice(base).synthesize("Hello.").await.err().unwrap();
        assert!(
            matches!(&err, VoiceError::Rejected(m) if m.contains("quota exceeded")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn socket_closed_mid_response_ends_with_an_error_item() {
        let (base, _, _server) = fake_server(|mut ws| async move {
            for _ in 0..3 {
                recv_json(&mut ws).await;
            }
            send_json(&mut ws, delta(&pcm(&[11, 22]))).await;
            ws.close(None).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let audio = voice(base).synthesize("Hello.").await.unwrap();
        let items = collect(audio).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap(), &vec![11, 22]);
        assert!(
            matches!(items[1], Err(VoiceError::BadAnswer(_))),
            "{items:?}"
        );
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_socket() {
        let (base, _, server) = fake_server(|mut ws| async move {
            for _ in 0..3 {
                recv_json(&mut ws).await;
            }
            send_json(&mut ws, delta(&pcm(&[1, 2]))).await;
            // No response.done: the listener skips the segment mid-sentence.
            let mut closed = false;
            while let Some(Ok(m)) = ws.next().await {
                closed |= matches!(m, Message::Close(_));
            }
            closed
        })
        .await;
        let audio = voice(base).synthesize("Hello.").await.unwrap();
        drop(audio);
        let closed = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(closed, "the client should send a Close frame");
    }

    #[tokio::test]
    async fn no_audio_in_time_is_a_timeout() {
        let (base, _, _server) = fake_server(|mut ws| async move {
            // Reads everything, answers nothing, until the client gives up.
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let mut c = RealtimeConfig::new(base, SecretString::from(KEY));
        c.first_audio_timeout = Duration::from_millis(200);
        let err = RealtimeVoice::new(c)
            .unwrap()
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn refused_upgrade_is_rejected_without_the_key() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tokio_tungstenite::accept_hdr_async(
                tcp,
                |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
                    let mut resp = ErrorResponse::new(Some(format!(
                        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#
                    )));
                    *resp.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
                    Err(resp)
                },
            )
            .await;
        });
        let err = voice(base).synthesize("Hello.").await.err().unwrap();
        let VoiceError::Rejected(message) = &err else {
            panic!("expected Rejected, got {err:?}");
        };
        assert!(message.contains("401"), "{message}");
        assert!(message.contains("Incorrect API key"), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }

    #[tokio::test]
    async fn no_server_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = voice(format!("http://127.0.0.1:{port}/v1"))
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::Unavailable(_)), "{err:?}");
    }
}
