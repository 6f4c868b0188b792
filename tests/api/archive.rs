//! The programme archive end to end: the station (role all) records on a virtual clock
//! across the top of an hour, and the API lists the two hourly recordings and serves their
//! audio (decoded here with the `ogg` and `opus` crates) and captions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use radio24::cli::Role;
use radio24::host::clock::{Clock, ScaledClock};
use serde_json::Value;

use crate::helpers::{PATIENCE, TestApp, poll_until};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// What an Ogg/Opus file holds.
#[derive(Debug)]
struct Decoded {
    serials: Vec<u32>,
    head: bool,
    tags: bool,
    /// Seconds of audio the packets decode to.
    secs: f64,
    /// The last page read was flagged end-of-stream.
    ended: bool,
}

/// Decodes an Ogg/Opus file. A file still being recorded may end in a page not yet whole:
/// with `growing`, decoding stops there instead of failing.
fn decode(bytes: &[u8], growing: bool) -> Decoded {
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes.to_vec()));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut decoded = Decoded {
        serials: Vec::new(),
        head: false,
        tags: false,
        secs: 0.0,
        ended: false,
    };
    let mut samples = 0;
    let mut n = 0;
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(e) if growing && n > 2 => {
                eprintln!("stopped at the growing end of the file: {e}");
                break;
            }
            Err(e) => panic!("not a valid Ogg stream: {e}"),
        };
        n += 1;
        if !decoded.serials.contains(&packet.stream_serial()) {
            decoded.serials.push(packet.stream_serial());
        }
        decoded.ended = packet.last_in_stream();
        match n {
            1 => decoded.head = packet.data.starts_with(b"OpusHead"),
            2 => decoded.tags = packet.data.starts_with(b"OpusTags"),
            _ => {
                let mut out = vec![0i16; 5760];
                samples += decoder.decode(&packet.data, &mut out, false).unwrap();
            }
        }
    }
    decoded.secs = samples as f64 / 48_000.0;
    decoded
}

async fn get_bytes(app: &TestApp, path: &str, content_type: &str) -> Vec<u8> {
    let resp = app.get(path).await;
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        content_type,
        "{path}"
    );
    let length: Option<usize> = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(length, Some(body.len()), "{path}: Content-Length");
    body
}

