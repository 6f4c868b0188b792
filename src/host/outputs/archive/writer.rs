//! The writer thread of one channel's recorder: frames and captions in, one Ogg/Opus file per
//! station-clock hour out (with its caption sidecar), on the programme's timeline.

use std::collections::VecDeque;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;

use super::hours::hour_of;
use super::retention::delete_expired;
use super::sidecar::{Sidecar, SidecarFile, TimedCaption};
use super::{ArchiveConfig, ArchiveError};
use crate::bus::archive::{ArchiveFileKind, ArchiveFileName};
use crate::domain::ChannelName;
use crate::host::audio::{FRAME, RATE};
use crate::host::outputs::ogg_stream::{OggEncoder, OggStreamConfig};
use crate::sync::lock;

/// 20 ms packets per Ogg page of a recording: a page reaches the disk every 200 ms.
const PAGE_PACKETS: usize = 10;
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
/// Length of one frame on the programme clock.
pub(super) const FRAME_TIME: chrono::Duration = chrono::Duration::milliseconds(20);
/// How long a recorder whose writes failed waits before trying the disk again.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// An hour whose file could not be created, and when to try again.
#[derive(Debug, Clone, Copy)]
struct OpenRetry {
    hour: DateTime<Utc>,
    at: Instant,
    failures: u64,
}

/// What a recorder's task sends its writer thread.
#[derive(Debug)]
pub(super) enum Command {
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

/// The hour being recorded.
pub(super) struct HourFile {
    path: PathBuf,
    pub(super) file: std::fs::File,
    encoder: OggEncoder,
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
    /// Bytes of whole pages in the file: where a failed write is cut back to.
    pub(super) written: u64,
    /// Pages the encoder made that the disk has not taken yet, oldest first.
    pub(super) unwritten: VecDeque<Bytes>,
    /// While writes fail: when to try the disk again.
    pub(super) retry_at: Option<Instant>,
}

impl HourFile {
    fn write_pages(&mut self, pages: Vec<Bytes>) -> Result<(), ArchiveError> {
        self.unwritten.extend(pages);
        self.flush_pages()
    }

    /// Writes the held pages in order. On a failure the file is cut back to its last whole
    /// page (a page half written would break the stream) and the page stays held for the
    /// next try.
    fn flush_pages(&mut self) -> Result<(), ArchiveError> {
        while let Some(page) = self.unwritten.front() {
            if let Err(e) = self.file.write_all(page) {
                // Best effort: if even this fails, the next try cuts back again first.
                let _ = self.file.set_len(self.written);
                let _ = self.file.seek(SeekFrom::Start(self.written));
                return Err(ArchiveError::io(&self.path)(e));
            }
            self.written += page.len() as u64;
            crate::metrics::archive_written(&self.sidecar.content.channel, page.len());
            self.unwritten.pop_front();
        }
        Ok(())
    }

    /// Tries the held pages again, from the file's last whole page.
    fn retry_pages(&mut self) -> Result<(), ArchiveError> {
        let _ = self.file.set_len(self.written);
        self.file
            .seek(SeekFrom::Start(self.written))
            .map_err(ArchiveError::io(&self.path))?;
        self.flush_pages()
    }

