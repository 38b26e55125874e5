//! The analog backend's line logic on simulated pins, in virtual time:
//! ring cadence on a trunk (a call only from real ringing, a fault from
//! broken ringing, the caller giving up), ringing a station with the
//! site's cadence, the handset's hook (debounce, flash, hang-up, a flapping
//! hook), the status LED's patterns and the buttons. The sound card is a
//! silent PCM here; tests/analog_alsa.rs runs the audio through alsa-lib.

use std::sync::Arc;
use std::time::Duration;

use callbox_hal::analog::AnalogBackend;
use callbox_hal::analog::board::{Board, RawBoard};
use callbox_hal::analog::engine::{MediaStats, Pcm, PcmError};
use callbox_hal::analog::pins::SimGpio;
use callbox_hal::io::{BoxStatus, Button, Indicators, Inputs};
use callbox_hal::{HangupCause, Line, LineCommand, LineEvent};
use tokio::time::{Instant, sleep, timeout};

mod common;
use common::two_lines as lines;

/// A sound card that hears silence and plays into nothing.
struct SilentPcm;

impl Pcm for SilentPcm {
    fn read(&mut self, buf: &mut [i16]) -> Result<(), PcmError> {
        buf.fill(0);
        Ok(())
    }
    fn write(&mut self, _buf: &[i16]) -> Result<(), PcmError> {
        Ok(())
    }
}

const BOARD: &str = r#"
    capture = "test"
    channels = 2
    timing = "system"
    gpio = "sim"
    status_led = { pin = 17 }
    buttons = { night_mode = { pin = 26, active_low = true } }
    [[port]]
    line = "pstn-1"
    channel = 0
    ring_detect = { pin = 5, active_low = true }
    hook_relay = { pin = 6 }
    led = { pin = 13 }
    [[port]]
    line = "desk-1"
    channel = 1
    hook = { pin = 20, active_low = true }
    ring_relay = { pin = 21 }
"#;

fn board() -> Board {
    let raw: RawBoard = toml::from_str(BOARD).unwrap();
    raw.check(&lines()).unwrap()
}

struct Rig {
    hw: SimGpio,
    backend: AnalogBackend,
    trunk: callbox_hal::analog::AnalogLine,
    station: callbox_hal::analog::AnalogLine,
}

fn rig() -> Rig {
    let hw = SimGpio::new();
    // Active-low inputs idle high.
    hw.drive(5, true);
    hw.drive(20, true);
    hw.drive(26, true);
    let mut backend = AnalogBackend::with_parts(
        board(),
        lines(),
        Box::new(SilentPcm),
        Box::new(hw.clone()),
        Arc::new(MediaStats::default()),
    )
    .unwrap();
    let mut ports = backend.take_ports();
    let station = ports.pop().unwrap().line;
    let trunk = ports.pop().unwrap().line;
    backend.start().unwrap();
    Rig {
        hw,
        backend,
        trunk,
        station,
    }
}

/// Rings the trunk for `on` with a 25 Hz ring signal on an active-low
/// detector.
async fn ring(hw: &SimGpio, on: Duration) {
    let end = Instant::now() + on;
    while Instant::now() < end {
        hw.drive(5, false);
        sleep(Duration::from_millis(20)).await;
        hw.drive(5, true);
        sleep(Duration::from_millis(20)).await;
    }
}

async fn next(line: &mut callbox_hal::analog::AnalogLine, within: Duration) -> Option<LineEvent> {
    timeout(within, line.next_event())
        .await
        .ok()
        .map(|r| r.unwrap())
}

