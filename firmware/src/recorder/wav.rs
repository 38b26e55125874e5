//! Crash-safe WAV files for call recordings.
//!
//! Recordings go to an SD card, and the box may lose power or be killed at
//! any moment. A recording must then still open in standard readers (hound,
//! sox, whatever headquarters plays it with), with all the audio that reached
//! the card.
//!
//! The layout makes that cheap. [`WavWriter`] writes a fixed-size header
//! first, the `data` chunk always last, and audio only ever appended; the
//! recorder rewrites the header's sizes in place ([`WavWriter::update_header`])
//! from time to time and syncs when it chooses. A crash leaves a file whose
//! header sizes are stale (often 0, the normal case) but whose audio is all
//! there: the data length is simply the file length minus the header. At
//! start-up the box runs [`repair`] on every recording left open, which takes
//! the sizes from the file length, cuts a trailing partial sample frame and
//! rewrites the header.
//!
//! Formats are 16-bit PCM and 8-bit G.711 A-law or µ-law ([`Format`]), with
//! any number of interleaved channels. G.711 files carry an 18-byte `fmt`
//! chunk and a `fact` chunk, as the WAV spec asks of non-PCM formats.
//!
//! No pad byte follows an odd-sized `data` chunk: it would have to move on
//! every append, and readers do not need it for the last chunk. The RIFF size
//! is therefore the file length minus 8.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use callbox_hal::dsp::g711;

/// Mode of a recording: the recorder writes it, the uploader's group reads it.
const RECORDING_MODE: u32 = 0o640;
/// How much of a file [`repair`] reads looking for the `data` chunk. Our
/// headers are 44 or 58 bytes; this leaves room for chunks other tools add.
const MAX_HEADER_SCAN: u64 = 4096;

const TAG_PCM: u16 = 1;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;

/// Sample encoding of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Signed 16-bit little-endian linear PCM.
    Pcm16,
    /// 8-bit G.711 A-law.
    Alaw,
    /// 8-bit G.711 µ-law.
    Ulaw,
}

impl Format {
    /// The name used in config and logs: `pcm16`, `alaw` or `ulaw`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Pcm16 => "pcm16",
            Format::Alaw => "alaw",
            Format::Ulaw => "ulaw",
        }
    }

    /// Bytes one sample of one channel takes in the file.
    pub fn bytes_per_sample(self) -> u16 {
        match self {
            Format::Pcm16 => 2,
            Format::Alaw | Format::Ulaw => 1,
        }
    }

    /// Appends the encoded samples (little-endian PCM, or G.711 bytes) to
    /// `out`.
    ///
    /// Allocates only if `out` has to grow, so a buffer reused across frames
    /// stops allocating once it is large enough.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            Format::Pcm16 => {
                // Sized once, then written in place (no length update per
                // sample): it runs for every frame of every message.
                let at = out.len();
                out.resize(at + std::mem::size_of_val(samples), 0);
                for (o, s) in out[at..].chunks_exact_mut(2).zip(samples) {
                    o.copy_from_slice(&s.to_le_bytes());
                }
            }
            // An exact-size iterator: `extend` reserves once.
            Format::Alaw => out.extend(samples.iter().map(|&s| g711::alaw_encode(s))),
            Format::Ulaw => out.extend(samples.iter().map(|&s| g711::ulaw_encode(s))),
        }
    }

    /// Appends a stereo frame: `left` and `right` interleaved sample by
    /// sample, a `right` shorter than `left` padded with silence. Encodes
    /// straight into `out`, with no buffer in between (it runs for every
    /// frame of every recorded call).
    pub fn encode_stereo(self, left: &[i16], right: &[i16], out: &mut Vec<u8>) {
        let n = left.len();
        let right = &right[..right.len().min(n)];
        let width = 2 * usize::from(self.bytes_per_sample());
        let at = out.len();
        // Sized once, then written in place: no capacity check per sample.
        out.resize(at + n * width, 0);
        let dst = &mut out[at..];
        match self {
            Format::Pcm16 => {
                for (i, o) in dst.chunks_exact_mut(4).enumerate() {
                    let r = right.get(i).copied().unwrap_or(0);
                    o[..2].copy_from_slice(&left[i].to_le_bytes());
                    o[2..].copy_from_slice(&r.to_le_bytes());
                }
            }
            Format::Alaw => g711_stereo(g711::alaw_encode, left, right, dst),
            Format::Ulaw => g711_stereo(g711::ulaw_encode, left, right, dst),
        }
    }

    /// Length of the header [`header`] writes: 44 bytes for PCM, 58 for
    /// G.711 (`fmt` with `cbSize`, plus a `fact` chunk).
    pub fn header_len(self) -> u64 {
        match self {
            Format::Pcm16 => 44,
            Format::Alaw | Format::Ulaw => 58,
        }
    }

    fn tag(self) -> u16 {
        match self {
            Format::Pcm16 => TAG_PCM,
            Format::Alaw => TAG_ALAW,
            Format::Ulaw => TAG_MULAW,
        }
    }

    fn bits_per_sample(self) -> u16 {
        self.bytes_per_sample() * 8
    }
}

