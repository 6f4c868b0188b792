//! Benchmark: what hostile WebSocket clients make the server hold.
//!
//! `cargo bench --bench bounds` (optionally `-- --clients 50 --megabytes 20`).
//! A release `radio24 serve` runs in a child process. N clients open `/ws/broadcast` by hand
//! over TCP, each sends a binary frame header claiming 2^40 bytes, then writes M MB of payload
//! as fast as the server takes it (1 MiB writes, stopping when the server closes). The
//! server's VmRSS is sampled every 5 ms: before, at its peak during, and 3 s after the last
//! client ends. Before the frame guard, one such client grew the server by ~400 MB.

mod common;

use std::time::{Duration, Instant};

use common::{Report, Server, arg, raise_fd_limit, rss_mb, runtime, start_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens `/ws/broadcast` over plain TCP and returns the socket after the 101 answer.
async fn open_socket(port: u16) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = "GET /ws/broadcast HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(tcp)
}

/// One hostile client: the header, then `bytes` of payload; how many were written before
/// the server stopped taking them.
async fn bomb(port: u16, bytes: usize) -> Option<usize> {
    let mut tcp = open_socket(port).await?;
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.ok()?;
    let chunk = vec![0x42u8; 1 << 20];
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min(bytes - written);
        match tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&chunk[..n])).await {
            Ok(Ok(())) => written += n,
            _ => break,
        }
    }
    Some(written)
}

async fn run(server: &Server, clients: usize, megabytes: usize) {
    let pid = server.child.id();
    // Settle, then the baseline.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_mb(pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(bomb(server.port, megabytes << 20)))
        .collect();
    let mut peak = before;
    while !tasks.iter().all(|t| t.is_finished()) {
        peak = peak.max(rss_mb(pid));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let mut opened = 0;
    let mut written = 0usize;
    for task in tasks {
        if let Ok(Some(n)) = task.await {
            opened += 1;
            written += n;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mb(pid);
    let mut report = Report::new(
        "Hostile WebSocket clients: what they make the server hold",
        &[
            "clients (upgraded)",
            "written before the server closed them",
            "RSS before",
            "peak during",
            "growth",
            "3 s after",
        ],
    );
    report.row(&[
        format!("{clients} ({opened})"),
        format!(
            "{:.1} MB in {:.1} s",
            written as f64 / 1e6,
            took.as_secs_f64()
        ),
        format!("{before:.1} MB"),
        format!("{peak:.1} MB"),
        format!("**{:.1} MB**", peak - before),
        format!("{after:.1} MB"),
    ]);
    report.note(format!(
        "Each client sends a binary frame header claiming 2^40 bytes, then up to {megabytes} MB of payload."
    ));
    report.finish();
}

fn main() {
    let clients = arg("--clients", 50.0) as usize;
    let megabytes = arg("--megabytes", 20.0) as usize;
    raise_fd_limit();
    let runtime = runtime();
    runtime.block_on(async {
        let server = start_server(&[("RADIO24__VOICE__BACKEND", "none")]).await;
        run(&server, clients, megabytes).await;
    });
}
