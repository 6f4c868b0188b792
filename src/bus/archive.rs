//! The programme archive as it crosses the bus: recording file names, validated strictly
//! against `YYYY-MM-DDTHH[.partN].ogg` / `.json` so that no request can name anything else
//! on the host's disk ([`ArchiveFileName`]); the listing of a channel's recordings
//! ([`ArchiveListing`]); and one file as a byte stream ([`ArchiveFile`]), so a whole hour
//! of audio is never held in memory on either side. The recorder that writes these files is
//! `host::outputs::archive`.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::{BusError, Rejection};
use crate::domain::ChannelName;

/// Which half of a recording a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveFileKind {
    /// The hour's audio, Ogg/Opus (`.ogg`).
    Audio,
    /// The hour's captions, JSON (`.json`).
    Captions,
}

impl ArchiveFileKind {
    /// The file name's extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveFileKind::Audio => "ogg",
            ArchiveFileKind::Captions => "json",
        }
    }

    /// The HTTP content type the file is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            ArchiveFileKind::Audio => "audio/ogg",
            ArchiveFileKind::Captions => "application/json",
        }
    }
}

/// A name that is not a recording's file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a recording's file name (YYYY-MM-DDTHH.ogg or .json, or YYYY-MM-DDTHH.partN.ogg or .json for a later part of the hour)"
)]
pub struct InvalidArchiveName(String);

/// The most parts one hour's recording can have (the host restarted within the hour 98
/// times): past it, the rest of the hour is not recorded.
pub const MAX_PART: u8 = 99;

/// A recording's file name: the hour it holds on the station's clock (local date and hour),
/// which part of the hour, and its kind, e.g. `2026-11-28T09.ogg`. An hour's recording is
/// one part unless the host restarted within it: what it records after the restart is a
/// second part, `2026-11-28T09.part2.ogg`, and so on (names sort by hour, then part, as
/// the values do). Only names of exactly that form parse (a real date, hour 00–23, a part
/// 2–99 without leading zeros, nothing before or after), so a parsed name is always one
/// plain file inside a channel's folder: no separators, no traversal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveFileName {
    /// The hour on the station's clock (minutes and seconds are zero).
    hour: NaiveDateTime,
    /// 1 for the hour's first file (no suffix), 2..=[`MAX_PART`] after restarts.
    part: u8,
    kind: ArchiveFileKind,
}

impl ArchiveFileName {
    /// The file of `kind` for the station-clock hour that contains `local`.
    pub fn for_hour(local: NaiveDateTime, kind: ArchiveFileKind) -> Self {
        let hour = local
            .date()
            .and_time(NaiveTime::from_hms_opt(local.hour(), 0, 0).unwrap_or_default());
        Self {
            hour,
            part: 1,
            kind,
        }
    }

    /// Parses a name, accepting only the exact form `YYYY-MM-DDTHH[.partN].ogg|json`.
    pub fn parse(raw: &str) -> Result<Self, InvalidArchiveName> {
        let invalid = || InvalidArchiveName(raw.chars().take(64).collect());
        let bytes = raw.as_bytes();
        let (stem, rest) = raw.split_at_checked(13).ok_or_else(invalid)?;
        let (part, extension) = match rest.strip_prefix(".part") {
            Some(numbered) => {
                let digits = numbered.bytes().take_while(u8::is_ascii_digit).count();
                let (number, extension) = numbered.split_at(digits);
                let part = match number.parse::<u8>() {
                    Ok(part) if (2..=MAX_PART).contains(&part) && !number.starts_with('0') => part,
                    _ => return Err(invalid()),
                };
                (part, extension)
            }
            None => (1, rest),
        };
        let kind = match extension {
            ".ogg" => ArchiveFileKind::Audio,
            ".json" => ArchiveFileKind::Captions,
            _ => return Err(invalid()),
        };
        let digits_at = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12];
        let shape_ok = digits_at.iter().all(|&i| bytes[i].is_ascii_digit())
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes[10] == b'T';
        if !shape_ok {
            return Err(invalid());
        }
        let number = |range: std::ops::Range<usize>| stem[range].parse::<u32>().ok();
        let (Some(year), Some(month), Some(day), Some(hour)) =
            (number(0..4), number(5..7), number(8..10), number(11..13))
        else {
            return Err(invalid());
        };
        let date = NaiveDate::from_ymd_opt(i32::try_from(year).map_err(|_| invalid())?, month, day)
            .ok_or_else(invalid)?;
        let time = NaiveTime::from_hms_opt(hour, 0, 0).ok_or_else(invalid)?;
        Ok(Self {
            hour: date.and_time(time),
            part,
            kind,
        })
    }

    /// The hour it holds, on the station's clock.
    pub fn hour(&self) -> NaiveDateTime {
        self.hour
    }

    pub fn kind(&self) -> ArchiveFileKind {
        self.kind
    }

    /// Which part of the hour it holds: 1 for the first, more after restarts.
    pub fn part(&self) -> u8 {
        self.part
    }

    /// The same part's other file (the sidecar of an audio file, and back).
    pub fn with_kind(&self, kind: ArchiveFileKind) -> Self {
        Self { kind, ..*self }
    }

    /// The same hour's next part, of the same kind; `None` after [`MAX_PART`].
    pub fn next_part(&self) -> Option<Self> {
        let part = self.part.checked_add(1).filter(|p| *p <= MAX_PART)?;
        Some(Self { part, ..*self })
    }

    /// The name without its extension, e.g. `2026-11-28T09` or `2026-11-28T09.part2`.
    pub fn stem(&self) -> String {
        let hour = self.hour.format("%Y-%m-%dT%H");
        match self.part {
            1 => hour.to_string(),
            part => format!("{hour}.part{part}"),
        }
    }
}