/// Bytes of one sample frame (one sample of every channel). Computed in u32:
/// the WAV field is u16, and 65535 channels of PCM16 overflow it.
fn block_align(format: Format, channels: u16) -> u32 {
    u32::from(format.bytes_per_sample()) * u32::from(channels)
}

/// The most audio a header can describe: the RIFF size (header after its
/// first 8 bytes, plus data) must fit in a u32. Whole frames only.
fn max_data_len(format: Format, channels: u16) -> u64 {
    let room = u64::from(u32::MAX) - (format.header_len() - 8);
    match u64::from(block_align(format, channels)) {
        0 => room,
        align => room - room % align,
    }
}

fn duration_ms(format: Format, channels: u16, sample_rate: u32, data_len: u64) -> u64 {
    let align = u64::from(block_align(format, channels));
    if align == 0 || sample_rate == 0 {
        return 0;
    }
    let frames = u128::from(data_len / align);
    u64::try_from(frames * 1000 / u128::from(sample_rate)).unwrap_or(u64::MAX)
}

/// Interleaves and encodes a G.711 stereo frame into `dst` (generic over
/// the encoder so that it inlines: this runs for every sample recorded).
#[inline]
fn g711_stereo(enc: impl Fn(i16) -> u8, left: &[i16], right: &[i16], dst: &mut [u8]) {
    let (both, tail) = dst.split_at_mut(right.len() * 2);
    for ((o, &l), &r) in both.chunks_exact_mut(2).zip(left).zip(right) {
        o[0] = enc(l);
        o[1] = enc(r);
    }
    let silence = enc(0);
    for (o, &l) in tail.chunks_exact_mut(2).zip(&left[right.len()..]) {
        o[0] = enc(l);
        o[1] = silence;
    }
}

/// The fixed-size header for `data_len` bytes of audio (RIFF size, fmt,
/// [fact with sample-frame count], data size).
///
/// Sizes saturate: a `data_len` beyond what a WAV header can describe
/// (about 4 GiB) is written as the largest whole number of frames that fits.
/// Out-of-range `channels` or `sample_rate` saturate too rather than panic;
/// [`WavWriter::create`] rejects them.
pub fn header(format: Format, channels: u16, sample_rate: u32, data_len: u64) -> Vec<u8> {
    let data_len = data_len.min(max_data_len(format, channels));
    let align = block_align(format, channels);
    // Both fit in u32 after the clamp above.
    let data_size = u32::try_from(data_len).unwrap_or(u32::MAX);
    let riff_size = u32::try_from(format.header_len() - 8 + data_len).unwrap_or(u32::MAX);
    let frames = data_size.checked_div(align).unwrap_or(0);

    let mut h = Vec::with_capacity(58);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_size.to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    let fmt_size: u32 = if format == Format::Pcm16 { 16 } else { 18 };
    h.extend_from_slice(&fmt_size.to_le_bytes());
    h.extend_from_slice(&format.tag().to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&sample_rate.saturating_mul(align).to_le_bytes());
    h.extend_from_slice(&u16::try_from(align).unwrap_or(u16::MAX).to_le_bytes());
    h.extend_from_slice(&format.bits_per_sample().to_le_bytes());
    if format != Format::Pcm16 {
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&frames.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_size.to_le_bytes());
    h
}

/// A WAV file being written: header first, audio appended, header sizes
/// rewritten in place.
///
/// Dropping a writer without [`finish`](WavWriter::finish) leaves the header
/// as last updated, exactly like a crash; [`repair`] fixes such a file.
#[derive(Debug)]
pub struct WavWriter {
    /// Its cursor stays at `header_len + data_len`: audio is written there,
    /// and header updates use `pwrite`, which does not move it. Not opened
    /// with `O_APPEND`, under which Linux's `pwrite` would append the header.
    file: File,
    format: Format,
    channels: u16,
    sample_rate: u32,
    data_len: u64,
}

