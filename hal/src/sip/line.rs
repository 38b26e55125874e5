//! A SIP line as the firmware sees it: the [`Line`] that reports the call's
//! events and takes its commands, and the two audio halves that read and
//! write the call's RTP from the media engine's tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::agent::Agent;
use super::call::Cmd;
use super::config::SipLineSettings;
use super::session::RtpSession;
use super::{SipError, lock};
use crate::audio::{AudioFormat, AudioIn, AudioOut, Frame};
use crate::line::{Health, Line, LineCommand, LineEvent, LineInfo, LineKind, LineStatus};

/// What the agent, the line's call task and the audio halves share.
#[derive(Debug)]
pub(crate) struct LineShared {
    pub(crate) info: LineInfo,
    pub(crate) settings: SipLineSettings,
    pub(crate) events: mpsc::UnboundedSender<LineEvent>,
    /// The line's health: a trunk's registration or keep-alive, a phone's
    /// registration.
    pub(crate) status: tokio::sync::watch::Sender<LineStatus>,
    media: Mutex<Option<Arc<RtpSession>>>,
    call: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
    /// The ringing call can take early media (its INVITE had an offer).
    early: AtomicBool,
}

impl LineShared {
    pub(crate) fn new(
        info: LineInfo,
        settings: SipLineSettings,
        events: mpsc::UnboundedSender<LineEvent>,
    ) -> LineShared {
        let first = match &settings {
            SipLineSettings::Station(_) => LineStatus::new(Health::Down, "no phone registered"),
            SipLineSettings::Trunk(t) if t.register => {
                LineStatus::new(Health::Unknown, format!("registering at {}", t.peer.host()))
            }
            SipLineSettings::Trunk(t) if t.keepalive.is_some() => LineStatus::new(
                Health::Unknown,
                format!("asking {} (OPTIONS)", t.peer.host()),
            ),
            SipLineSettings::Trunk(_) => LineStatus::new(
                Health::Unknown,
                "not checked: no registration, keep-alive off",
            ),
        };
        LineShared {
            status: tokio::sync::watch::Sender::new(first),
            info,
            settings,
            events,
            media: Mutex::new(None),
            call: Mutex::new(None),
            early: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_media(&self, s: Option<Arc<RtpSession>>) {
        *lock(&self.media) = s;
    }

    /// Runs `f` on the call's RTP session, if one is up. Under the slot's
    /// lock, which only a call's start and end contend: no `Arc` clone per
    /// frame.
    fn with_media<R>(&self, f: impl FnOnce(&RtpSession) -> R) -> Option<R> {
        lock(&self.media).as_deref().map(f)
    }

    /// Takes the line for a new call; `None` if one is in progress.
    pub(crate) fn begin_call(&self) -> Option<mpsc::UnboundedReceiver<Cmd>> {
        let mut call = lock(&self.call);
        if call.as_ref().is_some_and(|c| !c.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *call = Some(tx);
        Some(rx)
    }

    /// The call is over; the line is free.
    pub(crate) fn end_call(&self) {
        self.set_early(false);
        *lock(&self.call) = None;
    }

    /// Whether the ringing call can hear the box before the answer.
    pub(crate) fn set_early(&self, can: bool) {
        self.early.store(can, Ordering::Relaxed);
    }

    pub(crate) fn busy(&self) -> bool {
        lock(&self.call).as_ref().is_some_and(|c| !c.is_closed())
    }

    fn to_call(&self, cmd: Cmd) -> bool {
        lock(&self.call)
            .as_ref()
            .is_some_and(|c| c.send(cmd).is_ok())
    }
}

/// The signalling half of a SIP line.
#[derive(Debug)]
pub struct SipLine {
    pub(crate) shared: Arc<LineShared>,
    pub(crate) agent: Arc<Agent>,
    pub(crate) events: mpsc::UnboundedReceiver<LineEvent>,
}

impl Line for SipLine {
    type Error = SipError;

    fn info(&self) -> &LineInfo {
        &self.shared.info
    }

    fn status(&self) -> crate::line::StatusWatch {
        self.shared.status.subscribe()
    }

    async fn next_event(&mut self) -> Result<LineEvent, SipError> {
        self.events.recv().await.ok_or(SipError::Stopped)
    }

    async fn command(&mut self, cmd: LineCommand) -> Result<(), SipError> {
        match cmd {
            LineCommand::Answer => {
                self.shared.to_call(Cmd::Answer);
            }
            LineCommand::Progress => {
                self.shared.to_call(Cmd::Progress);
            }
            LineCommand::Hangup(c) => {
                self.shared.to_call(Cmd::Hangup(c));
            }
            LineCommand::Dial { number, caller_id } => {
                if self.shared.info.kind != LineKind::Trunk {
                    return Err(SipError::Refused(format!(
                        "line {} is a station; calls go out on trunks",
                        self.shared.info.id
                    )));
                }
                self.agent
                    .dial(&self.shared, &number, caller_id.as_deref())?;
            }
            LineCommand::Ring {
                caller_id,
                caller_name,
            } => {
                self.agent
                    .ring(&self.shared, caller_id.as_deref(), caller_name.as_deref())?;
            }
            LineCommand::MessageWaiting { new, old } => {
                self.agent.message_waiting(&self.shared, new, old)?;
            }
        }
        Ok(())
    }

    fn early_media(&self) -> bool {
        self.shared.early.load(Ordering::Relaxed)
    }
}

/// Audio from a SIP call's far end.
#[derive(Debug)]
pub struct SipAudioIn {
    pub(crate) shared: Arc<LineShared>,
}

impl AudioIn for SipAudioIn {
    type Error = SipError;

    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }

    async fn read_frame(&mut self) -> Result<Frame, SipError> {
        loop {
            if let Some(f) = self.try_read_frame()? {
                return Ok(f);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn try_read_frame(&mut self) -> Result<Option<Frame>, SipError> {
        Ok(self.shared.with_media(RtpSession::receive).flatten())
    }

    /// The jitter buffer gives one frame per period.
    fn paced(&self) -> bool {
        true
    }

    fn keys_in_band(&self) -> bool {
        !self
            .shared
            .with_media(RtpSession::events_negotiated)
            .unwrap_or(false)
    }
}

/// Audio to a SIP call's far end.
#[derive(Debug)]
pub struct SipAudioOut {
    pub(crate) shared: Arc<LineShared>,
    pub(crate) next: Option<tokio::time::Instant>,
}

impl AudioOut for SipAudioOut {
    type Error = SipError;

    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }

    async fn write_frame(&mut self, frame: Frame) -> Result<(), SipError> {
        // Paced like a sound card: one frame per 20 ms.
        let period = AudioFormat::NARROWBAND.frame_duration();
        let now = tokio::time::Instant::now();
        let due = self.next.filter(|n| *n > now).unwrap_or(now);
        tokio::time::sleep_until(due).await;
        self.next = Some(due + period);
        self.offer_frame(frame)?;
        Ok(())
    }

    fn offer_frame(&mut self, frame: Frame) -> Result<bool, SipError> {
        Ok(self.shared.with_media(|s| s.send(&frame)).is_some())
    }

    async fn drain(&mut self) -> Result<(), SipError> {
        if let Some(n) = self.next {
            tokio::time::sleep_until(n).await;
        }
        Ok(())
    }
}
