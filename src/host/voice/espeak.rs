//! The offline voice: `espeak-ng --stdout` as a subprocess, so the station stays audible
//! with no API key (the GPL program stays a separate binary; the Rust binding segfaults).
//! The text goes in on stdin; the WAV coming out of stdout (22050 Hz, mono, 16 bit) is
//! streamed as it is written. espeak-ng cannot know the length when it starts writing, so
//! the RIFF and data sizes in its header are bogus: everything after the `data` chunk
//! header, up to EOF, is taken as samples.
//!
//! Config it reads (through [`EspeakConfig`], filled by the engine): the binary path, the
//! voice (from `station.language` by [`voice_for_language`]), the speaking rate, a timeout.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use super::shared;
use super::shared::{
    MAX_MESSAGE_CHARS, S16leDecoder, SampleBudget, over_budget, provider_message, truncate_chars,
};
use super::{Voice, VoiceAudio, VoiceError};

/// What espeak-ng writes; also the rate of the empty stream for blank text.
pub const RATE: u32 = 22_050;
/// Longest text passed to one call, in characters. The engine sends sentences; this only
/// keeps a runaway caller from tying up the process.
pub const MAX_TEXT_CHARS: usize = 5000;
/// Speaking rates espeak-ng accepts (words per minute).
const WPM_RANGE: std::ops::RangeInclusive<u32> = 80..=450;
/// Longest WAV header accepted before the `data` chunk.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most of stderr kept for an error.
const MAX_STDERR_BYTES: usize = 4096;
/// How long `--version` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run espeak-ng.
#[derive(Debug, Clone)]
pub struct EspeakConfig {
    /// `espeak-ng` (found on `PATH`) or a full path.
    pub binary: PathBuf,
    /// An espeak-ng voice, e.g. `ja`, `en`, `en-us`.
    pub voice: String,
    /// Speaking rate in words per minute, clamped to 80–450.
    pub words_per_minute: u32,
    /// To the first audio, and then between two reads of its output.
    pub timeout: Duration,
}

