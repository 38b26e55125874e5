//! Keys received as RFC 4733 telephone-events: each key once, however many
//! packets carry it.
//!
//! A key is sent as a run of packets sharing one RTP timestamp (the key's
//! start), the last three with the end bit. The first packet of a new
//! (SSRC, timestamp) yields the key; the rest of its run yields nothing.
//! Another SSRC is accepted: some senders (sipp's captures among them) send
//! events from a stream of their own.

/// The RFC 4733 event code's key, for the 16 DTMF events.
fn key(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// Turns telephone-event packets into keys.
#[derive(Debug, Default)]
pub struct EventReceiver {
    /// The (SSRC, timestamp) of the last key yielded.
    last: Option<(u32, u32)>,
}

impl EventReceiver {
    /// A packet's key, if it starts a key not yet seen.
    pub fn on_packet(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 {
            return None;
        }
        let k = key(payload[0])?;
        if self.last == Some((ssrc, timestamp)) {
            return None;
        }
        self.last = Some((ssrc, timestamp));
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(e: &mut EventReceiver, ssrc: u32, ts: u32, event: u8, n: usize) -> Vec<char> {
        (0..n)
            .filter_map(|i| {
                let end = if i + 3 >= n { 0x80 } else { 0 };
                e.on_packet(ssrc, ts, &[event, end | 10, 0, (i * 160) as u8])
            })
            .collect()
    }

    #[test]
    fn a_key_with_its_three_end_repeats_counts_once() {
        let mut e = EventReceiver::default();
        assert_eq!(packets(&mut e, 7, 1000, 5, 10), ['5']);
    }

    #[test]
    fn the_same_key_twice_is_two_presses() {
        let mut e = EventReceiver::default();
        assert_eq!(packets(&mut e, 7, 1000, 1, 6), ['1']);
        assert_eq!(packets(&mut e, 7, 3000, 1, 6), ['1']);
        assert_eq!(packets(&mut e, 7, 5000, 10, 6), ['*']);
        assert_eq!(packets(&mut e, 7, 7000, 11, 6), ['#']);
    }

    #[test]
    fn another_ssrc_is_accepted_and_only_end_packets_still_yield() {
        let mut e = EventReceiver::default();
        assert_eq!(packets(&mut e, 7, 1000, 2, 4), ['2']);
        assert_eq!(packets(&mut e, 99, 1000, 3, 4), ['3']);
        // Only the end packets arrived.
        let end = [4, 0x80 | 10, 3, 0];
        assert_eq!(e.on_packet(99, 9000, &end), Some('4'));
        assert_eq!(e.on_packet(99, 9000, &end), None);
        assert_eq!(e.on_packet(99, 9000, &end), None);
    }

    #[test]
    fn garbage_and_other_events_yield_nothing() {
        let mut e = EventReceiver::default();
        assert_eq!(e.on_packet(1, 1, &[5, 0, 0]), None);
        assert_eq!(e.on_packet(1, 2, &[16, 0, 0, 0]), None); // flash
        assert_eq!(e.on_packet(1, 3, &[]), None);
        assert_eq!(e.on_packet(1, 4, &[15, 0, 0, 0]), Some('D'));
    }
}
