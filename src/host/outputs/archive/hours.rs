//! The station clock's hours, which the archive cuts its files at: the hour a moment falls
//! in, and when the hour a file is named for began.

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::bus::archive::ArchiveFileName;

/// The top of the station-clock hour containing `at`, as an instant and as the local time
/// files are named by.
pub(super) fn hour_of(tz: Tz, at: DateTime<Utc>) -> (DateTime<Utc>, NaiveDateTime) {
    let local = at.with_timezone(&tz);
    let into_hour = chrono::Duration::seconds(i64::from(local.minute() * 60 + local.second()))
        + chrono::Duration::nanoseconds(i64::from(local.nanosecond()));
    let start = at - into_hour;
    (start, start.with_timezone(&tz).naive_local())
}

/// When a file's hour began, as an instant; `None` for a local hour the zone skipped.
pub(super) fn hour_start(tz: Tz, name: &ArchiveFileName) -> Option<DateTime<Tz>> {
    tz.from_local_datetime(&name.hour()).earliest()
}
