//! Call recording: what a call sounds like, kept as WAV files that survive
//! a power cut.
//!
//! A call carries a [`Recording`], a tap the bridges feed with every frame:
//! the caller's voice on the left channel, what the caller hears (agent,
//! supervisor barging in, hold music) on the right. The tap encodes into a
//! buffer and hands 500 ms chunks to one writer thread ([`Recorder`]) that
//! owns every open file: it appends each chunk (the kernel's page cache
//! merges them; the SD card sees a flush every `sync_every`), rewrites the
//! header every `header_every` of audio so the file is valid as it grows,
//! and at the end finishes the header, encrypts the file to headquarters'
//! keys when the site names them and moves it to its dated folder.
//!
//! Open files live in `recordings/.open/`; at start-up whatever is there
//! was open when the box died: the writer repairs its header from the file
//! length, marks it interrupted and keeps it, before any call is taken.
//!
//! Retention (age, quota, free space) runs on the same thread; see
//! [`retention`].
//!
//! The policy can change while the box runs ([`Recorder::set_config`]): a
//! call's tap keeps the policy it was made with, so a recording in progress
//! finishes as it started (format, encryption); new calls and the writer's
//! own rounds (sync, free space, retention) use the new one.

pub mod config;
mod flush;
mod handle;
mod repair;
mod retention;
pub mod seal;
mod space;
mod tap;
pub mod wav;
mod writer;

pub use handle::{Recorder, RecorderThread, StartReport};
pub use tap::Recording;

// What retention.rs reaches through this module (`super::Writer`,
// `super::human`).
use space::human;
use writer::Writer;

/// Folder of recordings inside the data directory.
pub const DIR: &str = "recordings";
/// Folder of recordings still being written, inside [`DIR`].
pub const OPEN_DIR: &str = ".open";

/// Where a recording goes once finished, relative to the data directory.
pub fn final_path(id: &str, started_ms: i64, encrypted: bool) -> String {
    let day = jiff::Timestamp::from_millisecond(started_ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "undated".into());
    let ext = if encrypted { "wav.age" } else { "wav" };
    format!("{DIR}/{day}/{id}.{ext}")
}
