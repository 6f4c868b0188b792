//! A channel's recordings as the API lists them: each hour's audio file, its captions, its
//! size and programme length, and whether it is still being recorded.

use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;

use super::ArchiveError;
use super::hours::hour_start;
use super::length::LengthCache;
use crate::bus::archive::{ArchiveFileKind, ArchiveFileName, Recording};
use crate::host::audio::RATE;

/// Lists the recordings in a channel's folder, newest first. `recording` is the file being
/// written now; `lengths` keeps what earlier listings read.
pub(super) fn list_recordings(
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
            part: name.part(),
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
