//! ITU-T Q.24 conformance of the DTMF detector, with generated signals.
//!
//! Every requirement the detector's module docs claim is proven here, for all
//! sixteen keys where that makes sense: duration and pause limits at every
//! alignment to the detector's 5 ms blocks and the 20 ms frames, frequency
//! deviation, twist, level range, white noise, and G.711 round trips.
//!
//! The stream is fed in 20 ms frames of 160 samples, as the audio path
//! does, unless a test says otherwise.

use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::dtmf::{ToneGen, frequencies};
use callbox_hal::dsp::g711;

const RATE: u32 = 8000;
const KEYS: &str = "123A456B789C*0#D";
/// Level of a sine at 0 dBm0 in dBFS (G.711 A-law: full scale is
/// +3.14 dBm0).
#[expect(clippy::approx_constant, reason = "G.711's 3.14 dB, not π")]
const DBM0: f64 = -3.14;
/// A typical sending level: −10 dBm0 per tone.
const NOMINAL: f64 = -10.0 + DBM0;

/// Samples in `ms` milliseconds.
fn ms(ms: usize) -> usize {
    ms * RATE as usize / 1000
}

/// A stream under construction.
#[derive(Default)]
struct Stream(Vec<i16>);

impl Stream {
    fn silence(mut self, n: usize) -> Self {
        self.0.extend(std::iter::repeat_n(0, n));
        self
    }

    fn dual(mut self, lo: f64, hi: f64, n: usize, lo_dbfs: f64, hi_dbfs: f64) -> Self {
        let mut g = ToneGen::dual(lo, hi, RATE, lo_dbfs, hi_dbfs);
        let start = self.0.len();
        self.0.resize(start + n, 0);
        g.fill(&mut self.0[start..]);
        self
    }

    fn key(self, d: char, n: usize, dbfs: f64) -> Self {
        let (lo, hi) = frequencies(d).unwrap();
        self.dual(lo, hi, n, dbfs, dbfs)
    }
}

/// Runs `samples` through a fresh detector in 20 ms frames, then 40 ms of
/// silence so that a press at the very end is complete.
fn detect(samples: &[i16]) -> Vec<char> {
    let mut det = DtmfDetector::new(RATE);
    let mut out = Vec::new();
    for frame in samples.chunks(160) {
        out.extend(det.process(frame));
    }
    for _ in 0..2 {
        out.extend(det.process(&[0; 160]));
    }
    out
}

fn string(keys: &[char]) -> String {
    keys.iter().collect()
}

#[test]
fn every_key_of_40ms_is_accepted_at_every_alignment() {
    for d in KEYS.chars() {
        // Every offset across a whole 160-sample frame, which covers every
        // position relative to the 40-sample blocks and 160-sample windows.
        for offset in 0..160 {
            let s = Stream::default()
                .silence(offset)
                .key(d, ms(40), NOMINAL)
                .silence(ms(60));
            assert_eq!(
                string(&detect(&s.0)),
                d.to_string(),
                "key {d}, offset {offset}"
            );
        }
    }
}

#[test]
fn tones_of_20ms_or_less_are_rejected_at_every_alignment() {
    for d in KEYS.chars() {
        for level in [-25.0 + DBM0, NOMINAL, -6.02] {
            for len in [ms(10), ms(15), ms(20)] {
                // Every offset across one 40-sample block is every
                // alignment the detector can tell apart; at the nominal
                // level, 20 ms tones also go across a whole frame.
                let offsets = if len == ms(20) && level == NOMINAL {
                    160
                } else {
                    40
                };
                for offset in 0..offsets {
                    let s = Stream::default()
                        .silence(offset)
                        .key(d, len, level)
                        .silence(ms(60));
                    assert_eq!(
                        detect(&s.0),
                        [],
                        "key {d}, {len} samples at {level} dBFS, offset {offset}"
                    );
                }
            }
        }
    }
}

#[test]
fn same_key_twice_after_a_40ms_pause_is_two_digits() {
    for d in KEYS.chars() {
        for offset in 0..160 {
            let s = Stream::default()
                .silence(offset)
                .key(d, ms(40), NOMINAL)
                .silence(ms(40))
                .key(d, ms(40), NOMINAL)
                .silence(ms(40));
            assert_eq!(
                string(&detect(&s.0)),
                format!("{d}{d}"),
                "key {d}, offset {offset}"
            );
        }
    }
}

