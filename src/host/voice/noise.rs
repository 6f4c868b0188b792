//! A check that what a voice sends is sound, not garbage: random bytes (or audio in another
//! format, e.g. MP3 where `pcm` was asked for) read as s16 PCM are loud white noise, which
//! loudness normalisation would bring to the station level and air. White noise is the one
//! sound whose samples are unrelated to their neighbours: speech, even a hissed "s", and any
//! tone have clear correlation at a few samples' distance (a voiced sound near +1 at the
//! next sample; a fricative's band of high frequencies swings positive and negative over
//! the next few). So the first stretches of a call's audio ([`WINDOW_SECS`] each) are held
//! back and measured, and a call whose audio is noise ends with [`VoiceError::BadAnswer`]
//! before any of it airs — an error the engine retries, then falls back on, as for any
//! other failed call.
//!
//! [`NoiseGuard`] wraps a [`Voice`]; wrapped inside [`super::Metered`], its refusals are
//! counted as the provider's `protocol` errors (and its first-audio latency includes the
//! quarter second held back). [`guard`] checks any other audio a provider answers with (the
//! Realtime session's answer to a caller). Reads no config.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{Voice, VoiceAudio, VoiceError};

/// Length of the stretch measured: long enough to hold several pitch periods and
/// phonemes, short enough that holding it back costs little latency.
pub const WINDOW_SECS: f64 = 0.25;
/// A stretch quieter than this (RMS, dBFS) says nothing either way (the breath before
/// speech): it passes, and the next one is measured.
const QUIET_DBFS: f64 = -45.0;
/// Correlations at lags 1..=[`LAGS`] whose squares sum to less than this are noise. White
/// noise's sum is about `LAGS / samples` (0.0007 over a quarter second at 24 kHz); a vowel's
/// is near 1, a hissed "s" band-limited to 4–10 kHz about 0.4.
const MIN_CORRELATION: f64 = 0.01;
/// How many neighbours each sample is compared with.
const LAGS: usize = 4;
/// Stretches measured before a call passes unchecked (quiet ones air as they are measured,
/// so this bounds the work, not the delay).
const MAX_WINDOWS: usize = 8;

/// What a measured stretch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Too quiet to tell.
    Quiet,
    Sound,
    Noise,
}

/// Measures `samples`: quiet, sound, or noise (see the module doc).
pub fn judge(samples: &[i16]) -> Verdict {
    if samples.len() < 2 {
        return Verdict::Quiet;
    }
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    let quiet = (32_768.0 * 10f64.powf(QUIET_DBFS / 20.0)).powi(2) * samples.len() as f64;
    if energy < quiet {
        return Verdict::Quiet;
    }
    let correlation: f64 = (1..=LAGS.min(samples.len() - 1))
        .map(|lag| {
            let products: f64 = samples[lag..]
                .iter()
                .zip(samples)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (products / energy).powi(2)
        })
        .sum();
    if correlation < MIN_CORRELATION {
        Verdict::Noise
    } else {
        Verdict::Sound
    }
}

/// A voice whose calls are refused when their audio is noise.
pub struct NoiseGuard(pub Arc<dyn Voice>);

impl NoiseGuard {
    /// `voice`, guarded.
    pub fn wrap(voice: Arc<dyn Voice>) -> Arc<dyn Voice> {
        Arc::new(Self(voice))
    }
}

#[async_trait]
impl Voice for NoiseGuard {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError> {
        Ok(guard(self.0.synthesize(text).await?))
    }
}

/// `audio` whose stream ends with [`VoiceError::BadAnswer`], before any of it passes, if it
/// is noise.
pub fn guard(audio: VoiceAudio) -> VoiceAudio {
    let window = ((f64::from(audio.rate) * WINDOW_SECS) as usize).max(2);
    VoiceAudio {
        rate: audio.rate,
        chunks: guarded(audio.chunks, window),
    }
}

/// Where a guarded stream is.
struct Guarded {
    inner: BoxStream<'static, Result<Vec<i16>, VoiceError>>,
    window: usize,
    /// Samples held back until their stretch is judged.
    held: Vec<i16>,
    /// Stretches judged so far.
    judged: usize,
    /// Judged sound (or judged enough): the rest passes as it comes.
    passed: bool,
    /// Nothing more after what is handed out now.
    done: bool,
}

impl Guarded {
    /// Ends the call: its audio is noise.
    fn refuse(&mut self) -> VoiceError {
        self.done = true;
        self.held.clear();
        VoiceError::BadAnswer("the audio is noise, not speech (is it PCM?)".to_owned())
    }

    /// Takes `chunk` in; returns what may air now, or the refusal.
    fn admit(&mut self, chunk: Vec<i16>) -> Result<Option<Vec<i16>>, VoiceError> {
        if self.passed {
            return Ok(Some(chunk));
        }
        self.held.extend(chunk);
        let mut measured = 0;
        while !self.passed && self.held.len() - measured >= self.window {
            let verdict = judge(&self.held[measured..measured + self.window]);
            measured += self.window;
            self.judged += 1;
            match verdict {
                Verdict::Noise => return Err(self.refuse()),
                Verdict::Sound => self.passed = true,
                Verdict::Quiet => self.passed = self.judged >= MAX_WINDOWS,
            }
        }
        if self.passed {
            return Ok(Some(std::mem::take(&mut self.held)));
        }
        // Quiet stretches air at once; only the stretch still being gathered waits.
        let released: Vec<i16> = self.held.drain(..measured).collect();
        Ok((!released.is_empty()).then_some(released))
    }

