//! Caller id on analog lines (CLIP): the message, its FSK modulation
//! (Bell 202 and ITU-T V.23) and its DTMF variant — encoded for the
//! stations the box rings, decoded from the trunks that ring the box.
//!
//! # Message (Telcordia GR-30, ETSI EN 300 659-3)
//!
//! A message is a type byte, a length byte, the body and a checksum byte
//! that makes all bytes sum to 0 mod 256. SDMF (type `0x04`) carries
//! `MMDDHHMM` and the number (or `P` private / `O` unavailable). MDMF (type
//! `0x80`) carries parameters, each type, length, value: `0x01` date and
//! time, `0x02` number, `0x04` reason the number is absent, `0x07` name,
//! `0x08` reason the name is absent; unknown parameters are skipped. Numbers
//! are cut to 20 digits and names to 15 characters when encoding, as GR-30
//! allows; decoded text keeps printable ASCII only and refuses the rest
//! (a corrupt message must not put control characters into records).
//!
//! # FSK
//!
//! 1200 baud, asynchronous 8N1 bytes (start bit space, eight data bits
//! least significant first, stop bit mark). Bell 202: mark 1200 Hz, space
//! 2200 Hz; V.23 as ETSI uses it: mark 1300 Hz, space 2100 Hz. The
//! transmission is a channel seizure (300 alternating bits), a mark
//! period (180 bits Bell, 80 bits V.23) and the message.
//!
//! The demodulator correlates every sample window of one bit length with
//! the mark and space frequencies (a sliding DFT of both), decides each
//! sample by which is stronger (independent of level), and frames bytes
//! from the decisions: a byte may start only after at least 10 bit times of
//! mark (so the seizure's alternation is never taken for data), and inside
//! a message a stop bit suffices. Bits are sampled at their fractional
//! middles (8000/1200 = 6.67 samples per bit). Below −50 dBFS the line is
//! taken as silent.
//!
//! # DTMF
//!
//! `A` number `C` (some networks start with `D`), or `B00C` (unavailable)
//! / `B10C` (private); 70 ms tones with 70 ms pauses.

use std::collections::VecDeque;
use std::f64::consts::TAU;
use std::fmt;
use std::str::FromStr;

use super::detect::DtmfDetector;
use super::dtmf::ToneGen;

/// Why a number or name is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// Withheld by the caller (`P`).
    Private,
    /// Not known to the network (`O`).
    Unavailable,
}

impl Absence {
    fn code(self) -> u8 {
        match self {
            Absence::Private => b'P',
            Absence::Unavailable => b'O',
        }
    }
    fn from_code(c: u8) -> Option<Absence> {
        match c {
            b'P' => Some(Absence::Private),
            b'O' => Some(Absence::Unavailable),
            _ => None,
        }
    }
}

/// What a caller-id message says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    /// Calling number.
    pub number: Option<String>,
    /// Calling name (MDMF only).
    pub name: Option<String>,
    /// `MMDDHHMM`, local time of the call.
    pub datetime: Option<String>,
    /// Why there is no number.
    pub number_absent: Option<Absence>,
    /// Why there is no name.
    pub name_absent: Option<Absence>,
}

/// Single or multiple data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// SDMF: date, time and number.
    Sdmf,
    /// MDMF: date, time, number and name.
    Mdmf,
}

/// How a network sends caller id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerIdStandard {
    /// FSK, Bell 202 (North America).
    Bell202,
    /// FSK, ITU-T V.23 (Europe, China).
    V23,
    /// DTMF digits.
    Dtmf,
}

impl fmt::Display for CallerIdStandard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallerIdStandard::Bell202 => "bell202",
            CallerIdStandard::V23 => "v23",
            CallerIdStandard::Dtmf => "dtmf",
        })
    }
}

impl FromStr for CallerIdStandard {
    type Err = CidError;
    fn from_str(s: &str) -> Result<Self, CidError> {
        match s {
            "bell202" => Ok(CallerIdStandard::Bell202),
            "v23" => Ok(CallerIdStandard::V23),
            "dtmf" => Ok(CallerIdStandard::Dtmf),
            other => Err(CidError::UnknownStandard(other.to_string())),
        }
    }
}

