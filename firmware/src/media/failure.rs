//! [`LineFailure`]: a line or its audio stopped working. The media layer
//! builds it where a HAL error is turned into a reason a call cannot go on
//! (the engine for audio, [`super::play`], [`super::bridge`] and
//! [`super::dial`] for line events), keeping the HAL's [`ErrorKind`] for
//! whoever decides what to do about it, and the words for the log.

use callbox_hal::ErrorKind;

/// A line or its audio failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct LineFailure {
    /// The kind of the HAL error underneath (`Other` when no HAL error is
    /// known).
    pub kind: ErrorKind,
    /// What failed, in words: `line: closed`, `caller inbound audio: …`.
    pub what: String,
}

impl LineFailure {
    /// A failure of this kind, told in these words.
    pub fn new(kind: ErrorKind, what: impl Into<String>) -> LineFailure {
        LineFailure {
            kind,
            what: what.into(),
        }
    }

    /// `part` ("line", "inbound audio") failed with the HAL error `e`: its
    /// kind, and `part: e` in words.
    pub fn hal<E: callbox_hal::Error>(part: &str, e: &E) -> LineFailure {
        LineFailure::new(e.kind(), format!("{part}: {e}"))
    }

    /// The same failure, said of one side of a bridge (`caller`, `agent`).
    pub fn of(self, side: &str) -> LineFailure {
        LineFailure::new(self.kind, format!("{side} {}", self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbox_hal::sim::SimError;

    #[test]
    fn a_hal_error_keeps_its_kind_and_reads_as_before() {
        let f = LineFailure::hal("inbound audio", &SimError::Closed);
        assert_eq!(f.kind, ErrorKind::Closed);
        assert_eq!(f.to_string(), "inbound audio: simulated line closed");
        let f = f.of("caller");
        assert_eq!(f.kind, ErrorKind::Closed);
        assert_eq!(f.to_string(), "caller inbound audio: simulated line closed");
    }
}
