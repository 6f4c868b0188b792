//! Every WebSocket the API serves is opened here, so each one has the same bounds.
//!
//! - **Reading.** actix-ws reads all the bytes a client has sent before it decodes a frame, so
//!   a frame header that claims 2^40 bytes would be buffered for as long as the client keeps
//!   sending. [`FrameGuard`] sits between the connection and the decoder. It reads each frame
//!   header as it passes and refuses a frame (or a fragmented message, counted whole) that
//!   declares more than the route's limit, before its payload is read. It also hands the
//!   decoder one frame at a time, so the bytes buffered and not yet decoded never exceed one
//!   frame plus a header. A refusal closes the socket with 1009 (message too big). A route
//!   may instead have frames over its limit, up to a ceiling, skipped: their bytes are read
//!   and thrown away as they pass, the receiver reports [`ReadError::Skipped`], and the
//!   socket stays open (`/ws/ptt` does; a caller's mistake should not cost the call).
//! - **Flooding.** Every frame a client sends (control frames and fragments too) takes a
//!   token from a per-socket bucket ([`FrameRate`]); a client that sends faster than it
//!   refills, for longer than its burst, is closed with 1008 (policy violation). So no client
//!   can make the server do unbounded work per second, whether the frames are small data
//!   messages each costing a reply or a store query, or empty fragments of a message that
//!   never ends.
//! - **Text.** A text frame that is not UTF-8 closes the socket with 1007 (RFC 6455 §8.1).
//! - **Writing.** Every send (text, ping, pong, close) has the same time limit, so a client
//!   that stops reading is dropped after it, whatever it makes the server send. A text over
//!   [`FRAGMENT_BYTES`] (a `/ws/broadcast` snapshot of long captions) goes out as a fragmented
//!   message, one fragment handed to the connection at a time: actix-http's write buffer of a
//!   connection starts at 8 KiB, grows to the largest piece it is ever given at once, and
//!   never shrinks, so one 20 KiB snapshot would otherwise hold 20 KiB for as long as the
//!   listener stays (docs/benchmarks.md, "Broadcast fan-out").

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Closed, Item, Message, MessageStream, Session};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures::{Stream, StreamExt};

/// What one socket may receive and how long a send may wait.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Largest frame a client may send (its payload, in bytes).
    pub max_frame: usize,
    /// Largest message a client may send, all its fragments together.
    pub max_message: usize,
    /// Unfragmented data frames over `max_frame` but at most this big are skipped (their
    /// bytes read and thrown away as they pass, never buffered) and reported as
    /// [`ReadError::Skipped`], and the socket stays open; bigger ones close it. `None`: every
    /// frame over `max_frame` closes it.
    pub skip_up_to: Option<usize>,
    /// Longest a send may wait for the client to take it.
    pub send_timeout: Duration,
    /// How many frames the client may send.
    pub frame_rate: FrameRate,
}

/// How fast a client may send frames: a bucket of `burst` frames, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameRate {
    pub per_second: f64,
    pub burst: u32,
}

/// What was wrong with what a client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A frame over the limit that was skipped; the socket stays open.
    #[error("a frame of {declared} bytes was skipped; the limit is {limit}")]
    Skipped { declared: u64, limit: usize },
    /// A frame or message over the limit; closed with 1009.
    #[error("{0}")]
    TooBig(String),
    /// A frame that breaks RFC 6455; closed with 1002.
    #[error("{0}")]
    Protocol(String),
    /// A text frame that is not UTF-8; closed with 1007.
    #[error("a text frame that is not UTF-8")]
    InvalidText,
    /// Frames faster than the socket's [`FrameRate`]; closed with 1008.
    #[error("{0}")]
    Flood(String),
}

impl ReadError {
    /// The close code this error ends the socket with; `None` when it does not end it.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            ReadError::Skipped { .. } => None,
            ReadError::TooBig(_) => Some(CloseCode::Size),
            ReadError::Protocol(_) => Some(CloseCode::Protocol),
            ReadError::InvalidText => Some(CloseCode::Invalid),
            ReadError::Flood(_) => Some(CloseCode::Policy),
        }
    }
}

