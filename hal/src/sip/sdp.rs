//! SDP (RFC 4566) for one audio stream, and the offer/answer rules of
//! RFC 3264 the box needs: which G.711 law, which payload type carries
//! RFC 4733 keys (by its rtpmap, never assumed 101), where to send, and
//! who sends (hold is `sendonly`, `inactive` or the old `c=0.0.0.0`).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::srtp::MasterKey;

/// A codec the box speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law.
    Pcma,
    /// G.711 µ-law.
    Pcmu,
}

impl Codec {
    /// Its static payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcma => 8,
            Codec::Pcmu => 0,
        }
    }

    /// Its encoding name in an rtpmap.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }

    fn from_name(name: &str) -> Option<Codec> {
        match name.to_ascii_uppercase().as_str() {
            "PCMA" => Some(Codec::Pcma),
            "PCMU" => Some(Codec::Pcmu),
            _ => None,
        }
    }
}

/// Who sends media, from one side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// This side sends only (it holds the other).
    SendOnly,
    /// This side receives only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answerer's direction for an offerer's (RFC 3264 §6.1).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// The audio stream of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Port the other side receives RTP on (0: stream refused).
    pub port: u16,
    /// `RTP/AVP`, or `RTP/SAVP` with SRTP.
    pub protocol: String,
    /// Payload types, in the sender's preference.
    pub formats: Vec<u8>,
    /// `(payload type, encoding, clock rate)` from `a=rtpmap`.
    pub rtpmap: Vec<(u8, String, u32)>,
    /// Its direction, from the describing side's point of view.
    pub direction: Direction,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// A media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=crypto` lines (SDES), as written.
    pub crypto: Vec<String>,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// `o=`'s session id.
    pub origin_session: u64,
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// The first audio stream, if any.
    pub audio: Option<Media>,
}

/// What is wrong with a description, or why no stream can be agreed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line that does not parse.
    #[error("SDP line {line}: {what}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// No `m=audio` line.
    #[error("SDP has no audio stream")]
    NoAudio,
    /// No address to send to.
    #[error("SDP has no connection address for its audio")]
    NoAddress,
    /// SRTP asked for (RTP/SAVP) without a key the box can use.
    #[error("SRTP without a key in the suite the box speaks ({suite})", suite = crate::sip::srtp::SUITE)]
    NoCrypto,
    /// Nothing in common.
    #[error("no common codec: the offer has {offered}; the box speaks {ours}")]
    NoCodec {
        /// What the other side listed.
        offered: String,
        /// What the box speaks.
        ours: String,
    },
}

fn parse_ip(s: &str, line: usize) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1[/ttl]
    let mut parts = s.split_whitespace();
    let (Some("IN"), Some(_), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SdpError::Line {
            line,
            what: format!("`c={s}` is not `IN IP4 address`"),
        });
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse().map_err(|_| SdpError::Line {
        line,
        what: format!("`{addr}` is not an IP address"),
    })
}