#[test]
fn a_dropout_of_up_to_20ms_inside_a_press_is_bridged() {
    for d in KEYS.chars() {
        for gap in [1, 5, 10, 15, 20] {
            for offset in 0..40 {
                // One continuous tone with a hole in it, as a line dropout
                // leaves it (the phase runs on through the hole).
                let mut s = Stream::default()
                    .silence(offset)
                    .key(d, ms(60 + gap + 60), NOMINAL)
                    .silence(ms(60));
                let hole = offset + ms(60);
                s.0[hole..hole + ms(gap)].fill(0);
                assert_eq!(
                    string(&detect(&s.0)),
                    d.to_string(),
                    "key {d}, {gap} ms dropout, offset {offset}"
                );
            }
        }
    }
}

#[test]
fn a_long_press_is_one_digit_held_until_released() {
    let mut det = DtmfDetector::new(RATE);
    let mut gen_ = ToneGen::dtmf('7', RATE, NOMINAL).unwrap();
    let mut frame = [0i16; 160];
    let mut keys = Vec::new();
    for i in 0..100 {
        gen_.fill(&mut frame);
        keys.extend(det.process(&frame));
        if i >= 2 {
            assert_eq!(det.tone_present(), Some('7'), "frame {i} of a 2 s press");
        }
    }
    assert_eq!(keys, ['7']);
    keys.extend(det.process(&[0; 160]));
    keys.extend(det.process(&[0; 160]));
    assert_eq!(det.tone_present(), None, "40 ms after the tone stopped");
    assert_eq!(keys, ['7']);
}

#[test]
fn a_digit_string_is_detected_in_order() {
    let mut s = Stream::default().silence(ms(30));
    for d in KEYS.chars().chain("0123456789".chars()) {
        s = s.key(d, ms(50), NOMINAL).silence(ms(50));
    }
    assert_eq!(string(&detect(&s.0)), format!("{KEYS}0123456789"));
}

#[test]
fn frequency_deviation_of_1_5_percent_is_accepted() {
    for d in KEYS.chars() {
        let (lo, hi) = frequencies(d).unwrap();
        for dev_lo in [-0.015, 0.0, 0.015] {
            for dev_hi in [-0.015, 0.0, 0.015] {
                for offset in (0..160).step_by(13) {
                    let s = Stream::default()
                        .silence(offset)
                        .dual(
                            lo * (1.0 + dev_lo),
                            hi * (1.0 + dev_hi),
                            ms(40),
                            NOMINAL,
                            NOMINAL,
                        )
                        .silence(ms(60));
                    assert_eq!(
                        string(&detect(&s.0)),
                        d.to_string(),
                        "key {d}, row {dev_lo:+}, column {dev_hi:+}, offset {offset}"
                    );
                }
            }
        }
    }
}

#[test]
fn frequency_deviation_of_3_5_percent_is_rejected() {
    for d in KEYS.chars() {
        let (lo, hi) = frequencies(d).unwrap();
        for dev_lo in [-0.035, 0.0, 0.035] {
            for dev_hi in [-0.035, 0.0, 0.035] {
                if dev_lo == 0.0 && dev_hi == 0.0 {
                    continue;
                }
                // Long tones: the detector has every chance to be fooled.
                let s = Stream::default()
                    .silence(ms(7))
                    .dual(
                        lo * (1.0 + dev_lo),
                        hi * (1.0 + dev_hi),
                        ms(200),
                        NOMINAL,
                        NOMINAL,
                    )
                    .silence(ms(60));
                assert_eq!(
                    detect(&s.0),
                    [],
                    "key {d}, row {dev_lo:+}, column {dev_hi:+}"
                );
            }
        }
    }
}

/// A press of `d` with the high group `twist_db` above the low group
/// (negative: reverse twist), the stronger tone at `loud_dbfs`.
fn twisted(d: char, twist_db: f64, loud_dbfs: f64, n: usize, offset: usize) -> Vec<i16> {
    let (lo, hi) = frequencies(d).unwrap();
    let (lo_db, hi_db) = if twist_db >= 0.0 {
        (loud_dbfs - twist_db, loud_dbfs)
    } else {
        (loud_dbfs, loud_dbfs + twist_db)
    };
    Stream::default()
        .silence(offset)
        .dual(lo, hi, n, lo_db, hi_db)
        .silence(ms(60))
        .0
}

