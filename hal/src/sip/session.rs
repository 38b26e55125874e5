//! One call's RTP: a UDP socket read and written by the media engine's tick.
//!
//! The engine calls [`RtpSession::receive`] and [`RtpSession::send`] from its
//! thread once per 20 ms for every leg; both are non-blocking system calls,
//! so a call costs no task wake-up per packet. Received audio goes through a
//! jitter buffer (any packet size in, 20 ms frames out); RFC 4733 key events
//! are decoded here and handed to the call's task once per key.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use callbox_dsp::g711::Law;
use tokio::sync::mpsc;

use super::batch::{BATCH, SLOT, Slots, recv_batch};
use super::dtmf::EventReceiver;
use super::jitter::JitterBuffer;
use super::lock;
use super::rtcp::{self, FarView, Reception, Sending};
use super::rtp::{self, RtpHeader, RtpSender};
use super::sdp::{Codec, Direction, Negotiated};
use super::srtp::{self, MasterKey};
use crate::audio::Frame;

/// Least time between two frames taken from the jitter buffer: half a
/// frame period, so a late tick still gets its frame.
const MIN_POP_SPACING: Duration = Duration::from_millis(10);

/// Samples in one 20 ms packet.
const FRAME_SAMPLES: usize = 160;

/// What a session tells its call's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaNote {
    /// A key pressed at the far end (RFC 4733).
    Key(char),
    /// No RTP for the configured time while the call was not on hold.
    Timeout,
}

/// A call's RTP socket and the state of both directions.
#[derive(Debug)]
pub(crate) struct RtpSession {
    sock: UdpSocket,
    port: u16,
    rx: Mutex<Rx>,
    tx: Mutex<Tx>,
    notes: mpsc::UnboundedSender<MediaNote>,
    timeout: Duration,
    timed_out: AtomicBool,
}

#[derive(Debug)]
struct Rx {
    /// Where the far end's RTP comes from; latched from the first packet
    /// (symmetric RTP: a phone behind NAT sends from another address than
    /// its SDP says).
    source: Option<SocketAddr>,
    law: Law,
    pt: u8,
    dtmf_pt: Option<u8>,
    jitter: JitterBuffer,
    keys: EventReceiver,
    last_packet: Instant,
    /// The far end holds the call: silence from it is not a timeout.
    held: bool,
    /// When the jitter buffer last gave a frame.
    last_pop: Option<Instant>,
    /// SRTP: the far end's key and its state, when the call is encrypted.
    srtp: Option<(MasterKey, srtp::Context)>,
    /// What the box counts about the far end's stream, for RTCP.
    reception: Reception,
    /// The origin of the arrival clock (8 kHz units) for jitter.
    clock_base: Instant,
    rtcp: Rtcp,
    /// Packets dropped, by reason; logged once per reason.
    unauthentic: u64,
    foreign: u64,
    bad_pt: u64,
    malformed: u64,
    slots: Slots,
    pcm: Vec<i16>,
}

/// A call's RTCP: its socket (the port above RTP) and the reports.
#[derive(Debug)]
struct Rtcp {
    sock: UdpSocket,
    /// Where reports go: the far end's RTP port + 1, or where its own
    /// reports come from once one came.
    remote: SocketAddr,
    latched: bool,
    next: Instant,
    /// The box's CNAME in its reports.
    cname: String,
    /// The far end's last report on the box's stream.
    far: Option<FarView>,
    reports_in: u32,
    reports_out: u32,
}

/// The RTCP address beside an RTP address.
fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

#[derive(Debug)]
struct Tx {
    remote: SocketAddr,
    law: Law,
    pt: u8,
    sending: bool,
    sender: RtpSender,
    /// SRTP: the box's own key's state, when the call is encrypted.
    srtp: Option<srtp::Context>,
    buf: Vec<u8>,
    payload: Vec<u8>,
    /// A frame was sent since the last tick's read (the engine reads every
    /// leg, then writes, once per tick).
    sent_since_read: bool,
    /// Packets and payload bytes sent, for RTCP.
    packets: u32,
    octets: u32,
}

fn law(c: Codec) -> Law {
    match c {
        Codec::Pcma => Law::Alaw,
        Codec::Pcmu => Law::Ulaw,
    }
}