#[tokio::test(start_paused = true)]
async fn regular_ringing_makes_one_call_and_answering_seizes_the_line() {
    let mut r = rig();
    let t0 = Instant::now();
    ring(&r.hw, Duration::from_secs(1)).await;
    // One burst without caller id is not yet a call.
    assert_eq!(next(&mut r.trunk, Duration::from_millis(3900)).await, None);
    let (_, (ev, at)) = tokio::join!(ring(&r.hw, Duration::from_secs(1)), async {
        let ev = next(&mut r.trunk, Duration::from_secs(1)).await;
        (ev, Instant::now())
    });
    assert_eq!(
        ev,
        Some(LineEvent::Incoming {
            caller: None,
            dialled: None
        })
    );
    let at = (at - t0).as_millis();
    assert!(
        (4900..5000).contains(&at),
        "at the second burst's start: {at} ms"
    );
    r.trunk.command(LineCommand::Answer).await.unwrap();
    sleep(Duration::from_millis(10)).await;
    assert!(r.hw.level(6), "hook relay pulled");
    // Ringing goes on a moment after the answer; no second call.
    ring(&r.hw, Duration::from_millis(300)).await;
    assert_eq!(next(&mut r.trunk, Duration::from_secs(10)).await, None);
    r.trunk
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await
        .unwrap();
    sleep(Duration::from_millis(10)).await;
    assert!(!r.hw.level(6), "line released");
    drop(r.backend);
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_gives_up_before_the_answer_hangs_up() {
    let mut r = rig();
    ring(&r.hw, Duration::from_secs(1)).await;
    sleep(Duration::from_secs(4)).await;
    ring(&r.hw, Duration::from_secs(1)).await;
    assert!(matches!(
        next(&mut r.trunk, Duration::from_secs(1)).await,
        Some(LineEvent::Incoming { .. })
    ));
    // No third burst: after the longest silence the cadence allows.
    let t = Instant::now();
    assert_eq!(
        next(&mut r.trunk, Duration::from_secs(10)).await,
        Some(LineEvent::Hangup(HangupCause::Normal))
    );
    let waited = Instant::now() - t;
    assert!(
        waited > Duration::from_secs(4) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn broken_ringing_is_a_fault_and_never_a_call() {
    let mut r = rig();
    // Blips of 200 ms (a line disturbance), and a 4 s burst.
    for _ in 0..2 {
        ring(&r.hw, Duration::from_millis(200)).await;
        sleep(Duration::from_secs(2)).await;
    }
    ring(&r.hw, Duration::from_secs(4)).await;
    let ev = next(&mut r.trunk, Duration::from_secs(2)).await;
    let Some(LineEvent::Fault(f)) = ev else {
        panic!("expected a fault, got {ev:?}");
    };
    assert_eq!(f.code, "ring_cadence");
    assert!(f.active);
    assert!(
        f.detail.contains("4000 ms") || f.detail.contains("ring burst"),
        "{}",
        f.detail
    );
    assert_eq!(
        next(&mut r.trunk, Duration::from_secs(30)).await,
        None,
        "no call"
    );
    // Five quiet minutes clear it.
    let ev = next(&mut r.trunk, Duration::from_secs(300)).await;
    assert!(
        matches!(&ev, Some(LineEvent::Fault(f)) if !f.active),
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_station_rings_with_the_cadence_and_its_hook_answers_flashes_and_hangs_up() {
    let mut r = rig();
    let t0 = Instant::now();
    r.station
        .command(LineCommand::Ring {
            caller_id: Some("13812345678".into()),
            caller_name: None,
        })
        .await
        .unwrap();
    sleep(Duration::from_millis(10_500)).await;
    let relay: Vec<(u128, bool)> =
        r.hw.history(21)
            .iter()
            .map(|(t, l)| (t.saturating_duration_since(t0).as_millis(), *l))
            .collect();
    // Initial release, then 1 s on / 4 s off twice, then on.
    assert_eq!(
        relay,
        [
            (0, false),
            (0, true),
            (1000, false),
            (5000, true),
            (6000, false),
            (10_000, true)
        ]
    );
    // The agent lifts the handset, with contact bounce.
    for l in [false, true, false, true, false] {
        r.hw.drive(20, l);
        sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::Answered)
    );
    assert!(!r.hw.level(21), "ringing stops");
    assert_eq!(
        next(&mut r.station, Duration::from_secs(1)).await,
        None,
        "bounce is one lift"
    );
    // A 300 ms flash.
    r.hw.drive(20, true);
    sleep(Duration::from_millis(300)).await;
    r.hw.drive(20, false);
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::HookFlash)
    );
    // A knock of 40 ms is nothing.
    r.hw.drive(20, true);
    sleep(Duration::from_millis(40)).await;
    r.hw.drive(20, false);
    assert_eq!(next(&mut r.station, Duration::from_secs(1)).await, None);
    // Hung up: known once the flash window has passed.
    r.hw.drive(20, true);
    let t = Instant::now();
    assert_eq!(
        next(&mut r.station, Duration::from_secs(2)).await,
        Some(LineEvent::Hangup(HangupCause::Normal))
    );
    let after = (Instant::now() - t).as_millis();
    assert!((700..=720).contains(&after), "{after} ms");
    // Lifted while idle: an off-hook for a feature code.
    r.hw.drive(20, false);
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::OffHook)
    );
    // A busy station is not rung.
    r.station
        .command(LineCommand::Ring {
            caller_id: None,
            caller_name: None,
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::Hangup(HangupCause::Busy))
    );
}

