//! The media layer: everything that touches a call's audio frames.
//!
//! Control logic above (call flows, IVR nodes, the ACD) asks for media
//! work — play these prompts, listen for keys, bridge these two lines,
//! record this message — and gets back what happened (prompt done, key 5,
//! far end hung up). Below it sit the recorder (taps) and the HAL's ports.
//!
//! - [`play`]: one answered call's mouth and ears ([`Media`]);
//! - [`bridge`]: connecting lines (two-party, supervised, consultation);
//! - [`keys`]: key dedup and codes typed in a row;
//! - [`dial`]: ringing a line and waiting for it to answer;
//! - [`LineFailure`]: a line or its audio failed (with the HAL's error kind).

use std::future::Future;

pub mod amd;
pub mod bridge;
pub mod conference;
pub mod dial;
pub mod engine;
mod failure;
pub mod keys;
pub mod lines;
pub mod park;
pub mod pickup;
pub mod play;

pub use bridge::{
    AgentAsks, AsJoin, BridgeEnd, ConsultEnd, Join, MonitorMode, bridge, bridge_supervised, consult,
};
pub use failure::LineFailure;
pub use keys::{CODE_QUIET, KeyBuffer, KeyDedup, Source};
pub use play::{Gone, Media};

/// Awaits `f` when there is one, else never resolves: an optional branch
/// of a `select!` (a timer not armed, a supervisor not present).
pub async fn pending_or<T>(f: Option<impl Future<Output = T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Fills `buf` with `music` played in a loop from `pos` (silence without
/// music), advancing `pos`.
pub(crate) fn fill_loop(buf: &mut [i16], music: &[i16], pos: &mut usize) {
    if music.is_empty() {
        buf.fill(0);
        return;
    }
    for s in buf {
        *pos %= music.len();
        *s = music[*pos];
        *pos += 1;
    }
}
