//! The archive's unit tests: the writer on hand-fed frames, retention, lengths, listings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::length::{LengthCache, last_granule};
use super::listing::list_recordings;
use super::retention::delete_expired;
use super::sidecar::{Sidecar, TimedCaption};
use super::writer::{Command, FRAME_TIME, HourWriter};
use super::*;
use crate::bus::archive::ArchiveFileName;
use crate::domain::ChannelName;
use crate::host::audio::{FRAME, RATE};
use crate::sync::lock;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn tone(n: u64) -> Arc<[i16]> {
    (0..FRAME)
        .map(|i| {
            let t = (n as usize * FRAME + i) as f64 / f64::from(RATE);
            ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect()
}

/// `frames` frames of tone, each received when it airs, from `start`.
fn feed(w: &mut HourWriter, start: DateTime<Utc>, frames: u64) {
    for n in 0..frames {
        w.handle(Command::Frame {
            samples: tone(n),
            at: start + FRAME_TIME * i32::try_from(n).unwrap(),
        });
    }
}

fn writer(dir: &Path) -> (HourWriter, Arc<Mutex<Option<ArchiveFileName>>>) {
    let recording = Arc::new(Mutex::new(None));
    let config = ArchiveConfig {
        dir: dir.to_path_buf(),
        retention_days: 14,
        bitrate: 64_000,
    };
    let writer = HourWriter::new(
        ChannelName::parse("radio24").unwrap(),
        &config,
        chrono_tz::Asia::Tokyo,
        recording.clone(),
    );
    (writer, recording)
}

/// The name of the file being recorded, as listings show it.
fn recorded(recording: &Mutex<Option<ArchiveFileName>>) -> Option<String> {
    lock(recording).as_ref().map(ToString::to_string)
}

/// Decodes an Ogg/Opus file: (serials, packets, decoded samples, last page flagged end).
fn decode(path: &Path) -> (Vec<u32>, usize, usize, bool) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
    let (mut serials, mut packets, mut samples, mut ended) = (Vec::new(), 0, 0, false);
    while let Some(packet) = reader.read_packet().unwrap() {
        if !serials.contains(&packet.stream_serial()) {
            serials.push(packet.stream_serial());
        }
        packets += 1;
        ended = packet.last_in_stream();
        if packets <= 2 {
            continue;
        }
        let mut out = vec![0i16; 5760];
        samples += decoder.decode(&packet.data, &mut out, false).unwrap();
    }
    (serials, packets, samples, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_records_every_frame_sent_and_closes_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = ArchiveConfig {
        dir: dir.path().to_path_buf(),
        retention_days: 14,
        bitrate: 64_000,
    };
    let clock = Arc::new(crate::host::clock::ScaledClock::new(
        at("2026-11-28T00:10:00Z"),
        1.0,
    ));
    let archive = Archive::open(config, chrono_tz::Asia::Tokyo, clock)
        .await
        .unwrap();
    let (frames, _) = broadcast::channel(64);
    let (events, _) = broadcast::channel(16);
    let channel = ChannelName::parse("radio24").unwrap();
    archive.record(&channel, frames.subscribe(), events.subscribe());
    for n in 0..50 {
        frames.send(tone(n)).unwrap();
    }
    // The playout's sender is still there (as at shutdown): only `finish` ends the file.
    tokio::time::timeout(Duration::from_secs(10), archive.finish())
        .await
        .expect("finish returns once the file is closed");
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("radio24"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ogg"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (_, packets, samples, ended) = decode(&files[0]);
    assert!(ended, "the last page is flagged end-of-stream");
    assert_eq!(
        packets,
        2 + 50,
        "headers and every frame sent before finish"
    );
    assert!(samples >= 49 * FRAME, "{samples}");
    assert!(lock(&archive.recorders).is_empty());
    drop(frames);
}

#[test]
fn files_are_cut_at_the_station_clocks_hours_each_a_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, recording) = writer(dir.path());
    // 09:59:59 in Tokyo: 50 frames before the hour, 100 after.
    let start = at("2026-11-28T09:59:59+09:00");
    let id = Uuid::now_v7();
    w.handle(Command::Caption(TimedCaption {
        at: start + chrono::Duration::milliseconds(500),
        segment_id: id,
        text: "before".into(),
    }));
    for n in 0..150u64 {
        let t = start + FRAME_TIME * i32::try_from(n).unwrap();
        if n == 75 {
            w.handle(Command::Caption(TimedCaption {
                at: t,
                segment_id: id,
                text: "after".into(),
            }));
        }
        w.handle(Command::Frame {
            samples: tone(n),
            at: t,
        });
    }
    let channel_dir = dir.path().join("radio24");
    assert_eq!(recorded(&recording).as_deref(), Some("2026-11-28T10.ogg"));
    w.close();
    assert_eq!(*lock(&recording), None);

    let first = decode(&channel_dir.join("2026-11-28T09.ogg"));
    assert_eq!(first.0.len(), 1, "one stream");
    assert_eq!(first.2, 50 * FRAME);
    assert!(first.3, "closed with an end-of-stream page");
    let second = decode(&channel_dir.join("2026-11-28T10.ogg"));
    assert_eq!(second.2, 100 * FRAME);
    assert!(second.3);
    assert_eq!(
        last_granule(&channel_dir.join("2026-11-28T10.ogg")).unwrap(),
        Some(100 * FRAME as u64)
    );

    let sidecar: Sidecar =
        serde_json::from_slice(&std::fs::read(channel_dir.join("2026-11-28T09.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar.hour_start.to_rfc3339(), "2026-11-28T09:00:00+09:00");
    assert_eq!(
        sidecar.audio_start.to_rfc3339(),
        "2026-11-28T09:59:59+09:00"
    );
    assert_eq!(sidecar.captions.len(), 1);
    assert_eq!(sidecar.captions[0].text, "before");
    assert_eq!(sidecar.captions[0].at_secs, 0.5);
    let sidecar: Sidecar =
        serde_json::from_slice(&std::fs::read(channel_dir.join("2026-11-28T10.json")).unwrap())
            .unwrap();
    assert_eq!(
        sidecar.audio_start.to_rfc3339(),
        "2026-11-28T10:00:00+09:00"
    );
    assert_eq!(sidecar.captions[0].text, "after");
    assert_eq!(sidecar.captions[0].at_secs, 0.5);
}

#[test]
fn missed_frames_advance_the_timeline_instead_of_shrinking_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path());
    let start = at("2026-11-28T09:10:00+09:00");
    for n in 0..10u64 {
        w.handle(Command::Frame {
            samples: tone(n),
            at: start,
        });
    }
    w.handle(Command::Skip { frames: 40 });
    for n in 0..10u64 {
        w.handle(Command::Frame {
            samples: tone(n),
            at: start,
        });
    }
    // A frame received 10 s later than the timeline: the playout skipped ahead.
    w.handle(Command::Frame {
        samples: tone(0),
        at: start + chrono::Duration::seconds(11),
    });
    w.close();
    let path = dir.path().join("radio24/2026-11-28T09.ogg");
    let (_, _, decoded, _) = decode(&path);
    assert_eq!(decoded, 21 * FRAME);
    let granule = last_granule(&path).unwrap().unwrap();
    assert_eq!(
        granule,
        551 * FRAME as u64,
        "11 s of programme and one frame"
    );
}

#[test]
fn an_hour_whose_file_exists_is_recorded_on_into_its_next_part() {
    let dir = tempfile::tempdir().unwrap();
    let channel_dir = dir.path().join("radio24");
    std::fs::create_dir_all(&channel_dir).unwrap();
    // Recorded before a restart at 09:59:59.5: the first part, with its sidecar.
    std::fs::write(channel_dir.join("2026-11-28T09.ogg"), b"earlier").unwrap();
    std::fs::write(channel_dir.join("2026-11-28T09.json"), b"{}").unwrap();
    let (mut w, recording) = writer(dir.path());
    let start = at("2026-11-28T09:59:59.5+09:00");
    feed(&mut w, start, 10);
    assert_eq!(
        recorded(&recording).as_deref(),
        Some("2026-11-28T09.part2.ogg")
    );
    feed(&mut w, start + FRAME_TIME * 10, 30);
    w.close();
    assert_eq!(
        std::fs::read(channel_dir.join("2026-11-28T09.ogg")).unwrap(),
        b"earlier",
        "the first part is left as it was"
    );
    let (serials, _, samples, ended) = decode(&channel_dir.join("2026-11-28T09.part2.ogg"));
    assert_eq!((serials.len(), samples, ended), (1, 25 * FRAME, true));
    let sidecar: Sidecar = serde_json::from_slice(
        &std::fs::read(channel_dir.join("2026-11-28T09.part2.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar.hour_start.to_rfc3339(), "2026-11-28T09:00:00+09:00");
    assert_eq!(
        sidecar.audio_start.to_rfc3339(),
        "2026-11-28T09:59:59.500+09:00"
    );
    // The next hour starts with its first part again.
    assert_eq!(decode(&channel_dir.join("2026-11-28T10.ogg")).2, 15 * FRAME);

    let listing = list_recordings(
        &channel_dir,
        chrono_tz::Asia::Tokyo,
        None,
        &mut LengthCache::default(),
    )
    .unwrap();
    let listed: Vec<(String, u8, Option<String>)> = listing
        .iter()
        .map(|r| {
            (
                r.file.to_string(),
                r.part,
                r.captions.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "2026-11-28T10.ogg".into(),
                1,
                Some("2026-11-28T10.json".into())
            ),
            (
                "2026-11-28T09.part2.ogg".into(),
                2,
                Some("2026-11-28T09.part2.json".into())
            ),
            (
                "2026-11-28T09.ogg".into(),
                1,
                Some("2026-11-28T09.json".into())
            ),
        ],
        "newest first, the hour's parts side by side"
    );
    assert_eq!(listing[1].hour_start, listing[2].hour_start);
}

#[test]
fn an_hour_whose_every_part_exists_is_skipped_until_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let channel_dir = dir.path().join("radio24");
    std::fs::create_dir_all(&channel_dir).unwrap();
    std::fs::write(channel_dir.join("2026-11-28T09.ogg"), b"1").unwrap();
    for part in 2..=crate::bus::archive::MAX_PART {
        std::fs::write(
            channel_dir.join(format!("2026-11-28T09.part{part}.ogg")),
            b"n",
        )
        .unwrap();
    }
    let (mut w, recording) = writer(dir.path());
    // Disk errors are tried again at once here; an hour with every part taken is not.
    w.write_retry = Duration::ZERO;
    let start = at("2026-11-28T09:59:59.9+09:00");
    feed(&mut w, start, 4);
    assert_eq!(*lock(&recording), None);
    feed(&mut w, start + FRAME_TIME * 4, 6);
    w.close();
    assert_eq!(decode(&channel_dir.join("2026-11-28T10.ogg")).2, 5 * FRAME);
}

#[test]
fn a_file_that_cannot_be_created_waits_for_its_retry_but_a_new_hour_tries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // The channel's folder cannot be created: a file is in the way.
    std::fs::write(dir.path().join("radio24"), b"in the way").unwrap();
    let (mut w, recording) = writer(dir.path());
    // A retry wait no test run outlasts, so only the new hour can end it.
    w.write_retry = Duration::from_secs(3600);
    let start = at("2026-11-28T09:59:59+09:00");
    let frame = |n: u64| Command::Frame {
        samples: tone(n),
        at: start + FRAME_TIME * i32::try_from(n).unwrap(),
    };
    for n in 0..20u64 {
        w.handle(frame(n));
    }
    assert_eq!(*lock(&recording), None);
    std::fs::remove_file(dir.path().join("radio24")).unwrap();
    for n in 20..50u64 {
        w.handle(frame(n));
    }
    assert_eq!(
        *lock(&recording),
        None,
        "not tried again before the retry wait is over"
    );
    // 10:00:00: a new hour, a new try.
    w.handle(frame(50));
    assert_eq!(recorded(&recording).as_deref(), Some("2026-11-28T10.ogg"));
}

#[test]
fn a_full_disk_pauses_the_recording_and_it_resumes_in_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, recording) = writer(dir.path());
    w.write_retry = Duration::ZERO;
    let start = at("2026-11-28T09:10:00+09:00");
    let frame = |n: u64| Command::Frame {
        samples: tone(n),
        at: start + FRAME_TIME * i32::try_from(n).unwrap(),
    };
    for n in 0..30u64 {
        w.handle(frame(n));
    }
    let path = dir.path().join("radio24/2026-11-28T09.ogg");
    // The disk fills: every write fails with ENOSPC, as on /dev/full.
    let real_file = std::mem::replace(
        &mut w.current.as_mut().unwrap().file,
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    );
    for n in 30..130u64 {
        w.handle(frame(n));
    }
    let current = w.current.as_ref().unwrap();
    assert!(
        current.retry_at.is_some(),
        "the recorder waits for the disk"
    );
    assert!(!current.unwritten.is_empty(), "the refused page is held");
    assert!(
        w.refused_writes >= 2,
        "the first failure and the retries are counted: {}",
        w.refused_writes
    );
    assert!(w.missed_frames > 0);
    assert_eq!(
        recorded(&recording).as_deref(),
        Some("2026-11-28T09.ogg"),
        "the hour is still being recorded"
    );
    // Space again: the next frame writes the held pages and recording carries on.
    w.current.as_mut().unwrap().file = real_file;
    for n in 130..200u64 {
        w.handle(frame(n));
    }
    let current = w.current.as_ref().unwrap();
    assert_eq!(current.retry_at, None);
    assert!(current.unwritten.is_empty());
    assert_eq!((w.refused_writes, w.missed_frames), (0, 0));
    w.close();
    // One whole stream: every page intact, the gap on the timeline, not in the file.
    let (serials, _, decoded, ended) = decode(&path);
    assert_eq!(serials.len(), 1);
    assert!(ended, "the stream ends properly");
    assert!(
        (100 * FRAME..200 * FRAME).contains(&decoded),
        "frames before and after the full disk are in the file: {decoded} samples"
    );
    assert_eq!(
        last_granule(&path).unwrap().unwrap(),
        200 * FRAME as u64,
        "the missed frames still take their time"
    );
}

#[test]
fn an_hour_whose_file_cannot_be_created_is_tried_again_within_the_hour() {
    let dir = tempfile::tempdir().unwrap();
    // The channel's folder cannot be made: a plain file holds its name.
    let blocker = dir.path().join("radio24");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let (mut w, recording) = writer(dir.path());
    w.write_retry = Duration::ZERO;
    let start = at("2026-11-28T09:10:00+09:00");
    feed(&mut w, start, 50);
    assert!(w.current.is_none(), "nothing can be recorded yet");
    assert_eq!(*lock(&recording), None);
    // The obstacle goes mid-hour: the next try records the rest of the same hour.
    std::fs::remove_file(&blocker).unwrap();
    for n in 50..100u64 {
        w.handle(Command::Frame {
            samples: tone(n),
            at: start + FRAME_TIME * i32::try_from(n).unwrap(),
        });
    }
    assert_eq!(
        recorded(&recording).as_deref(),
        Some("2026-11-28T09.ogg"),
        "the hour is recorded from the first frame after the folder could be made"
    );
    w.close();
    let (_, _, decoded, ended) = decode(&dir.path().join("radio24/2026-11-28T09.ogg"));
    assert!(ended);
    assert!(
        (40 * FRAME..=50 * FRAME).contains(&decoded),
        "the frames after the failure are in the file: {decoded} samples"
    );
}

#[test]
fn retention_deletes_whole_hours_older_than_the_limit_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "2026-11-14T08.ogg",
        "2026-11-14T08.json",
        "2026-11-14T09.ogg",
        "2026-11-14T10.ogg",
        "2026-11-28T09.ogg",
        "notes.txt",
        "2026-11-01T00.ogg.bak",
    ] {
        std::fs::write(dir.path().join(name), b"x").unwrap();
    }
    let now = at("2026-11-28T10:30:00+09:00");
    let tz = chrono_tz::Asia::Tokyo;
    assert_eq!(delete_expired(dir.path(), tz, now, 0).unwrap(), 0);
    // 14 days before now is 2026-11-14T10:30: hours ending by then go.
    assert_eq!(delete_expired(dir.path(), tz, now, 14).unwrap(), 3);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "2026-11-01T00.ogg.bak",
            "2026-11-14T10.ogg",
            "2026-11-28T09.ogg",
            "notes.txt"
        ]
    );
    assert_eq!(
        delete_expired(&dir.path().join("missing"), tz, now, 14).unwrap(),
        0
    );
}

