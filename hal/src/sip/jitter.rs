//! A small adaptive jitter buffer: RTP audio of any packet size (10, 20,
//! 30 ms) in, the box's 20 ms frames out, one per media tick.
//!
//! Samples are placed by RTP timestamp in a ring, so reordered packets land
//! where they belong and duplicates overwrite themselves. Playing starts
//! once `target` is buffered (60 ms at first: two 30 ms packets); a packet arriving after its time raises the
//! target (up to 200 ms), a long calm lowers it again (down to 20 ms): the
//! end of a talkspurt is not jitter. A backlog far above the target
//! is cut so latency cannot grow without bound. A lost frame is concealed
//! by the last one, fading; after 60 ms of nothing the buffer waits again.

use crate::audio::{AudioFormat, Frame};

const FRAME: usize = 160;
/// Ring size in samples (512 ms): more than the largest target plus slack.
const CAP: usize = 4096;
const MASK: usize = CAP - 1;
const MIN_TARGET: u32 = 160;
const START_TARGET: u32 = 480;
const MAX_TARGET: u32 = 1600;
/// A jump further than this (1 s) is a new stream, not a late or early
/// packet.
const RESYNC: i64 = 8000;
/// Frames concealed before the buffer stops playing and waits.
const MAX_CONCEAL: u32 = 3;
/// Frames without an underrun before the target shrinks a step.
const CALM: u32 = 500;

/// What the buffer has done, for logs and the harness.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets that came after their time was played.
    pub late: u64,
    /// Frames with no audio at all when they were due.
    pub lost: u64,
    /// Frames filled in from the last one.
    pub concealed: u64,
    /// Samples dropped to cut a backlog.
    pub dropped: u64,
    /// What is buffered now, in milliseconds.
    pub depth_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Buffering,
    Playing,
}

