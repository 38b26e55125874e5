//! The board description: how a line-interface board is wired to the
//! Raspberry Pi, in the site config's `[board]` table.
//!
//! Which ALSA PCM and which channel of it carries each port's audio; which
//! GPIO pins carry each port's hook, ring detect, relays and LED, with
//! polarity and debounce; the ring cadence of the country; the caller-id
//! standard. [`RawBoard`] is what serde reads; [`RawBoard::check`] turns it
//! into a [`Board`] or into every problem, each with the key path it is at
//! (`board.port[1].hook.pin`), which the firmware's config loader turns into
//! `FILE:LINE:COL`. Everything that can be known without the hardware is
//! checked here, so `callboxd check-config` catches it on a laptop; a PCM
//! or pin that does not exist is found when the backend opens them.
//!
//! The format is documented in `docs/hardware.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::signal::{FlashWindow, RingCadence};
use crate::diag::parse_duration;
use crate::dsp::caller_id::CallerIdStandard;
use crate::dsp::tones::ToneRegion;
use crate::io::Button;
use crate::line::{LineInfo, LineKind};

/// Sample rates a board's codec may run at; anything but 8 kHz is
/// resampled to the box's 8 kHz by an integer factor.
pub const RATES: [u32; 3] = [8000, 16000, 48000];

/// `[board]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBoard {
    #[serde(default)]
    name: Option<String>,
    capture: String,
    #[serde(default)]
    playback: Option<String>,
    #[serde(default)]
    rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
    #[serde(default)]
    timing: Option<String>,
    #[serde(default)]
    gpio: Option<String>,
    #[serde(default)]
    ring_cadence: Option<String>,
    #[serde(default)]
    ring_on: Option<String>,
    #[serde(default)]
    ring_off: Option<String>,
    #[serde(default)]
    flash_min: Option<String>,
    #[serde(default)]
    flash_max: Option<String>,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default)]
    caller_id_format: Option<String>,
    #[serde(default)]
    tones: Option<ToneRegion>,
    #[serde(default)]
    status_led: Option<RawPin>,
    #[serde(default)]
    buttons: BTreeMap<String, RawPin>,
    #[serde(default)]
    port: Vec<RawPort>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    pin: i64,
    #[serde(default)]
    active_low: bool,
    #[serde(default)]
    pull_up: Option<bool>,
    #[serde(default)]
    debounce: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    line: String,
    channel: i64,
    #[serde(default)]
    ring_detect: Option<RawPin>,
    #[serde(default)]
    hook_relay: Option<RawPin>,
    #[serde(default)]
    hook: Option<RawPin>,
    #[serde(default)]
    ring_relay: Option<RawPin>,
    #[serde(default)]
    led: Option<RawPin>,
}

/// One GPIO pin as wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinSpec {
    /// BCM pin number.
    pub pin: u8,
    /// Whether low means active (an opto-coupler pulling to ground).
    pub active_low: bool,
    /// Whether to enable the SoC's pull-up (inputs only).
    pub pull_up: bool,
    /// How long an input level must hold to count.
    pub debounce: Duration,
}

/// How a port is wired, by what faces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wiring {
    /// FXO: a line from the carrier. The box sees ringing and takes the
    /// line off-hook with a relay.
    Fxo {
        /// Ring-detect input (active while ring voltage is on the line).
        ring_detect: PinSpec,
        /// Off-hook relay output (active = line seized).
        hook_relay: PinSpec,
    },
    /// FXS: an agent's phone. The box sees its hook and rings it with a
    /// relay onto the ring generator.
    Fxs {
        /// Hook-switch input (active = handset lifted).
        hook: PinSpec,
        /// Ring relay output (active = ring voltage on the phone).
        ring_relay: PinSpec,
    },
}

