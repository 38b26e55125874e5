//! The `sip` part: the real `callboxd` pinned to one core with N SIP
//! trunk calls at once, each in the IVR's voicemail (the caller's RTP
//! decoded, keys listened for — as RFC 4733 events, which the calls
//! negotiate —, the message written to disk), against a load generator in
//! this process on another core that places the calls over loopback UDP,
//! sends 20 ms PCMA to each and times the box's RTP back by the kernel's
//! arrival stamps. Figures: the box's CPU per call-second over a window
//! where all N calls talk, the share of the box's packets that came more
//! than 5 ms later than 20 ms after the call's packet before (a late
//! tick), and the frames its jitter buffers had to conceal (from its log).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use callbox_tests::Site;

use super::{Figure, LATE_LIMIT, LATE_MS, Opts, Running, State, cpu_of, daemon_cmd, fig, run_site};

/// One SIP call of the generator.
struct Call {
    call_id: String,
    tag: String,
    to_tag: Option<String>,
    box_rtp: Option<SocketAddr>,
    seq: u16,
    ts: u32,
    /// Arrival of the box's packets, µs after the generator's start.
    arrivals: Vec<i64>,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The load generator: one socket for SIP, one for every call's RTP.
struct Load {
    sig: UdpSocket,
    rtp: UdpSocket,
    target: SocketAddr,
    calls: Vec<Call>,
    by_port: HashMap<u16, usize>,
    /// Held open for the box's RTCP.
    _rtcp: UdpSocket,
}

impl Load {
    fn new(target: SocketAddr, n: usize) -> Result<Load> {
        let sig = UdpSocket::bind("127.0.0.1:0")?;
        // RTP on an even port and RTCP (the box's reports, not read) on
        // the one above, as a real far end has: reports to a closed port
        // would cost the box an ICMP error each.
        let (rtp, rtcp) = rtp_pair()?;
        // The box answers every call each tick within a millisecond: room
        // for a thousand calls' packets, or the kernel drops them here.
        big_receive_buffer(&rtp, 16 << 20);
        sig.set_nonblocking(true)?;
        rtp.set_nonblocking(true)?;
        let calls = (0..n)
            .map(|i| Call {
                call_id: format!("load-{i}-{}", std::process::id()),
                tag: format!("t{i}"),
                to_tag: None,
                box_rtp: None,
                seq: 0,
                ts: 0,
                arrivals: Vec::new(),
            })
            .collect();
        Ok(Load {
            sig,
            rtp,
            target,
            calls,
            by_port: HashMap::new(),
            _rtcp: rtcp,
        })
    }

    fn sig_addr(&self) -> SocketAddr {
        self.sig.local_addr().expect("bound")
    }

    fn send_request(&self, i: usize, method: &str, cseq: u32, body: &str) {
        let me = self.sig_addr();
        let c = &self.calls[i];
        let to_tag = c
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "{method} sip:4008001234@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{i}x{cseq}\r\n\
             From: <sip:1390000{i:04}@{me}>;tag={tag}\r\nTo: <sip:4008001234@{t}>{to_tag}\r\nCall-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:load@{me}>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            t = self.target,
            tag = c.tag,
            id = c.call_id,
        );
        let _ = self.sig.send_to(msg.as_bytes(), self.target);
    }

