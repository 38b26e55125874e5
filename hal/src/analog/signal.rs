//! The timing logic of an analog port's pins: debounce, hook flash, ring
//! cadence, flapping, LED blink patterns.
//!
//! Everything here is a plain state machine fed with levels and the
//! [`Instant`] they were seen at, and asked for its next deadline: no
//! threads, no sleeping. The port tasks drive them from tokio time, so the
//! tests run them in virtual time and the logic does not depend on which
//! GPIO library delivers the edges.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::io::BoxStatus;

/// Settles a bouncing contact: a new level counts once it has held for
/// `hold` without another edge.
#[derive(Debug, Clone)]
pub struct Debouncer {
    hold: Duration,
    stable: bool,
    /// The latest raw level and when it was seen, while it differs from
    /// `stable`.
    pending: Option<(bool, Instant)>,
}

impl Debouncer {
    /// Starts settled at `level`.
    pub fn new(level: bool, hold: Duration) -> Debouncer {
        Debouncer {
            hold,
            stable: level,
            pending: None,
        }
    }

    /// The settled level.
    pub fn level(&self) -> bool {
        self.stable
    }

    /// A raw edge (or reading) of `level` at `at`.
    pub fn input(&mut self, level: bool, at: Instant) {
        if level == self.stable {
            self.pending = None;
        } else if self.pending.is_none_or(|(l, _)| l != level) {
            self.pending = Some((level, at));
        }
    }

    /// When a pending level will have held long enough.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(_, at)| at + self.hold)
    }

    /// The settled level if it changed by `now`, with the instant the
    /// change started (the first edge of the new level).
    pub fn poll(&mut self, now: Instant) -> Option<(bool, Instant)> {
        let (level, at) = self.pending?;
        if now < at + self.hold {
            return None;
        }
        self.pending = None;
        self.stable = level;
        Some((level, at))
    }
}

/// Hook-flash window of a station's handset: an on-hook shorter than
/// `flash_min` is ignored (a bounce the debounce let through, a knock), one
/// from `flash_min` to `flash_max` is a flash, a longer one hangs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashWindow {
    /// Shortest flash.
    pub flash_min: Duration,
    /// Longest flash; an on-hook this long is a hang-up.
    pub flash_max: Duration,
}

impl Default for FlashWindow {
    /// 80–700 ms: covers the 100 ms flash of most phones' R key and the
    /// 600 ms of older ones, below the 1 s people take to hang up and pick
    /// up again.
    fn default() -> FlashWindow {
        FlashWindow {
            flash_min: Duration::from_millis(80),
            flash_max: Duration::from_millis(700),
        }
    }
}

/// What a station's hook did, in call terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookEvent {
    /// The handset was lifted.
    OffHook,
    /// A flash: on-hook within the flash window.
    Flash,
    /// Hung up: on-hook for longer than the flash window.
    OnHook,
}

/// Turns a station's settled hook level into [`HookEvent`]s. A hang-up is
/// known only once the on-hook has outlasted the flash window, so it is
/// reported at that deadline.
#[derive(Debug, Clone)]
pub struct HookMonitor {
    window: FlashWindow,
    /// Whether the box was told the handset is off-hook.
    reported_off: bool,
    /// Since when the handset is down while reported off-hook.
    down_since: Option<Instant>,
}

impl HookMonitor {
    /// A handset that is on-hook.
    pub fn new(window: FlashWindow) -> HookMonitor {
        HookMonitor {
            window,
            reported_off: false,
            down_since: None,
        }
    }

    /// Whether the box considers the handset off-hook.
    pub fn off_hook(&self) -> bool {
        self.reported_off
    }

    /// The settled hook level changed at `at`.
    pub fn change(&mut self, off_hook: bool, at: Instant) -> Option<HookEvent> {
        if !off_hook {
            if self.reported_off && self.down_since.is_none() {
                self.down_since = Some(at);
            }
            return None;
        }
        if !self.reported_off {
            self.reported_off = true;
            return Some(HookEvent::OffHook);
        }
        let down = self.down_since.take()?;
        (at.saturating_duration_since(down) >= self.window.flash_min).then_some(HookEvent::Flash)
    }

    /// When an on-hook in progress becomes a hang-up.
    pub fn deadline(&self) -> Option<Instant> {
        self.down_since.map(|d| d + self.window.flash_max)
    }

