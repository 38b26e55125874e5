//! Reading a call's RTP socket with one system call per tick: `recvmmsg`
//! takes every datagram waiting (up to [`BATCH`]) at once, where
//! `recv_from` needs one call per datagram and one more to learn there is
//! none left — a third of the media thread's system calls per frame.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams taken per system call.
pub(crate) const BATCH: usize = 4;
/// Room for one datagram (RTP packets are far smaller).
pub(crate) const SLOT: usize = 2048;

/// Receive buffers for [`recv_batch`].
#[derive(Debug)]
pub(crate) struct Slots {
    /// `BATCH` slots of `SLOT` bytes.
    pub(crate) buf: Vec<u8>,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            buf: vec![0; BATCH * SLOT],
        }
    }
}

fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(a.sin_addr.s_addr).into(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Takes the datagrams waiting on `sock` into `slots` without waiting:
/// `(length, source)` of each, in slot order, into `out`; the count. Zero
/// when there are none (or on an error, such as an ICMP unreachable from
/// an earlier send: nothing to read either way).
pub(crate) fn recv_batch(
    sock: &UdpSocket,
    slots: &mut Slots,
    out: &mut [(usize, SocketAddr); BATCH],
) -> usize {
    // SAFETY: all-zero is a valid value of this C struct.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above (null pointers, zero lengths, filled in below).
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, chunk) in slots.buf.chunks_exact_mut(SLOT).enumerate() {
        iov[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: SLOT,
        };
        msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at a live buffer of the stated length
    // and a name of the stated size, all outliving the call.
    let got = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got <= 0 {
        return 0;
    }
    let mut n = 0;
    for i in 0..got as usize {
        let len = (msgs[i].msg_len as usize).min(SLOT);
        if let Some(from) = to_socket_addr(&names[i]) {
            out[n] = (len, from);
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_datagrams_come_in_one_call_with_their_sources() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut slots = Slots::new();
        let mut out = [(0, "0.0.0.0:0".parse().unwrap()); BATCH];
        assert_eq!(recv_batch(&rx, &mut slots, &mut out), 0, "nothing waiting");
        let to = rx.local_addr().unwrap();
        a.send_to(b"first", to).unwrap();
        b.send_to(b"second!", to).unwrap();
        a.send_to(&[7; 3000], to).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let n = recv_batch(&rx, &mut slots, &mut out);
        assert_eq!(n, 3);
        assert_eq!(out[0], (5, a.local_addr().unwrap()));
        assert_eq!(&slots.buf[..5], b"first");
        assert_eq!(out[1], (7, b.local_addr().unwrap()));
        assert_eq!(&slots.buf[SLOT..SLOT + 7], b"second!");
        // Longer than a slot: cut to the slot.
        assert_eq!(out[2].0, SLOT);
        assert_eq!(recv_batch(&rx, &mut slots, &mut out), 0);
    }
}
