//! The programme archive: every channel recorded into hourly files, so listeners can hear an
//! hour they missed. Per channel a recorder follows the playout's frames and the channel's
//! caption events and writes, for each hour of the station's clock (the host's [`Clock`],
//! so a virtual clock cuts files at virtual hours):
//!
//! - `<archive.dir>/<channel>/YYYY-MM-DDTHH.ogg`: Ogg/Opus at `stream.bitrate`, a complete
//!   stream of its own (header pages, granule positions from 0, the last page flagged
//!   end-of-stream). Pages are written as they fill (every 200 ms), so a crash loses little.
//! - `<archive.dir>/<channel>/YYYY-MM-DDTHH.json`: the captions,
//!   `{"channel", "hour_start", "audio_start", "captions": [{"at_secs", "segment_id", "text"}]}`,
//!   `at_secs` counted from the file's first sample (`audio_start`). Written when the file
//!   opens, rewritten atomically (temporary file, then rename) at most every 2 s while
//!   captions come, and at the hour's close.
//!
//! The file's timeline is the programme's: frames the recorder missed (it lagged, or the
//! playout skipped ahead after a stall) advance the granule position instead of shrinking
//! the file. Caption times are placed on that timeline to within a frame or two.
//!
//! The async side only forwards frames and captions, through a bounded queue, to a thread
//! of the recorder's own that encodes and writes, so disk I/O never blocks the runtime; if
//! that thread falls behind, the queue fills, the recorder misses frames, and they count as
//! skipped. A disk error is logged once and ends that hour's file; the recorder tries again
//! at the next hour, and the station never notices. An hour whose file already exists (the
//! host restarted within it) is left alone and recording resumes at the next hour. At start
//! and at every hour change, the channel's files older than `archive.retention_days` are
//! deleted.
//!
//! Config keys read here: `archive.dir`, `archive.retention_days`, `stream.bitrate`,
//! `station.timezone`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::ogg_stream::{EncoderError, OggEncoder, OggStreamConfig};
use crate::bus::archive::{
    ArchiveFile, ArchiveFileKind, ArchiveFileName, Recording, archive_disabled, unknown_recording,
};
use crate::bus::{BusError, HostEvent};
use crate::domain::ChannelName;
use crate::host::audio::{FRAME, RATE};
use crate::host::clock::Clock;

