//! The IVR: what a caller meets after the box answers.
//!
//! - [`config`]: the `[ivr]` section, checked into a flow graph;
//! - [`engine`]: runs a call through the graph;
//! - [`say`]: numbers, money, dates and times from prompt fragments;
//! - [`pattern`], [`hours`], [`lookup`]: number patterns, business hours,
//!   self-service tables.
//!
//! The IVR asks the media layer ([`crate::media`]) to play, listen and
//! bridge, and the ACD ([`crate::acd`]) to queue a caller; the calls layer
//! (`calls`) runs a flow on inbound and outbound calls.

pub mod config;
pub mod engine;
pub mod hours;
pub mod lookup;
pub mod pattern;
pub mod say;

pub use config::Ivr;
