//! Small sample operations the playout strings segments together with: fades, mixing,
//! silence, and the station-ID chime aired when there is no music to put under the ID.
//!
//! All of it works on mono i16 at [`RATE`], in place where it can, and accepts any slice
//! length (including empty) without panicking. No config keys.

use std::f64::consts::{FRAC_PI_2, PI};

use super::{RATE, samples};

/// Fades the last `len` samples of `samples` (all of them if shorter) down to silence with
/// an equal-power (quarter-cosine) curve; the last sample ends at exactly 0.
///
/// Equal power rather than linear so that a fade-out overlapped with a [`fade_in`] of the
/// same length (a crossfade) keeps uncorrelated material, music into music, at a steady level.
pub fn fade_out(samples: &mut [i16], len: usize) {
    let len = len.min(samples.len());
    let start = samples.len() - len;
    let tail = &mut samples[start..];
    for (i, s) in tail.iter_mut().enumerate() {
        // Position from 0 (first faded sample) to 1 (last), so the last is fully silent.
        let gain = (FRAC_PI_2 * ramp(i, len)).cos();
        *s = scale(*s, gain);
    }
}

/// Fades the first `len` samples of `samples` (all of them if shorter) up from silence with
/// an equal-power (quarter-sine) curve; the first sample starts at exactly 0.
pub fn fade_in(samples: &mut [i16], len: usize) {
    let len = len.min(samples.len());
    for (i, s) in samples[..len].iter_mut().enumerate() {
        let gain = (FRAC_PI_2 * ramp(i, len)).sin();
        *s = scale(*s, gain);
    }
}

/// Adds `src` onto `dst`, sample by sample, saturating at full scale. Only the overlapping
/// part is mixed: extra `src` is ignored and extra `dst` left as it is.
pub fn mix_into(dst: &mut [i16], src: &[i16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.saturating_add(*s);
    }
}

/// `secs` seconds of silence at [`RATE`] (empty for a non-positive or NaN duration).
pub fn silence(secs: f64) -> Vec<i16> {
    vec![0; samples(secs)]
}

/// Peak level of the chime, in linear full scale: −6 dBFS, loud enough to identify the
/// station, with room for the voice mixed over it.
const CHIME_PEAK: f64 = 0.5;
/// The notes of the chime, in Hz, struck one after the other: a C major arpeggio
/// (C5, E5, G5, C6), bright enough to cut through a small speaker without being shrill.
const CHIME_NOTES: [f64; 4] = [523.25, 659.25, 783.99, 1046.50];
/// Overtones of each note as (multiple of the note, relative level): a soft octave and
/// twelfth give the tone a bell-like shimmer without the harshness of a full bell spectrum.
const CHIME_PARTIALS: [(f64, f64); 3] = [(1.0, 1.0), (2.0, 0.35), (3.0, 0.12)];
/// Rise time of each struck note. A few ms is instantaneous to the ear but rounds the
/// waveform's corner, which would otherwise click.
const CHIME_ATTACK_SECS: f64 = 0.006;

/// A short station-ID chime, `secs` seconds long at [`RATE`] (empty for a non-positive or
/// NaN duration): the notes of a major triad struck in turn, each with a few harmonic
/// partials and an exponential decay, peaking at −6 dBFS. It rises from and fades back to
/// silence, so it never clicks on or off however it is cut.
pub fn chime(secs: f64) -> Vec<i16> {
    let n = samples(secs);
    if n == 0 {
        return Vec::new();
    }
    let duration = n as f64 / f64::from(RATE);
    // Strike all notes in the first third, each decaying to about −40 dB by the end.
    let spacing = duration / 3.0 / CHIME_NOTES.len() as f64;
    let decay = duration / 4.6;
    let mut signal = vec![0.0f64; n];
    for (k, &note) in CHIME_NOTES.iter().enumerate() {
        let onset = k as f64 * spacing;
        let first = ((onset * f64::from(RATE)).ceil() as usize).min(n);
        // Later notes slightly softer, so the arpeggio settles rather than climbs.
        let level = 1.0 - 0.12 * k as f64;
        for (i, v) in signal.iter_mut().enumerate().skip(first) {
            let t = i as f64 / f64::from(RATE) - onset;
            let attack = if t < CHIME_ATTACK_SECS {
                0.5 - 0.5 * (PI * t / CHIME_ATTACK_SECS).cos()
            } else {
                1.0
            };
            let envelope = level * attack * (-t / decay).exp();
            let tone: f64 = CHIME_PARTIALS
                .iter()
                .map(|&(multiple, amp)| amp * (2.0 * PI * note * multiple * t).sin())
                .sum();
            *v += envelope * tone;
        }
    }
    let peak = signal.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let norm = if peak > 0.0 {
        CHIME_PEAK * 32767.0 / peak
    } else {
        0.0
    };
    let mut out: Vec<i16> = signal.iter().map(|v| (v * norm).round() as i16).collect();
    // Whatever is left of the decay at the cut goes to zero smoothly: 10% of the length,
    // at most 50 ms.
    let tail = (n / 10).min(samples(0.05));
    fade_out(&mut out, tail);
    out
}