fn secs(value: &Value) -> f64 {
    value.as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_of_the_hour_cuts_the_recording_into_two_files_the_api_serves() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().to_str().unwrap().to_owned();
    // 30 s of programme before 10:00 in Tokyo, 10 times faster than real time.
    let ten = at("2026-11-28T10:00:00+09:00");
    let origin = ten - chrono::Duration::seconds(30);
    let clock = Arc::new(ScaledClock::new(origin, 10.0));
    let app = TestApp::spawn_on_clock(
        Role::All,
        &[
            ("RADIO24__ARCHIVE__DIR", &archive_dir),
            // The test polls the listing; the per-client limit is another test's.
            ("RADIO24__ARCHIVE__LIST_PER_MINUTE", "100000"),
        ],
        clock.clone(),
    )
    .await;
    let spoken = ["アーカイブのテストです。", "十時の前に話します。"];
    assert_eq!(app.speak(&spoken.concat()).await.status(), 202);

    // Await the programme clock past the hour, then the recorder catching up with it.
    let past_the_hour = ten + chrono::Duration::seconds(5);
    tokio::time::timeout(PATIENCE, clock.sleep_until(past_the_hour))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the programme clock never reached {past_the_hour}: it is at {}",
                clock.now()
            )
        });
    let listing: Value = poll_until(
        "two recordings in the listing",
        PATIENCE,
        std::time::Duration::from_millis(50),
        async || {
            let listing: Value = app
                .get("/v1/channels/radio24/archive")
                .await
                .json()
                .await
                .unwrap();
            let recordings = listing["recordings"].as_array().unwrap();
            if recordings.len() == 2
                && recordings[1]["complete"] == true
                && secs(&recordings[0]["duration_secs"]) > 0.0
            {
                Ok(listing)
            } else {
                Err(listing.to_string())
            }
        },
    )
    .await;
    assert_eq!(listing["channel"], "radio24");
    let (current, closed) = (&listing["recordings"][0], &listing["recordings"][1]);
    assert_eq!(current["file"], "2026-11-28T10.ogg");
    assert_eq!(current["hour_start"], "2026-11-28T10:00:00+09:00");
    assert_eq!(current["captions"], "2026-11-28T10.json");
    assert_eq!(current["complete"], false);
    assert_eq!(closed["file"], "2026-11-28T09.ogg");
    assert_eq!(closed["hour_start"], "2026-11-28T09:00:00+09:00");
    assert_eq!(closed["captions"], "2026-11-28T09.json");

    // The closed hour: a whole stream, as long as the programme it covered.
    let audio = get_bytes(
        &app,
        "/v1/channels/radio24/archive/2026-11-28T09.ogg",
        "audio/ogg",
    )
    .await;
    // HEAD: the same type and length, no body.
    let head = app
        .client
        .head(app.url("/v1/channels/radio24/archive/2026-11-28T09.ogg"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "audio/ogg");
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        audio.len().to_string()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    assert_eq!(audio.len() as u64, closed["bytes"].as_u64().unwrap());
    let decoded = decode(&audio, false);
    let duration = secs(&closed["duration_secs"]);
    assert!(decoded.head && decoded.tags, "{decoded:?}");
    assert_eq!(decoded.serials.len(), 1, "one stream: {decoded:?}");
    assert!(decoded.ended, "closed with an end-of-stream page");
    assert!(duration > 0.0 && duration <= 30.0, "{duration}");
    // Frames the recorder missed count in the duration but decode to nothing; a recorder
    // that lost most of the programme would be broken, not busy.
    eprintln!("closed hour: {duration} s, {} s decode", decoded.secs);
    assert!(
        decoded.secs >= duration / 2.0 && decoded.secs <= duration + 1e-6,
        "decoded {} s of {duration} s",
        decoded.secs
    );
    let sidecar: Value = serde_json::from_slice(
        &get_bytes(
            &app,
            "/v1/channels/radio24/archive/2026-11-28T09.json",
            "application/json",
        )
        .await,
    )
    .unwrap();
    assert_eq!(sidecar["channel"], "radio24");
    assert_eq!(sidecar["hour_start"], "2026-11-28T09:00:00+09:00");
    let audio_start = at(sidecar["audio_start"].as_str().unwrap());
    assert!(audio_start >= origin, "{audio_start}");
    let end = audio_start + chrono::Duration::milliseconds((duration * 1000.0) as i64);
    assert!(
        (end - ten).num_milliseconds().abs() <= 1_000,
        "the file ends at the top of the hour: {end}"
    );
    let captions = sidecar["captions"].as_array().unwrap();
    assert!(!captions.is_empty(), "{sidecar}");
    for caption in captions {
        let at_secs = secs(&caption["at_secs"]);
        assert!(
            (0.0..=duration).contains(&at_secs),
            "{caption} outside 0..{duration}"
        );
        assert!(caption["segment_id"].is_string() && caption["text"].is_string());
    }

    // The hour being recorded: headers, audio so far, its own stream.
    let growing = get_bytes(
        &app,
        "/v1/channels/radio24/archive/2026-11-28T10.ogg",
        "audio/ogg",
    )
    .await;
    let decoded_now = decode(&growing, true);
    assert!(decoded_now.head && decoded_now.tags, "{decoded_now:?}");
    assert!(decoded_now.secs > 0.0, "{decoded_now:?}");
    assert_ne!(decoded_now.serials, decoded.serials, "a stream of its own");
    let sidecar_now: Value = serde_json::from_slice(
        &get_bytes(
            &app,
            "/v1/channels/radio24/archive/2026-11-28T10.json",
            "application/json",
        )
        .await,
    )
    .unwrap();
    let started = at(sidecar_now["audio_start"].as_str().unwrap());
    assert!(
        (started - end).num_milliseconds().abs() <= 20,
        "the new file carries on where the last ended: {started} vs {end}"
    );
    for caption in sidecar_now["captions"].as_array().unwrap() {
        assert!(secs(&caption["at_secs"]) >= 0.0, "{caption}");
    }
    // What the studio said before the hour is in the archive's captions.
    let texts: Vec<&str> = captions
        .iter()
        .chain(sidecar_now["captions"].as_array().unwrap())
        .filter_map(|c| c["text"].as_str())
        .collect();
    for sentence in spoken {
        assert!(texts.contains(&sentence), "{sentence} not in {texts:?}");
    }

    // Names that are not recordings are refused, traversal included; errors are JSON.
    for (path, status, code) in [
        (
            "/v1/channels/radio24/archive/2026-11-28T08.ogg",
            404,
            "unknown_recording",
        ),
        (
            "/v1/channels/radio24/archive/..%2F..%2Fradio24.db",
            404,
            "unknown_recording",
        ),
        (
            "/v1/channels/radio24/archive/2026-11-28T09.ogg%00",
            404,
            "unknown_recording",
        ),
        ("/v1/channels/nowhere/archive", 404, "unknown_channel"),
        (
            "/v1/channels/nowhere/archive/2026-11-28T09.ogg",
            404,
            "unknown_channel",
        ),
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), status, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], code, "{path}: {body}");
        assert!(body["message"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_archive_dir_the_routes_say_the_archive_is_off() {
    let app = TestApp::spawn(Role::All, &[]).await;
    for path in [
        "/v1/channels/radio24/archive",
        "/v1/channels/radio24/archive/2026-11-28T09.ogg",
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "archive_disabled", "{path}: {body}");
    }
}

/// The archive's listing once it has `n` recordings, the newest with audio.
async fn listing_of(app: &TestApp, n: usize) -> Value {
    poll_until(
        &format!("{n} recordings in the listing"),
        PATIENCE,
        std::time::Duration::from_millis(50),
        async || {
            let listing: Value = app
                .get("/v1/channels/radio24/archive")
                .await
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let recordings = listing["recordings"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if recordings.len() == n && secs(&recordings[0]["duration_secs"]) > 0.0 {
                Ok(listing)
            } else {
                Err(listing.to_string())
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_within_the_hour_records_the_rest_into_a_second_part() {
    let dir = tempfile::tempdir().unwrap();
    let archive_dir = dir.path().to_str().unwrap().to_owned();
    let overrides = [
        ("RADIO24__ARCHIVE__DIR", archive_dir.as_str()),
        ("RADIO24__ARCHIVE__LIST_PER_MINUTE", "100000"),
    ];
    // 10:05 in Tokyo, 10 times faster than real time: both runs stay within the hour.
    let first_clock = Arc::new(ScaledClock::new(at("2026-11-28T10:05:00+09:00"), 10.0));
    let first = TestApp::spawn_on_clock(Role::All, &overrides, first_clock.clone()).await;
    let listing = listing_of(&first, 1).await;
    assert_eq!(listing["recordings"][0]["file"], "2026-11-28T10.ogg");
    first.stop().await;
    // The first run closes its file as it shuts down: an end-of-stream page.
    let first_part = dir.path().join("radio24/2026-11-28T10.ogg");
    poll_until(
        "the first run's file closed",
        PATIENCE,
        std::time::Duration::from_millis(50),
        async || {
            let bytes = std::fs::read(&first_part).map_err(|e| e.to_string())?;
            let decoded = decode(&bytes, true);
            if decoded.ended {
                Ok(())
            } else {
                Err(format!("{decoded:?}"))
            }
        },
    )
    .await;

    // The host starts again, later in the same hour.
    let restarted_at = first_clock.now() + chrono::Duration::seconds(5);
    let second = TestApp::spawn_on_clock(
        Role::All,
        &overrides,
        Arc::new(ScaledClock::new(restarted_at, 10.0)),
    )
    .await;
    let listing = listing_of(&second, 2).await;
    let (now, before) = (&listing["recordings"][0], &listing["recordings"][1]);
    assert_eq!(now["file"], "2026-11-28T10.part2.ogg", "{listing}");
    assert_eq!(now["captions"], "2026-11-28T10.part2.json");
    assert_eq!(now["part"], 2);
    assert_eq!(now["complete"], false);
    assert_eq!(before["file"], "2026-11-28T10.ogg");
    assert_eq!(before["captions"], "2026-11-28T10.json");
    assert_eq!(before["part"], 1);
    assert_eq!(before["complete"], true);
    for recording in [now, before] {
        assert_eq!(recording["hour_start"], "2026-11-28T10:00:00+09:00");
    }

    // Both parts are served, each an Ogg/Opus stream of its own.
    let closed = decode(
        &get_bytes(
            &second,
            "/v1/channels/radio24/archive/2026-11-28T10.ogg",
            "audio/ogg",
        )
        .await,
        false,
    );
    assert!(closed.head && closed.tags && closed.ended, "{closed:?}");
    assert_eq!(closed.serials.len(), 1, "{closed:?}");
    let growing = decode(
        &get_bytes(
            &second,
            "/v1/channels/radio24/archive/2026-11-28T10.part2.ogg",
            "audio/ogg",
        )
        .await,
        true,
    );
    assert!(
        growing.head && growing.tags && growing.secs > 0.0,
        "{growing:?}"
    );
    assert_eq!(growing.serials.len(), 1, "{growing:?}");
    assert_ne!(growing.serials, closed.serials, "a stream of its own");
    // The second part's captions begin where the restart did, after the first part's.
    let sidecar = |bytes: Vec<u8>| -> Value { serde_json::from_slice(&bytes).unwrap() };
    let first_captions = sidecar(
        get_bytes(
            &second,
            "/v1/channels/radio24/archive/2026-11-28T10.json",
            "application/json",
        )
        .await,
    );
    let second_captions = sidecar(
        get_bytes(
            &second,
            "/v1/channels/radio24/archive/2026-11-28T10.part2.json",
            "application/json",
        )
        .await,
    );
    assert_eq!(second_captions["hour_start"], "2026-11-28T10:00:00+09:00");
    let began = |sidecar: &Value| at(sidecar["audio_start"].as_str().unwrap());
    assert!(
        began(&second_captions) >= restarted_at && began(&first_captions) < began(&second_captions),
        "{first_captions} then {second_captions}"
    );
}
