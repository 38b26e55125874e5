//! Keeping the carriers in touch: registration of the trunks that
//! register, OPTIONS keep-alive to those known by address, each with its
//! line's alarm.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::registration::Registration;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Method, StatusCode, StatusCodeKind};

use super::{Agent, MIN_EXPIRES, Stack, parse_uri};
use crate::line::{Health, LineEvent, LineFault, LineStatus};
use crate::sip::config::{Peer, SipLineSettings, TrunkSettings};
use crate::sip::line::LineShared;

impl Agent {
    /// Asks a carrier known by address whether it is there (OPTIONS
    /// `every`); raises the line's alarm `unreachable` while it does not
    /// answer within [`PING_WAIT`]. Any answer counts, even a refusal: the
    /// carrier is there.
    pub(super) async fn ping_peer(
        self: Arc<Self>,
        line: Arc<LineShared>,
        t: TrunkSettings,
        every: Duration,
    ) {
        let Ok(stack) = self.stack() else { return };
        let domain = t.domain.clone().unwrap_or_else(|| t.peer.host());
        let mut reachable: Option<bool> = None;
        let mut seq = 0u32;
        loop {
            seq += 1;
            let answered = match self.options(stack, &domain, &t.peer, t.tls, seq).await {
                Ok(code) => {
                    tracing::debug!(line = %line.info.id, code, "carrier answered OPTIONS");
                    true
                }
                Err(why) => {
                    if reachable != Some(false) {
                        tracing::warn!(line = %line.info.id, peer = %t.peer, "carrier does not answer: {why}");
                    }
                    false
                }
            };
            if answered && reachable == Some(false) {
                let _ = line.events.send(LineEvent::Fault(LineFault {
                    code: "unreachable",
                    detail: format!("{} answers again", t.peer),
                    active: false,
                }));
            } else if !answered && reachable != Some(false) {
                let _ = line.events.send(LineEvent::Fault(LineFault {
                    code: "unreachable",
                    detail: format!("carrier {} does not answer OPTIONS", t.peer),
                    active: true,
                }));
            }
            let health = if answered {
                LineStatus::new(Health::Up, format!("{} answers OPTIONS", t.peer))
            } else {
                LineStatus::new(Health::Down, format!("{} does not answer OPTIONS", t.peer))
            };
            self.set_health(|l| same_peer(l, &t), health);
            reachable = Some(answered);
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One OPTIONS to `peer`: the final response's code, or why none came.
    pub(super) async fn options(
        &self,
        stack: &Stack,
        domain: &str,
        peer: &Peer,
        tls: bool,
        seq: u32,
    ) -> Result<u16, String> {
        if self.peer_addr(peer).is_none() {
            // Not resolved yet (the box just started): look it up now.
            self.resolve(peer).await;
        }
        let peer = self
            .peer_addr(peer)
            .ok_or_else(|| format!("{peer} has no address (DNS)"))?;
        let uri = parse_uri(&format!("sip:{domain}")).map_err(|e| e.to_string())?;
        let me = self.contact("callbox").map_err(|e| e.to_string())?;
        let via = stack
            .endpoint
            .get_via(None, Some(rsipstack::transaction::make_via_branch()))
            .map_err(|e| e.to_string())?;
        let from = rsipstack::sip::typed::From {
            display_name: None,
            uri: me,
            params: vec![rsipstack::sip::Param::Tag(
                rsipstack::transaction::make_tag(),
            )],
        };
        let to = rsipstack::sip::typed::To {
            display_name: None,
            uri: uri.clone(),
            params: vec![],
        };
        let req = stack
            .endpoint
            .make_request(Method::Options, uri, via, from, to, seq, None);
        self.final_answer(stack, req, super::sip_addr(peer, tls))
            .await
    }

    /// Keeps a trunk registered at its carrier: refreshes before expiry,
    /// backs off after a failure, raises the line's alarm while it is not
    /// registered.
    pub(super) async fn register_trunk(self: Arc<Self>, line: Arc<LineShared>, t: TrunkSettings) {
        let Ok(stack) = self.stack() else { return };
        let domain = t.domain.clone().unwrap_or_else(|| t.peer.host());
        let transport = if t.tls { ";transport=tls" } else { "" };
        let Ok(server) = parse_uri(&format!("sip:{domain}{transport}")) else {
            return;
        };
        let credential = Credential {
            username: t.username.clone().unwrap_or_default(),
            password: t.password.clone().unwrap_or_default(),
            realm: None,
            auth_username: None,
        };
        let mut backoff = Duration::from_secs(5);
        let mut registered: Option<bool> = None;
        let mut expires = u32::try_from(t.expires.as_secs()).unwrap_or(3600);
        // A 423's Min-Expires is asked for once before it counts as a failure.
        let mut raised = false;
        let mut unresolved = 0u32;
        // One registration (one Call-ID) for the boot, refreshed in place
        // (RFC 3261 §10.2.4).
        let mut reg = Registration::new(stack.endpoint.clone(), Some(credential));
        loop {
            // The URI names the carrier's domain; the datagrams go to its
            // address, looked up again for every registration.
            reg.outbound_proxy = self.peer_addr(&t.peer);
            if reg.outbound_proxy.is_none() {
                // Its name has not resolved (yet): wait for the resolver,
                // and after a few seconds say so.
                unresolved += 1;
                if unresolved >= 3 && registered != Some(false) {
                    tracing::warn!(line = %line.info.id, peer = %t.peer, "trunk cannot register: the carrier's name has no address yet");
                    let _ = line.events.send(LineEvent::Fault(LineFault {
                        code: "unregistered",
                        detail: format!("{} does not resolve", t.peer),
                        active: true,
                    }));
                    registered = Some(false);
                    self.set_health(
                        |l| same_account(l, &t),
                        LineStatus::new(Health::Down, format!("{} does not resolve", t.peer)),
                    );
                }
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
            let r = tokio::select! {
                () = self.cancel.cancelled() => return,
                r = reg.register(server.clone(), Some(expires)) => r,
            };
            let wait = match r {
                Ok(resp)
                    if resp.status_code == StatusCode::IntervalTooBrief
                        && !raised
                        && min_expires(&resp).is_some_and(|m| m > expires) =>
                {
                    // 423: the carrier wants longer registrations; ask again
                    // at once for what it names.
                    let m = min_expires(&resp).unwrap_or(expires);
                    tracing::info!(line = %line.info.id, peer = %t.peer, from = expires, to = m, "carrier asks for a longer registration (423)");
                    expires = m;
                    raised = true;
                    continue;
                }
                Ok(resp) if resp.status_code.kind() == StatusCodeKind::Successful => {
                    raised = false;
                    if registered != Some(true) {
                        tracing::info!(line = %line.info.id, peer = %t.peer, "trunk registered");
                    }
                    if registered == Some(false) {
                        let _ = line.events.send(LineEvent::Fault(LineFault {
                            code: "unregistered",
                            detail: format!("registered at {}", t.peer),
                            active: false,
                        }));
                    }
                    registered = Some(true);
                    self.set_health(
                        |l| same_account(l, &t),
                        LineStatus::new(Health::Up, format!("registered at {}", t.peer)),
                    );
                    backoff = Duration::from_secs(5);
                    let granted = reg.expires().max(MIN_EXPIRES);
                    Duration::from_secs(u64::from(granted) * 3 / 4)
                }
                other => {
                    let why = match other {
                        Ok(resp) => format!("{}", resp.status_code),
                        Err(e) => e.to_string(),
                    };
                    if registered != Some(false) {
                        tracing::warn!(line = %line.info.id, peer = %t.peer, "trunk registration failed: {why}");
                        let _ = line.events.send(LineEvent::Fault(LineFault {
                            code: "unregistered",
                            detail: format!("registration at {} refused: {why}", t.peer),
                            active: true,
                        }));
                    }
                    registered = Some(false);
                    self.set_health(
                        |l| same_account(l, &t),
                        LineStatus::new(
                            Health::Down,
                            format!("registration at {} refused: {why}", t.peer),
                        ),
                    );
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                    w
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The Min-Expires of a 423 Interval Too Brief.
fn min_expires(resp: &rsipstack::sip::Response) -> Option<u32> {
    resp.header_value("Min-Expires")?.trim().parse().ok()
}

/// A line of the carrier account `t` registers (one registration serves
/// them all).
fn same_account(l: &LineShared, t: &TrunkSettings) -> bool {
    matches!(&l.settings, SipLineSettings::Trunk(x)
        if x.register && x.peer == t.peer && x.username == t.username)
}

/// A line to the carrier `t` pings (one keep-alive serves them all).
fn same_peer(l: &LineShared, t: &TrunkSettings) -> bool {
    matches!(&l.settings, SipLineSettings::Trunk(x) if !x.register && x.peer == t.peer)
}
