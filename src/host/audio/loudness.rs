//! Loudness: EBU R128 measurement, the gain that brings a segment to the station's level,
//! and a per-voice memory of that gain for segments that stream (which cannot be measured
//! before they air).
//!
//! The gain is held inside −20…+24 dB, so a broken or near-silent segment is never blasted,
//! and capped so the sample peak stays at or below −1 dBFS, so normalising never clips.
//!
//! Config keys the engine reads for this: `audio.target_lufs` (the station level, e.g. −16).

use std::collections::HashMap;

use ebur128::{EbuR128, Mode};

use super::RATE;

/// Most a segment is turned down, in dB.
pub const MIN_GAIN_DB: f64 = -20.0;
/// Most a segment is turned up, in dB.
pub const MAX_GAIN_DB: f64 = 24.0;
/// Highest sample peak normalising may produce, in dBFS.
pub const PEAK_CEILING_DBFS: f64 = -1.0;

/// Segments learnt as a plain mean before the tracker switches to a moving average.
const MEAN_SEGMENTS: u32 = 4;

/// Integrated loudness (EBU R128, LUFS) of mono `samples` at `rate` Hz. `None` when there
/// is nothing to measure: silence, or less than one 400 ms gating block.
///
/// A mono signal counts as one front channel, so a full-scale 1 kHz sine reads about −3 LUFS.
pub fn measure_lufs(samples: &[i16], rate: u32) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut meter = EbuR128::new(1, rate, Mode::I).ok()?;
    meter.add_frames_i16(samples).ok()?;
    let lufs = meter.loudness_global().ok()?;
    lufs.is_finite().then_some(lufs)
}

/// The linear gain that brings `samples` (mono, at [`RATE`]) to `target_lufs`, held inside
/// [`MIN_GAIN_DB`]…[`MAX_GAIN_DB`] and lowered if needed so the sample peak stays at or
/// below [`PEAK_CEILING_DBFS`]. 1.0 for silence or audio too short to measure.
pub fn normalising_gain(samples: &[i16], target_lufs: f64) -> f64 {
    if !target_lufs.is_finite() {
        return 1.0;
    }
    match measure_lufs(samples, RATE) {
        Some(lufs) => gain_for(samples, lufs, target_lufs),
        None => 1.0,
    }
}

/// [`normalising_gain`] when `samples` (mono, at [`RATE`]) can be measured; `None` for
/// silence, audio too short to measure, or a target that is not a number. Measuring
/// takes milliseconds per second of audio: callers on an async runtime run it on a
/// blocking thread.
pub fn measured_gain(samples: &[i16], target_lufs: f64) -> Option<f64> {
    if !target_lufs.is_finite() {
        return None;
    }
    let lufs = measure_lufs(samples, RATE)?;
    Some(gain_for(samples, lufs, target_lufs))
}

/// [`normalising_gain`] for `samples` already measured at `lufs`.
fn gain_for(samples: &[i16], lufs: f64, target_lufs: f64) -> f64 {
    let gain = db_to_gain((target_lufs - lufs).clamp(MIN_GAIN_DB, MAX_GAIN_DB));
    gain.min(peak_limit(samples))
}

/// Multiplies `samples` by `gain` in place, saturating at full scale. A gain that is not a
/// finite, non-negative number leaves the samples alone.
pub fn apply_gain(samples: &mut [i16], gain: f64) {
    if !gain.is_finite() || gain < 0.0 || gain == 1.0 {
        return;
    }
    for s in samples {
        // `as` saturates, which is the clipping we want.
        *s = (f64::from(*s) * gain).round() as i16;
    }
}

/// Linear gain for `db` decibels.
pub fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// Decibels for a linear `gain` (−∞ for 0).
pub fn gain_to_db(gain: f64) -> f64 {
    20.0 * gain.log10()
}

/// The largest gain that keeps the sample peak of `samples` at or below the ceiling;
/// infinite for silence.
fn peak_limit(samples: &[i16]) -> f64 {
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    if peak == 0 {
        return f64::INFINITY;
    }
    // Whole samples, rounded down, so rounding in `apply_gain` cannot cross the ceiling.
    let ceiling = (32768.0 * db_to_gain(PEAK_CEILING_DBFS)).floor();
    ceiling / f64::from(peak)
}

/// Remembers, per voice, the gain that normalised its previous complete segments, so a
/// segment that streams (and so cannot be measured first) starts at a good level.
///
/// TTS voices are consistent from one segment to the next, but not perfectly: the first
/// few segments are averaged, then the memory becomes a moving average so a provider
/// that changes its levels is followed within a few segments. Gains are averaged in dB.
/// Not thread-safe by itself; the engine keeps one behind its own lock.
#[derive(Debug, Clone)]
pub struct LoudnessTracker {
    target_lufs: f64,
    voices: HashMap<String, Learnt>,
}

