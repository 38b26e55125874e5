//! Reading WAV files of telephone audio (prompts, scenario sound files).
//!
//! Files are checked when they are loaded, so a wrong file is a clear error
//! at start-up rather than noise in a caller's ear.
//!
//! Prompts come as 16-bit PCM or, as telephony vendors and recording studios
//! usually deliver them, as 8-bit G.711 A-law or µ-law. hound reads the
//! first but not the second (WAVE format tags 6 and 7), so [`load_prompt`]
//! walks the RIFF chunks itself and decodes G.711 with [`crate::dsp::g711`].

use std::path::Path;

use crate::dsp::g711::Law;

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// hound (in [`load_pcm16_mono`]) could not open or read the file.
    #[error("not a readable WAV file: {0}")]
    Read(#[from] hound::Error),
    /// Reading or writing the file failed.
    #[error("file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a WAV file at all.
    #[error("not a RIFF/WAVE file: {0}")]
    NotWave(String),
    /// A WAV file whose chunks do not add up.
    #[error("broken WAV file: {0}")]
    Malformed(String),
    /// The data chunk is longer than what is left of the file (a cut-off copy
    /// or download).
    #[error("data chunk is truncated: header says {header} bytes, file has {actual}")]
    Truncated {
        /// Length the chunk header announces.
        header: u64,
        /// Bytes actually present after the header.
        actual: u64,
    },
    /// Valid WAV, but an encoding a phone line cannot play.
    #[error("unsupported encoding: {0}; prompts must be 16-bit PCM or 8-bit A-law/µ-law")]
    Encoding(String),
    /// Valid WAV, wrong format for a phone line.
    #[error(
        "unsupported format: {0}; prompts must be 8000 Hz mono, 16-bit PCM or 8-bit A-law/µ-law"
    )]
    Format(String),
    /// No audio in the file.
    #[error("the file holds no audio")]
    Empty,
}

/// Loads an 8 kHz mono 16-bit PCM WAV file into samples.
pub fn load_pcm16_mono(path: &Path, sample_rate: u32) -> Result<Vec<i16>, WavError> {
    let reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != sample_rate
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Format(format!(
            "{} Hz, {} channel(s), {}-bit {:?}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()?;
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(samples)
}

/// Loads a prompt: a mono WAV file at `sample_rate`, either 16-bit PCM or
/// 8-bit A-law or µ-law, as 16-bit samples.
pub fn load_prompt(path: &Path, sample_rate: u32) -> Result<Vec<i16>, WavError> {
    let bytes = std::fs::read(path)?;
    let Riff { fmt, data } = parse_riff(&bytes)?;
    let (name, law) = match fmt.tag {
        TAG_PCM => ("PCM", None),
        TAG_ALAW => ("A-law", Some(Law::Alaw)),
        TAG_MULAW => ("µ-law", Some(Law::Ulaw)),
        tag => return Err(WavError::Encoding(encoding_name(tag, fmt.bits))),
    };
    let want_bits = if law.is_some() { 8 } else { 16 };
    let mut wrong = Vec::new();
    if fmt.channels != 1 {
        wrong.push(format!("with {} channels", fmt.channels));
    }
    if fmt.rate != sample_rate {
        wrong.push(format!("at {} Hz", fmt.rate));
    }
    if fmt.bits != want_bits {
        wrong.push(format!("with {}-bit samples", fmt.bits));
    }
    if !wrong.is_empty() {
        return Err(WavError::Format(format!("{name} WAV {}", wrong.join(", "))));
    }
    if data.is_empty() {
        return Err(WavError::Empty);
    }
    match law {
        // Not hound: it misses the pad byte after an odd-sized chunk (3.5.1),
        // so a LIST chunk of odd length before the audio breaks it.
        None if data.len() % 2 == 1 => Err(WavError::Malformed(format!(
            "the 16-bit PCM data chunk is {} bytes, not a whole number of samples",
            data.len()
        ))),
        None => Ok(data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()),
        Some(law) => {
            let mut samples = vec![0i16; data.len()];
            law.decode(data, &mut samples);
            Ok(samples)
        }
    }
}

/// Writes samples as a mono 8-bit A-law or µ-law WAV (tests, tools).
pub fn write_g711_mono(
    path: &Path,
    sample_rate: u32,
    law: Law,
    samples: &[i16],
) -> Result<(), WavError> {
    let too_long = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} samples are too many for a WAV file", samples.len()),
        )
    };
    let n = u32::try_from(samples.len()).map_err(|_| too_long())?;
    let pad = n & 1;
    // RIFF form type + fmt (18) + fact (4) + data, each with its 8-byte header.
    let riff_len = (4 + 26 + 12 + 8 + u64::from(n) + u64::from(pad))
        .try_into()
        .map_err(|_| too_long())?;
    let mut f = Vec::with_capacity(8 + samples.len() + 58);
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&u32::to_le_bytes(riff_len));
    f.extend_from_slice(b"WAVE");
    // Non-PCM formats carry cbSize (0 here) and a fact chunk with the sample
    // count, as the RIFF spec asks and sox writes.
    f.extend_from_slice(b"fmt ");
    f.extend_from_slice(&18u32.to_le_bytes());
    f.extend_from_slice(&format_tag(law).to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes()); // channels
    f.extend_from_slice(&sample_rate.to_le_bytes());
    f.extend_from_slice(&sample_rate.to_le_bytes()); // bytes per second
    f.extend_from_slice(&1u16.to_le_bytes()); // block align
    f.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    f.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    f.extend_from_slice(b"fact");
    f.extend_from_slice(&4u32.to_le_bytes());
    f.extend_from_slice(&n.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&n.to_le_bytes());
    let start = f.len();
    f.resize(start + samples.len(), 0);
    law.encode(samples, &mut f[start..]);
    if pad == 1 {
        f.push(0);
    }
    std::fs::write(path, f)?;
    Ok(())
}