    /// The hang-up, once the on-hook has outlasted the flash window.
    pub fn poll(&mut self, now: Instant) -> Option<HookEvent> {
        let down = self.down_since?;
        if now < down + self.window.flash_max {
            return None;
        }
        self.down_since = None;
        self.reported_off = false;
        Some(HookEvent::OnHook)
    }
}

/// Counts level changes in a sliding window: a contact that changes more
/// often than a person could move it is broken or wet, and its changes
/// must not become calls.
#[derive(Debug, Clone)]
pub struct FlapGuard {
    window: Duration,
    max_changes: usize,
    quiet: Duration,
    changes: VecDeque<Instant>,
    tripped: bool,
}

impl FlapGuard {
    /// Trips at more than `max_changes` changes within `window`; clears
    /// after `quiet` without a change.
    pub fn new(window: Duration, max_changes: usize, quiet: Duration) -> FlapGuard {
        FlapGuard {
            window,
            max_changes,
            quiet,
            changes: VecDeque::new(),
            tripped: false,
        }
    }

    /// Whether the guard has tripped.
    pub fn tripped(&self) -> bool {
        self.tripped
    }

    /// A change at `at`. `Some(true)` when this change trips the guard.
    pub fn change(&mut self, at: Instant) -> Option<bool> {
        self.changes.push_back(at);
        while self
            .changes
            .front()
            .is_some_and(|&t| at.saturating_duration_since(t) > self.window)
        {
            self.changes.pop_front();
        }
        // Bounded whatever the input does.
        while self.changes.len() > self.max_changes + 1 {
            self.changes.pop_front();
        }
        if !self.tripped && self.changes.len() > self.max_changes {
            self.tripped = true;
            return Some(true);
        }
        None
    }

    /// When a tripped guard clears if nothing changes meanwhile.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.tripped {
            return None;
        }
        self.changes.back().map(|&t| t + self.quiet)
    }

    /// `Some(false)` when a tripped guard has been quiet long enough.
    pub fn poll(&mut self, now: Instant) -> Option<bool> {
        let d = self.deadline()?;
        if now < d {
            return None;
        }
        self.tripped = false;
        self.changes.clear();
        Some(false)
    }
}

/// A ringing pattern: one burst of `on`, then `off` of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCadence {
    /// Burst length.
    pub on: Duration,
    /// Silence between bursts.
    pub off: Duration,
}

impl RingCadence {
    /// China (GB 3380): 1 s on, 4 s off.
    pub const CHINA: RingCadence = RingCadence {
        on: Duration::from_secs(1),
        off: Duration::from_secs(4),
    };
    /// North America: 2 s on, 4 s off.
    pub const NORTH_AMERICA: RingCadence = RingCadence {
        on: Duration::from_secs(2),
        off: Duration::from_secs(4),
    };

    /// Whether a burst of `d` fits: within 30 % (at least 150 ms) of `on`.
    /// Exchanges and ring detectors stretch bursts by a period of the ring
    /// signal or two; a 30 % margin still tells 1 s from 2 s.
    pub fn burst_fits(&self, d: Duration) -> bool {
        near(d, self.on)
    }

    /// Whether a silence of `d` between bursts fits.
    pub fn gap_fits(&self, d: Duration) -> bool {
        near(d, self.off)
    }

    /// Longest silence after which ringing has stopped.
    pub fn gap_max(&self) -> Duration {
        self.off + margin(self.off)
    }
}

fn margin(d: Duration) -> Duration {
    (d * 3 / 10).max(Duration::from_millis(150))
}

fn near(d: Duration, nominal: Duration) -> bool {
    let m = margin(nominal);
    d + m >= nominal && d <= nominal + m
}

/// What the ring detector of a trunk (FXO) saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingEvent {
    /// A ring burst began; `after` is the silence since the last burst,
    /// when there was one within the cadence's longest gap.
    BurstStart {
        /// Silence since the previous burst.
        after: Option<Duration>,
    },
    /// A burst ended after `length`.
    BurstEnd {
        /// How long it lasted.
        length: Duration,
    },
    /// No burst for longer than the cadence's gap: ringing has stopped.
    Stopped,
}

