//! G.711 checked against the Recommendation itself, not against our own code.
//!
//! The expected values below are rebuilt from the definitions in ITU-T G.711
//! Tables 1 (A-law) and 2 (µ-law): for each of the 8 segments and 16
//! quantization intervals, the lower decision value and the step, in the
//! standard's units (A-law: full scale 4096, one unit is 8 in a 16-bit
//! sample; µ-law: full scale 8159, one unit is 4), scaled onto 16-bit samples. Encoding is then "find the
//! interval that holds the sample" by search, with negative samples mirrored
//! by one's complement (see the module docs of `callbox_hal::dsp::g711`).

use callbox_hal::dsp::g711::{
    Law, alaw_decode, alaw_encode, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw, ulaw_decode,
    ulaw_encode,
};

/// One quantization interval of a law, for magnitudes, in 16-bit units.
#[derive(Debug, Clone, Copy)]
struct Interval {
    /// Lower decision value (inclusive).
    lower: i32,
    /// Reconstruction value (decoder output).
    value: i32,
    /// Segment 0..=7 and step 0..=15 within it.
    segment: u8,
    step: u8,
}

/// G.711 Table 1a: A-law on 13 bits, 1 unit = 8 in 16-bit samples.
/// Segment 0: decision values 0, 2, 4, … 30, outputs 1, 3, … 31.
/// Segment s >= 1: starts at 16·2^s, steps of 2^s (segment 1 also has step 2).
fn alaw_intervals() -> Vec<Interval> {
    let mut v = Vec::new();
    for segment in 0..8u8 {
        let (start, step) = if segment == 0 {
            (0, 2)
        } else {
            (16 << segment, 1 << segment)
        };
        for i in 0..16u8 {
            let lower = start + i32::from(i) * step;
            v.push(Interval {
                lower: lower * 8,
                value: (2 * lower + step) * 4, // (lower + step/2) · 8
                segment,
                step: i,
            });
        }
    }
    assert_eq!(v.last().unwrap().lower + 128 * 8, 4096 * 8);
    v
}

/// G.711 Table 2a: µ-law on 14 bits, 1 unit = 4 in 16-bit samples.
/// Segment boundaries at 2^(s+5) − 33 (−1, 31, 95, … 4063, end 8159), steps
/// of 2^(s+1). The first interval of segment 0 is [−1, 1) around the output 0.
fn ulaw_intervals() -> Vec<Interval> {
    let mut v = Vec::new();
    for segment in 0..8u8 {
        let start = (32 << segment) - 33;
        let step = 2 << segment;
        for i in 0..16u8 {
            let lower = start + i32::from(i) * step;
            v.push(Interval {
                lower: lower * 4,
                value: (lower + step / 2) * 4,
                segment,
                step: i,
            });
        }
    }
    let last = v.last().unwrap();
    assert_eq!((last.lower / 4 + 256, last.value / 4), (8159, 8031));
    v
}

/// A-law character: sign bit 1 for positive, then segment and step, with the
/// even bits (2, 4, 6, 8 counting from the sign) inverted.
fn alaw_char(positive: bool, iv: &Interval) -> u8 {
    (u8::from(positive) << 7 | iv.segment << 4 | iv.step) ^ 0x55
}

/// µ-law character: sign bit 1 for positive, the other seven bits inverted.
fn ulaw_char(positive: bool, iv: &Interval) -> u8 {
    u8::from(positive) << 7 | (0x7F ^ (iv.segment << 4 | iv.step))
}

/// Reference decode: which interval and sign a character stands for.
fn reference_decode(law: Law, code: u8) -> i16 {
    let (table, char_of) = match law {
        Law::Alaw => (alaw_intervals(), alaw_char as fn(bool, &Interval) -> u8),
        Law::Ulaw => (ulaw_intervals(), ulaw_char as fn(bool, &Interval) -> u8),
    };
    for iv in &table {
        for positive in [true, false] {
            if char_of(positive, iv) == code {
                let v = if positive { iv.value } else { -iv.value };
                return i16::try_from(v).unwrap();
            }
        }
    }
    panic!("{law}: code {code:#04x} is in no interval");
}

/// Reference encode: the interval whose lower decision value is the largest
/// one not above the sample's magnitude. Magnitudes beyond the last decision
/// value land in the top interval (the standard's overload).
fn reference_encode(law: Law, table: &[Interval], sample: i16) -> u8 {
    let positive = sample >= 0;
    let magnitude = if positive {
        i32::from(sample)
    } else {
        -i32::from(sample) - 1
    };
    let iv = table
        .iter()
        .rev()
        .find(|iv| iv.lower <= magnitude)
        .expect("the first lower decision value is <= 0");
    match law {
        Law::Alaw => alaw_char(positive, iv),
        Law::Ulaw => ulaw_char(positive, iv),
    }
}

#[test]
fn every_alaw_code_decodes_to_the_standard_value() {
    for code in 0..=255u8 {
        assert_eq!(
            alaw_decode(code),
            reference_decode(Law::Alaw, code),
            "A-law {code:#04x}"
        );
    }
}

