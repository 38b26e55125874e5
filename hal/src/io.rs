//! Indicators (LEDs, relays) and inputs (buttons) of the box.
//!
//! The status LED tells a technician standing in front of the box what state
//! it is in without a screen; line LEDs show which lines carry calls. Buttons
//! are the factory-reset and night-mode keys on the case.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What the status LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BoxStatus {
    /// Starting up.
    Booting,
    /// Serving calls.
    Ready,
    /// Serving calls, as after hours (the day/night switch says night).
    Night,
    /// No provisioned identity: the box serves calls but cannot reach
    /// headquarters.
    NoIdentity,
    /// Headquarters unreachable.
    Offline,
    /// An alarm is raised.
    Alarm,
    /// Shutting down.
    Stopping,
}

impl fmt::Display for BoxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            BoxStatus::Booting => "booting",
            BoxStatus::Ready => "ready",
            BoxStatus::Night => "night",
            BoxStatus::NoIdentity => "no_identity",
            BoxStatus::Offline => "offline",
            BoxStatus::Alarm => "alarm",
            BoxStatus::Stopping => "stopping",
        };
        f.write_str(s)
    }
}

/// A button on the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Button {
    /// Held to wipe the box back to its unprovisioned state.
    FactoryReset,
    /// Toggles night mode (after-hours routing).
    NightMode,
}

/// A button event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonPress {
    /// Which button.
    pub button: Button,
    /// How long it was held, in milliseconds.
    pub held_ms: u32,
}

/// LEDs and relays.
pub trait Indicators: Send + 'static {
    /// The backend's error type.
    type Error: Error;
    /// Shows the box's state on the status LED.
    fn set_status(&mut self, status: BoxStatus) -> Result<(), Self::Error>;
    /// Lights (or clears) the LED of a line, by line id.
    fn set_line_led(&mut self, line: &str, on: bool) -> Result<(), Self::Error>;
}

/// Buttons.
pub trait Inputs: Send + 'static {
    /// The backend's error type.
    type Error: Error;
    /// Waits for the next button press. Cancel-safe.
    fn next_press(&mut self) -> impl Future<Output = Result<ButtonPress, Self::Error>> + Send;
}