impl WavWriter {
    /// Creates `path` (which must not exist; mode 0o640 before the umask) and
    /// writes a header for 0 bytes of data.
    ///
    /// Fails with [`io::ErrorKind::AlreadyExists`] if `path` exists, and with
    /// [`io::ErrorKind::InvalidInput`] for 0 channels, a 0 Hz rate, or a
    /// frame size or byte rate a WAV header cannot hold.
    pub fn create(
        path: &Path,
        format: Format,
        channels: u16,
        sample_rate: u32,
    ) -> io::Result<WavWriter> {
        let align = block_align(format, channels);
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        if channels == 0 {
            return Err(invalid("a recording needs at least one channel".into()));
        }
        if sample_rate == 0 {
            return Err(invalid("sample rate 0 Hz".into()));
        }
        if u16::try_from(align).is_err() {
            return Err(invalid(format!(
                "{channels} channels of {} do not fit a WAV header",
                format.name()
            )));
        }
        if sample_rate.checked_mul(align).is_none() {
            return Err(invalid(format!(
                "{sample_rate} Hz × {channels} channels of {} do not fit a WAV header",
                format.name()
            )));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(RECORDING_MODE)
            .open(path)?;
        file.write_all(&header(format, channels, sample_rate, 0))?;
        Ok(WavWriter {
            file,
            format,
            channels,
            sample_rate,
            data_len: 0,
        })
    }

    /// Appends encoded audio bytes at the end of the file.
    ///
    /// One `write` per call (more only if the kernel writes short): the
    /// caller batches. On failure (a full card, typically) the file is cut
    /// back to where it was, so the audio stays aligned on sample frames and
    /// a later append may still succeed. Fails with
    /// [`io::ErrorKind::FileTooLarge`] rather than write audio the header
    /// cannot describe (about 4 GiB).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let before = self.data_len;
        let room = max_data_len(self.format, self.channels).saturating_sub(before);
        if bytes.len() as u64 > room {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "{} more bytes would exceed the {} bytes of audio a WAV file can hold",
                    bytes.len(),
                    max_data_len(self.format, self.channels)
                ),
            ));
        }
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            match self.file.write(rest) {
                Ok(0) => return self.roll_back(before, io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.data_len = before + done as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.roll_back(before, e),
            }
        }
        Ok(())
    }

    /// Cuts a partly written append off again and returns `err`. If even that
    /// fails, `data_len` keeps counting the bytes that are in the file, and
    /// [`repair`] will drop the partial frame.
    fn roll_back(&mut self, before: u64, err: io::Error) -> io::Result<()> {
        if self.data_len != before {
            let end = self.format.header_len() + before;
            if self.file.set_len(end).is_ok() && self.file.seek(SeekFrom::Start(end)).is_ok() {
                self.data_len = before;
            }
        }
        Err(err)
    }

    /// Rewrites the header's sizes for the data written so far: one `pwrite`
    /// at offset 0.
    ///
    /// Only whole sample frames are counted, so the header stays valid even
    /// if a failed append left part of a frame behind.
    pub fn update_header(&mut self) -> io::Result<()> {
        let align = u64::from(block_align(self.format, self.channels));
        let whole = self.data_len - self.data_len.checked_rem(align).unwrap_or(0);
        let h = header(self.format, self.channels, self.sample_rate, whole);
        self.file.write_all_at(&h, 0)
    }

    /// Flushes audio and header to the card (`fdatasync`).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Bytes of audio written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Duration of the whole sample frames written so far, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        duration_ms(self.format, self.channels, self.sample_rate, self.data_len)
    }

    /// The sample encoding.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The number of interleaved channels.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Writes the final header and syncs; returns the bytes of audio written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.update_header()?;
        self.sync()?;
        Ok(self.data_len)
    }
}

/// What repair found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The sample encoding.
    pub format: Format,
    /// The number of interleaved channels.
    pub channels: u16,
    /// Sample frames per second.
    pub sample_rate: u32,
    /// Bytes of audio in the file now.
    pub data_len: u64,
    /// Duration of the audio, in milliseconds.
    pub duration_ms: u64,
    /// Bytes cut from the end (a partial sample frame).
    pub truncated: u64,
    /// Whether the header had to be rewritten.
    pub rewritten: bool,
}

