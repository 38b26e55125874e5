//! G.711 A-law and µ-law companding (ITU-T G.711, 1988).
//!
//! Every digital trunk, SIP peer and prompt file on the box speaks one of the
//! two laws; the rest of the firmware works on 16-bit linear samples. This
//! module converts between the two, sample by sample or a frame at a time.
//!
//! # Conventions
//!
//! G.711 is defined on 13-bit (A-law) and 14-bit (µ-law) sign-magnitude
//! values. Like the ITU-T's own reference code (G.191 STL, `g711.c`), we take
//! those from the top bits of a 16-bit two's-complement sample, and a negative
//! sample `x` has magnitude `!x` (= −x−1): a 16-bit value stands for the
//! interval `[x, x + 1)`, and `!x` is its exact mirror image. Hence:
//!
//! - A-law encodes the top 13 bits: `alaw_encode(0) == 0xD5`,
//!   `alaw_encode(-1) == 0x55`; there is no zero code, so silence decodes
//!   to ±8.
//! - µ-law encodes the top 14 bits, with the standard's bias of 33 (0x84 in
//!   16-bit units) and magnitudes clipped at 32635 (8158 in 14-bit units):
//!   `ulaw_encode(0) == 0xFF`, `ulaw_encode(-1) == 0x7F`. Both 0xFF
//!   ("+0") and 0x7F ("−0") decode to 0, so `ulaw_encode(ulaw_decode(0x7F))`
//!   is 0xFF.
//!
//! The widely copied Sun `g711.c` does the same for A-law, but negates
//! (−x) instead of complementing for µ-law; its µ-law codes for some
//! negative samples are therefore one step larger than G.191's. Decoding is
//! the same everywhere.
//!
//! All four conversions are table lookups, built at compile time: 256 entries
//! to decode, and to encode 4096 (A-law) or 16384 (µ-law) entries indexed by
//! the sample's top bits.

use std::fmt;

/// Which of the two G.711 laws a stream or file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// A-law: Europe, China, most of the world outside North America and Japan.
    Alaw,
    /// µ-law: North America and Japan.
    Ulaw,
}

impl Law {
    /// Encodes one 16-bit sample.
    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Law::Alaw => alaw_encode(sample),
            Law::Ulaw => ulaw_encode(sample),
        }
    }

    /// Decodes one code to a 16-bit sample.
    #[inline]
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Law::Alaw => alaw_decode(code),
            Law::Ulaw => ulaw_decode(code),
        }
    }

    /// Encodes `samples` into `out`.
    ///
    /// # Panics
    ///
    /// If the two slices have different lengths.
    pub fn encode(self, samples: &[i16], out: &mut [u8]) {
        match self {
            Law::Alaw => encode_alaw(samples, out),
            Law::Ulaw => encode_ulaw(samples, out),
        }
    }

    /// Decodes `codes` into `out`.
    ///
    /// # Panics
    ///
    /// If the two slices have different lengths.
    pub fn decode(self, codes: &[u8], out: &mut [i16]) {
        match self {
            Law::Alaw => decode_alaw(codes, out),
            Law::Ulaw => decode_ulaw(codes, out),
        }
    }
}

impl fmt::Display for Law {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Law::Alaw => "A-law",
            Law::Ulaw => "µ-law",
        })
    }
}

/// Encodes one 16-bit sample to A-law (top 13 bits).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // The 13th bit never matters (segments 0 and 1 step by 2), so 12 bits
    // index the table.
    ALAW_ENCODE[usize::from(sample as u16 >> 4)]
}

/// Decodes one A-law code to a 16-bit sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Encodes one 16-bit sample to µ-law (top 14 bits).
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[usize::from(sample as u16 >> 2)]
}

/// Decodes one µ-law code to a 16-bit sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes `samples` to A-law into `out`.
///
/// # Panics
///
/// If `out.len() != samples.len()`: a short buffer would silently drop audio.
pub fn encode_alaw(samples: &[i16], out: &mut [u8]) {
    check_len(samples.len(), out.len());
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = alaw_encode(s);
    }
}

/// Decodes A-law `codes` into `out`.
///
/// # Panics
///
/// If `out.len() != codes.len()`.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    check_len(codes.len(), out.len());
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_decode(c);
    }
}

/// Encodes `samples` to µ-law into `out`.
///
/// # Panics
///
/// If `out.len() != samples.len()`.
pub fn encode_ulaw(samples: &[i16], out: &mut [u8]) {
    check_len(samples.len(), out.len());
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = ulaw_encode(s);
    }
}

/// Decodes µ-law `codes` into `out`.
///
/// # Panics
///
/// If `out.len() != codes.len()`.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    check_len(codes.len(), out.len());
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_decode(c);
    }
}

#[inline]
#[track_caller]
fn check_len(input: usize, output: usize) {
    assert_eq!(
        input, output,
        "G.711: input has {input} samples but the output buffer has room for {output}"
    );
}

