//! Graceful shutdown (issue 12, item 6): the real binary (`serve --role all`, SQLite, the
//! archive on, the offline voice) gets SIGTERM while a `/ws/broadcast` client listens and
//! the archive records. It exits 0 within 10 s, the client gets a close frame with 1001
//! (going away), and the hour's archive file decodes to its end, its last page flagged
//! end-of-stream.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    ADMIN_TOKEN, Deadline, PATIENCE, PROGRAMME_PATIENCE, WsClient, WsRead, config_dir, poll_until,
};

/// The bound the issue sets on a shutdown, from SIGTERM to the process's exit.
const SHUTDOWN: Duration = Duration::from_secs(10);

/// Audio in the hour's file before the signal: a few seconds (64 kbit/s ≈ 8 KB/s).
const RECORDED_BYTES: u64 = 24 * 1024;

/// The `.ogg` files under `dir`, recursively.
fn ogg_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(ogg_files(&path));
        } else if path.extension().is_some_and(|e| e == "ogg") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Decodes an Ogg/Opus file to its end: (audio packets decoded, the last page's
/// end-of-stream flag). Fails on a page that does not parse, a packet that does not
/// decode, or bytes after the last whole page.
fn decode_to_end(path: &Path) -> (usize, bool) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes.clone()));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut packets = 0;
    let mut last_in_stream = false;
    while let Some(packet) = reader
        .read_packet()
        .unwrap_or_else(|e| panic!("{}: a page does not parse: {e}", path.display()))
    {
        packets += 1;
        last_in_stream = packet.last_in_stream();
        if packets <= 2 {
            continue; // OpusHead, OpusTags
        }
        let mut out = vec![0i16; 5760];
        decoder
            .decode(&packet.data, &mut out, false)
            .unwrap_or_else(|e| {
                panic!("{}: packet {packets} does not decode: {e}", path.display())
            });
    }
    // The pages, walked by hand: whole, back to back, to the last byte, and the flag on the
    // last one's header.
    let mut at = 0;
    let mut eos = false;
    while at < bytes.len() {
        assert_eq!(
            &bytes[at..at + 4],
            b"OggS",
            "{}: no page at byte {at}",
            path.display()
        );
        let segments = bytes[at + 26] as usize;
        let body: usize = bytes[at + 27..at + 27 + segments]
            .iter()
            .map(|&b| b as usize)
            .sum();
        eos = bytes[at + 5] & 0x04 != 0;
        at += 27 + segments + body;
    }
    assert_eq!(at, bytes.len(), "{}: a page is cut short", path.display());
    assert_eq!(eos, last_in_stream);
    (packets - 2, eos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_ends_the_archive_file_and_exits_0_within_10s() {
    radio24::install_crypto_provider();
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_radio24"))
        .args(["serve", "--role", "all", "--config-dir"])
        .arg(config_dir())
        .env_remove("DATABASE_URL")
        .env_remove("POSTGRES_HOST")
        .env_remove("OPENAI_API_KEY")
        .env("RADIO24__SERVER__PORT", port.to_string())
        .env(
            "RADIO24__DATABASE__SQLITE_PATH",
            data.path().join("radio24.db"),
        )
        .env("RADIO24__AUTH__ADMIN_TOKEN", ADMIN_TOKEN)
        .env(
            "RADIO24__AUTH__ADMIN_TOKEN_FILE",
            data.path().join("admin-token"),
        )
        .env("RADIO24__ARCHIVE__DIR", &archive)
        // The offline voice when espeak-ng is there (captions only when it is not): the
        // archive records either way.
        .env("RADIO24__VOICE__BACKEND", "auto")
        .env("RADIO24__WRITER__BACKEND", "template")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the radio24 binary starts");
    // Killed if the test fails before the process ends.
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id().to_string();
    let child = Reap(&mut child);

    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/health");
    poll_until(
        "the station to answer /health",
        PATIENCE,
        Duration::from_millis(100),
        async || match client.get(&health).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    let mut ws = WsClient::connect(&format!(
        "ws://127.0.0.1:{port}/ws/broadcast?channel=radio24"
    ))
    .await;
    assert_eq!(ws.next_json().await["type"], "snapshot");
    let recording = poll_until(
        "some audio in the archive",
        PROGRAMME_PATIENCE,
        Duration::from_millis(200),
        async || {
            let files = ogg_files(&archive);
            match files.last() {
                Some(f) if std::fs::metadata(f).map_or(0, |m| m.len()) >= RECORDED_BYTES => {
                    Ok(f.clone())
                }
                _ => Err(format!("{files:?}")),
            }
        },
    )
    .await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
    let signalled = Instant::now();

    // The socket is told to go away (and may see captions before that).
    let mut deadline = Deadline::new("the close frame", PATIENCE);
    let close = loop {
        match deadline.step(ws.read()).await {
            WsRead::Json(frame) => deadline.saw(frame["type"].clone()),
            WsRead::Closed(close) => break close,
        }
    };
    let (code, reason) = close.expect("a close frame, not a cut connection");
    assert_eq!(code, 1001, "close code (reason {reason:?})");

    let exit = poll_until(
        "the process to exit",
        SHUTDOWN * 2,
        Duration::from_millis(50),
        async || match child.0.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".into()),
            Err(e) => Err(e.to_string()),
        },
    )
    .await;
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < SHUTDOWN,
        "exited {took:?} after SIGTERM (the bound is {SHUTDOWN:?})"
    );

    // Every recording decodes to its end, and ends its stream.
    let files = ogg_files(&archive);
    assert!(files.contains(&recording), "{files:?}");
    for file in &files {
        let (packets, ended) = decode_to_end(file);
        assert!(packets > 0, "{}: no audio", file.display());
        assert!(
            ended,
            "{}: the last page is not end-of-stream",
            file.display()
        );
    }
    let sidecar = recording.with_extension("json");
    let captions: Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert_eq!(captions["channel"], "radio24", "{captions}");
}
