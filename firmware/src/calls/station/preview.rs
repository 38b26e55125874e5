//! A preview campaign's call: the agent's phone rings showing the contact
//! (their name or number, and the campaign); by answering, the agent
//! starts the call, and the box dials the contact on the campaign's trunks
//! with the campaign's number as caller id and connects the two. An agent
//! who lets it ring (or declines) skips the contact for now: nobody was
//! dialled. The call's record is the agent's outbound call, with the
//! campaign as its `job`.

use std::time::Duration;

use callbox_hal::dsp::tones::ToneRegion;
use callbox_hal::{HangupCause, Line, LineCommand};
use tracing::Instrument;

use super::{Call, Ended, Who, not};
use crate::calls::{CallContext, Switch};
use crate::media::dial::{Rang, release, ring_station};
use crate::media::lines::Port;
use crate::media::{Gone, Media};
use crate::store::{Direction, Disposition};

/// A contact to preview.
#[derive(Debug, Clone)]
pub struct PreviewCall {
    /// The agent it is offered to.
    pub agent: String,
    /// The contact's number.
    pub number: String,
    /// What the agent's phone shows beside the number.
    pub shown: String,
    /// The contact's name, from the list.
    pub name: Option<String>,
    /// The list's other columns, for the agent's desk.
    pub fields: std::collections::BTreeMap<String, String>,
    /// The campaign (the record's `job`).
    pub campaign: String,
    /// Trunks to dial on, the first free one.
    pub trunks: Vec<String>,
    /// Presented to the contact.
    pub caller_id: String,
    /// How long the agent's phone rings.
    pub ring: Duration,
}

/// How a preview went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// The agent's phone could not be rung (in use, no station).
    AgentAway,
    /// The agent did not take the contact: nobody was dialled.
    Skipped,
    /// The contact was dialled: the call and how it ended (`answered`,
    /// `busy`, `no_answer`, `congestion`, `failed`, `glare`, `no_line`).
    Dialled {
        /// The call's id.
        call_id: String,
        /// How it ended.
        result: String,
    },
}

/// Offers `p` to its agent and, taken, places the call.
pub async fn preview<L: Line>(p: PreviewCall, ctx: &CallContext, sw: &Switch<L>) -> Preview {
    let ctx = ctx.for_new_call();
    let Some(acd) = sw.acd.clone() else {
        return Preview::AgentAway;
    };
    let Some(station) = Call::<L>::station_of(sw, &p.agent).await else {
        return Preview::AgentAway;
    };
    let Some(mut lease) = sw.lines.seize(&station).await else {
        return Preview::AgentAway;
    };
    let id = crate::clock::new_id(&ctx.clock);
    let span = tracing::info_span!("call", id = %&id[id.len() - 8..], line = %station);
    // The agent's desk shows the contact while the phone rings, and the
    // call once taken.
    let _on_board = ctx.inflight.begin(crate::inflight::InflightCall {
        call_id: id.clone(),
        kind: "preview",
        line: station.clone(),
        caller: Some(p.number.clone()),
        caller_name: p.name.clone(),
        dialled: Some(p.number.clone()),
        since_ms: ctx.clock.now().wall_ms,
        agent: Some(p.agent.clone()),
        campaign: Some(p.campaign.clone()),
        fields: p.fields.clone(),
        ..Default::default()
    });
    async {
        acd.personal(&station, true).await;
        let cmd = LineCommand::Ring {
            caller_id: Some(p.number.clone()),
            caller_name: Some(p.shown.clone()),
        };
        tracing::info!(agent = %p.agent, number = %p.number, "preview: the agent's phone shows the contact");
        let rang = ring_station(
            &mut lease.port().line,
            cmd,
            p.ring,
            ctx.shutdown.cancelled(),
        )
        .await;
        let out = if let Rang::Answered = rang {
            ctx.inflight.answered(&id, ctx.clock.now().wall_ms);
            let who = Who::of(&p.agent, &acd);
            let call = Call {
                ctx: &ctx,
                sw,
                plan: None,
                id: &id,
                station: &station,
                who: &who,
                number: &p.number,
                tones: ctx.ivr.as_ref().map_or(ToneRegion::China, |i| i.tones),
                job: Some(&p.campaign),
            };
            let result = call.campaign_out(lease.port(), &p).await;
            release(lease.port(), HangupCause::Normal).await;
            Preview::Dialled {
                call_id: id.clone(),
                result,
            }
        } else {
            tracing::info!(agent = %p.agent, ?rang, "preview: the agent did not take the contact");
            release(lease.port(), HangupCause::NoAnswer).await;
            Preview::Skipped
        };
        drop(lease);
        acd.personal(&station, false).await;
        out
    }
    .instrument(span)
    .await
}

impl<L: Line> Call<'_, L> {
    /// Dials the previewed contact for the agent on the first free trunk
    /// of the campaign and connects them; how it ended, for the contact.
    async fn campaign_out(&self, port: &mut Port<L>, p: &PreviewCall) -> String {
        let mut media = Media::new(port, self.ctx.shutdown.clone());
        let mut seized = None;
        for t in &p.trunks {
            if let Some(l) = self.sw.lines.seize(t).await {
                seized = Some((t.clone(), l));
                break;
            }
        }
        let Some((trunk, mut lease)) = seized else {
            let log = self.log(Direction::Outbound, None, &p.number).await;
            tracing::warn!("preview: no trunk of the campaign is free");
            let gone = self.refuse(&mut media, None).await;
            self.finish(
                log,
                Ended::refused(HangupCause::Congestion, "no_line"),
                gone,
            )
            .await;
            return "no_line".into();
        };
        let log = self
            .log(Direction::Outbound, Some(trunk.clone()), &p.number)
            .await;
        tracing::info!(%trunk, number = %p.number, "preview: dialling the contact");
        let cmd = LineCommand::Dial {
            number: p.number.clone(),
            caller_id: Some(p.caller_id.clone()),
        };
        let (mut e, gone): (Ended, Option<Gone>) =
            match self.ring_out(&mut media, &mut lease, cmd, &trunk).await {
                Ok(Rang::Answered) => self.talk(&mut media, &mut lease, &trunk, &log).await,
                Ok(rang) => {
                    self.not_connected(&mut media, &mut lease, rang, &trunk)
                        .await
                }
                Err(g) => {
                    // The agent hung up while it rang.
                    release(lease.port(), HangupCause::Normal).await;
                    let e = not(Disposition::Abandoned, HangupCause::Normal, "abandoned");
                    (e, Some(g))
                }
            };
        let result = match e.outcome.as_str() {
            o if o.starts_with("connected:") => "answered",
            "busy" => "busy",
            "refused" => "congestion",
            "glare" => "glare",
            "failed" => "failed",
            _ => "no_answer",
        };
        e.path = vec![format!("{trunk}={}", e.outcome)];
        self.finish(log, e, gone).await;
        result.to_string()
    }
}