#[derive(Debug, Clone, Copy)]
struct Learnt {
    gain_db: f64,
    segments: u32,
}

impl LoudnessTracker {
    /// A tracker that normalises towards `target_lufs`, knowing no voice yet.
    pub fn new(target_lufs: f64) -> Self {
        Self {
            target_lufs,
            voices: HashMap::new(),
        }
    }

    /// The level segments are brought to, in LUFS.
    pub fn target_lufs(&self) -> f64 {
        self.target_lufs
    }

    /// Records that `gain` suited a complete segment of `voice` (as [`measured_gain`] found
    /// it, measured outside the tracker's lock). Non-positive or non-finite gains are ignored.
    pub fn record(&mut self, voice: &str, gain: f64) {
        if !gain.is_finite() || gain <= 0.0 {
            return;
        }
        let db = gain_to_db(gain).clamp(MIN_GAIN_DB, MAX_GAIN_DB);
        match self.voices.get_mut(voice) {
            Some(learnt) => {
                learnt.segments = learnt.segments.saturating_add(1);
                let weight = 1.0 / f64::from(learnt.segments.min(MEAN_SEGMENTS));
                learnt.gain_db += weight * (db - learnt.gain_db);
            }
            None => {
                self.voices.insert(
                    voice.to_owned(),
                    Learnt {
                        gain_db: db,
                        segments: 1,
                    },
                );
            }
        }
    }

