//! Injected time.
//!
//! Everything in the daemon that needs "now" asks a [`Clock`]. In real time
//! it reads the system clock; in virtual time (tests, `--fast`) wall time is
//! the start time plus tokio's paused clock, so a scenario that lasts an hour
//! of virtual time produces records an hour apart, in seconds.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A moment as records store it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Wall time, milliseconds since the Unix epoch.
    pub wall_ms: i64,
    /// Milliseconds since boot (monotonic, survives wall-clock jumps).
    pub mono_ms: i64,
    /// Whether the wall clock was synchronised when this was taken.
    pub synced: bool,
}

/// Source of time for the whole daemon.
#[derive(Debug, Clone)]
pub struct Clock {
    virtual_time: bool,
    base_wall: SystemTime,
    base_instant: Instant,
    base_boot: Duration,
    base_synced: bool,
    boot_id: Arc<str>,
}

impl Clock {
    /// Reads the system clocks. Must be called inside the runtime whose
    /// clock is to be used (tokio's `Instant` is virtual under a paused
    /// runtime).
    pub fn new(virtual_time: bool) -> Clock {
        Clock {
            virtual_time,
            base_wall: SystemTime::now(),
            base_instant: Instant::now(),
            base_boot: callbox_hal::clock::since_boot(),
            base_synced: callbox_hal::clock::is_synchronized(),
            boot_id: callbox_hal::clock::boot_id().into(),
        }
    }

    /// A virtual clock whose wall time starts at `start` (tests of business
    /// hours and holidays; `--start-at`).
    pub fn starting_at(start: SystemTime) -> Clock {
        Clock {
            base_wall: start,
            ..Clock::new(true)
        }
    }

    /// Now.
    pub fn now(&self) -> Stamp {
        let elapsed = self.base_instant.elapsed();
        let (wall, synced) = if self.virtual_time {
            (self.base_wall + elapsed, self.base_synced)
        } else {
            (SystemTime::now(), callbox_hal::clock::is_synchronized())
        };
        Stamp {
            wall_ms: wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            mono_ms: (self.base_boot + elapsed).as_millis() as i64,
            synced,
        }
    }

    /// This boot's id.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2026-11-22T10:00:00.000Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A new record id: UUIDv7 from the clock, so ids sort by time.
pub fn new_id(clock: &Clock) -> String {
    let ms = clock.now().wall_ms.max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    uuid::Uuid::new_v7(ts).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_follows_paused_time() {
        let c = Clock::new(true);
        let a = c.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let b = c.now();
        assert_eq!(b.wall_ms - a.wall_ms, 3_600_000);
        assert_eq!(b.mono_ms - a.mono_ms, 3_600_000);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_790_000_000_123), "2026-09-21T14:13:20.123Z");
    }
}
