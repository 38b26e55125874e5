//! The IVR: what a caller meets after the box answers.
//!
//! - [`config`]: the `[ivr]` section, checked into a flow graph;
//! - [`engine`]: runs a call through the graph;
//! - [`media`]: plays, hears keys (in band and out of band), records,
//!   bridges;
//! - [`say`]: numbers, money, dates and times from prompt fragments;
//! - [`pattern`], [`hours`], [`lookup`]: number patterns, business hours,
//!   self-service tables;
//! - [`outbound`]: voice jobs that dial out and run a flow.

pub mod config;
pub mod engine;
pub mod hours;
pub mod lookup;
pub mod media;
pub mod outbound;
pub mod pattern;
pub mod say;

pub use config::Ivr;
