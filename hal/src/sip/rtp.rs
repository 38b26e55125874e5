//! RTP packets (RFC 3550): reading a received datagram and writing the
//! box's own, with the sequence and timestamp bookkeeping of a sender.

use std::hash::{BuildHasher, RandomState};

/// The fixed part of an RTP header the box uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (codec or telephone-event), as negotiated in SDP.
    pub payload_type: u8,
    /// Marker bit: first packet of a talkspurt or of a key event.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Sampling instant of the first sample, in the codec's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the header it announces.
    #[error("packet of {0} bytes is shorter than its RTP header")]
    Short(usize),
    /// Not version 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// The padding count runs past the payload.
    #[error("RTP padding of {0} bytes is longer than the payload")]
    Padding(usize),
}

/// Splits a datagram into its header and payload.
pub fn parse(buf: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    if buf.len() < 12 {
        return Err(RtpError::Short(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let csrcs = usize::from(buf[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if buf[0] & 0x10 != 0 {
        // Header extension: 4 bytes of profile and length, then the words.
        if buf.len() < start + 4 {
            return Err(RtpError::Short(buf.len()));
        }
        let words = usize::from(u16::from_be_bytes([buf[start + 2], buf[start + 3]]));
        start += 4 + 4 * words;
    }
    if buf.len() < start {
        return Err(RtpError::Short(buf.len()));
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(buf[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::Padding(pad));
        }
        end -= pad;
    }
    let h = RtpHeader {
        payload_type: buf[1] & 0x7f,
        marker: buf[1] & 0x80 != 0,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
    };
    Ok((h, &buf[start..end]))
}

/// Whether a datagram on the RTP port is RTCP (RFC 5761: packet types
/// 200-204 where RTP has the marker bit and payload type).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (200..=204).contains(&buf[1])
}

/// Writes a packet into `buf` (cleared first; no allocation once it has
/// room).
pub fn write(buf: &mut Vec<u8>, h: &RtpHeader, payload: &[u8]) {
    buf.clear();
    buf.push(0x80);
    buf.push((u8::from(h.marker) << 7) | (h.payload_type & 0x7f));
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.timestamp.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());
    buf.extend_from_slice(payload);
}

/// The sending side of one RTP stream: its SSRC and running sequence and
/// timestamp, both starting at random values as RFC 3550 asks.
#[derive(Debug)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// The next audio packet starts a talkspurt.
    first: bool,
}

impl Default for RtpSender {
    fn default() -> Self {
        RtpSender::new()
    }
}

impl RtpSender {
    /// A stream with random SSRC, sequence and timestamp.
    pub fn new() -> RtpSender {
        let r = RandomState::new().hash_one(std::time::Instant::now());
        RtpSender {
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            timestamp: (r >> 16) as u32,
            first: true,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Writes the next audio packet of G.711 `payload` (one byte a sample).
    pub fn audio(&mut self, buf: &mut Vec<u8>, pt: u8, payload: &[u8]) {
        let h = RtpHeader {
            payload_type: pt,
            marker: std::mem::take(&mut self.first),
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        write(buf, &h, payload);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(payload.len() as u32);
    }

    /// Writes one RFC 4733 packet of a key lasting `duration` samples so
    /// far; `end` on the last (sent three times by the caller). All
    /// packets of one key share the timestamp where it began.
    pub fn event(
        &mut self,
        buf: &mut Vec<u8>,
        pt: u8,
        key: u8,
        duration: u16,
        end: bool,
        first: bool,
    ) {
        let payload = [
            key,
            if end { 0x80 | 10 } else { 10 },
            (duration >> 8) as u8,
            duration as u8,
        ];
        let h = RtpHeader {
            payload_type: pt,
            marker: first,
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        write(buf, &h, &payload);
        self.seq = self.seq.wrapping_add(1);
    }

    /// Moves the audio clock past a key event of `samples`.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_packet_reads_back() {
        let mut s = RtpSender::new();
        let mut buf = Vec::new();
        s.audio(&mut buf, 8, &[1, 2, 3]);
        let (h, p) = parse(&buf).unwrap();
        assert_eq!((h.payload_type, h.marker, h.ssrc), (8, true, s.ssrc()));
        assert_eq!(p, [1, 2, 3]);
        s.audio(&mut buf, 8, &[4; 160]);
        let (h2, _) = parse(&buf).unwrap();
        assert!(!h2.marker);
        assert_eq!(h2.seq, h.seq.wrapping_add(1));
        assert_eq!(h2.timestamp, h.timestamp.wrapping_add(3));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![0x80 | 0x20 | 0x10 | 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]); // extension, one word
        p.extend_from_slice(&[5, 6]); // payload
        p.extend_from_slice(&[0, 0, 3]); // padding of 3
        let (h, payload) = parse(&p).unwrap();
        assert_eq!((h.seq, h.timestamp, h.ssrc), (1, 2, 3));
        assert_eq!(payload, [5, 6]);
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(parse(&[0x80; 7]), Err(RtpError::Short(7)));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version(1)));
        let mut p = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 40];
        assert_eq!(parse(&p), Err(RtpError::Padding(40)));
        p[0] = 0x8f; // 15 CSRCs announced, none there
        assert!(matches!(parse(&p), Err(RtpError::Short(_))));
        assert!(is_rtcp(&[0x81, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 8]));
    }
}
