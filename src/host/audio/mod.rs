//! The one audio format inside the host — 48 kHz mono signed 16-bit, in 20 ms frames —
//! and the tools that bring everything to it: resampling, loudness normalisation, fades,
//! decoding of the operator's music files.

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