/// The jitter buffer of one RTP stream.
#[derive(Debug)]
pub struct JitterBuffer {
    ring: Box<[i16; CAP]>,
    filled: Box<[bool; CAP]>,
    state: State,
    /// RTP timestamp of the next sample to play.
    play: u32,
    /// Just past the newest sample received.
    end: u32,
    target: u32,
    last: [i16; FRAME],
    concealed_run: u32,
    calm: u32,
    seq_out: u32,
    ts_out: u64,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        JitterBuffer::new()
    }
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new() -> JitterBuffer {
        JitterBuffer {
            ring: Box::new([0; CAP]),
            filled: Box::new([false; CAP]),
            state: State::Idle,
            play: 0,
            end: 0,
            target: START_TARGET,
            last: [0; FRAME],
            concealed_run: 0,
            calm: 0,
            seq_out: 0,
            ts_out: 0,
            stats: JitterStats::default(),
        }
    }

    fn depth(&self) -> u32 {
        self.end.wrapping_sub(self.play)
    }

    fn clear(&mut self) {
        self.filled.fill(false);
    }

    /// Takes one packet's decoded samples.
    pub fn push(&mut self, _seq: u16, timestamp: u32, samples: &[i16]) {
        if samples.is_empty() || samples.len() > CAP / 2 {
            return;
        }
        if self.state == State::Idle {
            self.start_at(timestamp);
        }
        let mut offset = i64::from(timestamp.wrapping_sub(self.play) as i32);
        if offset.abs() > RESYNC {
            // A new stream or talkspurt far away: start over there.
            self.start_at(timestamp);
            offset = 0;
        }
        let len = samples.len() as i64;
        if offset < 0 {
            // Its time was played: the buffer is too shallow for this
            // network.
            self.stats.late += 1;
            self.calm = 0;
            self.target = (self.target + FRAME as u32).min(MAX_TARGET);
            if offset + len <= 0 {
                return;
            }
        }
        if offset + len > CAP as i64 {
            // Too far ahead for the ring: make room by playing past the
            // oldest samples.
            let cut = (offset + len - CAP as i64) as u32;
            self.drop_samples(cut);
            offset -= i64::from(cut);
        }
        // Samples whose time was played are skipped; the rest are copied
        // in at most two runs (the ring wraps), not one by one.
        let skip = (-offset).max(0) as usize;
        let src = &samples[skip..];
        let start = (self.play.wrapping_add((offset + skip as i64) as u32) as usize) & MASK;
        for (r, from) in spans(start, src.len()) {
            self.ring[r.clone()].copy_from_slice(&src[from..from + r.len()]);
            self.filled[r].fill(true);
        }
        let new_end = timestamp.wrapping_add(samples.len() as u32);
        if (new_end.wrapping_sub(self.end) as i32) > 0 {
            self.end = new_end;
        }
    }

    fn start_at(&mut self, ts: u32) {
        self.clear();
        self.play = ts;
        self.end = ts;
        self.state = State::Buffering;
        self.concealed_run = 0;
    }

    fn drop_samples(&mut self, n: u32) {
        for i in 0..n {
            let idx = (self.play.wrapping_add(i) as usize) & MASK;
            self.filled[idx] = false;
        }
        self.play = self.play.wrapping_add(n);
        if (self.end.wrapping_sub(self.play) as i32) < 0 {
            self.end = self.play;
        }
        self.stats.dropped += u64::from(n);
    }

    fn frame(&mut self, samples: &[i16; FRAME]) -> Frame {
        let mut f = Frame::silence(AudioFormat::NARROWBAND, self.seq_out, self.ts_out);
        f.samples_mut().copy_from_slice(samples);
        self.seq_out = self.seq_out.wrapping_add(1);
        self.ts_out += FRAME as u64;
        f
    }

    /// The next 20 ms to play, or `None` when there is nothing to play
    /// (before the stream starts, while buffering, after it went quiet).
    pub fn pop(&mut self) -> Option<Frame> {
        match self.state {
            State::Idle => return None,
            State::Buffering => {
                if self.depth() < self.target {
                    return None;
                }
                self.state = State::Playing;
            }
            State::Playing => {}
        }
        if self.depth() > self.target + 3 * FRAME as u32 {
            // A backlog (a burst after a stall): catch up to the target.
            let cut = self.depth() - self.target;
            self.drop_samples(cut);
        }
        let mut out = [0i16; FRAME];
        let mut got = 0;
        for (r, from) in spans(self.play as usize & MASK, FRAME) {
            let dst = &mut out[from..from + r.len()];
            for ((o, &s), &f) in dst
                .iter_mut()
                .zip(&self.ring[r.clone()])
                .zip(&self.filled[r.clone()])
            {
                *o = if f { s } else { 0 };
                got += usize::from(f);
            }
            self.filled[r].fill(false);
        }
        if got == 0 {
            self.stats.lost += 1;
            self.calm = 0;
            if self.concealed_run >= MAX_CONCEAL {
                self.state = State::Buffering;
                self.end = self.play;
                return None;
            }
            self.concealed_run += 1;
            self.stats.concealed += 1;
            // Fade the repeat: -6 dB a frame.
            for s in &mut self.last {
                *s /= 2;
            }
            out = self.last;
        } else {
            self.concealed_run = 0;
            self.last = out;
            self.calm += 1;
            if self.calm >= CALM {
                self.calm = 0;
                self.target = self.target.saturating_sub(FRAME as u32).max(MIN_TARGET);
            }
        }
        self.play = self.play.wrapping_add(FRAME as u32);
        if (self.end.wrapping_sub(self.play) as i32) < 0 {
            self.end = self.play;
        }
        self.stats.depth_ms = self.depth() / 8;
        Some(self.frame(&out))
    }

    /// The next 20 ms to play, silence when there is nothing (before the
    /// stream starts, while buffering, while the far end sends nothing:
    /// silence suppression, a sender whose source ended). A call's leg
    /// gives a frame every period, as a real line does, so what is clocked
    /// by it (a recording, a bridge) keeps time.
    pub fn pop_or_silence(&mut self) -> Frame {
        match self.pop() {
            Some(f) => f,
            None => self.frame(&[0; FRAME]),
        }
    }

    /// What it has done so far.
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.depth_ms = self.depth() / 8;
        s
    }
}