/// Why [`repair`] could not repair a file. The file is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Opening, reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file ends before its header is complete: it holds no audio.
    #[error("{path}: {len} bytes, shorter than a WAV header: no audio")]
    NoAudio {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Not a WAV file this firmware writes (`what` names what is wrong,
    /// e.g. "no RIFF tag at byte 0", "fmt chunk: format tag 3 not
    /// supported").
    #[error("{path}: not a recording WAV file: {what}")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// Repairs a recording left open by a crash.
///
/// Parses the RIFF header: `RIFF`/`WAVE`, a `fmt` chunk with tag 1 (PCM,
/// 16-bit), 6 (A-law, 8-bit) or 7 (µ-law, 8-bit), an optional `fact` chunk,
/// other chunks skipped, then the `data` chunk, which must be the last chunk:
/// everything after its header is taken as audio, whatever sizes the header
/// holds (0 and stale sizes are the normal crash case; a size larger than the
/// file happens when the header update reached the card and the audio did
/// not). Cuts a trailing partial sample frame, rewrites the RIFF size, the
/// fact count and the data size where they differ, and syncs (`fdatasync`),
/// also when nothing changed, since after a SIGKILL the audio may still be
/// only in the page cache.
///
/// Idempotent: a second run finds nothing to do. A file it rejects is left
/// untouched.
pub fn repair(path: &Path) -> Result<Repaired, RepairError> {
    let io_err = |source| RepairError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut head = Vec::new();
    (&file)
        .take(MAX_HEADER_SCAN)
        .read_to_end(&mut head)
        .map_err(io_err)?;

    let layout = parse_header(&head).map_err(|bad| match bad {
        // The header runs past what we read: if that is the whole file, it
        // was cut short; otherwise the data chunk is too far in to be ours.
        Bad::Short if head.len() as u64 == len => RepairError::NoAudio {
            path: path.to_owned(),
            len,
        },
        Bad::Short => RepairError::NotWav {
            path: path.to_owned(),
            what: format!("no data chunk in the first {MAX_HEADER_SCAN} bytes"),
        },
        Bad::NotWav(what) => RepairError::NotWav {
            path: path.to_owned(),
            what,
        },
    })?;
    let Layout {
        format,
        channels,
        sample_rate,
        fact_count_at,
        data_size_at,
    } = layout;
    let data_start = data_size_at as u64 + 4;

    let align = u64::from(block_align(format, channels));
    // Saturating: the file may have grown between metadata() and read.
    let present = len.saturating_sub(data_start);
    let truncated = present % align;
    let data_len = present - truncated;
    // Our writer never gets here; a file that does would need its audio cut,
    // which is not repair's call to make.
    let riff_size = u32::try_from(data_start - 8 + data_len).map_err(|_| RepairError::NotWav {
        path: path.to_owned(),
        what: format!("{data_len} bytes of audio, more than a WAV header can describe"),
    })?;
    // Fit, since the RIFF size does.
    let data_size = u32::try_from(data_len).unwrap_or(u32::MAX);
    let frames = u32::try_from(data_len / align).unwrap_or(u32::MAX);

    // `parse_header` has checked all three fields lie within `head`.
    let mut fixed = head[..data_start as usize].to_vec();
    fixed[4..8].copy_from_slice(&riff_size.to_le_bytes());
    if let Some(at) = fact_count_at {
        fixed[at..at + 4].copy_from_slice(&frames.to_le_bytes());
    }
    fixed[data_size_at..data_start as usize].copy_from_slice(&data_size.to_le_bytes());
    let rewritten = fixed[..] != head[..data_start as usize];

    if truncated > 0 {
        file.set_len(len - truncated).map_err(io_err)?;
    }
    if rewritten {
        file.write_all_at(&fixed, 0).map_err(io_err)?;
    }
    file.sync_data().map_err(io_err)?;

    Ok(Repaired {
        format,
        channels,
        sample_rate,
        data_len,
        duration_ms: duration_ms(format, channels, sample_rate, data_len),
        truncated,
        rewritten,
    })
}

/// Where the sizes of a recording's header are, and what it holds.
#[derive(Debug)]
struct Layout {
    format: Format,
    channels: u16,
    sample_rate: u32,
    /// Offset of the fact chunk's sample-frame count, if there is one.
    fact_count_at: Option<usize>,
    /// Offset of the data chunk's size; the audio starts 4 bytes later.
    data_size_at: usize,
}

#[derive(Debug)]
enum Bad {
    /// The bytes end before the header does.
    Short,
    /// The bytes there are wrong.
    NotWav(String),
}

fn parse_header(buf: &[u8]) -> Result<Layout, Bad> {
    expect_tag(buf, 0, b"RIFF")?;
    // The RIFF size at 4 is stale after a crash: not checked.
    expect_tag(buf, 8, b"WAVE")?;

    let mut fmt = None;
    let mut fact_count_at = None;
    let mut pos = 12usize;
    loop {
        let id = read::<4>(buf, pos)?;
        if !id.iter().all(|b| (0x20..=0x7E).contains(b)) {
            return Err(Bad::NotWav(format!(
                "no chunk id at byte {pos} (bytes {})",
                hex(&id)
            )));
        }
        let size = u32::from_le_bytes(read::<4>(buf, pos + 4)?);
        let body = pos + 8;
        match &id {
            b"data" => {
                let Some((format, channels, sample_rate)) = fmt else {
                    return Err(Bad::NotWav(format!(
                        "data chunk at byte {pos} comes before any fmt chunk"
                    )));
                };
                // The audio follows the size just read: the header is complete.
                return Ok(Layout {
                    format,
                    channels,
                    sample_rate,
                    fact_count_at,
                    data_size_at: pos + 4,
                });
            }
            b"fmt " => {
                if fmt.is_some() {
                    return Err(Bad::NotWav(format!("a second fmt chunk at byte {pos}")));
                }
                if size < 16 {
                    return Err(Bad::NotWav(format!(
                        "fmt chunk: {size} bytes, at least 16 needed"
                    )));
                }
                fmt = Some(parse_fmt(&read::<16>(buf, body)?)?);
            }
            b"fact" => {
                if size < 4 {
                    return Err(Bad::NotWav(format!(
                        "fact chunk: {size} bytes, at least 4 needed"
                    )));
                }
                read::<4>(buf, body)?;
                fact_count_at = Some(body);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        let next = body as u64 + u64::from(size) + u64::from(size & 1);
        pos = match usize::try_from(next) {
            Ok(next) if next <= buf.len() => next,
            _ => {
                // Past the end of the file or of the header scan: whatever it
                // is, no data chunk of ours follows it.
                let id = String::from_utf8_lossy(&id);
                return Err(Bad::NotWav(format!(
                    "{id} chunk at byte {pos} ({size} bytes) runs past the header"
                )));
            }
        };
    }
}

/// Checks the 16 bytes every fmt chunk starts with.
fn parse_fmt(f: &[u8; 16]) -> Result<(Format, u16, u32), Bad> {
    let u16_at = |at: usize| u16::from_le_bytes([f[at], f[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
    let (tag, channels, rate, byte_rate, align, bits) = (
        u16_at(0),
        u16_at(2),
        u32_at(4),
        u32_at(8),
        u16_at(12),
        u16_at(14),
    );
    let format = match tag {
        TAG_PCM => Format::Pcm16,
        TAG_ALAW => Format::Alaw,
        TAG_MULAW => Format::Ulaw,
        _ => {
            return Err(Bad::NotWav(format!(
                "fmt chunk: format tag {tag} not supported"
            )));
        }
    };
    let bad = |what: String| Err(Bad::NotWav(format!("fmt chunk: {what}")));
    if bits != format.bits_per_sample() {
        return bad(format!(
            "{bits} bits per sample with format tag {tag} not supported"
        ));
    }
    if channels == 0 {
        return bad("0 channels".into());
    }
    if rate == 0 {
        return bad("sample rate 0 Hz".into());
    }
    let want_align = block_align(format, channels);
    if u32::from(align) != want_align {
        return bad(format!(
            "block align {align}, expected {want_align} for {channels} channels"
        ));
    }
    if u64::from(byte_rate) != u64::from(rate) * u64::from(want_align) {
        return bad(format!(
            "byte rate {byte_rate}, expected {} for {rate} Hz and block align {want_align}",
            u64::from(rate) * u64::from(want_align)
        ));
    }
    Ok((format, channels, rate))
}

fn read<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], Bad> {
    buf.get(at..)
        .and_then(|rest| rest.get(..N))
        .and_then(|s| s.try_into().ok())
        .ok_or(Bad::Short)
}

/// Checks a tag, also when the file ends inside it: a file cut short of a
/// header is "no audio" only if the bytes it has are right.
fn expect_tag(buf: &[u8], at: usize, tag: &[u8; 4]) -> Result<(), Bad> {
    let have = buf.get(at..).unwrap_or_default();
    let have = have.get(..4).unwrap_or(have);
    if !tag.starts_with(have) {
        return Err(Bad::NotWav(format!(
            "no {} tag at byte {at}",
            String::from_utf8_lossy(tag)
        )));
    }
    if have.len() < 4 {
        return Err(Bad::Short);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stereo encoding is interleaved mono encoding, a short right side
    /// padded with silence, in every format.
    #[test]
    fn stereo_frames_encode_as_interleaved_samples() {
        let left: Vec<i16> = (0..160).map(|i| (i * 97 - 7000) as i16).collect();
        let right: Vec<i16> = (0..100).map(|i| (3000 - i * 61) as i16).collect();
        for f in [Format::Pcm16, Format::Alaw, Format::Ulaw] {
            let mut interleaved = Vec::new();
            for (i, &l) in left.iter().enumerate() {
                interleaved.push(l);
                interleaved.push(right.get(i).copied().unwrap_or(0));
            }
            let mut want = vec![9u8];
            f.encode(&interleaved, &mut want);
            let mut got = vec![9u8];
            f.encode_stereo(&left, &right, &mut got);
            assert_eq!(got, want, "{f:?}");
        }
    }

    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    const RATE: u32 = 8000;
    const ALL: [Format; 3] = [Format::Pcm16, Format::Alaw, Format::Ulaw];

    /// A deterministic signal that is not silence.
    fn samples(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (i as u16).wrapping_mul(7919) as i16)
            .collect()
    }

    /// Writes `seconds` of audio for `channels` in 20 ms batches, calling
    /// `after_batch` with the batch index.
    fn write_audio(
        w: &mut WavWriter,
        seconds: u32,
        mut after_batch: impl FnMut(&mut WavWriter, u32),
    ) -> Vec<i16> {
        let per_batch = (RATE / 50) as usize * usize::from(w.channels());
        let all = samples(per_batch * 50 * seconds as usize);
        let mut buf = Vec::with_capacity(per_batch * 2);
        for (i, batch) in all.chunks(per_batch).enumerate() {
            buf.clear();
            w.format().encode(batch, &mut buf);
            w.append(&buf).unwrap();
            after_batch(w, i as u32);
        }
        all
    }

    fn sox_info(flag: &str, path: &Path) -> String {
        let out = Command::new("sox")
            .args(["--i", flag])
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run sox ({e}): these tests need it, e.g. `apt-get install sox`")
            });
        assert!(
            out.status.success(),
            "sox --i {flag} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn assert_sox_reads(path: &Path, format: Format, duration_ms: u64) {
        let secs: f64 = sox_info("-D", path).parse().unwrap();
        assert!(
            (secs * 1000.0 - duration_ms as f64).abs() < 0.5,
            "{}: sox says {secs} s, expected {duration_ms} ms",
            path.display()
        );
        let encoding = match format {
            Format::Pcm16 => "Signed Integer PCM",
            Format::Alaw => "A-law",
            Format::Ulaw => "u-law",
        };
        assert_eq!(sox_info("-e", path), encoding, "{}", path.display());
    }

    fn assert_hound_reads(path: &Path, channels: u16, expected: &[i16]) {
        let reader = hound::WavReader::open(path).unwrap();
        assert_eq!(
            reader.spec(),
            hound::WavSpec {
                channels,
                sample_rate: RATE,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            }
        );
        let got: Vec<i16> = reader.into_samples().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "samples differ");
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn pcm16_mono_header_is_the_canonical_44_bytes() {
        #[rustfmt::skip]
        let expected: [u8; 44] = [
            b'R', b'I', b'F', b'F', 0xA4, 0x3E, 0x00, 0x00, // 36 + 16000
            b'W', b'A', b'V', b'E',
            b'f', b'm', b't', b' ', 16, 0, 0, 0,
            1, 0, // PCM
            1, 0, // mono
            0x40, 0x1F, 0x00, 0x00, // 8000 Hz
            0x80, 0x3E, 0x00, 0x00, // 16000 bytes/s
            2, 0, // block align
            16, 0, // bits per sample
            b'd', b'a', b't', b'a', 0x80, 0x3E, 0x00, 0x00, // 16000
        ];
        assert_eq!(header(Format::Pcm16, 1, 8000, 16000), expected);
        assert_eq!(Format::Pcm16.header_len(), 44);
    }

    #[test]
    fn g711_header_has_18_byte_fmt_and_fact_chunk() {
        for (format, tag) in [(Format::Alaw, 6u8), (Format::Ulaw, 7)] {
            let h = header(format, 2, 8000, 3001);
            assert_eq!(h.len() as u64, format.header_len());
            assert_eq!(h.len(), 58);
            assert_eq!(&h[..4], b"RIFF");
            assert_eq!(u32_at(&h, 4), 50 + 3001);
            assert_eq!(&h[8..16], b"WAVEfmt ");
            assert_eq!(u32_at(&h, 16), 18);
            assert_eq!(h[20..24], [tag, 0, 2, 0]);
            assert_eq!(u32_at(&h, 24), 8000);
            assert_eq!(u32_at(&h, 28), 16000);
            assert_eq!(h[32..38], [2, 0, 8, 0, 0, 0]); // align, bits, cbSize
            assert_eq!(&h[38..42], b"fact");
            assert_eq!(u32_at(&h, 42), 4);
            assert_eq!(u32_at(&h, 46), 1500); // whole stereo frames
            assert_eq!(&h[50..54], b"data");
            assert_eq!(u32_at(&h, 54), 3001);
        }
    }

    #[test]
    fn header_sizes_saturate_below_4_gib_on_whole_frames() {
        let h = header(Format::Pcm16, 2, 8000, u64::MAX);
        let data = u32_at(&h, 40);
        assert_eq!(data % 4, 0);
        assert_eq!(u32_at(&h, 4), 36 + data);
        assert!(u64::from(u32::MAX) - u64::from(u32_at(&h, 4)) < 4);

        let h = header(Format::Ulaw, 3, 8000, u64::MAX);
        let data = u32_at(&h, 54);
        assert_eq!(data % 3, 0);
        assert_eq!(u32_at(&h, 4), 50 + data);
        assert_eq!(u32_at(&h, 46), data / 3);

        // Nonsense that create() rejects still makes a header, not a panic.
        assert_eq!(header(Format::Pcm16, 0, 0, 10).len(), 44);
        assert_eq!(header(Format::Alaw, 0, u32::MAX, 10).len(), 58);
    }

    #[test]
    fn format_names_sizes_and_serde_agree() {
        for (format, name, bytes) in [
            (Format::Pcm16, "pcm16", 2),
            (Format::Alaw, "alaw", 1),
            (Format::Ulaw, "ulaw", 1),
        ] {
            assert_eq!(format.name(), name);
            assert_eq!(format.bytes_per_sample(), bytes);
            assert_eq!(
                serde_json::to_string(&format).unwrap(),
                format!("\"{name}\"")
            );
            let back: Format = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(back, format);
        }
    }

    #[test]
    fn encode_appends_and_allocates_only_to_grow() {
        let mut out = Vec::with_capacity(64);
        out.push(0xAA);
        Format::Pcm16.encode(&[1, -2, 0x1234], &mut out);
        assert_eq!(out, [0xAA, 1, 0, 0xFE, 0xFF, 0x34, 0x12]);
        Format::Alaw.encode(&[0, -1], &mut out);
        Format::Ulaw.encode(&[0, -1], &mut out);
        assert_eq!(out[7..], [0xD5, 0x55, 0xFF, 0x7F]);

        let input = samples(160);
        for format in ALL {
            let need = 160 * usize::from(format.bytes_per_sample());
            let mut out = Vec::with_capacity(need);
            let ptr = out.as_ptr();
            format.encode(&input, &mut out);
            assert_eq!(out.len(), need);
            assert_eq!(out.capacity(), need, "{}", format.name());
            assert_eq!(out.as_ptr(), ptr, "{} reallocated", format.name());
        }
    }

    #[test]
    fn pcm16_mono_and_stereo_recordings_read_back_in_hound() {
        let dir = tempfile::tempdir().unwrap();
        for channels in [1, 2] {
            let path = dir.path().join(format!("pcm-{channels}.wav"));
            let mut w = WavWriter::create(&path, Format::Pcm16, channels, RATE).unwrap();
            let written = write_audio(&mut w, 1, |w, i| {
                if i % 10 == 0 {
                    w.update_header().unwrap();
                }
            });
            assert_eq!(w.data_len(), written.len() as u64 * 2);
            assert_eq!(w.duration_ms(), 1000);
            assert_eq!(w.finish().unwrap(), written.len() as u64 * 2);
            assert_hound_reads(&path, channels, &written);
        }
    }

    #[test]
    fn sox_reads_duration_and_encoding_of_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for format in ALL {
            for channels in [1, 2] {
                let path = dir.path().join(format!("{}-{channels}.wav", format.name()));
                let mut w = WavWriter::create(&path, format, channels, RATE).unwrap();
                write_audio(&mut w, 2, |_, _| {});
                // Half a second more, to check more than whole seconds.
                let mut buf = Vec::new();
                format.encode(&samples(4000 * usize::from(channels)), &mut buf);
                w.append(&buf).unwrap();
                assert_eq!(w.duration_ms(), 2500);
                let len = w.finish().unwrap();
                assert_eq!(
                    fs::metadata(&path).unwrap().len(),
                    format.header_len() + len
                );
                assert_sox_reads(&path, format, 2500);
            }
        }
    }

    #[test]
    fn create_refuses_an_existing_file_and_keeps_it_from_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        let w = WavWriter::create(&path, Format::Alaw, 1, RATE).unwrap();
        assert_eq!(w.data_len(), 0);
        assert_eq!(w.duration_ms(), 0);
        assert_eq!(fs::read(&path).unwrap(), header(Format::Alaw, 1, RATE, 0));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // 0o640 minus whatever the umask takes away.
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
        drop(w);

        let err = WavWriter::create(&path, Format::Pcm16, 1, RATE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), header(Format::Alaw, 1, RATE, 0));
    }

    #[test]
    fn create_rejects_formats_a_header_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (format, channels, rate)) in [
            (Format::Pcm16, 0, RATE),
            (Format::Alaw, 1, 0),
            (Format::Pcm16, u16::MAX, RATE),
            (Format::Ulaw, 2, u32::MAX),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("{i}.wav"));
            let err = WavWriter::create(&path, format, channels, rate).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(!path.exists());
        }
    }

    #[test]
    fn crash_with_stale_header_is_repaired_for_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for format in ALL {
            for channels in [1, 2] {
                let path = dir.path().join(format!("{}-{channels}.wav", format.name()));
                let mut w = WavWriter::create(&path, format, channels, RATE).unwrap();
                // Header updated after the first batch only, then the crash.
                let written = write_audio(&mut w, 3, |w, i| {
                    if i == 0 {
                        w.update_header().unwrap();
                    }
                });
                let expected_len = w.data_len();
                drop(w);

                let r = repair(&path).unwrap();
                assert_eq!(
                    r,
                    Repaired {
                        format,
                        channels,
                        sample_rate: RATE,
                        data_len: expected_len,
                        duration_ms: 3000,
                        truncated: 0,
                        rewritten: true,
                    }
                );
                assert_eq!(
                    fs::read(&path).unwrap()[..format.header_len() as usize],
                    header(format, channels, RATE, expected_len)
                );
                assert_sox_reads(&path, format, 3000);
                if format == Format::Pcm16 {
                    assert_hound_reads(&path, channels, &written);
                }

                let again = repair(&path).unwrap();
                assert_eq!(
                    again,
                    Repaired {
                        rewritten: false,
                        ..r
                    }
                );
            }
        }
    }

    #[test]
    fn crash_mid_frame_cuts_the_partial_frame() {
        let dir = tempfile::tempdir().unwrap();
        for (format, channels, stray) in [
            (Format::Pcm16, 2, 1u64),
            (Format::Pcm16, 2, 3),
            (Format::Pcm16, 1, 1),
            (Format::Alaw, 2, 1),
        ] {
            let path = dir
                .path()
                .join(format!("{}-{channels}-{stray}.wav", format.name()));
            let mut w = WavWriter::create(&path, format, channels, RATE).unwrap();
            let written = write_audio(&mut w, 2, |_, _| {});
            let expected_len = w.data_len();
            // The last frame only partly reached the card.
            w.append(&vec![0x5A; stray as usize]).unwrap();
            drop(w);

            let r = repair(&path).unwrap();
            assert_eq!(r.data_len, expected_len);
            assert_eq!(r.duration_ms, 2000);
            assert_eq!(r.truncated, stray);
            assert!(r.rewritten);
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                format.header_len() + expected_len
            );
            assert_sox_reads(&path, format, 2000);
            if format == Format::Pcm16 {
                assert_hound_reads(&path, channels, &written);
            }

            let again = repair(&path).unwrap();
            assert_eq!((again.truncated, again.rewritten), (0, false));
            assert_eq!(again.data_len, expected_len);
        }
    }

    #[test]
    fn header_claiming_more_audio_than_reached_the_card_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.wav");
        let mut w = WavWriter::create(&path, Format::Ulaw, 1, RATE).unwrap();
        write_audio(&mut w, 2, |_, _| {});
        w.update_header().unwrap();
        drop(w);
        // The header update reached the card, the last second of audio did not.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(58 + 8000).unwrap();
        drop(file);

        let r = repair(&path).unwrap();
        assert_eq!((r.data_len, r.duration_ms), (8000, 1000));
        assert!(r.rewritten);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(u32_at(&bytes, 4), 50 + 8000);
        assert_eq!(u32_at(&bytes, 46), 8000);
        assert_eq!(u32_at(&bytes, 54), 8000);
        assert_sox_reads(&path, Format::Ulaw, 1000);
    }

    #[test]
    fn finished_and_empty_recordings_need_no_repair() {
        let dir = tempfile::tempdir().unwrap();
        for format in ALL {
            let path = dir.path().join(format!("done-{}.wav", format.name()));
            let mut w = WavWriter::create(&path, format, 1, RATE).unwrap();
            write_audio(&mut w, 1, |_, _| {});
            w.finish().unwrap();
            let before = fs::read(&path).unwrap();
            let r = repair(&path).unwrap();
            assert_eq!((r.duration_ms, r.truncated, r.rewritten), (1000, 0, false));
            assert_eq!(fs::read(&path).unwrap(), before);

            // A crash right after create: a header and no audio.
            let path = dir.path().join(format!("empty-{}.wav", format.name()));
            drop(WavWriter::create(&path, format, 2, RATE).unwrap());
            let r = repair(&path).unwrap();
            assert_eq!((r.data_len, r.truncated, r.rewritten), (0, 0, false));
            assert_eq!(r.channels, 2);
        }
    }

    #[test]
    fn file_cut_inside_the_header_has_no_audio() {
        let dir = tempfile::tempdir().unwrap();
        for (format, len) in [
            (Format::Pcm16, 0),
            (Format::Pcm16, 3),
            (Format::Pcm16, 20),
            (Format::Pcm16, 43),
            (Format::Alaw, 57),
            (Format::Ulaw, 40),
        ] {
            let path = dir.path().join(format!("{}-{len}.wav", format.name()));
            fs::write(&path, &header(format, 1, RATE, 0)[..len]).unwrap();
            match repair(&path) {
                Err(RepairError::NoAudio { path: p, len: l }) => {
                    assert_eq!((p, l), (path.clone(), len as u64));
                }
                other => panic!("{} bytes of {}: {other:?}", len, format.name()),
            }
            assert_eq!(fs::metadata(&path).unwrap().len(), len as u64);
        }
        let err = repair(&dir.path().join("pcm16-20.wav")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("20 bytes, shorter than a WAV header: no audio"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_not_wav_and_says_what_is_wrong() {
        let good = header(Format::Pcm16, 1, RATE, 0);
        let mut float = good.clone();
        float[20] = 3;
        let mut stereo_align = header(Format::Alaw, 2, RATE, 0);
        stereo_align[32] = 1;
        let mut pcm8 = good.clone();
        pcm8[34] = 8;
        let mut data_first = good[..12].to_vec();
        data_first.extend_from_slice(b"data\0\0\0\0");
        data_first.extend_from_slice(&good[12..36]);
        let mut binary_id = good[..12].to_vec();
        binary_id.extend_from_slice(&[0, 0, 0, 0, 16, 0, 0, 0]);
        binary_id.extend_from_slice(&[0; 40]);
        let mut huge_chunk = good[..12].to_vec();
        huge_chunk.extend_from_slice(b"LIST\xff\xff\xff\x7f");
        huge_chunk.extend_from_slice(&[0; 100]);

        let cases: [(&str, Vec<u8>, &str); 9] = [
            (
                "text",
                b"Call recording notes, not audio at all.\n".repeat(3),
                "no RIFF tag at byte 0",
            ),
            ("short text", b"RIFX".to_vec(), "no RIFF tag at byte 0"),
            (
                "avi",
                [&b"RIFF\0\0\0\0AVI LIST"[..], &[0u8; 40][..]].concat(),
                "no WAVE tag at byte 8",
            ),
            ("float", float, "fmt chunk: format tag 3 not supported"),
            (
                "stereo align",
                stereo_align,
                "fmt chunk: block align 1, expected 2 for 2 channels",
            ),
            (
                "pcm8",
                pcm8,
                "fmt chunk: 8 bits per sample with format tag 1 not supported",
            ),
            (
                "data first",
                data_first,
                "data chunk at byte 12 comes before any fmt chunk",
            ),
            (
                "binary id",
                binary_id,
                "no chunk id at byte 12 (bytes 00 00 00 00)",
            ),
            (
                "huge chunk",
                huge_chunk,
                "LIST chunk at byte 12 (2147483647 bytes) runs past the header",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, what) in cases {
            let path = dir.path().join(name);
            fs::write(&path, &bytes).unwrap();
            match repair(&path) {
                Err(RepairError::NotWav { path: p, what: w }) => {
                    assert_eq!(p, path);
                    assert!(w.starts_with(what), "{name}: {w:?}, expected {what:?}");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(fs::read(&path).unwrap(), bytes, "{name} was modified");
        }
    }

    #[test]
    fn other_chunks_before_the_audio_are_kept() {
        // What other tools write: a LIST chunk of odd length (padded) before data.
        let good = header(Format::Pcm16, 1, RATE, 0);
        let mut bytes = good[..36].to_vec();
        bytes.extend_from_slice(b"LIST\x05\0\0\0INFOx\0");
        bytes.extend_from_slice(b"data\0\0\0\0");
        let audio = samples(800);
        Format::Pcm16.encode(&audio, &mut bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.wav");
        fs::write(&path, &bytes).unwrap();

        let r = repair(&path).unwrap();
        assert_eq!((r.data_len, r.duration_ms, r.rewritten), (1600, 100, true));
        let fixed = fs::read(&path).unwrap();
        assert_eq!(&fixed[36..50], b"LIST\x05\0\0\0INFOx\0");
        assert_eq!(u32_at(&fixed, 4), fixed.len() as u32 - 8);
        assert_eq!(u32_at(&fixed, 54), 1600);
        assert_sox_reads(&path, Format::Pcm16, 100);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.wav");
        match repair(&path) {
            Err(e @ RepairError::Io { .. }) => {
                assert!(
                    e.to_string().starts_with(&path.display().to_string()),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!path.exists());
    }
}
