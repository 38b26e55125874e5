//! Call-progress tones: dial tone, ringback, busy and congestion.
//!
//! The box plays these to callers on its own (an analog station that goes
//! off hook, a queued caller, a trunk call that cannot be placed), so they
//! must be the ones people of the site's country recognise. The site config
//! picks the plan with `tones = "china"` or `tones = "north_america"`.
//!
//! | | North America (precise tone plan) | China (GB 3380) |
//! |---|---|---|
//! | dial | 350+440 Hz, continuous, −13 dBm0 | 450 Hz, continuous, −10 dBm0 |
//! | ringback | 440+480 Hz, 2 s on 4 s off, −19 dBm0 | 450 Hz, 1 s on 4 s off, −10 dBm0 |
//! | busy | 480+620 Hz, 0.5 s on 0.5 s off, −24 dBm0 | 450 Hz, 0.35 s on 0.35 s off, −10 dBm0 |
//! | congestion | 480+620 Hz, 0.25 s on 0.25 s off, −24 dBm0 | 450 Hz, 0.7 s on 0.7 s off, −10 dBm0 |
//! | stutter dial (message waiting) | 350+440 Hz, 0.1 s on 0.1 s off, −13 dBm0 | 450 Hz, 0.4 s on 0.04 s off, −10 dBm0 |
//!
//! Frequencies and cadences were checked against published descriptions of
//! both plans and against the country tables in Asterisk's
//! `indications.conf` (`us`, `cn`). Levels are each plan's nominal send level
//! per frequency component, not one level for all: the precise tone plan's
//! own, and GB 3380's −10 ± 3 dBm0 for every 450 Hz tone. [`DBM0_TO_DBFS`]
//! converts them for the 16-bit samples (−13 dBm0 is about −16 dBFS).
//!
//! [`ProgressToneGen`] turns a plan into samples. Each burst starts at zero
//! phase, so every burst is the same waveform and begins at a zero crossing;
//! the output does not depend on how the caller slices it into frames.

use std::time::Duration;

use serde::Deserialize;

use super::dtmf::ToneGen;

/// Add to a level in dBm0 to get dBFS (relative to a full-scale sine): G.711
/// puts the full-scale sine (the theoretical load capacity) at +3.14 dBm0 for
/// A-law; µ-law's +3.17 dBm0 differs by far less than any plan's tolerance.
#[expect(clippy::approx_constant, reason = "G.711's 3.14 dB, not π")]
pub const DBM0_TO_DBFS: f64 = -3.14;

/// Whose call-progress tones to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToneRegion {
    /// GB 3380: one 450 Hz tone for all; the cadence tells them apart.
    China,
    /// The precise tone plan of the North American network (USA, Canada).
    NorthAmerica,
}

/// A call-progress signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgressTone {
    /// Ready for digits.
    Dial,
    /// Ready for digits, and a voicemail message waits (the "special" or
    /// stutter dial tone that analog phones without a lamp rely on).
    StutterDial,
    /// The far end is ringing.
    Ringback,
    /// The called party is busy.
    Busy,
    /// No route or no circuit: try again later ("fast busy", "reorder").
    Congestion,
}

/// What a tone sounds like: its frequencies, level and on/off pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneCadence {
    /// One or two frequencies, in Hz, played together.
    pub frequencies: &'static [f64],
    /// Level of each frequency component, dBm0.
    pub level_dbm0: f64,
    /// Tone on, then silence; `None` for a continuous tone.
    pub on_off: Option<(Duration, Duration)>,
}

/// The tone plan of `region` for `tone`.
pub fn plan(region: ToneRegion, tone: ProgressTone) -> ToneCadence {
    use ProgressTone::*;
    let ms = Duration::from_millis;
    let (frequencies, level_dbm0, on_off): (&'static [f64], f64, _) = match (region, tone) {
        (ToneRegion::NorthAmerica, Dial) => (&[350.0, 440.0], -13.0, None),
        (ToneRegion::NorthAmerica, Ringback) => (&[440.0, 480.0], -19.0, Some((2000, 4000))),
        (ToneRegion::NorthAmerica, Busy) => (&[480.0, 620.0], -24.0, Some((500, 500))),
        (ToneRegion::NorthAmerica, Congestion) => (&[480.0, 620.0], -24.0, Some((250, 250))),
        (ToneRegion::NorthAmerica, StutterDial) => (&[350.0, 440.0], -13.0, Some((100, 100))),
        (ToneRegion::China, Dial) => (&[450.0], -10.0, None),
        (ToneRegion::China, Ringback) => (&[450.0], -10.0, Some((1000, 4000))),
        (ToneRegion::China, Busy) => (&[450.0], -10.0, Some((350, 350))),
        (ToneRegion::China, Congestion) => (&[450.0], -10.0, Some((700, 700))),
        (ToneRegion::China, StutterDial) => (&[450.0], -10.0, Some((400, 40))),
    };
    ToneCadence {
        frequencies,
        level_dbm0,
        on_off: on_off.map(|(on, off)| (ms(on), ms(off))),
    }
}

