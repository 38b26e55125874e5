//! RTCP (RFC 3550 §6): every few seconds the box reports on the far end's
//! stream (loss, jitter) in a sender report on the port above the call's
//! RTP, and reads the far end's reports on the box's stream, so a call's
//! log says what both ends saw — what carriers' and phones' own tools
//! show, and what a technician asks first when a call "sounded bad".

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time between the box's reports on a call (RFC 3550's minimum).
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;

/// What the box counts about the far end's stream (RFC 3550 A.1, A.8).
#[derive(Debug, Default)]
pub struct Reception {
    ssrc: Option<u32>,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<i64>,
    /// Interarrival jitter, in timestamp units (1/8000 s).
    jitter: f64,
    /// The far end's last sender report: the middle of its NTP time, and
    /// when it came.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    /// An RTP packet of the far end's stream arrived. `timing`: its RTP
    /// timestamp and its arrival (in timestamp units of a clock of the
    /// box's), for audio packets (key events keep one timestamp for a
    /// whole key and would read as jitter).
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, timing: Option<(u32, u32)>) {
        if self.ssrc != Some(ssrc) {
            // A new stream (or the first): counts start again.
            *self = Reception {
                ssrc: Some(ssrc),
                base_seq: seq,
                max_seq: seq.wrapping_sub(1),
                last_sr: self.last_sr,
                ..Reception::default()
            };
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
        self.received += 1;
        let Some((timestamp, arrival)) = timing else {
            return;
        };
        let transit = i64::from(arrival) - i64::from(timestamp);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// The interarrival jitter, in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter / 8.0
    }

    /// The report block on this stream (RFC 3550 §6.4.1), if one came.
    fn block(&mut self, now: Instant) -> Option<[u8; 24]> {
        let ssrc = self.ssrc?;
        let extended_max = self.cycles + u32::from(self.max_seq);
        let expected = extended_max
            .wrapping_sub(u32::from(self.base_seq))
            .wrapping_add(1);
        let lost = (i64::from(expected) - i64::from(self.received)).clamp(-0x80_0000, 0x7f_ffff);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((mid, at)) => {
                let d = now.duration_since(at);
                (mid, (d.as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        let mut b = [0u8; 24];
        b[..4].copy_from_slice(&ssrc.to_be_bytes());
        b[4] = fraction;
        b[5..8].copy_from_slice(&(lost as i32).to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&extended_max.to_be_bytes());
        b[12..16].copy_from_slice(&(self.jitter as u32).to_be_bytes());
        b[16..20].copy_from_slice(&lsr.to_be_bytes());
        b[20..24].copy_from_slice(&dlsr.to_be_bytes());
        Some(b)
    }
}

/// What the box has sent on its stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sending {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// The RTP timestamp of the packet sent last.
    pub timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload bytes sent.
    pub octets: u32,
}

/// NTP time of `wall` (seconds since 1900, 32.32 fixed point).
fn ntp(wall: SystemTime) -> u64 {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A compound packet: a sender report (with a report block on the far
/// end's stream when one came) and an SDES with the box's CNAME.
pub fn sender_report(
    me: &Sending,
    rx: &mut Reception,
    now: Instant,
    wall: SystemTime,
    cname: &str,
) -> Vec<u8> {
    let block = rx.block(now);
    let count = u8::from(block.is_some());
    let mut p = Vec::with_capacity(80);
    let words = 6 + 6 * usize::from(count);
    p.extend_from_slice(&[0x80 | count, SR]);
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&me.ssrc.to_be_bytes());
    p.extend_from_slice(&ntp(wall).to_be_bytes());
    p.extend_from_slice(&me.timestamp.to_be_bytes());
    p.extend_from_slice(&me.packets.to_be_bytes());
    p.extend_from_slice(&me.octets.to_be_bytes());
    if let Some(b) = block {
        p.extend_from_slice(&b);
    }
    // SDES: one chunk, CNAME, end, padded to a word.
    let name = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    p.extend_from_slice(&[0x81, SDES]);
    p.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    p.extend_from_slice(&me.ssrc.to_be_bytes());
    p.extend_from_slice(&[1, name.len() as u8]);
    p.extend_from_slice(name);
    p.resize(p.len() + padded - chunk + 1, 0);
    p
}

/// What the far end reported about the box's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FarView {
    /// Share lost since its previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost in all.
    pub lost: i32,
    /// Its interarrival jitter, in timestamp units.
    pub jitter: u32,
}

/// Reads a compound RTCP packet from the far end: its report on the box's
/// stream (`ours`), if it has one; its sender report's time is noted in
/// `rx` for the box's next report. Malformed packets read as nothing.
pub fn read(buf: &[u8], ours: u32, rx: &mut Reception, now: Instant) -> Option<FarView> {
    let mut view = None;
    let mut rest = buf;
    while rest.len() >= 8 {
        if rest[0] >> 6 != 2 {
            break;
        }
        let count = usize::from(rest[0] & 0x1f);
        let kind = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        let Some(packet) = rest.get(..len) else { break };
        let blocks = match kind {
            SR if packet.len() >= 28 => {
                let mid = u32::from_be_bytes([packet[10], packet[11], packet[12], packet[13]]);
                rx.last_sr = Some((mid, now));
                &packet[28..]
            }
            RR => &packet[8..],
            _ => &[][..],
        };
        for b in blocks.chunks_exact(24).take(count) {
            if u32::from_be_bytes([b[0], b[1], b[2], b[3]]) == ours {
                let lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
                view = Some(FarView {
                    fraction_lost: b[4],
                    lost,
                    jitter: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
                });
            }
        }
        rest = &rest[len..];
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_loss_and_jitter_and_the_other_side_reads_it() {
        let mut rx = Reception::default();
        // 50 packets at 20 ms, two lost, arrival jittering ±1 ms.
        for i in 0u16..50 {
            if i == 10 || i == 30 {
                continue;
            }
            let jitter = if i % 2 == 0 { 8 } else { 0 };
            let ts = u32::from(i) * 160;
            rx.on_packet(0xabc, 65500u16.wrapping_add(i), Some((ts, ts + jitter)));
        }
        assert!((rx.jitter_ms() - 1.0).abs() < 0.3, "{}", rx.jitter_ms());
        let me = Sending {
            ssrc: 0x1234,
            timestamp: 8000,
            packets: 50,
            octets: 8000,
        };
        let now = Instant::now();
        let pkt = sender_report(&me, &mut rx, now, SystemTime::now(), "callbox@box");
        assert_eq!(pkt.len() % 4, 0);
        assert_eq!(pkt[1], SR);
        // The far end reads the box's block on its own stream…
        let mut theirs = Reception::default();
        let v = read(&pkt, 0xabc, &mut theirs, now).expect("a block on 0xabc");
        assert_eq!(v.lost, 2);
        assert_eq!(v.fraction_lost, (2 * 256 / 50) as u8);
        // …and notes the SR's time for its next report.
        assert!(theirs.last_sr.is_some());
        // Nothing about another stream; garbage reads as nothing.
        assert_eq!(read(&pkt, 0x999, &mut theirs, now), None);
        assert_eq!(read(&[0xff; 40], 0xabc, &mut theirs, now), None);
        assert_eq!(read(&pkt[..20], 0xabc, &mut theirs, now), None);
    }

    #[test]
    fn a_report_before_any_packet_has_no_block() {
        let mut rx = Reception::default();
        let pkt = sender_report(
            &Sending::default(),
            &mut rx,
            Instant::now(),
            SystemTime::now(),
            "x",
        );
        assert_eq!(pkt[0] & 0x1f, 0);
        assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]), 6);
    }
}
