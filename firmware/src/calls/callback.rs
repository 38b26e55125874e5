//! Callbacks: when a caller who asked to be called back reaches the head
//! of the queue, the ACD rings an agent and hands the answered station
//! here ([`CallbackOrder`]); the caller is dialled on the queue's callback
//! trunks and bridged to the agent, and the call is recorded like any
//! other outbound call.

use callbox_hal::{HangupCause, Line, LineCommand};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::record::{CallLog, Placed};
use super::{CallContext, Switch};
use crate::acd::{AcdHandle, CallbackOrder};
use crate::media::dial::{self, Rang};
use crate::media::{BridgeEnd, bridge};
use crate::recorder::Recording;
use crate::recorder::config::{CallKeys, Mode};
use crate::store::{CallFlow, Direction, Disposition, Side};

/// Places every callback the ACD orders until the ACD stops (or the daemon
/// does); each call runs on its own task of `tracker`.
pub fn serve<L>(
    mut orders: mpsc::Receiver<CallbackOrder<L>>,
    ctx: CallContext,
    sw: Switch<L>,
    acd: AcdHandle<L>,
    tracker: &TaskTracker,
) where
    L: Line,
{
    let calls = tracker.clone();
    tracker.spawn(async move {
        loop {
            let order = tokio::select! {
                () = ctx.shutdown.cancelled() => return,
                o = orders.recv() => match o {
                    Some(o) => o,
                    None => return,
                },
            };
            calls.spawn(call_back(order, ctx.clone(), sw.clone(), acd.clone()));
        }
    });
}

/// Dials a caller back with the agent already on the line, bridges them,
/// records the call and reports to the ACD.
async fn call_back<L>(order: CallbackOrder<L>, ctx: CallContext, sw: Switch<L>, acd: AcdHandle<L>)
where
    L: Line,
{
    let CallbackOrder {
        orig,
        agent_id,
        queue,
        number,
        trunks,
        ring_timeout,
        mut agent,
    } = order;
    let mut trunk = None;
    for t in &trunks {
        if let Some(l) = sw.lines.seize(t).await {
            trunk = Some(l);
            break;
        }
    }
    let mut talk = None;
    if let Some(mut trunk) = trunk {
        let id = crate::clock::new_id(&ctx.clock);
        let port = trunk.port();
        let placed = Placed {
            direction: Direction::Outbound,
            trunk_line: Some(port.line.info().id.clone()),
            station: None,
            caller_name: None,
            caller: None,
            dialled: Some(number.clone()),
        };
        let log = CallLog::start(&ctx.store, &ctx.clock, &id, placed).await;
        let cmd = LineCommand::Dial {
            number: number.clone(),
            caller_id: None,
        };
        let rang = dial::ring(&mut port.line, cmd, ring_timeout, ctx.shutdown.cancelled()).await;
        let answered = matches!(rang, Ok(Rang::Answered));
        let glare = match rang {
            Ok(Rang::Glare(ev)) => {
                // Not ours to hang up: the arriving call goes back to the
                // trunk's watcher.
                trunk.put_back(ev);
                true
            }
            _ => false,
        };
        let (disposition, side) = if answered {
            log.answered().await;
            let start = Instant::now();
            // A callback is a queue call: the queue's and agent's
            // recording policy applies (the caller asked for the call, so
            // no notice is played).
            let mut rec = Recording::for_call(&ctx.recorder, &id);
            if let Some(cfg) = rec.config() {
                let d = cfg.decide(&CallKeys {
                    queue: Some(&queue),
                    agent: Some(&agent_id),
                    dialled: Some(&number),
                    flow: None,
                });
                rec.on_demand = d.mode == Mode::OnDemand;
                rec.start_call(d);
            }
            let end = bridge(trunk.port(), agent.port(), &mut rec, &ctx.shutdown).await;
            drop(rec);
            talk = Some(start.elapsed());
            let side = match end {
                BridgeEnd::CallerHungUp => Side::Caller,
                BridgeEnd::OtherHungUp => Side::Box,
                _ => Side::System,
            };
            (Disposition::Answered, side)
        } else {
            (Disposition::NoAnswer, Side::System)
        };
        if !glare {
            let _ = trunk
                .port()
                .line
                .command(LineCommand::Hangup(HangupCause::Normal))
                .await;
        }
        let outcome = if talk.is_some() {
            "callback:connected"
        } else {
            "callback:no_answer"
        };
        log.flow(CallFlow {
            id: id.clone(),
            job: Some("callback".into()),
            queue: Some(queue.clone()),
            agent: talk.map(|_| agent_id.clone()),
            talk_ms: talk.map(|t| t.as_millis() as i64),
            queue_exit: Some("callback".into()),
            outcome: Some(outcome.into()),
            connected_to: talk.map(|_| agent.port().line.info().id.clone()),
            vars: [("callback_for".to_string(), orig.clone())]
                .into_iter()
                .collect(),
            ..CallFlow::default()
        })
        .await;
        log.end(disposition, HangupCause::Normal, side).await;
    }
    let _ = agent
        .port()
        .line
        .command(LineCommand::Hangup(HangupCause::Normal))
        .await;
    drop(agent);
    acd.callback_done(&orig, &agent_id, talk).await;
}
