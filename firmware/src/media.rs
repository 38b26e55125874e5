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

/// Awaits `f` when there is one, else never resolves: an optional branch
/// of a `select!` (a timer not armed, a supervisor not present).
pub async fn pending_or<T>(f: Option<impl Future<Output = T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