impl fmt::Display for ArchiveFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stem(), self.kind.extension())
    }
}

impl Serialize for ArchiveFileName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArchiveFileName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// One hour of a channel's recording, or one part of it (see [`ArchiveFileName`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recording {
    /// The top of the hour it belongs to, on the station's clock (RFC 3339 with offset).
    pub hour_start: DateTime<FixedOffset>,
    /// Which part of the hour: 1, or 2 and on for what was recorded after a restart within
    /// the hour (absent from an older host's listing: 1).
    #[serde(default = "first_part")]
    pub part: u8,
    /// The audio file (`YYYY-MM-DDTHH.ogg`, `YYYY-MM-DDTHH.partN.ogg`).
    #[schema(value_type = String, example = "2026-11-28T09.ogg")]
    pub file: ArchiveFileName,
    /// The caption sidecar (`YYYY-MM-DDTHH.json`, `….partN.json`), when there is one.
    #[schema(value_type = Option<String>, example = "2026-11-28T09.json")]
    pub captions: Option<ArchiveFileName>,
    /// Size of the audio file now.
    pub bytes: u64,
    /// Programme time the audio covers: the last Ogg page's granule position / 48 000.
    pub duration_secs: f64,
    /// False for the hour being recorded now.
    pub complete: bool,
}

fn first_part() -> u8 {
    1
}

/// A channel's recordings, newest first (`GET /v1/channels/{name}/archive`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveListing {
    pub channel: ChannelName,
    pub recordings: Vec<Recording>,
}