    fn push(&mut self, samples: Arc<[i16]>) -> Result<(), ArchiveError> {
        let mut written = Ok(());
        if let Some(previous) = self.pending.take() {
            match self.encoder.encode(&previous) {
                Ok(pages) => written = self.write_pages(pages),
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
        // The frame is held even when the disk refused the pages before it: they are
        // written, in order, when it takes writes again.
        self.pending = Some(samples);
        written
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
pub(super) struct HourWriter {
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
    pub(super) current: Option<HourFile>,
    /// The hour closed last, kept for captions that arrive after its audio.
    previous: Option<SidecarFile>,
    /// Captions for an hour whose file is not open yet.
    early: VecDeque<TimedCaption>,
    /// An hour whose file could not be created: frames go by unrecorded until the retry
    /// time (every `write_retry`), then creating it is tried again.
    open_retry: Option<OpenRetry>,
    /// How long to wait before trying a disk that refused writes (or a file) again.
    pub(super) write_retry: Duration,
    /// Writes the disk refused, and frames that went by unrecorded meanwhile, since the
    /// failure began (both 0 while writes succeed).
    pub(super) refused_writes: u64,
    pub(super) missed_frames: u64,
}

impl HourWriter {
    pub(super) fn new(
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
            open_retry: None,
            write_retry: WRITE_RETRY,
            refused_writes: 0,
            missed_frames: 0,
        }
    }

    /// Runs until the task's side of the queue closes (the channel's playout ended).
    pub(super) fn run(mut self, mut commands: mpsc::Receiver<Command>, now: DateTime<Utc>) {
        self.delete_expired(now);
        while let Some(command) = commands.blocking_recv() {
            self.handle(command);
        }
        self.close();
        tracing::info!(channel = %self.channel, "archive: recorder stopped");
    }

    pub(super) fn handle(&mut self, command: Command) {
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
        if self.current.is_none() {
            let retry = self.open_retry.filter(|r| r.hour == hour_start);
            if retry.is_some_and(|r| Instant::now() < r.at) {
                return;
            }
            match self.open(hour_start, local_hour, t) {
                Ok(file) => {
                    if let Some(retry) = retry {
                        tracing::info!(channel = %self.channel, failed_tries = retry.failures, "archive: the hour's file could be created after all; recording from here");
                    }
                    self.open_retry = None;
                    self.current = Some(file);
                }
                Err(e) => {
                    // Logged once an hour. A disk error is counted and tried again soon;
                    // every part of the hour taken is for good, so the next hour tries.
                    let failures = retry.map_or(0, |r| r.failures) + 1;
                    let every_part_taken = matches!(e, ArchiveError::Exists { .. });
                    if retry.is_none() {
                        tracing::error!(channel = %self.channel, error = %e, "archive: cannot create this hour's file; frames go by unrecorded until it can be (tried every {:?}, or at the next hour)", self.write_retry);
                    }
                    let wait = if every_part_taken {
                        Duration::from_secs(3600)
                    } else {
                        crate::metrics::archive_write_failed(&self.channel);
                        self.write_retry
                    };
                    self.open_retry = Some(OpenRetry {
                        hour: hour_start,
                        at: Instant::now() + wait,
                        failures,
                    });
                    return;
                }
            }
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if let Some(retry_at) = current.retry_at {
            // The disk refused the last write: this frame goes by as skipped (the timeline
            // keeps time) unless the disk takes the held pages now.
            let taken = Instant::now() >= retry_at && current.retry_pages().is_ok();
            if !taken {
                if Instant::now() >= retry_at {
                    self.refused_writes += 1;
                    crate::metrics::archive_write_failed(&self.channel);
                    current.retry_at = Some(Instant::now() + self.write_retry);
                }
                current.pending_skip += 1;
                self.missed_frames += 1;
                return;
            }
            current.retry_at = None;
            tracing::info!(channel = %self.channel, refused_writes = self.refused_writes, missed_frames = self.missed_frames, "archive: the disk takes writes again; recording resumes in the same file");
            self.refused_writes = 0;
            self.missed_frames = 0;
        }
        if let Err(e) = current.push(samples) {
            // Logged once for the whole failure (not per frame); the retries are counted.
            tracing::error!(channel = %self.channel, error = %e, "archive: writing failed; frames are skipped until the disk takes writes again (tried every {:?})", self.write_retry);
            self.refused_writes += 1;
            crate::metrics::archive_write_failed(&self.channel);
            current.retry_at = Some(Instant::now() + self.write_retry);
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
        let (name, path, mut file) = self.create_part(local_hour)?;
        let config = OggStreamConfig {
            bitrate: self.bitrate,
            page_packets: PAGE_PACKETS,
            listener_buffer_pages: 1,
        };
        let (encoder, headers) = OggEncoder::new(&self.channel, &config)?;
        let mut written = 0;
        for page in headers {
            file.write_all(&page).map_err(ArchiveError::io(&path))?;
            written += page.len() as u64;
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
            hour_end: hour_start + chrono::Duration::hours(1),
            pending: None,
            pending_skip: 0,
            placed: 0,
            sidecar,
            sidecar_dirty: false,
            sidecar_written: Instant::now(),
            sidecar_failed: false,
            encoder_failed: false,
            written,
            unwritten: VecDeque::new(),
            retry_at: None,
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

    /// Creates the hour's first audio file that does not exist yet: its first part, or,
    /// when the host restarted within the hour, the next part after those recorded before.
    fn create_part(
        &self,
        local_hour: NaiveDateTime,
    ) -> Result<(ArchiveFileName, PathBuf, std::fs::File), ArchiveError> {
        let mut name = ArchiveFileName::for_hour(local_hour, ArchiveFileKind::Audio);
        loop {
            let path = self.dir.join(name.to_string());
            // `create_new`: never appended to or overwritten, even by a second host.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok((name, path, file)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    name = name.next_part().ok_or(ArchiveError::Exists { path })?;
                }
                Err(e) => return Err(ArchiveError::io(&path)(e)),
            }
        }
    }

    /// Closes the hour being recorded, if any.
    pub(super) fn close(&mut self) {
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