/// What is wrong with a caller-id message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// The checksum does not add up.
    #[error("caller id checksum wrong: bytes sum to {sum:#04x}, not 0")]
    Checksum {
        /// Sum of all bytes mod 256.
        sum: u8,
    },
    /// The message ended early.
    #[error("caller id message truncated: {got} of {want} bytes")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes the length byte promised (with header and checksum).
        want: usize,
    },
    /// A message type the box does not read.
    #[error("caller id message type {0:#04x} is not SDMF (0x04) or MDMF (0x80)")]
    UnknownType(u8),
    /// A parameter runs past the message.
    #[error("caller id parameter {kind:#04x} of {len} bytes runs past the message")]
    BadParameter {
        /// Parameter type.
        kind: u8,
        /// Its claimed length.
        len: usize,
    },
    /// A field holds characters that are not printable ASCII.
    #[error("caller id {field} holds non-printable characters")]
    NotPrintable {
        /// Which field.
        field: &'static str,
    },
    /// Not a caller-id standard.
    #[error("unknown caller-id standard `{0}`; use \"bell202\", \"v23\", \"dtmf\" or \"none\"")]
    UnknownStandard(String),
}

fn printable(field: &'static str, b: &[u8]) -> Result<String, CidError> {
    if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        Ok(String::from_utf8_lossy(b).into_owned())
    } else {
        Err(CidError::NotPrintable { field })
    }
}

fn clip(s: &str, max: usize) -> Vec<u8> {
    s.bytes()
        .filter(|c| (0x20..0x7f).contains(c))
        .take(max)
        .collect()
}

/// The bytes of a message: type, length, body, checksum.
pub fn encode_message(cid: &CallerId, format: MessageFormat) -> Vec<u8> {
    let date = cid
        .datetime
        .as_deref()
        .map(|d| clip(d, 8))
        .filter(|d| d.len() == 8);
    let mut body = Vec::new();
    let kind = match format {
        MessageFormat::Sdmf => {
            body.extend(date.unwrap_or_else(|| b"01010000".to_vec()));
            match (&cid.number, cid.number_absent) {
                (Some(n), _) => body.extend(clip(n, 20)),
                (None, a) => body.push(a.unwrap_or(Absence::Unavailable).code()),
            }
            0x04
        }
        MessageFormat::Mdmf => {
            let mut param = |kind: u8, v: &[u8]| {
                body.push(kind);
                body.push(v.len() as u8);
                body.extend_from_slice(v);
            };
            if let Some(d) = &date {
                param(0x01, d);
            }
            match (&cid.number, cid.number_absent) {
                (Some(n), _) => param(0x02, &clip(n, 20)),
                (None, a) => param(0x04, &[a.unwrap_or(Absence::Unavailable).code()]),
            }
            match (&cid.name, cid.name_absent) {
                (Some(n), _) => param(0x07, &clip(n, 15)),
                (None, Some(a)) => param(0x08, &[a.code()]),
                (None, None) => {}
            }
            0x80
        }
    };
    let mut msg = vec![kind, body.len() as u8];
    msg.extend(body);
    let sum = msg.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    msg.push(sum.wrapping_neg());
    msg
}

