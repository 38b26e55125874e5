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

/// A carrier trunk: where the carrier is and how the box identifies itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkSettings {
    /// The carrier's SIP address (its calls come from this IP; the box's
    /// calls and registrations go to it).
    pub peer: SocketAddr,
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
