//! What the voice backends (and the call-in clients in [`crate::host::calls`]) share:
//! decoding little-endian s16 bytes that arrive in pieces cut anywhere (an odd byte may end
//! one network read and its pair start the next), the per-call cap on audio, and reading and
//! bounding what a provider says before it reaches our errors. Reads no config.

use secrecy::{ExposeSecret, SecretString};

/// Most audio one call may produce: 10 minutes. A sentence is seconds long; anything past
/// this is a runaway provider, and the samples would sit in memory.
pub(crate) const MAX_CALL_SECS: usize = 600;

/// Longest provider message (in characters) kept in an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Turns s16le bytes into samples across arbitrary chunk boundaries.
#[derive(Debug, Default)]
pub(crate) struct S16leDecoder {
    /// The first byte of a sample whose second byte has not arrived yet.
    carry: Option<u8>,
}

impl S16leDecoder {
    /// Samples completed by `bytes`; an odd trailing byte waits for the next call.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(low) = self.carry.take() {
            match rest.split_first() {
                Some((high, tail)) => {
                    out.push(i16::from_le_bytes([low, *high]));
                    rest = tail;
                }
                None => {
                    self.carry = Some(low);
                    return out;
                }
            }
        }
        let mut pairs = rest.chunks_exact(2);
        out.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.carry = pairs.remainder().first().copied();
        out
    }

    /// True when half a sample is still waiting (the stream ended on an odd byte).
    pub(crate) fn has_partial(&self) -> bool {
        self.carry.is_some()
    }
}

/// Counts samples against [`MAX_CALL_SECS`] at one sample rate.
#[derive(Debug)]
pub(crate) struct SampleBudget {
    left: usize,
}

impl SampleBudget {
    pub(crate) fn new(rate: u32) -> Self {
        Self {
            left: rate as usize * MAX_CALL_SECS,
        }
    }

    /// Takes `samples` from the budget. Returns false when they did not all fit; the
    /// vector is then cut to what did.
    pub(crate) fn take(&mut self, samples: &mut Vec<i16>) -> bool {
        if samples.len() <= self.left {
            self.left -= samples.len();
            true
        } else {
            samples.truncate(self.left);
            self.left = 0;
            false
        }
    }
}

/// Bounds how long a call's audio may take once it flows: each piece must come within the
/// idle timeout of the last, and the stream may fall no more than that timeout behind real
/// time (the audio so far, played from the first sample). So a provider that trickles a few
/// bytes now and then cannot hold a call open for ever with each gap under the idle
/// timeout: the whole call lasts at most its audio's length plus the timeout.
#[derive(Debug)]
pub(crate) struct Pace {
    started: tokio::time::Instant,
    rate: u32,
    received: usize,
    idle: std::time::Duration,
}

impl Pace {
    /// Audio at `rate` that started flowing now, with `idle` as the slack.
    pub(crate) fn new(rate: u32, idle: std::time::Duration) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            rate: rate.max(1),
            received: 0,
            idle,
        }
    }

    /// Counts `samples` more received.
    pub(crate) fn received(&mut self, samples: usize) {
        self.received += samples;
    }

    /// When the next piece must have come: the idle timeout from now, or from when the
    /// audio so far would have finished playing, whichever is sooner.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        let played =
            std::time::Duration::from_secs_f64(self.received as f64 / f64::from(self.rate));
        let behind = self.started + played + self.idle;
        behind.min(tokio::time::Instant::now() + self.idle)
    }
}

/// The text a backend should voice: trimmed and cut to `max` characters (with a warning
/// naming `who`); `None` for blank text, which voices as silence without a request.
pub(crate) fn input_text(text: &str, max: usize, who: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.chars().count() > max {
        tracing::warn!(max, voice = who, "text too long for the voice; cut");
    }
    Some(text.chars().take(max).collect())
}

/// No audio at all, at `rate`.
pub(crate) fn silence(rate: u32) -> super::VoiceAudio {
    use futures::StreamExt;
    super::VoiceAudio {
        rate,
        chunks: futures::stream::empty().boxed(),
    }
}

pub(crate) fn over_budget() -> super::VoiceError {
    super::VoiceError::BadAnswer(format!(
        "more than {MAX_CALL_SECS} s of audio for one call; the rest was dropped"
    ))
}

/// `text` cut to `max` characters (not bytes, so UTF-8 is never split), with `…` when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A provider's message made safe for our errors and logs: the key (whole or the masked
/// `sk-…` form some providers echo back) removed, whitespace collapsed, length bounded.
pub(crate) fn provider_message(raw: &str, key: Option<&SecretString>) -> String {
    let mut text = raw.to_owned();
    if let Some(key) = key {
        let key = key.expose_secret();
        if !key.is_empty() {
            text = text.replace(key, "[redacted]");
        }
    }
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| {
            if w.starts_with("sk-") {
                "[redacted]"
            } else {
                w
            }
        })
        .collect();
    truncate_chars(&words.join(" "), MAX_MESSAGE_CHARS)
}