/// Reads a message (type, length, body, checksum).
pub fn parse_message(bytes: &[u8]) -> Result<CallerId, CidError> {
    if bytes.len() < 3 {
        return Err(CidError::Truncated {
            got: bytes.len(),
            want: 3,
        });
    }
    let want = usize::from(bytes[1]) + 3;
    if bytes.len() < want {
        return Err(CidError::Truncated {
            got: bytes.len(),
            want,
        });
    }
    let msg = &bytes[..want];
    let sum = msg.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    if sum != 0 {
        return Err(CidError::Checksum { sum });
    }
    let body = &msg[2..want - 1];
    let mut cid = CallerId::default();
    match msg[0] {
        0x04 => {
            if body.len() < 9 {
                return Err(CidError::Truncated {
                    got: body.len(),
                    want: 9,
                });
            }
            cid.datetime = Some(printable("date", &body[..8])?);
            let rest = &body[8..];
            match rest {
                [c] if Absence::from_code(*c).is_some() => {
                    cid.number_absent = Absence::from_code(*c)
                }
                _ => cid.number = Some(printable("number", rest)?),
            }
        }
        0x80 => {
            let mut i = 0;
            while i + 2 <= body.len() {
                let (kind, len) = (body[i], usize::from(body[i + 1]));
                let Some(v) = body.get(i + 2..i + 2 + len) else {
                    return Err(CidError::BadParameter { kind, len });
                };
                match kind {
                    0x01 => cid.datetime = Some(printable("date", v)?),
                    0x02 => cid.number = Some(printable("number", v)?),
                    0x04 => cid.number_absent = v.first().and_then(|&c| Absence::from_code(c)),
                    0x07 => cid.name = Some(printable("name", v)?),
                    0x08 => cid.name_absent = v.first().and_then(|&c| Absence::from_code(c)),
                    _ => {}
                }
                i += 2 + len;
            }
        }
        other => return Err(CidError::UnknownType(other)),
    }
    Ok(cid)
}

fn tones(standard: CallerIdStandard) -> (f64, f64) {
    match standard {
        CallerIdStandard::Bell202 => (1200.0, 2200.0),
        _ => (1300.0, 2100.0),
    }
}

