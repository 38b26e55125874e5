//! `hw probe` and `hw loopback`: check the line-interface hardware a site's
//! `[board]` table describes, without starting the daemon.

use std::path::Path;

use callbox_firmware::config::SiteConfig;

use crate::{Failure, HwCmd};

/// The board description of a site config, for `hw`.
fn board_of(config: &Path) -> Result<callbox_hal::analog::board::Board, Failure> {
    let site = SiteConfig::load(config).map_err(Failure::Config)?;
    site.board.ok_or_else(|| {
        Failure::NotFound(format!(
            "{}: no `[board]` table; the hardware commands need the board description (docs/hardware.md)",
            config.display()
        ))
    })
}

pub fn hw(cmd: HwCmd) -> Result<(), Failure> {
    use callbox_hal::analog::probe;
    match cmd {
        HwCmd::Probe { config } => {
            let board = config.as_deref().map(board_of).transpose()?;
            let report = probe::probe(board.as_ref());
            print!("{}", report.text);
            if report.ok {
                Ok(())
            } else {
                Err(Failure::NotFound("the board is not usable here".into()))
            }
        }
        HwCmd::Loopback {
            config,
            port,
            to,
            hz,
            level,
            ms,
        } => {
            let board = board_of(&config)?;
            let channel = |line: &str| {
                board
                    .ports
                    .iter()
                    .find(|p| p.line == line)
                    .map(|p| p.channel)
                    .ok_or_else(|| {
                        Failure::NotFound(format!("no port for line `{line}` on the board"))
                    })
            };
            let to = to.unwrap_or_else(|| port.clone());
            let (out_ch, in_ch) = (channel(&port)?, channel(&to)?);
            if !(100.0..=3800.0).contains(&hz)
                || !(-60.0..=0.0).contains(&level)
                || !(100..=10_000).contains(&ms)
            {
                return Err(Failure::NotFound(
                    "--hz must be 100-3800, --level -60-0 dBFS, --ms 100-10000".into(),
                ));
            }
            loopback(&board, out_ch, in_ch, hz, level, ms).and_then(|m| match m {
                Some(m) => {
                    println!(
                        "{hz:.0} Hz at {level:.1} dBFS out of {port} came back on {to} at {:.1} dBFS (loss {:.1} dB) after {:.0} ms, measured {:.0} Hz",
                        m.level_dbfs,
                        level - m.level_dbfs,
                        m.delay_ms,
                        m.frequency_hz
                    );
                    Ok(())
                }
                None => Err(Failure::NotFound(format!(
                    "no tone came back on {to} (below -60 dBFS): the ports are not looped"
                ))),
            })
        }
    }
}

#[cfg(feature = "alsa")]
fn loopback(
    board: &callbox_hal::analog::board::Board,
    out_ch: u16,
    in_ch: u16,
    hz: f64,
    level: f64,
    ms: u32,
) -> Result<Option<callbox_hal::analog::probe::Loopback>, Failure> {
    callbox_hal::analog::probe::loopback(board, out_ch, in_ch, hz, level, ms)
        .map_err(|e| Failure::Other(anyhow::anyhow!("sound card: {e}")))
}

#[cfg(not(feature = "alsa"))]
fn loopback(
    _board: &callbox_hal::analog::board::Board,
    _out_ch: u16,
    _in_ch: u16,
    _hz: f64,
    _level: f64,
    _ms: u32,
) -> Result<Option<callbox_hal::analog::probe::Loopback>, Failure> {
    Err(Failure::Other(anyhow::anyhow!(
        "this build has no ALSA support (cargo feature `alsa`)"
    )))
}
