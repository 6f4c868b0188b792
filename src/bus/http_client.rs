//! The API side of the HTTP bus: [`HttpHostBus`] calls the host's routes
//! (see [`super::http_server`]) with the bus token, a connect and a request timeout, and turns
//! every failure into a [`BusError`] the API can answer with (`Unavailable`, `Timeout`, …).
//! Each request carries the current trace context (`traceparent`) when traces are on, and
//! goes over mutual TLS when `bus.tls.*` is set ([`super::tls`]).
//!
//! `bus.host_url` may name several hosts, comma-separated (an active host and its
//! standbys). Every request goes to the one that last answered as active; on a connection
//! failure, or a 503 `standby`, it moves on to the next, once round the list, and remembers
//! the one that answers. Calls, the event link, the audio relay and the archive all go
//! through [`HttpHostBus::send_to_active`]. With one URL nothing changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::archive::{ArchiveFile, ArchiveFileName, ArchiveListing};
use super::audio::PageSplitter;
use super::google_id::IdTokenSource;
use super::tls::BusTls;
use super::{
    AudioStream, BusError, CallAccepted, CallHandoff, ErrorBody, EventStream, HostBus, HostEvent,
    OnAir, Programme, Rejection, Script, ScriptRequest, SpeakAccepted, SpeakRequest,
};
use crate::domain::ChannelName;

/// The event stream is declared dead after this long without a byte (the host sends a
/// keep-alive line every few seconds).
const EVENT_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// The live stream is declared dead after this long without a byte (pages come every
/// 100 ms or so).
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// An archive download is declared dead after this long without a byte.
const ARCHIVE_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest event line accepted; a longer one means the peer is not a Radio24 host.
const MAX_EVENT_LINE: usize = 4 * 1024 * 1024;

/// A client of the host's bus routes.
#[derive(Clone)]
pub struct HttpHostBus {
    client: reqwest::Client,
    /// The hosts of `bus.host_url`, in order.
    bases: Arc<[Url]>,
    /// The index in `bases` of the host that last answered as active.
    active: Arc<AtomicUsize>,
    token: SecretString,
    /// With `bus.auth = "google_id_token"`: where the bearer comes from instead of `token`.
    id_tokens: Option<Arc<IdTokenSource>>,
    request_timeout: Duration,
}

/// The hosts named by `bus.host_url`: one URL, or several separated by commas.
pub fn host_urls(raw: &str) -> Result<Vec<Url>, BusError> {
    let urls = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let mut base = Url::parse(u)
                .map_err(|e| BusError::Internal(format!("bus.host_url {u:?}: {e}")))?;
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            Ok(base)
        })
        .collect::<Result<Vec<_>, BusError>>()?;
    if urls.is_empty() {
        return Err(BusError::Internal("bus.host_url: no URL".into()));
    }
    Ok(urls)
}

/// Whether a request that failed this way may go to the next host: the host was not reached
/// (`connect`), or answered that it is a standby. Either way it did nothing.
fn try_next_host(e: &BusError, connect_failed: bool) -> bool {
    connect_failed || matches!(e, BusError::Standby(_))
}