/// Position of sample `i` in a fade of `len` samples, from 0.0 to 1.0 inclusive.
fn ramp(i: usize, len: usize) -> f64 {
    if len <= 1 {
        1.0
    } else {
        i as f64 / (len - 1) as f64
    }
}

fn scale(sample: i16, gain: f64) -> i16 {
    (f64::from(sample) * gain).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    #[test]
    fn fade_out_reaches_zero_at_the_end_and_leaves_the_rest() {
        let mut samples = vec![10_000i16; 1000];
        fade_out(&mut samples, 480);
        assert!(samples[..520].iter().all(|&s| s == 10_000));
        assert_eq!(samples[999], 0);
        assert_eq!(samples[520], 10_000);
        assert!(samples[520..].windows(2).all(|w| w[1] <= w[0]), "monotonic");
        // Equal power: −3 dB at the midpoint.
        let mid = f64::from(samples[520 + 240]);
        assert!((mid / 10_000.0 - 0.5f64.sqrt()).abs() < 0.01, "{mid}");
    }

    #[test]
    fn fade_in_starts_from_zero_and_leaves_the_rest() {
        let mut samples = vec![-10_000i16; 1000];
        fade_in(&mut samples, 480);
        assert_eq!(samples[0], 0);
        assert_eq!(samples[479], -10_000);
        assert!(samples[480..].iter().all(|&s| s == -10_000));
        assert!(samples[..480].windows(2).all(|w| w[1] <= w[0]), "monotonic");
    }

    #[test]
    fn fades_cope_with_odd_lengths() {
        let mut samples = vec![5000i16; 10];
        fade_out(&mut samples, 100);
        assert_eq!(samples[9], 0);
        assert_eq!(samples[0], 5000);
        let mut samples = vec![5000i16; 10];
        fade_in(&mut samples, 100);
        assert_eq!(samples[0], 0);
        assert_eq!(samples[9], 5000);
        let mut one = [7000i16];
        fade_out(&mut one, 1);
        assert_eq!(one, [0]);
        let mut untouched = [7000i16, 7000];
        fade_in(&mut untouched, 0);
        assert_eq!(untouched, [7000, 7000]);
        fade_out(&mut [], 10);
        fade_in(&mut [], 10);
    }

    #[test]
    fn mix_saturates_and_mixes_only_the_overlap() {
        let mut dst = [30_000i16, -30_000, 100, 5];
        mix_into(&mut dst, &[10_000, -10_000, 23]);
        assert_eq!(dst, [i16::MAX, i16::MIN, 123, 5]);
        let mut short = [1i16];
        mix_into(&mut short, &[1, 2, 3]);
        assert_eq!(short, [2]);
        mix_into(&mut [], &[1, 2]);
    }

    #[test]
    fn silence_is_silent_and_the_right_length() {
        let s = silence(0.5);
        assert_eq!(s.len(), 24_000);
        assert!(s.iter().all(|&x| x == 0));
        assert!(silence(-1.0).is_empty());
        assert!(silence(f64::NAN).is_empty());
    }

    #[test]
    fn chime_is_audible_the_right_length_and_click_free() {
        for secs in [0.8, 1.5, 3.0] {
            let c = chime(secs);
            assert_eq!(c.len(), samples(secs), "{secs} s");
            let peak = c.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((15_000..=17_000).contains(&peak), "{secs} s: peak {peak}");
            assert!(rms(&c) > 1000.0, "{secs} s: rms {}", rms(&c));
            // Starts and ends at silence, and gets there gradually: the first and last
            // millisecond stay far below the peak.
            let ms = samples(0.001);
            assert_eq!(c[0], 0);
            assert_eq!(c[c.len() - 1], 0);
            let edge = c[..ms]
                .iter()
                .chain(&c[c.len() - ms..])
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap();
            assert!(edge < 2_000, "{secs} s: {edge} within 1 ms of an edge");
            // No sample-to-sample jump bigger than the steepest partial allows.
            let jump = c
                .windows(2)
                .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
                .max()
                .unwrap();
            assert!(jump < 4_000, "{secs} s: jump {jump}");
        }
    }

    #[test]
    fn chime_sounds_the_triad() {
        // Energy at the root well above a frequency outside the chord.
        let c = chime(2.0);
        let power = |freq: f64| {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, &s) in c.iter().enumerate() {
                let phase = 2.0 * PI * freq * i as f64 / f64::from(RATE);
                re += f64::from(s) * phase.cos();
                im += f64::from(s) * phase.sin();
            }
            re * re + im * im
        };
        for note in CHIME_NOTES {
            assert!(power(note) > 100.0 * power(600.0), "{note} Hz");
        }
    }

    #[test]
    fn chime_of_nothing_is_empty() {
        assert!(chime(0.0).is_empty());
        assert!(chime(-1.0).is_empty());
        assert!(chime(f64::NAN).is_empty());
    }
}
