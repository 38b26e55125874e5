//! Signal processing every backend needs.
//!
//! Today: DTMF generation (the simulator's callers key digits in band, and
//! analog trunks dial out with it). The IVR issue adds G.711, the Goertzel
//! detector and call-progress tones here.

pub mod dtmf;
