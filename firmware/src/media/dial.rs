//! Ringing a station or dialling a number and waiting for the answer: one
//! wait shared by the queue's offers, transfers, outbound jobs and
//! callbacks.

use std::future::Future;
use std::time::Duration;

use callbox_hal::{Error as _, HangupCause, Line, LineCommand, LineEvent};

use super::LineFailure;

/// How a rung or dialled line responded.
#[derive(Debug)]
pub enum Rang {
    /// The far end answered.
    Answered,
    /// The far end hung up first (busy, rejected) with this cause.
    Refused(HangupCause),
    /// Nobody answered in time.
    NoAnswer,
    /// A call arrived on the trunk instead (glare). It is not the dialler's:
    /// it goes back to the trunk's watcher with the line.
    Glare(LineEvent),
    /// The line failed while ringing.
    Failed(LineFailure),
    /// The wait was called off (an offer withdrawn, the daemon stopping).
    Cancelled,
}

/// Hangs up a borrowed line before it goes back to its watcher (also after
/// the far end hung up: the backend learns the line is free).
pub async fn release<L: Line>(port: &mut super::lines::Port<L>, cause: HangupCause) {
    if let Err(e) = port.line.command(LineCommand::Hangup(cause)).await {
        tracing::warn!("releasing a line failed: {e}");
    }
}

/// Sends `cmd` (ring a station, dial a number) and waits for the line to
/// answer ([`answer_within`]). `Err` when the line refused the command.
pub async fn ring<L: Line>(
    line: &mut L,
    cmd: LineCommand,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> Result<Rang, L::Error> {
    line.command(cmd).await?;
    Ok(answer_within(line, timeout, cancel).await)
}

/// [`ring`] for a borrowed station, where a command the line refuses is
/// the line failing like any other way it can fail.
pub async fn ring_station<L: Line>(
    line: &mut L,
    cmd: LineCommand,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> Rang {
    match ring(line, cmd, timeout, cancel).await {
        Ok(r) => r,
        Err(e) => Rang::Failed(LineFailure::new(
            callbox_hal::ErrorKind::Other,
            e.to_string(),
        )),
    }
}

/// Waits up to `timeout` for a rung or dialled line to answer, unless
/// `cancel` resolves first. Other line events meanwhile (ringing, progress)
/// are passed over.
pub async fn answer_within<L: Line>(
    line: &mut L,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> Rang {
    let wait = async {
        loop {
            match line.next_event().await {
                Ok(LineEvent::Answered) => return Rang::Answered,
                Ok(LineEvent::Hangup(c)) => return Rang::Refused(c),
                Ok(ev @ LineEvent::Incoming { .. }) => return Rang::Glare(ev),
                Ok(_) => {}
                Err(e) => return Rang::Failed(LineFailure::new(e.kind(), e.to_string())),
            }
        }
    };
    tokio::select! {
        () = cancel => Rang::Cancelled,
        r = tokio::time::timeout(timeout, wait) => r.unwrap_or(Rang::NoAnswer),
    }
}
