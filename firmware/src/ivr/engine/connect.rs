//! Connecting the caller to a station or an outside number: ringing (or
//! dialling) a borrowed line with ring-back to the caller, bridging when
//! it answers, and hanging borrowed lines up before they go back to
//! their watchers.

use std::time::Duration;

use callbox_hal::dsp::tones::ProgressTone;
use callbox_hal::{HangupCause, Line, LineCommand};

use super::{FlowEnv, FlowState};
use crate::ivr::config::{Dest, Item};
pub(super) use crate::media::dial::release;
use crate::media::dial::{Rang, answer_within};
use crate::media::lines::Lease;
use crate::media::{BridgeEnd, Gone, Media, bridge};

/// How long the target of a transfer rings.
pub(super) const TRANSFER_RING: Duration = Duration::from_secs(20);

/// How ringing a borrowed line ended.
pub(super) enum Rung {
    Answered,
    /// No answer, refused or failed; the line was released.
    NotAnswered,
    /// A call arrived on the trunk instead; it went back to its watcher.
    Glare,
}

impl<L: Line> FlowEnv<'_, L> {
    /// Rings (or dials) a borrowed line with ring-back to the caller until
    /// it answers, refuses or `ring_timeout` passes; a line that did not
    /// answer is released.
    pub(super) async fn ring(
        &self,
        media: &mut Media<'_, L>,
        lease: &mut Lease<L>,
        cmd: LineCommand,
        ring_timeout: Duration,
    ) -> Result<Rung, Gone> {
        if let Err(e) = lease.port().line.command(cmd).await {
            tracing::warn!("could not ring: {e}");
            release(lease.port(), HangupCause::LineFailure).await;
            return Ok(Rung::NotAnswered);
        }
        let other = lease.port();
        let answered = media
            .tone_while(
                self.ivr.tones,
                ProgressTone::Ringback,
                answer_within(&mut other.line, ring_timeout, std::future::pending()),
                false,
            )
            .await;
        match answered {
            Ok(Some(Rang::Answered)) => Ok(Rung::Answered),
            Ok(Some(Rang::Glare(ev))) => {
                // A caller took the trunk: their call goes back to the
                // trunk's watcher.
                lease.put_back(ev);
                Ok(Rung::Glare)
            }
            Ok(_) => {
                release(other, HangupCause::NoAnswer).await;
                Ok(Rung::NotAnswered)
            }
            Err(g) => {
                release(other, HangupCause::Normal).await;
                Err(g)
            }
        }
    }

    /// Rings a destination and bridges. `Ok(None)`: nobody answered or
    /// everything was busy; `Ok(Some(end))`: the bridge ended so.
    pub(super) async fn connect(
        &self,
        media: &mut Media<'_, L>,
        label: &str,
        dest: &Dest,
        announce: &[Item],
        ring_timeout: Duration,
        st: &mut FlowState,
    ) -> Result<Option<BridgeEnd>, Gone> {
        self.play(media, announce, st, false).await?;
        let (candidates, number) = match dest {
            Dest::Stations(s) => (s.clone(), None),
            Dest::External { number, trunks } => (trunks.clone(), Some(number.clone())),
        };
        for line_id in &candidates {
            let Some(mut lease) = self.lines.seize(line_id).await else {
                continue;
            };
            let cmd = match &number {
                None => LineCommand::Ring {
                    caller_id: self.caller.map(str::to_string),
                    caller_name: self.ivr.lookups.contact(self.caller).map(str::to_string),
                },
                Some(n) => LineCommand::Dial {
                    number: n.clone(),
                    caller_id: None,
                },
            };
            tracing::info!(line = %line_id, "{label}: ringing");
            let answered = match self.ring(media, &mut lease, cmd, ring_timeout).await? {
                Rung::Answered => true,
                Rung::NotAnswered => false,
                Rung::Glare => continue,
            };
            if !answered {
                st.path.push(format!("{label}!no_answer:{line_id}"));
                return Ok(None);
            }
            st.path.push(format!("{label}=connected:{line_id}"));
            st.connected_to = Some(line_id.clone());
            st.outcome = Some(format!("connected:{line_id}"));
            let shutdown = media.shutdown().clone();
            if let Err(g) = self.recording_policy(media, None, None, true, st).await {
                // Gone during the notice: the line that answered is hung
                // up, not handed back connected.
                release(lease.port(), HangupCause::Normal).await;
                return Err(g);
            }
            self.event("bridged", serde_json::json!({"line": line_id}))
                .await;
            let other = lease.port();
            let (port, rec) = media.split();
            let end = bridge(port, other, rec, &shutdown).await;
            release(lease.port(), release_cause(&end)).await;
            return Ok(Some(end));
        }
        st.path.push(format!("{label}!all_busy"));
        Ok(None)
    }
}

/// How the other lines of a bridge are hung up when it ends: as a
/// shutdown if the daemon is stopping, else normally.
pub(super) fn release_cause(end: &BridgeEnd) -> HangupCause {
    if *end == BridgeEnd::Shutdown {
        HangupCause::Shutdown
    } else {
        HangupCause::Normal
    }
}
