//! DTMF tone generation (ITU-T Q.23 frequencies).

use std::f64::consts::TAU;

/// The row (low group) frequencies, Hz.
pub const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// The column (high group) frequencies, Hz.
pub const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// Row (low group) and column (high group) frequencies of a DTMF key, in Hz.
pub fn frequencies(digit: char) -> Option<(f64, f64)> {
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == d {
                return Some((ROWS[r], COLS[c]));
            }
        }
    }
    None
}

/// Whether `c` is a key of the DTMF keypad (`0-9 * # A-D`).
pub fn is_dtmf_digit(c: char) -> bool {
    frequencies(c).is_some()
}

/// A continuous two-tone generator. Phase carries across calls to
/// [`ToneGen::fill`], so a tone split over several frames has no clicks.
#[derive(Debug, Clone)]
pub struct ToneGen {
    step_low: f64,
    step_high: f64,
    phase_low: f64,
    phase_high: f64,
    amp_low: f64,
    amp_high: f64,
}

impl ToneGen {
    /// A generator for `digit` at `sample_rate`, each tone at `level_dbfs`
    /// (dB relative to a full-scale sine). `None` for a non-DTMF character.
    pub fn dtmf(digit: char, sample_rate: u32, level_dbfs: f64) -> Option<ToneGen> {
        let (lo, hi) = frequencies(digit)?;
        Some(ToneGen::dual(lo, hi, sample_rate, level_dbfs, level_dbfs))
    }

    /// Any two tones, each with its own level (for twist and deviation tests).
    pub fn dual(
        f_low: f64,
        f_high: f64,
        sample_rate: u32,
        low_dbfs: f64,
        high_dbfs: f64,
    ) -> ToneGen {
        let amp = |db: f64| 32767.0 * 10f64.powf(db / 20.0);
        ToneGen {
            step_low: TAU * f_low / f64::from(sample_rate),
            step_high: TAU * f_high / f64::from(sample_rate),
            phase_low: 0.0,
            phase_high: 0.0,
            amp_low: amp(low_dbfs),
            amp_high: amp(high_dbfs),
        }
    }

    /// Writes the next `out.len()` samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            let v = self.amp_low * self.phase_low.sin() + self.amp_high * self.phase_high.sin();
            *s = v.clamp(-32768.0, 32767.0) as i16;
            self.phase_low = (self.phase_low + self.step_low) % TAU;
            self.phase_high = (self.phase_high + self.step_high) % TAU;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `f` in `x` by correlation, normalised to amplitude.
    fn amplitude_at(x: &[i16], f: f64, rate: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &s) in x.iter().enumerate() {
            let w = TAU * f * n as f64 / rate;
            re += f64::from(s) * w.cos();
            im += f64::from(s) * w.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn every_key_has_its_two_frequencies_and_no_others() {
        for d in "0123456789*#ABCD".chars() {
            let (lo, hi) = frequencies(d).unwrap();
            let mut g = ToneGen::dtmf(d, 8000, -10.0).unwrap();
            let mut buf = vec![0i16; 800];
            g.fill(&mut buf);
            let want = 32767.0 * 10f64.powf(-0.5);
            assert!(
                (amplitude_at(&buf, lo, 8000.0) / want - 1.0).abs() < 0.05,
                "{d}"
            );
            assert!(
                (amplitude_at(&buf, hi, 8000.0) / want - 1.0).abs() < 0.05,
                "{d}"
            );
            for other in [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0] {
                if other != lo && other != hi {
                    assert!(
                        amplitude_at(&buf, other, 8000.0) < want * 0.05,
                        "{d} {other}"
                    );
                }
            }
        }
        assert!(ToneGen::dtmf('x', 8000, -10.0).is_none());
    }

    #[test]
    fn tone_is_continuous_across_frames() {
        let mut a = ToneGen::dtmf('5', 8000, -6.0).unwrap();
        let mut b = a.clone();
        let mut whole = vec![0i16; 320];
        a.fill(&mut whole);
        let mut parts = vec![0i16; 320];
        b.fill(&mut parts[..160]);
        b.fill(&mut parts[160..]);
        assert_eq!(whole, parts);
    }
}
