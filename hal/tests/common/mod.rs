//! Helpers shared by the HAL's integration tests: deterministic noise and
//! speech from espeak-ng (scripts/test-all installs espeak-ng and sox).

#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::Command;

use callbox_hal::{LineInfo, LineKind};

/// A small deterministic generator (xorshift) for noise.
pub struct Noise(pub u64);

impl Noise {
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Gaussian by Box-Muller.
    pub fn gauss(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `text` spoken by espeak-ng's `voice`, as 8 kHz 16-bit samples (through
/// sox), made in `dir`.
pub fn speech(dir: &Path, text: &str, voice: &str) -> Vec<i16> {
    let wav = dir.join("speech.wav");
    let raw = dir.join("speech.raw");
    let st = Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("this test needs espeak-ng (scripts/test-all installs it)");
    assert!(st.success());
    let st = Command::new("sox")
        .arg(&wav)
        .args([
            "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", "-t", "raw",
        ])
        .arg(&raw)
        .status()
        .expect("this test needs sox");
    assert!(st.success());
    std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The analog tests' site: trunk `pstn-1` (an FXO port) and station
/// `desk-1` (an FXS port).
pub fn two_lines() -> Vec<LineInfo> {
    vec![
        LineInfo {
            id: "pstn-1".into(),
            kind: LineKind::Trunk,
        },
        LineInfo {
            id: "desk-1".into(),
            kind: LineKind::Station,
        },
    ]
}
