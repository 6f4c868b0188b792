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
//! skipped. A write that fails (a full disk) keeps the hour's file open: the file is cut
//! back to its last whole page, the refused pages are held, frames go by as skipped (the
//! timeline keeps time), and the writes are tried again every second until the disk takes
//! them, then recording carries on in the same file; the failure is logged once when it
//! starts and once when it ends, and every refused write is counted
//! (`radio24_archive_write_errors_total`). A file that cannot be opened at all ends that
//! hour; the recorder tries again at the next hour. The station never notices either. An
//! hour whose file already exists (the
//! host restarted within it) is left as it is, and the rest of the hour is recorded into a
//! second part beside it, `YYYY-MM-DDTHH.part2.ogg` with its `.part2.json` (a third after
//! another restart, and so on), listed and served like any file. At start and at every hour
//! change, the channel's files older than `archive.retention_days` are deleted.
//!
//! The module by job: [`hours`] (which station-clock hour a time is in, and when a file's
//! hour began), [`sidecar`] (the caption files), [`writer`] (the writer thread: Ogg/Opus
//! hour files and their sidecars), [`recorder`] (the async side feeding it),
//! [`retention`] (deleting old hours), [`length`] (a recording's length from its last
//! page), [`listing`] (a channel's recordings for the API), [`serve`] (a file as a byte
//! stream); here, the [`Archive`] that ties them together per channel.
//!
//! Config keys read here: `archive.dir`, `archive.retention_days`, `stream.bitrate`,
//! `station.timezone`.

mod hours;
mod length;
mod listing;
mod recorder;
mod retention;
mod serve;
mod sidecar;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::ogg_stream::EncoderError;
use crate::bus::archive::{
    ArchiveFile, ArchiveFileName, Recording, archive_disabled, unknown_recording,
};
use crate::bus::{BusError, HostEvent};
use crate::domain::ChannelName;
use crate::host::clock::Clock;
use crate::sync::lock;
use length::LengthCache;
pub use length::last_granule;
use listing::list_recordings;
use recorder::{QUEUE, Recorder, forward};
pub use retention::delete_expired;
use serve::read_stream;
pub use sidecar::{CaptionLine, Sidecar};
use writer::HourWriter;

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
        "{} already exists, the hour's last possible part (the host restarted within the hour that often?); recording resumes at the next hour",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
}

impl ArchiveError {
    pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
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

impl From<ArchiveError> for BusError {
    fn from(e: ArchiveError) -> Self {
        BusError::Internal(e.to_string())
    }
}

/// `Err(archive_disabled)` when there is no archive.
pub fn enabled(archive: Option<&Arc<Archive>>) -> Result<&Arc<Archive>, BusError> {
    archive.ok_or_else(archive_disabled)
}
