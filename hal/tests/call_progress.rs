//! Call-progress detection as a trunk hears it: both tone plans' tones in
//! noise, at line levels, off frequency and with jittered cadences; busy
//! tone after speech; and a minute of speech that must give no tone.

use callbox_hal::dsp::call_progress::ProgressDetector;
use callbox_hal::dsp::dtmf::ToneGen;
use callbox_hal::dsp::tones::{DBM0_TO_DBFS, ProgressTone, ToneRegion, plan};

mod common;
use common::{Noise, speech};

/// `secs` of `tone`'s cadence with every on/off time jittered by up to
/// `jitter_ms`, its frequencies scaled by `1 + offset`, at `level_dbm0`
/// per component, with white noise `snr_db` below the tone.
#[allow(clippy::too_many_arguments)] // each argument is one property of the line
fn line(
    region: ToneRegion,
    tone: ProgressTone,
    secs: usize,
    level_dbm0: f64,
    offset: f64,
    jitter_ms: i64,
    snr_db: f64,
    seed: u64,
) -> Vec<i16> {
    let p = plan(region, tone);
    let dbfs = level_dbm0 + DBM0_TO_DBFS;
    let (lo, hi) = match *p.frequencies {
        [f] => (f, f64::NEG_INFINITY),
        [a, b] => (a, b),
        _ => unreachable!(),
    };
    let mut rng = Noise(seed | 1);
    let total = secs * 8000;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut jit = |ms: u128| {
            let j = (rng.uniform() * 2.0 - 1.0) * jitter_ms as f64;
            ((ms as f64 + j).max(20.0) * 8.0) as usize
        };
        let (on, off) = match p.on_off {
            Some((on, off)) => (jit(on.as_millis()), jit(off.as_millis())),
            None => (total, 0),
        };
        let mut g = if hi.is_finite() {
            ToneGen::dual(lo * (1.0 + offset), hi * (1.0 + offset), 8000, dbfs, dbfs)
        } else {
            ToneGen::dual(lo * (1.0 + offset), lo, 8000, dbfs, f64::NEG_INFINITY)
        };
        let s = out.len();
        out.resize(s + on, 0);
        g.fill(&mut out[s..]);
        out.resize(out.len() + off, 0);
    }
    out.truncate(total);
    // Noise relative to one tone component's power.
    let sine_power = (32767.0 * 10f64.powf(dbfs / 20.0)).powi(2) / 2.0;
    let sigma = (sine_power / 10f64.powf(snr_db / 10.0)).sqrt();
    for s in &mut out {
        *s = (f64::from(*s) + rng.gauss() * sigma)
            .round()
            .clamp(-32768.0, 32767.0) as i16;
    }
    out
}

fn detect(region: ToneRegion, audio: &[i16]) -> Vec<(usize, ProgressTone)> {
    let mut d = ProgressDetector::new(region, 8000);
    audio
        .chunks(160)
        .enumerate()
        .filter_map(|(i, f)| d.process(f).map(|t| (i * 20, t)))
        .collect()
}

#[test]
fn every_tone_of_both_plans_in_noise_off_frequency_and_jittered() {
    for region in [ToneRegion::China, ToneRegion::NorthAmerica] {
        for tone in [
            ProgressTone::Busy,
            ProgressTone::Congestion,
            ProgressTone::Ringback,
            ProgressTone::Dial,
        ] {
            let mut latency = Vec::new();
            for (k, &(level, offset, jitter, snr)) in [
                (plan(region, tone).level_dbm0, 0.0, 0, 40.0),
                (-35.0, 0.015, 30, 20.0),
                (-5.0, -0.015, 30, 20.0),
                (-20.0, 0.01, 20, 15.0),
            ]
            .iter()
            .enumerate()
            {
                let audio = line(region, tone, 12, level, offset, jitter, snr, 3 + k as u64);
                let got = detect(region, &audio);
                assert!(
                    !got.is_empty() && got.iter().all(|g| g.1 == tone),
                    "{region:?} {tone:?} at {level} dBm0, offset {offset}, jitter {jitter} ms, SNR {snr} dB: {got:?}"
                );
                latency.push(got[0].0);
            }
            eprintln!("{region:?} {tone:?}: recognised after {latency:?} ms");
        }
    }
}

const TEXT: &str = "Thank you for calling. Your order was shipped yesterday and will \
    arrive on Tuesday. If you would like to speak to an agent, please stay on the line. \
    Press one for orders, two for billing, three for anything else. Our opening hours \
    are nine to six, Monday to Saturday. Goodbye and have a nice day.";

#[test]
fn speech_gives_no_tone_and_busy_after_speech_is_heard_once_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut talk = Vec::new();
    for voice in ["en-us", "en-gb", "cmn", "en-us+f3"] {
        talk.extend(speech(dir.path(), TEXT, voice));
    }
    assert!(talk.len() > 8000 * 40, "{} s of speech", talk.len() / 8000);
    for region in [ToneRegion::China, ToneRegion::NorthAmerica] {
        assert_eq!(detect(region, &talk), [], "{region:?}: speech alone");
        let mut call = talk[..8000 * 3].to_vec();
        let start_ms = call.len() / 8;
        call.extend(line(region, ProgressTone::Busy, 6, -20.0, 0.0, 0, 30.0, 5));
        let got = detect(region, &call);
        assert_eq!(got.len(), 1, "{region:?}: {got:?}");
        assert_eq!(got[0].1, ProgressTone::Busy);
        assert!(got[0].0 > start_ms, "{region:?}: {got:?}");
    }
}
