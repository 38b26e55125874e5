//! RTP datagrams from a far end, in any order: header parser, RFC 4733
//! key events and the jitter buffer, which must keep giving whole frames.
#![no_main]

use callbox_hal::sip::dtmf::EventReceiver;
use callbox_hal::sip::jitter::JitterBuffer;
use callbox_hal::sip::rtp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut keys = EventReceiver::default();
    let mut jitter = JitterBuffer::new();
    let mut pcm = [0i16; 2048];
    // The input is several datagrams, each prefixed by one length byte.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        if rtp::is_rtcp(pkt) {
            continue;
        }
        let Ok((h, payload)) = rtp::parse(pkt) else {
            continue;
        };
        if h.payload_type == 101 {
            let _ = keys.on_packet(h.ssrc, h.timestamp, payload);
            continue;
        }
        let samples = payload.len().min(pcm.len());
        for (o, b) in pcm.iter_mut().zip(payload) {
            *o = i16::from(*b as i8) << 8;
        }
        jitter.push(h.seq, h.timestamp, &pcm[..samples]);
        if let Some(f) = jitter.pop() {
            assert_eq!(f.samples().len(), 160, "a frame is 20 ms");
        }
    }
});