/// The client stopped taking what the server sends (the send timed out or the socket closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client is gone or stopped reading")]
pub struct Gone;

/// Upgrades `req` to a WebSocket bounded by `limits`: the handshake answer to return, and the
/// two halves of the socket.
pub async fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    limits: SocketLimits,
) -> Result<(HttpResponse, WsSender, WsReceiver), actix_web::Error> {
    let refusal = Rc::new(Notices::default());
    let guard: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(FrameGuard::new(body, limits, refusal.clone()));
    let mut guarded = Payload::Stream { payload: guard };
    let body = web::Payload::from_request(req, &mut guarded).await?;
    let (response, session, stream) = actix_ws::handle(req, body)?;
    Ok((
        response,
        WsSender {
            session,
            send_timeout: limits.send_timeout,
        },
        WsReceiver {
            stream: stream.max_frame_size(limits.max_frame),
            refusal,
        },
    ))
}

/// Texts up to this many bytes go out as one frame; longer ones in fragments of at most
/// this many (see the module doc). Under actix-http's 8 KiB write buffer with room for a
/// queued event or two beside a fragment.
pub const FRAGMENT_BYTES: usize = 4 * 1024;

/// The sending half: every send waits at most the socket's send timeout. Not `Clone`: the
/// fragments of one message must not interleave with another's.
pub struct WsSender {
    session: Session,
    send_timeout: Duration,
}

impl WsSender {
    pub async fn text(&mut self, frame: impl Into<ByteString>) -> Result<(), Gone> {
        let frame = frame.into();
        let sent = if frame.len() <= FRAGMENT_BYTES {
            tokio::time::timeout(self.send_timeout, self.session.text(frame)).await
        } else {
            let fragments = send_in_fragments(&mut self.session, frame);
            tokio::time::timeout(self.send_timeout, fragments).await
        };
        delivered(sent)
    }

    pub async fn ping(&mut self) -> Result<(), Gone> {
        let sent = tokio::time::timeout(self.send_timeout, self.session.ping(b"")).await;
        delivered(sent)
    }

    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Gone> {
        let sent = tokio::time::timeout(self.send_timeout, self.session.pong(payload)).await;
        delivered(sent)
    }

    /// Closes the socket with `code` and a reason (cut to what a close frame holds).
    pub async fn close(self, code: CloseCode, reason: Option<&str>) {
        let reason = CloseReason {
            code,
            description: reason.map(|r| cut_to_bytes(r, 123).to_owned()),
        };
        let _ = tokio::time::timeout(self.send_timeout, self.session.close(Some(reason))).await;
    }
}