/// One port of the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The site config's line id.
    pub line: String,
    /// Channel of the capture and playback PCMs carrying its audio.
    pub channel: u16,
    /// Signalling pins.
    pub wiring: Wiring,
    /// The line's LED.
    pub led: Option<PinSpec>,
}

/// Whose clock paces the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The sound card's: reads wait for each period (every real codec).
    Device,
    /// The system clock's, for PCMs that do not keep time (alsa-lib's
    /// `null` and `file` plugins on a test rig).
    System,
}

/// A checked board description.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// Free-text board name, for logs and the probe.
    pub name: String,
    /// ALSA PCM for audio from the lines.
    pub capture: String,
    /// ALSA PCM for audio to the lines.
    pub playback: String,
    /// The codec's sample rate (one of [`RATES`]).
    pub rate: u32,
    /// Interleaved channels of both PCMs.
    pub channels: u16,
    /// Whose clock paces the audio.
    pub timing: Timing,
    /// GPIO driver name (`rppal`, or `sim` on a test rig).
    pub gpio: String,
    /// Ring cadence of the exchange (detection on FXO, generation on FXS).
    pub ring: RingCadence,
    /// Hook-flash window of the stations.
    pub flash: FlashWindow,
    /// Caller-id standard, `None` for none.
    pub caller_id: Option<CallerIdStandard>,
    /// Multiple-data-message caller id (with name) rather than single.
    pub caller_id_mdmf: bool,
    /// Call-progress tone plan heard on the trunks (busy detection).
    pub tones: ToneRegion,
    /// The status LED.
    pub status_led: Option<PinSpec>,
    /// Buttons on the case.
    pub buttons: Vec<(Button, PinSpec)>,
    /// Ports, in file order.
    pub ports: Vec<PortSpec>,
}

/// A problem at a key path of the site config.
pub type Problem = (String, String);

struct Checker {
    problems: Vec<Problem>,
    /// Which key path claimed each pin.
    pins: BTreeMap<u8, String>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push((path.into(), msg.into()));
    }

    fn duration(&mut self, path: &str, v: &Option<String>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(e) => {
                    self.err(path, e);
                    default
                }
            },
        }
    }

    fn pin(&mut self, path: &str, raw: &RawPin, input: bool, debounce: Duration) -> PinSpec {
        let valid = u8::try_from(raw.pin)
            .ok()
            .filter(|&p| p <= super::pins::MAX_PIN);
        let pin = match valid {
            Some(p) => p,
            None => {
                self.err(
                    format!("{path}.pin"),
                    format!(
                        "GPIO {} does not exist; the header has GPIO 0-{} (BCM numbers)",
                        raw.pin,
                        super::pins::MAX_PIN
                    ),
                );
                0
            }
        };
        if valid.is_some() {
            if let Some(other) = self.pins.get(&pin) {
                let msg = format!("GPIO {pin} is already used by `{other}`");
                self.err(format!("{path}.pin"), msg);
            } else {
                self.pins.insert(pin, path.to_string());
            }
        }
        if !input && (raw.debounce.is_some() || raw.pull_up.is_some()) {
            self.err(
                path.to_string(),
                "`debounce` and `pull_up` apply to inputs only",
            );
        }
        let debounce = self.duration(&format!("{path}.debounce"), &raw.debounce, debounce);
        if debounce > Duration::from_millis(200) {
            self.err(
                format!("{path}.debounce"),
                "a debounce longer than 200 ms would swallow hook flashes",
            );
        }
        PinSpec {
            pin,
            active_low: raw.active_low,
            // An active-low input is usually an open collector that needs
            // the pull-up.
            pull_up: raw.pull_up.unwrap_or(input && raw.active_low),
            debounce,
        }
    }
}

