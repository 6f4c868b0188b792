//! The one audio format inside the host — 48 kHz mono signed 16-bit, in 20 ms frames —
//! and the tools that bring everything to it: resampling, loudness normalisation, fades,
//! decoding of the operator's music files.
//!
//! - [`resample`]: any common input rate to [`RATE`], streaming.
//! - [`loudness`]: EBU R128 measurement and the gain that brings speech to the station level.
//! - [`dsp`]: fades, mixing, silence and the station-ID chime.
//! - [`music`]: the operator's music folder, scanned and decoded to [`RATE`] mono.

pub mod dsp;
pub mod loudness;
pub mod music;
pub mod resample;

/// Sample rate of everything the playout handles.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms frame at [`RATE`].
pub const FRAME: usize = 960;
/// Duration of one frame.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// Why audio could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("unsupported sample rate {0} Hz")]
    Rate(u32),
    #[error("cannot decode {path}: {message}")]
    Decode { path: String, message: String },
    #[error("resampler: {0}")]
    Resample(String),
}

/// Seconds of audio in `samples` at [`RATE`].
pub fn seconds(samples: usize) -> f64 {
    samples as f64 / f64::from(RATE)
}

/// Samples in `secs` seconds at [`RATE`], rounded to the nearest sample; 0 for negative or NaN.
pub fn samples(secs: f64) -> usize {
    if secs.is_nan() || secs <= 0.0 {
        return 0;
    }
    // Float-to-int `as` saturates, so an absurd duration cannot wrap around.
    (secs * f64::from(RATE)).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_seconds_agree_with_the_frame_constants() {
        assert_eq!(samples(FRAME_DURATION.as_secs_f64()), FRAME);
        assert_eq!(seconds(samples(1.5)), 1.5);
        assert_eq!(samples(-1.0), 0);
        assert_eq!(samples(f64::NAN), 0);
    }
}