/// The ring's index runs holding `len` samples from ring index `start`
/// (at most two: the ring wraps), each with its offset among the samples.
fn spans(start: usize, len: usize) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> {
    let first = len.min(CAP - start);
    [(start..start + first, 0), (0..len - first, first)]
        .into_iter()
        .filter(|(r, _)| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_fills_the_gaps_and_the_frames_stay_in_sequence() {
        let mut j = JitterBuffer::new();
        let first = j.pop_or_silence();
        assert!(first.samples().iter().all(|&s| s == 0));
        let mut seqs = vec![first.seq];
        let mut loud = 0;
        // Ten packets a period apart, then the far end goes quiet.
        for i in 0..40u32 {
            if i < 10 {
                j.push(i as u16, i * 160, &[1000; 160]);
            }
            let f = j.pop_or_silence();
            assert_eq!(f.samples().len(), 160);
            loud += usize::from(f.samples()[0] != 0);
            seqs.push(f.seq);
        }
        assert!(loud >= 10, "the packets were played ({loud})");
        assert_eq!(seqs.len(), 41, "a frame every period");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
    }

    /// A ramp: sample n is n (mod 30000), so continuity is checkable.
    fn ramp(from: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| ((from as usize + i) % 30000) as i16)
            .collect()
    }

    fn drain(j: &mut JitterBuffer, out: &mut Vec<i16>, frames: usize) {
        for _ in 0..frames {
            if let Some(f) = j.pop() {
                out.extend_from_slice(f.samples());
            }
        }
    }

    #[test]
    fn thirty_ms_packets_come_out_as_continuous_twenty_ms_frames() {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        let base = 4_294_960_000u32; // wraps during the test
        // 30 ms packets every 30 ms, popped every 20 ms: 3 pops per 2 packets.
        for k in 0..200u32 {
            let ts = base.wrapping_add(k * 240);
            j.push(k as u16, ts, &ramp(k * 240, 240));
            drain(&mut j, &mut out, if k % 2 == 0 { 1 } else { 2 });
        }
        assert!(out.len() > 40_000, "{}", out.len());
        assert_eq!(
            out,
            ramp(0, out.len()),
            "samples in order, none lost or doubled"
        );
        assert_eq!(j.stats().concealed, 0);
    }

    #[test]
    fn reordered_and_duplicate_packets_land_in_place() {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for (order, pops) in [
            (&[0u32, 2, 1, 1, 3][..], 2),
            (&[5, 4, 6], 3),
            (&[7, 7, 8, 9], 5),
        ] {
            for &k in order {
                j.push(k as u16, 1000 + k * 160, &ramp(k * 160, 160));
            }
            drain(&mut j, &mut out, pops);
        }
        assert_eq!(out, ramp(0, 1600));
        assert_eq!(j.stats().late, 0);
    }

    #[test]
    fn a_lost_packet_is_concealed_then_the_stream_resumes() {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for k in 0..20u32 {
            if k != 10 {
                j.push(k as u16, k * 160, &[1000; 160]);
            }
            drain(&mut j, &mut out, 1);
        }
        drain(&mut j, &mut out, 1);
        let s = j.stats();
        assert_eq!(s.concealed, 1, "{s:?}");
        // The concealed frame is the last one at -6 dB.
        assert!(out.chunks(160).any(|f| f.iter().all(|&x| x == 500)));
        assert!(out.chunks(160).filter(|f| f[0] == 1000).count() >= 17);
    }

    #[test]
    fn late_packets_are_dropped_and_a_burst_does_not_grow_latency() {
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for k in 0..5u32 {
            j.push(k as u16, k * 160, &[7; 160]);
        }
        drain(&mut j, &mut out, 4);
        j.push(0, 0, &[7; 160]);
        assert_eq!(j.stats().late, 1);
        // A 2 s stall, then everything at once.
        for k in 5..105u32 {
            j.push(k as u16, k * 160, &[7; 160]);
        }
        drain(&mut j, &mut out, 1);
        assert!(j.stats().depth_ms <= 200, "{:?}", j.stats());
        assert!(j.stats().dropped > 0);
    }

    #[test]
    fn silence_before_the_first_packet_and_after_the_stream_stops() {
        let mut j = JitterBuffer::new();
        assert!(j.pop().is_none());
        for k in 0..3u32 {
            j.push(k as u16, k * 160, &[3; 160]);
        }
        let mut n = 0;
        while j.pop().is_some() {
            n += 1;
            assert!(n < 20);
        }
        assert_eq!(n, 3 + MAX_CONCEAL as usize);
        // A new talkspurt far away starts over.
        j.push(9, 1_000_000, &[4; 160]);
        j.push(10, 1_000_160, &[4; 160]);
        j.push(11, 1_000_320, &[4; 160]);
        assert_eq!(j.pop().map(|f| f.samples()[0]), Some(4));
    }
}