/// Sends `text` as a fragmented message of pieces of at most [`FRAGMENT_BYTES`], cut on
/// character boundaries. After each piece the task yields, so the connection (woken by the
/// piece, and so queued first on this worker) takes it into its write buffer and writes it
/// out before the next is queued.
async fn send_in_fragments(session: &mut Session, text: ByteString) -> Result<(), Closed> {
    let ends = fragment_ends(&text, FRAGMENT_BYTES);
    let bytes = text.into_bytes();
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        let piece = bytes.slice(start..end);
        let item = match (i, end == bytes.len()) {
            (0, _) => Item::FirstText(piece),
            (_, true) => Item::Last(piece),
            (_, false) => Item::Continue(piece),
        };
        session.continuation(item).await?;
        start = end;
        if end < bytes.len() {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Where the fragments of `text` end: each at most `max` bytes (`max` ≥ 4, the longest
/// UTF-8 character) and on a character boundary, the last at `text.len()`. A text of at
/// most `max` bytes is one fragment, which is no fragmentation: callers send those whole.
fn fragment_ends(text: &str, max: usize) -> Vec<usize> {
    let mut ends = Vec::with_capacity(text.len() / max + 1);
    let mut start = 0;
    while text.len() - start > max {
        let mut end = start + max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ends.push(end);
        start = end;
    }
    ends.push(text.len());
    ends
}

/// Whether a send went out; one that timed out is a client dropped for lagging (counted).
fn delivered<E>(sent: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Result<(), Gone> {
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Gone),
        Err(_) => {
            crate::metrics::ws_lagged(crate::metrics::Lag::Dropped);
            Err(Gone)
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_to_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The receiving half.
pub struct WsReceiver {
    stream: MessageStream,
    refusal: Rc<Notices>,
}

/// What the guard tells the receiver: why it ended the stream, and frames it skipped.
#[derive(Default)]
struct Notices {
    refusal: Cell<Option<ReadError>>,
    /// The declared size and limit of a frame skipped and not yet reported.
    skipped: Cell<Option<(u64, usize)>>,
}

impl WsReceiver {
    /// The next message; `None` when the client has gone. An error with a
    /// [`ReadError::close_code`] ends the socket (close it with that code); a skipped frame
    /// does not.
    pub async fn recv(&mut self) -> Option<Result<Message, ReadError>> {
        let notices = self.refusal.clone();
        std::future::poll_fn(|cx| {
            if let Some((declared, limit)) = notices.skipped.take() {
                return Poll::Ready(Some(Err(ReadError::Skipped { declared, limit })));
            }
            match self.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(match notices.refusal.take() {
                    Some(refusal) => refusal,
                    None => match e {
                        actix_ws::ProtocolError::Overflow => {
                            ReadError::TooBig("a frame over the size limit".to_owned())
                        }
                        // actix-ws's only InvalidData: a text frame's bytes are not UTF-8.
                        actix_ws::ProtocolError::Io(e)
                            if e.kind() == std::io::ErrorKind::InvalidData =>
                        {
                            ReadError::InvalidText
                        }
                        other => ReadError::Protocol(other.to_string()),
                    },
                }))),
                Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(message))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    // The guard may have skipped a frame meanwhile (it wakes this task).
                    match notices.skipped.take() {
                        Some((declared, limit)) => {
                            Poll::Ready(Some(Err(ReadError::Skipped { declared, limit })))
                        }
                        None => Poll::Pending,
                    }
                }
            }
        })
        .await
    }
}

/// What the frame guard made of a client's bytes: see [`guard_chunks`].
#[derive(Debug, Default)]
pub struct Guarded {
    /// What was handed on to the WebSocket decoder, one piece per poll.
    pub handed_on: Vec<Bytes>,
    /// Why the guard ended the stream, if it did.
    pub refusal: Option<ReadError>,
    /// The last frame skipped (declared size, limit), if any.
    pub skipped: Option<(u64, usize)>,
}

/// Runs `chunks` (a client's bytes, cut as the connection delivered them) through the same
/// frame guard [`upgrade`] puts in front of the decoder, to the end or to its refusal. The
/// guard is the code that reads untrusted frame headers; this lets the unit tests and the
/// fuzzer (`fuzz/fuzz_targets/ptt_frames.rs`) drive it without a socket.
pub fn guard_chunks(limits: SocketLimits, chunks: impl IntoIterator<Item = Bytes>) -> Guarded {
    let notices = Rc::new(Notices::default());
    let inner = futures::stream::iter(chunks.into_iter().map(Ok));
    let mut guard = FrameGuard::new(inner, limits, notices.clone());
    let handed_on = futures::executor::block_on(async {
        let mut out = Vec::new();
        while let Some(Ok(bytes)) = guard.next().await {
            out.push(bytes);
        }
        out
    });
    Guarded {
        handed_on,
        refusal: notices.refusal.take(),
        skipped: notices.skipped.take(),
    }
}

/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// The bytes of a client's WebSocket as they arrive, checked frame header by frame header and
/// handed on one frame at a time (see the module doc). A header is held back until it is
/// whole, so a frame can be skipped, header and all, without the decoder seeing any of it.
struct FrameGuard<S> {
    inner: S,
    limits: SocketLimits,
    /// Bytes read from `inner` and not yet handed on (at most one read of the connection).
    held: Bytes,
    /// The current frame header while it arrives (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to pass (or skip); 0 while in a header.
    remaining: u64,
    /// The current frame's payload is being thrown away.
    skipping: bool,
    /// Bytes so far of a fragmented data message, while one is open.
    message: Option<u64>,
    /// A frame ended in what was last handed on: wait one poll so the decoder takes it
    /// before more is read.
    pause: bool,
    /// What the receiver is told ([`WsReceiver`]); once refused, no more is read.
    notices: Rc<Notices>,
    refused: bool,
    /// Frames the client may still send now ([`FrameRate`]), as of `refilled_at`.
    frame_tokens: f64,
    refilled_at: Instant,
}

