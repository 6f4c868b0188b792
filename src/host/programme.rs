//! The programme clock: which block airs at a given moment (the channel's schedule, hours in
//! the station's time zone), which topic comes next, and how long the next segment should be
//! so the hour ends on time (back-timing: the last thing before the top of the hour is a
//! short station ID, and no talk segment is planned across the hour).
//!
//! Config keys read here: `station.timezone`, `schedule.topics`, `host.segment_secs`.

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::bus::ScheduleSlot;
use crate::domain::Block;

/// A segment shorter than this is not worth planning: a station ID fills the time instead.
const SHORTEST_TALK_SECS: f64 = 15.0;
/// Planned length of a station ID.
pub const STATION_ID_SECS: f64 = 6.0;

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
    /// rotation; `segment_secs` the usual length of a talk segment.
    pub fn plan(
        &self,
        schedule: &[ScheduleSlot],
        at: DateTime<Utc>,
        topic: &str,
        segment_secs: f64,
        has_music: bool,
    ) -> Plan {
        // A segment that would start within a second of the hour belongs to the new hour.
        let at = if self.secs_to_next_hour(at) < 1.0 {
            at + Duration::seconds(1)
        } else {
            at
        };
        let slot = self.slot(schedule, at);
        let block = slot.map_or(Block::TopicA, |s| s.block);
        let prompt = slot.and_then(|s| s.prompt.clone());
        let left = self.secs_to_next_hour(at);
        let (kind, target_secs) = if left < SHORTEST_TALK_SECS + STATION_ID_SECS {
            (PlanKind::StationId, left.min(STATION_ID_SECS))
        } else if block == Block::Music && has_music {
            (PlanKind::Music, left - STATION_ID_SECS)
        } else if block == Block::Jingle {
            // A JINGLE hour is short pieces in the jingle style, not an hour of station IDs.
            (
                PlanKind::Talk,
                (segment_secs / 3.0)
                    .max(SHORTEST_TALK_SECS)
                    .min(left - STATION_ID_SECS),
            )
        } else {
            (PlanKind::Talk, segment_secs.min(left - STATION_ID_SECS))
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
        let plan = tokyo.plan(&schedule(), at("2026-11-28T01:30:00Z"), "科学", 45.0, false);
        assert_eq!(plan.hour, 10);
        assert_eq!(plan.block, Block::News);
        assert_eq!(plan.prompt.as_deref(), Some("朝のニュース"));
        assert_eq!(plan.kind, PlanKind::Talk);
        assert_eq!(plan.target_secs, 45.0);
    }

    #[test]
    fn the_hour_closes_with_a_station_id_and_talk_never_crosses_it() {
        let tokyo = StationTime::new(chrono_tz::Asia::Tokyo);
        // 09:59:45 in Tokyo: too little time for talk.
        let plan = tokyo.plan(&schedule(), at("2026-11-28T00:59:45Z"), "x", 45.0, false);
        assert_eq!(plan.kind, PlanKind::StationId);
        assert_eq!(plan.block, Block::TopicA);
        // 09:59:00: 60 s left, so talk is trimmed to end before the station ID.
        let plan = tokyo.plan(&schedule(), at("2026-11-28T00:59:00Z"), "x", 90.0, false);
        assert_eq!(plan.kind, PlanKind::Talk);
        assert!((plan.target_secs - (60.0 - STATION_ID_SECS)).abs() < 1e-6);
        // Half a second before the hour counts as the new hour.
        let plan = tokyo.plan(&schedule(), at("2026-11-28T00:59:59.5Z"), "x", 45.0, false);
        assert_eq!(plan.hour, 10);
        assert_eq!(plan.block, Block::News);
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
        assert_eq!(utc.plan(&music, t, "x", 45.0, true).kind, PlanKind::Music);
        assert_eq!(utc.plan(&music, t, "x", 45.0, false).kind, PlanKind::Talk);
    }
}