/// Plays a [`ToneCadence`] as 16-bit samples, frame after frame.
#[derive(Debug, Clone)]
pub struct ProgressToneGen {
    cadence: ToneCadence,
    /// The oscillator at zero phase, copied at the start of every burst.
    start: ToneGen,
    tone: ToneGen,
    /// Samples of tone and of a whole period; `None` when continuous.
    on_period: Option<(u64, u64)>,
    /// Position within the period, in samples.
    pos: u64,
}

impl ProgressToneGen {
    /// A generator for `tone` as `region` plays it, at `sample_rate` Hz.
    pub fn new(region: ToneRegion, tone: ProgressTone, sample_rate: u32) -> ProgressToneGen {
        ProgressToneGen::from_cadence(plan(region, tone), sample_rate)
    }

    /// A generator for any cadence (one or two frequencies).
    ///
    /// On and off times are rounded to whole samples.
    ///
    /// # Panics
    ///
    /// If `sample_rate` is 0, or `cadence` has no or more than two
    /// frequencies.
    pub fn from_cadence(cadence: ToneCadence, sample_rate: u32) -> ProgressToneGen {
        assert!(sample_rate > 0, "sample rate must be positive");
        let dbfs = cadence.level_dbm0 + DBM0_TO_DBFS;
        let start = match *cadence.frequencies {
            [f] => ToneGen::dual(f, f, sample_rate, dbfs, f64::NEG_INFINITY),
            [lo, hi] => ToneGen::dual(lo, hi, sample_rate, dbfs, dbfs),
            ref other => panic!("a call-progress tone has 1 or 2 frequencies, not {other:?}"),
        };
        let samples = |d: Duration| {
            let n = d.as_nanos() * u128::from(sample_rate);
            u64::try_from((n + 500_000_000) / 1_000_000_000).unwrap_or(u64::MAX)
        };
        let on_period = cadence.on_off.and_then(|(on, off)| {
            let (on, off) = (samples(on), samples(off));
            // No silence (or no tone) is a continuous tone (or silence).
            (off > 0).then_some((on, on.saturating_add(off)))
        });
        ProgressToneGen {
            cadence,
            tone: start.clone(),
            start,
            on_period,
            pos: 0,
        }
    }

    /// The cadence this generator plays.
    pub fn cadence(&self) -> &ToneCadence {
        &self.cadence
    }

    /// Whether the next sample [`fill`](Self::fill) writes is part of a burst.
    pub fn is_on(&self) -> bool {
        self.on_period.is_none_or(|(on, _)| self.pos < on)
    }