/// FSK samples for a message: seizure, mark period, the bytes, two mark
/// bits. `level_dbfs` is the level of the sine.
pub fn fsk_samples(
    standard: CallerIdStandard,
    message: &[u8],
    sample_rate: u32,
    level_dbfs: f64,
) -> Vec<i16> {
    let (mark, space) = tones(standard);
    let mark_bits = if standard == CallerIdStandard::Bell202 {
        180
    } else {
        80
    };
    let mut bits: Vec<bool> = (0..300).map(|i| i % 2 == 1).collect();
    bits.extend(std::iter::repeat_n(true, mark_bits));
    for &b in message {
        bits.push(false);
        bits.extend((0..8).map(|k| b >> k & 1 == 1));
        bits.push(true);
    }
    bits.extend([true, true]);
    let amp = 32767.0 * 10f64.powf(level_dbfs / 20.0);
    let rate = f64::from(sample_rate);
    let n = (bits.len() as f64 * rate / 1200.0).ceil() as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let bit = bits[((i as f64 * 1200.0 / rate) as usize).min(bits.len() - 1)];
            let v = amp * phase.sin();
            phase = (phase + TAU * if bit { mark } else { space } / rate) % TAU;
            v.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// DTMF caller-id samples: 70 ms per digit, 70 ms between.
pub fn dtmf_samples(cid: &CallerId, sample_rate: u32, level_dbfs: f64) -> Vec<i16> {
    let digits: String = match (&cid.number, cid.number_absent) {
        (Some(n), _) => {
            let d: String = n.chars().filter(|c| c.is_ascii_digit()).collect();
            format!("A{d}C")
        }
        (None, Some(Absence::Private)) => "B10C".into(),
        (None, _) => "B00C".into(),
    };
    let per = (sample_rate as usize * 70) / 1000;
    let mut out = Vec::new();
    for d in digits.chars() {
        if let Some(mut g) = ToneGen::dtmf(d, sample_rate, level_dbfs) {
            let s = out.len();
            out.resize(s + per, 0);
            g.fill(&mut out[s..]);
            out.resize(s + 2 * per, 0);
        }
    }
    out
}

/// Caller-id audio in `standard` (FSK at −13 dBFS, DTMF at −10 dBFS per
/// tone: about the levels exchanges send).
pub fn generate(
    standard: CallerIdStandard,
    cid: &CallerId,
    format: MessageFormat,
    sample_rate: u32,
) -> Vec<i16> {
    match standard {
        CallerIdStandard::Dtmf => dtmf_samples(cid, sample_rate, -10.0),
        fsk => fsk_samples(fsk, &encode_message(cid, format), sample_rate, -13.0),
    }
}

/// A sliding single-frequency DFT over `n` samples.
#[derive(Debug, Clone)]
struct Sliding {
    step: (f64, f64),
    /// `e^{jwn}`: the phase a sample added `n` steps ago was added at,
    /// relative to the current one.
    back: (f64, f64),
    rot: (f64, f64),
    sum: (f64, f64),
}

impl Sliding {
    /// A bin at `hz` over a window of `n` samples.
    fn new(hz: f64, rate: f64, n: usize) -> Sliding {
        let w = TAU * hz / rate;
        let wn = w * n as f64;
        Sliding {
            step: (w.cos(), -w.sin()),
            back: (wn.cos(), wn.sin()),
            rot: (1.0, 0.0),
            sum: (0.0, 0.0),
        }
    }
    /// Adds `x` at the current phase and removes `old`, the sample that
    /// leaves the window.
    fn push(&mut self, x: f64, old: f64) {
        let back = self.back;
        let (c, s) = self.rot;
        // old was added at rot * back (back = e^{+jwn}), i.e. conj rotation.
        let (oc, os) = (c * back.0 - s * back.1, c * back.1 + s * back.0);
        self.sum.0 += x * c - old * oc;
        self.sum.1 += x * s - old * os;
        let (a, b) = self.step;
        self.rot = (c * a - s * b, c * b + s * a);
        // Keep |rot| = 1 against rounding.
        let m = (self.rot.0 * self.rot.0 + self.rot.1 * self.rot.1).sqrt();
        self.rot = (self.rot.0 / m, self.rot.1 / m);
    }
    fn power(&self) -> f64 {
        self.sum.0 * self.sum.0 + self.sum.1 * self.sum.1
    }
}

/// Decodes FSK caller id.
#[derive(Debug, Clone)]
pub struct FskDecoder {
    rate: f64,
    n: usize,
    standard: CallerIdStandard,
    mark: Sliding,
    space: Sliding,
    /// Samples to sample bits ahead of their computed middle: the
    /// decisions show a mark→space edge late by about this much (the
    /// window still holds some of the mark). Measured: one sample for
    /// Bell 202, none for V.23, which centres both within ±2 % of baud.
    lead: u64,
    window: VecDeque<f64>,
    energy: f64,
    /// Decisions (mark = true), `None` where the line is silent, from
    /// absolute sample `base`.
    decisions: VecDeque<Option<bool>>,
    base: u64,
    /// Next sample to look at for a start bit.
    cursor: u64,
    /// Mark bit times seen in a row before the cursor.
    marks_run: f64,
    bytes: Vec<u8>,
    /// Where the last byte ended, inside a message.
    in_message_since: Option<u64>,
}

impl FskDecoder {
    /// A decoder for `standard` (Bell 202 or V.23) at `sample_rate`.
    pub fn new(standard: CallerIdStandard, sample_rate: u32) -> FskDecoder {
        let rate = f64::from(sample_rate);
        let (m, s) = tones(standard);
        let n = (rate / 1200.0).round() as usize;
        FskDecoder {
            rate,
            n,
            standard,
            mark: Sliding::new(m, rate, n),
            space: Sliding::new(s, rate, n),
            lead: u64::from(standard == CallerIdStandard::Bell202),
            window: std::iter::repeat_n(0.0, n).collect(),
            energy: 0.0,
            decisions: VecDeque::new(),
            base: 0,
            cursor: 0,
            marks_run: 0.0,
            bytes: Vec::new(),
            in_message_since: None,
        }
    }

    /// Starts over.
    pub fn reset(&mut self) {
        *self = FskDecoder::new(self.standard, self.rate as u32);
    }

    fn spb(&self) -> f64 {
        self.rate / 1200.0
    }

    fn at(&self, i: u64) -> Option<bool> {
        i.checked_sub(self.base)
            .and_then(|k| self.decisions.get(k as usize).copied())
            .flatten()
    }

    fn end(&self) -> u64 {
        self.base + self.decisions.len() as u64
    }

    /// Feeds samples; the decoded message once complete.
    pub fn process(&mut self, samples: &[i16]) -> Option<Result<CallerId, CidError>> {
        // Silence floor: -50 dBFS of a sine, as mean power per sample.
        let floor = (32767.0f64 * 10f64.powf(-50.0 / 20.0)).powi(2) / 2.0 * self.n as f64;
        for &s in samples {
            let x = f64::from(s);
            let old = self.window.pop_front().unwrap_or(0.0);
            self.window.push_back(x);
            self.energy += x * x - old * old;
            self.mark.push(x, old);
            self.space.push(x, old);
            let d = (self.energy > floor).then(|| self.mark.power() > self.space.power());
            self.decisions.push_back(d);
        }
        let out = self.frame();
        // Keep a bounded history: what the cursor no longer needs.
        let keep_from = self.cursor.saturating_sub(8);
        while self.base < keep_from && !self.decisions.is_empty() {
            self.decisions.pop_front();
            self.base += 1;
        }
        out
    }

    fn frame(&mut self) -> Option<Result<CallerId, CidError>> {
        let spb = self.spb();
        let byte_len = (10.0 * spb).ceil() as u64;
        loop {
            let i = self.cursor;
            if i + byte_len + 2 > self.end() {
                return None;
            }
            let d = self.at(i);
            match d {
                Some(true) | None => {
                    if d == Some(true) {
                        self.marks_run += 1.0 / spb;
                    } else {
                        self.marks_run = 0.0;
                    }
                    self.cursor += 1;
                    // Inside a message, a long pause means it was cut off.
                    if let Some(since) = self.in_message_since
                        && i > since + (20.0 * spb) as u64
                    {
                        let got = self.bytes.len();
                        let want = self.bytes.get(1).map_or(3, |&l| usize::from(l) + 3);
                        self.in_message_since = None;
                        self.bytes.clear();
                        // A lone type byte is more likely noise than a
                        // message: only a header seen is worth an error.
                        if got >= 2 {
                            return Some(Err(CidError::Truncated { got, want }));
                        }
                    }
                    continue;
                }
                Some(false) => {}
            }
            // A space: a start bit, if the mark before it was long enough.
            // Inside a message a stop bit precedes each start bit: two
            // samples of it are enough (its first half was sampled).
            let needed = if self.in_message_since.is_some() {
                0.25
            } else {
                10.0
            };
            if self.marks_run < needed {
                self.marks_run = 0.0;
                self.cursor += 1;
                continue;
            }
            // A bit is the vote of the three decisions around its middle:
            // one sample flipped by noise does not flip the bit.
            let sample = |k: f64| {
                // One sample earlier than the bit's middle: a mark→space
                // edge shows in the decisions about a sample late (the
                // window holds some of the mark still), and the lateness
                // would otherwise add up to a bit's end by the stop bit.
                let mid = i + (k * spb).round() as u64 - self.lead;
                let votes: i32 = [mid - 1, mid, mid + 1]
                    .iter()
                    .map(|&j| match self.at(j) {
                        Some(true) => 1,
                        Some(false) => -1,
                        None => 0,
                    })
                    .sum();
                match votes {
                    v if v > 0 => Some(true),
                    v if v < 0 => Some(false),
                    _ => None,
                }
            };
            if sample(0.5) != Some(false) || sample(9.5) != Some(true) {
                // Not a start bit, or a framing error: look further.
                self.marks_run = 0.0;
                self.cursor += 1;
                continue;
            }
            let mut byte = 0u8;
            for k in 0..8 {
                if sample(1.5 + f64::from(k)) == Some(true) {
                    byte |= 1 << k;
                }
            }
            // Continue at the stop bit's sample, already found to be mark:
            // the next space is the next start bit. Nothing more of the
            // stop bit is asked for, so a sender up to 5 % fast (whose
            // stop bit ends soon after) still has its next byte found.
            self.cursor = i + (9.5 * spb).round() as u64;
            self.marks_run = 1.0;
            if self.bytes.is_empty() && !matches!(byte, 0x04 | 0x80) {
                // Not a message type: framed noise or speech. Look for a
                // mark period again, without a word.
                continue;
            }
            self.in_message_since = Some(self.cursor);
            self.bytes.push(byte);
            if self.bytes.len() >= 2 {
                let want = usize::from(self.bytes[1]) + 3;
                if self.bytes.len() >= want {
                    let r = parse_message(&self.bytes);
                    self.bytes.clear();
                    self.in_message_since = None;
                    self.marks_run = 0.0;
                    return Some(r);
                }
            }
        }
    }
}

/// Decodes DTMF caller id.
#[derive(Debug, Clone)]
pub struct DtmfClipDecoder {
    det: DtmfDetector,
    digits: String,
    keys: Vec<char>,
    /// Samples since the last digit, while a sequence is open.
    idle: usize,
    rate: usize,
}

impl DtmfClipDecoder {
    /// A decoder at `sample_rate`.
    pub fn new(sample_rate: u32) -> DtmfClipDecoder {
        DtmfClipDecoder {
            det: DtmfDetector::new(sample_rate),
            digits: String::new(),
            keys: Vec::new(),
            idle: 0,
            rate: sample_rate as usize,
        }
    }

    /// Starts over.
    pub fn reset(&mut self) {
        self.det.reset();
        self.digits.clear();
        self.idle = 0;
    }

    /// Feeds samples; the caller id once a whole sequence was heard.
    pub fn process(&mut self, samples: &[i16]) -> Option<CallerId> {
        self.keys.clear();
        self.det.process_into(samples, &mut self.keys);
        if self.keys.is_empty() && !self.digits.is_empty() {
            self.idle += samples.len();
            // A second without a digit: the sequence was cut off.
            if self.idle > self.rate {
                self.digits.clear();
            }
        }
        let mut done = None;
        for k in std::mem::take(&mut self.keys) {
            self.idle = 0;
            match k {
                'A' | 'B' | 'D' => {
                    self.digits.clear();
                    self.digits.push(k);
                }
                'C' | '#' if !self.digits.is_empty() => {
                    let body: String = self.digits.drain(..).collect();
                    let (start, rest) = body.split_at(1);
                    done = Some(match (start, rest) {
                        ("B", "10") => CallerId {
                            number_absent: Some(Absence::Private),
                            ..CallerId::default()
                        },
                        ("B", _) => CallerId {
                            number_absent: Some(Absence::Unavailable),
                            ..CallerId::default()
                        },
                        (_, n) => CallerId {
                            number: Some(n.to_string()),
                            ..CallerId::default()
                        },
                    });
                }
                d if d.is_ascii_digit() && !self.digits.is_empty() => self.digits.push(d),
                _ => {}
            }
        }
        done
    }
}

/// The decoder for a standard.
#[derive(Debug, Clone)]
// One per trunk, made when ringing starts: size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum CallerIdDecoder {
    /// Bell 202 or V.23.
    Fsk(FskDecoder),
    /// DTMF.
    Dtmf(DtmfClipDecoder),
}