/// Turns a ring-detect input into ring bursts.
///
/// An opto-coupler on the ring signal toggles at the ringing frequency
/// (20–25 Hz) for the length of a burst, while a detector with a filter
/// holds its level through the burst: both are handled by treating any
/// activity within `hold` of the last as the same burst.
#[derive(Debug, Clone)]
pub struct RingDetector {
    cadence: RingCadence,
    hold: Duration,
    active: bool,
    /// Start of the burst in progress.
    burst_start: Option<Instant>,
    /// When the input last went inactive during a burst.
    last_inactive: Option<Instant>,
    /// End of the last burst, while ringing may still continue.
    last_end: Option<Instant>,
}

impl RingDetector {
    /// A detector for `cadence`; activity closer than `hold` is one burst.
    pub fn new(cadence: RingCadence, hold: Duration) -> RingDetector {
        RingDetector {
            cadence,
            hold,
            active: false,
            burst_start: None,
            last_inactive: None,
            last_end: None,
        }
    }

    /// The raw ring-detect level (active = ring voltage seen) at `at`.
    pub fn input(&mut self, active: bool, at: Instant) -> Option<RingEvent> {
        if active == self.active {
            return None;
        }
        self.active = active;
        if !active {
            self.last_inactive = Some(at);
            return None;
        }
        self.last_inactive = None;
        if self.burst_start.is_some() {
            return None;
        }
        self.burst_start = Some(at);
        let after = self
            .last_end
            .take()
            .map(|e| at.saturating_duration_since(e));
        Some(RingEvent::BurstStart { after })
    }

    /// The next instant [`RingDetector::poll`] has something to say.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.burst_start, self.last_inactive, self.last_end) {
            (Some(_), Some(off), _) => Some(off + self.hold),
            (None, _, Some(end)) => Some(end + self.cadence.gap_max()),
            _ => None,
        }
    }

    /// A burst's end once the input has been quiet for `hold`, or the end
    /// of ringing once the silence outlasts the cadence.
    pub fn poll(&mut self, now: Instant) -> Option<RingEvent> {
        if let (Some(start), Some(off)) = (self.burst_start, self.last_inactive) {
            if now >= off + self.hold {
                self.burst_start = None;
                self.last_inactive = None;
                self.last_end = Some(off);
                return Some(RingEvent::BurstEnd {
                    length: off.saturating_duration_since(start),
                });
            }
            return None;
        }
        if let Some(end) = self.last_end
            && self.burst_start.is_none()
            && now >= end + self.cadence.gap_max()
        {
            self.last_end = None;
            return Some(RingEvent::Stopped);
        }
        None
    }
}

/// A repeating on/off pattern for an LED, in milliseconds; an empty
/// pattern is steady.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlinkPattern {
    /// Level when the pattern is steady, else the level of the first step.
    pub steady: Option<bool>,
    /// Alternating on and off times, starting with on.
    pub steps_ms: &'static [u32],
}

