//! The recorder's async side: it follows the playout's frames and the channel's captions and
//! forwards them, through a bounded queue, to the writer thread; [`Recorder`] holds both.

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::sidecar::TimedCaption;
use super::writer::Command;
use crate::bus::HostEvent;
use crate::bus::archive::ArchiveFileName;
use crate::domain::ChannelName;
use crate::host::clock::Clock;

/// Frames and captions queued between a recorder's task and its writer thread (5 s of
/// frames): past that, the recorder misses frames and they count as skipped.
pub(super) const QUEUE: usize = 256;

/// A channel's running recorder; dropping it stops the recording (the file is closed).
pub(super) struct Recorder {
    pub(super) task: JoinHandle<()>,
    pub(super) recording: Arc<Mutex<Option<ArchiveFileName>>>,
    /// Tells the task to forward what the playout has sent, then stop ([`Archive::finish`]).
    pub(super) finish: Option<oneshot::Sender<()>>,
    /// The writer thread, which closes the hour's file when the task's queue closes.
    pub(super) writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The recorder's async side: frames and this channel's captions into the writer's queue.
pub(super) async fn forward(
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