impl HttpHostBus {
    pub fn new(
        base: &str,
        token: SecretString,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, BusError> {
        Self::with_tls(base, token, connect_timeout, request_timeout, None)
    }

    /// [`HttpHostBus::new`], over mutual TLS when `tls` is given (`bus.tls.*`): `https`
    /// whatever the scheme of each URL, only the bus's CA trusted, its certificate presented.
    pub fn with_tls(
        base: &str,
        token: SecretString,
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: Option<&BusTls>,
    ) -> Result<Self, BusError> {
        let mut bases = host_urls(base)?;
        if tls.is_some() {
            for base in bases.iter_mut().filter(|b| b.scheme() == "http") {
                base.set_scheme("https")
                    .map_err(|()| BusError::Internal("bus.host_url: cannot use https".into()))?;
            }
        }
        Ok(Self {
            client: client(connect_timeout, tls)?,
            bases: bases.into(),
            active: Arc::default(),
            token,
            id_tokens: None,
            request_timeout,
        })
    }

    /// Presents Google ID tokens from `source` instead of the bus token
    /// (`bus.auth = "google_id_token"`).
    pub fn with_id_tokens(mut self, source: Arc<IdTokenSource>) -> Self {
        self.id_tokens = Some(source);
        self
    }

    fn url(base: &Url, path: &str) -> Result<Url, BusError> {
        base.join(path)
            .map_err(|e| BusError::Internal(format!("bad bus path {path}: {e}")))
    }

    /// A request to the host at `base` with the bearer: the bus token, or a (cached) ID
    /// token, and the trace context.
    async fn request(
        &self,
        base: &Url,
        method: Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, BusError> {
        let request = self
            .client
            .request(method, Self::url(base, path)?)
            .headers(crate::telemetry::trace_headers());
        Ok(match &self.id_tokens {
            None => request.bearer_auth(self.token.expose_secret()),
            Some(source) => {
                let token = source
                    .token()
                    .await
                    .map_err(|e| BusError::Unavailable(format!("no ID token for the host: {e}")))?;
                request.bearer_auth(token.expose_secret())
            }
        })
    }

    /// Sends the request `build` makes to the active host (see the module's doc): its
    /// answer, whatever the status, except a 503, which comes back as its error.
    async fn send_to_active(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BusError> {
        let count = self.bases.len();
        let first = self.active.load(Ordering::Relaxed) % count;
        let mut last = None;
        for step in 0..count {
            let index = (first + step) % count;
            let request = build(
                self.request(&self.bases[index], method.clone(), path)
                    .await?,
            );
            let (error, connect_failed) = match request.send().await {
                Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    let body = resp.bytes().await.unwrap_or_default();
                    (
                        error_from_status(StatusCode::SERVICE_UNAVAILABLE, &body),
                        false,
                    )
                }
                Ok(resp) => {
                    self.now_active(first, index);
                    return Ok(resp);
                }
                Err(e) => {
                    let connect_failed = e.is_connect();
                    (self.transport_error(e), connect_failed)
                }
            };
            if !try_next_host(&error, connect_failed) {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| BusError::Unavailable("no host".into())))
    }

    /// Remembers the host at `index` as the active one (when it is another than before).
    fn now_active(&self, before: usize, index: usize) {
        if index != before {
            self.active.store(index, Ordering::Relaxed);
            tracing::info!(host = %self.bases[index], "bus: this host answers as the active one");
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> BusError {
        if e.is_timeout() {
            BusError::Timeout(self.request_timeout)
        } else if e.is_connect() || e.is_request() {
            BusError::Unavailable(without_url(&e))
        } else {
            BusError::Internal(without_url(&e))
        }
    }

    /// Opens a long-lived `GET` (events, audio, a file): the answer's headers within the
    /// request timeout, a refusal as its error; the body is the caller's to stream.
    async fn open_stream(&self, path: &str) -> Result<reqwest::Response, BusError> {
        let resp = tokio::time::timeout(
            self.request_timeout,
            self.send_to_active(Method::GET, path, |req| req),
        )
        .await
        .map_err(|_| BusError::Timeout(self.request_timeout))??;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(error_from_status(status, &body));
        }
        Ok(resp)
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Option<T>, BusError> {
        let timeout = self.request_timeout;
        let resp = self
            .send_to_active(method, path, |req| {
                let req = req.timeout(timeout);
                match body {
                    Some(body) => req.json(body),
                    None => req,
                }
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                BusError::Internal(format!("{path}: the host's answer is not valid: {e}"))
            });
        }
        Err(error_from_status(status, &bytes))
    }
}

/// The HTTP client of the bus: plain, or mutual TLS with `tls` (every call, the event
/// stream, the audio stream and archive downloads go through it).
fn client(connect_timeout: Duration, tls: Option<&BusTls>) -> Result<reqwest::Client, BusError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_keepalive(Duration::from_secs(15))
        .user_agent(concat!("radio24-api/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        let config = tls
            .client_config()
            .map_err(|e| BusError::Internal(e.to_string()))?;
        builder = builder.tls_backend_preconfigured(config);
    }
    builder
        .build()
        .map_err(|e| BusError::Internal(format!("building the HTTP client: {e}")))
}

/// A transport error's text without the URL (which is noise here and could carry secrets).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "host");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn error_from_status(status: StatusCode, body: &[u8]) -> BusError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(b) => (b.error, b.message),
        None => (
            "host_error".to_owned(),
            format!("the host answered {status}"),
        ),
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BusError::Unauthorized,
        StatusCode::NOT_FOUND => BusError::rejected(Rejection::NotFound, code, message),
        StatusCode::TOO_MANY_REQUESTS => BusError::rejected(Rejection::Busy, code, message),
        StatusCode::SERVICE_UNAVAILABLE if code == "standby" => BusError::Standby(message),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => BusError::Unavailable(message),
        StatusCode::GATEWAY_TIMEOUT => BusError::Unavailable(message),
        s if s.is_client_error() => BusError::rejected(Rejection::BadRequest, code, message),
        _ => BusError::Internal(format!("{status}: {message}")),
    }
}

fn expect_body<T>(answer: Option<T>, path: &str) -> Result<T, BusError> {
    answer.ok_or_else(|| BusError::Internal(format!("{path}: the host answered with no body")))
}

#[async_trait]
impl HostBus for HttpHostBus {
    #[tracing::instrument(skip_all, fields(bus = "http"))]
    async fn generate_script(&self, req: ScriptRequest) -> Result<Script, BusError> {
        let path = "script/generate";
        expect_body(self.call(Method::POST, path, Some(&req)).await?, path)
    }

    #[tracing::instrument(skip_all, fields(bus = "http"))]
    async fn speak(&self, req: SpeakRequest) -> Result<SpeakAccepted, BusError> {
        let path = "speak";
        expect_body(self.call(Method::POST, path, Some(&req)).await?, path)
    }

    #[tracing::instrument(skip_all, fields(bus = "http", call = %call.call_id))]
    async fn take_call(&self, call: CallHandoff) -> Result<CallAccepted, BusError> {
        let path = "calls";
        expect_body(self.call(Method::POST, path, Some(&call)).await?, path)
    }

