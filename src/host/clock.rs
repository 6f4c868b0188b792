//! The clock the engine runs by: real time in production, a faster virtual clock in tests
//! and benchmarks (so an hour of programme airs in seconds). Everything the engine times —
//! frame pacing, look-ahead, retry backoff, the hour of the schedule — goes through it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

pub trait Clock: Send + Sync + 'static {
    /// The current time on this clock.
    fn now(&self) -> DateTime<Utc>;
    /// Completes when this clock reaches `deadline` (at once if it has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
    /// Sleeps for `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now() + chrono::Duration::from_std(duration).unwrap_or_default();
        self.sleep_until(deadline)
    }
    /// How many clock seconds pass per real second (1 for the system clock).
    fn speed(&self) -> f64 {
        1.0
    }
}

/// Real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).boxed()
    }
}

/// Virtual time that starts at `origin` and runs `speed` times faster than real time.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    real_origin: Instant,
    origin: DateTime<Utc>,
    speed: f64,
}

impl ScaledClock {
    pub fn new(origin: DateTime<Utc>, speed: f64) -> Self {
        Self {
            real_origin: Instant::now(),
            origin,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let virtual_elapsed = self.real_origin.elapsed().as_secs_f64() * self.speed;
        self.origin + chrono::Duration::microseconds((virtual_elapsed * 1e6) as i64)
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let virtual_wait = (deadline - self.origin)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        let real_deadline = self.real_origin + Duration::from_secs_f64(virtual_wait / self.speed);
        tokio::time::sleep_until(real_deadline).boxed()
    }

    fn speed(&self) -> f64 {
        self.speed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scaled_clock_runs_faster_than_real_time() {
        let origin = DateTime::parse_from_rfc3339("2026-01-01T09:59:00Z")
            .unwrap()
            .to_utc();
        let clock = ScaledClock::new(origin, 60.0);
        clock.sleep(Duration::from_secs(60)).await;
        let now = clock.now();
        assert!(now >= origin + chrono::Duration::seconds(60));
        assert!(now < origin + chrono::Duration::seconds(61), "{now}");
        // One real second is a virtual minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(clock.now() >= origin + chrono::Duration::seconds(120));
    }
}
