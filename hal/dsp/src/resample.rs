//! Integer-ratio resampling between a codec's native rate and the box's
//! 8 kHz.
//!
//! Line-interface codecs run at 8 kHz, or at 16 or 48 kHz when they are
//! general-purpose audio codecs. Both ratios are whole numbers (2 and 6), so
//! a polyphase FIR does: a windowed-sinc low-pass at 3.6 kHz (the telephone
//! band ends at 3.4 kHz) keeps what is above 4 kHz from folding into the
//! band on the way down, and removes the images of zero-stuffing on the way
//! up. 24 taps per phase (Blackman window) give more than 60 dB of stop-band
//! rejection.

use std::f64::consts::PI;

/// Taps per polyphase branch.
const TAPS_PER_PHASE: usize = 24;

fn lowpass(factor: usize) -> Vec<f32> {
    let n = TAPS_PER_PHASE * factor;
    // Cut-off 3.6 kHz at the high rate, as a fraction of it.
    let fc = 3600.0 / (8000.0 * factor as f64);
    let mid = (n - 1) as f64 / 2.0;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * x).sin() / (PI * x)
            };
            let w = 0.42 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos()
                + 0.08 * (4.0 * PI * i as f64 / (n - 1) as f64).cos();
            sinc * w
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for v in &mut h {
        *v /= sum;
    }
    h.into_iter().map(|v| v as f32).collect()
}

fn clamp(v: f32) -> i16 {
    v.round().clamp(-32768.0, 32767.0) as i16
}

/// From `factor` × 8 kHz down to 8 kHz.
#[derive(Debug, Clone)]
pub struct Decimator {
    factor: usize,
    /// The filter, last tap first (as it meets the samples, oldest first).
    taps_rev: Vec<f32>,
    /// The last `taps_rev.len()` input samples, oldest first; a call's
    /// input is appended while it is processed.
    history: Vec<f32>,
}

impl Decimator {
    /// A decimator by `factor` (1 passes samples through).
    pub fn new(factor: usize) -> Decimator {
        assert!(factor >= 1, "factor must be at least 1");
        let taps = if factor == 1 {
            vec![1.0]
        } else {
            lowpass(factor)
        };
        Decimator {
            factor,
            history: vec![0.0; taps.len()],
            taps_rev: taps.into_iter().rev().collect(),
        }
    }

    /// Turns `input` (a multiple of `factor` samples) into `out`
    /// (`input.len() / factor` samples).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        debug_assert_eq!(input.len(), out.len() * self.factor);
        if self.factor == 1 {
            out.copy_from_slice(input);
            return;
        }
        let n = self.taps_rev.len();
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        for (j, o) in out.iter_mut().enumerate() {
            // The n samples ending with this output's last input sample.
            let start = (j + 1) * self.factor;
            let acc: f32 = self.history[start..start + n]
                .iter()
                .zip(&self.taps_rev)
                .map(|(x, h)| x * h)
                .sum();
            *o = clamp(acc);
        }
        // One move per call, not one per output sample.
        self.history.drain(..input.len());
    }
}

/// From 8 kHz up to `factor` × 8 kHz.
#[derive(Debug, Clone)]
pub struct Interpolator {
    factor: usize,
    /// Per output phase, its taps (every `factor`-th of the prototype).
    phases: Vec<Vec<f32>>,
    /// The last input samples, oldest first; a call's input is appended
    /// while it is processed.
    history: Vec<f32>,
}

impl Interpolator {
    /// An interpolator by `factor` (1 passes samples through).
    pub fn new(factor: usize) -> Interpolator {
        assert!(factor >= 1, "factor must be at least 1");
        let proto = if factor == 1 {
            vec![1.0]
        } else {
            lowpass(factor)
        };
        // Zero-stuffing divides the level by `factor`; the filter gives it
        // back.
        let phases: Vec<Vec<f32>> = (0..factor)
            .map(|p| {
                proto
                    .iter()
                    .skip(p)
                    .step_by(factor)
                    .map(|h| h * factor as f32)
                    .collect()
            })
            .collect();
        let len = phases.iter().map(Vec::len).max().unwrap_or(1);
        Interpolator {
            factor,
            phases,
            history: vec![0.0; len],
        }
    }