impl RtpSession {
    /// A session on `sock` (bound, any mode) toward what was negotiated.
    pub(crate) fn new(
        sock: UdpSocket,
        rtcp: UdpSocket,
        n: &Negotiated,
        timeout: Duration,
        notes: mpsc::UnboundedSender<MediaNote>,
    ) -> std::io::Result<RtpSession> {
        sock.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        let cname = format!("callbox@{}", rtcp.local_addr()?.ip());
        let port = sock.local_addr()?.port();
        let now = Instant::now();
        if n.srtp.is_some() {
            tracing::info!(port, suite = srtp::SUITE, "SRTP");
        }
        Ok(RtpSession {
            sock,
            port,
            rx: Mutex::new(Rx {
                source: None,
                law: law(n.codec),
                pt: n.pt,
                dtmf_pt: n.dtmf_pt,
                jitter: JitterBuffer::new(),
                keys: EventReceiver::default(),
                last_packet: Instant::now(),
                held: matches!(n.direction, Direction::Inactive | Direction::SendOnly),
                last_pop: None,
                srtp: n
                    .srtp
                    .as_ref()
                    .map(|k| (k.remote.clone(), srtp::Context::new(&k.remote))),
                unauthentic: 0,
                foreign: 0,
                bad_pt: 0,
                malformed: 0,
                slots: Slots::new(),
                reception: Reception::default(),
                clock_base: now,
                rtcp: Rtcp {
                    sock: rtcp,
                    remote: rtcp_of(n.remote),
                    latched: false,
                    next: now + rtcp::INTERVAL,
                    cname,
                    far: None,
                    reports_in: 0,
                    reports_out: 0,
                },
                pcm: vec![0; 2048],
            }),
            tx: Mutex::new(Tx {
                remote: n.remote,
                law: law(n.codec),
                pt: n.pt,
                sending: sends(n.direction),
                sender: RtpSender::new(),
                srtp: n.srtp.as_ref().map(|k| srtp::Context::new(&k.local)),
                buf: Vec::with_capacity(256),
                payload: Vec::with_capacity(256),
                sent_since_read: false,
                packets: 0,
                octets: 0,
            }),
            notes,
            timeout,
            timed_out: AtomicBool::new(false),
        })
    }

    /// The local RTP port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Whether the far end's keys come as RFC 4733 events (negotiated by
    /// their rtpmap).
    pub(crate) fn events_negotiated(&self) -> bool {
        lock(&self.rx).dtmf_pt.is_some()
    }

    /// Early media: the far end need not send before the call is
    /// answered, so its silence is no RTP timeout until the answer's
    /// [`RtpSession::renegotiate`].
    pub(crate) fn quiet_until_answer(&self) {
        lock(&self.rx).held = true;
    }

    /// A re-INVITE or UPDATE changed the session (hold, resume, a new
    /// address or codec).
    pub(crate) fn renegotiate(&self, n: &Negotiated) {
        let mut rx = lock(&self.rx);
        rx.law = law(n.codec);
        rx.pt = n.pt;
        rx.dtmf_pt = n.dtmf_pt;
        rx.held = matches!(n.direction, Direction::Inactive | Direction::SendOnly);
        rx.last_packet = Instant::now();
        match (&n.srtp, &rx.srtp) {
            (Some(k), Some((old, _))) if *old == k.remote => {}
            (Some(k), _) => rx.srtp = Some((k.remote.clone(), srtp::Context::new(&k.remote))),
            (None, _) => rx.srtp = None,
        }
        let mut tx = lock(&self.tx);
        match (&n.srtp, &tx.srtp) {
            (Some(_), Some(_)) => {}
            (Some(k), None) => tx.srtp = Some(srtp::Context::new(&k.local)),
            (None, _) => tx.srtp = None,
        }
        if tx.remote != n.remote {
            tx.remote = n.remote;
            rx.source = None;
        }
        tx.law = law(n.codec);
        tx.pt = n.pt;
        tx.sending = sends(n.direction);
    }

