//! What the SIP backend is told by the site config: where it listens, which
//! codecs it speaks, and per line whether it is a carrier trunk or a phone.
//! Plain data; the firmware's config checker fills it in and names the
//! places of mistakes.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use super::sdp::Codec;

/// The box-wide SIP settings (`[sip]` in the site config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    /// UDP address the box's SIP listens on.
    pub listen: SocketAddr,
    /// Address written into Contact and SDP when `listen` is a wildcard or
    /// the box is behind NAT; `listen`'s address otherwise.
    pub advertise: Option<IpAddr>,
    /// Even UDP ports handed out to calls' RTP (RTCP takes the odd one).
    pub rtp_ports: RangeInclusive<u16>,
    /// Codecs offered and accepted, most preferred first.
    pub codecs: Vec<Codec>,
    /// A call whose far end sends no RTP this long is hung up (not while
    /// it holds the call).
    pub rtp_timeout: Duration,
    /// SIP over TLS, when the site asks for it.
    pub tls: Option<TlsSettings>,
}

/// SIP over TLS (`[sip] tls_listen`…): where the box listens for phones
/// and carriers that connect with TLS, its certificate, and whom it trusts
/// when it connects to a carrier.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// TCP address of the TLS listener.
    pub listen: SocketAddr,
    /// The box's certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// The authorities a carrier's certificate must chain to (PEM); the
    /// system's when not set.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsSettings {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl SipSettings {
    /// Defaults for a box listening on `listen`.
    pub fn new(listen: SocketAddr) -> SipSettings {
        SipSettings {
            listen,
            advertise: None,
            rtp_ports: 20000..=20999,
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            rtp_timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// The address the box tells peers to reach it at.
    pub fn public_ip(&self) -> IpAddr {
        self.advertise.unwrap_or(self.listen.ip())
    }
}

/// How one `[[line]]` speaks SIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipLineSettings {
    /// A carrier trunk.
    Trunk(TrunkSettings),
    /// An agent's SIP phone, registered to the box.
    Station(StationSettings),
}

/// Where a carrier is: an address, or a DNS name the box resolves when it
/// starts and again every minute (a carrier may move its SBCs or have
/// several under one name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A fixed address.
    Addr(SocketAddr),
    /// A host name and port.
    Name {
        /// The DNS name.
        host: String,
        /// The SIP port there.
        port: u16,
    },
}

impl Peer {
    /// Reads `203.0.113.5`, `203.0.113.5:5061`, `[2001:db8::1]:5060`,
    /// `sip.carrier.example` or `sip.carrier.example:5080` (port 5060 when
    /// not given).
    pub fn parse(text: &str) -> Result<Peer, String> {
        if let Ok(a) = text.parse::<SocketAddr>() {
            return Ok(Peer::Addr(a));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Peer::Addr(SocketAddr::new(ip, 5060)));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`{p}` is not a port number"))?,
            ),
            None => (text, 5060),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > 253
            || !host.split('.').all(label_ok)
            || host
                .split('.')
                .all(|l| l.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(format!(
                "`{text}` is neither an IP address nor a host name, with an optional port (e.g. \"203.0.113.5:5060\" or \"sip.carrier.example\")"
            ));
        }
        Ok(Peer::Name {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host part as written in SIP URIs (the default domain).
    pub fn host(&self) -> String {
        match self {
            Peer::Addr(a) => a.ip().to_string(),
            Peer::Name { host, .. } => host.clone(),
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Addr(a) => write!(f, "{a}"),
            Peer::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A carrier trunk: where the carrier is and how the box identifies itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkSettings {
    /// The carrier's SIP address (its calls come from its IPs; the box's
    /// calls and registrations go to it).
    pub peer: Peer,
    /// SIP domain in the box's URIs toward the carrier; the peer's address
    /// when not set.
    pub domain: Option<String>,
    /// Account name (digest user and the user part of the box's URI).
    pub username: Option<String>,
    /// Digest password.
    pub password: Option<String>,
    /// Register the account at the carrier (otherwise the carrier knows the
    /// box by its IP address).
    pub register: bool,
    /// Registration lifetime asked for.
    pub expires: Duration,
    /// Number presented on outbound calls.
    pub caller_id: Option<String>,
    /// How often a carrier known by address is asked whether it is there
    /// (OPTIONS); `None`: never.
    pub keepalive: Option<Duration>,
    /// Signalling to the carrier over TLS (its certificate checked).
    pub tls: bool,
}

/// A SIP phone: the account it registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationSettings {
    /// The phone's user name (`sip:USER@box`).
    pub username: String,
    /// Its digest password; never a default.
    pub password: String,
}

/// What the backend builder gets: the settings and the SIP lines by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipArgs {
    /// Box-wide settings.
    pub settings: SipSettings,
    /// `(line id, settings)` for every line that speaks SIP, in file order.
    pub lines: Vec<(String, SipLineSettings)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_addresses_or_host_names_with_a_port() {
        assert_eq!(
            Peer::parse("203.0.113.5").unwrap(),
            Peer::Addr("203.0.113.5:5060".parse().unwrap())
        );
        assert_eq!(
            Peer::parse("[2001:db8::1]:5080").unwrap(),
            Peer::Addr("[2001:db8::1]:5080".parse().unwrap())
        );
        assert_eq!(
            Peer::parse("SIP.Carrier.example:5080").unwrap(),
            Peer::Name {
                host: "sip.carrier.example".into(),
                port: 5080
            }
        );
        assert_eq!(
            Peer::parse("localhost").unwrap().to_string(),
            "localhost:5060"
        );
        for bad in [
            "carrier example",
            "1.2.3",
            "host:0",
            "host:http",
            "-x.example",
            "",
        ] {
            assert!(Peer::parse(bad).is_err(), "{bad}");
        }
    }
}