    /// The gain to start a streaming segment of `voice` with: what its previous segments
    /// needed, or 1.0 for a voice not heard yet.
    pub fn guess(&self, voice: &str) -> f64 {
        self.voices
            .get(voice)
            .map_or(1.0, |learnt| db_to_gain(learnt.gain_db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const TARGET: f64 = -16.0;

    fn sine(freq: f64, secs: f64, amplitude: f64) -> Vec<i16> {
        let n = (secs * f64::from(RATE)) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * PI * freq * i as f64 / f64::from(RATE)).sin()).round() as i16
            })
            .collect()
    }

    /// Deterministic white-ish noise with peaks at `amplitude`, a stand-in for speech energy
    /// spread over the band.
    fn noise(secs: f64, amplitude: f64) -> Vec<i16> {
        let mut state: u32 = 0x1234_5678;
        (0..(secs * f64::from(RATE)) as usize)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let unit = f64::from(state >> 8) / f64::from(1u32 << 24) * 2.0 - 1.0;
                (unit * amplitude).round() as i16
            })
            .collect()
    }

    fn peak(samples: &[i16]) -> u16 {
        samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
    }

    fn ceiling() -> u16 {
        (32768.0 * db_to_gain(PEAK_CEILING_DBFS)).floor() as u16
    }

    #[test]
    fn a_full_scale_sine_measures_about_minus_3_lufs() {
        let lufs = measure_lufs(&sine(1000.0, 3.0, 32767.0), RATE).unwrap();
        assert!((lufs - -3.01).abs() < 0.1, "{lufs}");
    }

    #[test]
    fn a_sine_20_db_down_measures_20_lu_lower() {
        let lufs = measure_lufs(&sine(1000.0, 3.0, 3276.7), RATE).unwrap();
        assert!((lufs - -23.01).abs() < 0.1, "{lufs}");
    }

    #[test]
    fn measures_at_other_rates() {
        let n = 44_100 * 3;
        let samples: Vec<i16> = (0..n)
            .map(|i| (32767.0 * (2.0 * PI * 1000.0 * f64::from(i) / 44_100.0).sin()) as i16)
            .collect();
        let lufs = measure_lufs(&samples, 44_100).unwrap();
        assert!((lufs - -3.01).abs() < 0.1, "{lufs}");
    }

    #[test]
    fn silence_and_scraps_cannot_be_measured() {
        assert_eq!(measure_lufs(&[], RATE), None);
        assert_eq!(measure_lufs(&vec![0; 48_000], RATE), None);
        // 100 ms: shorter than one 400 ms gating block.
        assert_eq!(measure_lufs(&sine(1000.0, 0.1, 10_000.0), RATE), None);
    }

    #[test]
    fn normalising_quiet_and_loud_signals_lands_on_target() {
        let signals = [
            ("quiet sine", sine(440.0, 4.0, 1000.0)),
            ("loud sine", sine(440.0, 4.0, 32000.0)),
            ("quiet noise", noise(4.0, 800.0)),
            ("loud noise", noise(4.0, 30000.0)),
        ];
        for (name, mut signal) in signals {
            let before = measure_lufs(&signal, RATE).unwrap();
            let gain = normalising_gain(&signal, TARGET);
            apply_gain(&mut signal, gain);
            let after = measure_lufs(&signal, RATE).unwrap();
            assert!(
                (after - TARGET).abs() <= 0.5,
                "{name}: {before:.1} LUFS became {after:.1} LUFS (gain {gain:.3})"
            );
            assert!(peak(&signal) <= ceiling(), "{name}: peak {}", peak(&signal));
        }
    }

    #[test]
    fn peaks_stay_below_minus_1_dbfs_even_when_that_misses_the_target() {
        // A quiet bed with sharp clicks near full scale: reaching −16 LUFS would clip them.
        let mut signal = sine(440.0, 4.0, 600.0);
        for i in (0..signal.len()).step_by(9_600) {
            signal[i] = 20_000;
            signal[i + 1] = -20_000;
        }
        let gain = normalising_gain(&signal, TARGET);
        apply_gain(&mut signal, gain);
        assert!(peak(&signal) <= ceiling(), "peak {}", peak(&signal));
        assert!(
            peak(&signal) >= ceiling() - 1,
            "the limit should be reached, not undershot"
        );
        assert!(measure_lufs(&signal, RATE).unwrap() < TARGET - 3.0);
    }

    #[test]
    fn gain_is_held_inside_its_range() {
        // Needs about +46 dB.
        let whisper = sine(440.0, 4.0, 100.0);
        let gain = normalising_gain(&whisper, TARGET);
        assert!((gain_to_db(gain) - MAX_GAIN_DB).abs() < 1e-9, "{gain}");
        // A full-scale square wave needs about −40 dB to reach −40 LUFS.
        let square: Vec<i16> = (0..192_000)
            .map(|i| if (i / 24) % 2 == 0 { 32767 } else { -32767 })
            .collect();
        let gain = normalising_gain(&square, -40.0);
        assert!((gain_to_db(gain) - MIN_GAIN_DB).abs() < 1e-9, "{gain}");
    }

    #[test]
    fn silence_gets_unity_gain() {
        assert_eq!(normalising_gain(&vec![0; 96_000], TARGET), 1.0);
        assert_eq!(normalising_gain(&[], TARGET), 1.0);
        assert_eq!(normalising_gain(&sine(440.0, 2.0, 1000.0), f64::NAN), 1.0);
    }

    #[test]
    fn apply_gain_saturates_and_ignores_nonsense() {
        let mut samples = [30_000, -30_000, 100, 0];
        apply_gain(&mut samples, 2.0);
        assert_eq!(samples, [i16::MAX, i16::MIN, 200, 0]);
        apply_gain(&mut samples, 0.5);
        assert_eq!(samples, [16_384, -16_384, 100, 0]);
        for nonsense in [f64::NAN, f64::INFINITY, -1.0] {
            apply_gain(&mut samples, nonsense);
            assert_eq!(samples, [16_384, -16_384, 100, 0]);
        }
        apply_gain(&mut [], 3.0);
    }

    /// Measures a complete segment and records its gain, as the engine does; the gain to
    /// apply (1.0 when there was nothing to measure).
    fn learn(tracker: &mut LoudnessTracker, voice: &str, samples: &[i16]) -> f64 {
        let gain = measured_gain(samples, tracker.target_lufs());
        if let Some(gain) = gain {
            tracker.record(voice, gain);
        }
        gain.unwrap_or(1.0)
    }

    #[test]
    fn the_tracker_remembers_each_voice() {
        let mut tracker = LoudnessTracker::new(TARGET);
        assert_eq!(tracker.guess("alloy"), 1.0);

        let quiet = sine(440.0, 3.0, 2000.0);
        let gain = learn(&mut tracker, "alloy", &quiet);
        assert!(gain > 2.0, "{gain}");
        assert!((tracker.guess("alloy") - gain).abs() < 1e-9);
        // Another voice is its own business.
        assert_eq!(tracker.guess("echo"), 1.0);

        // A streamed segment started with the guess lands near the target.
        let mut next = sine(523.0, 3.0, 2100.0);
        apply_gain(&mut next, tracker.guess("alloy"));
        let lufs = measure_lufs(&next, RATE).unwrap();
        assert!((lufs - TARGET).abs() < 1.0, "{lufs}");

        // Silence teaches nothing.
        assert_eq!(learn(&mut tracker, "alloy", &vec![0; 48_000]), 1.0);
        assert!((tracker.guess("alloy") - gain).abs() < 1e-9);
    }

    #[test]
    fn the_tracker_averages_and_then_follows_change() {
        let mut tracker = LoudnessTracker::new(TARGET);
        tracker.record("v", db_to_gain(6.0));
        tracker.record("v", db_to_gain(2.0));
        assert!((gain_to_db(tracker.guess("v")) - 4.0).abs() < 1e-9);
        // The provider gets 10 dB louder: the guess follows within a dozen segments.
        for _ in 0..12 {
            tracker.record("v", db_to_gain(-6.0));
        }
        let db = gain_to_db(tracker.guess("v"));
        assert!((db - -6.0).abs() < 0.5, "{db}");
        tracker.record("v", f64::NAN);
        tracker.record("v", 0.0);
        assert!((gain_to_db(tracker.guess("v")) - db).abs() < 1e-9);
    }
}