/// 20 ms packets per Ogg page of a recording: a page reaches the disk every 200 ms.
const PAGE_PACKETS: usize = 10;
/// Frames and captions queued between a recorder's task and its writer thread (5 s of
/// frames): past that, the recorder misses frames and they count as skipped.
const QUEUE: usize = 256;
/// The recording's timeline jumps to the programme clock when they drift this far apart
/// (the playout skipped ahead after a stall, dropping frames nobody could record).
const RESYNC: chrono::Duration = chrono::Duration::seconds(5);
/// A caption this much earlier than the file's first sample still belongs to the file (the
/// first sample's time is when the recorder received it, slightly after it aired).
const CAPTION_SLACK: chrono::Duration = chrono::Duration::seconds(1);
/// Shortest wait between two rewrites of an open hour's caption sidecar.
const SIDECAR_INTERVAL: Duration = Duration::from_secs(2);
/// Captions held for an hour whose file is not open yet.
const EARLY_CAPTIONS: usize = 256;
/// Bytes read back from the end of an audio file to find its last page.
const TAIL_BYTES: u64 = 128 * 1024;
/// Bytes read from disk at a time when a file is served.
const READ_CHUNK: usize = 64 * 1024;
/// Length of one frame on the programme clock.
const FRAME_TIME: chrono::Duration = chrono::Duration::milliseconds(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections leave the data consistent: a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Settings of the archive (`archive.*`, `stream.bitrate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// The archive folder; each channel records into a sub-folder of its name.
    pub dir: PathBuf,
    /// Days a recording is kept; 0 = forever.
    pub retention_days: u32,
    /// Opus bitrate of the recordings, bits per second.
    pub bitrate: u32,
}

/// The archive's errors.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} already exists (the host restarted within its hour?); recording resumes at the next hour",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

impl ArchiveError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The top of the station-clock hour containing `at`, as an instant and as the local time
/// files are named by.
fn hour_of(tz: Tz, at: DateTime<Utc>) -> (DateTime<Utc>, NaiveDateTime) {
    let local = at.with_timezone(&tz);
    let into_hour = chrono::Duration::seconds(i64::from(local.minute() * 60 + local.second()))
        + chrono::Duration::nanoseconds(i64::from(local.nanosecond()));
    let start = at - into_hour;
    (start, start.with_timezone(&tz).naive_local())
}

/// When a file's hour began, as an instant; `None` for a local hour the zone skipped.
fn hour_start(tz: Tz, name: &ArchiveFileName) -> Option<DateTime<Tz>> {
    tz.from_local_datetime(&name.hour()).earliest()
}

/// Deletes the recordings in `dir` whose whole hour is more than `retention_days` before
/// `now` (nothing when it is 0); returns how many files went. Other files are left alone.
pub fn delete_expired(
    dir: &Path,
    tz: Tz,
    now: DateTime<Utc>,
    retention_days: u32,
) -> Result<usize, ArchiveError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ArchiveError::io(dir)(e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(ArchiveError::io(dir))?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| ArchiveFileName::parse(n).ok())
        else {
            continue;
        };
        let expired = hour_start(tz, &name)
            .is_some_and(|start| start.with_timezone(&Utc) + chrono::Duration::hours(1) <= cutoff);
        if expired {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(ArchiveError::io(&path))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The granule position of the last whole Ogg page in `path` (`None` if it has none yet).
/// Reads only the file's tail; a page being written at that moment is passed over.
pub fn last_granule(path: &Path) -> Result<Option<u64>, ArchiveError> {
    let io = ArchiveError::io(path);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(ArchiveError::io(path))?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from))
        .map_err(ArchiveError::io(path))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(ArchiveError::io(path))?;
    Ok(last_page_granule(&tail))
}

/// The granule of the last whole page in `bytes` that ends where the bytes end or where
/// another page begins (so a capture pattern inside audio data is not taken for a page).
fn last_page_granule(bytes: &[u8]) -> Option<u64> {
    let starts: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    starts.iter().rev().find_map(|&start| {
        let page = &bytes[start..];
        let segments = usize::from(*page.get(26)?);
        let table = page.get(27..27 + segments)?;
        let len = 27 + segments + table.iter().map(|l| usize::from(*l)).sum::<usize>();
        let end_ok = page.len() == len || page.get(len..len + 4) == Some(b"OggS");
        let granule = crate::bus::audio::granule_position(page)?;
        (page.len() >= len && end_ok && granule != u64::MAX).then_some(granule)
    })
}

/// One caption of a sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionLine {
    /// Seconds from the file's first sample to the caption's sentence.
    pub at_secs: f64,
    pub segment_id: Uuid,
    pub text: String,
}

/// A caption sidecar: what `YYYY-MM-DDTHH.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub channel: ChannelName,
    /// The top of the hour, station time.
    pub hour_start: DateTime<FixedOffset>,
    /// When the file's first sample aired, station time (the hour's start, or later when
    /// recording began within the hour); `at_secs` count from here.
    pub audio_start: DateTime<FixedOffset>,
    pub captions: Vec<CaptionLine>,
}

/// A caption on the programme clock, not yet placed in a file.
#[derive(Debug, Clone)]
struct TimedCaption {
    at: DateTime<Utc>,
    segment_id: Uuid,
    text: String,
}

/// What a recorder's task sends its writer thread.
#[derive(Debug)]
enum Command {
    /// A frame of programme, received at `at` on the programme clock.
    Frame {
        samples: Arc<[i16]>,
        at: DateTime<Utc>,
    },
    /// The recorder missed `frames` frames.
    Skip {
        frames: u64,
    },
    Caption(TimedCaption),
}

/// A sidecar and where it goes.
struct SidecarFile {
    path: PathBuf,
    audio_start: DateTime<Utc>,
    /// Programme seconds the audio covers, once its file is closed.
    closed_secs: Option<f64>,
    content: Sidecar,
}

impl SidecarFile {
    fn add(&mut self, caption: TimedCaption) {
        let mut at_secs = ((caption.at - self.audio_start)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6)
            .max(0.0);
        if let Some(end) = self.closed_secs {
            at_secs = at_secs.min(end);
        }
        self.content.captions.push(CaptionLine {
            at_secs: (at_secs * 1000.0).round() / 1000.0,
            segment_id: caption.segment_id,
            text: caption.text,
        });
    }

    /// Writes the sidecar atomically: a temporary file beside it, then a rename.
    fn write(&self) -> Result<(), ArchiveError> {
        let json = serde_json::to_vec_pretty(&self.content).unwrap_or_default();
        let file_name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("sidecar.json");
        let temp = self.path.with_file_name(format!(".{file_name}.tmp"));
        std::fs::write(&temp, &json).map_err(ArchiveError::io(&temp))?;
        std::fs::rename(&temp, &self.path).map_err(ArchiveError::io(&self.path))
    }

    /// Closes it at `secs` of audio: no caption lies past the end of the file.
    fn close(&mut self, secs: f64) {
        self.closed_secs = Some(secs);
        for caption in &mut self.content.captions {
            caption.at_secs = caption.at_secs.min(secs);
        }
    }
}

/// The hour being recorded.
struct HourFile {
    path: PathBuf,
    file: std::fs::File,
    encoder: OggEncoder,
    hour_start: DateTime<Utc>,
    hour_end: DateTime<Utc>,
    /// The last frame, held back so the file's last packet can end the stream.
    pending: Option<Arc<[i16]>>,
    /// Frames missed after `pending`, applied before the next frame is encoded.
    pending_skip: u64,
    /// Frames the encoder has placed on the timeline (encoded or skipped): granule / 960.
    placed: u64,
    sidecar: SidecarFile,
    sidecar_dirty: bool,
    sidecar_written: Instant,
    sidecar_failed: bool,
    encoder_failed: bool,
}

impl HourFile {
    fn write_pages(&mut self, pages: Vec<Bytes>) -> Result<(), ArchiveError> {
        for page in pages {
            self.file
                .write_all(&page)
                .map_err(ArchiveError::io(&self.path))?;
            crate::metrics::archive_written(&self.sidecar.content.channel, page.len());
        }
        Ok(())
    }

    fn push(&mut self, samples: Arc<[i16]>) -> Result<(), ArchiveError> {
        if let Some(previous) = self.pending.take() {
            match self.encoder.encode(&previous) {
                Ok(pages) => self.write_pages(pages)?,
                Err(e) => {
                    if !std::mem::replace(&mut self.encoder_failed, true) {
                        tracing::warn!(path = %self.path.display(), error = %e, "archive: a frame could not be encoded; skipped");
                    }
                    self.encoder.skip(1);
                }
            }
            self.placed += 1;
        }
        if self.pending_skip > 0 {
            self.encoder.skip(self.pending_skip);
            self.placed += std::mem::take(&mut self.pending_skip);
        }
        self.pending = Some(samples);
        Ok(())
    }

    /// Ends the Ogg stream and syncs the file; returns the seconds of programme it covers.
    fn finish(&mut self) -> Result<f64, ArchiveError> {
        if let Some(last) = self.pending.take() {
            let pages = self.encoder.finish(&last)?;
            self.placed += 1;
            self.write_pages(pages)?;
        }
        self.file
            .sync_data()
            .map_err(ArchiveError::io(&self.path))?;
        Ok(self.secs())
    }

    fn secs(&self) -> f64 {
        (self.placed * FRAME as u64) as f64 / f64::from(RATE)
    }

    fn write_sidecar(&mut self) {
        self.sidecar_dirty = false;
        self.sidecar_written = Instant::now();
        if let Err(e) = self.sidecar.write()
            && !std::mem::replace(&mut self.sidecar_failed, true)
        {
            tracing::error!(error = %e, "archive: cannot write a caption sidecar");
        }
    }
}

/// Writes one channel's recording; runs on a thread of its own. Synchronous, so it is
/// tested alone.
struct HourWriter {
    channel: ChannelName,
    /// `<archive.dir>/<channel>`.
    dir: PathBuf,
    tz: Tz,
    retention_days: u32,
    bitrate: u32,
    /// The file being written, for listings (`complete: false`).
    recording: Arc<Mutex<Option<ArchiveFileName>>>,
    /// Where on the programme clock the next frame starts (`None` before the first).
    timeline: Option<DateTime<Utc>>,
    current: Option<HourFile>,
    /// The hour closed last, kept for captions that arrive after its audio.
    previous: Option<SidecarFile>,
    /// Captions for an hour whose file is not open yet.
    early: VecDeque<TimedCaption>,
    /// An hour that is not recorded (its file failed or existed), until the next begins.
    skipped_hour: Option<DateTime<Utc>>,
}

impl HourWriter {
    fn new(
        channel: ChannelName,
        config: &ArchiveConfig,
        tz: Tz,
        recording: Arc<Mutex<Option<ArchiveFileName>>>,
    ) -> Self {
        Self {
            dir: config.dir.join(channel.as_str()),
            channel,
            tz,
            retention_days: config.retention_days,
            bitrate: config.bitrate,
            recording,
            timeline: None,
            current: None,
            previous: None,
            early: VecDeque::new(),
            skipped_hour: None,
        }
    }

    /// Runs until the task's side of the queue closes (the channel's playout ended).
    fn run(mut self, mut commands: mpsc::Receiver<Command>, now: DateTime<Utc>) {
        self.delete_expired(now);
        while let Some(command) = commands.blocking_recv() {
            self.handle(command);
        }
        self.close();
        tracing::info!(channel = %self.channel, "archive: recorder stopped");
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Frame { samples, at } => self.frame(samples, at),
            Command::Skip { frames } => self.skip(frames),
            Command::Caption(caption) => self.caption(caption),
        }
        if let Some(current) = self.current.as_mut()
            && current.sidecar_dirty
            && current.sidecar_written.elapsed() >= SIDECAR_INTERVAL
        {
            current.write_sidecar();
        }
    }

    fn delete_expired(&self, now: DateTime<Utc>) {
        match delete_expired(&self.dir, self.tz, now, self.retention_days) {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(channel = %self.channel, deleted, retention_days = self.retention_days, "archive: old recordings deleted");
            }
            Err(e) => tracing::warn!(channel = %self.channel, error = %e, "archive: retention"),
        }
    }

    /// Where a frame received at `at` lies on the recording's timeline.
    fn position(&mut self, at: DateTime<Utc>) -> DateTime<Utc> {
        let Some(timeline) = self.timeline else {
            return at;
        };
        let behind = at - timeline;
        if behind > RESYNC {
            // The playout skipped ahead: what it never aired still takes time.
            let missed = behind.num_milliseconds() / FRAME_TIME.num_milliseconds();
            self.skip(u64::try_from(missed).unwrap_or(0));
            self.timeline.unwrap_or(at)
        } else if behind < -RESYNC {
            // The clock went back: start the timeline again from it.
            at
        } else {
            timeline
        }
    }

    fn skip(&mut self, frames: u64) {
        let Some(start) = self.timeline else {
            return;
        };
        if let Some(current) = self.current.as_mut() {
            let left_in_hour = (current.hour_end - start).num_milliseconds().max(0)
                / FRAME_TIME.num_milliseconds();
            current.pending_skip += frames.min(u64::try_from(left_in_hour).unwrap_or(0));
        }
        let frames = i32::try_from(frames).unwrap_or(i32::MAX);
        self.timeline = Some(start + FRAME_TIME * frames);
    }

    fn frame(&mut self, samples: Arc<[i16]>, at: DateTime<Utc>) {
        let t = self.position(at);
        self.timeline = Some(t + FRAME_TIME);
        if self.current.as_ref().is_some_and(|c| t >= c.hour_end) {
            self.close();
        }
        let (hour_start, local_hour) = hour_of(self.tz, t);
        if self.skipped_hour == Some(hour_start) {
            return;
        }
        if self.current.is_none() {
            match self.open(hour_start, local_hour, t) {
                Ok(file) => self.current = Some(file),
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, "archive: this hour is not recorded; trying again at the next");
                    self.skipped_hour = Some(hour_start);
                    return;
                }
            }
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if let Err(e) = current.push(samples) {
            tracing::error!(channel = %self.channel, error = %e, "archive: writing failed; the rest of this hour is not recorded, trying again at the next");
            self.skipped_hour = Some(current.hour_start);
            self.current = None;
            *lock(&self.recording) = None;
        }
    }

    fn open(
        &mut self,
        hour_start: DateTime<Utc>,
        local_hour: NaiveDateTime,
        audio_start: DateTime<Utc>,
    ) -> Result<HourFile, ArchiveError> {
        self.delete_expired(audio_start);
        std::fs::create_dir_all(&self.dir).map_err(ArchiveError::io(&self.dir))?;
        let name = ArchiveFileName::for_hour(local_hour, ArchiveFileKind::Audio);
        let path = self.dir.join(name.to_string());
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ArchiveError::Exists { path });
            }
            Err(e) => return Err(ArchiveError::io(&path)(e)),
        };
        let config = OggStreamConfig {
            bitrate: self.bitrate,
            page_packets: PAGE_PACKETS,
            listener_buffer_pages: 1,
        };
        let (encoder, headers) = OggEncoder::new(&self.channel, &config)?;
        for page in headers {
            file.write_all(&page).map_err(ArchiveError::io(&path))?;
            crate::metrics::archive_written(&self.channel, page.len());
        }
        let offset = |at: DateTime<Utc>| at.with_timezone(&self.tz).fixed_offset();
        let sidecar = SidecarFile {
            path: self
                .dir
                .join(name.with_kind(ArchiveFileKind::Captions).to_string()),
            audio_start,
            closed_secs: None,
            content: Sidecar {
                channel: self.channel.clone(),
                hour_start: offset(hour_start),
                audio_start: offset(audio_start),
                captions: Vec::new(),
            },
        };
        let mut hour = HourFile {
            path,
            file,
            encoder,
            hour_start,
            hour_end: hour_start + chrono::Duration::hours(1),
            pending: None,
            pending_skip: 0,
            placed: 0,
            sidecar,
            sidecar_dirty: false,
            sidecar_written: Instant::now(),
            sidecar_failed: false,
            encoder_failed: false,
        };
        let early = std::mem::take(&mut self.early);
        for caption in early {
            if caption.at >= hour.hour_end {
                self.early.push_back(caption);
            } else if caption.at >= audio_start - CAPTION_SLACK {
                hour.sidecar.add(caption);
            }
        }
        hour.write_sidecar();
        tracing::info!(channel = %self.channel, path = %hour.path.display(), "archive: recording file opened");
        *lock(&self.recording) = Some(name);
        Ok(hour)
    }

    /// Closes the hour being recorded, if any.
    fn close(&mut self) {
        let Some(mut hour) = self.current.take() else {
            return;
        };
        *lock(&self.recording) = None;
        let secs = match hour.finish() {
            Ok(secs) => secs,
            Err(e) => {
                tracing::error!(channel = %self.channel, error = %e, "archive: closing a recording failed");
                hour.secs()
            }
        };
        hour.sidecar.close(secs);
        hour.write_sidecar();
        tracing::info!(
            channel = %self.channel,
            path = %hour.path.display(),
            duration_secs = (secs * 10.0).round() / 10.0,
            captions = hour.sidecar.content.captions.len(),
            "archive: recording file closed"
        );
        self.previous = Some(hour.sidecar);
    }

    fn caption(&mut self, caption: TimedCaption) {
        match self.current.as_mut() {
            Some(current) if caption.at >= current.hour_end => {}
            Some(current) if caption.at >= current.sidecar.audio_start - CAPTION_SLACK => {
                current.sidecar.add(caption);
                current.sidecar_dirty = true;
                return;
            }
            Some(_) => {
                // Its audio is in the hour closed last (the caption came after the frame
                // that closed it).
                if let Some(previous) = self.previous.as_mut()
                    && caption.at >= previous.audio_start - CAPTION_SLACK
                {
                    previous.add(caption);
                    if let Err(e) = previous.write() {
                        tracing::warn!(channel = %self.channel, error = %e, "archive: cannot update a closed hour's captions");
                    }
                }
                return;
            }
            None => {}
        }
        if self.early.len() >= EARLY_CAPTIONS {
            self.early.pop_front();
        }
        self.early.push_back(caption);
    }
}