    /// Starts the cadence again from the beginning of a burst.
    pub fn restart(&mut self) {
        self.pos = 0;
        self.tone = self.start.clone();
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, mut out: &mut [i16]) {
        let Some((on, period)) = self.on_period else {
            self.tone.fill(out);
            return;
        };
        while !out.is_empty() {
            let left = out.len() as u64;
            let n = if self.pos < on {
                if self.pos == 0 {
                    self.tone = self.start.clone();
                }
                let n = left.min(on - self.pos) as usize;
                self.tone.fill(&mut out[..n]);
                n
            } else {
                let n = left.min(period - self.pos) as usize;
                out[..n].fill(0);
                n
            };
            self.pos = (self.pos + n as u64) % period;
            out = &mut out[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    const RATE: u32 = 8000;
    const REGIONS: [ToneRegion; 2] = [ToneRegion::China, ToneRegion::NorthAmerica];
    const TONES: [ProgressTone; 5] = [
        ProgressTone::Dial,
        ProgressTone::Ringback,
        ProgressTone::Busy,
        ProgressTone::Congestion,
        ProgressTone::StutterDial,
    ];

    /// (on, off) in samples at 8 kHz, straight from the plans in the docs.
    fn expected_cadence(region: ToneRegion, tone: ProgressTone) -> Option<(usize, usize)> {
        use ProgressTone::*;
        match (region, tone) {
            (_, Dial) => None,
            (ToneRegion::NorthAmerica, Ringback) => Some((16000, 32000)),
            (ToneRegion::NorthAmerica, Busy) => Some((4000, 4000)),
            (ToneRegion::NorthAmerica, Congestion) => Some((2000, 2000)),
            (ToneRegion::China, Ringback) => Some((8000, 32000)),
            (ToneRegion::China, Busy) => Some((2800, 2800)),
            (ToneRegion::China, Congestion) => Some((5600, 5600)),
            (ToneRegion::NorthAmerica, StutterDial) => Some((800, 800)),
            (ToneRegion::China, StutterDial) => Some((3200, 320)),
        }
    }

    fn render(region: ToneRegion, tone: ProgressTone, len: usize) -> Vec<i16> {
        let mut g = ProgressToneGen::new(region, tone, RATE);
        let mut out = vec![0i16; len];
        g.fill(&mut out);
        out
    }

    /// Amplitude of `f` in `x`, Hann-windowed so neighbours 30 Hz away do not
    /// leak into each other over short bursts.
    fn amplitude_at(x: &[i16], f: f64) -> f64 {
        let n = x.len() as f64;
        let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let w = 0.5 - 0.5 * (TAU * i as f64 / n).cos();
            let ph = TAU * f * i as f64 / f64::from(RATE);
            re += w * f64::from(s) * ph.cos();
            im += w * f64::from(s) * ph.sin();
            wsum += w;
        }
        2.0 * (re * re + im * im).sqrt() / wsum
    }

    #[test]
    fn plans_match_the_published_tables() {
        use ProgressTone::*;
        let na = |t| plan(ToneRegion::NorthAmerica, t);
        let cn = |t| plan(ToneRegion::China, t);
        assert_eq!(na(Dial).frequencies, &[350.0, 440.0]);
        assert_eq!(na(Ringback).frequencies, &[440.0, 480.0]);
        assert_eq!(na(Busy).frequencies, &[480.0, 620.0]);
        assert_eq!(na(Congestion).frequencies, &[480.0, 620.0]);
        for t in TONES {
            assert_eq!(cn(t).frequencies, &[450.0]);
            assert_eq!(cn(t).level_dbm0, -10.0);
            let d = |(on, off): (usize, usize)| {
                (
                    Duration::from_millis(on as u64 / 8),
                    Duration::from_millis(off as u64 / 8),
                )
            };
            for r in REGIONS {
                assert_eq!(
                    plan(r, t).on_off,
                    expected_cadence(r, t).map(d),
                    "{r:?} {t:?}"
                );
            }
        }
        assert_eq!(
            [Dial, Ringback, Busy, Congestion].map(|t| na(t).level_dbm0),
            [-13.0, -19.0, -24.0, -24.0]
        );
    }

    #[test]
    fn cadence_is_sample_exact_over_several_cycles() {
        for region in REGIONS {
            for tone in TONES {
                let Some((on, off)) = expected_cadence(region, tone) else {
                    let x = render(region, tone, 3 * RATE as usize);
                    // Continuous: never two zero samples in a row.
                    assert!(!x.windows(2).any(|w| w == [0, 0]), "{region:?} {tone:?}");
                    continue;
                };
                let period = on + off;
                // Odd frame sizes, so burst edges fall inside frames.
                let mut g = ProgressToneGen::new(region, tone, RATE);
                let mut x = vec![0i16; 3 * period + 123];
                for chunk in x.chunks_mut(97) {
                    g.fill(chunk);
                }
                let cad = plan(region, tone);
                let amp: Vec<f64> = cad
                    .frequencies
                    .iter()
                    .map(|_| 32767.0 * 10f64.powf((cad.level_dbm0 + DBM0_TO_DBFS) / 20.0))
                    .collect();
                for (n, &s) in x.iter().enumerate() {
                    let k = n % period;
                    let want = if k < on {
                        // Each burst: the plan's sines from zero phase.
                        cad.frequencies
                            .iter()
                            .zip(&amp)
                            .map(|(f, a)| a * (TAU * f * k as f64 / f64::from(RATE)).sin())
                            .sum::<f64>()
                    } else {
                        0.0
                    };
                    if k < on {
                        assert!(
                            (f64::from(s) - want).abs() <= 1.0,
                            "{region:?} {tone:?} sample {n}: {s} vs {want}"
                        );
                    } else {
                        assert_eq!(s, 0, "{region:?} {tone:?} sample {n} must be silent");
                    }
                }
                // And the bursts carry energy right up to their edges.
                for c in 0..3 {
                    let burst = &x[c * period..c * period + on];
                    let peak = |s: &[i16]| s.iter().map(|v| v.unsigned_abs()).max().unwrap();
                    assert!(peak(&burst[..40]) > 1000 && peak(&burst[on - 40..]) > 1000);
                }
            }
        }
    }

    #[test]
    fn each_tone_has_its_frequencies_at_its_level_and_nothing_else() {
        let all = [350.0, 440.0, 450.0, 480.0, 620.0];
        for region in REGIONS {
            for tone in TONES {
                let cad = plan(region, tone);
                let on = expected_cadence(region, tone).map_or(RATE as usize, |(on, _)| on);
                let burst = render(region, tone, on);
                let want = 32767.0 * 10f64.powf((cad.level_dbm0 + DBM0_TO_DBFS) / 20.0);
                for f in all {
                    let a = amplitude_at(&burst, f);
                    if cad.frequencies.contains(&f) {
                        assert!(
                            (a / want - 1.0).abs() < 0.02,
                            "{region:?} {tone:?} {f}: {a}"
                        );
                    } else if cad
                        .frequencies
                        .iter()
                        .all(|g| (g - f).abs() > 1.5 * f64::from(RATE) / on as f64)
                    {
                        // (A 100 ms burst cannot tell 440 Hz from 450 Hz.)
                        assert!(a < want * 0.02, "{region:?} {tone:?} {f}: {a}");
                    }
                }
            }
        }
    }

    #[test]
    fn china_dial_tone_crosses_zero_900_times_a_second() {
        let x = render(ToneRegion::China, ProgressTone::Dial, RATE as usize + 1);
        let crossings = x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((899..=901).contains(&crossings), "{crossings}");
    }

    #[test]
    fn output_does_not_depend_on_frame_sizes() {
        for region in REGIONS {
            for tone in TONES {
                let whole = render(region, tone, 20 * RATE as usize);
                let mut g = ProgressToneGen::new(region, tone, RATE);
                let mut parts = vec![0i16; whole.len()];
                let mut rest = &mut parts[..];
                for size in [1, 7, 160, 333, 13, 4001, 2, 159].iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let n = (*size).min(rest.len());
                    let (frame, tail) = rest.split_at_mut(n);
                    g.fill(frame);
                    rest = tail;
                }
                assert_eq!(whole, parts, "{region:?} {tone:?}");
            }
        }
    }

    #[test]
    fn is_on_and_restart_follow_the_cadence() {
        let mut g = ProgressToneGen::new(ToneRegion::NorthAmerica, ProgressTone::Busy, RATE);
        let mut buf = vec![0i16; 3999];
        assert!(g.is_on());
        g.fill(&mut buf);
        assert!(g.is_on());
        g.fill(&mut [0i16; 1]);
        assert!(!g.is_on());
        g.restart();
        assert!(g.is_on());
        let mut again = vec![0i16; 3999];
        g.fill(&mut again);
        assert_eq!(buf[..100], again[..100]);
        let dial = ProgressToneGen::new(ToneRegion::China, ProgressTone::Dial, RATE);
        assert!(dial.is_on());
        assert_eq!(dial.cadence().on_off, None);
    }

    #[test]
    fn region_names_in_the_site_config() {
        #[derive(Deserialize)]
        struct Site {
            tones: ToneRegion,
        }
        let parse = |s: &str| toml::from_str::<Site>(s).map(|s| s.tones);
        assert_eq!(parse(r#"tones = "china""#).unwrap(), ToneRegion::China);
        assert_eq!(
            parse(r#"tones = "north_america""#).unwrap(),
            ToneRegion::NorthAmerica
        );
        let e = parse(r#"tones = "NorthAmerica""#).unwrap_err().to_string();
        assert!(e.contains("china") && e.contains("north_america"), "{e}");
    }
}
