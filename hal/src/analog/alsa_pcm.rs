//! The sound card through alsa-lib: one capture and one playback PCM,
//! interleaved 16-bit samples, a period of 20 ms and a buffer of four.
//!
//! Overruns (the engine was late reading) and underruns (late writing) are
//! recovered with `snd_pcm_recover`, counted and logged at most once a
//! second, and the stream goes on; so does a resume after suspend. Only a
//! device that cannot be recovered (unplugged, driver gone) ends the
//! engine.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::board::Board;
use super::engine::{FRAME, MediaStats, Pcm, PcmError};

/// Periods in each PCM's buffer.
const BUFFER_PERIODS: i64 = 4;
/// Periods of silence written ahead on playback (start and after an
/// underrun): the latency the box adds on the way out.
const PREFILL_PERIODS: usize = 2;

/// Capture and playback PCMs of a board.
pub struct AlsaPcm {
    capture: PCM,
    playback: PCM,
    names: (String, String),
    channels: usize,
    period: usize,
    stats: Arc<MediaStats>,
    last_warning: Option<Instant>,
}

impl std::fmt::Debug for AlsaPcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsaPcm")
            .field("capture", &self.names.0)
            .field("playback", &self.names.1)
            .finish_non_exhaustive()
    }
}

fn err(device: &str, what: &str, e: impl std::fmt::Display) -> PcmError {
    PcmError {
        device: device.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Opens and sets up one PCM.
fn setup(
    name: &str,
    dir: Direction,
    rate: u32,
    channels: u32,
    period: i64,
) -> Result<PCM, PcmError> {
    let pcm = PCM::new(name, dir, false).map_err(|e| err(name, "cannot open", e))?;
    {
        let hw = HwParams::any(&pcm).map_err(|e| err(name, "no hardware parameters", e))?;
        hw.set_access(Access::RWInterleaved)
            .map_err(|e| err(name, "no interleaved access", e))?;
        hw.set_format(Format::s16())
            .map_err(|e| err(name, "no 16-bit sample format", e))?;
        hw.set_channels(channels)
            .map_err(|e| err(name, &format!("no {channels}-channel mode"), e))?;
        hw.set_rate(rate, ValueOr::Nearest)
            .map_err(|e| err(name, &format!("unsupported sample rate {rate} Hz"), e))?;
        let got = hw.get_rate().map_err(|e| err(name, "rate", e))?;
        if got != rate {
            return Err(err(
                name,
                "unsupported sample rate",
                format!("asked for {rate} Hz, the device runs at {got} Hz"),
            ));
        }
        hw.set_period_size_near(period, ValueOr::Nearest)
            .map_err(|e| err(name, "period size", e))?;
        hw.set_buffer_size_near(period * BUFFER_PERIODS)
            .map_err(|e| err(name, "buffer size", e))?;
        pcm.hw_params(&hw)
            .map_err(|e| err(name, "cannot apply hardware parameters", e))?;
    }
    pcm.prepare().map_err(|e| err(name, "cannot prepare", e))?;
    Ok(pcm)
}

impl AlsaPcm {
    /// Opens the board's PCMs at its rate and channel count.
    pub fn open(board: &Board, stats: Arc<MediaStats>) -> Result<AlsaPcm, PcmError> {
        let factor = (board.rate / 8000) as usize;
        let period = FRAME * factor;
        let period_i = i64::try_from(period).unwrap_or(160);
        let ch = u32::from(board.channels);
        let capture = setup(&board.capture, Direction::Capture, board.rate, ch, period_i)?;
        let playback = setup(
            &board.playback,
            Direction::Playback,
            board.rate,
            ch,
            period_i,
        )?;
        let mut p = AlsaPcm {
            capture,
            playback,
            names: (board.capture.clone(), board.playback.clone()),
            channels: usize::from(board.channels),
            period,
            stats,
            last_warning: None,
        };
        p.prefill()?;
        Ok(p)
    }

    fn prefill(&mut self) -> Result<(), PcmError> {
        let silence = vec![0i16; self.period * self.channels];
        for _ in 0..PREFILL_PERIODS {
            self.write_all(&silence)?;
        }
        Ok(())
    }

    fn xrun(&mut self, what: &str, e: &alsa::Error) {
        self.stats.xruns.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
        {
            self.last_warning = Some(now);
            tracing::warn!(
                xruns = MediaStats::get(&self.stats.xruns),
                "{what} ({e}); recovered"
            );
        }
    }

    fn write_all(&mut self, buf: &[i16]) -> Result<(), PcmError> {
        let mut done = 0;
        while done < buf.len() {
            let r = {
                let io = self
                    .playback
                    .io_i16()
                    .map_err(|e| err(&self.names.1, "playback", e))?;
                io.writei(&buf[done..])
            };
            match r {
                Ok(frames) => done += frames * self.channels,
                Err(e) => {
                    self.playback
                        .try_recover(e, true)
                        .map_err(|e| err(&self.names.1, "playback failed", e))?;
                    self.xrun("playback underrun", &e);
                }
            }
        }
        Ok(())
    }
}

impl Pcm for AlsaPcm {
    fn read(&mut self, buf: &mut [i16]) -> Result<(), PcmError> {
        let mut done = 0;
        while done < buf.len() {
            let r = {
                let io = self
                    .capture
                    .io_i16()
                    .map_err(|e| err(&self.names.0, "capture", e))?;
                io.readi(&mut buf[done..])
            };
            match r {
                Ok(frames) => done += frames * self.channels,
                Err(e) => {
                    self.capture
                        .try_recover(e, true)
                        .map_err(|e| err(&self.names.0, "capture failed", e))?;
                    self.xrun("capture overrun", &e);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, buf: &[i16]) -> Result<(), PcmError> {
        let before = MediaStats::get(&self.stats.xruns);
        self.write_all(buf)?;
        if MediaStats::get(&self.stats.xruns) != before {
            // After an underrun the buffer is empty: give it its margin
            // back.
            self.prefill()?;
        }
        Ok(())
    }
}

/// Sound cards alsa-lib knows, as `(card index, id, name)`.
pub fn cards() -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    for card in alsa::card::Iter::new().flatten() {
        let id = card.get_name().unwrap_or_default();
        let name = card.get_longname().unwrap_or_default();
        out.push((card.get_index(), id, name));
    }
    out
}

/// Whether a PCM opens in both directions with the board's parameters.
pub fn check(board: &Board) -> Result<(), PcmError> {
    AlsaPcm::open(board, Arc::new(MediaStats::default())).map(|_| ())
}
