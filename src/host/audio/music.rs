//! The operator's music folder: finding the tracks in it and decoding one to the host's
//! format (48 kHz mono i16) for the playout to put under or between speech.
//!
//! Both [`MusicLibrary::scan`] and [`decode`] do blocking file I/O and CPU work: the engine
//! calls them inside `spawn_blocking`. Decoding is bounded by `max_secs`, so a two-hour
//! DJ mix costs no more memory than the slice of it that airs.
//!
//! Config keys the engine reads for this: `music.dir` (the folder to scan).

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::{MetadataOptions, StandardTag, Tag};

use super::resample::Resampler;
use super::{AudioError, samples};

/// File extensions (lower case) taken to be music.
const EXTENSIONS: [&str; 5] = ["mp3", "ogg", "oga", "flac", "wav"];

/// Consecutive undecodable packets after which a file is given up on, keeping what decoded
/// so far. A damaged stretch is a few packets; hundreds in a row is noise with a music name.
const MAX_BAD_PACKETS_IN_A_ROW: usize = 200;

/// One music file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Where the file is.
    pub path: PathBuf,
    /// The title from the file's tags, or its file name without the extension.
    pub title: String,
    /// The artist from the file's tags, if they name one.
    pub artist: Option<String>,
}

/// The folder of music files the station may play.
#[derive(Debug, Clone)]
pub struct MusicLibrary {
    dir: PathBuf,
}

impl MusicLibrary {
    /// A library over `dir` (`music.dir`). Nothing is read until [`scan`](Self::scan).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder this library reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every music file under the folder, recursively, sorted by path. A missing or
    /// unreadable folder is an empty library, not an error: music is optional on air.
    ///
    /// Hidden files and folders (names starting with `.`) are skipped: they include the
    /// `._name.mp3` resource forks macOS leaves on USB sticks, which are not audio.
    /// Symlinked folders are not followed, so a link loop cannot make the scan endless.
    /// Blocking: opens every file to read its tags.
    pub fn scan(&self) -> Vec<Track> {
        let mut files = Vec::new();
        let mut folders = vec![self.dir.clone()];
        while let Some(folder) = folders.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) => {
                    if folder != self.dir || e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(folder = %folder.display(), error = %e, "cannot read music folder");
                    }
                    continue;
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    folders.push(path);
                } else if is_music(&path) && (kind.is_file() || path.is_file()) {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let (title, artist) = read_tags(&path);
                let title = title.unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                Track {
                    path,
                    title,
                    artist,
                }
            })
            .collect()
    }
}

fn is_music(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|m| e.eq_ignore_ascii_case(m)))
}

/// Decodes the file at `path` to 48 kHz mono, stopping after `max_secs` seconds of output
/// (a non-positive or NaN `max_secs` gives no audio, `f64::INFINITY` the whole file).
///
/// Channels are averaged to mono. Packets that fail to decode are skipped, so a scratch in
/// a file costs a moment of audio rather than the track; the call fails with
/// [`AudioError::Decode`] only if the file cannot be opened or recognised or nothing in it
/// decodes, and with [`AudioError::Rate`] if its sample rate is out of range.
/// A panic inside the decoders (third-party code reading whatever is in the folder; fuzzing
/// found symphonia 0.6's WAV reader overflowing on a `fmt ` chunk's block size) is caught and
/// returned as [`AudioError::Decode`] too.
///
/// Blocking.
pub fn decode(path: impl AsRef<Path>, max_secs: f64) -> Result<Vec<i16>, AudioError> {
    let path = path.as_ref();
    guarded(|| decode_unguarded(path, max_secs)).unwrap_or_else(|panic| {
        Err(AudioError::Decode {
            path: path.display().to_string(),
            message: format!("the decoder failed on this file ({panic})"),
        })
    })
}

/// Runs `work`, turning a panic into its message.
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".to_owned())
    })
}

