//! Where each campaign stands for the rest of the box: its live figures
//! (telemetry, the `campaign` command), the control headquarters gave it
//! (kept on disk), which campaigns run, and what each waits for, for the
//! priorities between them.

use std::sync::Arc;

use tokio::sync::watch;

use super::CampaignCfg;

/// How each campaign is doing, as telemetry reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Attempts dialled since the box started.
    pub dialled: u64,
    /// Of those, answered.
    pub answered: u64,
    /// Calls in progress now.
    pub in_progress: u64,
    /// Contacts not yet done, exhausted or barred.
    pub remaining: u64,
    /// Answered contacts who found no agent (predictive).
    pub abandoned: u64,
    /// Answered calls answering-machine detection took for machines.
    pub machines: u64,
    /// Members of the campaign's queue ringing or on a call, when last
    /// looked at.
    pub agents_busy: u64,
}

impl LiveStats {
    /// The figures as telemetry and the `campaign` command report them,
    /// with the rates (answered machines of all answered; abandoned of
    /// the answered people).
    pub fn json(&self, name: &str, control: Control) -> serde_json::Value {
        let rate = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let people = self.answered.saturating_sub(self.machines);
        serde_json::json!({
            "name": name,
            "control": control,
            "dialled": self.dialled,
            "answered": self.answered,
            "in_progress": self.in_progress,
            "remaining": self.remaining,
            "abandoned": self.abandoned,
            "abandon_rate": rate(self.abandoned, people),
            "machines": self.machines,
            "machine_rate": rate(self.machines, self.answered),
            "agents_busy": self.agents_busy,
        })
    }
}

/// Where headquarters or the command API has put a campaign: dialling,
/// paused (nobody new is dialled; calls in progress end normally) or
/// stopped (the same, and its task ends once they have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Dialling.
    Running,
    /// Nobody new is dialled until `resume`.
    Paused,
    /// Ended by hand; `resume` (and a restart of the daemon) takes it up.
    Stopped,
}

/// The file that keeps paused and stopped campaigns across a restart.
const CONTROL_FILE: &str = "campaigns.json";

/// Every campaign's [`LiveStats`] and [`Control`], by name; cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Live {
    stats: Arc<std::sync::Mutex<std::collections::BTreeMap<String, LiveStats>>>,
    /// The campaigns the box runs now (the config's and pushed ones).
    known: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// What each running campaign needs now, for the priorities.
    demand: Arc<std::sync::Mutex<std::collections::BTreeMap<String, Demand>>>,
    control: Arc<watch::Sender<std::collections::BTreeMap<String, Control>>>,
    file: Arc<std::path::PathBuf>,
}

impl Live {
    /// Campaigns as the data directory's control file left them (all
    /// running when it is missing; an unreadable one is logged and
    /// ignored).
    pub fn load(data_dir: &std::path::Path) -> Live {
        let file = data_dir.join(CONTROL_FILE);
        let control = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), "campaign controls unreadable, all running: {e}");
                Default::default()
            }),
            Err(_) => Default::default(),
        };
        Live {
            stats: Arc::default(),
            known: Arc::default(),
            demand: Arc::default(),
            control: Arc::new(watch::channel(control).0),
            file: Arc::new(file),
        }
    }

    /// A copy of every campaign's figures.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, LiveStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the box runs a campaign called `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// Says what campaign `c`'s due contacts wait for, if anything: a
    /// trunk or an agent (`None` too when only a campaign above it holds
    /// it back).
    pub(super) fn want(&self, c: &CampaignCfg, waiting: Option<Need>) {
        let mut all = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = all.get_mut(&c.name) {
            d.waiting = waiting;
            return;
        }
        all.insert(
            c.name.clone(),
            Demand {
                priority: c.priority,
                trunks: c.trunks.clone(),
                queue: c.mode.queue().map(str::to_string),
                waiting,
            },
        );
    }

    /// Whether a campaign of higher priority waits for a trunk `c` may
    /// take, or for an agent of `c`'s queue: `c` then leaves it the line
    /// or the agent.
    pub(super) fn outranked(&self, c: &CampaignCfg) -> bool {
        let all = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        all.len() > 1
            && all.iter().any(|(name, d)| {
                *name != c.name
                    && d.priority > c.priority
                    && match d.waiting {
                        Some(Need::Trunk) => d.trunks.iter().any(|t| c.trunks.contains(t)),
                        Some(Need::Agent) => {
                            d.queue.is_some() && d.queue.as_deref() == c.mode.queue()
                        }
                        None => false,
                    }
            })
    }

    /// Campaign `name`'s runner ended.
    pub(super) fn forget(&self, name: &str) {
        self.demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub(super) fn set_known(&self, names: std::collections::BTreeSet<String>) {
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Where campaign `name` stands.
    pub fn control(&self, name: &str) -> Control {
        self.control
            .borrow()
            .get(name)
            .copied()
            .unwrap_or(Control::Running)
    }

    /// Puts campaign `name` in `to`, kept on disk first.
    pub async fn set(&self, name: &str, to: Control) -> std::io::Result<()> {
        let mut all = self.control.borrow().clone();
        if to == Control::Running {
            all.remove(name);
        } else {
            all.insert(name.to_string(), to);
        }
        let bytes = serde_json::to_vec(&all).map_err(std::io::Error::other)?;
        let path = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&path, &bytes, None))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))?;
        tracing::info!(campaign = name, ?to, "campaign control set");
        self.control.send_replace(all);
        Ok(())
    }

    pub(super) fn changed(&self) -> watch::Receiver<std::collections::BTreeMap<String, Control>> {
        self.control.subscribe()
    }

    pub(super) fn update(&self, name: &str, f: impl FnOnce(&mut LiveStats)) {
        let mut all = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(name.to_string()).or_default());
    }
}

/// What a running campaign needs, for the priorities between campaigns.
#[derive(Debug, Clone)]
pub(super) struct Demand {
    priority: i32,
    trunks: Vec<String>,
    queue: Option<String>,
    /// Contacts are due and it cannot dial them for want of this.
    waiting: Option<Need>,
}

/// What a campaign's due contacts wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// A free trunk of its own.
    Trunk,
    /// A free agent of its queue.
    Agent,
}
