//! The error contract shared by every HAL trait.
//!
//! Each backend keeps its own detailed error type and maps it onto an
//! [`ErrorKind`], so the firmware can decide what to do (retry, give up on the
//! call, raise an alarm) without knowing which backend is underneath.

use std::fmt;

/// What went wrong, in terms the firmware can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The other side of a channel or device is gone (backend stopped,
    /// device unplugged). Retrying on the same handle will not help.
    Closed,
    /// The command does not fit the line's state (answer an idle line, ring a
    /// trunk).
    InvalidState,
    /// The line or device is in use.
    Busy,
    /// An operating-system or device I/O failure.
    Io,
    /// Anything else; the error's `Display` says what.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Closed => "closed",
            ErrorKind::InvalidState => "invalid state",
            ErrorKind::Busy => "busy",
            ErrorKind::Io => "i/o error",
            ErrorKind::Other => "other error",
        })
    }
}

/// Implemented by every backend's error type.
pub trait Error: std::error::Error + Send + Sync + 'static {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}