/// A channel's running recorder; dropping it stops the recording (the file is closed).
struct Recorder {
    task: JoinHandle<()>,
    recording: Arc<Mutex<Option<ArchiveFileName>>>,
    /// Tells the task to forward what the playout has sent, then stop ([`Archive::finish`]).
    finish: Option<oneshot::Sender<()>>,
    /// The writer thread, which closes the hour's file when the task's queue closes.
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The archive of every channel on this host: starts their recorders, lists and opens
/// their files.
pub struct Archive {
    config: ArchiveConfig,
    tz: Tz,
    clock: Arc<dyn Clock>,
    recorders: Mutex<HashMap<ChannelName, Recorder>>,
    /// What listings have read from the recordings' tails (see [`LengthCache`]).
    lengths: Arc<Mutex<LengthCache>>,
}

impl Archive {
    /// The archive in `config.dir`, created if need be.
    pub async fn open(
        config: ArchiveConfig,
        tz: Tz,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, ArchiveError> {
        tokio::fs::create_dir_all(&config.dir)
            .await
            .map_err(ArchiveError::io(&config.dir))?;
        tracing::info!(dir = %config.dir.display(), retention_days = config.retention_days, "archive: recording every channel");
        Ok(Arc::new(Self {
            config,
            tz,
            clock,
            recorders: Mutex::new(HashMap::new()),
            lengths: Arc::default(),
        }))
    }

    /// Starts recording `channel` from its playout's `frames` and the host's `events`
    /// (replacing a recorder it had). It stops when the playout ends.
    pub fn record(
        &self,
        channel: &ChannelName,
        frames: broadcast::Receiver<Arc<[i16]>>,
        events: broadcast::Receiver<HostEvent>,
    ) {
        let recording = Arc::new(Mutex::new(None));
        let writer = HourWriter::new(channel.clone(), &self.config, self.tz, recording.clone());
        let (commands, queue) = mpsc::channel(QUEUE);
        let now = self.clock.now();
        let spawned = std::thread::Builder::new()
            .name(format!("archive-{channel}"))
            .spawn(move || writer.run(queue, now));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                tracing::error!(%channel, error = %e, "archive: cannot start a recorder thread; this channel is not recorded");
                return;
            }
        };
        let (finish, finished) = oneshot::channel();
        let task = tokio::spawn(forward(
            channel.clone(),
            frames,
            events,
            self.clock.clone(),
            commands,
            finished,
        ));
        lock(&self.recorders).insert(
            channel.clone(),
            Recorder {
                task,
                recording,
                finish: Some(finish),
                writer: Some(thread),
            },
        );
    }

