//! Hardware abstraction for the callbox.
//!
//! The firmware never talks to a sound card, a GPIO pin or a SIP stack
//! directly: it talks to the small traits of this crate, one per capability.
//!
//! - [`line`]: a telephony port (trunk towards the carrier, station towards an
//!   agent's phone) that emits [`line::LineEvent`]s and takes
//!   [`line::LineCommand`]s;
//! - [`audio`]: 20 ms frames of 8 kHz, 16-bit mono audio in each direction;
//! - [`io`]: status and line LEDs, relays, and buttons;
//! - [`dsp`]: signal processing every backend needs (the `callbox-dsp`
//!   crate: G.711, DTMF, call-progress tones, caller id, resampling);
//! - [`registry`]: backends chosen by name from the site config;
//! - [`analog`]: the analog line backend — a sound card (ALSA, feature
//!   `alsa`) for the audio, GPIO pins (rppal, feature `rpi`) for hook,
//!   ring, relays and LEDs, caller id and call-progress detection;
//! - [`sim`]: the simulated backend, a real implementation that plays
//!   scenario files — the same files drive tests, the demo and benchmarks.
//!
//! Every trait method that waits returns a `Send` future, so firmware actors
//! can run on any tokio runtime. Every error type maps onto [`ErrorKind`].
//!
//! Audio is built for one engine that serves every port per tick rather
//! than a task per port: [`AudioIn::try_read_frame`] and
//! [`AudioOut::offer_frame`] never wait, so the firmware's media engine
//! takes each port's frame and gives each its next one in one pass every
//! 20 ms; [`Backend::frame_grid`] says when a backend whose ports share a
//! clock (a sound card, the simulator) produces its frames, so that pass
//! comes just after. The waiting `read_frame` / `write_frame` / `drain`
//! remain for tools and tests that drive one port by hand.

pub mod analog;
pub mod audio;
pub mod clock;
pub mod diag;
pub use callbox_dsp as dsp;
pub mod error;
pub mod io;
pub mod line;
mod queue;
pub mod registry;
pub mod rt;
pub mod sim;
#[cfg(feature = "sip")]
pub mod sip;
pub mod wav;

pub use audio::{AudioFormat, AudioIn, AudioOut, Frame};
pub use error::{Error, ErrorKind};
pub use line::{
    HangupCause, Health, Line, LineCommand, LineEvent, LineFault, LineInfo, LineKind, LineStatus,
    StatusWatch,
};
pub use registry::{AnyBackend, Backend, Port};
