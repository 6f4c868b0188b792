//! The programme clock: which block airs at a given moment (the channel's schedule, hours in
//! the station's time zone), which topic comes next, and how long the next segment should be
//! so the hour ends on time (back-timing: the last thing before the top of the hour is a
//! short station ID, once, and no talk segment is planned across the hour; time left over
//! before the ID goes to a short piece, so the ID is not aired twice in a row).
//!
//! Config keys read here: `station.timezone`, `schedule.topics`, `host.segment_secs`.

use chrono::{DateTime, Duration, DurationRound, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::bus::ScheduleSlot;
use crate::domain::Block;

/// A segment shorter than this is not worth planning: a station ID fills the time instead.
const SHORTEST_TALK_SECS: f64 = 15.0;
/// Planned length of a station ID (until its audio is rendered and its length known).
pub const STATION_ID_SECS: f64 = 6.0;
/// Time before the station ID shorter than this is left to it: the next hour may begin
/// this much early rather than air a piece too short to say anything.
const SHORTEST_PIECE_SECS: f64 = 2.0;

/// How the hour being planned in closes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourEnd {
    /// How long the station ID lasts.
    pub id_secs: f64,
    /// The top of the hour whose closing station ID is planned already, if one is: what
    /// comes after it belongs to the next hour.
    pub closed: Option<DateTime<Utc>>,
}

impl Default for HourEnd {
    fn default() -> Self {
        Self {
            id_secs: STATION_ID_SECS,
            closed: None,
        }
    }
}

/// What the next segment should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The block of the hour the segment airs in.
    pub block: Block,
    /// The schedule row's prompt for that hour.
    pub prompt: Option<String>,
    pub topic: String,
    /// Hour 0–23 on the station's clock.
    pub hour: u8,
    /// How long it should last, in seconds.
    pub target_secs: f64,
    pub kind: PlanKind,
    /// For a call's answer: the listener's words (see [`crate::host::writer::ScriptBrief::caller`]).
    pub caller: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// A spoken segment for the block.
    Talk,
    /// The short station ID that closes an hour.
    StationId,
    /// A track from the music library, with a spoken intro.
    Music,
}

/// The station's calendar: time zone and default block.
#[derive(Debug, Clone)]
pub struct StationTime {
    pub tz: Tz,
}

impl StationTime {
    pub fn new(tz: Tz) -> Self {
        Self { tz }
    }

    /// Hour 0–23 on the station's clock at `at`.
    pub fn hour(&self, at: DateTime<Utc>) -> u8 {
        self.tz.from_utc_datetime(&at.naive_utc()).hour() as u8
    }

    /// The next top of the hour on the station's clock after `at`.
    pub fn next_hour(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = self.tz.from_utc_datetime(&at.naive_utc());
        let top = local
            .duration_trunc(Duration::hours(1))
            .unwrap_or(local)
            .with_timezone(&Utc);
        top + Duration::hours(1)
    }

    /// Seconds from `at` to the next top of the hour on the station's clock.
    pub fn secs_to_next_hour(&self, at: DateTime<Utc>) -> f64 {
        let local = self.tz.from_utc_datetime(&at.naive_utc());
        let into_hour =
            f64::from(local.minute() * 60 + local.second()) + f64::from(local.nanosecond()) / 1e9;
        3600.0 - into_hour
    }

