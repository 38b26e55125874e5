//! The SIP backend: carrier trunks and agents' SIP phones.
//!
//! Lines whose site config has a `sip = { … }` table speak SIP: a trunk
//! registers at its carrier (or is known to it by address) and carries
//! calls both ways; a station is a phone that registers to the box. One UDP
//! endpoint ([`agent`]) serves them all; each call's RTP is read and written
//! by the media engine's tick ([`session`]). The backend runs alone
//! (`backend = "sip"`) or beside the sim or analog backend, which keep the
//! lines without a `sip` table.
//!
//! rsipstack does the transactions and dialogs; its types stay inside this
//! module. Written here: the registrar, SDP offer/answer ([`sdp`]), RTP and
//! RFC 4733 ([`rtp`], [`dtmf`]) and the jitter buffer ([`jitter`]).

mod agent;
mod batch;
mod call;
pub mod config;
pub mod dtmf;
pub mod jitter;
mod line;
mod rtcp;
pub mod rtp;
pub mod screen;
pub mod sdp;
mod session;
pub mod srtp;
mod timer;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use config::{
    Peer, SipArgs, SipLineSettings, SipSettings, StationSettings, TlsSettings, TrunkSettings,
};
pub use line::{SipAudioIn, SipAudioOut, SipLine};

use crate::error::{Error, ErrorKind};
use crate::line::LineInfo;
use crate::registry::Port;

/// Runs one datagram through every parser a SIP request meets on its way
/// in: the screen, the stack's message parser, and the box's readers of
/// the headers and bodies it acts on. For fuzzing (`fuzz/`): it must never
/// panic, whatever the bytes. Returns what was understood, for seeds.
#[doc(hidden)]
pub fn fuzz_datagram(buf: &[u8]) -> String {
    use rsipstack::sip::SipMessage;
    use rsipstack::sip::prelude::HeadersExt;
    match screen::screen(buf) {
        screen::Verdict::Drop(why) => return format!("dropped: {why}"),
        screen::Verdict::Answer(resp) => return resp,
        screen::Verdict::Pass => {}
    }
    let Ok(msg) = SipMessage::try_from(buf) else {
        return "unparsable".into();
    };
    let SipMessage::Request(req) = msg else {
        return "response".into();
    };
    let auth = req
        .header_value("Authorization")
        .and_then(|a| agent::read_authorization(&a));
    let sdp = (!req.body.is_empty())
        .then(|| sdp::Sdp::parse(&String::from_utf8_lossy(&req.body)).map(|o| o.is_hold()));
    format!(
        "{} from {:?} caller {:?} dialled {:?} timer {:?} key {:?} refer {:?} auth {:?} sdp {:?} allow-update {}",
        req.method,
        agent::source_addr(&req),
        agent::caller_number(&req),
        agent::dialled_number(&req),
        timer::as_uas(&req).map(|t| t.map(|t| t.due())),
        call::info_key(&req),
        call::refer_target(&req),
        auth,
        sdp.map(|r| r.map_err(|e| e.to_string())),
        call::allows_update(req.header_value("Allow")),
    )
}

/// Locks a mutex of plain data. A panic elsewhere while holding it leaves
/// the data as it was; the call goes on.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the SIP backend failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The SIP socket could not be bound.
    #[error("SIP cannot listen on {addr}: {error}")]
    Bind {
        /// Address from the config.
        addr: SocketAddr,
        /// The system's reason.
        error: std::io::Error,
    },
    /// The backend stopped.
    #[error("the SIP backend stopped")]
    Stopped,
    /// A command could not be carried out.
    #[error("{0}")]
    Refused(String),
}

impl Error for SipError {
    fn kind(&self) -> ErrorKind {
        match self {
            SipError::Bind { .. } => ErrorKind::Io,
            SipError::Stopped => ErrorKind::Closed,
            SipError::Refused(_) => ErrorKind::Other,
        }
    }
}

/// SIP lines: one endpoint, its trunks and phones.
#[derive(Debug)]
pub struct SipBackend {
    agent: Arc<agent::Agent>,
    ports: Vec<Port<SipLine, SipAudioIn, SipAudioOut>>,
}

impl SipBackend {
    /// Binds the SIP socket and makes a port per SIP line.
    pub fn open(args: SipArgs) -> Result<SipBackend, SipError> {
        let agent = Arc::new(agent::Agent::bind(args.settings)?);
        let mut ports = Vec::new();
        for (id, settings) in args.lines {
            let info = LineInfo {
                id,
                kind: agent::Agent::kind_of(&settings),
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let shared = Arc::new(line::LineShared::new(info, settings, tx));
            agent.add_line(shared.clone());
            ports.push(Port {
                line: SipLine {
                    shared: shared.clone(),
                    agent: agent.clone(),
                    events: rx,
                },
                audio_in: SipAudioIn {
                    shared: shared.clone(),
                },
                audio_out: SipAudioOut { shared, next: None },
            });
        }
        Ok(SipBackend { agent, ports })
    }

    /// The address SIP listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.agent.local_addr()
    }

    /// Hands over every port, once.
    pub fn take_ports(&mut self) -> Vec<Port<SipLine, SipAudioIn, SipAudioOut>> {
        std::mem::take(&mut self.ports)
    }

    /// Starts listening; inside the tokio runtime.
    pub fn start(&mut self) -> Result<(), SipError> {
        self.agent.start()
    }
}

#[cfg(test)]
mod tests {
    /// The fuzz seeds are read the way the box reads real traffic.
    #[test]
    fn the_fuzz_seeds_are_understood() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/sip_datagram");
        let read = |name: &str| super::fuzz_datagram(&std::fs::read(dir.join(name)).unwrap());
        let invite = read("invite");
        for part in [
            "INVITE from Some(192.0.2.9:5062)",
            "caller Some(\"+8613800138000\")",
            "dialled Some(\"4008001234\")",
            "timer Ok(Some(1768s))",
            "sdp Some(Ok(false))",
            "allow-update true",
        ] {
            assert!(invite.contains(part), "{part} not in {invite}");
        }
        assert!(read("info").contains("key Some('5')"));
        assert!(read("refer").contains("refer Some(\"1002\")"));
        assert!(read("register").contains("auth Some((\"agent1\", \"5f00.00ff\"))"));
        assert!(read("unknown-method").starts_with("SIP/2.0 501"));
        assert!(
            read("compact").contains("timer Ok(Some(45s))"),
            "{}",
            read("compact")
        );
        for entry in std::fs::read_dir(&dir).unwrap() {
            super::fuzz_datagram(&std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
}
