//! Audio frames and the audio stream traits.
//!
//! Audio moves as frames of 20 ms. Narrowband telephony (8 kHz, 160 samples a
//! frame) is the only format today, but rate and frame size are properties of
//! the stream ([`AudioFormat`]) so wideband can come later: a [`Frame`] has
//! room for 20 ms at 16 kHz and carries its own length.
//!
//! Frames are plain `Copy` values with a fixed-size buffer so that moving them
//! through channels never allocates — per-frame work is the hot path of the
//! whole box.

use std::future::Future;

use crate::error::Error;

/// Largest frame any stream may use: 20 ms at 8 kHz. Every backend hands
/// the box narrowband frames (a codec at another rate is resampled in the
/// backend); frames are copied by value through channels and bridges, so
/// room for a wider format would double every copy.
pub const MAX_FRAME_SAMPLES: usize = 160;

/// Sample rate and frame size of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFormat {
    /// Samples per second.
    pub sample_rate: u32,
    /// Samples per frame (20 ms worth).
    pub frame_samples: usize,
}

impl AudioFormat {
    /// 8 kHz, 20 ms frames of 160 samples: what every line carries today.
    pub const NARROWBAND: AudioFormat = AudioFormat {
        sample_rate: 8000,
        frame_samples: 160,
    };

    /// Duration of one frame.
    pub fn frame_duration(&self) -> std::time::Duration {
        std::time::Duration::from_micros(
            self.frame_samples as u64 * 1_000_000 / u64::from(self.sample_rate),
        )
    }
}

/// One frame of 16-bit mono PCM audio.
#[derive(Clone, Copy)]
pub struct Frame {
    /// Sequence number within the stream, wrapping.
    pub seq: u32,
    /// Position of the first sample, in samples since the stream started.
    pub timestamp: u64,
    len: u16,
    samples: [i16; MAX_FRAME_SAMPLES],
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("timestamp", &self.timestamp)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// A silent frame of the given format.
    ///
    /// # Panics
    /// If the format's frame is larger than [`MAX_FRAME_SAMPLES`]; formats are
    /// constants of the backends, so this is a programming error.
    pub fn silence(format: AudioFormat, seq: u32, timestamp: u64) -> Frame {
        assert!(format.frame_samples <= MAX_FRAME_SAMPLES);
        Frame {
            seq,
            timestamp,
            len: format.frame_samples as u16,
            samples: [0; MAX_FRAME_SAMPLES],
        }
    }

    /// The samples of this frame.
    pub fn samples(&self) -> &[i16] {
        &self.samples[..usize::from(self.len)]
    }

    /// The samples of this frame, for writing.
    pub fn samples_mut(&mut self) -> &mut [i16] {
        &mut self.samples[..usize::from(self.len)]
    }

    /// Mean power in dBFS (0 dBFS = full-scale square wave); `-inf` for silence.
    pub fn power_dbfs(&self) -> f32 {
        let s = self.samples();
        if s.is_empty() {
            return f32::NEG_INFINITY;
        }
        let energy: f64 = s.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let mean = energy / s.len() as f64;
        (10.0 * (mean / (32768.0f64 * 32768.0)).log10()) as f32
    }
}

/// Frames of a port produced on one clock (a sound card, the simulator)
/// are due on the grid `epoch + k·period`; this is the grid's first
/// instant at or after `now` (`epoch` itself when `now` is before it).
pub fn next_on_grid(
    epoch: tokio::time::Instant,
    now: tokio::time::Instant,
    period: std::time::Duration,
) -> tokio::time::Instant {
    let Some(since) = now.checked_duration_since(epoch) else {
        return epoch;
    };
    let p = period.as_nanos();
    let k = since.as_nanos().div_ceil(p);
    epoch + std::time::Duration::from_nanos(u64::try_from(k * p).unwrap_or(u64::MAX))
}

/// Audio arriving from a line (what the caller or agent says).
pub trait AudioIn: Send + 'static {
    /// The backend's error type.
    type Error: Error;
    /// Format of the frames this stream yields.
    fn format(&self) -> AudioFormat;
    /// Waits for the next frame. Cancel-safe: dropping the future loses no
    /// frame.
    fn read_frame(&mut self) -> impl Future<Output = Result<Frame, Self::Error>> + Send;
    /// The next frame if one has arrived, else `None` at once; never waits.
    /// The media engine reads every port this way once per tick, so the
    /// box wakes once per tick for all its calls, not once per frame per
    /// call.
    fn try_read_frame(&mut self) -> Result<Option<Frame>, Self::Error>;
    /// Whether keys pressed at the far end must be heard in this audio (a
    /// tone detector on it). Not on a SIP call that negotiated RFC 4733
    /// events: its keys come as [`crate::LineEvent::Digit`]s, as on any
    /// PBX set to take them that way when offered, and the detector's cost
    /// is saved.
    fn keys_in_band(&self) -> bool {
        true
    }
    /// Whether this stream gives at most one frame per period by itself
    /// (a jitter buffer behind it that absorbs bursts), so it never has a
    /// backlog for the reader to catch up with extra reads in one period.
    fn paced(&self) -> bool {
        false
    }
}

/// Audio going out to a line (prompts, the other party of a bridge).
///
/// Writing paces the writer: the future completes when the backend has room
/// for the frame, as a sound card's buffer would. When nothing is written the
/// line hears silence.
pub trait AudioOut: Send + 'static {
    /// The backend's error type.
    type Error: Error;
    /// Format this stream expects.
    fn format(&self) -> AudioFormat;
    /// Queues one frame for playing.
    fn write_frame(&mut self, frame: Frame)
    -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Queues one frame if the playout buffer has room now, else drops it;
    /// never waits. `Ok(false)`: dropped. For audio paced by another line
    /// (a bridge forwards each frame as it arrives): waiting for this
    /// line's clock would hold up reading the other one.
    fn offer_frame(&mut self, frame: Frame) -> Result<bool, Self::Error>;
    /// Waits until every queued frame has been played, so that hanging up
    /// right after does not clip the end of a prompt. Cancel-safe.
    fn drain(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowband_frame_is_20ms_of_160_samples() {
        let f = Frame::silence(AudioFormat::NARROWBAND, 0, 0);
        assert_eq!(f.samples().len(), 160);
        assert_eq!(
            AudioFormat::NARROWBAND.frame_duration(),
            std::time::Duration::from_millis(20)
        );
        assert_eq!(f.power_dbfs(), f32::NEG_INFINITY);
    }
}
