//! Call-progress tone detection: dial tone, ringback, busy and congestion
//! as the exchange plays them, heard on a trunk's inbound audio.
//!
//! Analog lines seldom signal that the far party hung up: the exchange
//! plays busy (or congestion) tone instead, and the box must hear it to end
//! the call. Outbound dialling also learns from ringback and busy.
//!
//! Every 20 ms block is tested for the plan's tone (the [`super::tones`]
//! plans: one 450 Hz tone in China, tone pairs in North America): the
//! Goertzel power at the tone's frequencies must hold at least 60 % of the
//! block's power and the tone be louder than −45 dBFS. The on/off segments
//! that gives are matched against the cadences: a tone is reported when
//!
//! | tone | confirmed by | China | North America |
//! |---|---|---|---|
//! | busy | 2 on/off cycles of its cadence | 1.4 s | 2.0 s |
//! | congestion | 2 on/off cycles of its cadence | 2.8 s | 1.0 s |
//! | ringback | one burst of its length, then 1 s of silence | 2.0 s | 3.0 s |
//! | dial | a break-free tone longer than any ringback burst | 1.4 s | 1.0 s |
//!
//! (times from the tone's start). Each on and off time may be off by 20 %
//! or 60 ms, whichever is more, which covers exchanges' timing and the
//! block grid. Speech has energy at 450 Hz but seldom 60 % of it in one
//! narrow band for 300 ms, and never twice in a regular cadence. A tone is
//! reported once; again only after it stopped for 5 s (longer than any
//! plan's silence) or something else was heard.

use super::goertzel::{Bin, energy};
use super::tones::{ProgressTone, ToneRegion, plan};

/// Samples per analysis block at 8 kHz (20 ms).
const BLOCK_MS: u32 = 20;
/// Share of a block's power the tone must hold.
const TONE_SHARE: f64 = 0.6;
/// Quietest tone heard, dBFS of a sine.
const FLOOR_DBFS: f64 = -45.0;
/// On/off segments matched for busy and congestion.
const CYCLES: usize = 2;

fn near(ms: u32, nominal: u32) -> bool {
    let tol = (nominal / 5).max(60);
    ms + tol >= nominal && ms <= nominal + tol
}

/// Recognises call-progress tones by frequency and cadence.
#[derive(Debug, Clone)]
pub struct ProgressDetector {
    block: usize,
    buf: Vec<f64>,
    /// Goertzel bins of the frequency sets: the busy/congestion set,
    /// ringback's, dial's.
    bins: [Vec<Bin>; 3],
    /// For each set, the first set with the same frequencies: in China all
    /// three are one 450 Hz tone, told apart by cadence, and measured once.
    canon: [usize; 3],
    busy: (u32, u32),
    congestion: (u32, u32),
    ringback_on: u32,
    /// Unbroken tone that is dial tone, ms (longer than any ringback burst
    /// when the two are the same tone).
    dial_ms: u32,
    /// Which set the current segment carries (`None`: off).
    on: Option<usize>,
    /// Length of the current segment, ms.
    run_ms: u32,
    /// Completed segments, newest last: (set or off, ms).
    segments: Vec<(Option<usize>, u32)>,
    reported: Option<ProgressTone>,
}

impl ProgressDetector {
    /// A detector for `region`'s tones at `sample_rate`.
    pub fn new(region: ToneRegion, sample_rate: u32) -> ProgressDetector {
        let cad = |t| {
            let (on, off) = plan(region, t).on_off.unwrap_or_default();
            (on.as_millis() as u32, off.as_millis() as u32)
        };
        let sets = [
            plan(region, ProgressTone::Busy).frequencies,
            plan(region, ProgressTone::Ringback).frequencies,
            plan(region, ProgressTone::Dial).frequencies,
        ];
        let canon = sets.map(|set| sets.iter().position(|s| *s == set).unwrap_or(0));
        let rate = f64::from(sample_rate);
        let bins = sets.map(|set| set.iter().map(|&f| Bin::new(f, rate)).collect());
        let ringback_on = cad(ProgressTone::Ringback).0;
        let dial_ms = if canon[2] == canon[1] {
            (ringback_on + (ringback_on / 5).max(60) + 100).div_ceil(BLOCK_MS) * BLOCK_MS
        } else {
            1000
        };
        ProgressDetector {
            block: (sample_rate * BLOCK_MS / 1000) as usize,
            buf: Vec::new(),
            bins,
            canon,
            busy: cad(ProgressTone::Busy),
            congestion: cad(ProgressTone::Congestion),
            ringback_on,
            dial_ms,
            on: None,
            run_ms: 0,
            segments: Vec::new(),
            reported: None,
        }
    }

