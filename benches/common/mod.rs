//! What the benchmarks share: command-line numbers, settings as a test run loads them, a
//! stream listener over loopback, and CPU time from /proc. Each benchmark uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use radio24::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The number after `name` on the command line, else `default`.
pub fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The shipped settings with `overrides` (env var names), as the tests load them.
pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    radio24::install_crypto_provider();
    let env: HashMap<String, String> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    match Settings::load(&dir, &env) {
        Ok(s) => s,
        Err(e) => panic!("settings: {e}"),
    }
}

/// CPU seconds (user + system) of process `pid` (`self` for this one), from /proc.
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum::<f64>()
        / 100.0
}

/// Opens a listener of the channel's HTTP stream on `port` that reads and discards it;
/// the task ends with the bytes it read, when the server ends the stream.
pub async fn listen(port: u16, channel: &str) -> Option<tokio::task::JoinHandle<u64>> {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    socket
        .write_all(
            format!("GET /v1/channels/{channel}/stream HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    Some(tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0u64;
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    }))
}