/// How the status LED shows each state of the box, so that a technician
/// can tell them apart from across a room:
///
/// | state | LED |
/// |---|---|
/// | booting | fast blink, 4 per second |
/// | ready | steady on |
/// | ready, night mode | on, with a short dark gap every 2 s |
/// | no identity | two short flashes every 2 s |
/// | offline from headquarters | slow blink, 1 s on / 1 s off |
/// | alarm | very fast blink, 10 per second |
/// | stopping | off |
pub fn status_pattern(status: BoxStatus) -> BlinkPattern {
    let blink = |steps_ms: &'static [u32]| BlinkPattern {
        steady: None,
        steps_ms,
    };
    match status {
        BoxStatus::Booting => blink(&[125, 125]),
        BoxStatus::Ready => BlinkPattern {
            steady: Some(true),
            steps_ms: &[],
        },
        BoxStatus::Night => blink(&[1800, 200]),
        BoxStatus::NoIdentity => blink(&[150, 150, 150, 1550]),
        BoxStatus::Offline => blink(&[1000, 1000]),
        BoxStatus::Alarm => blink(&[50, 50]),
        _ => BlinkPattern {
            steady: Some(false),
            steps_ms: &[],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn debounce_needs_the_level_to_hold() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(false, ms(10));
        d.input(true, t0);
        d.input(false, t0 + ms(3));
        d.input(true, t0 + ms(5));
        assert_eq!(d.poll(t0 + ms(12)), None, "bounced 7 ms ago");
        assert_eq!(d.deadline(), Some(t0 + ms(15)));
        assert_eq!(d.poll(t0 + ms(15)), Some((true, t0 + ms(5))));
        assert!(d.level());
        d.input(false, t0 + ms(20));
        d.input(true, t0 + ms(25));
        assert_eq!(d.deadline(), None, "back to the settled level");
    }

    #[test]
    fn flash_window_separates_knock_flash_and_hangup() {
        let t0 = Instant::now();
        let mut h = HookMonitor::new(FlashWindow::default());
        assert_eq!(h.change(true, t0), Some(HookEvent::OffHook));
        // 50 ms down: ignored.
        assert_eq!(h.change(false, t0 + ms(1000)), None);
        assert_eq!(h.change(true, t0 + ms(1050)), None);
        // 300 ms down: flash.
        assert_eq!(h.change(false, t0 + ms(2000)), None);
        assert_eq!(h.poll(t0 + ms(2300)), None);
        assert_eq!(h.change(true, t0 + ms(2300)), Some(HookEvent::Flash));
        // Down for good: hang-up at the end of the window.
        assert_eq!(h.change(false, t0 + ms(3000)), None);
        assert_eq!(h.deadline(), Some(t0 + ms(3700)));
        assert_eq!(h.poll(t0 + ms(3699)), None);
        assert_eq!(h.poll(t0 + ms(3700)), Some(HookEvent::OnHook));
        assert!(!h.off_hook());
        assert_eq!(h.change(true, t0 + ms(5000)), Some(HookEvent::OffHook));
    }

    #[test]
    fn flap_guard_trips_and_clears() {
        let t0 = Instant::now();
        let mut g = FlapGuard::new(ms(5000), 10, ms(10_000));
        for i in 0..10 {
            assert_eq!(g.change(t0 + ms(i * 100)), None);
        }
        assert_eq!(g.change(t0 + ms(1000)), Some(true));
        assert_eq!(g.change(t0 + ms(1100)), None, "reported once");
        assert_eq!(g.poll(t0 + ms(11_000)), None);
        assert_eq!(g.poll(t0 + ms(11_100)), Some(false));
        // Slow changes never trip it.
        for i in 0..100 {
            assert_eq!(g.change(t0 + ms(20_000 + i * 600)), None);
        }
    }

    #[test]
    fn ring_bursts_from_a_toggling_detector() {
        let t0 = Instant::now();
        let mut r = RingDetector::new(RingCadence::CHINA, ms(60));
        let mut events = Vec::new();
        // 1 s of 25 Hz: active 20 ms, inactive 20 ms.
        for i in 0..25u64 {
            events.extend(r.input(true, t0 + ms(i * 40)));
            events.extend(r.input(false, t0 + ms(i * 40 + 20)));
            events.extend(r.poll(t0 + ms(i * 40 + 39)));
        }
        assert_eq!(events, [RingEvent::BurstStart { after: None }]);
        let end = r.deadline().unwrap();
        assert_eq!(end, t0 + ms(980 + 60));
        assert_eq!(r.poll(end), Some(RingEvent::BurstEnd { length: ms(980) }));
        assert!(RingCadence::CHINA.burst_fits(ms(980)));
        assert!(!RingCadence::NORTH_AMERICA.burst_fits(ms(980)));
        // Next burst 4 s later.
        assert_eq!(
            r.input(true, t0 + ms(4980)),
            Some(RingEvent::BurstStart {
                after: Some(ms(4000))
            })
        );
        r.input(false, t0 + ms(5980));
        r.poll(t0 + ms(6040));
        assert_eq!(
            r.deadline(),
            Some(t0 + ms(5980) + RingCadence::CHINA.gap_max())
        );
        assert_eq!(r.poll(t0 + ms(5980 + 5200)), Some(RingEvent::Stopped));
    }

    #[test]
    fn cadence_tolerance() {
        let c = RingCadence::CHINA;
        assert!(c.burst_fits(ms(750)) && c.burst_fits(ms(1300)));
        assert!(!c.burst_fits(ms(650)) && !c.burst_fits(ms(1400)));
        assert!(c.gap_fits(ms(3000)) && !c.gap_fits(ms(2500)));
        assert!(!c.burst_fits(ms(100)), "a blip is not a ring");
    }

    #[test]
    fn every_status_has_a_distinct_pattern() {
        let all = [
            BoxStatus::Booting,
            BoxStatus::Ready,
            BoxStatus::Night,
            BoxStatus::NoIdentity,
            BoxStatus::Offline,
            BoxStatus::Alarm,
            BoxStatus::Stopping,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(status_pattern(*a), status_pattern(*b), "{a} vs {b}");
            }
        }
    }
}
