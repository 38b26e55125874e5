//! One SIP call on one line: the task that owns its dialog from the first
//! INVITE to the last BYE, turns what the dialog and its RTP do into
//! [`LineEvent`]s, and carries out the firmware's commands on it.

use std::sync::Arc;

use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invitation::InviteAsyncResult;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, Response, StatusCode, StatusCodeKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::agent::{Agent, MediaSockets};
use super::line::LineShared;
use super::sdp::{self, Negotiated, Sdp};
use super::session::{MediaNote, RtpSession};
use super::srtp::MasterKey;
use super::timer::{self, SessionTimer};
use crate::line::{HangupCause, LineEvent, LineKind};

/// What the firmware asks of the call in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Answer the ringing inbound call.
    Answer,
    /// Send the ringing caller early media (183 with the answer's SDP).
    Progress,
    /// End it (reject, cancel or bye, as fits its state).
    Hangup(HangupCause),
}

/// The SIP status a refused inbound call gets for the firmware's cause.
fn reject_status(c: HangupCause) -> StatusCode {
    match c {
        HangupCause::Busy => StatusCode::BusyHere,
        HangupCause::Rejected => StatusCode::Decline,
        HangupCause::NoAnswer => StatusCode::TemporarilyUnavailable,
        HangupCause::Normal => StatusCode::TemporarilyUnavailable,
        HangupCause::NotAllowed => StatusCode::Forbidden,
        HangupCause::NotInService => StatusCode::NotFound,
        _ => StatusCode::ServiceUnavailable,
    }
}

/// The firmware's cause for a SIP final response that ended a call.
pub(crate) fn cause_of(status: &StatusCode) -> HangupCause {
    match u16::from(status.clone()) {
        486 | 600 => HangupCause::Busy,
        408 | 480 | 487 => HangupCause::NoAnswer,
        403 | 603 => HangupCause::Rejected,
        _ => HangupCause::Congestion,
    }
}

fn cause_of_end(r: &TerminatedReason) -> HangupCause {
    match r {
        TerminatedReason::UacBusy | TerminatedReason::UasBusy => HangupCause::Busy,
        TerminatedReason::UasDecline => HangupCause::Rejected,
        TerminatedReason::Timeout => HangupCause::NoAnswer,
        TerminatedReason::UacOther(s) | TerminatedReason::UasOther(s) => cause_of(s),
        _ => HangupCause::Normal,
    }
}

fn sdp_header() -> Header {
    Header::ContentType("application/sdp".into())
}

/// Whether a peer's request or response allows UPDATE (else the box
/// refreshes sessions by re-INVITE, which every peer takes).
pub(crate) fn allows_update(allow: Option<String>) -> bool {
    allow.is_some_and(|a| {
        a.split(',')
            .any(|m| m.trim().eq_ignore_ascii_case("UPDATE"))
    })
}

/// A wait of 2.1–4 s before trying again after a 491 (RFC 3261 §14.1 asks
/// for a random one, so both ends do not collide again).
fn glare_wait() -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::time::Duration::from_millis(2100 + u64::from(nanos % 1900))
}

/// What a session refresh the box sent came back with.
type Refreshed = Result<rsipstack::Result<Option<Response>>, tokio::task::JoinError>;

/// Keys sent by SIP INFO: `application/dtmf-relay` (`Signal=5`) or
/// `application/dtmf` (`5`).
pub(crate) fn info_key(req: &Request) -> Option<char> {
    let body = std::str::from_utf8(&req.body).ok()?;
    let value = body
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then_some(v.trim())
        })
        .unwrap_or(body.trim());
    let mut chars = value.chars();
    let c = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')))
        .then_some(c)
}

