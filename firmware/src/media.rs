//! Small helpers over the HAL's audio traits shared by call flows.

use std::future::Future;

use callbox_hal::{AudioOut, Frame};

/// Extra operations on any [`AudioOut`].
pub trait AudioOutExt: AudioOut {
    /// Writes `frame` when there is one, else waits for the playout buffer
    /// to drain: one future for a `select!` branch that plays a prompt to
    /// its last sample.
    fn write_or_drain(
        &mut self,
        frame: Option<Frame>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async move {
            match frame {
                Some(f) => self.write_frame(f).await,
                None => self.drain().await,
            }
        }
    }
}

impl<T: AudioOut> AudioOutExt for T {}

/// Keys typed on a phone that form a code once the typing stops
/// ([`crate::acd::CODE_QUIET`] after the last key): feature codes on an
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
        self.due = Some(tokio::time::Instant::now() + crate::acd::CODE_QUIET);
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

/// Awaits `f` when there is one, else never resolves: an optional branch
/// of a `select!` (a timer not armed, a supervisor not present).
pub async fn pending_or<T>(f: Option<impl Future<Output = T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