    /// The schedule slot that applies at `at`, if the schedule names that hour.
    pub fn slot<'a>(
        &self,
        schedule: &'a [ScheduleSlot],
        at: DateTime<Utc>,
    ) -> Option<&'a ScheduleSlot> {
        let hour = self.hour(at);
        schedule.iter().find(|s| s.hour == hour)
    }

    /// Plans the segment that will start airing at `at`. `topic` is the next topic of the
    /// rotation; `segment_secs` the usual length of a talk segment; `end` how the hour
    /// closes.
    pub fn plan(
        &self,
        schedule: &[ScheduleSlot],
        at: DateTime<Utc>,
        topic: &str,
        segment_secs: f64,
        has_music: bool,
        end: HourEnd,
    ) -> Plan {
        // A segment that would start within a second of the hour belongs to the new hour,
        // and so does one after the hour's closing ID.
        let top = self.next_hour(at);
        let at = if self.secs_to_next_hour(at) < 1.0 {
            at + Duration::seconds(1)
        } else if end.closed == Some(top) {
            top
        } else {
            at
        };
        let slot = self.slot(schedule, at);
        let block = slot.map_or(Block::TopicA, |s| s.block);
        let prompt = slot.and_then(|s| s.prompt.clone());
        let left = self.secs_to_next_hour(at);
        let id = end.id_secs;
        let (kind, target_secs) = if left < SHORTEST_TALK_SECS + id {
            if left - id >= SHORTEST_PIECE_SECS {
                // Too little time for a segment, too much to leave to the ID: a short piece.
                (PlanKind::Talk, left - id)
            } else {
                (PlanKind::StationId, left.min(id))
            }
        } else if block == Block::Music && has_music {
            (PlanKind::Music, left - id)
        } else if block == Block::Jingle {
            // A JINGLE hour is short pieces in the jingle style, not an hour of station IDs.
            (
                PlanKind::Talk,
                (segment_secs / 3.0).max(SHORTEST_TALK_SECS).min(left - id),
            )
        } else {
            (PlanKind::Talk, segment_secs.min(left - id))
        };
        Plan {
            block,
            prompt,
            topic: topic.to_owned(),
            hour: self.hour(at),
            target_secs,
            kind,
            caller: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn schedule() -> Vec<ScheduleSlot> {
        (0..24)
            .map(|hour| ScheduleSlot {
                hour,
                block: if hour == 10 {
                    Block::News
                } else {
                    Block::TopicA
                },
                prompt: (hour == 10).then(|| "朝のニュース".to_owned()),
            })
            .collect()
    }

    #[test]
    fn hours_are_on_the_station_clock() {
        let tokyo = StationTime::new(chrono_tz::Asia::Tokyo);
        // 01:30 UTC is 10:30 in Tokyo.
        let plan = tokyo.plan(
            &schedule(),
            at("2026-11-28T01:30:00Z"),
            "科学",
            45.0,
            false,
            HourEnd::default(),
        );
        assert_eq!(plan.hour, 10);
        assert_eq!(plan.block, Block::News);
        assert_eq!(plan.prompt.as_deref(), Some("朝のニュース"));
        assert_eq!(plan.kind, PlanKind::Talk);
        assert_eq!(plan.target_secs, 45.0);
    }

    #[test]
    fn the_hour_closes_with_a_station_id_and_talk_never_crosses_it() {
        let tokyo = StationTime::new(chrono_tz::Asia::Tokyo);
        // 09:59:53 in Tokyo: time for the ID and no more.
        let plan = tokyo.plan(
            &schedule(),
            at("2026-11-28T00:59:53Z"),
            "x",
            45.0,
            false,
            HourEnd::default(),
        );
        assert_eq!(plan.kind, PlanKind::StationId);
        assert_eq!(plan.block, Block::TopicA);
        // 09:59:45: too little time for a segment; a 9 s piece, so the ID closes the hour.
        let plan = tokyo.plan(
            &schedule(),
            at("2026-11-28T00:59:45Z"),
            "x",
            45.0,
            false,
            HourEnd::default(),
        );
        assert_eq!(plan.kind, PlanKind::Talk);
        assert!((plan.target_secs - 9.0).abs() < 1e-6, "{plan:?}");
        // 09:59:00: 60 s left, so talk is trimmed to end before the station ID.
        let plan = tokyo.plan(
            &schedule(),
            at("2026-11-28T00:59:00Z"),
            "x",
            90.0,
            false,
            HourEnd::default(),
        );
        assert_eq!(plan.kind, PlanKind::Talk);
        assert!((plan.target_secs - (60.0 - STATION_ID_SECS)).abs() < 1e-6);
        // Half a second before the hour counts as the new hour.
        let plan = tokyo.plan(
            &schedule(),
            at("2026-11-28T00:59:59.5Z"),
            "x",
            45.0,
            false,
            HourEnd::default(),
        );
        assert_eq!(plan.hour, 10);
        assert_eq!(plan.block, Block::News);
    }

    #[test]
    fn the_hour_closes_once_and_what_follows_its_id_belongs_to_the_next_hour() {
        let tokyo = StationTime::new(chrono_tz::Asia::Tokyo);
        let ten = at("2026-11-28T01:00:00Z");
        let short_id = HourEnd {
            id_secs: 3.5,
            closed: None,
        };
        // 09:59:55, 3.5 s of ID to come: the ID.
        let t = at("2026-11-28T00:59:55Z");
        let plan = tokyo.plan(&schedule(), t, "x", 45.0, false, short_id);
        assert_eq!((plan.kind, plan.hour), (PlanKind::StationId, 9));
        // 09:59:58.5, after that ID: the 10 o'clock block, not the ID again.
        let after = at("2026-11-28T00:59:58.5Z");
        let closed = HourEnd {
            closed: Some(tokyo.next_hour(t)),
            ..short_id
        };
        assert_eq!(closed.closed, Some(ten));
        let plan = tokyo.plan(&schedule(), after, "x", 45.0, false, closed);
        assert_eq!(
            (plan.kind, plan.hour, plan.block),
            (PlanKind::Talk, 10, Block::News)
        );
        assert_eq!(plan.target_secs, 45.0);
        // An earlier hour's ID closes nothing now.
        let last_hour = HourEnd {
            closed: Some(ten - Duration::hours(1)),
            ..short_id
        };
        let plan = tokyo.plan(&schedule(), after, "x", 45.0, false, last_hour);
        assert_eq!(plan.kind, PlanKind::StationId);
    }

    #[test]
    fn the_next_hour_is_the_station_clocks_even_at_a_half_hour_offset() {
        let kolkata = StationTime::new(chrono_tz::Asia::Kolkata);
        // 00:45 UTC is 06:15 in Kolkata; its next hour, 07:00, is 01:30 UTC.
        assert_eq!(
            kolkata.next_hour(at("2026-11-28T00:45:00Z")),
            at("2026-11-28T01:30:00Z")
        );
        assert_eq!(
            kolkata.next_hour(at("2026-11-28T01:30:00Z")),
            at("2026-11-28T02:30:00Z")
        );
        let tokyo = StationTime::new(chrono_tz::Asia::Tokyo);
        assert_eq!(
            tokyo.next_hour(at("2026-11-28T00:59:59.999Z")),
            at("2026-11-28T01:00:00Z")
        );
    }

    #[test]
    fn music_hours_play_music_when_there_is_some() {
        let utc = StationTime::new(chrono_tz::UTC);
        let music: Vec<ScheduleSlot> = (0..24)
            .map(|hour| ScheduleSlot {
                hour,
                block: Block::Music,
                prompt: None,
            })
            .collect();
        let t = at("2026-11-28T03:00:00Z");
        assert_eq!(
            utc.plan(&music, t, "x", 45.0, true, HourEnd::default())
                .kind,
            PlanKind::Music
        );
        assert_eq!(
            utc.plan(&music, t, "x", 45.0, false, HourEnd::default())
                .kind,
            PlanKind::Talk
        );
    }
}