    async fn next_item(&mut self) -> Option<Result<Vec<i16>, VoiceError>> {
        while !self.done {
            match self.inner.next().await {
                Some(Ok(chunk)) => match self.admit(chunk) {
                    Ok(Some(samples)) if !samples.is_empty() => return Some(Ok(samples)),
                    Ok(_) => {}
                    Err(e) => return Some(Err(e)),
                },
                Some(Err(e)) => {
                    // What was held is not whole either; the error is what matters.
                    self.done = true;
                    self.held.clear();
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    // A short call's audio, too short to judge whole: judge what there is.
                    let rest = std::mem::take(&mut self.held);
                    if !self.passed
                        && rest.len() >= self.window / 4
                        && judge(&rest) == Verdict::Noise
                    {
                        return Some(Err(self.refuse()));
                    }
                    return (!rest.is_empty()).then_some(Ok(rest));
                }
            }
        }
        None
    }
}

fn guarded(
    inner: BoxStream<'static, Result<Vec<i16>, VoiceError>>,
    window: usize,
) -> BoxStream<'static, Result<Vec<i16>, VoiceError>> {
    let state = Guarded {
        inner,
        window,
        held: Vec::new(),
        judged: 0,
        passed: false,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next_item().await?;
        Some((item, state))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, secs: f64, amplitude: f64) -> Vec<i16> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                ((t * hz * std::f64::consts::TAU).sin() * amplitude) as i16
            })
            .collect()
    }

    fn noise(samples: usize) -> Vec<i16> {
        (0..samples).map(|_| rand::random::<i16>()).collect()
    }

    /// A voice that answers `audio` in chunks of `chunk` samples.
    struct Canned {
        audio: Vec<i16>,
        chunk: usize,
    }

    #[async_trait]
    impl Voice for Canned {
        fn name(&self) -> &'static str {
            "canned"
        }

        async fn synthesize(&self, _text: &str) -> Result<VoiceAudio, VoiceError> {
            let chunks: Vec<Result<Vec<i16>, VoiceError>> = self
                .audio
                .chunks(self.chunk)
                .map(|c| Ok(c.to_vec()))
                .collect();
            Ok(VoiceAudio {
                rate: 24_000,
                chunks: futures::stream::iter(chunks).boxed(),
            })
        }
    }

    async fn through_guard(audio: Vec<i16>, chunk: usize) -> Vec<Result<Vec<i16>, VoiceError>> {
        let voice = NoiseGuard::wrap(Arc::new(Canned { audio, chunk }));
        match voice.synthesize("x").await {
            Ok(audio) => audio.chunks.collect().await,
            Err(e) => vec![Err(e)],
        }
    }

    #[test]
    fn tones_and_silence_are_not_noise_and_random_samples_are() {
        assert_eq!(judge(&tone(220.0, 24_000, 0.25, 6_000.0)), Verdict::Sound);
        // A high voice's sibilant-range tone is still far from white noise.
        assert_eq!(judge(&tone(3_000.0, 24_000, 0.25, 6_000.0)), Verdict::Sound);
        assert_eq!(judge(&[0; 6_000]), Verdict::Quiet);
        assert_eq!(judge(&noise(6_000)), Verdict::Noise);
        // A hissed "s": noise band-limited to high frequencies (here a 2nd-order
        // difference of white noise, mostly above 6 kHz) is not white.
        let white = noise(6_002);
        let hiss: Vec<i16> = white
            .windows(3)
            .map(|w| ((i32::from(w[0]) - 2 * i32::from(w[1]) + i32::from(w[2])) / 4) as i16)
            .collect();
        assert_eq!(judge(&hiss), Verdict::Sound);
        // Quiet noise says nothing.
        let hiss: Vec<i16> = noise(6_000).iter().map(|s| s / 2_000).collect();
        assert_eq!(judge(&hiss), Verdict::Quiet);
    }

    #[tokio::test]
    async fn speech_passes_whole_in_order_however_it_is_cut() {
        let mut audio = vec![0i16; 9_000];
        audio.extend(tone(220.0, 24_000, 1.0, 6_000.0));
        for chunk in [1, 7, 4_800, 100_000] {
            let items = through_guard(audio.clone(), chunk).await;
            let got: Vec<i16> = items
                .into_iter()
                .flat_map(|i| match i {
                    Ok(samples) => samples,
                    Err(e) => panic!("chunks of {chunk}: {e}"),
                })
                .collect();
            assert_eq!(got, audio, "chunks of {chunk}");
        }
    }

    #[tokio::test]
    async fn noise_is_refused_before_any_of_it_airs() {
        let items = through_guard(noise(24_000), 960).await;
        assert_eq!(items.len(), 1, "{:?}", items.len());
        assert!(
            matches!(&items[0], Err(VoiceError::BadAnswer(m)) if m.contains("noise")),
            "{:?}",
            items[0].as_ref().err()
        );
        // Shorter than one window: judged at the end.
        let items = through_guard(noise(2_000), 960).await;
        assert!(matches!(items.last(), Some(Err(VoiceError::BadAnswer(_)))));
    }
}
