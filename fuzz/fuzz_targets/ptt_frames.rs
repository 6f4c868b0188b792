//! `/ws/ptt` from a hostile caller: raw bytes of the WebSocket connection, cut anywhere, go
//! through the frame guard (`radio24::api::ws`) and then the WebSocket decoder actix-ws runs
//! behind it; every text frame that comes out is read as a call-in frame
//! (`ptt::parse_client_frame`), and a typed call-in's text is checked as the queue checks it.
//! Also feeds a string straight to the frame reader, since masked frames make it hard for the
//! fuzzer to reach JSON through the first path.
//!
//! Checked beyond "no panic": the guard only ever hands on a prefix of what it read (when it
//! skipped nothing), never more than it read; after the guard, the decoder never sees a
//! frame over the size limit; an error frame never quotes more than 200 characters.

#![no_main]

use actix_http::ws::{Codec, Frame, ProtocolError};
use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use radio24::api::routes::ptt::{ClientFrame, Refusal, parse_client_frame};
use radio24::api::ws::{FrameRate, SocketLimits, guard_chunks};
use radio24::domain::SpokenText;
use radio24_fuzz::cut;
use tokio_util::codec::Decoder;

/// The longest text the tests' callers may send (the default `queue.max_text_chars` is 500).
const MAX_TEXT_CHARS: usize = 500;
/// The most of the caller's input an error message may quote, plus its fixed wording.
const MAX_REFUSAL_CHARS: usize = 200 + 64;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    /// Frame limit: 125 (a control frame's most) up to 65 661 bytes.
    max_frame: u16,
    /// Message limit, in frames.
    frames_per_message: u8,
    /// Whether frames over the limit are skipped (as `/ws/ptt` does, up to 16 times it).
    skip: bool,
    cuts: Vec<u16>,
    /// Its length is read from the input's last bytes (zero ends a seed with no text).
    text: &'a str,
    /// Last, so a seed is five bytes of settings, then the bytes of the connection.
    wire: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let max_frame = 125 + usize::from(input.max_frame);
    let limits = SocketLimits {
        max_frame,
        max_message: max_frame * (1 + usize::from(input.frames_per_message % 16)),
        skip_up_to: input.skip.then_some(max_frame * 16),
        send_timeout: std::time::Duration::from_secs(1),
        // A small bucket sometimes, so the flood refusal is fuzzed with the rest.
        frame_rate: FrameRate {
            per_second: 50.0,
            burst: 1 + u32::from(input.max_frame % 64) * 8,
        },
    };
    let pieces = cut(input.wire, &input.cuts);
    let guarded = guard_chunks(limits, pieces.iter().map(|p| Bytes::copy_from_slice(p)));
    let handed_on: Vec<u8> = guarded.handed_on.concat();
    assert!(
        handed_on.len() <= input.wire.len(),
        "the guard made up bytes"
    );
    if guarded.skipped.is_none() {
        assert!(
            input.wire.starts_with(&handed_on),
            "the guard handed on bytes out of order"
        );
    }

    // What actix-ws does with it: decode frames of at most `max_frame` bytes.
    let mut codec = Codec::new().max_size(max_frame);
    let mut buffer = BytesMut::from(&handed_on[..]);
    loop {
        match codec.decode(&mut buffer) {
            Ok(Some(Frame::Text(payload))) => {
                if let Ok(text) = std::str::from_utf8(&payload) {
                    read_frame(text);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(ProtocolError::Overflow) => panic!("a frame over the limit got past the guard"),
            // Anything else breaks RFC 6455 (an unmasked frame, a bad opcode): the socket
            // closes, which is the decoder's call, not the guard's.
            Err(_) => break,
        }
    }

    read_frame(input.text);
});

/// Reads one text frame as `/ws/ptt` does, and checks a typed call-in's text.
fn read_frame(text: &str) {
    match parse_client_frame(text) {
        Ok(ClientFrame::Text { text }) => {
            let _ = SpokenText::parse(&text, MAX_TEXT_CHARS);
        }
        Ok(_) => {}
        Err(Refusal(_, message)) => {
            assert!(
                message.chars().count() <= MAX_REFUSAL_CHARS,
                "an error frame quotes too much of the input: {} characters",
                message.chars().count()
            );
        }
    }
}
