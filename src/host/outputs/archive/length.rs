//! A recording's length, read from the granule position of its last whole Ogg page, and the
//! cache that spares listings from reading every file's tail each time.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ArchiveError;
use crate::bus::archive::ArchiveFileName;

/// Bytes read back from the end of an audio file to find its last page.
const TAIL_BYTES: u64 = 128 * 1024;

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

/// The programme length of each recording a listing has read, by path, with the file's size
/// and modification time when it was read. A listing reads a file's tail again only when
/// either has changed, which is exactly when the recorder has written to it: a listing of 14
/// days (336 files) then reads one tail, the hour being recorded, instead of all of them.
#[derive(Default)]
pub(super) struct LengthCache {
    pub(super) granules: HashMap<PathBuf, (u64, Option<std::time::SystemTime>, u64)>,
}

impl LengthCache {
    /// The last granule position of the recording at `path`, of `meta`, read if need be.
    pub(super) fn granule(&mut self, path: &Path, meta: &std::fs::Metadata) -> u64 {
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
    pub(super) fn keep_only(&mut self, dir: &Path, listed: &BTreeMap<ArchiveFileName, PathBuf>) {
        let listed: std::collections::HashSet<&PathBuf> = listed.values().collect();
        self.granules
            .retain(|path, _| path.parent() != Some(dir) || listed.contains(path));
    }
}
