//! The front panel actor: owns the LEDs and buttons.
//!
//! Other actors ask it to light a line LED or show a status; it also reports
//! button presses. Until provisioning lands, the factory-reset button is only
//! logged.

use callbox_hal::io::{BoxStatus, Indicators, Inputs};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> PanelHandle
where
    D: Indicators,
    B: Inputs,
{
    let (tx, mut rx) = mpsc::channel(64);
    tracker.spawn(async move {
        loop {
            let press = async {
                match buttons.as_mut() {
                    Some(b) => b.next_press().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let Some(d) = leds.as_mut() else { continue };
                    let r = match &msg {
                        PanelMsg::Status(s) => d.set_status(*s),
                        PanelMsg::LineLed(l, on) => d.set_line_led(l, *on),
                    };
                    if let Err(e) = r {
                        tracing::warn!(?msg, "indicator failed: {e}");
                    }
                }
                p = press, if !shutdown.is_cancelled() => match p {
                    Ok(p) => tracing::info!(button = ?p.button, held_ms = p.held_ms, "button pressed"),
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
