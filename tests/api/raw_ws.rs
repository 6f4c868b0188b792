//! A WebSocket client that writes its own frame headers over plain TCP, so tests can send
//! what no well-behaved library would: headers that claim terabytes, endless fragments, ping
//! floods from a client that never reads.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Deadline, PATIENCE};

pub struct RawWs {
    pub tcp: TcpStream,
    /// Bytes read after the handshake and not yet parsed into frames.
    buffered: Vec<u8>,
}

/// A frame from the server (servers do not mask).
#[derive(Debug)]
pub struct ServerFrame {
    /// The last frame of its message.
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A masked client frame header for `len` payload bytes (the mask is all zeroes, so the
/// payload goes on the wire as it is).
pub fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xffff => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A whole masked client frame of `payload`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(fin, opcode, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

impl RawWs {
    /// Opens `path` as [`RawWs::open`] does, on a socket whose receive buffer is 2 KiB, so a
    /// client that stops reading backs up the server's sends after little.
    pub async fn open_with_small_receive_buffer(port: u16, path: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        Self::open(port, path, Some(tcp)).await
    }

    /// Opens `path` on `port` with a hand-written upgrade request, on `tcp` if given (for a
    /// socket with small buffers), and reads the 101 answer.
    pub async fn open(port: u16, path: &str, tcp: Option<TcpStream>) -> Self {
        let mut tcp = match tcp {
            Some(tcp) => tcp,
            None => TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buffered = Vec::new();
        let end = loop {
            if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
                .await
                .expect("upgrade answered in time")
                .unwrap();
            assert!(n > 0, "connection closed during the upgrade");
            buffered.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffered[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buffered.drain(..end);
        Self { tcp, buffered }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// The next frame, or `None` once the server has closed the connection.
    pub async fn next_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.buffered) {
                self.buffered.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffered.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until a close frame and returns its code; fails the test if the server neither
    /// closes nor drops the connection within `PATIENCE`.
    pub async fn close_code(&mut self, what: &str) -> Option<u16> {
        let mut deadline = Deadline::new(what, PATIENCE);
        loop {
            match deadline.step(self.next_frame()).await {
                Some(frame) if frame.opcode == 8 => return frame.close_code(),
                Some(frame) => deadline.saw(format!(
                    "opcode {} ({} bytes)",
                    frame.opcode,
                    frame.payload.len()
                )),
                None => return None,
            }
        }
    }
}

fn parse(bytes: &[u8]) -> Option<(ServerFrame, usize)> {
    let [first, second, ..] = bytes[..] else {
        return None;
    };
    let (len, at) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        short => (short as usize, 2),
    };
    let payload = bytes.get(at..at + len)?.to_vec();
    Some((
        ServerFrame {
            fin: first & 0x80 != 0,
            opcode: first & 0x0f,
            payload,
        },
        at + len,
    ))
}
