//! A SIP datagram from anyone on the network: screen, stack parser, and
//! the box's header and body readers must not panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = callbox_hal::sip::fuzz_datagram(data);
});