    /// Stops every recorder at shutdown, after the playouts have stopped: each forwards the
    /// frames already sent (the last, faded one included), and its writer closes the hour's
    /// file with an end-of-stream page and writes the captions. Returns when the files are
    /// closed.
    pub async fn finish(&self) {
        let recorders: Vec<Recorder> = lock(&self.recorders).drain().map(|(_, r)| r).collect();
        for mut recorder in recorders {
            if let Some(finish) = recorder.finish.take() {
                let _ = finish.send(());
            }
            let _ = (&mut recorder.task).await;
            if let Some(writer) = recorder.writer.take()
                && !matches!(
                    tokio::task::spawn_blocking(move || writer.join()).await,
                    Ok(Ok(()))
                )
            {
                tracing::warn!("archive: a recorder's writer ended badly at shutdown");
            }
        }
    }

    fn channel_dir(&self, channel: &ChannelName) -> PathBuf {
        self.config.dir.join(channel.as_str())
    }

    /// The channel's recordings, newest first.
    pub async fn list(self: &Arc<Self>, channel: &ChannelName) -> Result<Vec<Recording>, BusError> {
        let recording = lock(&self.recorders)
            .get(channel)
            .filter(|r| !r.task.is_finished())
            .and_then(|r| lock(&r.recording).clone());
        let dir = self.channel_dir(channel);
        let tz = self.tz;
        let lengths = self.lengths.clone();
        tokio::task::spawn_blocking(move || {
            list_recordings(&dir, tz, recording.as_ref(), &mut lock(&lengths))
        })
        .await
        .map_err(|e| BusError::Internal(format!("archive listing: {e}")))?
        .map_err(|e| BusError::Internal(format!("archive listing: {e}")))
    }

