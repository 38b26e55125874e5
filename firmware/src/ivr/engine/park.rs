//! Call park: an agent parks the queue caller they are talking to (the
//! park code, or a blind transfer to the park number); the agent hears the
//! slot's number and is free; the caller hears the queue's hold music
//! until a station dials the slot and takes the call, or until the park
//! timeout, when the agent who parked it is rung again (and the caller
//! parked again if they do not answer).

use callbox_hal::{HangupCause, Line, LineCommand};

use super::connect::{Rung, TRANSFER_RING, release, release_cause};
use super::queue::Waiting;
use super::{FlowEnv, FlowState};
use crate::acd::ParkCfg;
use crate::ivr::say;
use crate::media::lines::Lease;
use crate::media::park::Parked;
use crate::media::{BridgeEnd, Gone, Media, bridge};

impl<L: Line> FlowEnv<'_, L> {
    /// The caller is parked in `parked` by `agent`, whose station is
    /// `lease` (it hears the slot, then is let go). Ends with the bridge
    /// to whoever takes the call.
    pub(super) async fn parked(
        &self,
        media: &mut Media<'_, L>,
        w: &Waiting<'_, L>,
        mut lease: Lease<L>,
        mut parked: Parked<L>,
        cfg: &ParkCfg,
        st: &mut FlowState,
    ) -> Result<BridgeEnd, Gone> {
        let parker = lease.port().line.info().id.clone();
        let slot = parked.slot.clone();
        tracing::info!(%slot, station = %parker, "caller parked");
        st.path.push(format!("park={slot}"));
        self.event("parked", serde_json::json!({"slot": slot, "by": parker}))
            .await;
        // The agent hears where the caller is, then hangs up or is let go.
        {
            let mut agent = Media::new(lease.port(), media.shutdown().clone());
            for key in say::digits(&slot) {
                if let Some(s) = self.ivr.prompts.get(st.lang(), &key).cloned()
                    && agent.play(s, false).await.is_err()
                {
                    break;
                }
            }
        }
        release(lease.port(), HangupCause::Normal).await;
        drop(lease);
        let music = w.hold.held();
        let mut pos = 0;
        loop {
            let waited = async {
                tokio::select! {
                    l = parked.taken.recv() => l,
                    () = tokio::time::sleep(cfg.timeout) => None,
                }
            };
            let taken = match media.loop_while(&music, &mut pos, waited, false).await {
                Ok(t) => t.flatten(),
                Err(g) => {
                    self.park.unpark(&slot).await;
                    st.path.push("park!caller_hung_up".into());
                    return Err(g);
                }
            };
            let (mut lease, how) = match taken {
                Some(l) => (l, "taken"),
                None => {
                    self.park.unpark(&slot).await;
                    st.path.push("park!timeout".into());
                    match self.ring_back(media, &parker).await? {
                        Some(l) => (l, "returned"),
                        None => {
                            // Nobody at the parker's phone: parked again,
                            // in the same slot if it is still free.
                            let mut slots = vec![slot.clone()];
                            slots.extend(cfg.slots.iter().cloned());
                            match self.park.park(&slots).await {
                                Some(p) => parked = p,
                                None => {
                                    // Only a stopping box has no lot.
                                    tracing::warn!(%slot, "the caller could not be parked again");
                                    return Err(Gone::Shutdown);
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            let station = lease.port().line.info().id.clone();
            tracing::info!(%slot, %station, how, "parked caller connected");
            st.path.push(format!("park={how}:{station}"));
            st.connected_to = Some(station.clone());
            st.outcome = Some(format!("parked_{how}:{station}"));
            let shutdown = media.shutdown().clone();
            let (port, rec) = media.split();
            let end = bridge(port, lease.port(), rec, &shutdown).await;
            release(lease.port(), release_cause(&end)).await;
            return Ok(end);
        }
    }

    /// Rings the station that parked the call; the lease if it answered.
    async fn ring_back(
        &self,
        media: &mut Media<'_, L>,
        station: &str,
    ) -> Result<Option<Lease<L>>, Gone> {
        let Some(mut l) = self.lines.seize(station).await else {
            return Ok(None);
        };
        let cmd = LineCommand::Ring {
            caller_id: self.caller.map(str::to_string),
            caller_name: self.ivr.lookups.contact(self.caller).map(str::to_string),
        };
        Ok(match self.ring(media, &mut l, cmd, TRANSFER_RING).await? {
            Rung::Answered => Some(l),
            _ => None,
        })
    }
}