    /// Starts over.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.on = None;
        self.run_ms = 0;
        self.segments.clear();
        self.reported = None;
    }

    /// Which frequency set a block carries, if any.
    fn classify(&self, x: &[f64]) -> Option<usize> {
        let total = energy(x);
        let floor = (32767.0 * 10f64.powf(FLOOR_DBFS / 20.0)).powi(2) / 2.0 * x.len() as f64;
        if total < floor {
            return None;
        }
        let mut best = None;
        let mut best_share = TONE_SHARE;
        for (i, bins) in self.bins.iter().enumerate() {
            if self.canon[i] != i {
                continue;
            }
            let (mut sum, mut each) = (0.0, true);
            for b in bins {
                let p = b.power(x);
                // Each frequency of a pair must be there, not just one.
                each &= p >= 0.15 * total;
                sum += p;
            }
            if !each {
                continue;
            }
            let share = sum / total;
            if share > best_share {
                best_share = share;
                best = Some(i);
            }
        }
        best
    }

    /// Feeds samples; a tone once its cadence is confirmed.
    pub fn process(&mut self, samples: &[i16]) -> Option<ProgressTone> {
        let mut found = None;
        for &s in samples {
            self.buf.push(f64::from(s));
            if self.buf.len() == self.block {
                let class = self.classify(&self.buf);
                self.buf.clear();
                if let Some(t) = self.block_done(class) {
                    found = Some(t);
                }
            }
        }
        found
    }

    fn report(&mut self, t: ProgressTone) -> Option<ProgressTone> {
        if self.reported == Some(t) {
            return None;
        }
        self.reported = Some(t);
        Some(t)
    }

    fn block_done(&mut self, class: Option<usize>) -> Option<ProgressTone> {
        if class != self.on {
            self.segments.push((self.on, self.run_ms));
            if self.segments.len() > 8 {
                self.segments.remove(0);
            }
            self.on = class;
            self.run_ms = 0;
            if let Some(t) = self.segment_ended() {
                return Some(t);
            }
        }
        self.run_ms += BLOCK_MS;
        self.ongoing()
    }

    /// Checks after a segment ended (the last of `segments`).
    fn segment_ended(&mut self) -> Option<ProgressTone> {
        let n = self.segments.len();
        let &(last, _) = self.segments.last()?;
        // Busy and congestion: the last 2·CYCLES segments alternate tone
        // (the busy set) and silence with that cadence, ending with a
        // silence (checked when the next burst starts) or a burst.
        if n >= 2 * CYCLES {
            let tail = &self.segments[n - 2 * CYCLES..];
            for (tone, (on, off)) in [
                (ProgressTone::Busy, self.busy),
                (ProgressTone::Congestion, self.congestion),
            ] {
                let fits = tail.iter().all(|&(c, ms)| match c {
                    Some(0) => near(ms, on),
                    None => near(ms, off),
                    _ => false,
                });
                let alternates = tail
                    .windows(2)
                    .all(|w| w[0].0.is_some() != w[1].0.is_some());
                if fits && alternates {
                    return self.report(tone);
                }
            }
        }
        // Something that is no known cadence: forget what was reported.
        if last.is_some() && self.reported == Some(ProgressTone::Dial) {
            self.reported = None;
        }
        None
    }

    /// Checks on the segment in progress.
    fn ongoing(&mut self) -> Option<ProgressTone> {
        match self.on {
            None => {
                // Ringback: a burst of its length, then a second of silence.
                if self.run_ms == 1000
                    && let Some(&(Some(c), ms)) = self.segments.last()
                    && c == self.canon[1]
                    && near(ms, self.ringback_on)
                {
                    return self.report(ProgressTone::Ringback);
                }
                // Longer than any plan's silence: the tone has stopped.
                if self.run_ms >= 5000 {
                    self.reported = None;
                }
                None
            }
            Some(c) => {
                if self.run_ms == self.dial_ms && c == self.canon[2] {
                    // In China dial, ringback and busy are the same tone:
                    // a second unbroken is dial tone only if it goes on.
                    return self.report(ProgressTone::Dial);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tones::ProgressToneGen;

    fn detect(region: ToneRegion, tone: ProgressTone, secs: usize) -> Vec<(usize, ProgressTone)> {
        let mut g = ProgressToneGen::new(region, tone, 8000);
        let mut d = ProgressDetector::new(region, 8000);
        let mut out = Vec::new();
        let mut frame = [0i16; 160];
        for i in 0..secs * 50 {
            g.fill(&mut frame);
            if let Some(t) = d.process(&frame) {
                out.push((i * 20, t));
            }
        }
        out
    }

    #[test]
    fn each_plan_tone_is_recognised_once() {
        for region in [ToneRegion::China, ToneRegion::NorthAmerica] {
            for tone in [
                ProgressTone::Busy,
                ProgressTone::Congestion,
                ProgressTone::Ringback,
            ] {
                let got = detect(region, tone, 8);
                assert_eq!(got.len(), 1, "{region:?} {tone:?}: {got:?}");
                assert_eq!(got[0].1, tone, "{region:?} {tone:?}: {got:?}");
            }
            let got = detect(region, ProgressTone::Dial, 5);
            assert_eq!(
                got.iter().map(|g| g.1).collect::<Vec<_>>(),
                [ProgressTone::Dial]
            );
        }
    }

    #[test]
    fn silence_and_tolerance() {
        let mut d = ProgressDetector::new(ToneRegion::China, 8000);
        assert_eq!(d.process(&[0; 8000]), None);
        assert!(near(420, 350) && !near(430, 350));
        assert!(near(560, 700) && !near(550, 700));
    }
}
