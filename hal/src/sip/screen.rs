//! A screen in front of the SIP stack: every datagram is looked at before
//! rsipstack parses it. Garbage, truncated and oversized datagrams are
//! dropped with a logged reason (the stack would drop them silently), and a
//! well-formed request with a method the stack does not know is answered
//! `501 Not Implemented` here (the stack cannot parse it at all).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest datagram taken: SIP over UDP stays under the path MTU; anything
/// near 64 KiB is an attack or a mistake.
pub const MAX_DATAGRAM: usize = 16 * 1024;

/// Methods rsipstack parses (its `Method`).
const METHODS: [&str; 14] = [
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// What to do with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the stack.
    Pass,
    /// Drop it, for this reason.
    Drop(&'static str),
    /// Answer it with this response and drop it.
    Answer(String),
}

fn header<'a>(head: &'a str, names: &[&str]) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        names
            .iter()
            .any(|n| k.trim().eq_ignore_ascii_case(n))
            .then_some(v.trim())
    })
}

/// Looks at one datagram.
pub fn screen(buf: &[u8]) -> Verdict {
    if buf.iter().all(|&b| b == b'\r' || b == b'\n') {
        // Keep-alive (RFC 5626): the stack answers it.
        return Verdict::Pass;
    }
    if buf.len() > MAX_DATAGRAM {
        return Verdict::Drop("oversized datagram");
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Verdict::Drop("truncated: no end of headers");
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Verdict::Drop("not a SIP message: headers are not text");
    };
    let first = head.lines().next().unwrap_or("");
    if first.starts_with("SIP/2.0 ") {
        return Verdict::Pass;
    }
    let mut parts = first.split(' ');
    let (Some(method), Some(_uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Drop("not a SIP message: bad request line");
    };
    if version != "SIP/2.0" {
        return Verdict::Drop("unsupported SIP version");
    }
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        return Verdict::Drop("not a SIP message: bad method");
    }
    let body = buf.len() - end - 4;
    if let Some(len) = header(head, &["Content-Length", "l"]) {
        match len.parse::<usize>() {
            Ok(l) if l > body => {
                return Verdict::Drop("truncated: body shorter than Content-Length");
            }
            Ok(_) => {}
            Err(_) => return Verdict::Drop("bad Content-Length"),
        }
    }
    if METHODS.contains(&method) {
        return Verdict::Pass;
    }
    // A request the stack cannot parse: answer it here when it carries what
    // a response needs.
    let (Some(via), Some(from), Some(to), Some(call_id), Some(cseq)) = (
        header(head, &["Via", "v"]),
        header(head, &["From", "f"]),
        header(head, &["To", "t"]),
        header(head, &["Call-ID", "i"]),
        header(head, &["CSeq"]),
    ) else {
        return Verdict::Drop("unknown method without the headers to answer it");
    };
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        let tag = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), call_id) as u32;
        format!("{to};tag=nm{tag:08x}")
    };
    Verdict::Answer(format!(
        "SIP/2.0 501 Not Implemented\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nAllow: {}\r\nContent-Length: 0\r\n\r\n",
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"
    ))
}

/// The SIP socket with the screen in front: what rsipstack reads from.
#[derive(Debug)]
pub(crate) struct Screened {
    sock: tokio::net::UdpSocket,
    /// Last warning per reason, so a flood logs a line a minute, not a
    /// line a datagram.
    warned: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Screened {
    pub(crate) fn new(sock: tokio::net::UdpSocket) -> Screened {
        Screened {
            sock,
            warned: Mutex::new(HashMap::new()),
        }
    }

    fn note_drop(&self, why: &'static str, from: SocketAddr) {
        let mut w = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let e = w
            .entry(why)
            .or_insert((Instant::now() - Duration::from_secs(3600), 0));
        e.1 += 1;
        if e.0.elapsed() >= Duration::from_secs(60) {
            tracing::warn!(%from, dropped = e.1, "SIP datagram dropped: {why}");
            *e = (Instant::now(), 0);
        }
    }
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for Screened {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.sock.recv_from(buf).await?;
            match screen(&buf[..n]) {
                Verdict::Pass => return Ok((n, from)),
                Verdict::Drop(why) => self.note_drop(why, from),
                Verdict::Answer(resp) => {
                    tracing::debug!(%from, "SIP request with an unknown method answered 501");
                    let _ = self.sock.send_to(resp.as_bytes(), from).await;
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.sock.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:box SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:box>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn good_messages_and_keepalives_pass() {
        assert_eq!(screen(OPTIONS.as_bytes()), Verdict::Pass);
        assert_eq!(screen(b"\r\n\r\n"), Verdict::Pass);
        assert_eq!(screen(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn garbage_truncated_and_oversized_are_dropped_with_a_reason() {
        assert_eq!(
            screen(&[0xff, 0, 0x13]),
            Verdict::Drop("truncated: no end of headers")
        );
        assert_eq!(
            screen(&OPTIONS.as_bytes()[..40]),
            Verdict::Drop("truncated: no end of headers")
        );
        assert_eq!(
            screen(&vec![b'a'; MAX_DATAGRAM + 1]),
            Verdict::Drop("oversized datagram")
        );
        assert_eq!(
            screen(b"\xff\xfe\r\n\r\n"),
            Verdict::Drop("not a SIP message: headers are not text")
        );
        assert_eq!(
            screen(b"INVITE sip:x SIP/7.0\r\n\r\n"),
            Verdict::Drop("unsupported SIP version")
        );
        assert_eq!(
            screen(b"hello there\r\n\r\n"),
            Verdict::Drop("not a SIP message: bad request line")
        );
        let short = OPTIONS.replace("Content-Length: 0", "Content-Length: 10");
        assert_eq!(
            screen(short.as_bytes()),
            Verdict::Drop("truncated: body shorter than Content-Length")
        );
    }

    #[test]
    fn an_unknown_method_is_answered_501_with_its_headers() {
        let req = OPTIONS.replace("OPTIONS", "FROBNICATE");
        let Verdict::Answer(resp) = screen(req.as_bytes()) else {
            panic!("not answered")
        };
        assert!(resp.starts_with("SIP/2.0 501 Not Implemented\r\n"));
        assert!(resp.contains("Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"));
        assert!(resp.contains("CSeq: 1 FROBNICATE\r\n"));
        assert!(resp.contains("To: <sip:box>;tag="));
        let bare = "FROBNICATE sip:x SIP/2.0\r\n\r\n";
        assert_eq!(
            screen(bare.as_bytes()),
            Verdict::Drop("unknown method without the headers to answer it")
        );
    }
}