/// The number a REFER transfers to: the user part of `Refer-To`, when it
/// is keys a phone could dial.
pub(crate) fn refer_target(req: &Request) -> Option<String> {
    let v = req.header_value("Refer-To")?;
    let uri = v
        .split_once('<')
        .map_or(v.as_str(), |(_, r)| r.split('>').next().unwrap_or(r));
    let user = uri
        .trim()
        .strip_prefix("sip:")
        .or_else(|| uri.trim().strip_prefix("sips:"))?;
    let user = user.split('@').next()?;
    (!user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#'))
    .then(|| user.to_string())
}

/// A call's state, shared by its inbound and outbound forms.
struct Leg {
    agent: Arc<Agent>,
    line: Arc<LineShared>,
    dialog: InviteDialog,
    sock: Option<MediaSockets>,
    notes_tx: mpsc::UnboundedSender<MediaNote>,
    session: Option<Arc<RtpSession>>,
    /// Our SDP version, bumped on every answer to a re-offer.
    sdp_version: u64,
    /// The far end holds the call (its last offer was a hold).
    held: bool,
    /// Our current SDP (what a re-INVITE refresh offers again).
    local_sdp: String,
    /// The session timer, when one was agreed (RFC 4028).
    timer: Option<SessionTimer>,
    /// When the box next refreshes the session, or gives up on it.
    deadline: Instant,
    /// When the session expires without a refresh.
    expires_at: Instant,
    /// The box's refresh in flight; an offer from the far end meanwhile is
    /// glare (491).
    refresh: Option<JoinHandle<rsipstack::Result<Option<Response>>>>,
    /// The far end takes UPDATE (refreshes without SDP).
    update_ok: bool,
    /// The box's SRTP key for this call (used when the far end encrypts).
    key: MasterKey,
    /// The box's own offer carried `key` (RTP/SAVP).
    offered_srtp: bool,
}

impl Leg {
    fn event(&self, ev: LineEvent) {
        let _ = self.line.events.send(ev);
    }

    fn start_media(&mut self, n: &Negotiated) {
        let Some(sock) = self.sock.take() else {
            if let Some(s) = &self.session {
                s.renegotiate(n);
            }
            return;
        };
        match RtpSession::new(
            sock.rtp,
            sock.rtcp,
            n,
            self.agent.settings.rtp_timeout,
            self.notes_tx.clone(),
        ) {
            Ok(s) => {
                let s = Arc::new(s);
                self.line.set_media(Some(s.clone()));
                self.session = Some(s);
            }
            Err(e) => tracing::error!(line = %self.line.info.id, "RTP socket: {e}"),
        }
    }

    /// Starts media before the answer (183): the far end may send nothing
    /// until then, which is no RTP timeout.
    fn start_early_media(&mut self, n: &Negotiated) {
        self.start_media(n);
        if let Some(s) = &self.session {
            s.quiet_until_answer();
        }
    }

    /// The SRTP key the box's own offer carried, if it did.
    fn offered_key(&self) -> Option<MasterKey> {
        self.offered_srtp.then(|| self.key.clone())
    }

    /// Starts (or stops) the session timer from now.
    fn set_timer(&mut self, t: Option<SessionTimer>) {
        if let Some(t) = &t {
            let now = Instant::now();
            self.deadline = now + t.due();
            self.expires_at = now + std::time::Duration::from_secs(u64::from(t.interval));
            if self.timer.is_none() {
                tracing::debug!(line = %self.line.info.id, interval = t.interval, box_refreshes = t.box_refreshes(), "session timer");
            }
        }
        self.timer = t;
    }

    /// The session timer fired: refresh, or end a session the far end
    /// stopped refreshing. `true` when the call is over.
    async fn on_timer(&mut self) -> bool {
        let Some(t) = self.timer else { return false };
        if !t.box_refreshes() {
            tracing::warn!(line = %self.line.info.id, interval = t.interval, "the far end stopped refreshing the session; hanging up");
            let _ = self.dialog.bye().await;
            self.event(LineEvent::Hangup(HangupCause::LineFailure));
            return true;
        }
        let dialog = self.dialog.clone();
        let mut headers = timer::refresh_headers(&t);
        let update = self.update_ok;
        let sdp = self.local_sdp.clone().into_bytes();
        self.refresh = Some(tokio::spawn(async move {
            if update {
                dialog.update(Some(headers), None).await
            } else {
                headers.push(sdp_header());
                dialog.reinvite(Some(headers), Some(sdp)).await
            }
        }));
        false
    }

    /// The far end answered the box's refresh. `true` when the call is over.
    async fn on_refreshed(&mut self, r: Refreshed) -> bool {
        self.refresh = None;
        let now = Instant::now();
        let status = match &r {
            Ok(Ok(Some(resp))) => Some(resp.status_code.clone()),
            _ => None,
        };
        match (r, status.as_ref().map(|s| u16::from(s.clone()))) {
            (Ok(Ok(Some(resp))), _) if resp.status_code.kind() == StatusCodeKind::Successful => {
                // The answer's Session-Expires carries on the timer; none
                // turns it off (RFC 4028 §9).
                self.set_timer(timer::as_uac(&resp));
                false
            }
            (_, Some(491)) => {
                // Glare: both ends offered at once; try again shortly.
                self.deadline = now + glare_wait();
                false
            }
            (_, Some(405 | 501)) if self.update_ok => {
                self.update_ok = false;
                self.deadline = now;
                false
            }
            (_, Some(481 | 408)) | (_, None) => {
                tracing::warn!(line = %self.line.info.id, status = ?status, "session refresh unanswered or the call is gone; hanging up");
                let _ = self.dialog.bye().await;
                self.event(LineEvent::Hangup(HangupCause::LineFailure));
                true
            }
            (_, Some(code)) => {
                // Refused for another reason: the session lasts until it
                // expires; try again until then.
                let retry = now + std::time::Duration::from_secs(10);
                if retry + std::time::Duration::from_secs(2) >= self.expires_at {
                    tracing::warn!(line = %self.line.info.id, code, "session refresh refused until it expired; hanging up");
                    let _ = self.dialog.bye().await;
                    self.event(LineEvent::Hangup(HangupCause::LineFailure));
                    return true;
                }
                tracing::info!(line = %self.line.info.id, code, "session refresh refused; trying again");
                self.deadline = retry;
                false
            }
        }
    }

    /// Answers an in-dialog re-offer (hold, resume, a new address).
    async fn reoffer(&mut self, req: &Request) -> Option<Vec<u8>> {
        if req.body.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&req.body);
        let offer = match Sdp::parse(&text) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(line = %self.line.info.id, "re-offer with bad SDP: {e}");
                return None;
            }
        };
        self.sdp_version += 1;
        let port = self.session.as_ref().map_or(0, |s| s.port());
        match sdp::answer(
            &offer,
            &self.agent.settings.codecs,
            self.agent.settings.public_ip(),
            port,
            self.agent.session_id(),
            self.sdp_version,
            Some(&self.key),
        ) {
            Ok((text, n)) => {
                let held = offer.is_hold();
                if held != self.held {
                    self.held = held;
                    tracing::info!(line = %self.line.info.id, held, "far end holds the call, or takes it back");
                    if self.line.info.kind == LineKind::Station {
                        // A phone's hold key is an analog phone's flash: the
                        // bridge puts the caller on hold (music) or back.
                        self.event(LineEvent::HookFlash);
                    }
                }
                self.start_media(&n);
                self.local_sdp = text.clone();
                Some(text.into_bytes())
            }
            Err(e) => {
                tracing::warn!(line = %self.line.info.id, "re-offer refused: {e}");
                None
            }
        }
    }

    /// Something the dialog reported, common to both directions. `true`
    /// when the call is over.
    async fn on_state(&mut self, st: DialogState, ended_by_us: bool) -> bool {
        match st {
            DialogState::Terminated(_, reason) => {
                if !ended_by_us {
                    self.event(LineEvent::Hangup(cause_of_end(&reason)));
                }
                true
            }
            DialogState::Info(_, req, handle) => {
                match info_key(&req) {
                    Some(k) => {
                        self.event(LineEvent::Digit(k));
                        let _ = handle.reply(StatusCode::OK).await;
                    }
                    None => {
                        let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                    }
                }
                false
            }
            DialogState::Updated(_, req, handle) => {
                if self.refresh.is_some() && !req.body.is_empty() {
                    // Glare: our own refresh offers too (RFC 3261 §14.2).
                    let _ = handle.reply(StatusCode::RequestPending).await;
                    return false;
                }
                // A re-INVITE or UPDATE refreshes the session; its timer
                // (or none) holds from now.
                let t = match timer::as_uas(&req) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = handle
                            .respond(
                                StatusCode::SessionIntervalTooSmall,
                                Some(vec![timer::min_se_header()]),
                                None,
                            )
                            .await;
                        return false;
                    }
                };
                let mut headers = t.map(|t| t.headers()).unwrap_or_default();
                match self.reoffer(&req).await {
                    Some(body) => {
                        headers.push(sdp_header());
                        let _ = handle
                            .respond(StatusCode::OK, Some(headers), Some(body))
                            .await;
                    }
                    None if req.body.is_empty() => {
                        let _ = handle.respond(StatusCode::OK, Some(headers), None).await;
                    }
                    None => {
                        let _ = handle.reply(StatusCode::NotAcceptableHere).await;
                        return false;
                    }
                }
                self.set_timer(t);
                false
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
                false
            }
            DialogState::Refer(_, req, handle) => {
                match refer_target(&req).filter(|_| self.line.info.kind == LineKind::Station) {
                    Some(target) => {
                        // A blind transfer from the phone: as an analog
                        // phone's flash and the target's number.
                        tracing::info!(line = %self.line.info.id, %target, "phone transfers the call");
                        let _ = handle.reply(StatusCode::Accepted).await;
                        self.event(LineEvent::HookFlash);
                        for d in target.chars() {
                            self.event(LineEvent::Digit(d));
                        }
                        let _ = self
                            .dialog
                            .notify_refer(StatusCode::Trying, "active;expires=60")
                            .await;
                    }
                    None => {
                        let _ = handle.reply(StatusCode::BadRequest).await;
                    }
                }
                false
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                let _ = handle.reply(StatusCode::NotImplemented).await;
                false
            }
            _ => false,
        }
    }

    fn on_note(&self, note: MediaNote) -> bool {
        match note {
            MediaNote::Key(k) => {
                tracing::debug!(line = %self.line.info.id, key = %k, "RFC 4733 key");
                self.event(LineEvent::Digit(k));
                false
            }
            MediaNote::Timeout => {
                tracing::warn!(line = %self.line.info.id, "no RTP from the far end; hanging up");
                self.event(LineEvent::Hangup(HangupCause::LineFailure));
                true
            }
        }
    }

    async fn finish(&mut self, id: DialogId) {
        if let Some(r) = self.refresh.take() {
            r.abort();
        }
        if let Some(s) = &self.session {
            tracing::info!(line = %self.line.info.id, "RTP: {}", s.summary());
        }
        self.line.set_media(None);
        self.line.end_call();
        if let Some(d) = self.agent.dialogs() {
            d.remove_dialog(&id);
        }
    }
}