/// What a whole header says to do with its frame.
enum Verdict {
    Pass(u64),
    Skip(u64),
}

impl<S> FrameGuard<S> {
    fn new(inner: S, limits: SocketLimits, notices: Rc<Notices>) -> Self {
        Self {
            inner,
            limits,
            held: Bytes::new(),
            header: Vec::with_capacity(14),
            remaining: 0,
            skipping: false,
            message: None,
            pause: false,
            notices,
            refused: false,
            frame_tokens: f64::from(limits.frame_rate.burst),
            refilled_at: Instant::now(),
        }
    }

    /// Takes one frame's token from the bucket, or refuses the frame.
    fn take_frame_token(&mut self) -> Result<(), ReadError> {
        let rate = self.limits.frame_rate;
        let now = Instant::now();
        let refill = now.duration_since(self.refilled_at).as_secs_f64() * rate.per_second;
        self.frame_tokens = (self.frame_tokens + refill).min(f64::from(rate.burst));
        self.refilled_at = now;
        if self.frame_tokens < 1.0 {
            return Err(ReadError::Flood(format!(
                "more than {} frames in a burst, or {} a second",
                rate.burst, rate.per_second
            )));
        }
        self.frame_tokens -= 1.0;
        Ok(())
    }

    /// Length of the header in `self.header` once all of it has arrived.
    fn header_len(&self) -> Option<usize> {
        let [_, second, ..] = self.header[..] else {
            return None;
        };
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        let len = 2 + extended + mask;
        (self.header.len() >= len).then_some(len)
    }

