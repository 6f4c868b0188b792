//! A recorded call-in on its way to air: the hand-off as it crosses the bus (JSON, audio in
//! base64), the host's check of it (`calls::Call::check`: rate, whole samples, length), and
//! the resampler that takes the clip (or a music file, at whatever rate it declares) to
//! 48 kHz, fed in arbitrary pieces. The resampler promises `round(n × 48000 / rate)` samples
//! out for `n` in, however the input is cut; that is checked exactly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use radio24::bus::wire::{CallContent, CallHandoff};
use radio24::domain::ChannelName;
use radio24::host::audio::RATE;
use radio24::host::audio::resample::{MAX_RATE, MIN_RATE, Resampler};
use radio24::host::calls::{Call, SAMPLE_RATES};
use radio24_fuzz::cut;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    wire: &'a [u8],
    /// Small values pick one of the call-in rates; others are taken as a rate (music files
    /// declare any).
    rate: u32,
    cuts: Vec<u16>,
    pcm: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    // The bus: whatever the API (or anyone who reaches the bus) sends.
    if let Ok(handoff) = serde_json::from_slice::<CallHandoff>(input.wire) {
        let _ = Call::check(handoff);
    }

    let rate = match usize::try_from(input.rate) {
        Ok(pick) if pick < SAMPLE_RATES.len() * 64 => SAMPLE_RATES[pick % SAMPLE_RATES.len()],
        _ => input.rate,
    };
    let Ok(channel) = ChannelName::parse("radio24") else {
        panic!("the default channel name is refused");
    };
    let handoff = CallHandoff {
        call_id: uuid::Uuid::nil(),
        channel,
        content: CallContent::Audio {
            sample_rate: rate,
            pcm: input.pcm.to_vec(),
        },
    };
    let accepted = Call::check(handoff).is_ok();
    if accepted {
        assert!(
            SAMPLE_RATES.contains(&rate),
            "a call-in at {rate} Hz was accepted"
        );
    }

    let Ok(mut resampler) = Resampler::new(rate) else {
        assert!(
            !(MIN_RATE..=MAX_RATE).contains(&rate),
            "no resampler for {rate} Hz"
        );
        return;
    };
    let samples: Vec<i16> = input
        .pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut out = 0usize;
    for piece in cut(&samples, &input.cuts) {
        out += resampler.process(piece).len();
    }
    out += resampler.flush().len();
    let expected = (samples.len() as f64 * f64::from(RATE) / f64::from(rate)).round() as usize;
    assert_eq!(out, expected, "{} samples at {rate} Hz", samples.len());
});
