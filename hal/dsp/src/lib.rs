//! Signal processing every backend needs (`callbox_hal::dsp`).
//!
//! A crate of its own so the size-optimised image build can keep this
//! per-frame code at full optimisation (`[profile.firmware.package.
//! callbox-dsp]`) while the rest of the HAL is optimised for size.
//!
//! DTMF generation (the simulator's callers key digits in band, and analog
//! trunks dial out with it), G.711 companding, the Goertzel DTMF detector
//! that hears callers' keys in band, call-progress tones and their
//! detection, caller id (FSK and DTMF) and resampling for codecs that do
//! not run at 8 kHz.

pub mod call_progress;
pub mod caller_id;
pub mod detect;
pub mod dtmf;
pub mod g711;
pub mod goertzel;
pub mod resample;
pub mod tones;
