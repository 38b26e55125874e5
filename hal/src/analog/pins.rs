//! GPIO behind a small trait, so the GPIO library can be replaced.
//!
//! rppal works on Raspberry Pis only and is no longer developed; a board
//! with another SoC, or a future move to the kernel's GPIO character
//! device, means another [`GpioDriver`]. The analog backend asks a driver
//! for input and output pins by number and gets edges as [`Edge`] values on
//! a channel; everything timing-related (debounce, flash, cadence) happens
//! above this line, in [`super::signal`].
//!
//! Levels here are physical (high = voltage on the pin); active-low wiring
//! is undone by the backend.
//!
//! [`SimGpio`] is a complete driver with no hardware behind it: tests set
//! its inputs and read back what its outputs did, in tokio time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio::time::Instant;

/// An input changed level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// BCM pin number.
    pub pin: u8,
    /// The new physical level.
    pub high: bool,
    /// When it was seen.
    pub at: Instant,
}

/// Why a pin could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The driver cannot reach the GPIO hardware at all.
    #[error("GPIO unavailable ({driver}): {reason}")]
    Unavailable {
        /// Driver name.
        driver: &'static str,
        /// What the driver said.
        reason: String,
    },
    /// The pin does not exist or cannot be claimed.
    #[error("GPIO pin {pin}: {reason}")]
    Pin {
        /// BCM pin number.
        pin: u8,
        /// What is wrong.
        reason: String,
    },
}

/// A pin configured as an input.
pub trait InputPin: Send + fmt::Debug {
    /// Its number.
    fn pin(&self) -> u8;
    /// The physical level now.
    fn read(&self) -> Result<bool, PinError>;
    /// Sends every level change to `edges` from now on. An edge that finds
    /// the channel full is dropped (the reader is stalled; the next read of
    /// the level corrects it).
    fn watch(&mut self, edges: mpsc::Sender<Edge>) -> Result<(), PinError>;
}

/// A pin configured as an output.
pub trait OutputPin: Send + fmt::Debug {
    /// Its number.
    fn pin(&self) -> u8;
    /// Drives the pin high or low.
    fn set(&mut self, high: bool) -> Result<(), PinError>;
}

