//! The front panel actor: owns the LEDs and buttons.
//!
//! Other actors ask it to light a line LED or show a status. A ready box at
//! night (the day/night switch) shows `night` on the status LED. The
//! night-mode button toggles the switch; held for [`AUTO_HOLD_MS`] it
//! puts it back to `auto`. The factory-reset button is only logged (a
//! technician resets with `callbox-provision`).

use callbox_hal::io::{BoxStatus, Button, Indicators, Inputs};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::daynight::{DayNight, Mode};

/// Holding the night-mode button this long puts the switch back to `auto`.
pub const AUTO_HOLD_MS: u32 = 3000;

#[derive(Debug)]
enum PanelMsg {
    Status(BoxStatus),
    LineLed(String, bool),
}

/// Handle to the panel actor.
#[derive(Debug, Clone)]
pub struct PanelHandle {
    tx: mpsc::Sender<PanelMsg>,
}

impl PanelHandle {
    /// Shows a status on the status LED.
    pub async fn status(&self, s: BoxStatus) {
        let _ = self.tx.send(PanelMsg::Status(s)).await;
    }

    /// Lights or clears a line's LED.
    pub async fn line_led(&self, line: &str, on: bool) {
        let _ = self.tx.send(PanelMsg::LineLed(line.to_string(), on)).await;
    }
}

/// Starts the panel actor. It stops when every handle is dropped.
pub fn spawn<D, B>(
    mut leds: Option<D>,
    mut buttons: Option<B>,
    daynight: DayNight,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> PanelHandle
where
    D: Indicators,
    B: Inputs,
{
    let (tx, mut rx) = mpsc::channel(64);
    let mut switch = daynight.subscribe();
    tracker.spawn(async move {
        // What the box says of itself; the LED shows night over `ready`.
        let mut status = BoxStatus::Booting;
        let mut shown = None;
        loop {
            let night = switch.borrow_and_update().night;
            let want = match status {
                BoxStatus::Ready if night => BoxStatus::Night,
                s => s,
            };
            if shown != Some(want)
                && let Some(d) = leds.as_mut()
            {
                match d.set_status(want) {
                    Ok(()) => shown = Some(want),
                    Err(e) => tracing::warn!(status = %want, "status LED failed: {e}"),
                }
            }
            let press = async {
                match buttons.as_mut() {
                    Some(b) => b.next_press().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => break,
                    Some(PanelMsg::Status(s)) => status = s,
                    Some(PanelMsg::LineLed(l, on)) => {
                        if let Some(d) = leds.as_mut()
                            && let Err(e) = d.set_line_led(&l, on)
                        {
                            tracing::warn!(line = %l, on, "line LED failed: {e}");
                        }
                    }
                },
                Ok(()) = switch.changed() => {}
                p = press, if !shutdown.is_cancelled() => match p {
                    Ok(p) => {
                        tracing::info!(button = ?p.button, held_ms = p.held_ms, "button pressed");
                        if p.button == Button::NightMode {
                            let r = if p.held_ms >= AUTO_HOLD_MS {
                                daynight.set(Mode::Auto, "button").await
                            } else {
                                daynight.toggle("button").await
                            };
                            if let Err(e) = r {
                                tracing::error!("{e}");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!("buttons unavailable: {e}");
                        buttons = None;
                    }
                },
            }
        }
    });
    PanelHandle { tx }
}