#[test]
fn every_ulaw_code_decodes_to_the_standard_value() {
    for code in 0..=255u8 {
        assert_eq!(
            ulaw_decode(code),
            reference_decode(Law::Ulaw, code),
            "µ-law {code:#04x}"
        );
    }
}

#[test]
fn every_code_survives_decode_then_encode() {
    for code in 0..=255u8 {
        assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        // 0x7F is µ-law's "negative zero": it decodes to 0, and 0 is +0.
        let want = if code == 0x7F { 0xFF } else { code };
        assert_eq!(ulaw_encode(ulaw_decode(code)), want, "µ-law {code:#04x}");
    }
}

#[test]
fn every_16_bit_sample_encodes_to_the_standard_interval() {
    let (a, u) = (alaw_intervals(), ulaw_intervals());
    for s in i16::MIN..=i16::MAX {
        assert_eq!(
            alaw_encode(s),
            reference_encode(Law::Alaw, &a, s),
            "A-law {s}"
        );
        assert_eq!(
            ulaw_encode(s),
            reference_encode(Law::Ulaw, &u, s),
            "µ-law {s}"
        );
    }
}

#[test]
fn encoding_is_symmetric_under_ones_complement() {
    for s in 0..=i16::MAX {
        assert_eq!(alaw_encode(!s), alaw_encode(s) & 0x7F, "A-law {s}");
        assert_eq!(ulaw_encode(!s), ulaw_encode(s) & 0x7F, "µ-law {s}");
    }
}

#[test]
fn spot_values_from_the_literature() {
    // A-law: no zero level; silence is 0xD5 (+8) / 0x55 (−8).
    assert_eq!(alaw_encode(0), 0xD5);
    assert_eq!(alaw_encode(-1), 0x55);
    assert_eq!(alaw_decode(0xD5), 8);
    assert_eq!(alaw_decode(0x55), -8);
    // Full scale: 0xAA / 0x2A = ±4032 units = ±32256.
    assert_eq!(alaw_decode(0xAA), 32256);
    assert_eq!(alaw_decode(0x2A), -32256);
    assert_eq!(alaw_encode(i16::MAX), 0xAA);
    assert_eq!(alaw_encode(i16::MIN), 0x2A);

    // µ-law: 0xFF is +0, 0x7F is −0.
    assert_eq!(ulaw_encode(0), 0xFF);
    assert_eq!(ulaw_decode(0xFF), 0);
    assert_eq!(ulaw_decode(0x7F), 0);
    // Full scale: 0x80 / 0x00 = ±8031 units = ±32124.
    assert_eq!(ulaw_decode(0x80), 32124);
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(ulaw_encode(i16::MAX), 0x80);
    assert_eq!(ulaw_encode(i16::MIN), 0x00);
    // Clip at 32635 (8158 on 14 bits): everything above is the top code,
    // and so is the top of the 14-bit interval below it.
    assert_eq!(ulaw_encode(32635), 0x80);
    assert_eq!(ulaw_encode(31612), 0x80);
    assert_eq!(ulaw_encode(31611), 0x81);
    // Segment 0: [1, 3) units → 2 units; −1..−4 is −0, −5 is −2 units.
    assert_eq!(ulaw_encode(3), 0xFF);
    assert_eq!(ulaw_encode(4), 0xFE);
    assert_eq!(ulaw_decode(0xFE), 8);
    assert_eq!(ulaw_encode(-1), 0x7F);
    assert_eq!(ulaw_encode(-4), 0x7F);
    assert_eq!(ulaw_encode(-5), 0x7E);
    assert_eq!(ulaw_decode(0x7E), -8);
}

#[test]
fn slices_and_law_methods_match_the_sample_functions() {
    let samples: Vec<i16> = (0..1000)
        .map(|i| ((i * 7919) % 65536 - 32768) as i16)
        .collect();
    let mut a = vec![0u8; samples.len()];
    let mut u = vec![0u8; samples.len()];
    encode_alaw(&samples, &mut a);
    encode_ulaw(&samples, &mut u);
    let mut da = vec![0i16; samples.len()];
    let mut du = vec![0i16; samples.len()];
    decode_alaw(&a, &mut da);
    decode_ulaw(&u, &mut du);
    for i in 0..samples.len() {
        assert_eq!(a[i], alaw_encode(samples[i]));
        assert_eq!(u[i], ulaw_encode(samples[i]));
        assert_eq!(da[i], alaw_decode(a[i]));
        assert_eq!(du[i], ulaw_decode(u[i]));
    }
    let mut via_law = vec![0u8; samples.len()];
    Law::Alaw.encode(&samples, &mut via_law);
    assert_eq!(via_law, a);
    Law::Ulaw.encode(&samples, &mut via_law);
    assert_eq!(via_law, u);
    let mut back = vec![0i16; samples.len()];
    Law::Alaw.decode(&a, &mut back);
    assert_eq!(back, da);
    Law::Ulaw.decode(&u, &mut back);
    assert_eq!(back, du);
}