/// One archive file as a byte stream, read from disk as it is sent.
pub struct ArchiveFile {
    pub kind: ArchiveFileKind,
    /// Its length in bytes, when known (the body ends after exactly this many).
    pub length: Option<u64>,
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// The host keeps no archive (`archive.dir` is empty): 404 `archive_disabled`.
pub fn archive_disabled() -> BusError {
    BusError::rejected(
        Rejection::NotFound,
        "archive_disabled",
        "this station keeps no archive (archive.dir is not set)",
    )
}

/// No such recording file: 404 `unknown_recording`.
pub fn unknown_recording(channel: &ChannelName, file: &str) -> BusError {
    let file: String = file.chars().take(64).collect();
    BusError::rejected(
        Rejection::NotFound,
        "unknown_recording",
        format!("channel {channel:?} has no recording file {file:?}"),
    )
}

impl From<InvalidArchiveName> for BusError {
    fn from(e: InvalidArchiveName) -> Self {
        BusError::rejected(Rejection::NotFound, "unknown_recording", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_exact_form_parse_and_print_back() {
        for raw in [
            "2026-11-28T09.ogg",
            "2026-11-28T23.json",
            "2024-02-29T00.ogg",
            "2026-11-28T09.part2.ogg",
            "2026-11-28T09.part2.json",
            "2026-11-28T09.part99.ogg",
        ] {
            let name = ArchiveFileName::parse(raw).unwrap();
            assert_eq!(name.to_string(), raw);
        }
        let name = ArchiveFileName::parse("2026-11-28T09.ogg").unwrap();
        assert_eq!(name.kind(), ArchiveFileKind::Audio);
        assert_eq!(name.stem(), "2026-11-28T09");
        assert_eq!(
            name.with_kind(ArchiveFileKind::Captions).to_string(),
            "2026-11-28T09.json"
        );
    }

    #[test]
    fn later_parts_of_an_hour_are_named_and_sorted_after_its_first() {
        let first = ArchiveFileName::parse("2026-11-28T09.ogg").unwrap();
        assert_eq!(first.part(), 1);
        let second = first.next_part().unwrap();
        assert_eq!(second.to_string(), "2026-11-28T09.part2.ogg");
        assert_eq!(second.part(), 2);
        assert_eq!(second.hour(), first.hour());
        assert_eq!(
            second.with_kind(ArchiveFileKind::Captions).to_string(),
            "2026-11-28T09.part2.json"
        );
        let next_hour = ArchiveFileName::parse("2026-11-28T10.ogg").unwrap();
        let tenth = ArchiveFileName::parse("2026-11-28T09.part10.ogg").unwrap();
        let mut names = vec![
            next_hour.clone(),
            tenth.clone(),
            second.clone(),
            first.clone(),
        ];
        names.sort();
        assert_eq!(names, [first, second, tenth, next_hour]);
        let last = ArchiveFileName::parse("2026-11-28T09.part99.ogg").unwrap();
        assert_eq!(last.next_part(), None);
    }

    #[test]
    fn anything_else_is_refused_traversal_included() {
        for raw in [
            "",
            "2026-11-28T09",
            "2026-11-28T09.OGG",
            "2026-11-28T09.ogg ",
            " 2026-11-28T09.ogg",
            "2026-11-28T09.ogg/",
            "2026-11-28T09.oggx",
            "2026-11-28T09.ogg.json",
            "2026-11-28T24.ogg",
            "2026-02-30T09.ogg",
            "2026-13-01T09.ogg",
            "2026-11-28 09.ogg",
            "2026-11-2aT09.ogg",
            "+026-11-28T09.ogg",
            "2026-11-28T-9.ogg",
            "2026-11-28T09.wav",
            "../2026-11-28T09.ogg",
            "..%2F..%2Fetc%2Fpasswd",
            "../../etc/passwd",
            "2026-11-28T09.ogg/../../x",
            "/etc/passwd",
            "..",
            ".",
            "2026-11-28T0\u{0}.ogg",
            "２026-11-28T09.ogg",
            "2026-11-28T09.json\n",
            "2026-11-28T09.part1.ogg",
            "2026-11-28T09.part0.ogg",
            "2026-11-28T09.part02.ogg",
            "2026-11-28T09.part100.ogg",
            "2026-11-28T09.part256.ogg",
            "2026-11-28T09.part.ogg",
            "2026-11-28T09.part2",
            "2026-11-28T09.part2.ogg.json",
            "2026-11-28T09.part+2.ogg",
            "2026-11-28T09.part-2.ogg",
            "2026-11-28T09.part2/../x.ogg",
            "2026-11-28T09.PART2.ogg",
        ] {
            assert!(ArchiveFileName::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn a_file_is_named_after_the_hour_that_contains_a_moment() {
        let at = NaiveDate::from_ymd_opt(2026, 11, 28)
            .unwrap()
            .and_hms_milli_opt(9, 59, 59, 999)
            .unwrap();
        let name = ArchiveFileName::for_hour(at, ArchiveFileKind::Audio);
        assert_eq!(name.to_string(), "2026-11-28T09.ogg");
        assert_eq!(name.hour().minute(), 0);
    }

    #[test]
    fn names_cross_the_wire_as_strings_and_are_checked_there() {
        let name = ArchiveFileName::parse("2026-11-28T09.json").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"2026-11-28T09.json\"");
        assert_eq!(
            serde_json::from_str::<ArchiveFileName>(&json).unwrap(),
            name
        );
        assert!(serde_json::from_str::<ArchiveFileName>("\"../x.ogg\"").is_err());
    }
}
