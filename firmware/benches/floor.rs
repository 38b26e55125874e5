//! The DSP floor: the per-call work no call-handling design can avoid, per
//! call-second (50 frames of 20 ms at 8 kHz), for the capacity figure's
//! "full system / floor" ratio.
//!
//! Per frame: decode the line's inbound G.711 A-law to linear, run the DTMF
//! detector over it (in-band digits are detected on every inbound frame),
//! encode the outbound frame to A-law for the line, and encode both sides
//! into the stereo A-law recording buffer the way the recorder's tap does
//! (emptied every 25 frames, as its 500 ms chunks are handed over). The
//! audio is a speech-like caller and a tone for the far side, looped.
//!
//! ```sh
//! cargo bench -p callbox-firmware --bench floor
//! ```

use std::hint::black_box;

use callbox_firmware::recorder::wav::Format;
use callbox_hal::dsp::detect::DtmfDetector;
use callbox_hal::dsp::g711;
use criterion::{Criterion, criterion_group, criterion_main};

const FRAME: usize = 160;
const FRAMES_PER_SECOND: usize = 50;
const CHUNK_FRAMES: usize = 25;

/// One second of a voiced, speech-like signal with a little noise.
fn speech_like() -> Vec<i16> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut phase = 0.0f64;
    (0..FRAME * FRAMES_PER_SECOND)
        .map(|n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let t = n as f64 / 8000.0;
            let f0 = 130.0 + 20.0 * (std::f64::consts::TAU * 3.0 * t).sin();
            phase += std::f64::consts::TAU * f0 / 8000.0;
            let v: f64 = (1..=20)
                .map(|h| (phase * h as f64).sin() / h as f64)
                .sum::<f64>();
            (v * 4000.0 + noise * 300.0) as i16
        })
        .collect()
}

fn floor(c: &mut Criterion) {
    let caller = speech_like();
    let mut inbound_codes = vec![0u8; caller.len()];
    g711::encode_alaw(&caller, &mut inbound_codes);
    let other: Vec<i16> = (0..FRAME * FRAMES_PER_SECOND)
        .map(|n| (6000.0 * (std::f64::consts::TAU * 1000.0 * n as f64 / 8000.0).sin()) as i16)
        .collect();
    let mut det = DtmfDetector::new(8000);
    let mut linear = [0i16; FRAME];
    let mut out_codes = [0u8; FRAME];
    let mut rec = Vec::with_capacity(FRAME * 2 * CHUNK_FRAMES);
    let mut g = c.benchmark_group("dsp_floor");
    g.bench_function("call_second", |b| {
        b.iter(|| {
            for f in 0..FRAMES_PER_SECOND {
                let at = f * FRAME..(f + 1) * FRAME;
                g711::decode_alaw(black_box(&inbound_codes[at.clone()]), &mut linear);
                black_box(det.process(&linear));
                g711::encode_alaw(black_box(&other[at.clone()]), &mut out_codes);
                black_box(&out_codes);
                Format::Alaw.encode_stereo(&linear, &other[at], &mut rec);
                if (f + 1) % CHUNK_FRAMES == 0 {
                    black_box(&rec);
                    rec.clear();
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