impl CallerIdDecoder {
    /// A decoder for `standard` at `sample_rate`.
    pub fn new(standard: CallerIdStandard, sample_rate: u32) -> CallerIdDecoder {
        match standard {
            CallerIdStandard::Dtmf => CallerIdDecoder::Dtmf(DtmfClipDecoder::new(sample_rate)),
            fsk => CallerIdDecoder::Fsk(FskDecoder::new(fsk, sample_rate)),
        }
    }

    /// Feeds samples; a result once a message is complete.
    pub fn process(&mut self, samples: &[i16]) -> Option<Result<CallerId, CidError>> {
        match self {
            CallerIdDecoder::Fsk(d) => d.process(samples),
            CallerIdDecoder::Dtmf(d) => d.process(samples).map(Ok),
        }
    }

    /// Starts over.
    pub fn reset(&mut self) {
        match self {
            CallerIdDecoder::Fsk(d) => d.reset(),
            CallerIdDecoder::Dtmf(d) => d.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> CallerId {
        CallerId {
            number: Some("13812345678".into()),
            name: Some("ZHANG WEI".into()),
            datetime: Some("11241030".into()),
            ..CallerId::default()
        }
    }

    #[test]
    fn messages_round_trip_and_check_their_sum() {
        let m = encode_message(&cid(), MessageFormat::Mdmf);
        assert_eq!(m[0], 0x80);
        assert_eq!(m.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        assert_eq!(parse_message(&m).unwrap(), cid());
        let s = encode_message(&cid(), MessageFormat::Sdmf);
        assert_eq!(&s[..2], &[0x04, 19]);
        let got = parse_message(&s).unwrap();
        assert_eq!(got.number.as_deref(), Some("13812345678"));
        assert_eq!(got.name, None);
        let private = CallerId {
            number_absent: Some(Absence::Private),
            name_absent: Some(Absence::Private),
            ..CallerId::default()
        };
        for f in [MessageFormat::Sdmf, MessageFormat::Mdmf] {
            let p = parse_message(&encode_message(&private, f)).unwrap();
            assert_eq!(p.number_absent, Some(Absence::Private));
        }
    }

    #[test]
    fn every_error_names_what_is_wrong() {
        let mut m = encode_message(&cid(), MessageFormat::Mdmf);
        m[5] ^= 0x10;
        assert!(matches!(parse_message(&m), Err(CidError::Checksum { .. })));
        let m = encode_message(&cid(), MessageFormat::Mdmf);
        assert_eq!(
            parse_message(&m[..10]),
            Err(CidError::Truncated {
                got: 10,
                want: m.len()
            })
        );
        let mut bad = vec![0x06, 1, 0x42];
        bad.push(
            bad.iter()
                .fold(0u8, |a, &b| a.wrapping_add(b))
                .wrapping_neg(),
        );
        assert_eq!(parse_message(&bad), Err(CidError::UnknownType(0x06)));
        // A parameter claiming more than the message holds.
        let mut p = vec![0x80, 3, 0x02, 9, b'1'];
        p.push(p.iter().fold(0u8, |a, &b| a.wrapping_add(b)).wrapping_neg());
        assert_eq!(
            parse_message(&p),
            Err(CidError::BadParameter { kind: 2, len: 9 })
        );
        let mut ctl = vec![0x80, 4, 0x02, 2, b'1', 0x07];
        ctl.push(
            ctl.iter()
                .fold(0u8, |a, &b| a.wrapping_add(b))
                .wrapping_neg(),
        );
        assert_eq!(
            parse_message(&ctl),
            Err(CidError::NotPrintable { field: "number" })
        );
        // Unknown parameters are skipped.
        let mut skip = vec![0x80, 7, 0x33, 1, b'x', 0x02, 2, b'4', b'2'];
        skip.push(
            skip.iter()
                .fold(0u8, |a, &b| a.wrapping_add(b))
                .wrapping_neg(),
        );
        assert_eq!(parse_message(&skip).unwrap().number.as_deref(), Some("42"));
        assert!("smoke".parse::<CallerIdStandard>().is_err());
    }

    #[test]
    fn fsk_decodes_what_it_encodes() {
        for std in [CallerIdStandard::Bell202, CallerIdStandard::V23] {
            let audio = generate(std, &cid(), MessageFormat::Mdmf, 8000);
            let mut d = CallerIdDecoder::new(std, 8000);
            let got = audio.chunks(160).find_map(|f| d.process(f));
            assert_eq!(got, Some(Ok(cid())), "{std}");
        }
    }
}