    /// Turns `input` into `out` (`input.len() * factor` samples).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        debug_assert_eq!(out.len(), input.len() * self.factor);
        if self.factor == 1 {
            out.copy_from_slice(input);
            return;
        }
        let len = self.history.len();
        self.history.extend(input.iter().map(|&s| f32::from(s)));
        for (j, o) in out.chunks_exact_mut(self.factor).enumerate() {
            // The len samples ending with input sample j, newest first.
            let window = &self.history[j + 1..j + 1 + len];
            for (taps, slot) in self.phases.iter().zip(o.iter_mut()) {
                let acc: f32 = taps
                    .iter()
                    .zip(window.iter().rev())
                    .map(|(h, x)| h * x)
                    .sum();
                *slot = clamp(acc);
            }
        }
        self.history.drain(..input.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * hz * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn decimation_keeps_the_band_and_rejects_what_would_fold() {
        for factor in [2usize, 6] {
            let rate = 8000.0 * factor as f64;
            let mut d = Decimator::new(factor);
            let mut out = vec![0; 8000];
            d.process(&tone(1000.0, rate, 8000 * factor, 10000.0), &mut out);
            let kept = rms(&out[1000..]) / (10000.0 / 2f64.sqrt());
            assert!(
                (kept - 1.0).abs() < 0.03,
                "factor {factor}: 1 kHz kept {kept}"
            );
            let mut d = Decimator::new(factor);
            // 5 kHz would fold onto 3 kHz.
            d.process(&tone(5000.0, rate, 8000 * factor, 10000.0), &mut out);
            let leak = 20.0 * (rms(&out[1000..]) / (10000.0 / 2f64.sqrt())).log10();
            assert!(leak < -50.0, "factor {factor}: 5 kHz leaks at {leak:.1} dB");
        }
    }

    #[test]
    fn interpolation_keeps_the_band_and_removes_images() {
        for factor in [2usize, 6] {
            let mut up = Interpolator::new(factor);
            let input = tone(1000.0, 8000.0, 8000, 10000.0);
            let mut out = vec![0; 8000 * factor];
            up.process(&input, &mut out);
            let gain = rms(&out[1000 * factor..]) / rms(&input[1000..]);
            assert!((gain - 1.0).abs() < 0.03, "factor {factor}: gain {gain}");
            // Back down: the same tone, delayed.
            let mut down = Decimator::new(factor);
            let mut back = vec![0; 8000];
            down.process(&out, &mut back);
            assert!((rms(&back[2000..]) / rms(&input[2000..]) - 1.0).abs() < 0.05);
            // The image at 7 kHz (8 - 1) is gone: correlate with it.
            let rate = 8000.0 * factor as f64;
            let (mut re, mut im) = (0.0, 0.0);
            for (i, &s) in out.iter().enumerate().skip(1000 * factor) {
                let ph = 2.0 * PI * 7000.0 * i as f64 / rate;
                re += f64::from(s) * ph.cos();
                im += f64::from(s) * ph.sin();
            }
            let n = (out.len() - 1000 * factor) as f64;
            let amp = 2.0 * (re * re + im * im).sqrt() / n;
            assert!(
                20.0 * (amp / 10000.0).log10() < -50.0,
                "factor {factor}: image at {amp}"
            );
        }
    }

    #[test]
    fn factor_one_passes_through() {
        let x = tone(440.0, 8000.0, 160, 5000.0);
        let mut y = vec![0; 160];
        Decimator::new(1).process(&x, &mut y);
        assert_eq!(x, y);
        Interpolator::new(1).process(&x, &mut y);
        assert_eq!(x, y);
    }
}
