//! An SDP offer or answer from a far end: parsed, answered with either
//! codec preference, and read as an answer to the box's offer.
#![no_main]

use callbox_hal::sip::sdp::{self, Codec, Sdp};
use callbox_hal::sip::srtp::MasterKey;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = Sdp::parse(text) else {
        return;
    };
    let _ = offer.audio_addr();
    let _ = offer.is_hold();
    let ip = "192.0.2.1".parse().unwrap();
    let key = MasterKey::random().unwrap();
    for ours in [[Codec::Pcma, Codec::Pcmu], [Codec::Pcmu, Codec::Pcma]] {
        for k in [None, Some(&key)] {
            if let Ok((answer, _)) = sdp::answer(&offer, &ours, ip, 20000, 1, 1, k) {
                // What the box writes it must read back.
                Sdp::parse(&answer).expect("the box's own answer parses");
            }
            let _ = sdp::negotiated_from_answer(&ours, &offer, k);
        }
    }
});
