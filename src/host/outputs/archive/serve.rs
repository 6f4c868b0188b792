//! Serving a recording: its file read from disk a chunk at a time, so a whole hour is never
//! held in memory.

use bytes::Bytes;
use tokio::io::AsyncReadExt;

/// Bytes read from disk at a time when a file is served.
const READ_CHUNK: usize = 64 * 1024;

/// The first `length` bytes of `file`, a chunk at a time (a file being recorded grows; what
/// was promised is what is sent).
pub(super) fn read_stream(
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