    /// One file of the channel's archive, streamed from disk.
    pub async fn file(
        &self,
        channel: &ChannelName,
        name: &ArchiveFileName,
    ) -> Result<ArchiveFile, BusError> {
        let path = self.channel_dir(channel).join(name.to_string());
        let not_found = || unknown_recording(channel, &name.to_string());
        let failed = |e: std::io::Error| BusError::Internal(format!("{}: {e}", path.display()));
        // Only a plain file the recorder could have written is served: not a symlink (to
        // anything, inside the folder or out), not a folder, not a FIFO (whose open would
        // wait for a writer).
        match tokio::fs::symlink_metadata(&path).await {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                tracing::warn!(path = %path.display(), "archive: not serving what is not a plain file");
                return Err(not_found());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(failed(e)),
        }
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(failed(e)),
        };
        let meta = file.metadata().await.map_err(failed)?;
        // Swapped for something else between the two looks.
        if !meta.is_file() {
            return Err(not_found());
        }
        let length = meta.len();
        Ok(ArchiveFile {
            kind: name.kind(),
            length: Some(length),
            body: read_stream(file, length).boxed(),
        })
    }
}

/// The first `length` bytes of `file`, a chunk at a time (a file being recorded grows; what
/// was promised is what is sent).
fn read_stream(
    file: tokio::fs::File,
    length: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold((file, length), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut chunk = vec![0; READ_CHUNK.min(usize::try_from(left).unwrap_or(READ_CHUNK))];
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the recording is shorter than announced",
            ));
        }
        chunk.truncate(n);
        Ok(Some((Bytes::from(chunk), (file, left - n as u64))))
    })
}

/// The programme length of each recording a listing has read, by path, with the file's size
/// and modification time when it was read. A listing reads a file's tail again only when
/// either has changed, which is exactly when the recorder has written to it: a listing of 14
/// days (336 files) then reads one tail, the hour being recorded, instead of all of them.
#[derive(Default)]
struct LengthCache {
    granules: HashMap<PathBuf, (u64, Option<std::time::SystemTime>, u64)>,
}