// Tables rather than the arithmetic below at run time: a load is about four
// times faster than the bit scan on x86-64 without vector `lzcnt`, and the
// 20 KiB hardly matter next to the prompts. Speech sits near zero, so only a
// few cache lines at each end of an encode table are hot.
static ALAW_ENCODE: [u8; 4096] = {
    let mut t = [0u8; 4096];
    let mut i = 0;
    while i < t.len() {
        t[i] = alaw_compress((i << 4) as u16 as i16);
        i += 1;
    }
    t
};
static ULAW_ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < t.len() {
        t[i] = ulaw_compress((i << 2) as u16 as i16);
        i += 1;
    }
    t
};
static ALAW_DECODE: [i16; 256] = decode_table(Law::Alaw);
static ULAW_DECODE: [i16; 256] = decode_table(Law::Ulaw);

const fn decode_table(law: Law) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match law {
            Law::Alaw => alaw_expand(c as u8),
            Law::Ulaw => ulaw_expand(c as u8),
        };
        c += 1;
    }
    t
}

/// The A-law code of a sample, by segment arithmetic.
const fn alaw_compress(sample: i16) -> u8 {
    // 0 for positive samples, all ones for negative ones.
    let neg = sample >> 15;
    // Top 11 bits of the one's-complement magnitude.
    let m = ((sample ^ neg) as u16 >> 4) as u32;
    // Segment s >= 1 holds m in [16 << (s-1), 16 << s); shifting by e = s-1
    // lands m in [16, 32), whose bit 4 plus e << 4 is exactly s << 4 | step.
    // Segment 0 (m < 16) falls out with e = 0 too.
    let e = 31 - (m | 0x10).leading_zeros() - 4;
    let code = (m >> e) + (e << 4);
    let sign = (neg as u8 & 0x80) ^ 0x80;
    (code as u8 | sign) ^ 0x55
}

/// The µ-law code of a sample, by segment arithmetic.
const fn ulaw_compress(sample: i16) -> u8 {
    let neg = sample >> 15;
    let m = ((sample ^ neg) as u16 >> 2) as u32;
    // Biased by 33, segment s holds [32 << s, 64 << s); the clip keeps the
    // biased value below 8192, i.e. in segment 7.
    let biased = if m + 33 > 0x1FFF { 0x1FFF } else { m + 33 };
    let seg = 31 - biased.leading_zeros() - 5;
    let code = (biased >> (seg + 1)) - 16 + (seg << 4);
    let sign = (neg as u8 & 0x80) ^ 0x80;
    (code as u8 ^ 0x7F) | sign
}

/// The reconstruction value of an A-law code: the middle of its interval.
const fn alaw_expand(code: u8) -> i16 {
    let c = code ^ 0x55;
    let seg = (c >> 4) & 7;
    let step = (c & 0x0F) as i16;
    let mag = if seg == 0 {
        (step << 4) + 8
    } else {
        // The implicit leading 1 (0x100) of segments 1..7, plus half a step.
        ((step << 4) + 0x108) << (seg - 1)
    };
    if c & 0x80 != 0 { mag } else { -mag }
}

/// The reconstruction value of a µ-law code: the middle of its interval.
const fn ulaw_expand(code: u8) -> i16 {
    let c = !code;
    let seg = (c >> 4) & 7;
    let step = (c & 0x0F) as i16;
    // Biased by 0x84 (33 in 14-bit units), each segment doubles; half a step
    // (0x4 << seg) is folded into the 0x84.
    let mag = (((step << 3) + 0x84) << seg) - 0x84;
    if c & 0x80 != 0 { -mag } else { mag }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn law_methods_agree_with_the_free_functions() {
        let samples: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
        for law in [Law::Alaw, Law::Ulaw] {
            let mut codes = vec![0u8; samples.len()];
            law.encode(&samples, &mut codes);
            let mut back = vec![0i16; samples.len()];
            law.decode(&codes, &mut back);
            for ((&s, &c), &b) in samples.iter().zip(&codes).zip(&back) {
                assert_eq!(c, law.encode_sample(s));
                assert_eq!(b, law.decode_sample(c));
                let (e, d) = match law {
                    Law::Alaw => (alaw_encode(s), alaw_decode(c)),
                    Law::Ulaw => (ulaw_encode(s), ulaw_decode(c)),
                };
                assert_eq!((c, b), (e, d), "{law} {s}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "input has 3 samples but the output buffer has room for 2")]
    fn slice_length_mismatch_panics() {
        encode_alaw(&[0, 1, 2], &mut [0u8; 2]);
    }

    #[test]
    fn law_names() {
        assert_eq!(Law::Alaw.to_string(), "A-law");
        assert_eq!(Law::Ulaw.to_string(), "µ-law");
    }
}