/// Writes samples as an 8 kHz mono 16-bit PCM WAV (tests, tools).
pub fn write_pcm16_mono(path: &Path, sample_rate: u32, samples: &[i16]) -> Result<(), WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

const TAG_PCM: u16 = 1;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

fn format_tag(law: Law) -> u16 {
    match law {
        Law::Alaw => TAG_ALAW,
        Law::Ulaw => TAG_MULAW,
    }
}

fn encoding_name(tag: u16, bits: u16) -> String {
    match tag {
        2 => "Microsoft ADPCM".into(),
        3 => format!("IEEE float {bits}-bit"),
        0x11 => "IMA ADPCM".into(),
        0x31 => "GSM 6.10".into(),
        0x55 => "MP3".into(),
        0x64 => "G.726 ADPCM".into(),
        _ => format!("WAVE format tag {tag:#06x}, {bits}-bit"),
    }
}

/// The fmt chunk, with WAVE_FORMAT_EXTENSIBLE resolved to its sub-format.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

#[derive(Debug)]
struct Riff<'a> {
    fmt: Fmt,
    data: &'a [u8],
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Finds the fmt and data chunks, skipping any others (LIST, fact, cue…).
fn parse_riff(bytes: &[u8]) -> Result<Riff<'_>, WavError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave(match bytes.len() {
            0 => "the file is empty".into(),
            n if n < 12 => format!("the file is only {n} bytes long"),
            _ if &bytes[..4] == b"RIFF" => {
                format!("a RIFF file of type \"{}\"", bytes[8..12].escape_ascii())
            }
            _ => format!("it starts with \"{}\"", bytes[..12].escape_ascii()),
        }));
    }
    let len = bytes.len() as u64;
    // A RIFF length beyond the file (streamed, or cut off) is not trusted;
    // one short of it leaves trailing bytes (tags, junk) outside the walk.
    let riff_end = u64::from(le32(bytes, 4)) + 8;
    let end = if riff_end <= len { riff_end } else { len };
    let (mut fmt, mut data) = (None, None);
    let mut pos = 12u64;
    while pos + 8 <= end && (fmt.is_none() || data.is_none()) {
        let at = pos as usize;
        let id = &bytes[at..at + 4];
        let size = u64::from(le32(bytes, at + 4));
        let body = pos + 8;
        if id == b"data" {
            if body + size > len {
                return Err(WavError::Truncated {
                    header: size,
                    actual: len - body,
                });
            }
            data.get_or_insert(&bytes[body as usize..(body + size) as usize]);
        } else if body + size > end {
            return Err(WavError::Malformed(format!(
                "the \"{}\" chunk at byte {pos} says {size} bytes, but only {} are left",
                id.escape_ascii(),
                end - body
            )));
        } else if id == b"fmt " && fmt.is_none() {
            fmt = Some(parse_fmt(&bytes[body as usize..(body + size) as usize])?);
        }
        // Chunks are word-aligned: an odd-sized one is followed by a pad byte.
        pos = body + size + (size & 1);
    }
    match (fmt, data) {
        (Some(fmt), Some(data)) => Ok(Riff { fmt, data }),
        (None, _) => Err(WavError::Malformed("no fmt chunk".into())),
        (_, None) => Err(WavError::Malformed("no data chunk".into())),
    }
}