impl LengthCache {
    /// The last granule position of the recording at `path`, of `meta`, read if need be.
    fn granule(&mut self, path: &Path, meta: &std::fs::Metadata) -> u64 {
        let (size, modified) = (meta.len(), meta.modified().ok());
        if let Some((s, m, granule)) = self.granules.get(path)
            && (*s, *m) == (size, modified)
            && modified.is_some()
        {
            return *granule;
        }
        let granule = match last_granule(path) {
            Ok(granule) => granule.unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "archive: cannot read a recording's length");
                return 0;
            }
        };
        self.granules
            .insert(path.to_owned(), (size, modified, granule));
        granule
    }

    /// Forgets the files of `dir` that are not in `listed` (deleted by retention).
    fn keep_only(&mut self, dir: &Path, listed: &BTreeMap<ArchiveFileName, PathBuf>) {
        let listed: std::collections::HashSet<&PathBuf> = listed.values().collect();
        self.granules
            .retain(|path, _| path.parent() != Some(dir) || listed.contains(path));
    }
}

/// Lists the recordings in a channel's folder, newest first. `recording` is the file being
/// written now; `lengths` keeps what earlier listings read.
fn list_recordings(
    dir: &Path,
    tz: Tz,
    recording: Option<&ArchiveFileName>,
    lengths: &mut LengthCache,
) -> Result<Vec<Recording>, ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArchiveError::io(dir)(e)),
    };
    let mut names = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(ArchiveError::io(dir))?;
        // Plain files only, as `Archive::file` serves (a symlink's type is not followed).
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|n| ArchiveFileName::parse(n).ok())
        {
            names.insert(name, entry.path());
        }
    }
    let mut recordings = Vec::new();
    for (name, path) in names.iter().rev() {
        if name.kind() != ArchiveFileKind::Audio {
            continue;
        }
        let Some(hour_start) = hour_start(tz, name) else {
            continue;
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            // Deleted meanwhile (retention): not a recording any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArchiveError::io(path)(e)),
        };
        let bytes = meta.len();
        let granule = lengths.granule(path, &meta);
        let captions = name.with_kind(ArchiveFileKind::Captions);
        recordings.push(Recording {
            hour_start: hour_start.fixed_offset(),
            file: name.clone(),
            captions: names.contains_key(&captions).then_some(captions),
            bytes,
            duration_secs: granule as f64 / f64::from(RATE),
            complete: recording != Some(name),
        });
    }
    lengths.keep_only(dir, &names);
    Ok(recordings)
}