    /// Reads every datagram waiting and returns the next 20 ms of the far
    /// end's audio (silence when it sends none). Never waits; `None` only
    /// for a second read within one period.
    pub(crate) fn receive(&self) -> Option<Frame> {
        // One clock read per frame: this runs for every call every tick.
        let now = Instant::now();
        let mut rx = lock(&self.rx);
        // The jitter buffer always has a frame while it plays, so a
        // second read in one tick (the engine catching up a backlog) would
        // drain it faster than the far end fills it: one frame per period,
        // and the socket is read again next period, not now.
        if rx
            .last_pop
            .is_some_and(|t| now.duration_since(t) < MIN_POP_SPACING)
        {
            return None;
        }
        rx.last_pop = Some(now);
        self.keep_sending();
        let rx = &mut *rx;
        let mut got = [(0, SocketAddr::from(([0, 0, 0, 0], 0))); BATCH];
        loop {
            let count = recv_batch(&self.sock, &mut rx.slots, &mut got);
            for (i, &(n, from)) in got.iter().enumerate().take(count) {
                self.on_datagram(rx, i * SLOT, n, from, now);
            }
            if count < BATCH {
                break;
            }
        }
        if now >= rx.rtcp.next {
            self.rtcp_round(rx, now);
        }
        if !rx.held
            && now.duration_since(rx.last_packet) > self.timeout
            && !self.timed_out.swap(true, Ordering::Relaxed)
        {
            let _ = self.notes.send(MediaNote::Timeout);
        }
        Some(rx.jitter.pop_or_silence())
    }

    /// Reads the far end's reports waiting, and sends the box's (not on
    /// an encrypted call: the box does not speak SRTCP).
    fn rtcp_round(&self, rx: &mut Rx, now: Instant) {
        rx.rtcp.next = now + rtcp::INTERVAL;
        // What the box sent so far, and whether it sends now (not while
        // the far end holds, nor receive-only), under one lock.
        let (me, sending) = {
            let tx = lock(&self.tx);
            let me = Sending {
                ssrc: tx.sender.ssrc(),
                timestamp: tx.sender.timestamp(),
                packets: tx.packets,
                octets: tx.octets,
            };
            (me, tx.sending)
        };
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = rx.rtcp.sock.recv_from(&mut buf) {
            if !rx.rtcp.latched {
                if from.ip() != rx.rtcp.remote.ip()
                    && rx.source.is_some_and(|s| s.ip() != from.ip())
                {
                    continue;
                }
                // Symmetric, as for RTP.
                rx.rtcp.remote = from;
                rx.rtcp.latched = true;
            } else if from != rx.rtcp.remote {
                continue;
            }
            rx.rtcp.reports_in += 1;
            if rx.srtp.is_none()
                && let Some(v) = rtcp::read(&buf[..n], me.ssrc, &mut rx.reception, now)
            {
                rx.rtcp.far = Some(v);
            }
        }
        if rx.srtp.is_some() || rx.held || !sending {
            return;
        }
        let report = rtcp::sender_report(
            &me,
            &mut rx.reception,
            now,
            SystemTime::now(),
            &rx.rtcp.cname,
        );
        if rx.rtcp.sock.send_to(&report, rx.rtcp.remote).is_ok() {
            rx.rtcp.reports_out += 1;
        }
    }

    /// Handles one datagram of `n` bytes from `from` in `rx.slots` at
    /// `base`.
    fn on_datagram(&self, rx: &mut Rx, base: usize, mut n: usize, from: SocketAddr, now: Instant) {
        if let Some(s) = rx.source
            && s != from
        {
            rx.foreign += 1;
            if rx.foreign == 1 {
                tracing::warn!(port = self.port, %from, expected = %s, "RTP from an unexpected source dropped");
            }
            return;
        }
        let pkt = &mut rx.slots.buf[base..base + n];
        if rtp::is_rtcp(pkt) {
            return;
        }
        if let Some((_, ctx)) = rx.srtp.as_mut() {
            match ctx.unprotect(pkt) {
                Ok(len) => n = len,
                Err(e) => {
                    rx.unauthentic += 1;
                    if rx.unauthentic == 1 {
                        tracing::warn!(port = self.port, %from, "SRTP packet dropped: {e:?}");
                    }
                    return;
                }
            }
        }
        if rx.source.is_none() {
            // Symmetric RTP: answer where the far end sends from (only once
            // a packet proved itself, when encrypted).
            rx.source = Some(from);
            lock(&self.tx).remote = from;
        }
        let Ok((h, payload)) = rtp::parse(&rx.slots.buf[base..base + n]) else {
            rx.malformed += 1;
            if rx.malformed == 1 {
                tracing::warn!(port = self.port, %from, "malformed RTP packet dropped");
            }
            return;
        };
        rx.last_packet = now;
        let timing = (h.payload_type == rx.pt).then(|| {
            let arrival = now.duration_since(rx.clock_base).as_micros() / 125;
            (h.timestamp, arrival as u32)
        });
        rx.reception.on_packet(h.ssrc, h.seq, timing);
        let start = payload.as_ptr() as usize - rx.slots.buf.as_ptr() as usize;
        let range = start..start + payload.len();
        self.take(rx, &h, range);
    }