    fn offer(&self) -> String {
        let port = self.rtp.local_addr().expect("bound").port();
        format!(
            "v=0\r\no=load 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
    }

    /// Takes every SIP message waiting; ACKs 200s to INVITEs.
    fn poll_sig(&mut self) {
        let mut buf = vec![0u8; 8192];
        while let Ok((n, _)) = self.sig.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(id) = header(&msg, "Call-ID") else {
                continue;
            };
            let Some(i) = self.calls.iter().position(|c| c.call_id == id) else {
                continue;
            };
            if msg.starts_with("SIP/2.0 200")
                && header(&msg, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
            {
                let tag = header(&msg, "To")
                    .and_then(|t| t.split(";tag=").nth(1))
                    .map(str::to_string);
                self.calls[i].to_tag = tag;
                let port = msg
                    .lines()
                    .find_map(|l| l.strip_prefix("m=audio "))
                    .and_then(|r| r.split(' ').next()?.parse::<u16>().ok());
                if let Some(p) = port {
                    self.calls[i].box_rtp = Some(SocketAddr::from(([127, 0, 0, 1], p)));
                    self.by_port.insert(p, i);
                }
                self.send_request(i, "ACK", 1, "");
            } else if msg.starts_with("BYE ") || msg.starts_with("OPTIONS ") {
                // Not expected in a run; answered so nothing retransmits.
                let resp = format!(
                    "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                    header(&msg, "Via").unwrap_or(""),
                    header(&msg, "From").unwrap_or(""),
                    header(&msg, "To").unwrap_or(""),
                    header(&msg, "CSeq").unwrap_or(""),
                );
                let _ = self.sig.send_to(resp.as_bytes(), self.target);
            }
        }
    }

    /// Places every call, `per_tick` INVITEs each 20 ms, until all are up.
    fn place(&mut self, limit: Duration) -> Result<()> {
        let offer = self.offer();
        let t0 = Instant::now();
        let per_tick = 4;
        let mut next = 0;
        while self.calls.iter().any(|c| c.box_rtp.is_none()) {
            ensure!(
                t0.elapsed() < limit,
                "only {} of {} calls answered",
                self.up(),
                self.calls.len()
            );
            for _ in 0..per_tick {
                if next < self.calls.len() {
                    self.send_request(next, "INVITE", 1, &offer);
                    next += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
            self.poll_sig();
        }
        Ok(())
    }

    fn up(&self) -> usize {
        self.calls.iter().filter(|c| c.box_rtp.is_some()).count()
    }

    /// Talks for `d`: a 20 ms PCMA packet to every call each tick, the
    /// box's packets timed. `measure` from when on arrivals count.
    fn talk(&mut self, d: Duration, measure_from: Instant) {
        // A 440 Hz tone, A-law, one 20 ms frame (8000/440 is not whole:
        // the phase restarts each frame, which no one listens to).
        let frame: Vec<u8> = (0..160)
            .map(|i| {
                let s =
                    (6000.0 * (std::f64::consts::TAU * 440.0 * f64::from(i) / 8000.0).sin()) as i16;
                callbox_hal::dsp::g711::alaw_encode(s)
            })
            .collect();
        let mut pkt = vec![0u8; 12 + 160];
        let start = Instant::now();
        let mut tick = 0u32;
        // A thread of its own takes the box's packets with the kernel's
        // arrival time of each (SO_TIMESTAMPNS), draining the socket every
        // millisecond rather than waiting on it: a receiver blocked on the
        // socket would be woken for every packet, and on loopback that
        // wake-up (an interrupt to the other core) is paid inside the
        // box's `sendto`, which a network card would not charge it.
        let rx = self.rtp.try_clone().expect("cloning the RTP socket");
        rx.set_nonblocking(true).expect("non-blocking");
        nix::sys::socket::setsockopt(&rx, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .expect("SO_TIMESTAMPNS");
        let wall_start = std::time::SystemTime::now();
        let from_us = measure_from
            .checked_duration_since(start)
            .unwrap_or_default()
            .as_micros() as i64;
        let done = std::sync::atomic::AtomicBool::new(false);
        let arrivals = std::thread::scope(|sc| {
            let receiver = sc.spawn(|| {
                let mut got: Vec<(u16, i64)> = Vec::with_capacity(1 << 20);
                let mut buf = vec![0u8; 2048];
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match arrival(&rx, &mut buf, wall_start) {
                        Some((n, port, at)) if n >= 12 && at >= from_us => got.push((port, at)),
                        Some(_) => {}
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
                got
            });
            while start.elapsed() < d {
                for (i, c) in self.calls.iter_mut().enumerate() {
                    let Some(to) = c.box_rtp else { continue };
                    pkt[0] = 0x80;
                    pkt[1] = 8;
                    pkt[2..4].copy_from_slice(&c.seq.to_be_bytes());
                    pkt[4..8].copy_from_slice(&c.ts.to_be_bytes());
                    pkt[8..12].copy_from_slice(&(i as u32 + 1).to_be_bytes());
                    pkt[12..].copy_from_slice(&frame);
                    let _ = self.rtp.send_to(&pkt, to);
                    c.seq = c.seq.wrapping_add(1);
                    c.ts = c.ts.wrapping_add(160);
                }
                tick += 1;
                let due = start + Duration::from_millis(20) * tick;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            receiver.join().unwrap_or_default()
        });
        for (port, at) in arrivals {
            let Some(&i) = self.by_port.get(&port) else {
                continue;
            };
            self.calls[i].arrivals.push(at);
        }
    }

    /// Hangs every call up.
    fn hang_up(&mut self) {
        for i in 0..self.calls.len() {
            self.send_request(i, "BYE", 2, "");
        }
        std::thread::sleep(Duration::from_millis(500));
        self.poll_sig();
    }

    /// Packets the box sent, and how many came more than LATE_MS later
    /// than a frame period after the one before (a late tick on the box;
    /// an extra packet is not late, and does not shift what follows).
    fn lateness(&self) -> (u64, u64) {
        let (mut all, mut late) = (0u64, 0u64);
        for c in &self.calls {
            all += c.arrivals.len() as u64;
            late += c
                .arrivals
                .windows(2)
                .filter(|w| w[1] - w[0] > 20_000 + LATE_MS as i64 * 1000)
                .count() as u64;
        }
        (all, late)
    }
}

/// Two sockets on loopback ports 2k and 2k+1 (a free pair can be taken
/// before it is bound: tried again then).
fn rtp_pair() -> Result<(UdpSocket, UdpSocket)> {
    for _ in 0..100 {
        let (p, _) = callbox_tests::sip::free_rtp_range(2);
        if let (Ok(a), Ok(b)) = (
            UdpSocket::bind(("127.0.0.1", p)),
            UdpSocket::bind(("127.0.0.1", p + 1)),
        ) {
            return Ok((a, b));
        }
    }
    anyhow::bail!("no free pair of ports for the generator's RTP and RTCP")
}

/// The next datagram waiting on `sock` (non-blocking) into `buf`: its
/// length, source port and kernel arrival time in µs after `start`.
fn arrival(
    sock: &UdpSocket,
    buf: &mut [u8],
    start: std::time::SystemTime,
) -> Option<(usize, u16, i64)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let port = msg.address.map(|a| a.port())?;
    let at = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(t) => Some(
            std::time::Duration::from(t)
                .checked_sub(start.duration_since(std::time::UNIX_EPOCH).ok()?)
                .map_or(0, |d| d.as_micros() as i64),
        ),
        _ => None,
    })?;
    Some((msg.bytes, port, at))
}

/// The site: `n` SIP trunk lines from the generator, an IVR that takes a
/// voicemail message (up to 10 minutes) from every caller.
fn sip_site(n: usize, sip: SocketAddr, peer: SocketAddr) -> Site {
    let site = Site::new(0, 0, 200, "");
    let lo = 30000u16;
    let hi = lo + 2 * n as u16 + 20;
    let mut cfg = std::fs::read_to_string(site.config()).unwrap();
    let mut lines = String::new();
    for i in 1..=n {
        lines += &format!(
            "[[line]]\nid = \"ch-{i}\"\nkind = \"trunk\"\nsip = {{ peer = \"{peer}\" }}\n\n"
        );
    }
    cfg = cfg.replace(
        "[inbound]\n",
        &format!("[hal]\nbackend = \"sip\"\n\n[sip]\nlisten = \"{sip}\"\nrtp_ports = \"{lo}-{hi}\"\n\n{lines}[inbound]\n"),
    );
    cfg += "\n[ivr]\nstart = \"message\"\n\n[ivr.node.message]\ntype = \"voicemail\"\nmailbox = \"load\"\n\
            prompt = \"greeting.wav\"\nmax_length = \"10m\"\nnext = \"bye\"\n\n[ivr.node.bye]\ntype = \"hangup\"\n";
    std::fs::write(site.config(), cfg).unwrap();
    site
}

/// One run of `n` SIP calls; (CPU µs per call-second, late share, packets
/// measured, frames concealed).
fn sip_run(n: usize, o: &Opts) -> Result<(f64, f64, u64, u64)> {
    let sip = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    // Pin the generator (this thread) to the other core.
    pin_self(o.world_core);
    let mut load = Load::new(sip, n)?;
    let site = sip_site(n, sip, load.sig_addr());
    let wrap: Vec<String> = vec!["taskset".into(), "-c".into(), o.core.to_string()];
    let mut c = daemon_cmd(&wrap);
    // The per-call RTP summaries come at info.
    c.env(
        "RUST_LOG",
        "warn,callbox_hal::sip=info,callbox_firmware::app=info",
    );
    run_site(&mut c, &site, None);
    let (mut d, _) = Running::start(c)?;
    d.wait_ready(Duration::from_secs(30))?;
    let pid = d.pid();
    load.place(Duration::from_secs(60 + n as u64 / 20))?;
    let settle = Duration::from_secs(3);
    let window = Duration::from_secs(if o.quick { 2 } else { o.window });
    let measure_from = Instant::now() + settle;
    let stat = std::path::PathBuf::from(format!("/proc/{pid}/stat"));
    let cpu = std::thread::scope(|s| {
        let h = s.spawn(|| {
            std::thread::sleep(settle);
            let (p0, t0) = (cpu_of(&stat), Instant::now());
            std::thread::sleep(window);
            let (p1, t1) = (cpu_of(&stat), Instant::now());
            p1.zip(p0)
                .map(|(a, b)| (a - b) / t1.duration_since(t0).as_secs_f64())
        });
        load.talk(settle + window + Duration::from_secs(1), measure_from);
        h.join().ok().flatten()
    })
    .context("box CPU")?;
    load.hang_up();
    let (all, late) = load.lateness();
    std::thread::sleep(Duration::from_secs(1));
    let log = d.log_lines();
    d.stop()?;
    let concealed: u64 = log
        .iter()
        .filter_map(|l| {
            l.split(" concealed ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    Ok((
        cpu * 1e6 / n as f64,
        late as f64 / all.max(1) as f64,
        all,
        concealed,
    ))
}

fn big_receive_buffer(s: &UdpSocket, bytes: i32) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

fn pin_self(core: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it;
    // sched_setaffinity reads it (pid 0: this thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The part: each N, its figures, and the comparison with the sim
/// backend's CPU per call-second measured by `capacity` in the same run.
pub(super) fn sip(o: &Opts, state: &State) -> Result<Vec<Figure>> {
    // The sim figure compares the SIP calls (IVR voicemail: decode, key
    // detection, a mono recording) with the capacity run's (IVR, queue,
    // agent, stereo recording): the sim calls do more per call.
    let ns = o.calls.clone().unwrap_or_else(|| {
        if o.quick {
            vec![5]
        } else {
            vec![100, 500, 1000]
        }
    });
    let smallest = ns.iter().copied().min().unwrap_or(0);
    let mut figures = Vec::new();
    let mut capacity = 0;
    let mut last_cpu = None;
    println!(
        "| calls | box CPU µs per call-second | box packets late | packets | frames concealed |"
    );
    println!("|---|---|---|---|---|");
    for n in ns {
        let (cpu, late, packets, concealed) = sip_run(n, o)?;
        println!(
            "| {n} | {cpu:.0} | {:.3} % | {packets} | {concealed} |",
            late * 100.0
        );
        if late < LATE_LIMIT {
            capacity = capacity.max(n);
        }
        last_cpu = Some((n, cpu));
    }
    let held = if capacity > 0 {
        format!("≥ {capacity}")
    } else {
        format!("below {smallest} (the smallest N run)")
    };
    figures.push(fig("SIP calls on one core, < 0.1 % late", held, "≥ 1,000"));
    if let Some((n, cpu)) = last_cpu {
        // The sim backend's figure from this run's `capacity` part, or a
        // capacity run at the same N now.
        let sim = match state.cpu_us_per_call_s {
            Some(s) => s,
            None => super::capacity_run(n, o)?.cpu_us,
        };
        let vs = format!("{:.2}× the sim backend's {sim:.0} µs", cpu / sim);
        figures.push(fig(
            "SIP box CPU per call-second (largest N)",
            format!("{cpu:.0} µs, {vs}"),
            "≤ 1.5× the sim backend's",
        ));
    }
    Ok(figures)
}
