//! Keys from a phone: one press heard both ways counts once, and keys
//! typed in a row form a code once the typing stops.

use std::time::Duration;

use tokio::time::Instant;

use super::pending_or;

/// Quiet time after the last key that completes a feature code (on an idle
/// phone, or a transfer target keyed during a call).
pub const CODE_QUIET: Duration = Duration::from_secs(2);

/// The same key from the other source within this window is one press.
const DEDUP: Duration = Duration::from_millis(250);

/// Where a key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A line event (RFC 4733, SIP INFO, a digital phone).
    OutOfBand,
    /// A DTMF tone in the audio.
    InBand,
}

/// One key press sent both ways (an event and its tone) counts once.
#[derive(Debug, Default)]
pub struct KeyDedup {
    last: Option<(char, Source, Instant)>,
}

impl KeyDedup {
    /// Whether `d` from `src` is a new press (not the other half of the
    /// last one).
    pub fn accept(&mut self, d: char, src: Source) -> bool {
        let now = Instant::now();
        if let Some((k, s, at)) = self.last
            && k == d
            && s != src
            && now.duration_since(at) < DEDUP
        {
            return false;
        }
        self.last = Some((d, src, now));
        true
    }
}

/// Keys typed on a phone that form a code once the typing stops
/// ([`CODE_QUIET`] after the last key): feature codes on an
/// idle station, transfer and recording codes during a call.
#[derive(Debug, Default)]
pub struct KeyBuffer {
    keys: String,
    due: Option<tokio::time::Instant>,
}

impl KeyBuffer {
    /// A key; the code is complete a quiet time after it.
    pub fn push(&mut self, key: char) {
        self.keys.push(key);
        self.rearm();
    }

    /// Replaces what was typed (a hook flash standing for a code).
    pub fn set(&mut self, keys: &str) {
        self.keys = keys.to_string();
        self.rearm();
    }

    fn rearm(&mut self) {
        self.due = Some(tokio::time::Instant::now() + CODE_QUIET);
    }

    /// A key, with the quiet time that completes the keys after it (a
    /// dial plan's inter-digit timeout).
    pub fn push_quiet(&mut self, key: char, quiet: std::time::Duration) {
        self.keys.push(key);
        self.due = Some(tokio::time::Instant::now() + quiet);
    }

    /// What was typed so far.
    pub fn keys(&self) -> &str {
        &self.keys
    }

    /// Completes the keys now (a whole number, or `#`).
    pub fn complete_now(&mut self) {
        if !self.keys.is_empty() {
            self.due = Some(tokio::time::Instant::now());
        }
    }

    /// Resolves when the typing has stopped (never while nothing is typed).
    pub async fn complete(&self) {
        pending_or(self.due.map(tokio::time::sleep_until)).await;
    }

    /// What was typed; the buffer starts over.
    pub fn take(&mut self) -> String {
        self.due = None;
        std::mem::take(&mut self.keys)
    }
}