fn parse_fmt(b: &[u8]) -> Result<Fmt, WavError> {
    if b.len() < 16 {
        return Err(WavError::Malformed(format!(
            "the fmt chunk is {} bytes, needs at least 16",
            b.len()
        )));
    }
    let mut tag = le16(b, 0);
    if tag == TAG_EXTENSIBLE {
        // The sub-format GUID starts with the plain format tag.
        if b.len() < 40 {
            return Err(WavError::Malformed(format!(
                "the WAVE_FORMAT_EXTENSIBLE fmt chunk is {} bytes, needs 40",
                b.len()
            )));
        }
        tag = le16(b, 24);
    }
    Ok(Fmt {
        tag,
        channels: le16(b, 2),
        rate: le32(b, 4),
        bits: le16(b, 14),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::dsp::g711;

    /// A scratch directory removed when the test ends, pass or fail.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("callbox-wav-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A RIFF/WAVE file of the given chunks, padded as the spec says.
    fn riff(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut f = b"RIFF".to_vec();
        f.extend_from_slice(&(body.len() as u32).to_le_bytes());
        f.extend_from_slice(&body);
        f
    }

    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    /// A sweep over the whole range, odd in length so the data chunk needs
    /// a pad byte in G.711.
    fn sweep() -> Vec<i16> {
        (0..801).map(|i| (i * 81 - 32400) as i16).collect()
    }

    fn companded(law: Law, x: &[i16]) -> Vec<i16> {
        let mut codes = vec![0u8; x.len()];
        let mut back = vec![0i16; x.len()];
        law.encode(x, &mut codes);
        law.decode(&codes, &mut back);
        back
    }

    #[test]
    fn round_trip_and_format_errors() {
        let dir = Dir::new("pcm16");
        let ok = dir.0.join("ok.wav");
        write_pcm16_mono(&ok, 8000, &[1, -2, 3]).unwrap();
        assert_eq!(load_pcm16_mono(&ok, 8000).unwrap(), vec![1, -2, 3]);
        let wrong_rate = dir.0.join("rate.wav");
        write_pcm16_mono(&wrong_rate, 16000, &[0; 10]).unwrap();
        let e = load_pcm16_mono(&wrong_rate, 8000).unwrap_err();
        assert!(e.to_string().contains("16000 Hz"), "{e}");
        let junk = dir.file("junk.wav", b"this is not audio");
        assert!(matches!(
            load_pcm16_mono(&junk, 8000),
            Err(WavError::Read(_))
        ));
    }

    #[test]
    fn prompts_round_trip_in_pcm_and_both_laws() {
        let dir = Dir::new("round-trip");
        let x = sweep();
        let pcm = dir.0.join("pcm.wav");
        write_pcm16_mono(&pcm, 8000, &x).unwrap();
        assert_eq!(load_prompt(&pcm, 8000).unwrap(), x);
        for law in [Law::Alaw, Law::Ulaw] {
            let p = dir.0.join(format!("{law}.wav"));
            write_g711_mono(&p, 8000, law, &x).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(bytes.len(), 58 + x.len() + 1, "header, data, pad byte");
            assert_eq!(le32(&bytes, 4) as usize, bytes.len() - 8);
            assert_eq!(load_prompt(&p, 8000).unwrap(), companded(law, &x), "{law}");
            // Many writers leave out the last pad byte; that is harmless.
            let unpadded = dir.file("unpadded.wav", &bytes[..bytes.len() - 1]);
            assert_eq!(load_prompt(&unpadded, 8000).unwrap(), companded(law, &x));
        }
    }

    #[test]
    fn truncated_data_chunk_says_how_much_is_missing() {
        let dir = Dir::new("truncated");
        let p = dir.0.join("a.wav");
        write_g711_mono(&p, 8000, Law::Alaw, &sweep()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let cut = dir.file("cut.wav", &bytes[..bytes.len() - 101]);
        let e = load_prompt(&cut, 8000).unwrap_err();
        assert!(
            matches!(
                e,
                WavError::Truncated {
                    header: 801,
                    actual: 701
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "data chunk is truncated: header says 801 bytes, file has 701"
        );
        // The same for PCM, which hound alone would report less plainly.
        let pcm = dir.0.join("pcm.wav");
        write_pcm16_mono(&pcm, 8000, &[7; 100]).unwrap();
        let bytes = std::fs::read(&pcm).unwrap();
        let cut = dir.file("cut-pcm.wav", &bytes[..bytes.len() - 50]);
        let e = load_prompt(&cut, 8000).unwrap_err().to_string();
        assert_eq!(
            e,
            "data chunk is truncated: header says 200 bytes, file has 150"
        );
    }

    #[test]
    fn wrong_channels_rate_or_width_are_named() {
        let dir = Dir::new("format");
        let cases: [(Vec<u8>, &str); 5] = [
            (fmt(6, 2, 8000, 8), "A-law WAV with 2 channels"),
            (fmt(7, 1, 16000, 8), "µ-law WAV at 16000 Hz"),
            (fmt(1, 2, 44100, 16), "PCM WAV with 2 channels, at 44100 Hz"),
            (fmt(1, 1, 8000, 8), "PCM WAV with 8-bit samples"),
            (fmt(6, 1, 8000, 16), "A-law WAV with 16-bit samples"),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            let p = dir.file(
                &format!("{i}.wav"),
                &riff(&[(b"fmt ", f), (b"data", &[0; 64])]),
            );
            let e = load_prompt(&p, 8000).unwrap_err();
            assert!(matches!(e, WavError::Format(_)), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!(
                    "unsupported format: {want}; \
                     prompts must be 8000 Hz mono, 16-bit PCM or 8-bit A-law/µ-law"
                )
            );
        }
        let p = dir.0.join("16k.wav");
        write_g711_mono(&p, 16000, Law::Ulaw, &[0; 10]).unwrap();
        let e = load_prompt(&p, 8000).unwrap_err().to_string();
        assert!(e.contains("µ-law WAV at 16000 Hz"), "{e}");
    }

    #[test]
    fn other_encodings_are_named() {
        let dir = Dir::new("encoding");
        let float = dir.file(
            "f.wav",
            &riff(&[(b"fmt ", &fmt(3, 1, 8000, 32)), (b"data", &[0; 16])]),
        );
        assert_eq!(
            load_prompt(&float, 8000).unwrap_err().to_string(),
            "unsupported encoding: IEEE float 32-bit; \
             prompts must be 16-bit PCM or 8-bit A-law/µ-law"
        );
        let gsm = dir.file(
            "g.wav",
            &riff(&[(b"fmt ", &fmt(0x31, 1, 8000, 0)), (b"data", &[0; 16])]),
        );
        let e = load_prompt(&gsm, 8000).unwrap_err();
        assert!(
            matches!(&e, WavError::Encoding(s) if s == "GSM 6.10"),
            "{e:?}"
        );
    }

    #[test]
    fn junk_and_empty_files_are_not_wave() {
        let dir = Dir::new("junk");
        let cases: [(&[u8], &str); 4] = [
            (b"this is not audio", "it starts with \"this is not \""),
            (b"", "the file is empty"),
            (b"RIFF", "the file is only 4 bytes long"),
            (b"RIFF\x04\0\0\0AVI ", "a RIFF file of type \"AVI \""),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            let e = load_prompt(&dir.file(&format!("{i}.wav"), bytes), 8000).unwrap_err();
            assert!(matches!(e, WavError::NotWave(_)), "{e:?}");
            assert_eq!(e.to_string(), format!("not a RIFF/WAVE file: {want}"));
        }
        let missing = dir.0.join("missing.wav");
        assert!(matches!(load_prompt(&missing, 8000), Err(WavError::Io(_))));
    }

    #[test]
    fn other_chunks_before_data_are_skipped() {
        let dir = Dir::new("list");
        // An odd-sized LIST chunk, so the pad byte after it matters too.
        let list = b"INFOINAM\x05\0\0\0helo\0";
        let codes = [0xD5u8, 0x2A, 0xAA, 0x55, 0x80];
        let alaw = riff(&[
            (b"fmt ", &fmt(6, 1, 8000, 8)),
            (b"LIST", list),
            (b"fact", &5u32.to_le_bytes()),
            (b"data", &codes),
            (b"cue ", &[0; 4]),
        ]);
        let p = dir.file("a.wav", &alaw);
        let want: Vec<i16> = codes.iter().map(|&c| g711::alaw_decode(c)).collect();
        assert_eq!(load_prompt(&p, 8000).unwrap(), want);

        let pcm_data: Vec<u8> = [5i16, -6, 7].iter().flat_map(|s| s.to_le_bytes()).collect();
        let pcm = riff(&[
            (b"LIST", list),
            (b"fmt ", &fmt(1, 1, 8000, 16)),
            (b"LIST", list),
            (b"data", &pcm_data),
        ]);
        let p = dir.file("p.wav", &pcm);
        assert_eq!(load_prompt(&p, 8000).unwrap(), vec![5, -6, 7]);
    }

    #[test]
    fn extensible_fmt_uses_its_sub_format() {
        let dir = Dir::new("extensible");
        let mut f = fmt(TAG_EXTENSIBLE, 1, 8000, 8);
        f.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        f.extend_from_slice(&8u16.to_le_bytes()); // valid bits
        f.extend_from_slice(&4u32.to_le_bytes()); // channel mask: centre
        f.extend_from_slice(&7u16.to_le_bytes()); // sub-format GUID: µ-law …
        f.extend_from_slice(b"\0\0\0\0\x10\0\x80\0\0\xAA\0\x38\x9B\x71");
        let p = dir.file("x.wav", &riff(&[(b"fmt ", &f), (b"data", &[0x00, 0xFF])]));
        assert_eq!(load_prompt(&p, 8000).unwrap(), vec![-32124, 0]);
    }

    #[test]
    fn broken_chunk_structure_is_reported() {
        let dir = Dir::new("broken");
        let cases: [(Vec<u8>, &str); 4] = [
            (riff(&[(b"data", &[0; 4])]), "no fmt chunk"),
            (riff(&[(b"fmt ", &fmt(6, 1, 8000, 8))]), "no data chunk"),
            (
                riff(&[(b"fmt ", &fmt(6, 1, 8000, 8)[..12]), (b"data", &[0; 4])]),
                "the fmt chunk is 12 bytes, needs at least 16",
            ),
            (
                {
                    let mut f = riff(&[(b"fmt ", &fmt(6, 1, 8000, 8)), (b"LIST", &[0; 8])]);
                    f.truncate(f.len() - 4);
                    f
                },
                "the \"LIST\" chunk at byte 36 says 8 bytes, but only 4 are left",
            ),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            let e = load_prompt(&dir.file(&format!("{i}.wav"), bytes), 8000).unwrap_err();
            assert_eq!(e.to_string(), format!("broken WAV file: {want}"), "{e:?}");
        }
        let odd = riff(&[(b"fmt ", &fmt(1, 1, 8000, 16)), (b"data", &[1, 2, 3])]);
        assert_eq!(
            load_prompt(&dir.file("odd.wav", &odd), 8000)
                .unwrap_err()
                .to_string(),
            "broken WAV file: the 16-bit PCM data chunk is 3 bytes, not a whole number of samples"
        );
        let empty = dir.file(
            "e.wav",
            &riff(&[(b"fmt ", &fmt(7, 1, 8000, 8)), (b"data", &[])]),
        );
        assert!(matches!(load_prompt(&empty, 8000), Err(WavError::Empty)));
    }

    /// G.711 files made by another program: sox, if it is installed.
    #[test]
    fn sox_made_g711_prompts_load() {
        if std::process::Command::new("sox")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("sox is not installed; skipping the sox interoperability test");
            return;
        }
        let dir = Dir::new("sox");
        let mut tone = vec![0i16; 4000];
        crate::dsp::dtmf::ToneGen::dtmf('5', 8000, -6.0)
            .unwrap()
            .fill(&mut tone);
        // Silence and full scale at the end, the edges of both laws.
        tone.extend([0, -1, 1, 32767, -32768, 0]);
        let src = dir.0.join("tone.wav");
        write_pcm16_mono(&src, 8000, &tone).unwrap();
        for (law, enc) in [(Law::Alaw, "a-law"), (Law::Ulaw, "u-law")] {
            let out = dir.0.join(format!("{enc}.wav"));
            // -D: no dither, so sox quantises the very samples we wrote.
            let st = std::process::Command::new("sox")
                .arg("-D")
                .arg(&src)
                .args(["-e", enc])
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "sox {enc} failed");
            let got = load_prompt(&out, 8000).unwrap();
            let want = companded(law, &tone);
            assert_eq!(got.len(), want.len());
            // sox rounds samples to 13 (A-law) or 14 (µ-law) bits before
            // companding where G.711's reference code truncates (and negates
            // where it complements, for µ-law), so a sample near a decision
            // value may come out one level apart.
            let mut levels: Vec<i16> = (0..=255).map(|c| law.decode_sample(c)).collect();
            levels.sort_unstable();
            levels.dedup();
            let level = |v: i16| levels.binary_search(&v).unwrap() as i64;
            let mut differ = 0;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (level(g) - level(w)).abs() <= 1,
                    "{enc} sample {i} ({}): sox {g}, ours {w}",
                    tone[i]
                );
                differ += usize::from(g != w);
            }
            assert!(differ * 10 < got.len(), "{enc}: {differ} samples differ");
        }
    }
}