/// The `error.message` of an OpenAI-style error body, else the body as text; made safe
/// with [`provider_message`]. Empty when the body says nothing.
pub(crate) fn openai_error_message(body: &[u8], key: Option<&SecretString>) -> String {
    let raw = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    provider_message(&raw, key)
}

/// A whole answer body read up to a cap.
#[derive(Debug, Default)]
pub(crate) struct Capped {
    /// At most the cap.
    pub(crate) bytes: Vec<u8>,
    /// The body went on past the cap; reading stopped there.
    pub(crate) cut: bool,
}

/// Reads `response`'s body up to `limit` bytes, so a runaway answer never sits in memory.
/// The client's own timeout bounds how long this takes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Capped> {
    let mut out = Capped::default();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - out.bytes.len();
        if chunk.len() > room {
            out.bytes.extend_from_slice(&chunk[..room]);
            out.cut = true;
            break;
        }
        out.bytes.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error and its causes on one line: reqwest and tungstenite put the useful part
/// ("connection refused") in the source chain, not in their own message.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate_chars(&text, MAX_MESSAGE_CHARS)
}

/// A provider client's error type, as a failed HTTP exchange becomes one.
pub(crate) trait TransportFailure: Sized {
    fn timeout() -> Self;
    fn unavailable(cause: String) -> Self;
    fn bad_answer(cause: String) -> Self;
}

/// A send failure: a timeout is ours to report, anything else means no provider answered.
pub(crate) fn send_error<E: TransportFailure>(e: reqwest::Error) -> E {
    if e.is_timeout() {
        E::timeout()
    } else {
        E::unavailable(error_chain(&e))
    }
}

/// The body broke off after the answer's status arrived: `what` (e.g. the audio stream)
/// is not whole.
pub(crate) fn body_error<E: TransportFailure>(e: reqwest::Error, what: &str) -> E {
    if e.is_timeout() {
        E::timeout()
    } else {
        E::bad_answer(format!("{what} broke off: {}", error_chain(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_across_odd_chunks_decode_whole() {
        let samples: [i16; 4] = [1, -2, 300, i16::MIN];
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut d = S16leDecoder::default();
        let mut out = d.push(&bytes[..3]);
        assert!(d.has_partial());
        out.extend(d.push(&[]));
        out.extend(d.push(&bytes[3..4]));
        out.extend(d.push(&bytes[4..]));
        assert!(!d.has_partial());
        assert_eq!(out, samples);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_falls_behind_real_time_and_runs_out_of_time() {
        let idle = std::time::Duration::from_secs(10);
        let mut pace = Pace::new(1_000, idle);
        let start = tokio::time::Instant::now();
        assert_eq!(pace.deadline(), start + idle);
        // Two seconds of audio at once: it may take up to 2 s + idle to the next piece.
        pace.received(2_000);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert_eq!(pace.deadline(), start + std::time::Duration::from_secs(11));
        // A sample every 9 s keeps each gap under the idle timeout, yet the deadline stays
        // near 12 s from the start.
        for _ in 0..3 {
            tokio::time::advance(std::time::Duration::from_secs(9)).await;
            pace.received(1);
        }
        assert!(pace.deadline() < tokio::time::Instant::now());
    }

    #[test]
    fn budget_cuts_at_the_cap() {
        let mut b = SampleBudget::new(1);
        let mut first = vec![0; MAX_CALL_SECS - 1];
        assert!(b.take(&mut first));
        let mut second = vec![0; 5];
        assert!(!b.take(&mut second));
        assert_eq!(second.len(), 1);
    }

    #[test]
    fn provider_messages_lose_keys_and_length() {
        let key = SecretString::from("sk-secret-123");
        let msg = provider_message(
            "Incorrect API key provided: sk-secr*****123. Or sk-secret-123!",
            Some(&key),
        );
        assert!(!msg.contains("secret"), "{msg}");
        assert!(msg.starts_with("Incorrect API key provided:"), "{msg}");
        let body = br#"{"error":{"message":"Invalid voice","type":"invalid_request_error"}}"#;
        assert_eq!(openai_error_message(body, None), "Invalid voice");
        assert_eq!(openai_error_message(b"Bad  gateway\n", None), "Bad gateway");
        let long = provider_message(&"é".repeat(1000), None);
        assert_eq!(long.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
