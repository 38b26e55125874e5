//! The box's SIP user agent: one UDP endpoint for every SIP line. It sorts
//! what arrives (a carrier's call, a phone's call or registration, a request
//! inside a call), registers trunks at their carriers, keeps the phones'
//! registrations, and starts the calls the firmware asks for. rsipstack's
//! types stay inside this module (with `registrar` and `trunk`) and
//! [`super::call`].

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Method, Request, StatusCode, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tls::{TlsConfig, TlsListenerConnection};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use rsipstack::{EndpointBuilder, transaction::TransactionReceiver};
use tokio_util::sync::CancellationToken;

mod health;
mod mwi;
mod registrar;
mod trunk;

pub(crate) use registrar::read_authorization;

use super::call::{self, Inbound};
use super::config::{Peer, SipLineSettings, SipSettings};
use super::line::LineShared;
use super::sdp::{self, Direction, Sdp};
use super::srtp::MasterKey;
use super::timer;
use super::{SipError, lock};
use crate::line::{HangupCause, LineEvent, LineKind};

/// Realm of the box's digest challenges to its phones.
const REALM: &str = "callbox";
/// How long a challenge's nonce is accepted.
const NONCE_LIFE: Duration = Duration::from_secs(300);
/// Registration lifetimes the box grants its phones.
const MIN_EXPIRES: u32 = 60;
const MAX_EXPIRES: u32 = 3600;
/// How often carriers named by DNS are looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(60);
/// Devices one phone account may register at once.
const MAX_DEVICES: usize = 5;
/// Wrong passwords in a row from one address before it is refused without
/// a challenge for a while, and the station's alarm is raised.
const AUTH_FAILURES: u32 = 5;
const AUTH_LOCKOUT: Duration = Duration::from_secs(60);
/// How long a carrier has to answer an OPTIONS before it counts as gone.
const PING_WAIT: Duration = Duration::from_secs(5);

/// Where a registered phone is reached.
#[derive(Debug, Clone)]
struct Binding {
    contact: Uri,
    /// Where its REGISTER came from: behind a home router this differs from
    /// the Contact, and only this address reaches it.
    source: SocketAddr,
    /// It registered over TLS: it is rung over its TLS connection, with
    /// SRTP.
    tls: bool,
    until: Instant,
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    since: Option<Instant>,
}

/// The parts of the stack that exist once the backend started.
struct Stack {
    endpoint: EndpointInnerRef,
    pub(crate) dialogs: Arc<DialogLayer>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").finish_non_exhaustive()
    }
}

/// The SIP user agent shared by every SIP line.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) settings: SipSettings,
    lines: Mutex<Vec<Arc<LineShared>>>,
    stack: OnceLock<Stack>,
    socket: Mutex<Option<std::net::UdpSocket>>,
    /// Each phone account's devices (a desk phone and a softphone ring
    /// together).
    bindings: Mutex<HashMap<String, Vec<Binding>>>,
    /// The addresses of carriers named by DNS, as last resolved.
    resolved: Mutex<HashMap<String, Vec<SocketAddr>>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// Voicemail waiting per phone account, as last told: (new, old).
    waiting: Mutex<HashMap<String, (u32, u32)>>,
    nonce_key: RandomState,
    next_rtp: AtomicU16,
    sessions: AtomicU64,
    cancel: CancellationToken,
}

