//! A provider that fails at the wire in ways wiremock cannot: an answer that stalls after
//! part of its body, a body cut short by a closed connection, a well-formed answer of bytes
//! we choose (random bytes or silence labelled as audio). Requests to one path
//! (`POST /v1/audio/speech`, say) get the fault; every other connection is passed through to
//! an upstream fake (the wiremock [`crate::fake_openai::FakeOpenAi`]), so one
//! `openai.base_url` serves the rest of the API as usual.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the faulty path answers.
#[derive(Clone, Debug)]
pub enum Fault {
    /// `200` with `content_type` and a `Content-Length` of twice `sent`, `sent` bytes, then
    /// nothing more while the connection stays open.
    StallMidBody {
        content_type: &'static str,
        sent: Vec<u8>,
    },
    /// `200` with `content_type` and a `Content-Length` of twice `sent`, `sent` bytes, then
    /// the connection closed.
    CutMidBody {
        content_type: &'static str,
        sent: Vec<u8>,
    },
    /// `200` with `content_type` and all of `body`: a whole, well-formed answer.
    Answer {
        content_type: &'static str,
        body: Vec<u8>,
    },
}

/// The faulty server; counts the requests that got the fault.
pub struct FaultyProvider {
    pub base_url: String,
    pub faulted: Arc<AtomicU64>,
}

impl FaultyProvider {
    /// Serves `fault` to `POST {path}` (e.g. `/v1/audio/speech`) and passes every other
    /// connection on to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, path: &str, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let request_line = format!("POST {path} ");
        let faulted = Arc::new(AtomicU64::new(0));
        let count = faulted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let request_line = request_line.clone();
                let fault = fault.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    if starts_with(&tcp, request_line.as_bytes()).await {
                        serve(tcp, &fault, &count).await;
                    } else if let Ok(mut to) = TcpStream::connect(&upstream).await {
                        let mut tcp = tcp;
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut to).await;
                    }
                });
            }
        });
        Self { base_url, faulted }
    }

    /// Requests that got the fault so far.
    pub fn faulted(&self) -> u64 {
        self.faulted.load(Ordering::Relaxed)
    }
}

/// Whether the bytes waiting on `tcp` start with `prefix` (peeked, not read): decided as soon
/// as the bytes so far differ from it, or once there are enough of them.
async fn starts_with(tcp: &TcpStream, prefix: &[u8]) -> bool {
    let mut buf = vec![0u8; prefix.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match tcp.peek(&mut buf).await {
            Ok(n) if n >= prefix.len() => return buf.starts_with(prefix),
            Ok(0) | Err(_) => return false,
            Ok(n) if !prefix.starts_with(&buf[..n]) => return false,
            // A prefix of `prefix` so far: peek returns at once while those bytes wait.
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    false
}

/// Reads one request (head, then as much body as `Content-Length` says) so the client is
/// not cut off while it still sends; false when the client went away first.
async fn read_request(tcp: &mut TcpStream) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while seen.len() - head_end < length {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

fn head(content_type: &str, length: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\
         connection: close\r\n\r\n"
    )
    .into_bytes()
}

async fn serve(mut tcp: TcpStream, fault: &Fault, count: &AtomicU64) {
    // One request per connection (every answer says `connection: close`).
    if !read_request(&mut tcp).await {
        return;
    }
    count.fetch_add(1, Ordering::Relaxed);
    match fault {
        Fault::StallMidBody { content_type, sent } => {
            let _ = tcp.write_all(&head(content_type, sent.len() * 2)).await;
            let _ = tcp.write_all(sent).await;
            let _ = tcp.flush().await;
            // Hold the connection until the client gives up on it.
            let mut buf = [0u8; 1024];
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Fault::CutMidBody { content_type, sent } => {
            let _ = tcp.write_all(&head(content_type, sent.len() * 2)).await;
            let _ = tcp.write_all(sent).await;
            let _ = tcp.flush().await;
            let _ = tcp.shutdown().await;
        }
        Fault::Answer { content_type, body } => {
            let mut answer = head(content_type, body.len());
            answer.extend_from_slice(body);
            let _ = tcp.write_all(&answer).await;
            let _ = tcp.flush().await;
            let _ = tcp.shutdown().await;
        }
    }
}

/// `secs` of a `hz` tone at `amplitude`, 24 kHz s16le (the speech endpoint's `pcm`).
pub fn tone_pcm(hz: f64, secs: f64, amplitude: f64) -> Vec<u8> {
    (0..(24_000.0 * secs) as usize)
        .flat_map(|i| {
            let t = i as f64 / 24_000.0;
            (((t * hz * std::f64::consts::TAU).sin() * amplitude) as i16).to_le_bytes()
        })
        .collect()
}