/// The recorder's async side: frames and this channel's captions into the writer's queue.
async fn forward(
    channel: ChannelName,
    mut frames: broadcast::Receiver<Arc<[i16]>>,
    mut events: broadcast::Receiver<HostEvent>,
    clock: Arc<dyn Clock>,
    commands: mpsc::Sender<Command>,
    mut finish: oneshot::Receiver<()>,
) {
    let mut events_open = true;
    loop {
        let command = tokio::select! {
            // Captions first: a caption is sent before the frame it starts in.
            biased;
            event = events.recv(), if events_open => match event {
                Ok(HostEvent::Caption { channel: of, segment_id, text, at, .. }) if of == channel => {
                    Command::Caption(TimedCaption { at, segment_id, text })
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(%channel, missed, "archive: recorder fell behind the host's events; captions missed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    events_open = false;
                    continue;
                }
            },
            frame = frames.recv() => match frame {
                Ok(samples) => Command::Frame { samples, at: clock.now() },
                Err(broadcast::error::RecvError::Lagged(missed)) => Command::Skip { frames: missed },
                Err(broadcast::error::RecvError::Closed) => break,
            },
            // Last: frames already sent are forwarded first.
            _ = &mut finish => break,
        };
        if commands.send(command).await.is_err() {
            tracing::warn!(%channel, "archive: the recorder's writer stopped");
            break;
        }
    }
}

impl From<ArchiveError> for BusError {
    fn from(e: ArchiveError) -> Self {
        BusError::Internal(e.to_string())
    }
}

/// `Err(archive_disabled)` when there is no archive.
pub fn enabled(archive: Option<&Arc<Archive>>) -> Result<&Arc<Archive>, BusError> {
    archive.ok_or_else(archive_disabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn tone(n: u64) -> Arc<[i16]> {
        (0..FRAME)
            .map(|i| {
                let t = (n as usize * FRAME + i) as f64 / f64::from(RATE);
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect()
    }

    /// `frames` frames of tone, each received when it airs, from `start`.
    fn feed(w: &mut HourWriter, start: DateTime<Utc>, frames: u64) {
        for n in 0..frames {
            w.handle(Command::Frame {
                samples: tone(n),
                at: start + FRAME_TIME * i32::try_from(n).unwrap(),
            });
        }
    }

    fn writer(dir: &Path) -> (HourWriter, Arc<Mutex<Option<ArchiveFileName>>>) {
        let recording = Arc::new(Mutex::new(None));
        let config = ArchiveConfig {
            dir: dir.to_path_buf(),
            retention_days: 14,
            bitrate: 64_000,
        };
        let writer = HourWriter::new(
            ChannelName::parse("radio24").unwrap(),
            &config,
            chrono_tz::Asia::Tokyo,
            recording.clone(),
        );
        (writer, recording)
    }

    /// Decodes an Ogg/Opus file: (serials, packets, decoded samples, last page flagged end).
    fn decode(path: &Path) -> (Vec<u32>, usize, usize, bool) {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
        let (mut serials, mut packets, mut samples, mut ended) = (Vec::new(), 0, 0, false);
        while let Some(packet) = reader.read_packet().unwrap() {
            if !serials.contains(&packet.stream_serial()) {
                serials.push(packet.stream_serial());
            }
            packets += 1;
            ended = packet.last_in_stream();
            if packets <= 2 {
                continue;
            }
            let mut out = vec![0i16; 5760];
            samples += decoder.decode(&packet.data, &mut out, false).unwrap();
        }
        (serials, packets, samples, ended)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finish_records_every_frame_sent_and_closes_the_file_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = ArchiveConfig {
            dir: dir.path().to_path_buf(),
            retention_days: 14,
            bitrate: 64_000,
        };
        let clock = Arc::new(crate::host::clock::ScaledClock::new(
            at("2026-11-28T00:10:00Z"),
            1.0,
        ));
        let archive = Archive::open(config, chrono_tz::Asia::Tokyo, clock)
            .await
            .unwrap();
        let (frames, _) = broadcast::channel(64);
        let (events, _) = broadcast::channel(16);
        let channel = ChannelName::parse("radio24").unwrap();
        archive.record(&channel, frames.subscribe(), events.subscribe());
        for n in 0..50 {
            frames.send(tone(n)).unwrap();
        }
        // The playout's sender is still there (as at shutdown): only `finish` ends the file.
        tokio::time::timeout(Duration::from_secs(10), archive.finish())
            .await
            .expect("finish returns once the file is closed");
        let files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("radio24"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ogg"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let (_, packets, samples, ended) = decode(&files[0]);
        assert!(ended, "the last page is flagged end-of-stream");
        assert_eq!(
            packets,
            2 + 50,
            "headers and every frame sent before finish"
        );
        assert!(samples >= 49 * FRAME, "{samples}");
        assert!(lock(&archive.recorders).is_empty());
        drop(frames);
    }

    #[test]
    fn files_are_cut_at_the_station_clocks_hours_each_a_whole_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, recording) = writer(dir.path());
        // 09:59:59 in Tokyo: 50 frames before the hour, 100 after.
        let start = at("2026-11-28T09:59:59+09:00");
        let id = Uuid::now_v7();
        w.handle(Command::Caption(TimedCaption {
            at: start + chrono::Duration::milliseconds(500),
            segment_id: id,
            text: "before".into(),
        }));
        for n in 0..150u64 {
            let t = start + FRAME_TIME * i32::try_from(n).unwrap();
            if n == 75 {
                w.handle(Command::Caption(TimedCaption {
                    at: t,
                    segment_id: id,
                    text: "after".into(),
                }));
            }
            w.handle(Command::Frame {
                samples: tone(n),
                at: t,
            });
        }
        let channel_dir = dir.path().join("radio24");
        assert_eq!(
            lock(&recording)
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("2026-11-28T10.ogg")
        );
        w.close();
        assert_eq!(*lock(&recording), None);

        let first = decode(&channel_dir.join("2026-11-28T09.ogg"));
        assert_eq!(first.0.len(), 1, "one stream");
        assert_eq!(first.2, 50 * FRAME);
        assert!(first.3, "closed with an end-of-stream page");
        let second = decode(&channel_dir.join("2026-11-28T10.ogg"));
        assert_eq!(second.2, 100 * FRAME);
        assert!(second.3);
        assert_eq!(
            last_granule(&channel_dir.join("2026-11-28T10.ogg")).unwrap(),
            Some(100 * FRAME as u64)
        );

        let sidecar: Sidecar =
            serde_json::from_slice(&std::fs::read(channel_dir.join("2026-11-28T09.json")).unwrap())
                .unwrap();
        assert_eq!(sidecar.hour_start.to_rfc3339(), "2026-11-28T09:00:00+09:00");
        assert_eq!(
            sidecar.audio_start.to_rfc3339(),
            "2026-11-28T09:59:59+09:00"
        );
        assert_eq!(sidecar.captions.len(), 1);
        assert_eq!(sidecar.captions[0].text, "before");
        assert_eq!(sidecar.captions[0].at_secs, 0.5);
        let sidecar: Sidecar =
            serde_json::from_slice(&std::fs::read(channel_dir.join("2026-11-28T10.json")).unwrap())
                .unwrap();
        assert_eq!(
            sidecar.audio_start.to_rfc3339(),
            "2026-11-28T10:00:00+09:00"
        );
        assert_eq!(sidecar.captions[0].text, "after");
        assert_eq!(sidecar.captions[0].at_secs, 0.5);
    }

    #[test]
    fn missed_frames_advance_the_timeline_instead_of_shrinking_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = writer(dir.path());
        let start = at("2026-11-28T09:10:00+09:00");
        for n in 0..10u64 {
            w.handle(Command::Frame {
                samples: tone(n),
                at: start,
            });
        }
        w.handle(Command::Skip { frames: 40 });
        for n in 0..10u64 {
            w.handle(Command::Frame {
                samples: tone(n),
                at: start,
            });
        }
        // A frame received 10 s later than the timeline: the playout skipped ahead.
        w.handle(Command::Frame {
            samples: tone(0),
            at: start + chrono::Duration::seconds(11),
        });
        w.close();
        let path = dir.path().join("radio24/2026-11-28T09.ogg");
        let (_, _, decoded, _) = decode(&path);
        assert_eq!(decoded, 21 * FRAME);
        let granule = last_granule(&path).unwrap().unwrap();
        assert_eq!(
            granule,
            551 * FRAME as u64,
            "11 s of programme and one frame"
        );
    }

    #[test]
    fn an_hour_whose_file_exists_is_left_alone_and_the_next_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let channel_dir = dir.path().join("radio24");
        std::fs::create_dir_all(&channel_dir).unwrap();
        std::fs::write(channel_dir.join("2026-11-28T09.ogg"), b"earlier").unwrap();
        let (mut w, _) = writer(dir.path());
        let start = at("2026-11-28T09:59:59.9+09:00");
        feed(&mut w, start, 10);
        w.close();
        assert_eq!(
            std::fs::read(channel_dir.join("2026-11-28T09.ogg")).unwrap(),
            b"earlier"
        );
        assert_eq!(decode(&channel_dir.join("2026-11-28T10.ogg")).2, 5 * FRAME);
    }

    #[test]
    fn a_disk_error_loses_the_hour_not_the_recorder() {
        let dir = tempfile::tempdir().unwrap();
        // The channel's folder cannot be created: a file is in the way.
        std::fs::write(dir.path().join("radio24"), b"in the way").unwrap();
        let (mut w, recording) = writer(dir.path());
        let start = at("2026-11-28T09:59:59+09:00");
        let frame = |n: u64| Command::Frame {
            samples: tone(n),
            at: start + FRAME_TIME * i32::try_from(n).unwrap(),
        };
        for n in 0..20u64 {
            w.handle(frame(n));
        }
        assert_eq!(*lock(&recording), None);
        std::fs::remove_file(dir.path().join("radio24")).unwrap();
        for n in 20..50u64 {
            w.handle(frame(n));
        }
        assert_eq!(
            *lock(&recording),
            None,
            "the failed hour stays skipped until it ends"
        );
        // 10:00:00: a new hour, a new try.
        w.handle(frame(50));
        assert_eq!(
            lock(&recording)
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("2026-11-28T10.ogg")
        );
    }

    #[test]
    fn retention_deletes_whole_hours_older_than_the_limit_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "2026-11-14T08.ogg",
            "2026-11-14T08.json",
            "2026-11-14T09.ogg",
            "2026-11-14T10.ogg",
            "2026-11-28T09.ogg",
            "notes.txt",
            "2026-11-01T00.ogg.bak",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let now = at("2026-11-28T10:30:00+09:00");
        let tz = chrono_tz::Asia::Tokyo;
        assert_eq!(delete_expired(dir.path(), tz, now, 0).unwrap(), 0);
        // 14 days before now is 2026-11-14T10:30: hours ending by then go.
        assert_eq!(delete_expired(dir.path(), tz, now, 14).unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "2026-11-01T00.ogg.bak",
                "2026-11-14T10.ogg",
                "2026-11-28T09.ogg",
                "notes.txt"
            ]
        );
        assert_eq!(
            delete_expired(&dir.path().join("missing"), tz, now, 14).unwrap(),
            0
        );
    }

    #[test]
    fn the_last_whole_page_gives_the_length_even_mid_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = writer(dir.path());
        let start = at("2026-11-28T09:10:00+09:00");
        feed(&mut w, start, 25);
        let path = dir.path().join("radio24/2026-11-28T09.ogg");
        // 24 frames encoded (one held back), pages of 10: the last whole page ends at 20.
        assert_eq!(last_granule(&path).unwrap(), Some(20 * FRAME as u64));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"OggS\0\0partial");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(last_granule(&path).unwrap(), Some(20 * FRAME as u64));
        let mut lengths = LengthCache::default();
        let listing = list_recordings(
            &dir.path().join("radio24"),
            chrono_tz::Asia::Tokyo,
            None,
            &mut lengths,
        )
        .unwrap();
        assert_eq!(listing.len(), 1);
        assert_eq!(listing[0].duration_secs, 0.4);
        assert_eq!(
            listing[0].hour_start.to_rfc3339(),
            "2026-11-28T09:00:00+09:00"
        );
        assert_eq!(
            listing[0]
                .captions
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("2026-11-28T09.json")
        );
        assert!(listing[0].complete);
    }

    #[test]
    fn listings_read_a_recordings_tail_again_only_after_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = writer(dir.path());
        feed(&mut w, at("2026-11-28T09:10:00+09:00"), 25);
        let channel_dir = dir.path().join("radio24");
        let path = channel_dir.join("2026-11-28T09.ogg");
        let list = |lengths: &mut LengthCache| {
            list_recordings(&channel_dir, chrono_tz::Asia::Tokyo, None, lengths).unwrap()[0]
                .duration_secs
        };
        let mut lengths = LengthCache::default();
        assert_eq!(list(&mut lengths), 0.4);

        // The tail overwritten in place, size and modification time kept: not read again.
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last_page = bytes.windows(4).rposition(|w| w == b"OggS").unwrap();
        // The last page's granule position says 100 s now.
        bytes[last_page + 6..last_page + 14]
            .copy_from_slice(&(100 * u64::from(RATE)).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(list(&mut lengths), 0.4, "the cached length");
        let now_says = list(&mut LengthCache::default());
        assert_eq!(now_says, 100.0, "the tail read afresh");

        // Written to (it grew): read again.
        bytes.extend_from_slice(b"more");
        std::fs::write(&path, &bytes).unwrap();
        let afresh = list(&mut LengthCache::default());
        assert_ne!(afresh, 100.0);
        assert_eq!(list(&mut lengths), afresh);

        // Deleted: forgotten.
        std::fs::remove_file(&path).unwrap();
        assert!(
            list_recordings(&channel_dir, chrono_tz::Asia::Tokyo, None, &mut lengths)
                .unwrap()
                .is_empty()
        );
        assert!(lengths.granules.is_empty());
    }
}