fn decode_unguarded(path: &Path, max_secs: f64) -> Result<Vec<i16>, AudioError> {
    let fail = |message: String| AudioError::Decode {
        path: path.display().to_string(),
        message,
    };
    let mut format = open(path).map_err(|e| fail(e.to_string()))?;
    let (mut track_id, mut decoder) = audio_decoder(format.as_ref()).map_err(fail)?;
    let limit = samples(max_secs);
    if limit == 0 {
        return Ok(Vec::new());
    }

    let mut out: Vec<i16> = Vec::new();
    let mut resampler: Option<Resampler> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut mono: Vec<i16> = Vec::new();
    let mut decoded_any = false;
    let mut bad_in_a_row = 0;
    let mut skipped = 0;
    let mut last_error: Option<String> = None;

    while out.len() < limit {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::ResetRequired) => {
                // A chained stream (Ogg) started a new logical stream: carry on with it.
                match audio_decoder(format.as_ref()) {
                    Ok((id, fresh)) => {
                        (track_id, decoder) = (id, fresh);
                        continue;
                    }
                    Err(e) => {
                        last_error = Some(e);
                        break;
                    }
                }
            }
            Err(e) => {
                // The demuxer cannot go on; keep what came before.
                last_error = Some(e.to_string());
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(e @ (SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                skipped += 1;
                bad_in_a_row += 1;
                last_error = Some(e.to_string());
                if bad_in_a_row >= MAX_BAD_PACKETS_IN_A_ROW {
                    break;
                }
                continue;
            }
            Err(e) => {
                last_error = Some(e.to_string());
                break;
            }
        };
        bad_in_a_row = 0;
        let channels = buffer.spec().channels().count().max(1);
        let rate = buffer.spec().rate();
        buffer.copy_to_vec_interleaved(&mut interleaved);
        if interleaved.is_empty() {
            continue;
        }
        decoded_any = true;
        mono.clear();
        mono.extend(interleaved.chunks(channels).map(|frame| {
            let mean = frame.iter().sum::<f32>() / channels as f32;
            (mean * 32768.0).round() as i16
        }));

        if resampler.as_ref().map(Resampler::from_rate) != Some(rate) {
            // First packet, or the stream changed rate midway (chained streams can).
            if let Some(mut previous) = resampler.take() {
                out.extend(previous.flush());
            }
            match Resampler::new(rate) {
                Ok(fresh) => resampler = Some(fresh),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    last_error = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(r) = resampler.as_mut() {
            out.extend(r.process(&mono));
        }
    }
    if let Some(mut r) = resampler.filter(|_| out.len() < limit) {
        out.extend(r.flush());
    }
    out.truncate(limit);

    if !decoded_any {
        return Err(fail(
            last_error.unwrap_or_else(|| "no audio in the file".to_owned()),
        ));
    }
    if skipped > 0 {
        tracing::warn!(
            path = %path.display(),
            skipped,
            error = last_error.as_deref().unwrap_or(""),
            "skipped undecodable packets"
        );
    }
    Ok(out)
}

fn open(path: &Path) -> Result<Box<dyn FormatReader>, SymphoniaError> {
    let file = File::open(path)?;
    let source = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    symphonia::default::get_probe().probe(
        &hint,
        source,
        FormatOptions::default(),
        MetadataOptions::default(),
    )
}

/// The first audio track with a codec we can decode, and a decoder for it.
fn audio_decoder(format: &dyn FormatReader) -> Result<(u32, Box<dyn AudioDecoder>), String> {
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| "no audio track".to_owned())?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| "no audio codec parameters".to_owned())?;
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| e.to_string())?;
    Ok((track.id, decoder))
}

/// Title and artist from the file's tags, where it has them. Later metadata revisions win,
/// as they describe the stream as it is now. A file the reader panics on has none (the
/// track is still listed; decoding it will fail on its own).
fn read_tags(path: &Path) -> (Option<String>, Option<String>) {
    guarded(|| read_tags_unguarded(path)).unwrap_or_else(|panic| {
        tracing::warn!(file = %path.display(), error = %panic, "music: the tag reader failed on this file");
        (None, None)
    })
}

fn read_tags_unguarded(path: &Path) -> (Option<String>, Option<String>) {
    let Ok(mut format) = open(path) else {
        return (None, None);
    };
    let (mut title, mut artist) = (None, None);
    let mut metadata = format.metadata();
    loop {
        if let Some(revision) = metadata.current() {
            let tags = revision
                .media
                .tags
                .iter()
                .chain(revision.per_track.iter().flat_map(|t| &t.metadata.tags));
            for tag in tags {
                pick(tag, &mut title, &mut artist);
            }
        }
        if metadata.pop().is_none() {
            break;
        }
    }
    (title, artist)
}