#[test]
fn twist_up_to_8db_reverse_and_4db_normal_is_accepted() {
    for d in KEYS.chars() {
        for twist in [-8.0, -4.0, 2.0, 4.0] {
            for offset in (0..160).step_by(13) {
                let s = twisted(d, twist, NOMINAL, ms(40), offset);
                assert_eq!(
                    string(&detect(&s)),
                    d.to_string(),
                    "key {d}, twist {twist:+} dB, offset {offset}"
                );
            }
        }
    }
}

#[test]
fn twist_of_12db_reverse_or_8db_normal_is_rejected() {
    for d in KEYS.chars() {
        for twist in [-12.0, -15.0, 8.0, 10.0] {
            let s = twisted(d, twist, NOMINAL, ms(200), 7);
            assert_eq!(detect(&s), [], "key {d}, twist {twist:+} dB");
        }
    }
}

#[test]
fn levels_from_minus_25_dbm0_to_full_scale_are_accepted() {
    // −6.02 dBFS per tone: the pair peaks exactly at full scale. −3 dBFS per
    // tone clips (ToneGen saturates), as an overdriven line would.
    for d in KEYS.chars() {
        for level in [-25.0 + DBM0, -20.0 + DBM0, NOMINAL, -6.02, -3.0] {
            for offset in (0..160).step_by(13) {
                let s = Stream::default()
                    .silence(offset)
                    .key(d, ms(40), level)
                    .silence(ms(60));
                assert_eq!(
                    string(&detect(&s.0)),
                    d.to_string(),
                    "key {d}, {level:.2} dBFS per tone, offset {offset}"
                );
            }
        }
    }
}

#[test]
fn levels_of_minus_35_dbm0_and_below_are_rejected() {
    for d in KEYS.chars() {
        for level in [-35.0 + DBM0, -45.0 + DBM0, -70.0] {
            let s = Stream::default()
                .silence(ms(7))
                .key(d, ms(200), level)
                .silence(ms(60));
            assert_eq!(detect(&s.0), [], "key {d}, {level:.2} dBFS per tone");
        }
    }
}

#[test]
fn single_tones_and_non_dtmf_pairs_are_rejected() {
    let freqs = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
    for &f in &freqs {
        let s = Stream::default()
            .dual(f, f, ms(200), NOMINAL, -200.0)
            .silence(ms(60));
        assert_eq!(detect(&s.0), [], "single {f} Hz");
    }
    // Two rows, two columns; dial, ringback and busy tones.
    let pairs = [
        (697.0, 770.0),
        (852.0, 941.0),
        (1209.0, 1336.0),
        (1477.0, 1633.0),
        (350.0, 440.0),
        (440.0, 480.0),
        (480.0, 620.0),
        (400.0, 450.0),
    ];
    for (lo, hi) in pairs {
        let s = Stream::default()
            .dual(lo, hi, ms(200), NOMINAL, NOMINAL)
            .silence(ms(60));
        assert_eq!(detect(&s.0), [], "{lo} + {hi} Hz");
    }
}

#[test]
fn harmonics_of_one_sound_are_not_a_key() {
    // Where a key's two tolerance bands (±2.5 %) hold two harmonics of one
    // periodic sound, at ratio 2/1, 3/2 or 5/3, the pair is rejected; moved
    // 1.5 % off that ratio (towards the key's nominal column), the same
    // pair is a key again, so it is the harmonic test that rejects it.
    let mut cases = 0;
    for d in KEYS.chars() {
        let (lo, hi) = frequencies(d).unwrap();
        for h in [2.0, 1.5, 5.0 / 3.0] {
            let from = (lo * 0.975).max(hi / h * 0.975);
            let to = (lo * 1.025).min(hi / h * 1.025);
            if to - from < 2.0 {
                continue;
            }
            cases += 1;
            let f_lo = (from + to) / 2.0;
            let f_hi = f_lo * h;
            let s = Stream::default()
                .dual(f_lo, f_hi, ms(200), NOMINAL, NOMINAL)
                .silence(ms(60));
            assert_eq!(
                detect(&s.0),
                [],
                "key {d}: {f_lo:.1} + {f_hi:.1} Hz (ratio {h:.3})"
            );
            let towards = if f_hi > hi { 0.985 } else { 1.015 };
            let s = Stream::default()
                .dual(f_lo, f_hi * towards, ms(200), NOMINAL, NOMINAL)
                .silence(ms(60));
            assert_eq!(
                string(&detect(&s.0)),
                d.to_string(),
                "key {d}: {f_lo:.1} + {:.1} Hz",
                f_hi * towards
            );
        }
    }
    // 2/1 for keys 2, 6 and C; 3/2 for 5, 9 and #; 5/3 for 1, 5, 9 and D.
    assert_eq!(cases, 10);
}

