//! What the fuzz targets share: cutting an input into the pieces a network or a pipe would
//! deliver (the station's parsers must give the same answer however the bytes are cut), and a
//! scratch file per fuzzing process for the code that reads from paths.

use std::path::{Path, PathBuf};

/// `data` cut into consecutive pieces at the lengths in `cuts` (each taken modulo what is
/// left, plus one, so every piece has at least one item); the rest is the last piece. Empty
/// data gives no pieces.
pub fn cut<'a, T>(data: &'a [T], cuts: &[u16]) -> Vec<&'a [T]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    for &len in cuts {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(usize::from(len) % rest.len() + 1);
        pieces.push(piece);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// A folder of this fuzzing process's own in the temporary folder (libFuzzer may run several
/// jobs side by side), created on first use and reused for every input.
pub fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("radio24-fuzz-{what}-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create the scratch folder {}: {e}", dir.display());
    }
    dir
}

/// Writes `bytes` to `path`, replacing what was there.
pub fn write_scratch(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("cannot write the scratch file {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn pieces_cover_the_data_in_order() {
        let data: Vec<u8> = (0..100).collect();
        let pieces = cut(&data, &[9, 0, 500]);
        assert_eq!(pieces.concat(), data);
        assert_eq!(pieces[0].len(), 10);
        assert_eq!(pieces[1].len(), 1);
        assert!(cut::<u8>(&[], &[3]).is_empty());
    }
}