    /// Checks a complete header.
    fn check_header(&mut self) -> Result<Verdict, ReadError> {
        self.take_frame_token()?;
        let (first, second) = (self.header[0], self.header[1]);
        let declared = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
            short => u64::from(short),
        };
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        if opcode >= 8 {
            if declared > MAX_CONTROL_PAYLOAD || !fin {
                return Err(ReadError::Protocol(
                    "a control frame over 125 bytes or fragmented".to_owned(),
                ));
            }
            return Ok(Verdict::Pass(declared));
        }
        let max_frame = self.limits.max_frame as u64;
        if declared > max_frame {
            let skippable = fin
                && opcode != 0
                && self.message.is_none()
                && self
                    .limits
                    .skip_up_to
                    .is_some_and(|most| declared <= most as u64);
            if skippable {
                return Ok(Verdict::Skip(declared));
            }
            return Err(ReadError::TooBig(format!(
                "a frame of {declared} bytes; the limit is {max_frame}"
            )));
        }
        let so_far = if opcode == 0 {
            self.message.unwrap_or(0) + declared
        } else {
            declared
        };
        let max_message = self.limits.max_message as u64;
        if so_far > max_message {
            return Err(ReadError::TooBig(format!(
                "a message of more than {max_message} bytes in fragments; the limit is {max_message}"
            )));
        }
        self.message = (!fin).then_some(so_far);
        Ok(Verdict::Pass(declared))
    }

    /// Moves what is to be handed on now from `held` into `out`: up to the end of one frame.
    /// True when a frame ended there.
    fn walk(&mut self, out: &mut BytesMut) -> Result<bool, ReadError> {
        while !self.held.is_empty() {
            if self.remaining == 0 {
                let byte = self.held[0];
                self.held.advance(1);
                self.header.push(byte);
                if self.header_len().is_none() {
                    continue;
                }
                let verdict = self.check_header()?;
                let header = std::mem::take(&mut self.header);
                match verdict {
                    Verdict::Pass(0) => {
                        out.extend_from_slice(&header);
                        return Ok(true);
                    }
                    Verdict::Pass(declared) => {
                        out.extend_from_slice(&header);
                        self.remaining = declared;
                        self.skipping = false;
                    }
                    Verdict::Skip(declared) => {
                        self.remaining = declared;
                        self.skipping = true;
                        self.notices
                            .skipped
                            .set(Some((declared, self.limits.max_frame)));
                    }
                }
                self.header = header;
                self.header.clear();
            } else {
                let step = self.remaining.min(self.held.len() as u64) as usize;
                let payload = self.held.split_to(step);
                self.remaining -= step as u64;
                if !self.skipping {
                    out.extend_from_slice(&payload);
                    if self.remaining == 0 {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(None);
        }
        if this.pause {
            this.pause = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut out = BytesMut::new();
        loop {
            if this.held.is_empty() {
                match this.inner.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(bytes))) => this.held = bytes,
                    other => return other,
                }
            }
            match this.walk(&mut out) {
                Ok(true) => {
                    this.pause = true;
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                // What was read is used up in the middle of a frame: hand on what there is.
                Ok(false) if !out.is_empty() => return Poll::Ready(Some(Ok(out.freeze()))),
                // Used up in a header, or in a frame being skipped: read on.
                Ok(false) => {}
                Err(refusal) => {
                    this.refused = true;
                    this.held = Bytes::new();
                    this.notices.refusal.set(Some(refusal));
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SocketLimits = SocketLimits {
        max_frame: 1024,
        max_message: 4096,
        skip_up_to: None,
        send_timeout: Duration::from_secs(1),
        frame_rate: FrameRate {
            per_second: 1000.0,
            burst: 1000,
        },
    };

    /// A masked client frame header for `len` payload bytes.
    fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut f = header(fin, opcode, len as u64);
        f.extend(std::iter::repeat_n(0x55, len));
        f
    }

    /// Everything the guard hands on for `chunks`, polled to the end, and why it stopped.
    fn run(chunks: Vec<Vec<u8>>) -> (Vec<Bytes>, Option<ReadError>) {
        let guarded = run_with(LIMITS, chunks);
        (guarded.handed_on, guarded.refusal)
    }

    fn run_with(limits: SocketLimits, chunks: Vec<Vec<u8>>) -> Guarded {
        guard_chunks(limits, chunks.into_iter().map(Bytes::from))
    }

    #[test]
    fn a_frame_over_the_limit_is_skipped_whole_when_skipping_is_on() {
        let limits = SocketLimits {
            skip_up_to: Some(4096),
            ..LIMITS
        };
        let mut chunk = frame(true, 2, 2000);
        chunk.extend(frame(true, 1, 10));
        // Split mid-header and mid-payload of the skipped frame.
        let chunks = vec![
            chunk[..2].to_vec(),
            chunk[2..900].to_vec(),
            chunk[900..].to_vec(),
        ];
        let guarded = run_with(limits, chunks);
        assert_eq!(guarded.refusal, None);
        assert_eq!(guarded.skipped, Some((2000, 1024)));
        assert_eq!(
            guarded.handed_on.concat(),
            frame(true, 1, 10),
            "only the next frame is handed on"
        );

        // Over what may be skipped: refused.
        let guarded = run_with(limits, vec![frame(true, 2, 5000)]);
        assert!(matches!(guarded.refusal, Some(ReadError::TooBig(_))));
    }

    #[test]
    fn frames_pass_through_one_at_a_time() {
        let mut chunk = frame(true, 1, 10);
        chunk.extend(frame(true, 2, 300));
        chunk.extend(frame(true, 9, 0));
        let (out, refused) = run(vec![chunk.clone()]);
        assert_eq!(refused, None);
        let lengths: Vec<usize> = out.iter().map(Bytes::len).collect();
        assert_eq!(lengths, vec![6 + 10, 8 + 300, 6]);
        assert_eq!(out.concat(), chunk);
    }

    #[test]
    fn headers_split_across_reads_are_followed() {
        let whole = frame(true, 2, 1000);
        let chunks: Vec<Vec<u8>> = whole.chunks(3).map(<[u8]>::to_vec).collect();
        let (out, refused) = run(chunks);
        assert_eq!(refused, None);
        assert_eq!(out.concat(), whole);
    }

    #[test]
    fn a_header_claiming_too_much_is_refused_before_its_payload() {
        let mut chunk = header(true, 2, 1 << 40);
        chunk.extend(vec![0; 4096]);
        let (out, refused) = run(vec![chunk]);
        assert!(matches!(refused, Some(ReadError::TooBig(_))), "{refused:?}");
        assert!(out.is_empty(), "nothing of the frame is handed on");
    }

    #[test]
    fn a_frame_one_over_the_limit_is_refused_and_one_at_it_passes() {
        let (_, refused) = run(vec![frame(true, 2, LIMITS.max_frame)]);
        assert_eq!(refused, None);
        let (_, refused) = run(vec![frame(true, 2, LIMITS.max_frame + 1)]);
        assert!(matches!(refused, Some(ReadError::TooBig(_))));
    }

    #[test]
    fn a_fragmented_message_is_bounded_as_a_whole() {
        // 4 × 1024 = the message limit exactly: accepted.
        let mut at_limit = frame(false, 2, 1024);
        for _ in 0..2 {
            at_limit.extend(frame(false, 0, 1024));
        }
        at_limit.extend(frame(true, 0, 1024));
        let (_, refused) = run(vec![at_limit]);
        assert_eq!(refused, None);

        // A fifth fragment: refused at its header, after the four before it.
        let mut over = frame(false, 2, 1024);
        for _ in 0..3 {
            over.extend(frame(false, 0, 1024));
        }
        over.extend(frame(true, 0, 1));
        let (out, refused) = run(vec![over]);
        assert!(matches!(refused, Some(ReadError::TooBig(_))), "{refused:?}");
        assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), 4 * (8 + 1024));
    }

    #[test]
    fn control_frames_between_fragments_do_not_count_and_may_not_be_large() {
        let mut chunk = frame(false, 1, 1024);
        chunk.extend(frame(true, 9, 125));
        chunk.extend(frame(true, 0, 1024));
        let (_, refused) = run(vec![chunk]);
        assert_eq!(refused, None);
        let (_, refused) = run(vec![frame(true, 9, 126)]);
        assert!(matches!(refused, Some(ReadError::Protocol(_))));
    }

    #[test]
    fn frames_past_the_burst_are_refused_as_a_flood() {
        // A bucket that does not refill within the test, so the count is exact.
        let limits = SocketLimits {
            frame_rate: FrameRate {
                per_second: 1e-9,
                burst: 3,
            },
            ..LIMITS
        };
        let mut three = frame(true, 10, 0);
        three.extend(frame(true, 1, 10));
        three.extend(frame(true, 2, 10));
        assert_eq!(run_with(limits, vec![three.clone()]).refusal, None);

        // Empty fragments of a message that never ends cost nothing in bytes, but each is a
        // frame.
        let mut endless = frame(false, 1, 1);
        for _ in 0..10 {
            endless.extend(frame(false, 0, 0));
        }
        let guarded = run_with(limits, vec![endless]);
        assert!(
            matches!(guarded.refusal, Some(ReadError::Flood(_))),
            "a fourth frame is a flood"
        );
        assert_eq!(
            guarded.handed_on.iter().map(Bytes::len).sum::<usize>(),
            7 + 2 * 6
        );
    }

    #[test]
    fn long_texts_are_cut_into_fragments_on_character_boundaries() {
        // Three-byte characters, so a cut at exactly `max` would split one.
        let text = "あ".repeat(5000);
        let ends = fragment_ends(&text, FRAGMENT_BYTES);
        assert_eq!(ends.last(), Some(&text.len()));
        let mut start = 0;
        for &end in &ends {
            assert!(end > start && end - start <= FRAGMENT_BYTES);
            assert!(text.is_char_boundary(end));
            start = end;
        }
        assert_eq!(ends.len(), 4, "15 000 bytes in pieces of 4 095");

        // At the limit: one piece (sent whole); one byte over: two.
        assert_eq!(
            fragment_ends(&"a".repeat(FRAGMENT_BYTES), FRAGMENT_BYTES).len(),
            1
        );
        assert_eq!(
            fragment_ends(&"a".repeat(FRAGMENT_BYTES + 1), FRAGMENT_BYTES),
            [FRAGMENT_BYTES, FRAGMENT_BYTES + 1]
        );
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(100);
        let cut = cut_to_bytes(&reason, 123);
        assert_eq!(cut.len(), 122);
    }
}