impl RawBoard {
    /// Checks the board against the site's lines. Every problem is
    /// returned with its key path, starting with `board`.
    pub fn check(&self, lines: &[LineInfo]) -> Result<Board, Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
            pins: BTreeMap::new(),
        };
        let rate = self.rate.unwrap_or(8000);
        if !RATES.contains(&rate) {
            c.err(
                "board.rate",
                format!(
                    "unsupported sample rate {rate} Hz; the analog backend takes 8000, 16000 or 48000 (resampled to 8 kHz)"
                ),
            );
        }
        let timing = match self.timing.as_deref() {
            None | Some("device") => Timing::Device,
            Some("system") => Timing::System,
            Some(o) => {
                c.err(
                    "board.timing",
                    format!("unknown timing `{o}`; use \"device\" or \"system\""),
                );
                Timing::Device
            }
        };
        let gpio = self.gpio.clone().unwrap_or_else(|| "rppal".into());
        if !matches!(gpio.as_str(), "rppal" | "sim") {
            c.err(
                "board.gpio",
                format!("unknown GPIO driver `{gpio}`; use \"rppal\" (Raspberry Pi) or \"sim\""),
            );
        }
        let mut ring = match self.ring_cadence.as_deref() {
            None | Some("china") => RingCadence::CHINA,
            Some("north_america") => RingCadence::NORTH_AMERICA,
            Some(o) => {
                c.err(
                    "board.ring_cadence",
                    format!(
                        "unknown ring cadence `{o}`; use \"china\" or \"north_america\", or set ring_on and ring_off"
                    ),
                );
                RingCadence::CHINA
            }
        };
        ring.on = c.duration("board.ring_on", &self.ring_on, ring.on);
        ring.off = c.duration("board.ring_off", &self.ring_off, ring.off);
        if ring.on < Duration::from_millis(200) || ring.on > Duration::from_secs(5) {
            c.err("board.ring_on", "a ring burst must last from 200 ms to 5 s");
        }
        if ring.off < Duration::from_millis(200) || ring.off > Duration::from_secs(10) {
            c.err(
                "board.ring_off",
                "the silence between rings must last from 200 ms to 10 s",
            );
        }
        let defaults = FlashWindow::default();
        let flash = FlashWindow {
            flash_min: c.duration("board.flash_min", &self.flash_min, defaults.flash_min),
            flash_max: c.duration("board.flash_max", &self.flash_max, defaults.flash_max),
        };
        if flash.flash_min >= flash.flash_max || flash.flash_max > Duration::from_secs(2) {
            c.err(
                "board.flash_max",
                "the flash window needs flash_min < flash_max <= 2s",
            );
        }
        let caller_id = match self.caller_id.as_deref() {
            None | Some("none") => None,
            Some(s) => match s.parse::<CallerIdStandard>() {
                Ok(std) => Some(std),
                Err(e) => {
                    c.err("board.caller_id", e.to_string());
                    None
                }
            },
        };
        let caller_id_mdmf = match self.caller_id_format.as_deref() {
            None | Some("mdmf") => true,
            Some("sdmf") => false,
            Some(o) => {
                c.err(
                    "board.caller_id_format",
                    format!("unknown caller-id format `{o}`; use \"mdmf\" (number and name) or \"sdmf\" (number only)"),
                );
                true
            }
        };
        let status_led = self
            .status_led
            .as_ref()
            .map(|p| c.pin("board.status_led", p, false, Duration::ZERO));
        let mut buttons = Vec::new();
        for (name, p) in &self.buttons {
            let path = format!("board.buttons.{name}");
            let button = match name.as_str() {
                "factory_reset" => Button::FactoryReset,
                "night_mode" => Button::NightMode,
                o => {
                    c.err(
                        path,
                        format!("unknown button `{o}`; the box has factory_reset and night_mode"),
                    );
                    continue;
                }
            };
            buttons.push((button, c.pin(&path, p, true, Duration::from_millis(30))));
        }

        let mut ports = Vec::new();
        let mut channels_used: BTreeMap<i64, usize> = BTreeMap::new();
        let mut lines_used: BTreeMap<&str, usize> = BTreeMap::new();
        let top_channel = self.port.iter().map(|p| p.channel).max().unwrap_or(0);
        let channels = match self.channels {
            Some(n) if n == 0 || n > 32 => {
                c.err("board.channels", "channels must be from 1 to 32");
                1
            }
            Some(n) => n,
            None => u16::try_from(top_channel + 1).unwrap_or(1).clamp(1, 32),
        };
        for (i, p) in self.port.iter().enumerate() {
            let at = format!("board.port[{i}]");
            if p.channel < 0 || p.channel >= i64::from(channels) {
                c.err(
                    format!("{at}.channel"),
                    format!(
                        "channel {} is not one of the PCM's {channels} channels (0-{})",
                        p.channel,
                        channels - 1
                    ),
                );
            } else if let Some(j) = channels_used.insert(p.channel, i) {
                c.err(
                    format!("{at}.channel"),
                    format!("channel {} already carries board.port[{j}]", p.channel),
                );
            }
            if let Some(j) = lines_used.insert(&p.line, i) {
                c.err(
                    format!("{at}.line"),
                    format!("line `{}` already has board.port[{j}]", p.line),
                );
            }
            let Some(line) = lines.iter().find(|l| l.id == p.line) else {
                c.err(
                    format!("{at}.line"),
                    format!(
                        "`{}` is not a line defined in this file (see the `[[line]]` tables)",
                        p.line
                    ),
                );
                continue;
            };
            let need = |c: &mut Checker, name: &str, pin: &Option<RawPin>, kind: &str| {
                if pin.is_none() {
                    c.err(
                        at.clone(),
                        format!("line `{}` is a {kind}, so its port needs `{name}`", p.line),
                    );
                }
            };
            let refuse = |c: &mut Checker, name: &str, pin: &Option<RawPin>, kind: &str| {
                if pin.is_some() {
                    c.err(
                        format!("{at}.{name}"),
                        format!(
                            "line `{}` is a {kind}; `{name}` belongs to the other kind of port",
                            p.line
                        ),
                    );
                }
            };
            let wiring = match line.kind {
                LineKind::Trunk => {
                    need(&mut c, "ring_detect", &p.ring_detect, "trunk (FXO port)");
                    need(&mut c, "hook_relay", &p.hook_relay, "trunk (FXO port)");
                    refuse(&mut c, "hook", &p.hook, "trunk (FXO port)");
                    refuse(&mut c, "ring_relay", &p.ring_relay, "trunk (FXO port)");
                    let (Some(rd), Some(hr)) = (&p.ring_detect, &p.hook_relay) else {
                        continue;
                    };
                    Wiring::Fxo {
                        // The ring detector toggles at the ring frequency:
                        // no debounce by default, the burst logic holds it.
                        ring_detect: c.pin(&format!("{at}.ring_detect"), rd, true, Duration::ZERO),
                        hook_relay: c.pin(&format!("{at}.hook_relay"), hr, false, Duration::ZERO),
                    }
                }
                LineKind::Station => {
                    need(&mut c, "hook", &p.hook, "station (FXS port)");
                    need(&mut c, "ring_relay", &p.ring_relay, "station (FXS port)");
                    refuse(&mut c, "ring_detect", &p.ring_detect, "station (FXS port)");
                    refuse(&mut c, "hook_relay", &p.hook_relay, "station (FXS port)");
                    let (Some(h), Some(rr)) = (&p.hook, &p.ring_relay) else {
                        continue;
                    };
                    Wiring::Fxs {
                        hook: c.pin(&format!("{at}.hook"), h, true, Duration::from_millis(10)),
                        ring_relay: c.pin(&format!("{at}.ring_relay"), rr, false, Duration::ZERO),
                    }
                }
            };
            let led = p
                .led
                .as_ref()
                .map(|l| c.pin(&format!("{at}.led"), l, false, Duration::ZERO));
            ports.push(PortSpec {
                line: p.line.clone(),
                channel: u16::try_from(p.channel).unwrap_or(0),
                wiring,
                led,
            });
        }
        for l in lines {
            if !lines_used.contains_key(l.id.as_str()) {
                c.err(
                    "board",
                    format!(
                        "line `{}` has no `[[board.port]]`: every line of an analog site needs a port",
                        l.id
                    ),
                );
            }
        }
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        Ok(Board {
            name: self.name.clone().unwrap_or_else(|| "line interface".into()),
            playback: self
                .playback
                .clone()
                .unwrap_or_else(|| self.capture.clone()),
            capture: self.capture.clone(),
            rate,
            channels,
            timing,
            gpio,
            ring,
            flash,
            caller_id,
            caller_id_mdmf,
            tones: self.tones.unwrap_or(ToneRegion::China),
            status_led,
            buttons,
            ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<LineInfo> {
        vec![
            LineInfo {
                id: "pstn-1".into(),
                kind: LineKind::Trunk,
            },
            LineInfo {
                id: "desk-1".into(),
                kind: LineKind::Station,
            },
        ]
    }

    fn parse(s: &str) -> Result<Board, Vec<Problem>> {
        let raw: RawBoard = toml::from_str(s).unwrap();
        raw.check(&lines())
    }

    const GOOD: &str = r#"
        capture = "hw:CARD=lif"
        channels = 2
        caller_id = "v23"
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
        hook = { pin = 20, active_low = true, debounce = "15ms" }
        ring_relay = { pin = 21 }
    "#;

    #[test]
    fn a_good_board() {
        let b = parse(GOOD).unwrap();
        assert_eq!(b.playback, "hw:CARD=lif");
        assert_eq!(b.ring, RingCadence::CHINA);
        assert_eq!(b.caller_id, Some(CallerIdStandard::V23));
        let Wiring::Fxs { hook, .. } = &b.ports[1].wiring else {
            panic!()
        };
        assert_eq!(hook.debounce, Duration::from_millis(15));
        assert!(hook.pull_up, "active-low inputs get the pull-up");
        assert_eq!(
            b.buttons,
            [(
                Button::NightMode,
                PinSpec {
                    pin: 26,
                    active_low: true,
                    pull_up: true,
                    debounce: Duration::from_millis(30)
                }
            )]
        );
    }

    #[test]
    fn every_problem_is_named_at_its_key() {
        let bad = GOOD
            .replace("channel = 1", "channel = 0")
            .replace("pin = 21", "pin = 5")
            .replace("pin = 17", "pin = 99")
            .replace("\"v23\"", "\"smoke\"")
            .replace("channels = 2", "channels = 2\nrate = 44100");
        let problems = parse(&bad).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"board.rate"), "{problems:?}");
        assert!(keys.contains(&"board.caller_id"), "{problems:?}");
        assert!(keys.contains(&"board.status_led.pin"), "{problems:?}");
        assert!(keys.contains(&"board.port[1].channel"), "{problems:?}");
        let dup = problems
            .iter()
            .find(|(k, _)| k == "board.port[1].ring_relay.pin")
            .expect("two ports on one pin");
        assert!(dup.1.contains("board.port[0].ring_detect"), "{dup:?}");
        assert!(problems.iter().any(|(_, m)| m.contains("44100 Hz")));
    }

    #[test]
    fn wiring_must_match_the_line_kind_and_cover_every_line() {
        let bad = GOOD.replace("hook = {", "ring_detect = {");
        let problems = parse(&bad).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(k, m)| k == "board.port[1]" && m.contains("needs `hook`")),
            "{problems:?}"
        );
        let one_port = GOOD
            .split("[[port]]\n        line = \"desk-1\"")
            .next()
            .unwrap();
        let problems = parse(one_port).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(k, m)| k == "board" && m.contains("`desk-1` has no")),
            "{problems:?}"
        );
    }
}
