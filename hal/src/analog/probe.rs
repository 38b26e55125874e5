//! Bring-up diagnostics for a line-interface board: `callboxd hw probe`
//! (what sound cards and GPIO the system has, and whether each port of the
//! board description is wired and alive) and `callboxd hw loopback` (a
//! tone out of one port, measured back on the same or another port).

use std::fmt::Write as _;

use super::board::{Board, Wiring};
use super::pins::{self, GpioDriver};
use crate::dsp::goertzel::Bin;
use crate::dsp::resample::{Decimator, Interpolator};

/// What the probe found; `ok` when every port of the board is usable.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Human-readable lines.
    pub text: String,
    /// Whether everything the board description names was found.
    pub ok: bool,
}

/// Sound cards alsa-lib lists.
fn sound_cards(out: &mut String) {
    #[cfg(feature = "alsa")]
    {
        let cards = super::alsa_pcm::cards();
        if cards.is_empty() {
            let _ = writeln!(out, "ALSA: no sound cards");
        } else {
            let _ = writeln!(out, "ALSA: {} sound card(s)", cards.len());
            for (i, id, name) in cards {
                let _ = writeln!(out, "  card {i}: {id} ({name})");
            }
        }
    }
    #[cfg(not(feature = "alsa"))]
    let _ = writeln!(
        out,
        "ALSA: not in this build (cargo feature `alsa`); no sound card can be used"
    );
}

/// Probes the system and, given a board description, each of its ports.
pub fn probe(board: Option<&Board>) -> ProbeReport {
    let mut out = String::new();
    sound_cards(&mut out);
    let driver = board.map_or("rppal", |b| b.gpio.as_str());
    let mut gpio: Option<Box<dyn GpioDriver>> = match pins::open_driver(driver) {
        Ok(g) => {
            let _ = writeln!(out, "GPIO: {driver} driver ready");
            Some(g)
        }
        Err(e) => {
            let _ = writeln!(out, "GPIO: {e}");
            None
        }
    };
    let Some(board) = board else {
        let _ = writeln!(
            out,
            "no board description given (--config site.toml with a [board] table checks each port)"
        );
        return ProbeReport {
            text: out,
            ok: true,
        };
    };
    let _ = writeln!(
        out,
        "board \"{}\": capture \"{}\", playback \"{}\", {} Hz, {} channel(s)",
        board.name, board.capture, board.playback, board.rate, board.channels
    );
    let audio = check_pcm(board);
    match &audio {
        Ok(()) => {
            let _ = writeln!(out, "  audio: both PCMs open with these parameters");
        }
        Err(e) => {
            let _ = writeln!(out, "  audio: {e}");
        }
    }
    let mut ok = audio.is_ok();
    for p in &board.ports {
        let (kind, pins_of): (&str, Vec<(&str, u8, bool)>) = match p.wiring {
            Wiring::Fxo {
                ring_detect,
                hook_relay,
            } => (
                "trunk, FXO",
                vec![
                    ("ring_detect", ring_detect.pin, true),
                    ("hook_relay", hook_relay.pin, false),
                ],
            ),
            Wiring::Fxs { hook, ring_relay } => (
                "station, FXS",
                vec![
                    ("hook", hook.pin, true),
                    ("ring_relay", ring_relay.pin, false),
                ],
            ),
        };
        let mut line = format!("  port {} ({kind}, channel {}):", p.line, p.channel);
        let mut alive = audio.is_ok();
        match gpio.as_mut() {
            None => {
                alive = false;
                line.push_str(" GPIO unavailable;");
            }
            Some(g) => {
                for (name, pin, input) in pins_of {
                    if input {
                        match g.input(pin, false) {
                            Ok(i) => {
                                let level =
                                    i.read().map_or("?", |h| if h { "high" } else { "low" });
                                let _ = write!(line, " {name} GPIO{pin} reads {level};");
                            }
                            Err(e) => {
                                alive = false;
                                let _ = write!(line, " {name}: {e};");
                            }
                        }
                    } else if let Err(e) = g.output(pin, false) {
                        alive = false;
                        let _ = write!(line, " {name}: {e};");
                    } else {
                        let _ = write!(line, " {name} GPIO{pin} released;");
                    }
                }
            }
        }
        line.push_str(if alive {
            " wired and alive"
        } else {
            " NOT usable"
        });
        ok &= alive;
        let _ = writeln!(out, "{line}");
    }
    if !ok {
        let _ = writeln!(out, "some ports of the board are not usable on this system");
    }
    ProbeReport { text: out, ok }
}

#[cfg(feature = "alsa")]
fn check_pcm(board: &Board) -> Result<(), String> {
    super::alsa_pcm::check(board).map_err(|e| e.to_string())
}

#[cfg(not(feature = "alsa"))]
fn check_pcm(_board: &Board) -> Result<(), String> {
    Err("not checked: this build has no ALSA support".into())
}