impl EspeakConfig {
    /// `espeak-ng` on `PATH`, the voice for `language`, 175 wpm (espeak-ng's own default),
    /// 10 s timeout.
    pub fn for_language(language: &str) -> Self {
        Self {
            binary: PathBuf::from("espeak-ng"),
            voice: voice_for_language(language),
            words_per_minute: 175,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The espeak-ng voice for a station language (BCP 47): `ja` → `ja`, `en` → `en`, anything
/// else as given (espeak-ng knows many tags, e.g. `en-us`, `fr`); `en` when blank.
pub fn voice_for_language(language: &str) -> String {
    match language.trim() {
        "" => "en".to_owned(),
        "ja" => "ja".to_owned(),
        "en" => "en".to_owned(),
        other => other.to_owned(),
    }
}

/// The espeak-ng voice.
pub struct EspeakVoice {
    config: EspeakConfig,
}

impl EspeakVoice {
    /// A voice that runs `config.binary` per call; nothing is started until then (use
    /// [`EspeakVoice::probe`] to check the binary at start-up).
    pub fn new(config: EspeakConfig) -> Self {
        Self { config }
    }

    /// Ok with its version line when `binary --version` runs, so the engine can choose this
    /// voice at start-up; Unavailable otherwise.
    pub async fn probe(binary: impl AsRef<OsStr>) -> Result<String, VoiceError> {
        let binary = binary.as_ref();
        let run = Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = timeout(PROBE_TIMEOUT, run)
            .await
            .map_err(|_| VoiceError::Unavailable(format!("{binary:?} --version hung")))?
            .map_err(|e| spawn_error(binary, e))?;
        if !output.status.success() {
            return Err(VoiceError::Unavailable(format!(
                "{binary:?} --version exited with {}",
                output.status
            )));
        }
        let version = String::from_utf8_lossy(&output.stdout);
        Ok(truncate_chars(
            version.lines().next().unwrap_or("").trim(),
            MAX_MESSAGE_CHARS,
        ))
    }
}

fn spawn_error(binary: &OsStr, e: std::io::Error) -> VoiceError {
    VoiceError::Unavailable(format!("cannot run {binary:?}: {e}"))
}

/// The header fields that say how to read the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub rate: u32,
    pub channels: u16,
    pub bits: u16,
}

/// Parses a WAV header from the bytes read so far: `Ok(None)` while more are needed, else
/// the format and where the sample data starts. Chunk sizes are trusted only to skip
/// chunks before `data`; the sizes of RIFF and `data` are ignored.
pub fn parse_wav_header(buf: &[u8]) -> Result<Option<(WavFormat, usize)>, String> {
    let bad = |why: &str| Err(format!("not a WAV stream: {why}"));
    if buf.len() >= 4 && &buf[..4] != b"RIFF" {
        return bad("no RIFF tag");
    }
    if buf.len() >= 12 && &buf[8..12] != b"WAVE" {
        return bad("no WAVE tag");
    }
    let mut pos = 12;
    let mut format = None;
    loop {
        let Some(head) = buf.get(pos..pos + 8) else {
            return Ok(None);
        };
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let body = pos + 8;
        match &head[..4] {
            b"data" => {
                return match format {
                    Some(f) => Ok(Some((f, body))),
                    None => bad("data before fmt"),
                };
            }
            b"fmt " => {
                if size < 16 {
                    return bad("fmt chunk too short");
                }
                let Some(f) = buf.get(body..body + 16) else {
                    return Ok(None);
                };
                let tag = u16::from_le_bytes([f[0], f[1]]);
                // 1 = integer PCM; 0xFFFE = WAVE_FORMAT_EXTENSIBLE, which wraps PCM too.
                if tag != 1 && tag != 0xFFFE {
                    return bad("not PCM");
                }
                format = Some(WavFormat {
                    channels: u16::from_le_bytes([f[2], f[3]]),
                    rate: u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
                    bits: u16::from_le_bytes([f[14], f[15]]),
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body
            .checked_add(size)
            .and_then(|p| p.checked_add(size & 1))
            .ok_or_else(|| "not a WAV stream: chunk size overflows".to_owned())?;
    }
}

/// Samples from a WAV byte stream fed in arbitrary pieces.
#[derive(Debug, Default)]
pub struct WavStream {
    head: Vec<u8>,
    format: Option<WavFormat>,
    decoder: S16leDecoder,
}

impl WavStream {
    /// The format, once the header has been read.
    pub fn format(&self) -> Option<WavFormat> {
        self.format
    }

    /// Feeds the next bytes; returns the samples they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<i16>, String> {
        if self.format.is_some() {
            return Ok(self.decoder.push(bytes));
        }
        self.head.extend_from_slice(bytes);
        match parse_wav_header(&self.head)? {
            None if self.head.len() > MAX_HEADER_BYTES => {
                Err("WAV header longer than 64 KiB".to_owned())
            }
            None => Ok(Vec::new()),
            Some((format, data)) => {
                if format.bits != 16 || format.channels != 1 || format.rate == 0 {
                    return Err(format!(
                        "expected 16-bit mono, got {} bit, {} channels at {} Hz",
                        format.bits, format.channels, format.rate
                    ));
                }
                self.format = Some(format);
                let rest = self.head.split_off(data);
                self.head = Vec::new();
                Ok(self.decoder.push(&rest))
            }
        }
    }
}

/// Reads all of stderr (so espeak-ng never blocks on a full pipe) and keeps the start.
fn collect_stderr(stderr: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let mut kept = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// The running process and what the audio stream carries between polls.
struct Reader {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    wav: WavStream,
    budget: SampleBudget,
    idle: Duration,
    buf: Vec<u8>,
    /// Samples handed out so far: a failing exit after audio is only a warning.
    produced: usize,
    queued: Option<Result<Vec<i16>, VoiceError>>,
    done: bool,
}

impl Reader {
    /// The next bytes of stdout, or None at EOF.
    async fn read(&mut self, deadline: Instant) -> Result<Option<usize>, VoiceError> {
        match timeout_at(deadline, self.stdout.read(&mut self.buf)).await {
            Err(_) => Err(VoiceError::Timeout),
            Ok(Err(e)) => Err(VoiceError::BadAnswer(format!("reading espeak-ng: {e}"))),
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(n)) => Ok(Some(n)),
        }
    }

    /// At EOF: an error if the process failed before producing any audio.
    async fn finish(&mut self) -> Result<(), VoiceError> {
        let status = timeout(self.idle, self.child.wait()).await;
        let stderr = match self.stderr.take() {
            Some(task) => timeout(self.idle, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        let stderr = provider_message(&stderr, None);
        let status = match status {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(VoiceError::BadAnswer(format!("espeak-ng: {e}"))),
            Err(_) => return Err(VoiceError::Timeout),
        };
        if status.success() {
            return Ok(());
        }
        if self.produced == 0 {
            return Err(VoiceError::BadAnswer(format!(
                "espeak-ng exited with {status}: {stderr}"
            )));
        }
        tracing::warn!(%status, %stderr, "espeak-ng failed after producing audio");
        Ok(())
    }

    /// Counts `samples` against the cap; past it, queues the error after what fits.
    fn admit(&mut self, mut samples: Vec<i16>) -> Result<Vec<i16>, VoiceError> {
        self.produced += samples.len();
        if self.budget.take(&mut samples) {
            return Ok(samples);
        }
        self.done = true;
        if samples.is_empty() {
            return Err(over_budget());
        }
        self.queued = Some(Err(over_budget()));
        Ok(samples)
    }

    /// Reads until the header is parsed and some samples (or the end) arrive.
    async fn first(&mut self, deadline: Instant) -> Result<Vec<i16>, VoiceError> {
        loop {
            let Some(n) = self.read(deadline).await? else {
                self.finish().await?;
                return match self.wav.format() {
                    Some(_) => Ok(Vec::new()),
                    None => Err(VoiceError::BadAnswer(
                        "espeak-ng wrote no WAV header".to_owned(),
                    )),
                };
            };
            let samples = self
                .wav
                .push(&self.buf[..n])
                .map_err(VoiceError::BadAnswer)?;
            if !samples.is_empty() {
                return Ok(samples);
            }
        }
    }

    async fn next_item(&mut self) -> Option<Result<Vec<i16>, VoiceError>> {
        if let Some(item) = self.queued.take() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        loop {
            let deadline = Instant::now() + self.idle;
            let n = match self.read(deadline).await {
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.done = true;
                    return self.finish().await.err().map(Err);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match self.wav.push(&self.buf[..n]) {
                Ok(samples) if samples.is_empty() => {}
                Ok(samples) => return Some(self.admit(samples)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(VoiceError::BadAnswer(e)));
                }
            }
        }
    }
}

#[async_trait]
impl Voice for EspeakVoice {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    #[tracing::instrument(skip_all, fields(voice = "espeak-ng", chars = text.chars().count()))]
    async fn synthesize(&self, text: &str) -> Result<VoiceAudio, VoiceError> {
        let Some(input) = shared::input_text(text, MAX_TEXT_CHARS, self.name()) else {
            return Ok(shared::silence(RATE));
        };
        let wpm = self
            .config
            .words_per_minute
            .clamp(*WPM_RANGE.start(), *WPM_RANGE.end());
        let binary = self.config.binary.as_os_str();
        // `--stdin` reads the whole text before speaking, so it is one utterance; `-b 1`
        // says it is UTF-8 rather than leaving espeak-ng to guess.
        let mut child = Command::new(binary)
            .arg("--stdout")
            .arg("-v")
            .arg(&self.config.voice)
            .arg("-s")
            .arg(wpm.to_string())
            .arg("-b")
            .arg("1")
            .arg("--stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(binary, e))?;
        let stderr = collect_stderr(child.stderr.take());
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(VoiceError::Unavailable(
                "espeak-ng started without pipes".to_owned(),
            ));
        };
        let deadline = Instant::now() + self.config.timeout;
        // A failed write means espeak-ng already quit (a bad voice, say); its exit status
        // and stderr, read below, say why better than the broken pipe does.
        let written = timeout_at(deadline, async {
            stdin.write_all(input.as_bytes()).await?;
            stdin.shutdown().await
        })
        .await
        .map_err(|_| VoiceError::Timeout)?;
        if let Err(e) = written {
            tracing::debug!(error = %e, "writing text to espeak-ng failed");
        }
        drop(stdin);

        let mut reader = Reader {
            child,
            stdout,
            stderr: Some(stderr),
            wav: WavStream::default(),
            budget: SampleBudget::new(RATE),
            idle: self.config.timeout,
            buf: vec![0; 16 * 1024],
            produced: 0,
            queued: None,
            done: false,
        };
        let first = reader.first(deadline).await?;
        let rate = reader.wav.format().map_or(RATE, |f| f.rate);
        if first.is_empty() {
            // The process ended cleanly with a header and no samples: nothing to say.
            reader.done = true;
        } else {
            reader.queued = Some(reader.admit(first));
        }
        let chunks = futures::stream::unfold(reader, |mut reader| async move {
            let item = reader.next_item().await?;
            Some((item, reader))
        });
        Ok(VoiceAudio {
            rate,
            chunks: chunks.boxed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESPEAK: &str = "/usr/bin/espeak-ng";

    /// A header like espeak-ng's: sizes 0xFFFFFFFF, a LIST chunk before `data` for good
    /// measure.
    fn bogus_header() -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h.extend_from_slice(b"WAVE");
        h.extend_from_slice(b"fmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // PCM
        h.extend_from_slice(&1u16.to_le_bytes()); // mono
        h.extend_from_slice(&22_050u32.to_le_bytes());
        h.extend_from_slice(&44_100u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(b"abc\0"); // 3 bytes + 1 pad
        h.extend_from_slice(b"data");
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn header_split_across_reads_with_bogus_sizes_then_data_to_eof() {
        let header = bogus_header();
        let samples: Vec<i16> = (0..100).map(|i| i * 300 - 15_000).collect();
        let mut bytes = header.clone();
        bytes.extend_from_slice(&pcm(&samples));

        let mut wav = WavStream::default();
        // Cut inside the fmt chunk: nothing is known yet.
        assert_eq!(wav.push(&bytes[..30]).unwrap(), Vec::<i16>::new());
        assert_eq!(wav.format(), None);
        // The rest of the header plus an odd number of sample bytes.
        let cut = header.len() + 7;
        let mut got = wav.push(&bytes[30..cut]).unwrap();
        assert_eq!(
            wav.format(),
            Some(WavFormat {
                rate: 22_050,
                channels: 1,
                bits: 16
            })
        );
        assert_eq!(got.len(), 3);
        got.extend(wav.push(&bytes[cut..]).unwrap());
        assert_eq!(got, samples);
    }

    #[test]
    fn zero_sizes_and_bad_headers() {
        let mut header = bogus_header();
        // espeak-ng writes 0 in some versions: still read to EOF.
        let data_size = header.len() - 4;
        header[data_size..].copy_from_slice(&0u32.to_le_bytes());
        header[4..8].copy_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&pcm(&[1, 2, 3]));
        let mut wav = WavStream::default();
        assert_eq!(wav.push(&header).unwrap(), vec![1, 2, 3]);

        assert!(parse_wav_header(b"ID3\x04").is_err());
        assert!(parse_wav_header(b"RIFF\0\0\0\0WAVX").is_err());
        assert_eq!(parse_wav_header(b"RIF").unwrap(), None);
        let mut stereo = bogus_header();
        stereo[22] = 2;
        assert!(WavStream::default().push(&stereo).is_err());
    }

    fn energy(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    async fn speak(language: &str, text: &str) -> (u32, Vec<i16>) {
        let mut config = EspeakConfig::for_language(language);
        config.binary = PathBuf::from(ESPEAK);
        let voice = EspeakVoice::new(config);
        assert_eq!(voice.name(), "espeak-ng");
        let audio = voice.synthesize(text).await.unwrap();
        let rate = audio.rate;
        let chunks: Vec<_> =
            tokio::time::timeout(Duration::from_secs(30), audio.chunks.collect::<Vec<_>>())
                .await
                .unwrap();
        (rate, chunks.into_iter().flat_map(|c| c.unwrap()).collect())
    }

    #[tokio::test]
    async fn speaks_japanese_and_english() {
        for (language, text) in [
            (
                "ja",
                "こんにちは、ラジオ二十四です。今日もよろしくお願いします。",
            ),
            ("en", "Good evening, this is Radio twenty four."),
        ] {
            let (rate, samples) = speak(language, text).await;
            assert_eq!(rate, 22_050, "{language}");
            let secs = samples.len() as f64 / f64::from(rate);
            assert!(secs > 0.3, "{language}: only {secs} s");
            assert!(energy(&samples) > 100.0, "{language}: silent");
        }
    }

    #[tokio::test]
    async fn probe_reports_the_version() {
        let version = EspeakVoice::probe(ESPEAK).await.unwrap();
        assert!(version.contains("eSpeak NG"), "{version}");
    }

    #[tokio::test]
    async fn missing_binary_is_unavailable() {
        let missing = "/nonexistent/espeak-ng";
        let err = EspeakVoice::probe(missing).await.unwrap_err();
        assert!(matches!(err, VoiceError::Unavailable(_)), "{err:?}");
        let mut config = EspeakConfig::for_language("en");
        config.binary = PathBuf::from(missing);
        let err = EspeakVoice::new(config)
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, VoiceError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unknown_voice_is_a_bad_answer_with_stderr() {
        let mut config = EspeakConfig::for_language("xx-nowhere");
        config.binary = PathBuf::from(ESPEAK);
        assert_eq!(config.voice, "xx-nowhere");
        let err = EspeakVoice::new(config)
            .synthesize("Hello.")
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, VoiceError::BadAnswer(m) if m.contains("voice does not exist")),
            "{err:?}"
        );
    }

    #[test]
    fn languages_map_to_voices() {
        assert_eq!(voice_for_language("ja"), "ja");
        assert_eq!(voice_for_language("en"), "en");
        assert_eq!(voice_for_language("en-us"), "en-us");
        assert_eq!(voice_for_language(" "), "en");
    }
}
