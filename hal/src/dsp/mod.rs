//! Signal processing every backend needs.
//!
//! DTMF generation (the simulator's callers key digits in band, and analog
//! trunks dial out with it), G.711 companding, the Goertzel DTMF detector
//! that hears callers' keys in band, and call-progress tones.

pub mod detect;
pub mod dtmf;
pub mod g711;
pub mod tones;