impl Sdp {
    /// Parses a description; CRLF or LF, unknown lines ignored.
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        let mut sdp = Sdp {
            origin_session: 0,
            connection: None,
            audio: None,
        };
        let mut session_dir = Direction::SendRecv;
        // Which m= section the lines belong to: None = session level,
        // Some(true) = the audio stream kept, Some(false) = another.
        let mut in_media: Option<bool> = None;
        let mut media_dir: Option<Direction> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let l = raw.trim_end_matches('\r');
            if l.is_empty() {
                continue;
            }
            let Some((kind, value)) = l.split_once('=') else {
                return Err(SdpError::Line {
                    line: n,
                    what: format!("`{l}` is not `type=value`"),
                });
            };
            match (kind, in_media) {
                ("o", None) => {
                    sdp.origin_session = value
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                }
                ("c", None) => sdp.connection = Some(parse_ip(value, n)?),
                ("m", _) => {
                    if in_media == Some(true) {
                        in_media = Some(false);
                        continue;
                    }
                    let mut p = value.split_whitespace();
                    let media = p.next().unwrap_or("");
                    let port = p.next().and_then(|s| s.split('/').next()?.parse().ok());
                    let Some(port) = port else {
                        return Err(SdpError::Line {
                            line: n,
                            what: "m= line without a port".into(),
                        });
                    };
                    let protocol = p.next().unwrap_or("").to_string();
                    if media != "audio" || sdp.audio.is_some() {
                        in_media = Some(false);
                        continue;
                    }
                    let formats = p.filter_map(|f| f.parse().ok()).collect();
                    sdp.audio = Some(Media {
                        port,
                        protocol,
                        formats,
                        rtpmap: Vec::new(),
                        direction: Direction::SendRecv,
                        ptime: None,
                        connection: None,
                        crypto: Vec::new(),
                    });
                    in_media = Some(true);
                }
                ("c", Some(true)) => {
                    let ip = parse_ip(value, n)?;
                    if let Some(m) = sdp.audio.as_mut() {
                        m.connection = Some(ip);
                    }
                }
                ("a", m) if m != Some(false) => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let dir = match name {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    if let Some(d) = dir {
                        if m.is_none() {
                            session_dir = d;
                        } else {
                            media_dir = Some(d);
                        }
                        continue;
                    }
                    let Some(media) = sdp.audio.as_mut().filter(|_| m == Some(true)) else {
                        continue;
                    };
                    match name {
                        "rtpmap" => {
                            let bad = || SdpError::Line {
                                line: n,
                                what: format!("`a=rtpmap:{arg}` is not `PT NAME/RATE`"),
                            };
                            let (pt, enc) = arg.split_once(' ').ok_or_else(bad)?;
                            let pt: u8 = pt.trim().parse().map_err(|_| bad())?;
                            let mut e = enc.trim().split('/');
                            let name = e.next().ok_or_else(bad)?.to_string();
                            let rate = e.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
                            media.rtpmap.push((pt, name, rate));
                        }
                        "ptime" => media.ptime = arg.trim().parse().ok(),
                        "crypto" => media.crypto.push(arg.to_string()),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(m) = sdp.audio.as_mut() {
            m.direction = media_dir.unwrap_or(session_dir);
        }
        Ok(sdp)
    }

    /// The audio stream's address.
    pub fn audio_addr(&self) -> Option<SocketAddr> {
        let m = self.audio.as_ref()?;
        Some(SocketAddr::new(m.connection.or(self.connection)?, m.port))
    }

    /// Whether this description puts the call on hold: `sendonly`,
    /// `inactive`, or the old RFC 2543 `c=0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        let Some(m) = &self.audio else { return false };
        matches!(m.direction, Direction::SendOnly | Direction::Inactive)
            || self.audio_addr().is_some_and(|a| a.ip().is_unspecified())
    }
}

/// What both sides agreed for the call's RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec.
    pub codec: Codec,
    /// Its payload type in this session.
    pub pt: u8,
    /// The telephone-event payload type, if both sides have one.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// Packet time the other side asked for, in ms.
    pub ptime: u32,
    /// The box's own direction.
    pub direction: Direction,
    /// SRTP keys, when the call is encrypted (SDES).
    pub srtp: Option<SrtpKeys>,
}

/// The two SRTP master keys of an encrypted call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    /// The box's: what it sends is protected with it.
    pub local: MasterKey,
    /// The far end's: what it sends is checked and decrypted with it.
    pub remote: MasterKey,
}

/// The encoding name of payload type `pt` in `m`: its rtpmap, else the
/// static type.
fn encoding(m: &Media, pt: u8) -> Option<(String, u32)> {
    if let Some((_, name, rate)) = m.rtpmap.iter().find(|(p, _, _)| *p == pt) {
        return Some((name.clone(), *rate));
    }
    match pt {
        0 => Some(("PCMU".into(), 8000)),
        8 => Some(("PCMA".into(), 8000)),
        _ => None,
    }
}