/// xorshift64* with Box-Muller: reproducible white Gaussian noise.
struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    fn new(seed: u64) -> Self {
        Noise {
            state: seed.max(1),
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // 53 random bits in (0, 1].
        ((x >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn gaussian(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let a = std::f64::consts::TAU * self.uniform();
        self.spare = Some(r * a.sin());
        r * a.cos()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n
    }
}

/// Adds white noise of power `power` (sample units squared) to `samples`.
fn add_noise(samples: &mut [i16], power: f64, noise: &mut Noise) {
    let sigma = power.sqrt();
    for s in samples {
        let v = f64::from(*s) + sigma * noise.gaussian();
        *s = v.round().clamp(-32768.0, 32767.0) as i16;
    }
}

/// Power of a sine at `dbfs`, in sample units squared.
fn sine_power(dbfs: f64) -> f64 {
    32767.0f64.powi(2) / 2.0 * 10f64.powf(dbfs / 10.0)
}

/// Sends `trials` random keys of `tone_ms` with random pauses of 40 to
/// 100 ms through white noise at `snr_db` below the pair's power; returns
/// (keys detected in their own slot, digits detected anywhere else).
fn noisy_trials(snr_db: f64, tone_ms: usize, trials: usize, seed: u64) -> (usize, usize) {
    let mut rng = Noise::new(seed);
    let keys: Vec<char> = KEYS.chars().collect();
    let mut s = Stream::default().silence(ms(50));
    let mut slots = Vec::new();
    for _ in 0..trials {
        let d = keys[rng.below(16)];
        let start = s.0.len();
        s = s.key(d, ms(tone_ms), NOMINAL);
        slots.push((d, start, s.0.len()));
        s = s.silence(ms(40) + rng.below(ms(60)));
    }
    s = s.silence(ms(100));
    let noise_power = 2.0 * sine_power(NOMINAL) / 10f64.powf(snr_db / 10.0);
    add_noise(&mut s.0, noise_power, &mut rng);

    let mut det = DtmfDetector::new(RATE);
    let mut found = vec![false; slots.len()];
    let mut false_digits = 0;
    for (f, frame) in s.0.chunks(160).enumerate() {
        let Some(d) = det.process(frame) else {
            continue;
        };
        let at = f * 160 + frame.len();
        // Key-down is reported within 40 ms of the tone's end.
        let slot = slots
            .iter()
            .position(|&(_, start, end)| at > start && at <= end + ms(40));
        match slot {
            Some(i) if slots[i].0 == d && !found[i] => found[i] = true,
            _ => false_digits += 1,
        }
    }
    (found.iter().filter(|&&x| x).count(), false_digits)
}

#[test]
fn every_40ms_key_is_detected_at_15db_snr() {
    let trials = 1600;
    let (hits, false_digits) = noisy_trials(15.0, 40, trials, 0x5eed_0001);
    println!("15 dB SNR, 40 ms: {hits}/{trials} detected, {false_digits} false");
    assert_eq!(hits, trials, "detection rate at 15 dB SNR");
    assert_eq!(false_digits, 0);
}

#[test]
fn detection_rate_falls_gracefully_below_15db_snr() {
    // Not a Q.24 limit: shows the margin, and that noise never turns into
    // wrong or extra digits.
    for snr in [12.0, 10.0, 6.0] {
        let trials = 400;
        let (hits, false_digits) = noisy_trials(snr, 40, trials, 0x5eed_0002);
        println!("{snr} dB SNR, 40 ms: {hits}/{trials} detected, {false_digits} false");
        assert_eq!(false_digits, 0, "{snr} dB");
    }
    let (hits, _) = noisy_trials(12.0, 40, 400, 0x5eed_0003);
    assert!(hits >= 396, "12 dB SNR: {hits}/400");
}

#[test]
fn white_noise_alone_gives_no_digits() {
    let mut rng = Noise::new(0x5eed_0004);
    for dbfs in [-50.0, -30.0, -20.0, -10.0, -3.0] {
        // 30 s at each level.
        let mut s = vec![0i16; ms(30_000)];
        add_noise(&mut s, sine_power(dbfs), &mut rng);
        assert_eq!(detect(&s), [], "noise at {dbfs} dBFS");
    }
}

#[test]
fn keys_survive_an_alaw_and_a_ulaw_round_trip() {
    type Encode = fn(&[i16], &mut [u8]);
    type Decode = fn(&[u8], &mut [i16]);
    let laws: [(&str, Encode, Decode); 2] = [
        ("A-law", g711::encode_alaw, g711::decode_alaw),
        ("µ-law", g711::encode_ulaw, g711::decode_ulaw),
    ];
    for (name, encode, decode) in laws {
        for d in KEYS.chars() {
            for level in [-25.0 + DBM0, NOMINAL, -6.02] {
                for offset in (0..160).step_by(31) {
                    let s = Stream::default()
                        .silence(offset)
                        .key(d, ms(40), level)
                        .silence(ms(60));
                    let mut codes = vec![0u8; s.0.len()];
                    encode(&s.0, &mut codes);
                    let mut back = vec![0i16; s.0.len()];
                    decode(&codes, &mut back);
                    assert_eq!(
                        string(&detect(&back)),
                        d.to_string(),
                        "{name}, key {d}, {level:.2} dBFS, offset {offset}"
                    );
                }
            }
        }
    }
}

#[test]
fn chunk_size_does_not_change_what_is_detected() {
    let mut s = Stream::default().silence(ms(13));
    for (i, d) in "159#D*0".chars().enumerate() {
        s = s.key(d, ms(40 + 7 * i), NOMINAL).silence(ms(40 + 3 * i));
    }
    let s = s.silence(ms(100)).0;
    for chunk in [1, 7, 40, 80, 160, 333, 1000, s.len()] {
        let mut det = DtmfDetector::new(RATE);
        let mut all = Vec::new();
        for c in s.chunks(chunk) {
            det.process_into(c, &mut all);
        }
        assert_eq!(string(&all), "159#D*0", "process_into, chunks of {chunk}");

        // process() returns one key a call and queues the rest.
        let mut det = DtmfDetector::new(RATE);
        let mut one_by_one = Vec::new();
        for c in s.chunks(chunk) {
            one_by_one.extend(det.process(c));
        }
        while let Some(d) = det.process(&[]) {
            one_by_one.push(d);
        }
        assert_eq!(string(&one_by_one), "159#D*0", "process, chunks of {chunk}");
    }
}

#[test]
fn reset_forgets_a_press_in_progress() {
    let mut det = DtmfDetector::new(RATE);
    let s = Stream::default().key('3', ms(100), NOMINAL).0;
    assert_eq!(det.process(&s), Some('3'));
    assert_eq!(det.tone_present(), Some('3'));
    det.reset();
    assert_eq!(det.tone_present(), None);
    // 20 ms more of the same tone is not a press of its own.
    assert_eq!(det.process(&s[..ms(20)]), None);
    // But a fresh 40 ms is.
    let s = Stream::default()
        .key('3', ms(40), NOMINAL)
        .silence(ms(40))
        .0;
    det.reset();
    assert_eq!(det.process(&s), Some('3'));
}

#[test]
fn works_at_16khz_too() {
    let mut det = DtmfDetector::new(16_000);
    let mut out = Vec::new();
    for d in "0A#".chars() {
        let mut g = ToneGen::dtmf(d, 16_000, NOMINAL).unwrap();
        let mut buf = vec![0i16; 16 * 45];
        g.fill(&mut buf);
        det.process_into(&buf, &mut out);
        det.process_into(&vec![0; 16 * 45], &mut out);
        let mut short = vec![0i16; 16 * 20];
        g.fill(&mut short);
        det.process_into(&short, &mut out);
        det.process_into(&vec![0; 16 * 45], &mut out);
    }
    assert_eq!(string(&out), "0A#");
}