/// What every call task starts with.
pub(crate) struct CallParts {
    pub(crate) agent: Arc<Agent>,
    pub(crate) line: Arc<LineShared>,
    pub(crate) dialog: InviteDialog,
    pub(crate) states: DialogStateReceiver,
    pub(crate) cmds: mpsc::UnboundedReceiver<Cmd>,
    pub(crate) sock: MediaSockets,
    /// The SDP the box offered or will answer with.
    pub(crate) local_sdp: String,
    /// The far end takes UPDATE (its INVITE's Allow says so).
    pub(crate) update_ok: bool,
    /// The box's SRTP key for the call.
    pub(crate) key: MasterKey,
    /// The box's offer (if it made one) is RTP/SAVP with `key`.
    pub(crate) offered_srtp: bool,
}

impl CallParts {
    fn leg(
        self,
    ) -> (
        Leg,
        DialogStateReceiver,
        mpsc::UnboundedReceiver<Cmd>,
        mpsc::UnboundedReceiver<MediaNote>,
    ) {
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let leg = Leg {
            agent: self.agent,
            line: self.line,
            dialog: self.dialog,
            sock: Some(self.sock),
            notes_tx,
            session: None,
            sdp_version: 1,
            held: false,
            local_sdp: self.local_sdp,
            timer: None,
            deadline: Instant::now(),
            expires_at: Instant::now(),
            refresh: None,
            update_ok: self.update_ok,
            key: self.key,
            offered_srtp: self.offered_srtp,
        };
        (leg, self.states, self.cmds, notes)
    }
}