    async fn now_playing(&self, channel: &ChannelName) -> Result<OnAir, BusError> {
        let path = format!("now?channel={channel}");
        expect_body(self.call::<(), _>(Method::GET, &path, None).await?, &path)
    }

    #[tracing::instrument(skip_all, fields(bus = "http"))]
    async fn set_programme(&self, programme: Programme) -> Result<(), BusError> {
        self.call::<_, serde_json::Value>(Method::PUT, "programme", Some(&programme))
            .await
            .map(|_| ())
    }

    async fn subscribe(&self) -> Result<EventStream, BusError> {
        let resp = self.open_stream("events").await?;
        Ok(ndjson_events(resp.bytes_stream()).boxed())
    }

    async fn audio_stream(&self, channel: &ChannelName) -> Result<AudioStream, BusError> {
        let resp = self
            .open_stream(&format!("stream?channel={channel}"))
            .await?;
        Ok(ogg_pages(resp.bytes_stream()).boxed())
    }

    async fn archive_list(&self, channel: &ChannelName) -> Result<ArchiveListing, BusError> {
        let path = format!("archive?channel={channel}");
        expect_body(self.call::<(), _>(Method::GET, &path, None).await?, &path)
    }

    async fn archive_file(
        &self,
        channel: &ChannelName,
        file: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError> {
        // Both parts are validated names: nothing in them needs escaping.
        let path = format!("archive/{file}?channel={channel}");
        let resp = self.open_stream(&path).await?;
        Ok(ArchiveFile {
            kind: file.kind(),
            length: resp.content_length(),
            body: byte_stream(resp.bytes_stream()).boxed(),
        })
    }
}

/// The body of a download as it arrives; an error (ending the stream) after a transport
/// error or [`ARCHIVE_IDLE_TIMEOUT`] without a byte.
fn byte_stream<S>(
    bytes: S,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    futures::stream::try_unfold(Box::pin(bytes), |mut bytes| async move {
        match tokio::time::timeout(ARCHIVE_IDLE_TIMEOUT, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Ok(Some((chunk, bytes))),
            Ok(Some(Err(e))) => Err(std::io::Error::other(format!(
                "host download broke: {}",
                without_url(&e)
            ))),
            Ok(None) => Ok(None),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("host download silent for {ARCHIVE_IDLE_TIMEOUT:?}"),
            )),
        }
    })
}

/// Turns the bytes of the host's `/stream` into whole Ogg pages. Ends at the first transport
/// error, after [`STREAM_IDLE_TIMEOUT`] of silence, or on bytes that are not Ogg.
fn ogg_pages<S>(bytes: S) -> impl futures::Stream<Item = bytes::Bytes> + Send + 'static
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    let state = (Box::pin(bytes), PageSplitter::new());
    futures::stream::unfold(state, |(mut bytes, mut splitter)| async move {
        loop {
            match splitter.next_page() {
                Ok(Some(page)) => return Some((page, (bytes, splitter))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "host stream broke");
                    return None;
                }
            }
            match tokio::time::timeout(STREAM_IDLE_TIMEOUT, bytes.next()).await {
                Ok(Some(Ok(chunk))) => splitter.push(&chunk),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %without_url(&e), "host stream broke");
                    return None;
                }
                Ok(None) => return None,
                Err(_) => {
                    tracing::warn!("host stream silent for {STREAM_IDLE_TIMEOUT:?}");
                    return None;
                }
            }
        }
    })
}

/// Turns a byte stream of newline-delimited JSON into events. Ends at the first transport
/// error, after [`EVENT_IDLE_TIMEOUT`] of silence, or on a line that is too long; lines that
/// do not parse (e.g. a newer host's event types) are logged and skipped.
fn ndjson_events<S>(bytes: S) -> impl futures::Stream<Item = HostEvent> + Send + 'static
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
{
    struct State<S> {
        bytes: std::pin::Pin<Box<S>>,
        buf: BytesMut,
    }
    let state = State {
        bytes: Box::pin(bytes),
        buf: BytesMut::new(),
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(pos) = st.buf.iter().position(|b| *b == b'\n') {
                let line = st.buf.split_to(pos + 1);
                let line = &line[..pos];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue; // keep-alive
                }
                match serde_json::from_slice::<HostEvent>(line) {
                    Ok(event) => return Some((event, st)),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipped a host event this API does not understand");
                        continue;
                    }
                }
            }
            if st.buf.len() > MAX_EVENT_LINE {
                tracing::warn!("host event line over {MAX_EVENT_LINE} bytes; dropping the stream");
                return None;
            }
            match tokio::time::timeout(EVENT_IDLE_TIMEOUT, st.bytes.next()).await {
                Ok(Some(Ok(chunk))) => st.buf.extend_from_slice(chunk.chunk()),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %without_url(&e), "host event stream broke");
                    return None;
                }
                Ok(None) => return None,
                Err(_) => {
                    tracing::warn!(
                        "host event stream silent for {EVENT_IDLE_TIMEOUT:?}; reconnecting"
                    );
                    return None;
                }
            }
        }
    })
}
