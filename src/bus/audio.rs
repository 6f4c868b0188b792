//! The live audio stream as it crosses the bus: an Ogg/Opus stream cut into whole pages
//! ([`AudioStream`]), a page splitter for byte streams that arrive in arbitrary chunks
//! ([`PageSplitter`]), and the per-listener fan-out both sides use ([`listener_stream`]):
//! header pages first, then live pages through a bounded queue; a listener that falls behind
//! is dropped instead of slowing anyone down. No codec here: this module only reads Ogg page
//! headers, so an API-only build carries no Opus.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{broadcast, mpsc};

/// A channel's live Ogg/Opus stream. Each item is exactly one whole Ogg page; the first two
/// are the header pages (`OpusHead`, then `OpusTags`), the rest are live audio pages of the
/// same logical stream (same serial, increasing granule positions). It ends when the
/// channel goes away, the connection to the host is lost, or the listener is dropped for
/// falling behind.
pub type AudioStream = BoxStream<'static, Bytes>;

/// Fixed part of an Ogg page header.
const HEADER_LEN: usize = 27;

/// The stream is not Ogg (or is corrupt): the capture pattern is missing where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an Ogg stream: no page starts here")]
pub struct NotOgg;

/// Cuts a byte stream into whole Ogg pages.
#[derive(Default)]
pub struct PageSplitter {
    buf: BytesMut,
}

impl PageSplitter {
    /// An empty splitter. It never holds more than one page plus one chunk: a page's header
    /// bounds its length (at most 65 307 bytes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole page, if one is buffered.
    pub fn next_page(&mut self) -> Result<Option<Bytes>, NotOgg> {
        let prefix = self.buf.len().min(4);
        if self.buf[..prefix] != b"OggS"[..prefix] {
            return Err(NotOgg);
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let segments = usize::from(self.buf[26]);
        if self.buf.len() < HEADER_LEN + segments {
            return Ok(None);
        }
        let body: usize = self.buf[HEADER_LEN..HEADER_LEN + segments]
            .iter()
            .map(|l| usize::from(*l))
            .sum();
        let len = HEADER_LEN + segments + body;
        if self.buf.len() < len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// The granule position of a page (for Opus: 48 kHz samples since the stream began).
pub fn granule_position(page: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = page.get(6..14)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Counts a listener for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One listener of a fan-out: the `headers`, then every page `pages` delivers, through a
/// queue of `buffer` pages. A small task per listener moves pages from the shared broadcast
/// to the listener's own queue and never waits on it: when the queue is full or the
/// broadcast receiver lags, the listener is dropped (its stream ends after what is queued).
/// That is what keeps a stalled socket from delaying the producer or the other listeners
/// — the HTTP server stops polling a body whose socket is full, so a lag would otherwise go
/// unnoticed. `counter` counts the listener until it is dropped or goes away.
pub fn listener_stream(
    headers: Vec<Bytes>,
    mut pages: broadcast::Receiver<Bytes>,
    counter: Arc<AtomicUsize>,
    buffer: usize,
    what: &'static str,
) -> AudioStream {
    let (tx, rx) = mpsc::channel(buffer.max(headers.len() + 1));
    let counted = Counted::new(counter);
    tokio::spawn(async move {
        let _counted = counted;
        for page in headers {
            if tx.try_send(page).is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                // The listener went away (disconnected): stop counting it at once.
                () = tx.closed() => return,
                page = pages.recv() => match page {
                    Ok(page) => match tx.try_send(page) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::info!(what, "a stream listener fell {buffer} pages behind; dropped");
                            return;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(what, missed, "a stream listener lagged; dropped");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(granule: u64, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS".to_vec();
        p.push(0); // version
        p.push(0); // flags
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&[0; 12]); // serial, sequence, crc
        p.push(1);
        p.push(body.len() as u8);
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn pages_are_cut_whole_whatever_the_chunking() {
        let mut bytes = page(1, b"hello");
        bytes.extend(page(2, b"world!"));
        for chunk in [1, 3, 7, 100] {
            let mut splitter = PageSplitter::new();
            let mut out = Vec::new();
            for piece in bytes.chunks(chunk) {
                splitter.push(piece);
                while let Some(p) = splitter.next_page().unwrap() {
                    out.push(p);
                }
            }
            assert_eq!(out.len(), 2);
            assert_eq!(granule_position(&out[0]), Some(1));
            assert_eq!(&out[1][..], &page(2, b"world!")[..]);
        }
    }

    #[test]
    fn bytes_that_are_not_ogg_are_refused() {
        let mut splitter = PageSplitter::new();
        splitter.push(b"HTTP/1.1 200 OK");
        assert_eq!(splitter.next_page(), Err(NotOgg));
    }

    #[tokio::test]
    async fn a_listener_that_does_not_read_is_dropped_and_uncounted() {
        let (tx, _) = broadcast::channel(16);
        let counter = Arc::new(AtomicUsize::new(0));
        let headers = vec![Bytes::from_static(b"h1"), Bytes::from_static(b"h2")];
        let mut reader = listener_stream(headers.clone(), tx.subscribe(), counter.clone(), 4, "t");
        let _stalled = listener_stream(headers, tx.subscribe(), counter.clone(), 4, "t");
        tokio::task::yield_now().await;
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        assert_eq!(reader.next().await.unwrap(), "h1");
        assert_eq!(reader.next().await.unwrap(), "h2");
        for i in 0..20u8 {
            tx.send(Bytes::from(vec![i])).unwrap();
            assert_eq!(reader.next().await.unwrap(), Bytes::from(vec![i]));
        }
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        drop(reader);
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while counter.load(Ordering::Relaxed) > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }
}
