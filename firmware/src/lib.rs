//! `callboxd`, the call-center box daemon, as a library.
//!
//! The binary (`src/bin/callboxd/`) parses the command line and calls
//! [`app::run`] with a parsed [`config::SiteConfig`], a HAL backend and a
//! shutdown token. Inside, actors own their state and talk over bounded
//! channels:
//!
//! - [`supervisor`]: one watcher per line, handing calls to
//! - [`call`]: one actor per call (answer, IVR or greeting, record);
//! - [`ivr`]: menus, self-service and outbound voice flows;
//! - [`lines`]: lending idle lines to calls that ring or dial them;
//! - [`acd`]: agents and queues: who gets which call when;
//! - [`store`]: the SQLite thread that keeps every record;
//! - [`panel`]: LEDs and buttons;
//! - [`daynight`]: the day/night switch.
//!
//! Time is injected through [`clock::Clock`] so the whole box runs in
//! virtual time under test.

pub mod acd;
pub mod app;
pub mod calls;
pub mod certs;
pub mod clock;
pub mod config;
pub mod console;
pub mod daynight;
pub mod events;
mod fsutil;
pub mod inflight;
pub mod ivr;

pub mod logging;
pub mod media;
pub mod panel;
pub mod priority;
pub mod prompt;
pub mod provision;
pub mod recorder;
pub mod secrets;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod voicemail;
