//! Single-frequency power by the Goertzel algorithm, for tests of "is this
//! tone there" over a block: call-progress detection, the echo guard's
//! DTMF presence test, the loopback measurement. (The Q.24 DTMF detector
//! has its own sliding variant, see [`super::detect`].)

use std::f64::consts::TAU;

/// One frequency bin: its Goertzel coefficient, computed once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    coeff: f64,
}

impl Bin {
    /// The bin of `hz` at `sample_rate`.
    pub fn new(hz: f64, sample_rate: f64) -> Bin {
        Bin {
            coeff: 2.0 * (TAU * hz / sample_rate).cos(),
        }
    }

    /// The power of the bin's frequency in `x`, scaled to the energy of a
    /// sine of that amplitude over the block (A² · N / 2): comparable with
    /// the block's sum of squares.
    pub fn power<T: Copy + Into<f64>>(&self, x: &[T]) -> f64 {
        let c = self.coeff;
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = v.into() + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        if x.is_empty() {
            return 0.0;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / x.len() as f64
    }

    /// The amplitude of the bin's frequency in `x`, in dB of a full-scale
    /// 16-bit sine.
    pub fn level_dbfs<T: Copy + Into<f64>>(&self, x: &[T]) -> f64 {
        if x.is_empty() {
            return f64::NEG_INFINITY;
        }
        let amp = (2.0 * self.power(x) / x.len() as f64).sqrt();
        20.0 * (amp / 32767.0).log10()
    }
}

/// A quick test for DTMF in a block: is it mostly one row tone plus one
/// column tone? Not the Q.24 detector (no timing, twist or frequency
/// checks): the analog backend's echo guard asks it of every frame the box
/// sends, and a loose test is what it wants there.
#[derive(Debug, Clone)]
pub struct DtmfPresence {
    rows: [Bin; 4],
    cols: [Bin; 4],
}

impl DtmfPresence {
    /// The test at `sample_rate`.
    pub fn new(sample_rate: f64) -> DtmfPresence {
        DtmfPresence {
            rows: super::dtmf::ROWS.map(|f| Bin::new(f, sample_rate)),
            cols: super::dtmf::COLS.map(|f| Bin::new(f, sample_rate)),
        }
    }

    /// Whether the strongest row and column tones hold more than half of
    /// `x`'s energy, with `x` louder than about −45 dBFS.
    pub fn carries_dtmf(&self, x: &[i16]) -> bool {
        let total = energy(x);
        if total < x.len() as f64 * 32768.0 * 32768.0 * 3.0e-5 {
            return false;
        }
        let best = |bins: &[Bin; 4]| bins.iter().map(|b| b.power(x)).fold(0.0, f64::max);
        best(&self.rows) + best(&self.cols) > 0.5 * total
    }
}

/// Sum of squares of a block.
pub fn energy<T: Copy + Into<f64>>(x: &[T]) -> f64 {
    x.iter()
        .map(|&v| {
            let v: f64 = v.into();
            v * v
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_has_its_energy_in_its_bin_and_its_level_back() {
        let amp = 32767.0 * 10f64.powf(-20.0 / 20.0);
        let x: Vec<i16> = (0..160)
            .map(|i| (amp * (TAU * 1000.0 * f64::from(i) / 8000.0).sin()) as i16)
            .collect();
        let bin = Bin::new(1000.0, 8000.0);
        assert!((bin.power(&x) / energy(&x) - 1.0).abs() < 0.01);
        assert!((bin.level_dbfs(&x) + 20.0).abs() < 0.05);
        assert!(Bin::new(1500.0, 8000.0).power(&x) < 0.01 * energy(&x));
        assert_eq!(bin.level_dbfs::<i16>(&[]), f64::NEG_INFINITY);
    }

    #[test]
    fn dtmf_presence_sees_a_key_and_not_a_single_tone() {
        let p = DtmfPresence::new(8000.0);
        let mut x = [0i16; 160];
        crate::dtmf::ToneGen::dtmf('5', 8000, -20.0)
            .unwrap()
            .fill(&mut x);
        assert!(p.carries_dtmf(&x));
        crate::dtmf::ToneGen::dual(600.0, 600.0, 8000, -10.0, f64::NEG_INFINITY).fill(&mut x);
        assert!(!p.carries_dtmf(&x));
        assert!(!p.carries_dtmf(&[0; 160]));
    }
}
