//! Cost of the per-frame DSP of one line: DTMF detection and G.711, per
//! 20 ms frame of 160 samples at 8 kHz (the unit the audio path works in).
//!
//! Budget: decoding an A-law frame and running the DTMF detector over it
//! must stay within 3 µs on the box (`dtmf_plus_g711_frame`), so one core
//! has room for hundreds of lines. Run with
//! `cargo bench -p callbox-hal --bench dsp`.

use std::hint::black_box;

use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::dtmf::ToneGen;
use callbox_hal::dsp::g711;
use criterion::{Criterion, criterion_group, criterion_main};

const FRAME: usize = 160;
/// Frames in each looped test signal (1 s).
const FRAMES: usize = 50;

/// One second of key presses: 60 ms of a key, 40 ms of silence, repeated,
/// so the detector runs its full per-window analysis and its state machine.
fn keypad_second() -> Vec<i16> {
    let mut out = vec![0i16; FRAME * FRAMES];
    for (i, press) in out.chunks_mut(800).enumerate() {
        let d = b"159#D*0A26"[i % 10] as char;
        ToneGen::dtmf(d, 8000, -13.0)
            .unwrap()
            .fill(&mut press[..480]);
    }
    out
}

/// One second of a voiced, speech-like signal: a 110–160 Hz glottal pulse
/// train's harmonics shaped by three moving formants, plus a little noise.
fn speech_like_second() -> Vec<i16> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5
    };
    let rate = 8000.0;
    let mut phase = 0.0f64;
    (0..FRAME * FRAMES)
        .map(|n| {
            let t = n as f64 / rate;
            let f0 = 135.0 + 25.0 * (std::f64::consts::TAU * 3.0 * t).sin();
            phase += std::f64::consts::TAU * f0 / rate;
            let formants = [
                500.0 + 200.0 * (std::f64::consts::TAU * 2.0 * t).sin(),
                1500.0 + 400.0 * (std::f64::consts::TAU * 1.3 * t).sin(),
                2500.0,
            ];
            let mut v = 0.0;
            for h in 1..=(3800.0 / f0) as usize {
                let f = h as f64 * f0;
                let gain: f64 = formants
                    .iter()
                    .map(|&fm| 1.0 / (1.0 + ((f - fm) / 120.0).powi(2)))
                    .sum();
                v += gain / h as f64 * (h as f64 * phase).sin();
            }
            (3000.0 * v + 300.0 * noise()).clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn bench_dtmf(c: &mut Criterion) {
    let mut group = c.benchmark_group("dtmf_detect_frame");
    for (name, signal) in [
        ("keypad", keypad_second()),
        ("speech_like", speech_like_second()),
        ("silence", vec![0i16; FRAME * FRAMES]),
    ] {
        let frames: Vec<&[i16]> = signal.chunks(FRAME).collect();
        let mut det = DtmfDetector::new(8000);
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let frame = frames[i % FRAMES];
                i += 1;
                black_box(det.process(black_box(frame)))
            })
        });
    }
    group.finish();
}

fn bench_g711(c: &mut Criterion) {
    let speech = speech_like_second();
    let pcm: [i16; FRAME] = speech[..FRAME].try_into().unwrap();
    let mut alaw = [0u8; FRAME];
    g711::encode_alaw(&pcm, &mut alaw);

    c.bench_function("g711_alaw_decode_frame", |b| {
        let mut out = [0i16; FRAME];
        b.iter(|| {
            g711::decode_alaw(black_box(&alaw), &mut out);
            black_box(&out);
        })
    });
    c.bench_function("g711_ulaw_encode_frame", |b| {
        let mut out = [0u8; FRAME];
        b.iter(|| {
            g711::encode_ulaw(black_box(&pcm), &mut out);
            black_box(&out);
        })
    });
}

fn bench_dtmf_plus_g711(c: &mut Criterion) {
    // What a digital trunk does for each received frame: decode A-law, then
    // listen for keys.
    let signal = keypad_second();
    let mut coded = vec![0u8; signal.len()];
    g711::encode_alaw(&signal, &mut coded);
    let frames: Vec<&[u8]> = coded.chunks(FRAME).collect();
    let mut det = DtmfDetector::new(8000);
    let mut pcm = [0i16; FRAME];
    let mut i = 0;
    c.bench_function("dtmf_plus_g711_frame", |b| {
        b.iter(|| {
            g711::decode_alaw(black_box(frames[i % FRAMES]), &mut pcm);
            i += 1;
            black_box(det.process(&pcm))
        })
    });
}

criterion_group!(benches, bench_dtmf, bench_g711, bench_dtmf_plus_g711);
criterion_main!(benches);
