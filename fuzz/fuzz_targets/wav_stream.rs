//! The WAV reader the espeak-ng voice reads its output with (`espeak::WavStream`), fed
//! arbitrary bytes in arbitrary pieces, as a pipe delivers them. Besides never panicking,
//! how the bytes are cut must not change the answer: the samples (or the refusal) are the
//! same as for the whole input in one piece, as long as the header is within the 64 KiB the
//! reader waits for.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::host::voice::espeak::{WavStream, parse_wav_header};
use radio24_fuzz::cut;

/// How far into the input the reader looks for the header (`MAX_HEADER_BYTES` in espeak.rs).
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    cuts: Vec<u16>,
    wav: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let mut whole = WavStream::default();
    let at_once = whole.push(input.wav);

    let mut pieces = WavStream::default();
    let mut in_pieces: Result<Vec<i16>, String> = Ok(Vec::new());
    for piece in cut(input.wav, &input.cuts) {
        let Ok(all) = in_pieces.as_mut() else {
            break;
        };
        match pieces.push(piece) {
            Ok(samples) => all.extend(samples),
            Err(e) => in_pieces = Err(e),
        }
    }

    let header_in_reach = match parse_wav_header(input.wav) {
        Ok(Some((_, data_start))) => data_start <= MAX_HEADER_BYTES,
        Ok(None) => input.wav.len() <= MAX_HEADER_BYTES,
        Err(_) => true,
    };
    if header_in_reach {
        assert_eq!(
            at_once.is_ok(),
            in_pieces.is_ok(),
            "cutting the bytes changed the verdict: {at_once:?} vs {in_pieces:?}"
        );
        if let (Ok(a), Ok(b)) = (&at_once, &in_pieces) {
            assert_eq!(a, b, "cutting the bytes changed the samples");
            assert_eq!(whole.format(), pieces.format());
        }
    }
});