/// How an inbound call starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A carrier's call: ring until the firmware answers.
    Ringing,
    /// A phone dialling the box: answered at once (its handset is up).
    Answered,
}

/// What the box answers an INVITE with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The INVITE had an offer: this answer, and what it agreed.
    ToOffer(String, Negotiated),
    /// Late offer (an INVITE without SDP): the box's offer goes in the
    /// 200, the far end's answer comes in the ACK.
    LateOffer(String),
}

/// Runs an inbound call (INVITE received) to its end.
/// `timer`: the session timer the INVITE asked for.
pub(crate) async fn inbound(
    parts: CallParts,
    answer: Answer,
    how: Inbound,
    timer: Option<SessionTimer>,
) {
    let id = parts.dialog.id();
    let (mut leg, mut states, mut cmds, mut notes) = parts.leg();
    let mut answered = false;
    let accept = |leg: &mut Leg| -> Result<(), String> {
        let body = match &answer {
            Answer::ToOffer(text, negotiated) => {
                leg.start_media(negotiated);
                text
            }
            Answer::LateOffer(text) => text,
        };
        let mut headers = vec![sdp_header()];
        headers.extend(timer.iter().flat_map(SessionTimer::headers));
        leg.dialog
            .accept(Some(headers), Some(body.clone().into_bytes()))
            .map_err(|e| e.to_string())?;
        leg.set_timer(timer);
        Ok(())
    };
    let late = matches!(answer, Answer::LateOffer(_));
    let mut early = false;
    match how {
        Inbound::Ringing => {
            let _ = leg.dialog.ringing(None, None);
        }
        Inbound::Answered => {
            if let Err(e) = accept(&mut leg) {
                tracing::warn!(line = %leg.line.info.id, "answering the phone's call: {e}");
            }
            answered = true;
        }
    }
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Answer) if !answered => {
                    answered = true;
                    if let Err(e) = accept(&mut leg) {
                        tracing::warn!(line = %leg.line.info.id, "answering: {e}");
                        leg.event(LineEvent::Hangup(HangupCause::LineFailure));
                        break;
                    }
                }
                Some(Cmd::Answer) => {}
                Some(Cmd::Progress) if !answered && !early => {
                    if let Answer::ToOffer(text, negotiated) = &answer {
                        early = true;
                        leg.start_early_media(negotiated);
                        let headers = vec![sdp_header()];
                        if let Err(e) = leg.dialog.ringing(Some(headers), Some(text.clone().into_bytes())) {
                            tracing::warn!(line = %leg.line.info.id, "183 Session Progress: {e}");
                        }
                    }
                }
                Some(Cmd::Progress) => {}
                Some(Cmd::Hangup(cause)) => {
                    if answered {
                        let _ = leg.dialog.bye().await;
                    } else {
                        let _ = leg.dialog.reject(Some(reject_status(cause)), None);
                    }
                    break;
                }
                // The line was dropped: the box is stopping.
                None => {
                    let _ = leg.dialog.hangup().await;
                    let _ = leg.dialog.reject(Some(StatusCode::ServiceUnavailable), None);
                    break;
                }
            },
            st = states.recv() => match st {
                Some(DialogState::Confirmed(..)) if late && leg.session.is_none() => {
                    // The ACK carries the answer to the box's offer.
                    let ack = leg.dialog.last_remote_ack();
                    let body = ack.as_ref().map(|a| String::from_utf8_lossy(&a.body).into_owned());
                    let offered = leg.agent.settings.codecs.clone();
                    let key = leg.offered_key();
                    match body
                        .ok_or_else(|| "no ACK".to_string())
                        .and_then(|b| Sdp::parse(&b).map_err(|e| e.to_string()))
                        .and_then(|a| sdp::negotiated_from_answer(&offered, &a, key.as_ref()).map_err(|e| e.to_string()))
                    {
                        Ok(n) => leg.start_media(&n),
                        Err(e) => {
                            tracing::warn!(line = %leg.line.info.id, "late offer: the ACK has no usable answer ({e}); hanging up");
                            let _ = leg.dialog.bye().await;
                            leg.event(LineEvent::Hangup(HangupCause::LineFailure));
                            break;
                        }
                    }
                }
                Some(st) => if leg.on_state(st, false).await { break },
                None => break,
            },
            () = tokio::time::sleep_until(leg.deadline), if leg.timer.is_some() && leg.refresh.is_none() => {
                if leg.on_timer().await { break }
            }
            r = async { leg.refresh.as_mut().expect("guarded").await }, if leg.refresh.is_some() => {
                if leg.on_refreshed(r).await { break }
            }
            Some(note) = notes.recv() => if leg.on_note(note) {
                let _ = leg.dialog.bye().await;
                break;
            },
        }
    }
    leg.finish(id).await;
}