fn dtmf_pt(m: &Media) -> Option<u8> {
    m.formats.iter().copied().find(|&pt| {
        encoding(m, pt).is_some_and(|(n, r)| n.eq_ignore_ascii_case("telephone-event") && r == 8000)
    })
}

/// Chooses the codec: the first of `m`'s formats the box speaks.
fn choose(m: &Media, ours: &[Codec]) -> Result<(Codec, u8), SdpError> {
    for &pt in &m.formats {
        if let Some((name, 8000)) = encoding(m, pt)
            && let Some(c) = Codec::from_name(&name)
            && ours.contains(&c)
        {
            return Ok((c, pt));
        }
    }
    Err(SdpError::NoCodec {
        offered: m
            .formats
            .iter()
            .map(|&pt| match encoding(m, pt) {
                Some((n, _)) => format!("{pt} ({n})"),
                None => pt.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        ours: ours.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
    })
}

/// Whether a stream's profile is secure RTP.
fn secure(m: &Media) -> bool {
    m.protocol.to_ascii_uppercase().contains("SAVP")
}

/// The far end's first key in the suite the box speaks, with its tag.
fn their_key(m: &Media) -> Option<(u32, MasterKey)> {
    m.crypto.iter().find_map(|c| MasterKey::from_crypto(c))
}

fn agree(
    sdp: &Sdp,
    ours: &[Codec],
    our_dir: impl Fn(Direction) -> Direction,
) -> Result<Negotiated, SdpError> {
    let m = sdp.audio.as_ref().ok_or(SdpError::NoAudio)?;
    let (codec, pt) = choose(m, ours)?;
    let remote = sdp.audio_addr().ok_or(SdpError::NoAddress)?;
    let mut direction = our_dir(m.direction);
    if remote.ip().is_unspecified() {
        // c=0.0.0.0: the other side neither sends nor may be sent to.
        direction = Direction::Inactive;
    }
    Ok(Negotiated {
        codec,
        pt,
        dtmf_pt: dtmf_pt(m),
        remote,
        ptime: m.ptime.unwrap_or(20),
        direction,
        srtp: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn describe(
    codecs: &[(Codec, u8)],
    dtmf: Option<u8>,
    ip: IpAddr,
    port: u16,
    session: u64,
    version: u64,
    direction: Direction,
    crypto: Option<(&str, u32, &MasterKey)>,
) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "v=0\r\no=callbox {session} {version} IN {family} {ip}\r\ns=callbox\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {}",
        crypto.map_or("RTP/AVP", |(profile, _, _)| profile)
    );
    for (_, pt) in codecs {
        let _ = write!(s, " {pt}");
    }
    if let Some(d) = dtmf {
        let _ = write!(s, " {d}");
    }
    s.push_str("\r\n");
    for (c, pt) in codecs {
        let _ = write!(s, "a=rtpmap:{pt} {}/8000\r\n", c.name());
    }
    if let Some(d) = dtmf {
        let _ = write!(
            s,
            "a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-15\r\n"
        );
    }
    if let Some((_, tag, key)) = crypto {
        let _ = write!(s, "a=crypto:{}\r\n", key.crypto_attr(tag));
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.attr());
    s
}

/// Answers an offer: the box's description and what was agreed. With
/// `key`, an offer with SRTP keys (SDES) is answered encrypted; an offer
/// of RTP/SAVP without a usable key is refused.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    offer: &Sdp,
    ours: &[Codec],
    ip: IpAddr,
    port: u16,
    session: u64,
    version: u64,
    key: Option<&MasterKey>,
) -> Result<(String, Negotiated), SdpError> {
    let mut n = agree(offer, ours, Direction::reverse)?;
    let m = offer.audio.as_ref().ok_or(SdpError::NoAudio)?;
    let crypto = match (their_key(m), key) {
        (Some((tag, remote)), Some(local)) => {
            n.srtp = Some(SrtpKeys {
                local: local.clone(),
                remote,
            });
            Some((m.protocol.as_str(), tag, local))
        }
        _ if secure(m) => return Err(SdpError::NoCrypto),
        _ => None,
    };
    let text = describe(
        &[(n.codec, n.pt)],
        n.dtmf_pt,
        ip,
        port,
        session,
        version,
        n.direction,
        crypto,
    );
    Ok((text, n))
}

/// The box's offer: its codecs and telephone-event at `dtmf_pt`; with
/// `key`, RTP/SAVP with that SRTP key.
#[allow(clippy::too_many_arguments)]
pub fn offer(
    ours: &[Codec],
    dtmf_pt: u8,
    ip: IpAddr,
    port: u16,
    session: u64,
    version: u64,
    direction: Direction,
    key: Option<&MasterKey>,
) -> String {
    let codecs: Vec<_> = ours.iter().map(|c| (*c, c.payload_type())).collect();
    describe(
        &codecs,
        Some(dtmf_pt),
        ip,
        port,
        session,
        version,
        direction,
        key.map(|k| ("RTP/SAVP", 1, k)),
    )
}

/// What was agreed, from the answer to the box's offer of `ours` (made
/// with SRTP `key`, if any: then the answer must carry the far end's).
pub fn negotiated_from_answer(
    ours: &[Codec],
    answer: &Sdp,
    key: Option<&MasterKey>,
) -> Result<Negotiated, SdpError> {
    let mut n = agree(answer, ours, Direction::reverse)?;
    if let Some(local) = key {
        let m = answer.audio.as_ref().ok_or(SdpError::NoAudio)?;
        let (_, remote) = their_key(m).ok_or(SdpError::NoCrypto)?;
        n.srtp = Some(SrtpKeys {
            local: local.clone(),
            remote,
        });
    }
    Ok(n)
}

/// An unspecified IPv4 address, for tests and holds.
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";
    const BARESIP: &str = "v=0\no=- 1 2 IN IP4 10.0.0.7\ns=-\nc=IN IP4 10.0.0.7\nt=0 0\nm=audio 40000 RTP/AVP 0 8 96\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15\na=ptime:20\na=sendrecv\nm=video 40002 RTP/AVP 97\na=rtpmap:97 H264/90000\na=sendonly\n";
    const ME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn sipps_offer_is_answered_with_pcma_and_its_event_type() {
        let o = Sdp::parse(SIPP).unwrap();
        let (text, n) = answer(&o, &[Codec::Pcma, Codec::Pcmu], ME, 20000, 5, 1, None).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!((n.pt, n.dtmf_pt), (8, Some(101)));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(text.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000"), "{text}");
        let back = Sdp::parse(&text).unwrap();
        assert_eq!(
            negotiated_from_answer(&[Codec::Pcma], &back, None)
                .unwrap()
                .pt,
            8
        );
    }

    #[test]
    fn the_event_type_is_taken_from_its_rtpmap_and_the_offers_order_wins() {
        let o = Sdp::parse(BARESIP).unwrap();
        let (_, n) = answer(&o, &[Codec::Pcma, Codec::Pcmu], ME, 20000, 5, 1, None).unwrap();
        assert_eq!((n.codec, n.pt, n.dtmf_pt), (Codec::Pcmu, 0, Some(96)));
        // The video stream's sendonly does not leak into the audio's.
        assert!(!o.is_hold());
        let (_, n) = answer(&o, &[Codec::Pcma], ME, 20000, 5, 1, None).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
    }

    #[test]
    fn holds_are_recognised_and_answered() {
        let held = BARESIP.replace("a=sendrecv", "a=sendonly");
        let o = Sdp::parse(&held).unwrap();
        assert!(o.is_hold());
        let (text, n) = answer(&o, &[Codec::Pcma], ME, 1, 1, 2, None).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(text.contains("a=recvonly"));
        let old = SIPP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let o = Sdp::parse(&old).unwrap();
        assert!(o.is_hold());
        assert_eq!(
            answer(&o, &[Codec::Pcma], ME, 1, 1, 2, None)
                .unwrap()
                .1
                .direction,
            Direction::Inactive
        );
        let inactive = Sdp::parse(&format!("{SIPP}a=inactive\r\n")).unwrap();
        assert!(inactive.is_hold());
    }

    #[test]
    fn an_srtp_offer_is_answered_with_the_boxs_key_and_one_without_a_key_is_refused() {
        let theirs = MasterKey::random().unwrap();
        let ours = MasterKey::random().unwrap();
        let their_offer = SIPP.replace("RTP/AVP 8 101", "RTP/SAVP 8 101")
            + &format!("a=crypto:3 {}\r\n", &theirs.crypto_attr(3)[2..]);
        let o = Sdp::parse(&their_offer).unwrap();
        let (text, n) = answer(&o, &[Codec::Pcma], ME, 20000, 5, 1, Some(&ours)).unwrap();
        assert!(text.contains("m=audio 20000 RTP/SAVP 8 101\r\n"), "{text}");
        assert!(
            text.contains(&format!("a=crypto:{}\r\n", ours.crypto_attr(3))),
            "{text}"
        );
        let keys = n.srtp.unwrap();
        assert_eq!((keys.local, keys.remote), (ours.clone(), theirs.clone()));
        // The box's answer, read back by the far end as its answer.
        let back = Sdp::parse(&text).unwrap();
        let n = negotiated_from_answer(&[Codec::Pcma], &back, Some(&theirs)).unwrap();
        assert_eq!(n.srtp.unwrap().remote, ours);
        // RTP/SAVP with no key the box can use; a plain answer to an SRTP
        // offer.
        let bare = Sdp::parse(&SIPP.replace("RTP/AVP 8 101", "RTP/SAVP 8 101")).unwrap();
        assert_eq!(
            answer(&bare, &[Codec::Pcma], ME, 1, 1, 1, Some(&ours)).unwrap_err(),
            SdpError::NoCrypto
        );
        let plain = Sdp::parse(SIPP).unwrap();
        assert_eq!(
            negotiated_from_answer(&[Codec::Pcma], &plain, Some(&ours)).unwrap_err(),
            SdpError::NoCrypto
        );
        // A plain offer stays plain, key or not.
        let (text, n) = answer(&plain, &[Codec::Pcma], ME, 1, 1, 1, Some(&ours)).unwrap();
        assert!(n.srtp.is_none() && !text.contains("crypto"), "{text}");
        let offered = offer(
            &[Codec::Pcma],
            101,
            ME,
            1,
            1,
            1,
            Direction::SendRecv,
            Some(&ours),
        );
        assert!(
            offered.contains("RTP/SAVP") && offered.contains("a=crypto:1 "),
            "{offered}"
        );
    }

    #[test]
    fn no_common_codec_and_garbage_are_named() {
        let g729 = SIPP
            .replace("RTP/AVP 8 101", "RTP/AVP 18")
            .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000");
        let e = answer(
            &Sdp::parse(&g729).unwrap(),
            &[Codec::Pcma, Codec::Pcmu],
            ME,
            1,
            1,
            1,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no common codec: the offer has 18 (G729); the box speaks PCMA, PCMU"
        );
        assert_eq!(
            Sdp::parse("v=0\r\nhello\r\n").unwrap_err().to_string(),
            "SDP line 2: `hello` is not `type=value`"
        );
        assert!(
            Sdp::parse("v=0\r\nm=audio\r\n")
                .unwrap_err()
                .to_string()
                .contains("line 2: m= line without a port")
        );
        assert!(
            Sdp::parse("v=0\r\nc=IN IP4 nowhere\r\n")
                .unwrap_err()
                .to_string()
                .contains("`nowhere` is not an IP address")
        );
        assert_eq!(
            answer(
                &Sdp::parse("v=0\r\n").unwrap(),
                &[Codec::Pcma],
                ME,
                1,
                1,
                1,
                None
            )
            .unwrap_err(),
            SdpError::NoAudio
        );
    }
}