impl Agent {
    /// Binds the SIP socket now, so that a port in use is reported when the
    /// backend opens, not later.
    pub(crate) fn bind(settings: SipSettings) -> Result<Agent, SipError> {
        let socket = std::net::UdpSocket::bind(settings.listen).map_err(|e| SipError::Bind {
            addr: settings.listen,
            error: e,
        })?;
        socket.set_nonblocking(true).map_err(|e| SipError::Bind {
            addr: settings.listen,
            error: e,
        })?;
        if let Some(tls) = &settings.tls {
            // Bound for real when the endpoint starts; a port in use is
            // reported now.
            std::net::TcpListener::bind(tls.listen).map_err(|e| SipError::Bind {
                addr: tls.listen,
                error: e,
            })?;
        }
        let first = *settings.rtp_ports.start() & !1;
        Ok(Agent {
            settings,
            lines: Mutex::new(Vec::new()),
            stack: OnceLock::new(),
            socket: Mutex::new(Some(socket)),
            bindings: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            nonce_key: RandomState::new(),
            next_rtp: AtomicU16::new(first),
            sessions: AtomicU64::new(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs()),
            ),
            cancel: CancellationToken::new(),
        })
    }

    pub(crate) fn add_line(&self, l: Arc<LineShared>) {
        lock(&self.lines).push(l);
    }

    fn lines(&self) -> Vec<Arc<LineShared>> {
        lock(&self.lines).clone()
    }

    /// The SIP address the box listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.settings.listen
    }

    /// Starts the endpoint and the tasks; inside the tokio runtime.
    pub(crate) fn start(self: &Arc<Self>) -> Result<(), SipError> {
        let Some(socket) = lock(&self.socket).take() else {
            return Ok(());
        };
        let addr = self.settings.listen;
        let tokio_socket = tokio::net::UdpSocket::from_std(socket)
            .map_err(|error| SipError::Bind { addr, error })?;
        let external = self
            .settings
            .advertise
            .map(|ip| SocketAddr::new(ip, addr.port()));
        let transport = TransportLayer::new(self.cancel.clone());
        let conn = ready_now(UdpConnection::from_socket(
            Arc::new(super::screen::Screened::new(tokio_socket)),
            external,
            Some(self.cancel.child_token()),
        ))
        .ok_or(SipError::Stopped)?
        .map_err(|e| SipError::Refused(format!("SIP socket {addr}: {e}")))?;
        transport.add_transport(conn.into());
        self.start_tls(&transport)?;
        let endpoint = EndpointBuilder::new()
            .with_transport_layer(transport)
            .with_cancel_token(self.cancel.clone())
            .with_user_agent("callbox")
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| SipError::Refused(e.to_string()))?;
        let inner = endpoint.inner.clone();
        let dialogs = Arc::new(DialogLayer::new(inner.clone()));
        let _ = self.stack.set(Stack {
            endpoint: inner.clone(),
            dialogs,
        });
        tokio::spawn(async move {
            // The endpoint lives as long as its serve loop.
            endpoint.serve().await;
        });
        tokio::spawn(self.clone().serve(incoming));
        let mut names = Vec::new();
        for line in self.lines() {
            if let SipLineSettings::Trunk(t) = &line.settings
                && let Peer::Name { .. } = &t.peer
                && !names.contains(&t.peer)
            {
                names.push(t.peer.clone());
            }
        }
        if !names.is_empty() {
            tokio::spawn(self.clone().keep_resolving(names));
        }
        self.spawn_phone_sweep();
        let mut pinged = Vec::new();
        let mut registered = Vec::new();
        for line in self.lines() {
            let SipLineSettings::Trunk(t) = &line.settings else {
                continue;
            };
            if t.register {
                // One registration per account, however many channels
                // (lines) use it; its alarm is on the first of them.
                let account = (t.peer.clone(), t.username.clone());
                if !registered.contains(&account) {
                    registered.push(account);
                    tokio::spawn(self.clone().register_trunk(line.clone(), t.clone()));
                }
            } else if let Some(every) = t.keepalive
                && !pinged.contains(&t.peer)
            {
                // One keep-alive per carrier, however many lines it has.
                pinged.push(t.peer.clone());
                tokio::spawn(self.clone().ping_peer(line.clone(), t.clone(), every));
            }
        }
        tracing::info!(%addr, "SIP listening (UDP)");
        Ok(())
    }

    /// Where a carrier is now: its address, or what its name resolved to
    /// (empty until resolved, or when it never was).
    pub(super) fn peer_addrs(&self, peer: &Peer) -> Vec<SocketAddr> {
        match peer {
            Peer::Addr(a) => vec![*a],
            Peer::Name { host, .. } => lock(&self.resolved).get(host).cloned().unwrap_or_default(),
        }
    }

    /// The address the box sends a carrier's requests to.
    pub(super) fn peer_addr(&self, peer: &Peer) -> Option<SocketAddr> {
        self.peer_addrs(peer).first().copied()
    }

    /// Resolves the carriers named by DNS now and every minute after; a
    /// failed lookup keeps the last addresses.
    async fn keep_resolving(self: Arc<Self>, names: Vec<Peer>) {
        loop {
            for peer in &names {
                self.resolve(peer).await;
            }
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(RESOLVE_EVERY) => {}
            }
        }
    }

    /// Looks a carrier's name up now; `false` when it has no address.
    async fn resolve(&self, peer: &Peer) -> bool {
        let Peer::Name { host, port } = peer else {
            return true;
        };
        let v4 = self.settings.listen.is_ipv4();
        match tokio::net::lookup_host((host.as_str(), *port)).await {
            Ok(found) => {
                // Only addresses the box's socket can reach.
                let addrs: Vec<SocketAddr> = found.filter(|a| a.is_ipv4() == v4).collect();
                if addrs.is_empty() {
                    tracing::warn!(%peer, "carrier's name has no address the box can reach");
                    return false;
                }
                let old = lock(&self.resolved).insert(host.clone(), addrs.clone());
                if old.as_ref() != Some(&addrs) {
                    tracing::info!(%peer, ?addrs, "carrier resolved");
                }
                true
            }
            Err(e) => {
                tracing::warn!(%peer, "resolving the carrier: {e}");
                !self.peer_addrs(peer).is_empty()
            }
        }
    }

    /// The trunks whose carrier sends from `ip`. A carrier named by DNS and
    /// not resolved yet (the box just started) is looked up first.
    async fn trunks_from(&self, ip: Option<IpAddr>) -> Vec<Arc<LineShared>> {
        let lines = self.lines();
        let matching = |me: &Self| -> Vec<Arc<LineShared>> {
            lines
                .iter()
                .filter(|l| {
                    matches!(&l.settings, SipLineSettings::Trunk(t)
                        if me.peer_addrs(&t.peer).iter().any(|a| Some(a.ip()) == ip))
                })
                .cloned()
                .collect()
        };
        let found = matching(self);
        if !found.is_empty() {
            return found;
        }
        for l in &lines {
            if let SipLineSettings::Trunk(t) = &l.settings
                && matches!(t.peer, Peer::Name { .. })
                && self.peer_addrs(&t.peer).is_empty()
            {
                self.resolve(&t.peer).await;
            }
        }
        // Again: the lookups above, or the resolver meanwhile, may have
        // filled in the address.
        matching(self)
    }

    fn stack(&self) -> Result<&Stack, SipError> {
        self.stack.get().ok_or(SipError::Stopped)
    }

    pub(crate) fn dialogs(&self) -> Option<&Arc<DialogLayer>> {
        self.stack.get().map(|s| &s.dialogs)
    }

    /// A fresh SDP session id.
    pub(crate) fn session_id(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed)
    }

    /// Binds a call's RTP socket on the next free even port of the range,
    /// and its RTCP socket on the port above.
    pub(crate) fn bind_rtp(&self) -> Result<MediaSockets, SipError> {
        let range = &self.settings.rtp_ports;
        let span = (range.end() - range.start()) / 2 + 1;
        let ip = self.settings.listen.ip();
        for _ in 0..span {
            let mut port = self.next_rtp.fetch_add(2, Ordering::Relaxed);
            if port < *range.start() || port >= *range.end() {
                port = *range.start() & !1;
                self.next_rtp.store(port + 2, Ordering::Relaxed);
            }
            if let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, port))
                && let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1))
            {
                return Ok(MediaSockets { rtp, rtcp });
            }
        }
        Err(SipError::Refused(format!(
            "no free RTP port in {}-{}",
            range.start(),
            range.end()
        )))
    }

    fn contact(&self, user: &str) -> Result<Uri, SipError> {
        self.contact_for(user, false)
    }

    /// The box's Contact for a dialog over TLS or UDP.
    fn contact_for(&self, user: &str, tls: bool) -> Result<Uri, SipError> {
        let ip = self.settings.public_ip();
        match (&self.settings.tls, tls) {
            (Some(t), true) => parse_uri(&format!(
                "sip:{user}@{};transport=tls",
                SocketAddr::new(ip, t.listen.port())
            )),
            _ => parse_uri(&format!(
                "sip:{user}@{}",
                SocketAddr::new(ip, self.settings.listen.port())
            )),
        }
    }

    /// Starts the TLS listener and the trust for connecting to carriers.
    fn start_tls(&self, transport: &TransportLayer) -> Result<(), SipError> {
        let Some(tls) = &self.settings.tls else {
            return Ok(());
        };
        // rsipstack's rustls needs the process-wide provider; MQTT's
        // client brings its own, so this is the only one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = tls
            .ca_pem
            .clone()
            .or_else(|| std::fs::read("/etc/ssl/certs/ca-certificates.crt").ok());
        transport.set_tls_config(TlsConfig {
            ca_certs: ca,
            ..Default::default()
        });
        let external = self
            .settings
            .advertise
            .map(|ip| SocketAddr::new(ip, tls.listen.port()));
        let listener = ready_now(TlsListenerConnection::new(
            tls.listen,
            external,
            TlsConfig {
                cert: Some(tls.cert_pem.clone()),
                key: Some(tls.key_pem.clone()),
                ..Default::default()
            },
        ))
        .ok_or(SipError::Stopped)?
        .map_err(|e| SipError::Refused(format!("SIP TLS listener {}: {e}", tls.listen)))?;
        transport.add_transport(SipConnection::TlsListener(listener));
        tracing::info!(addr = %tls.listen, "SIP listening (TLS)");
        Ok(())
    }

    async fn serve(self: Arc<Self>, mut incoming: TransactionReceiver) {
        while let Some(tx) = incoming.recv().await {
            let me = self.clone();
            tokio::spawn(async move { me.on_request(tx).await });
        }
    }

    async fn on_request(self: Arc<Self>, mut tx: Transaction) {
        let Ok(stack) = self.stack() else { return };
        if let Some(mut d) = stack.dialogs.match_dialog(&tx) {
            if let Err(e) = d.handle(&mut tx).await {
                tracing::debug!("in-dialog {}: {e}", tx.original.method);
            }
            return;
        }
        let r = match tx.original.method {
            Method::Invite => self.on_invite(tx).await,
            Method::Register => {
                let r = self.on_register(tx).await;
                self.refresh_phones();
                r
            }
            Method::Options => tx.reply(StatusCode::OK).await.map_err(|e| e.to_string()),
            Method::Ack => Ok(()),
            Method::Cancel | Method::Bye | Method::Info | Method::Update | Method::PRack => tx
                .reply(StatusCode::CallTransactionDoesNotExist)
                .await
                .map_err(|e| e.to_string()),
            _ => tx
                .reply(StatusCode::NotImplemented)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = r {
            tracing::debug!("SIP request: {e}");
        }
    }

    /// An INVITE outside any call: a phone dialling, or a carrier's call.
    async fn on_invite(self: &Arc<Self>, mut tx: Transaction) -> Result<(), String> {
        let source = source_addr(&tx.original);
        let from_user = tx
            .original
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.user().map(str::to_string));
        let lines = self.lines();
        let station = lines.iter().find(|l| {
            matches!(&l.settings, SipLineSettings::Station(s) if Some(&s.username) == from_user.as_ref())
        });
        // A phone is known by its account and password, a carrier by its
        // address; then the offer is checked (488), then a free line found
        // (486).
        let candidates: Vec<Arc<LineShared>> = if let Some(line) = station {
            let SipLineSettings::Station(st) = &line.settings else {
                unreachable!("matched a station")
            };
            if !self.authenticate(&mut tx, line, st, source).await? {
                return Ok(());
            }
            vec![line.clone()]
        } else {
            let trunks = self.trunks_from(source.map(|s| s.ip())).await;
            if trunks.is_empty() {
                tracing::warn!(source = ?source, from = ?from_user, "INVITE from an unknown peer refused");
                return tx
                    .reply(StatusCode::Forbidden)
                    .await
                    .map_err(|e| e.to_string());
            }
            trunks
        };
        let how = if station.is_some() {
            Inbound::Answered
        } else {
            Inbound::Ringing
        };
        // The call's SRTP key: the check of the offer and the answer use it.
        let key = MasterKey::random().map_err(|e| format!("SRTP key: {e}"))?;
        let offer = match self.check_offer(&tx.original, &key) {
            Ok(o) => o,
            Err(why) => {
                tracing::warn!(source = ?source, "INVITE refused: {why}");
                return tx
                    .reply(StatusCode::NotAcceptableHere)
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let timer = match timer::as_uas(&tx.original) {
            Ok(t) => t,
            Err(_) => {
                return tx
                    .reply_with(
                        StatusCode::SessionIntervalTooSmall,
                        vec![timer::min_se_header()],
                        None,
                    )
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let Some(line) = candidates.into_iter().find(|l| !l.busy()) else {
            return tx
                .reply(StatusCode::BusyHere)
                .await
                .map_err(|e| e.to_string());
        };
        let sock = match self.bind_rtp() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(line = %line.info.id, "{e}");
                return tx
                    .reply(StatusCode::ServiceUnavailable)
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let port = sock.rtp.local_addr().map_err(|e| e.to_string())?.port();
        // A phone calling over TLS gets SRTP in the box's late offer.
        let offered_srtp = offer.is_none() && over_tls(&tx.original);
        let answer = match offer.as_ref().map(|offer| self.answer(offer, port, &key)) {
            Some(Ok((text, n))) => call::Answer::ToOffer(text, n),
            // Late offer: the box offers in its 200.
            None => call::Answer::LateOffer(self.offer(port, offered_srtp.then_some(&key))),
            Some(Err(e)) => {
                tracing::warn!(line = %line.info.id, "INVITE refused: {e}");
                return tx
                    .reply(StatusCode::NotAcceptableHere)
                    .await
                    .map_err(|e| e.to_string());
            }
        };
        let Some(cmds) = line.begin_call() else {
            return tx
                .reply(StatusCode::BusyHere)
                .await
                .map_err(|e| e.to_string());
        };
        let stack = self.stack().map_err(|e| e.to_string())?;
        let (state_tx, state_rx) = stack.dialogs.new_dialog_state_channel();
        let user = match &line.settings {
            SipLineSettings::Station(s) => s.username.clone(),
            SipLineSettings::Trunk(t) => t.username.clone().unwrap_or_else(|| "callbox".into()),
        };
        let contact = self.contact_for(&user, over_tls(&tx.original)).ok();
        let dialog = match stack
            .dialogs
            .get_or_create_server_invite(&tx, state_tx, None, contact)
        {
            Ok(d) => d,
            Err(e) => {
                line.end_call();
                return Err(e.to_string());
            }
        };
        let dialled = dialled_number(&tx.original);
        let caller = caller_number(&tx.original);
        let update_ok = call::allows_update(tx.original.header_value("Allow"));
        let mut handle = dialog.clone();
        tokio::spawn(async move {
            let _ = handle.handle(&mut tx).await;
        });
        match how {
            Inbound::Ringing => {
                // Early media needs the caller's offer: the 183 carries
                // the answer (a late offer's would need PRACK).
                line.set_early(matches!(answer, call::Answer::ToOffer(..)));
                let _ = line.events.send(LineEvent::Incoming {
                    caller,
                    dialled: dialled.clone(),
                });
            }
            Inbound::Answered => {
                // A phone's call is a handset lifted and a number keyed.
                let _ = line.events.send(LineEvent::OffHook);
                for d in dialled.unwrap_or_default().chars() {
                    let _ = line.events.send(LineEvent::Digit(d));
                }
            }
        }
        let local_sdp = match &answer {
            call::Answer::ToOffer(text, _) | call::Answer::LateOffer(text) => text.clone(),
        };
        let parts = call::CallParts {
            agent: self.clone(),
            line,
            dialog,
            states: state_rx,
            cmds,
            sock,
            local_sdp,
            update_ok,
            key,
            offered_srtp,
        };
        tokio::spawn(call::inbound(parts, answer, how, timer));
        Ok(())
    }

    /// The INVITE's offer, if the box can answer it; `None` for a late
    /// offer (no SDP: the box offers in its 200).
    fn check_offer(&self, req: &Request, key: &MasterKey) -> Result<Option<Sdp>, String> {
        if req.body.is_empty() {
            return Ok(None);
        }
        let offer = Sdp::parse(&String::from_utf8_lossy(&req.body)).map_err(|e| e.to_string())?;
        self.answer(&offer, 0, key).map_err(|e| e.to_string())?;
        Ok(Some(offer))
    }

    /// The box's answer to `offer`, receiving on `port`.
    fn answer(
        &self,
        offer: &Sdp,
        port: u16,
        key: &MasterKey,
    ) -> Result<(String, sdp::Negotiated), sdp::SdpError> {
        sdp::answer(
            offer,
            &self.settings.codecs,
            self.settings.public_ip(),
            port,
            self.session_id(),
            1,
            Some(key),
        )
    }

    /// The box's offer of a new call receiving on `port`, with SRTP `key`
    /// if any.
    fn offer(&self, port: u16, key: Option<&MasterKey>) -> String {
        sdp::offer(
            &self.settings.codecs,
            101,
            self.settings.public_ip(),
            port,
            self.session_id(),
            1,
            Direction::SendRecv,
            key,
        )
    }

    /// Places a call on a trunk.
    pub(crate) fn dial(
        self: &Arc<Self>,
        line: &Arc<LineShared>,
        number: &str,
        caller_id: Option<&str>,
    ) -> Result<(), SipError> {
        let SipLineSettings::Trunk(t) = &line.settings else {
            return Err(SipError::Refused(format!(
                "line {} is not a trunk",
                line.info.id
            )));
        };
        let domain = t.domain.clone().unwrap_or_else(|| t.peer.host());
        // A number presented for this call (the firmware checked it is
        // digits), else the trunk's own.
        let user = caller_id
            .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit() || ch == '+'))
            .map(str::to_string)
            .or_else(|| t.caller_id.clone())
            .or_else(|| t.username.clone())
            .unwrap_or_else(|| "callbox".into());
        let callee = parse_uri(&format!("sip:{number}@{domain}"))?;
        let caller = parse_uri(&format!("sip:{user}@{domain}"))?;
        let credential = t.username.clone().map(|u| Credential {
            username: u,
            password: t.password.clone().unwrap_or_default(),
            realm: None,
            auth_username: None,
        });
        let to = self
            .peer_addr(&t.peer)
            .ok_or_else(|| SipError::Refused(format!("carrier {} has no address (DNS)", t.peer)))?;
        let target = Target {
            uri: callee,
            addr: to,
            tls: t.tls,
        };
        self.invite(line, &[target], caller, None, credential, true)
    }

    /// Rings a station's phone where it registered.
    pub(crate) fn ring(
        self: &Arc<Self>,
        line: &Arc<LineShared>,
        caller_id: Option<&str>,
        caller_name: Option<&str>,
    ) -> Result<(), SipError> {
        let SipLineSettings::Station(st) = &line.settings else {
            return Err(SipError::Refused(format!(
                "line {} is not a station",
                line.info.id
            )));
        };
        let devices = self.devices(&st.username);
        if devices.is_empty() {
            tracing::warn!(line = %line.info.id, "phone not registered; cannot ring it");
            // The station does not answer: as a phone left unplugged.
            let _ = line.events.send(LineEvent::Hangup(HangupCause::NoAnswer));
            return Ok(());
        }
        let host = SocketAddr::new(self.settings.public_ip(), self.settings.listen.port());
        let user = caller_id.filter(|c| !c.is_empty()).unwrap_or("anonymous");
        let caller = parse_uri(&format!("sip:{user}@{host}"))?;
        // Every device of the account rings; the first to answer takes it.
        let targets: Vec<Target> = devices
            .into_iter()
            .map(|b| Target {
                uri: b.contact,
                addr: b.source,
                tls: b.tls,
            })
            .collect();
        self.invite(line, &targets, caller, caller_name, None, false)
    }

    /// Sends the INVITEs of an outbound call, one per target, all with one
    /// offer and one RTP port.
    fn invite(
        self: &Arc<Self>,
        line: &Arc<LineShared>,
        targets: &[Target],
        caller: Uri,
        display: Option<&str>,
        credential: Option<Credential>,
        trunk: bool,
    ) -> Result<(), SipError> {
        let stack = self.stack()?;
        let Some(cmds) = line.begin_call() else {
            return Err(SipError::Refused(format!("line {} is busy", line.info.id)));
        };
        let sock = match self.bind_rtp() {
            Ok(s) => s,
            Err(e) => {
                line.end_call();
                return Err(e);
            }
        };
        let port = sock
            .rtp
            .local_addr()
            .map_err(|e| SipError::Refused(e.to_string()))?
            .port();
        let key = MasterKey::random().map_err(|e| SipError::Refused(format!("SRTP key: {e}")))?;
        // Phones and carriers reached over TLS are offered SRTP.
        let offered_srtp = targets.iter().all(|t| t.tls);
        let offer = self.offer(port, offered_srtp.then_some(&key));
        let (state_tx, state_rx) = stack.dialogs.new_dialog_state_channel();
        let mut forks = Vec::with_capacity(targets.len());
        for t in targets {
            let to = t.addr;
            let contact = self.contact_for(caller.user().unwrap_or("callbox"), t.tls)?;
            let opt = InviteOption {
                caller_display_name: display.map(str::to_string),
                caller: caller.clone(),
                callee: t.uri.clone(),
                destination: Some(sip_addr(to, t.tls)),
                content_type: Some("application/sdp".into()),
                offer: Some(offer.clone().into_bytes()),
                contact,
                credential: credential.clone(),
                // The far end may ask for a session timer in its 2xx.
                headers: Some(vec![rsipstack::sip::Header::Supported("timer".into())]),
                ..Default::default()
            };
            match stack.dialogs.do_invite_async(opt, state_tx.clone()) {
                Ok((dialog, invite)) => forks.push(call::Fork { dialog, invite }),
                Err(e) => tracing::warn!(line = %line.info.id, %to, "INVITE: {e}"),
            }
        }
        let Some(first) = forks.first().map(|f| f.dialog.clone()) else {
            line.end_call();
            return Err(SipError::Refused(
                "INVITE: no target could be called".into(),
            ));
        };
        if forks.len() > 1 {
            tracing::info!(line = %line.info.id, devices = forks.len(), "ringing every device of the phone");
        }
        let parts = call::CallParts {
            agent: self.clone(),
            line: line.clone(),
            dialog: first,
            states: state_rx,
            cmds,
            sock,
            local_sdp: offer,
            update_ok: false,
            key,
            offered_srtp,
        };
        tokio::spawn(call::outbound(parts, forks, trunk));
        Ok(())
    }

    /// Which kind a SIP line is.
    pub(crate) fn kind_of(s: &SipLineSettings) -> LineKind {
        match s {
            SipLineSettings::Trunk(_) => LineKind::Trunk,
            SipLineSettings::Station(_) => LineKind::Station,
        }
    }
}

/// A call's RTP socket and the RTCP one on the port above.
#[derive(Debug)]
pub(crate) struct MediaSockets {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
}

/// Where one INVITE of an outbound call goes.
struct Target {
    /// Its Request-URI.
    uri: Uri,
    /// The address it is sent to.
    addr: SocketAddr,
    /// Over TLS.
    tls: bool,
}

/// `addr` over UDP or TLS.
impl Agent {
    /// Sends `req` outside any dialog (OPTIONS to a carrier, NOTIFY to a
    /// phone) to `to` and waits [`PING_WAIT`] for its final response: its
    /// code, or why none came.
    async fn final_answer(&self, stack: &Stack, req: Request, to: SipAddr) -> Result<u16, String> {
        use rsipstack::transaction::key::{TransactionKey, TransactionRole};
        let key = TransactionKey::from_request(&req, TransactionRole::Client)
            .map_err(|e| e.to_string())?;
        let mut tx = Transaction::new_client(key, req, stack.endpoint.clone(), None);
        tx.destination = Some(to);
        tx.send().await.map_err(|e| e.to_string())?;
        let answer = async {
            while let Some(msg) = tx.receive().await {
                if let rsipstack::sip::SipMessage::Response(r) = msg
                    && r.status_code.kind() != rsipstack::sip::StatusCodeKind::Provisional
                {
                    return Some(u16::from(r.status_code));
                }
            }
            None
        };
        match tokio::time::timeout(PING_WAIT, answer).await {
            Ok(Some(code)) => Ok(code),
            _ => Err(format!("no answer within {}s", PING_WAIT.as_secs())),
        }
    }
}

pub(crate) fn sip_addr(addr: SocketAddr, tls: bool) -> SipAddr {
    SipAddr::new(
        if tls {
            rsipstack::sip::Transport::Tls
        } else {
            rsipstack::sip::Transport::Udp
        },
        rsipstack::sip::HostWithPort::from(addr),
    )
}

fn parse_uri(s: &str) -> Result<Uri, SipError> {
    Uri::try_from(s).map_err(|e| SipError::Refused(format!("bad SIP URI `{s}`: {e}")))
}

/// Where a request came from: the top Via's `received`/`rport` (set by the
/// transport from the datagram's source), else its sent-by.
pub(crate) fn source_addr(req: &Request) -> Option<SocketAddr> {
    let via = req.via_header().ok()?.typed().ok()?;
    let ip = match via.received() {
        Some(Ok(ip)) => ip,
        _ => via.sent_by().host.to_string().parse().ok()?,
    };
    let port = via
        .rport()
        .flatten()
        .or_else(|| via.sent_by().port.as_ref().map(|p| p.value()))
        .unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

/// Whether a request came over TLS (its top Via says so).
pub(crate) fn over_tls(req: &Request) -> bool {
    req.via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .is_some_and(|v| v.transport == rsipstack::sip::Transport::Tls)
}

/// The number the caller dialled: the Request-URI's user, else the To's.
pub(crate) fn dialled_number(req: &Request) -> Option<String> {
    req.uri
        .user()
        .map(str::to_string)
        .or_else(|| {
            req.to_header()
                .ok()
                .and_then(|t| t.uri().ok())
                .and_then(|u| u.user().map(str::to_string))
        })
        .filter(|s| !s.is_empty())
}

/// The caller's number: P-Asserted-Identity when the carrier vouches for
/// one, else From.
pub(crate) fn caller_number(req: &Request) -> Option<String> {
    if let Some(pai) = req.header_value("P-Asserted-Identity") {
        let inner = pai
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map_or(pai.as_str(), |(u, _)| u);
        if let Ok(u) = Uri::try_from(inner.trim())
            && let Some(user) = u.user()
        {
            return Some(user.to_string());
        }
    }
    req.from_header()
        .ok()
        .and_then(|f| f.uri().ok())
        .and_then(|u| u.user().map(str::to_string))
        .filter(|s| !s.is_empty() && s != "anonymous")
}

/// Runs a future that never actually waits (rsipstack's socket wrappers
/// are `async` only for other platforms) to completion at once.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