/// One INVITE of an outbound call: a trunk call has one, a phone account
/// with several devices one per device (ring-all).
pub(crate) struct Fork {
    pub(crate) dialog: InviteDialog,
    pub(crate) invite: JoinHandle<InviteAsyncResult>,
}

/// Runs an outbound call (the box's INVITEs, one per fork) to its end: the
/// first fork to answer is the call, the others are cancelled.
/// `report_ringing`: a trunk reports the far end ringing; a rung phone
/// only its answer.
pub(crate) async fn outbound(parts: CallParts, forks: Vec<Fork>, report_ringing: bool) {
    let mut id = parts.dialog.id();
    let (mut leg, mut states, mut cmds, mut notes) = parts.leg();
    let offered = leg.agent.settings.codecs.clone();
    let key = leg.offered_key();
    let dialogs: Vec<InviteDialog> = forks.iter().map(|f| f.dialog.clone()).collect();
    let mut pending = tokio::task::JoinSet::new();
    for (i, f) in forks.into_iter().enumerate() {
        pending.spawn(async move { (i, f.invite.await) });
    }
    let mut winner: Option<usize> = None;
    let mut rang = false;
    let mut ended_by_us = false;
    // Why the last fork failed: the call's cause when none answers.
    let mut failure = HangupCause::Congestion;
    loop {
        tokio::select! {
            done = pending.join_next(), if !pending.is_empty() => {
                let Some(Ok((i, r))) = done else { continue };
                match r {
                    Ok(Ok((confirmed, Some(resp)))) if resp.status_code.kind()
                        == StatusCodeKind::Successful => {
                        if winner.is_some() || ended_by_us {
                            // Another device answered first, or the call
                            // was given up meanwhile.
                            let _ = dialogs[i].bye().await;
                            continue;
                        }
                        winner = Some(i);
                        id = confirmed;
                        leg.dialog = dialogs[i].clone();
                        for (j, d) in dialogs.iter().enumerate() {
                            if j != i {
                                let d = d.clone();
                                tokio::spawn(async move { d.hangup().await });
                            }
                        }
                        let text = String::from_utf8_lossy(&resp.body);
                        match Sdp::parse(&text).and_then(|a| sdp::negotiated_from_answer(&offered, &a, key.as_ref())) {
                            Ok(n) => {
                                leg.start_media(&n);
                                leg.update_ok = allows_update(resp.header_value("Allow"));
                                leg.set_timer(timer::as_uac(&resp));
                                leg.event(LineEvent::Answered);
                            }
                            Err(e) => {
                                tracing::warn!(line = %leg.line.info.id, "answer with unusable SDP: {e}");
                                let _ = leg.dialog.bye().await;
                                leg.event(LineEvent::Hangup(HangupCause::Congestion));
                                break;
                            }
                        }
                    }
                    Ok(Ok((_, Some(resp)))) => failure = cause_of(&resp.status_code),
                    Ok(Err(e)) => {
                        tracing::warn!(line = %leg.line.info.id, "call not placed: {e}");
                        failure = HangupCause::Congestion;
                    }
                    Ok(Ok((_, None))) | Err(_) => failure = HangupCause::Congestion,
                }
                if winner.is_none() && pending.is_empty() {
                    if !ended_by_us {
                        leg.event(LineEvent::Hangup(failure));
                    }
                    break;
                }
            }
            cmd = cmds.recv(), if !ended_by_us => match cmd {
                Some(Cmd::Answer | Cmd::Progress) => {}
                Some(Cmd::Hangup(_)) | None => {
                    ended_by_us = true;
                    if winner.is_some() {
                        let _ = leg.dialog.hangup().await;
                        break;
                    }
                    for d in &dialogs {
                        let _ = d.hangup().await;
                    }
                    if pending.is_empty() {
                        break;
                    }
                }
            },
            st = states.recv() => match st {
                None => {
                    if pending.is_empty() { break; }
                }
                Some(st) => {
                    let mine = match winner {
                        Some(w) => st.id().call_id == dialogs[w].id().call_id,
                        None => true,
                    };
                    if !mine {
                        continue;
                    }
                    match st {
                        DialogState::Early(_, resp) => {
                            if report_ringing && !rang {
                                rang = true;
                                leg.event(LineEvent::Ringing);
                            }
                            if !resp.body.is_empty() && dialogs.len() == 1 {
                                // Early media (183): the far end's tones and
                                // announcements are heard before the answer.
                                let text = String::from_utf8_lossy(&resp.body);
                                if let Ok(n) = Sdp::parse(&text).and_then(|a| sdp::negotiated_from_answer(&offered, &a, key.as_ref())) {
                                    leg.start_early_media(&n);
                                }
                            }
                        }
                        // Before an answer, the INVITEs' results decide.
                        st @ DialogState::Terminated(..) => {
                            if winner.is_some() && pending.is_empty() && leg.on_state(st, ended_by_us).await {
                                break;
                            }
                        }
                        st => {
                            if winner.is_some() {
                                leg.on_state(st, ended_by_us).await;
                            }
                        }
                    }
                }
            },
            () = tokio::time::sleep_until(leg.deadline), if leg.timer.is_some() && leg.refresh.is_none() => {
                if leg.on_timer().await { break }
            }
            r = async { leg.refresh.as_mut().expect("guarded").await }, if leg.refresh.is_some() => {
                if leg.on_refreshed(r).await { break }
            }
            Some(note) = notes.recv() => if leg.on_note(note) {
                let _ = leg.dialog.bye().await;
                break;
            },
        }
    }
    leg.finish(id).await;
    if let Some(layer) = leg.agent.dialogs() {
        for d in &dialogs {
            layer.remove_dialog(&d.id());
        }
    }
}