#[tokio::test(start_paused = true)]
async fn a_flapping_hook_raises_a_fault_and_is_ignored_until_steady() {
    let mut r = rig();
    r.hw.drive(20, false);
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::OffHook)
    );
    // Wet wiring: the hook toggles every 150 ms.
    let mut events = Vec::new();
    for i in 0..20 {
        r.hw.drive(20, i % 2 == 0);
        sleep(Duration::from_millis(150)).await;
        while let Some(ev) = next(&mut r.station, Duration::ZERO).await {
            events.push(ev);
        }
    }
    let fault = events
        .iter()
        .position(|e| matches!(e, LineEvent::Fault(f) if f.code == "flapping" && f.active))
        .unwrap_or_else(|| panic!("no fault in {events:?}"));
    assert!(
        events[fault + 1..]
            .iter()
            .all(|e| *e == LineEvent::Hangup(HangupCause::LineFailure)),
        "nothing but the call's end after the fault: {events:?}"
    );
    // Steady (off-hook) for 10 s: trusted again, and taken as it is.
    r.hw.drive(20, false);
    let ev = next(&mut r.station, Duration::from_secs(12)).await;
    assert!(
        matches!(&ev, Some(LineEvent::Fault(f)) if !f.active),
        "{ev:?}"
    );
    assert_eq!(
        next(&mut r.station, Duration::from_millis(100)).await,
        Some(LineEvent::OffHook)
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_led_shows_each_state_and_buttons_report_how_long_they_were_held() {
    let mut r = rig();
    let mut leds = r.backend.take_indicators().unwrap();
    let mut buttons = r.backend.take_inputs().unwrap();
    // Booting blinks 125/125 ms: at 130 ms the LED is off.
    sleep(Duration::from_millis(130)).await;
    assert!(!r.hw.level(17));
    leds.set_status(BoxStatus::NoIdentity).unwrap();
    let t0 = Instant::now();
    sleep(Duration::from_millis(4010)).await;
    let pattern: Vec<(u128, bool)> =
        r.hw.history(17)
            .iter()
            .filter(|(t, _)| *t >= t0)
            .map(|(t, l)| ((*t - t0).as_millis(), *l))
            .collect();
    assert_eq!(
        pattern,
        [
            (0, true),
            (150, false),
            (300, true),
            (450, false),
            (2000, true),
            (2150, false),
            (2300, true),
            (2450, false),
            (4000, true)
        ]
    );
    leds.set_status(BoxStatus::Ready).unwrap();
    sleep(Duration::from_secs(3)).await;
    assert!(r.hw.level(17), "steady on");
    leds.set_line_led("pstn-1", true).unwrap();
    assert!(r.hw.level(13));
    // Night-mode key held 2 s (active low).
    r.hw.drive(26, false);
    sleep(Duration::from_secs(2)).await;
    r.hw.drive(26, true);
    let press = timeout(Duration::from_secs(1), buttons.next_press())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(press.button, Button::NightMode);
    assert_eq!(press.held_ms, 2000);
}

#[test]
fn pins_that_do_not_exist_or_are_taken_fail_at_start_up_with_the_board_key() {
    let hw = SimGpio::new();
    // Something else holds the hook relay's pin.
    let mut other = hw.clone();
    use callbox_hal::analog::pins::GpioDriver;
    let _held = other.output(6, false).unwrap();
    let e = AnalogBackend::with_parts(
        board(),
        lines(),
        Box::new(SilentPcm),
        Box::new(hw),
        Arc::new(MediaStats::default()),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "backend `analog`: board.port[0].hook_relay: GPIO pin 6: already in use"
    );
}

/// A sound card that goes away after a few periods (unplugged, driver
/// gone).
struct DyingPcm(u32);

impl Pcm for DyingPcm {
    fn read(&mut self, buf: &mut [i16]) -> Result<(), PcmError> {
        if self.0 == 0 {
            return Err(PcmError {
                device: "test".into(),
                reason: "capture failed: No such device".into(),
            });
        }
        self.0 -= 1;
        buf.fill(0);
        Ok(())
    }
    fn write(&mut self, _buf: &[i16]) -> Result<(), PcmError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_sound_card_that_fails_closes_every_port_audio() {
    use callbox_hal::{AudioIn, AudioOut, Error as _, ErrorKind};
    let hw = SimGpio::new();
    let mut backend = AnalogBackend::with_parts(
        board(),
        lines(),
        Box::new(DyingPcm(5)),
        Box::new(hw),
        Arc::new(MediaStats::default()),
    )
    .unwrap();
    let mut ports = backend.take_ports();
    backend.start().unwrap();
    for p in &mut ports {
        let e = timeout(Duration::from_secs(5), p.audio_in.read_frame())
            .await
            .expect("the audio ends, it does not hang")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        let f = callbox_hal::Frame::silence(callbox_hal::AudioFormat::NARROWBAND, 0, 0);
        assert_eq!(
            p.audio_out.offer_frame(f).unwrap_err().kind(),
            ErrorKind::Closed
        );
    }
    assert_eq!(MediaStats::get(&backend.media_stats().periods), 5);
}