    /// Handles one parsed packet whose payload is `rx.slots.buf[payload]`.
    fn take(&self, rx: &mut Rx, h: &RtpHeader, payload: std::ops::Range<usize>) {
        if Some(h.payload_type) == rx.dtmf_pt {
            if let Some(key) = rx
                .keys
                .on_packet(h.ssrc, h.timestamp, &rx.slots.buf[payload])
            {
                let _ = self.notes.send(MediaNote::Key(key));
            }
            return;
        }
        if h.payload_type != rx.pt {
            rx.bad_pt += 1;
            if rx.bad_pt == 1 {
                tracing::warn!(
                    port = self.port,
                    pt = h.payload_type,
                    "RTP with a payload type not negotiated dropped"
                );
            }
            return;
        }
        let samples = payload.len().min(rx.pcm.len());
        rx.law.decode(
            &rx.slots.buf[payload.start..payload.start + samples],
            &mut rx.pcm[..samples],
        );
        rx.jitter.push(h.seq, h.timestamp, &rx.pcm[..samples]);
    }

    /// What the jitter buffer did, and packets dropped, for the call's log.
    pub(crate) fn summary(&self) -> String {
        let rx = lock(&self.rx);
        let j = rx.jitter.stats();
        let far = rx.rtcp.far.map_or_else(
            || "no report".to_string(),
            |v| {
                format!(
                    "{} lost, jitter {:.1} ms",
                    v.lost,
                    f64::from(v.jitter) / 8.0
                )
            },
        );
        format!(
            "late {} lost {} concealed {} cut {} samples; dropped: {} foreign, {} bad type, {} malformed, {} unauthentic; jitter {:.1} ms; RTCP {} sent, {} received, far end: {far}",
            j.late,
            j.lost,
            j.concealed,
            j.dropped,
            rx.foreign,
            rx.bad_pt,
            rx.malformed,
            rx.unauthentic,
            rx.reception.jitter_ms(),
            rx.rtcp.reports_out,
            rx.rtcp.reports_in,
        )
    }

    /// Sends a silent packet when the last tick wrote nothing to this leg:
    /// RTP keeps flowing while the box has nothing to say (a bridge whose
    /// other side is quiet), or carriers and phones hang up on RTP timeout.
    fn keep_sending(&self) {
        let mut tx = lock(&self.tx);
        let sent = std::mem::take(&mut tx.sent_since_read);
        if sent || !tx.sending {
            return;
        }
        let tx = &mut *tx;
        let silence = tx.law.encode_sample(0);
        tx.payload.clear();
        tx.payload.resize(FRAME_SAMPLES, silence);
        tx.transmit(&self.sock);
    }

    /// Sends one frame to the far end, unless the call is held or
    /// receive-only on our side. Never waits: a full socket buffer drops it.
    pub(crate) fn send(&self, frame: &Frame) {
        let mut tx = lock(&self.tx);
        if !tx.sending {
            return;
        }
        let tx = &mut *tx;
        let s = frame.samples();
        tx.payload.resize(s.len(), 0);
        tx.law.encode(s, &mut tx.payload);
        tx.transmit(&self.sock);
        tx.sent_since_read = true;
    }
}

impl Tx {
    /// Sends `payload` as the stream's next packet (counted for RTCP,
    /// protected when the call is encrypted). A full socket buffer drops it.
    fn transmit(&mut self, sock: &UdpSocket) {
        self.sender.audio(&mut self.buf, self.pt, &self.payload);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(self.payload.len() as u32);
        if let Some(c) = self.srtp.as_mut() {
            c.protect(&mut self.buf);
        }
        let _ = sock.send_to(&self.buf, self.remote);
    }
}

fn sends(d: Direction) -> bool {
    matches!(d, Direction::SendRecv | Direction::SendOnly)
}
