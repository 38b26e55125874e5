//! Which campaigns run: the daemon tells the [`Dialer`] the campaigns it
//! wants (the site config's and those pushed from headquarters, each with
//! the IVR its flow runs in), and the dialer starts the new ones, stops
//! the removed ones and restarts the changed ones. A changed campaign's
//! new runner starts only once the old one has ended (its calls in
//! progress finished), so two runners never dial one contact list.

use std::collections::HashMap;
use std::sync::Arc;

use callbox_hal::Line;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{CampaignCfg, Control, End, Live, Runner};
use crate::calls::{CallContext, Switch};
use crate::ivr::Ivr;

/// A campaign to run and the IVR its flow is in.
pub type Wanted = (Arc<CampaignCfg>, Arc<Ivr>);

/// The handle that says which campaigns run; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dialer {
    tx: mpsc::UnboundedSender<Vec<Wanted>>,
}

impl Dialer {
    /// Starts the dialer on the daemon's runtime (`tracker`); campaign
    /// runners go on `jobs` (what `--until-idle` waits for).
    pub fn spawn<L: Line>(
        ctx: CallContext,
        sw: Switch<L>,
        live: Live,
        jobs: TaskTracker,
        tracker: &TaskTracker,
    ) -> Dialer {
        let (tx, rx) = mpsc::unbounded_channel();
        // Counts as a job until the first set of campaigns has started, so
        // `--until-idle` cannot end the run before they do.
        let first = jobs.token();
        tracker.spawn(run(rx, ctx, sw, live, jobs, first));
        Dialer { tx }
    }

    /// These campaigns, and no others, are to run.
    pub fn set(&self, wanted: Vec<Wanted>) {
        let _ = self.tx.send(wanted);
    }
}

/// A campaign whose runner is going.
struct Going {
    cfg: Arc<CampaignCfg>,
    ivr: Arc<Ivr>,
    stop: CancellationToken,
}

fn same(a: &Wanted, cfg: &Arc<CampaignCfg>, ivr: &Arc<Ivr>) -> bool {
    (Arc::ptr_eq(&a.0, cfg) || a.0.fingerprint == cfg.fingerprint) && Arc::ptr_eq(&a.1, ivr)
}

async fn run<L: Line>(
    mut rx: mpsc::UnboundedReceiver<Vec<Wanted>>,
    ctx: CallContext,
    sw: Switch<L>,
    live: Live,
    jobs: TaskTracker,
    first: tokio_util::task::task_tracker::TaskTrackerToken,
) {
    let mut first = Some(first);
    let mut told = false;
    let mut wanted: HashMap<String, Wanted> = HashMap::new();
    let mut going: HashMap<String, Going> = HashMap::new();
    // Campaigns that ended on their own (every contact final, or stopped
    // by hand), with the definition they ended with: not started again
    // until it changes or, stopped, until they are resumed.
    let mut ended: HashMap<String, (Arc<CampaignCfg>, End)> = HashMap::new();
    let mut runners: JoinSet<(String, End)> = JoinSet::new();
    // Each runner's campaign, for a runner that panics.
    let mut ids: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut controls = live.changed();
    let mut open = true;
    loop {
        for (name, w) in &wanted {
            if going.contains_key(name) || ctx.shutdown.is_cancelled() {
                continue;
            }
            if let Some((cfg, why)) = ended.get(name) {
                let resumed = *why == End::Stopped && live.control(name) != Control::Stopped;
                if cfg.fingerprint == w.0.fingerprint && !resumed {
                    continue;
                }
                ended.remove(name);
            }
            let stop = ctx.shutdown.child_token();
            let runner = Runner {
                c: Arc::clone(&w.0),
                ivr: Arc::clone(&w.1),
                ctx: ctx.clone(),
                sw: sw.clone(),
                live: live.clone(),
                pacer: std::sync::Mutex::default(),
                stop: stop.clone(),
            };
            let span = tracing::info_span!("campaign", name = %name);
            let name2 = name.clone();
            let h = runners.spawn(
                jobs.track_future(async move { (name2, runner.run().await) }.instrument(span)),
            );
            ids.insert(h.id(), name.clone());
            going.insert(
                name.clone(),
                Going {
                    cfg: Arc::clone(&w.0),
                    ivr: Arc::clone(&w.1),
                    stop,
                },
            );
        }
        live.set_known(wanted.keys().cloned().collect());
        if told || !open {
            // The first campaigns are running: their runners count now.
            first.take();
        }
        tokio::select! {
            () = ctx.shutdown.cancelled(), if runners.is_empty() => return,
            msg = rx.recv(), if open => {
                let Some(list) = msg else {
                    // The daemon let go: the runners end with its stop.
                    open = false;
                    continue;
                };
                told = true;
                wanted = list
                    .into_iter()
                    .map(|w| (w.0.name.clone(), w))
                    .collect();
                for (name, g) in &going {
                    let keep = wanted.get(name).is_some_and(|w| same(w, &g.cfg, &g.ivr));
                    if !keep && !g.stop.is_cancelled() {
                        tracing::info!(campaign = %name, "campaign removed or changed: its calls in progress end, then it stops");
                        g.stop.cancel();
                    }
                }
            }
            Some(done) = runners.join_next_with_id(), if !runners.is_empty() => {
                let (name, why) = match done {
                    Ok((id, (name, why))) => {
                        ids.remove(&id);
                        (name, why)
                    }
                    Err(e) => {
                        let Some(name) = ids.remove(&e.id()) else { continue };
                        tracing::error!(campaign = %name, "the campaign's runner failed: {e}");
                        // Not started again until its definition changes.
                        (name, End::Finished)
                    }
                };
                live.forget(&name);
                if let Some(g) = going.remove(&name)
                    && why != End::Cancelled
                {
                    ended.insert(name, (g.cfg, why));
                }
            }
            Ok(()) = controls.changed() => {}
        }
    }
}