/// What `hw loopback` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Loopback {
    /// Level of the tone that came back, dBFS (of a full-scale sine).
    pub level_dbfs: f64,
    /// Delay from the first sample played to the tone heard, ms.
    pub delay_ms: f64,
    /// Frequency measured, Hz.
    pub frequency_hz: f64,
}

/// Measures a captured 8 kHz signal that should carry a tone of `hz`
/// starting at sample 0 of the playback: level, delay, frequency. `None`
/// when no tone above -60 dBFS came back.
pub fn measure(captured: &[i16], hz: f64) -> Option<Loopback> {
    const BLOCK: usize = 40;
    let bin = Bin::new(hz, 8000.0);
    let tone_dbfs = |x: &[i16]| bin.level_dbfs(x);
    let levels: Vec<f64> = captured.chunks_exact(BLOCK).map(tone_dbfs).collect();
    let peak = levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if peak < -60.0 {
        return None;
    }
    // Onset: the first 5 ms block within 6 dB of the steady level.
    let onset = levels.iter().position(|&l| l > peak - 6.0)?;
    let offset = levels.iter().rposition(|&l| l > peak - 6.0)?;
    let start = onset * BLOCK;
    // The steady part: 20 ms in from either edge.
    let (a, b) = (start + 160, (offset * BLOCK).saturating_sub(160));
    if b < a + 400 {
        return None;
    }
    let steady = &captured[a..b];
    // Frequency from the zero crossings of the steady part.
    let crossings = steady
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    Some(Loopback {
        level_dbfs: tone_dbfs(steady),
        delay_ms: (start as f64) / 8.0,
        frequency_hz: crossings as f64 * 8000.0 / (2.0 * steady.len() as f64),
    })
}

/// Plays `ms` of a tone of `hz` at `level_dbfs` on the channel of port
/// `out_ch` and captures the channel `in_ch` for that long plus half a
/// second, through `pcm`; returns what came back on `in_ch` at 8 kHz.
pub fn play_and_capture(
    pcm: &mut dyn super::engine::Pcm,
    board: &Board,
    out_ch: u16,
    in_ch: u16,
    hz: f64,
    level_dbfs: f64,
    ms: u32,
) -> Result<Vec<i16>, super::engine::PcmError> {
    use super::engine::FRAME;
    let factor = (board.rate / 8000) as usize;
    let ch = usize::from(board.channels);
    let mut tone = crate::dsp::dtmf::ToneGen::dual(hz, hz, 8000, level_dbfs, f64::NEG_INFINITY);
    let (mut up, mut down) = (Interpolator::new(factor), Decimator::new(factor));
    let periods = (ms as usize).div_ceil(20) + 25;
    let tone_periods = (ms as usize).div_ceil(20);
    let mut cap = vec![0i16; FRAME * factor * ch];
    let mut play = vec![0i16; FRAME * factor * ch];
    let (mut frame, mut wide) = ([0i16; FRAME], vec![0i16; FRAME * factor]);
    let mut heard = Vec::with_capacity(periods * FRAME);
    for n in 0..periods {
        if n < tone_periods {
            tone.fill(&mut frame);
        } else {
            frame.fill(0);
        }
        up.process(&frame, &mut wide);
        play.fill(0);
        for (i, w) in wide.iter().enumerate() {
            play[i * ch + usize::from(out_ch)] = *w;
        }
        pcm.write(&play)?;
        pcm.read(&mut cap)?;
        for (i, w) in wide.iter_mut().enumerate() {
            *w = cap[i * ch + usize::from(in_ch)];
        }
        down.process(&wide, &mut frame);
        heard.extend_from_slice(&frame);
    }
    Ok(heard)
}

/// `hw loopback` on the board's sound card.
#[cfg(feature = "alsa")]
pub fn loopback(
    board: &Board,
    out_ch: u16,
    in_ch: u16,
    hz: f64,
    level_dbfs: f64,
    ms: u32,
) -> Result<Option<Loopback>, String> {
    let stats = std::sync::Arc::new(super::engine::MediaStats::default());
    let mut pcm = super::alsa_pcm::AlsaPcm::open(board, stats).map_err(|e| e.to_string())?;
    let heard = play_and_capture(&mut pcm, board, out_ch, in_ch, hz, level_dbfs, ms)
        .map_err(|e| e.to_string())?;
    Ok(measure(&heard, hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_finds_level_delay_and_frequency() {
        let mut x = vec![0i16; 8000];
        let amp = 32767.0 * 10f64.powf(-20.0 / 20.0);
        for (i, s) in x.iter_mut().enumerate().skip(480).take(6000) {
            *s = (amp * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16;
        }
        let m = measure(&x, 1000.0).unwrap();
        assert!((m.level_dbfs + 20.0).abs() < 0.3, "{m:?}");
        assert!((m.delay_ms - 60.0).abs() <= 5.0, "{m:?}");
        assert!((m.frequency_hz - 1000.0).abs() < 5.0, "{m:?}");
        assert_eq!(measure(&[0; 8000], 1000.0), None);
    }
}
