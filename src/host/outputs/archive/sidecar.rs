//! Caption sidecars: the JSON file beside each hour's audio with the captions that aired in
//! it, each timed from the file's first sample, rewritten atomically as captions come.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ArchiveError;
use crate::domain::ChannelName;

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
pub(super) struct TimedCaption {
    pub(super) at: DateTime<Utc>,
    pub(super) segment_id: Uuid,
    pub(super) text: String,
}

/// A sidecar and where it goes.
pub(super) struct SidecarFile {
    pub(super) path: PathBuf,
    pub(super) audio_start: DateTime<Utc>,
    /// Programme seconds the audio covers, once its file is closed.
    pub(super) closed_secs: Option<f64>,
    pub(super) content: Sidecar,
}

impl SidecarFile {
    pub(super) fn add(&mut self, caption: TimedCaption) {
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
    pub(super) fn write(&self) -> Result<(), ArchiveError> {
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
    pub(super) fn close(&mut self, secs: f64) {
        self.closed_secs = Some(secs);
        for caption in &mut self.content.captions {
            caption.at_secs = caption.at_secs.min(secs);
        }
    }
}