#[test]
fn the_last_whole_page_gives_the_length_even_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path());
    let start = at("2026-11-28T09:10:00+09:00");
    feed(&mut w, start, 25);
    let path = dir.path().join("radio24/2026-11-28T09.ogg");
    // 24 frames encoded (one held back), pages of 10: the last whole page ends at 20.
    assert_eq!(last_granule(&path).unwrap(), Some(20 * FRAME as u64));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"OggS\0\0partial");
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(last_granule(&path).unwrap(), Some(20 * FRAME as u64));
    let mut lengths = LengthCache::default();
    let listing = list_recordings(
        &dir.path().join("radio24"),
        chrono_tz::Asia::Tokyo,
        None,
        &mut lengths,
    )
    .unwrap();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].duration_secs, 0.4);
    assert_eq!(
        listing[0].hour_start.to_rfc3339(),
        "2026-11-28T09:00:00+09:00"
    );
    assert_eq!(
        listing[0]
            .captions
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("2026-11-28T09.json")
    );
    assert!(listing[0].complete);
}

#[test]
fn listings_read_a_recordings_tail_again_only_after_it_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = writer(dir.path());
    feed(&mut w, at("2026-11-28T09:10:00+09:00"), 25);
    let channel_dir = dir.path().join("radio24");
    let path = channel_dir.join("2026-11-28T09.ogg");
    let list = |lengths: &mut LengthCache| {
        list_recordings(&channel_dir, chrono_tz::Asia::Tokyo, None, lengths).unwrap()[0]
            .duration_secs
    };
    let mut lengths = LengthCache::default();
    assert_eq!(list(&mut lengths), 0.4);

    // The tail overwritten in place, size and modification time kept: not read again.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last_page = bytes.windows(4).rposition(|w| w == b"OggS").unwrap();
    // The last page's granule position says 100 s now.
    bytes[last_page + 6..last_page + 14].copy_from_slice(&(100 * u64::from(RATE)).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(list(&mut lengths), 0.4, "the cached length");
    let now_says = list(&mut LengthCache::default());
    assert_eq!(now_says, 100.0, "the tail read afresh");

    // Written to (it grew): read again.
    bytes.extend_from_slice(b"more");
    std::fs::write(&path, &bytes).unwrap();
    let afresh = list(&mut LengthCache::default());
    assert_ne!(afresh, 100.0);
    assert_eq!(list(&mut lengths), afresh);

    // Deleted: forgotten.
    std::fs::remove_file(&path).unwrap();
    assert!(
        list_recordings(&channel_dir, chrono_tz::Asia::Tokyo, None, &mut lengths)
            .unwrap()
            .is_empty()
    );
    assert!(lengths.granules.is_empty());
}