/// Hands out pins.
pub trait GpioDriver: Send + fmt::Debug {
    /// The driver's name, for messages.
    fn name(&self) -> &'static str;
    /// Claims `pin` as an input, with the SoC's pull-up when `pull_up`.
    fn input(&mut self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, PinError>;
    /// Claims `pin` as an output, driven to `initial` at once.
    fn output(&mut self, pin: u8, initial: bool) -> Result<Box<dyn OutputPin>, PinError>;
}

/// What a simulated pin is.
#[derive(Debug, Default)]
struct SimPinState {
    output: bool,
    level: bool,
    watcher: Option<mpsc::Sender<Edge>>,
    /// Every level an output was driven to, with when.
    history: Vec<(Instant, bool)>,
    claimed: bool,
}

/// A simulated GPIO controller: pins 0–27 as on a Raspberry Pi's header.
/// Clones share the same pins, so a test keeps one to play the hardware.
#[derive(Debug, Clone, Default)]
pub struct SimGpio {
    pins: Arc<Mutex<BTreeMap<u8, SimPinState>>>,
}

/// Highest pin number of the 40-pin header's GPIOs (BCM 0–27).
pub const MAX_PIN: u8 = 27;

impl SimGpio {
    /// A controller with every input low.
    pub fn new() -> SimGpio {
        SimGpio::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u8, SimPinState>> {
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `high` on input `pin` now, as the wiring would.
    pub fn drive(&self, pin: u8, high: bool) {
        let mut pins = self.lock();
        let p = pins.entry(pin).or_default();
        if p.level == high {
            return;
        }
        p.level = high;
        if let Some(w) = &p.watcher {
            let _ = w.try_send(Edge {
                pin,
                high,
                at: Instant::now(),
            });
        }
    }

    /// The level an output is driven to.
    pub fn level(&self, pin: u8) -> bool {
        self.lock().get(&pin).is_some_and(|p| p.level)
    }

    /// Every level output `pin` was driven to, with when.
    pub fn history(&self, pin: u8) -> Vec<(Instant, bool)> {
        self.lock()
            .get(&pin)
            .map(|p| p.history.clone())
            .unwrap_or_default()
    }

    fn claim(&self, pin: u8, output: bool) -> Result<(), PinError> {
        if pin > MAX_PIN {
            return Err(PinError::Pin {
                pin,
                reason: format!("no such pin (the header has GPIO 0-{MAX_PIN})"),
            });
        }
        let mut pins = self.lock();
        let p = pins.entry(pin).or_default();
        if p.claimed {
            return Err(PinError::Pin {
                pin,
                reason: "already in use".into(),
            });
        }
        p.claimed = true;
        p.output = output;
        Ok(())
    }
}

#[derive(Debug)]
struct SimInput {
    gpio: SimGpio,
    pin: u8,
}

impl InputPin for SimInput {
    fn pin(&self) -> u8 {
        self.pin
    }
    fn read(&self) -> Result<bool, PinError> {
        Ok(self.gpio.level(self.pin))
    }
    fn watch(&mut self, edges: mpsc::Sender<Edge>) -> Result<(), PinError> {
        self.gpio.lock().entry(self.pin).or_default().watcher = Some(edges);
        Ok(())
    }
}

#[derive(Debug)]
struct SimOutput {
    gpio: SimGpio,
    pin: u8,
}

impl OutputPin for SimOutput {
    fn pin(&self) -> u8 {
        self.pin
    }
    fn set(&mut self, high: bool) -> Result<(), PinError> {
        let mut pins = self.gpio.lock();
        let p = pins.entry(self.pin).or_default();
        if p.history.last().is_none_or(|&(_, l)| l != high) {
            p.history.push((Instant::now(), high));
        }
        p.level = high;
        Ok(())
    }
}

impl GpioDriver for SimGpio {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn input(&mut self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, PinError> {
        self.claim(pin, false)?;
        if pull_up {
            self.lock().entry(pin).or_default().level = true;
        }
        Ok(Box::new(SimInput {
            gpio: self.clone(),
            pin,
        }))
    }
    fn output(&mut self, pin: u8, initial: bool) -> Result<Box<dyn OutputPin>, PinError> {
        self.claim(pin, true)?;
        let mut out = SimOutput {
            gpio: self.clone(),
            pin,
        };
        out.set(initial)?;
        Ok(Box::new(out))
    }
}

/// Raspberry Pi GPIO through rppal (`/dev/gpiomem`).
#[cfg(feature = "rpi")]
pub mod rpi {
    use super::*;
    use rppal::gpio::{Gpio, Level, Trigger};

    /// The rppal driver.
    #[derive(Debug)]
    pub struct RppalGpio {
        gpio: Gpio,
    }

    impl RppalGpio {
        /// Opens the SoC's GPIO controller; fails on anything but a
        /// Raspberry Pi (or without access to `/dev/gpiomem`).
        pub fn open() -> Result<RppalGpio, PinError> {
            Gpio::new()
                .map(|gpio| RppalGpio { gpio })
                .map_err(|e| PinError::Unavailable {
                    driver: "rppal",
                    reason: e.to_string(),
                })
        }
    }

    fn pin_err(pin: u8, e: rppal::gpio::Error) -> PinError {
        PinError::Pin {
            pin,
            reason: e.to_string(),
        }
    }

    #[derive(Debug)]
    struct In(rppal::gpio::InputPin);

    impl InputPin for In {
        fn pin(&self) -> u8 {
            self.0.pin()
        }
        fn read(&self) -> Result<bool, PinError> {
            Ok(self.0.is_high())
        }
        fn watch(&mut self, edges: mpsc::Sender<Edge>) -> Result<(), PinError> {
            let pin = self.0.pin();
            // rppal calls back on its own interrupt thread; debounce is
            // ours (signal.rs), so every edge is passed on.
            self.0
                .set_async_interrupt(Trigger::Both, None, move |ev| {
                    let high = ev.trigger == Trigger::RisingEdge;
                    let _ = edges.try_send(Edge {
                        pin,
                        high,
                        at: Instant::now(),
                    });
                })
                .map_err(|e| pin_err(pin, e))
        }
    }

    #[derive(Debug)]
    struct Out(rppal::gpio::OutputPin);

    impl OutputPin for Out {
        fn pin(&self) -> u8 {
            self.0.pin()
        }
        fn set(&mut self, high: bool) -> Result<(), PinError> {
            self.0.write(if high { Level::High } else { Level::Low });
            Ok(())
        }
    }

    impl GpioDriver for RppalGpio {
        fn name(&self) -> &'static str {
            "rppal"
        }
        fn input(&mut self, pin: u8, pull_up: bool) -> Result<Box<dyn InputPin>, PinError> {
            let p = self.gpio.get(pin).map_err(|e| pin_err(pin, e))?;
            let p = if pull_up {
                p.into_input_pullup()
            } else {
                p.into_input()
            };
            Ok(Box::new(In(p)))
        }
        fn output(&mut self, pin: u8, initial: bool) -> Result<Box<dyn OutputPin>, PinError> {
            let p = self.gpio.get(pin).map_err(|e| pin_err(pin, e))?;
            let mut o = if initial {
                p.into_output_high()
            } else {
                p.into_output_low()
            };
            // Leave relays released when the daemon exits.
            o.set_reset_on_drop(true);
            Ok(Box::new(Out(o)))
        }
    }
}

/// The GPIO driver called `name`, if this build has it.
pub fn open_driver(name: &str) -> Result<Box<dyn GpioDriver>, PinError> {
    match name {
        #[cfg(feature = "rpi")]
        "rppal" => Ok(Box::new(rpi::RppalGpio::open()?)),
        #[cfg(not(feature = "rpi"))]
        "rppal" => Err(PinError::Unavailable {
            driver: "rppal",
            reason: "this build has no rppal support (cargo feature `rpi`)".into(),
        }),
        "sim" => Ok(Box::new(SimGpio::new())),
        other => Err(PinError::Unavailable {
            driver: "unknown",
            reason: format!("no GPIO driver `{other}`; use `rppal` or `sim`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sim_pins_deliver_edges_and_remember_outputs() {
        let mut g = SimGpio::new();
        let hw = g.clone();
        let mut input = g.input(5, true).unwrap();
        assert!(input.read().unwrap(), "pull-up");
        let (tx, mut rx) = mpsc::channel(8);
        input.watch(tx).unwrap();
        hw.drive(5, false);
        let e = rx.recv().await.unwrap();
        assert_eq!((e.pin, e.high), (5, false));
        assert!(g.input(5, false).is_err(), "claimed twice");
        assert!(g.output(40, false).is_err(), "no such pin");
        let mut out = g.output(6, false).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        out.set(true).unwrap();
        let h = hw.history(6);
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].0 - h[0].0, std::time::Duration::from_millis(10));
        assert!(hw.level(6));
    }
}
