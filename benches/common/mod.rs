//! What the benchmarks share: command-line numbers, settings as a test run loads them, a
//! stream listener over loopback, and CPU time from /proc. Each benchmark uses part of it.
#![allow(dead_code)]

mod latency;
mod report;
// Not every benchmark reports latencies.
#[allow(unused_imports)]
pub use latency::Latencies;
#[allow(unused_imports)] // each benchmark uses part of it
pub use report::{Report, raise_fd_limit};

use std::collections::HashMap;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A release `radio24 serve` (role all unless started with [`start_server_as`]) in a child
/// process, on a free port, with a fresh SQLite file; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts [`Server`] with the espeak-ng voice when installed (else captions only), with
/// `env` added (setting names as environment variables), and waits until it accepts.
pub async fn start_server(env: &[(&str, &str)]) -> Server {
    start_server_as("all", env).await
}

/// [`start_server`] with `serve --role role`: `api` reaches its host at `bus.host_url`
/// (a benchmark's own fake host, to inject the host's events where a real host sends them).
pub async fn start_server_as(role: &str, env: &[(&str, &str)]) -> Server {
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("port: {e}"),
    };
    let data = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let voice = if Command::new("espeak-ng").arg("--version").output().is_ok() {
        "espeak-ng"
    } else {
        "none"
    };
    let child = Command::new(env!("CARGO_BIN_EXE_radio24"))
        .args(["serve", "--role", role, "--config-dir"])
        .arg(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"))
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .env("RADIO24__VOICE__BACKEND", voice)
        .env("RADIO24__AUTH__ADMIN_TOKEN", "bench")
        .env("RADIO24__DATABASE__SQLITE_PATH", data.path().join("r.db"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => panic!("spawn radio24: {e}"),
    };
    let server = Server {
        child,
        port,
        _data: data,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "radio24 did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let voice = env
        .iter()
        .find(|(k, _)| *k == "RADIO24__VOICE__BACKEND")
        .map_or(voice, |(_, v)| *v);
    println!("(server: release radio24, voice {voice}, default workers: 4 per core)");
    server
}

/// Resident memory of process `pid`, in MB (VmRSS from /proc).
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A multi-threaded runtime with I/O and timers, as every benchmark's `main` runs on.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}
