//! Retention: the hours older than `archive.retention_days` are deleted (at start and at
//! every hour change, by the writer thread).

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::ArchiveError;
use super::hours::hour_start;
use crate::bus::archive::ArchiveFileName;

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