fn pick(tag: &Tag, title: &mut Option<String>, artist: &mut Option<String>) {
    let (slot, value) = match &tag.std {
        Some(StandardTag::TrackTitle(v)) => (title, v),
        Some(StandardTag::Artist(v)) => (artist, v),
        _ => return,
    };
    let value = value.trim();
    if !value.is_empty() {
        *slot = Some(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::audio::RATE;
    use std::f64::consts::PI;
    use std::process::Command;

    const SOX: &str = "/usr/bin/sox";

    /// A 16-bit PCM WAV file: `frames` of `channels` interleaved samples.
    fn wav_bytes(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut b = Vec::with_capacity(44 + samples.len() * 2);
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // PCM
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b
    }

    /// `secs` of stereo at `rate`: 440 Hz on the left, 660 Hz on the right.
    fn stereo_tones(rate: u32, secs: f64) -> Vec<i16> {
        let frames = (secs * f64::from(rate)) as usize;
        let mut out = Vec::with_capacity(frames * 2);
        for i in 0..frames {
            let t = i as f64 / f64::from(rate);
            out.push((12_000.0 * (2.0 * PI * 440.0 * t).sin()) as i16);
            out.push((12_000.0 * (2.0 * PI * 660.0 * t).sin()) as i16);
        }
        out
    }

    fn write_wav(path: &Path, rate: u32, secs: f64) {
        std::fs::write(path, wav_bytes(rate, 2, &stereo_tones(rate, secs))).unwrap();
    }

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    fn has_sox() -> bool {
        if Path::new(SOX).exists() {
            true
        } else {
            println!("note: {SOX} is absent; skipping the compressed-format part of this test");
            false
        }
    }

    fn sox(args: &[&str]) {
        let status = Command::new(SOX).args(args).status().unwrap();
        assert!(status.success(), "sox {args:?} failed");
    }

    #[test]
    fn scan_finds_music_recursively_sorted_and_ignores_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/deeper")).unwrap();
        write_wav(&dir.path().join("b/deeper/Second Song.WAV"), 44_100, 0.2);
        write_wav(&dir.path().join("a first.wav"), 44_100, 0.2);
        std::fs::write(dir.path().join("notes.txt"), "not music").unwrap();
        std::fs::write(dir.path().join("b/cover.jpg"), [0u8; 16]).unwrap();
        std::fs::write(dir.path().join("._a first.wav"), [0u8; 16]).unwrap();

        let tracks = MusicLibrary::new(dir.path()).scan();
        let names: Vec<&str> = tracks.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(names, ["a first", "Second Song"]);
        assert_eq!(tracks[1].path, dir.path().join("b/deeper/Second Song.WAV"));
        assert!(tracks.iter().all(|t| t.artist.is_none()));
    }

    #[test]
    fn a_missing_or_empty_folder_is_an_empty_library() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MusicLibrary::new(dir.path()).scan().is_empty());
        assert!(MusicLibrary::new(dir.path().join("nope")).scan().is_empty());
    }

    #[test]
    fn decodes_a_44k_stereo_wav_to_48k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        write_wav(&path, 44_100, 2.0);

        let audio = decode(&path, 60.0).unwrap();
        let expected = 2.0 * f64::from(RATE);
        assert!(
            (audio.len() as f64 - expected).abs() <= 48.0 * 5.0,
            "{} samples, expected {expected}",
            audio.len()
        );
        // Mono mean of two 12 000-peak tones: RMS of each is 8485, of their mean 6000.
        let r = rms(&audio[4800..audio.len() - 4800]);
        assert!((r - 6000.0).abs() < 150.0, "rms {r}");
    }

    #[test]
    fn max_secs_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.wav");
        write_wav(&path, 44_100, 3.0);
        assert_eq!(decode(&path, 1.25).unwrap().len(), 60_000);
        assert!(decode(&path, 0.0).unwrap().is_empty());
        assert_eq!(decode(&path, f64::INFINITY).unwrap().len(), 144_000);
    }

    #[test]
    fn decodes_48k_mono_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mono.wav");
        let samples: Vec<i16> = (0..4800)
            .map(|i| ((i * 37) % 20_000 - 10_000) as i16)
            .collect();
        std::fs::write(&path, wav_bytes(RATE, 1, &samples)).unwrap();
        assert_eq!(decode(&path, 10.0).unwrap(), samples);
    }

    /// A `fmt ` chunk whose channel count times the sample size overflows 16 bits: symphonia
    /// 0.6's WAV reader panics on it where overflow checks are on (found by
    /// `scripts/fuzz audio_decode`; the input is in fuzz/regressions/audio_decode/).
    fn wav_with_65518_channels() -> Vec<u8> {
        let mut bytes = b"RIFF".to_vec();
        bytes.extend_from_slice(&44u32.to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
        bytes.extend_from_slice(&65_518u16.to_le_bytes());
        bytes.extend_from_slice(&48_000u32.to_le_bytes());
        bytes.extend_from_slice(&192_000u32.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes
    }

    #[test]
    fn a_file_the_decoder_panics_on_is_a_decode_error_and_stays_listed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many channels.wav");
        std::fs::write(&path, wav_with_65518_channels()).unwrap();
        assert!(matches!(
            decode(&path, 10.0),
            Err(AudioError::Decode { .. })
        ));
        let tracks = MusicLibrary::new(dir.path()).scan();
        assert_eq!(tracks.len(), 1, "the scan goes on: {tracks:?}");
        assert_eq!(tracks[0].title, "many channels");
    }

    #[test]
    fn a_corrupt_or_missing_file_is_a_decode_error() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.mp3");
        let noise: Vec<u8> = (0u32..20_000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&junk, noise).unwrap();
        assert!(matches!(
            decode(&junk, 10.0),
            Err(AudioError::Decode { .. })
        ));

        let empty = dir.path().join("empty.ogg");
        std::fs::write(&empty, []).unwrap();
        assert!(matches!(
            decode(&empty, 10.0),
            Err(AudioError::Decode { .. })
        ));

        // A WAV header with no audio after it.
        let hollow = dir.path().join("hollow.wav");
        std::fs::write(&hollow, wav_bytes(44_100, 2, &[])).unwrap();
        assert!(matches!(
            decode(&hollow, 10.0),
            Err(AudioError::Decode { .. })
        ));

        let missing = dir.path().join("missing.flac");
        assert!(matches!(
            decode(&missing, 10.0),
            Err(AudioError::Decode { .. })
        ));
    }

    #[test]
    fn decodes_ogg_and_flac_made_by_sox_and_reads_their_tags() {
        if !has_sox() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("source.wav");
        write_wav(&wav, 44_100, 2.0);
        let wav = wav.to_str().unwrap();
        let ogg = dir.path().join("tagged.ogg");
        let flac = dir.path().join("plain.flac");
        sox(&[
            wav,
            "--comment",
            "TITLE=Morning Theme",
            "--add-comment",
            "ARTIST=The Radio24 Band",
            ogg.to_str().unwrap(),
        ]);
        sox(&[wav, flac.to_str().unwrap()]);

        for path in [&ogg, &flac] {
            let audio = decode(path, 60.0).unwrap();
            let expected = 2.0 * f64::from(RATE);
            assert!(
                (audio.len() as f64 - expected).abs() <= 48.0 * 20.0,
                "{}: {} samples",
                path.display(),
                audio.len()
            );
            let r = rms(&audio[4800..audio.len() - 4800]);
            assert!((r - 6000.0).abs() < 300.0, "{}: rms {r}", path.display());
        }

        let tracks = MusicLibrary::new(dir.path()).scan();
        let found: Vec<(&str, Option<&str>)> = tracks
            .iter()
            .map(|t| (t.title.as_str(), t.artist.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("plain", None),
                ("source", None),
                ("Morning Theme", Some("The Radio24 Band")),
            ]
        );
    }

    #[test]
    fn skips_damaged_packets_in_a_flac() {
        if !has_sox() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("source.wav");
        write_wav(&wav, 44_100, 4.0);
        let flac = dir.path().join("damaged.flac");
        sox(&[wav.to_str().unwrap(), flac.to_str().unwrap()]);
        let mut bytes = std::fs::read(&flac).unwrap();
        // Scribble over a stretch in the middle: a frame or two fail their CRC.
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&flac, bytes).unwrap();

        let audio = decode(&flac, 60.0).unwrap();
        // Most of the four seconds survives, and sounds.
        assert!(audio.len() > 3 * RATE as usize, "{} samples", audio.len());
        assert!(rms(&audio) > 3000.0);
    }
}
