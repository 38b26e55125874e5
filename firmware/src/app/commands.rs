//! Headquarters' commands (docs/mqtt.md, "Commands"): [`Commands`] is the
//! daemon's [`CommandHandler`].
//!
//! - `config.get`, `config.set`: the running site config and the version
//!   headquarters gave it. A new config is checked exactly as `callboxd
//!   check-config` checks it, written atomically over the running file (the
//!   previous one kept as `<file>.prev`) and applied without dropping
//!   calls: a call keeps the config it started with, new calls get the new
//!   one (the IVR, greeting and inbound trunks through
//!   [`LiveConfig`](crate::calls::LiveConfig), the recording policy through
//!   [`Recorder::set_config`](crate::recorder::Recorder::set_config), agents
//!   and queues through [`AcdHandle::reconfigure`](crate::acd::AcdHandle::reconfigure);
//!   outbound jobs new in the config start, removed ones finish). What the
//!   box cannot change while running (`[[line]]`, `[hal]`, `[storage]`,
//!   `[uplink]`, the site id, adding or removing `[acd]`) needs
//!   `"restart": true`, and the box then restarts with it. A change that
//!   fails half-way is undone: the previous file and config are back.
//! - `lookup.update`: replaces or merges the rows of a lookup table (the
//!   CSV files under `[ivr.lookups]`, or a number list under `[ivr.lists]`
//!   in the config itself), checked and applied the same way.
//! - `agent`: login, logout, pause, unpause through the ACD.
//! - `originate`: one outbound IVR call, as an `[[outbound]]` job places it.
//! - `logs`: the daemon's last log lines ([`crate::logging::LogRing`]).
//! - `restart`: answers, then stops the daemon cleanly; it exits 0 and the
//!   service manager starts it again.
//!
//! Commands that change the config run one at a time. The version and the
//! checksum of the running config are kept in [`VERSION_FILE`] in the data
//! directory (version 0: never configured remotely).

use crate::fsutil::{sha256_hex, write_atomic};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callbox_hal::diag::TomlSource;
use callbox_hal::{AudioIn, AudioOut, Line, LineKind};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::acd::{AcdConfig, AgentCommand};
use crate::calls::outbound::Originate;
use crate::calls::{CallContext, Switch};
use crate::config::SiteConfig;
use crate::ivr::pattern::Pattern;
use crate::logging::LogRing;
use crate::recorder::config::RecordingConfig;
use crate::sync::{BoxFuture, CommandHandler};

/// Where the running config's version is kept, in the data directory.
pub const VERSION_FILE: &str = "config-version.json";
/// `logs` without `lines`.
const LOGS_DEFAULT: u64 = 200;
/// `logs` at most.
const LOGS_MAX: u64 = 2000;
/// Time the fleet link gets to send the answer to `restart` before the
/// daemon starts stopping.
const RESTART_GRACE: Duration = Duration::from_millis(500);
/// How long an originated call rings (as an `[[outbound]]` job by default).
const ORIGINATE_RING: Duration = Duration::from_secs(30);
/// Room kept in a message for the envelope around a result.
const ENVELOPE: usize = 1024;
/// `max_message` when the site has no `[uplink]` (docs/mqtt.md).
const DEFAULT_MAX_MESSAGE: usize = 120 * 1024;
/// Every command, for the answer to an unknown one.
const KNOWN: &str =
    "status, config.get, config.set, agent, originate, lookup.update, logs, restart";
/// Top-level sections of a site config, in the order `applied` lists them.
const SECTIONS: [&str; 12] = [
    "site",
    "log",
    "hal",
    "storage",
    "line",
    "prompts",
    "inbound",
    "ivr",
    "outbound",
    "acd",
    "recording",
    "uplink",
];

/// What commands reach in the running daemon. Released when the daemon
/// stops ([`Commands::release`]): it holds handles whose drop lets the
/// panel and the store finish.
struct Daemon<L, I, O> {
    ctx: CallContext,
    sw: Switch<L, I, O>,
    jobs: TaskTracker,
    /// Trunks an originated call may dial on, in file order.
    trunks: Vec<String>,
}

/// The config in force and what headquarters knows it by.
struct Running {
    config: Arc<SiteConfig>,
    text: String,
    version: u64,
    sha256: String,
    /// Outbound jobs started by this run, by name.
    jobs: HashSet<String>,
}

/// The daemon's command handler.
pub struct Commands<L, I, O> {
    daemon: Mutex<Option<Arc<Daemon<L, I, O>>>>,
    running: tokio::sync::Mutex<Running>,
    /// `(version, sha256)` for [`CommandHandler::reported_config`], which
    /// cannot wait for `running`.
    reported: Mutex<(u64, String)>,
    config_path: PathBuf,
    data_dir: PathBuf,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
    logs: LogRing,
    max_result: usize,
}

impl<L, I, O> std::fmt::Debug for Commands<L, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("config_path", &self.config_path)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What a config change did.
struct Changed {
    applied: Vec<&'static str>,
    restarting: bool,
}

/// What to put back if a change fails half-way.
#[derive(Default)]
struct Undo {
    snapshot: Option<Arc<crate::calls::Snapshot>>,
    recording: Option<Arc<RecordingConfig>>,
    acd: Option<AcdConfig>,
    log_level: Option<String>,
}

impl<L, I, O> Commands<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    /// The handler for a daemon running `config` (as loaded from
    /// `config.path`). Call on the daemon's runtime: originated calls and
    /// new jobs run there.
    pub fn new(
        config: Arc<SiteConfig>,
        data_dir: &Path,
        ctx: CallContext,
        sw: Switch<L, I, O>,
        jobs: TaskTracker,
    ) -> Commands<L, I, O> {
        let text = std::fs::read_to_string(&config.path).unwrap_or_else(|e| {
            // Every section then counts as changed: a set needs a restart.
            tracing::warn!(
                "cannot read the running config {} again: {e}",
                config.path.display()
            );
            String::new()
        });
        let sha256 = sha256_hex(text.as_bytes());
        let (version, stored) = read_version(data_dir);
        if version > 0 && stored.as_deref() != Some(sha256.as_str()) {
            tracing::warn!(
                version,
                "the config file was changed on the box since headquarters set version {version}"
            );
        }
        let trunks = config
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Trunk)
            .map(|l| l.id.clone())
            .collect();
        let started = config
            .ivr
            .iter()
            .flat_map(|i| i.outbound.iter().map(|j| j.name.clone()))
            .collect();
        let max_message = config
            .uplink
            .as_ref()
            .map_or(DEFAULT_MAX_MESSAGE, |u| u.max_message);
        Commands {
            shutdown: ctx.shutdown.clone(),
            daemon: Mutex::new(Some(Arc::new(Daemon {
                ctx,
                sw,
                jobs,
                trunks,
            }))),
            reported: Mutex::new((version, sha256.clone())),
            running: tokio::sync::Mutex::new(Running {
                config: config.clone(),
                text,
                version,
                sha256,
                jobs: started,
            }),
            config_path: config.path.clone(),
            data_dir: data_dir.to_path_buf(),
            runtime: tokio::runtime::Handle::current(),
            logs: crate::logging::ring().clone(),
            max_result: max_message.saturating_sub(ENVELOPE),
        }
    }
}

impl<L, I, O> Commands<L, I, O> {
    /// Lets go of the daemon's handles (call when the daemon starts
    /// stopping); commands then answer that the box is stopping.
    pub fn release(&self) {
        self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn daemon(&self) -> Result<Arc<Daemon<L, I, O>>, String> {
        self.daemon
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| "the box is stopping".to_string())
    }

    fn report(&self, version: u64, sha256: &str) {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = (version, sha256.to_string());
    }

    /// Cancels the shutdown token once the answer has had time to leave.
    fn restart_soon(&self) {
        tracing::warn!("restart asked by headquarters: stopping");
        let token = self.shutdown.clone();
        // On the runtime the command runs on (the fleet link's, in real
        // time): the daemon's may run in virtual time.
        tokio::spawn(async move {
            tokio::time::sleep(RESTART_GRACE).await;
            token.cancel();
        });
    }
}

impl<L, I, O> CommandHandler for Commands<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    fn handle<'a>(&'a self, cmd: &'a str, args: Value) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let args = Args::new(&args)?;
            match cmd {
                "config.get" => self.config_get().await,
                "config.set" => self.config_set(&args).await,
                "agent" => self.agent(&args).await,
                "originate" => self.originate(&args).await,
                "lookup.update" => self.lookup_update(&args).await,
                "logs" => self.recent_logs(&args),
                "restart" => {
                    self.restart_soon();
                    Ok(json!({"restarting": true}))
                }
                "status" => Err("`status` is answered by the fleet link itself".into()),
                other => Err(format!("unknown command `{}`; known: {KNOWN}", clip(other))),
            }
        })
    }

    fn reported_config(&self) -> Value {
        let (version, sha256) = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        json!({"version": version, "sha256": sha256})
    }
}

impl<L, I, O> Commands<L, I, O>
where
    L: Line,
    I: AudioIn,
    O: AudioOut,
{
    async fn config_get(&self) -> Result<Value, String> {
        let run = self.running.lock().await;
        Ok(json!({"version": run.version, "sha256": run.sha256, "toml": run.text}))
    }

    async fn config_set(&self, args: &Args<'_>) -> Result<Value, String> {
        let version = args.u64("version")?;
        let text = args.str("toml")?;
        let restart = args.bool_opt("restart")?.unwrap_or(false);
        let mut run = self.running.lock().await;
        if version <= run.version {
            return Err(format!(
                "version {version} is not above the running version {}",
                run.version
            ));
        }
        let done = self
            .change(&mut run, text.to_string(), version, restart)
            .await?;
        let mut result = json!({"version": version, "applied": done.applied});
        if done.restarting {
            result["restarting"] = json!(true);
        }
        Ok(result)
    }

    /// Checks `text`, writes it over the running config and puts it in
    /// force (or restarts with it), recording `version`.
    async fn change(
        &self,
        run: &mut Running,
        text: String,
        version: u64,
        restart: bool,
    ) -> Result<Changed, String> {
        let daemon = self.daemon()?;
        let new = self.check(text.clone()).await?;
        let applied = sections_changed(&run.text, &text);
        let needs = restart_reasons(&run.config, &new, &applied);
        if !needs.is_empty() && !restart {
            return Err(format!(
                "{}: send it again with \"restart\": true to restart the box with it (calls in progress are ended)",
                needs.join("; ")
            ));
        }
        let sha256 = sha256_hex(text.as_bytes());
        write_config(&self.config_path, &text)
            .map_err(|e| format!("writing {}: {e}", self.config_path.display()))?;
        if !needs.is_empty() {
            if let Err(e) = write_version(&self.data_dir, version, &sha256) {
                let _ = restore_config(&self.config_path);
                return Err(format!(
                    "recording the config version: {e}; nothing changed"
                ));
            }
            run.version = version;
            run.sha256.clone_from(&sha256);
            self.report(version, &sha256);
            tracing::warn!(version, changed = ?applied, "{}; restarting", needs.join("; "));
            self.restart_soon();
            return Ok(Changed {
                applied,
                restarting: true,
            });
        }
        let mut undo = Undo::default();
        let result = async {
            self.apply(&daemon, &run.config, &new, &applied, &mut undo)
                .await?;
            write_version(&self.data_dir, version, &sha256)
                .map_err(|e| format!("recording the config version: {e}"))
        }
        .await;
        if let Err(e) = result {
            self.undo(&daemon, undo).await;
            let restored = match restore_config(&self.config_path) {
                Ok(()) => String::new(),
                Err(re) => format!(
                    " (but {} could not be put back: {re})",
                    self.config_path.display()
                ),
            };
            tracing::error!("config version {version} not applied: {e}{restored}");
            return Err(format!(
                "{e}; the previous config is back in force{restored}"
            ));
        }
        let new = Arc::new(new);
        self.start_new_jobs(&daemon, &mut run.jobs);
        run.config = new;
        run.text = text;
        run.version = version;
        run.sha256.clone_from(&sha256);
        self.report(version, &sha256);
        tracing::info!(version, applied = ?applied, "config applied");
        Ok(Changed {
            applied,
            restarting: false,
        })
    }

    /// The site config in `text`, checked as `callboxd check-config` checks
    /// it: at the running file's path, so relative paths resolve alike and
    /// errors read `FILE:LINE:COL: message`.
    async fn check(&self, text: String) -> Result<SiteConfig, String> {
        let path = self.config_path.clone();
        // Prompts and tables are read and decoded: off the runtime.
        tokio::task::spawn_blocking(move || SiteConfig::from_source(&TomlSource::new(&path, text)))
            .await
            .map_err(|e| format!("checking the config failed: {e}"))?
            .map_err(|d| d.to_string())
    }

    /// Puts `new` in force for everything that can change while calls go
    /// on; what it switched goes into `undo`. The ACD goes first: it is the
    /// only part that can refuse.
    async fn apply(
        &self,
        daemon: &Daemon<L, I, O>,
        old: &SiteConfig,
        new: &SiteConfig,
        applied: &[&str],
        undo: &mut Undo,
    ) -> Result<(), String> {
        if applied.contains(&"acd")
            && let (Some(acd), Some(cfg), Some(was)) = (&daemon.sw.acd, &new.acd, &old.acd)
        {
            acd.reconfigure(cfg.clone())
                .await
                .map_err(|e| format!("[acd] cannot change now: {e}"))?;
            undo.acd = Some(was.clone());
        }
        undo.recording = daemon
            .ctx
            .recorder
            .set_config(Arc::new(new.recorder_config()));
        if applied.contains(&"log") {
            crate::logging::set_level(&new.log_level);
            undo.log_level = Some(old.log_level.clone());
        }
        undo.snapshot = Some(daemon.ctx.live.replace(Arc::new(new.call_snapshot())));
        Ok(())
    }

    /// Puts back what [`Commands::apply`] switched, last first.
    async fn undo(&self, daemon: &Daemon<L, I, O>, undo: Undo) {
        if let Some(s) = undo.snapshot {
            daemon.ctx.live.replace(s);
        }
        if let Some(level) = undo.log_level {
            crate::logging::set_level(&level);
        }
        if let Some(r) = undo.recording {
            daemon.ctx.recorder.set_config(r);
        }
        if let (Some(cfg), Some(acd)) = (undo.acd, &daemon.sw.acd)
            && let Err(e) = acd.reconfigure(cfg).await
        {
            tracing::error!("the ACD could not go back to its previous config: {e}");
        }
    }

    /// Starts the outbound jobs of the config now in force that this run
    /// has not started yet.
    fn start_new_jobs(&self, daemon: &Daemon<L, I, O>, started: &mut HashSet<String>) {
        let Some(ivr) = daemon.ctx.live.current().ivr.clone() else {
            return;
        };
        let _rt = self.runtime.enter();
        for (i, job) in ivr.outbound.iter().enumerate() {
            if started.insert(job.name.clone()) {
                tracing::info!(job = %job.name, "outbound job added by a config change");
                crate::calls::outbound::spawn_job(
                    i,
                    ivr.clone(),
                    daemon.ctx.clone(),
                    daemon.sw.clone(),
                    &daemon.jobs,
                );
            }
        }
    }

    async fn agent(&self, args: &Args<'_>) -> Result<Value, String> {
        let action = args.str("action")?;
        let agent = args.str("agent")?.to_string();
        let station = args.str_opt("station")?;
        let reason = args.str_opt("reason")?;
        let daemon = self.daemon()?;
        let acd = daemon
            .sw
            .acd
            .as_ref()
            .ok_or("this box has no agents (no [acd] in its config)")?;
        let config = acd.config();
        let Some(cfg) = config.agents.iter().find(|a| a.id == agent) else {
            return Err(format!("no agent `{}`", clip(&agent)));
        };
        let cmd = match action {
            "login" => {
                let station = match station {
                    Some(s) => s.to_string(),
                    None => cfg.station.clone().ok_or_else(|| {
                        format!("`station` is missing and agent `{agent}` has no home station")
                    })?,
                };
                AgentCommand::Login {
                    agent: agent.clone(),
                    station,
                }
            }
            "logout" => AgentCommand::Logout {
                agent: agent.clone(),
            },
            "pause" => AgentCommand::Pause {
                agent: agent.clone(),
                reason: reason.map(str::to_string),
            },
            "unpause" => AgentCommand::Unpause {
                agent: agent.clone(),
            },
            other => {
                return Err(format!(
                    "`action` must be login, logout, pause or unpause, not `{}`",
                    clip(other)
                ));
            }
        };
        let message = acd.command(cmd).await?;
        let stats = acd.stats().await.ok_or("the ACD has stopped")?;
        let now = stats
            .agents
            .iter()
            .find(|a| a.agent == agent)
            .ok_or_else(|| format!("no agent `{agent}`"))?;
        Ok(json!({
            "agent": agent,
            "state": now.state,
            "station": now.station,
            "reason": now.reason,
            "message": message,
        }))
    }

    async fn originate(&self, args: &Args<'_>) -> Result<Value, String> {
        let node = args.str("node")?;
        let number = args.str("number")?;
        let vars = match args.object_opt("vars")? {
            None => Vec::new(),
            Some(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(format!("`vars.{}` must be a string", clip(k))),
                })
                .collect::<Result<_, _>>()?,
        };
        if number.is_empty()
            || number.len() > 32
            || !number.chars().all(callbox_hal::dsp::dtmf::is_dtmf_digit)
        {
            return Err(format!(
                "`number` `{}` is not a number that can be dialled (1-32 of 0-9 * # A-D)",
                clip(number)
            ));
        }
        let daemon = self.daemon()?;
        let ctx = daemon.ctx.for_new_call();
        let ivr = ctx
            .ivr
            .clone()
            .ok_or("this box has no IVR (no [ivr] in its config)")?;
        let start = ivr
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| format!("no IVR node `{}`", clip(node)))?;
        let call = Originate {
            number: number.to_string(),
            trunks: daemon.trunks.clone(),
            start,
            vars,
            ring_timeout: ORIGINATE_RING,
        };
        let (sw, jobs) = (daemon.sw.clone(), daemon.jobs.clone());
        let id = self
            .runtime
            .spawn(
                async move { crate::calls::outbound::originate(call, ivr, ctx, sw, &jobs).await },
            )
            .await
            .map_err(|e| format!("the call could not start: {e}"))??;
        tracing::info!(call = %id, %number, node, "call originated by headquarters");
        Ok(json!({"call_id": id}))
    }

    fn recent_logs(&self, args: &Args<'_>) -> Result<Value, String> {
        let n = args.u64_opt("lines")?.unwrap_or(LOGS_DEFAULT).min(LOGS_MAX);
        let mut lines = self.logs.last(n as usize);
        // The newest lines matter most: the oldest go until the answer fits
        // in one message.
        let mut size: usize = lines.iter().map(|l| json_len(l) + 1).sum();
        let mut first = 0;
        while size > self.max_result && first < lines.len() {
            size -= json_len(&lines[first]) + 1;
            first += 1;
        }
        lines.drain(..first);
        Ok(json!({"lines": lines}))
    }

    async fn lookup_update(&self, args: &Args<'_>) -> Result<Value, String> {
        let table = args.str("table")?;
        let merge = match args.str("mode")? {
            "replace" => false,
            "merge" => true,
            other => {
                return Err(format!(
                    "`mode` must be \"replace\" or \"merge\", not `{}`",
                    clip(other)
                ));
            }
        };
        let rows = args.array("rows")?;
        let mut run = self.running.lock().await;
        if let Some(list) = table.strip_prefix("lists.") {
            return self.update_list(&mut run, list, merge, rows).await;
        }
        let Some(kind) = TABLES.iter().find(|t| t.name == table) else {
            return Err(format!(
                "no lookup table `{}`; tables are products, regions, orders and lists.NAME (a list under [ivr.lists])",
                clip(table)
            ));
        };
        let new_rows = kind.rows(rows)?;
        let daemon = self.daemon()?;
        let file = lookup_file(&run.text, kind.name)
            .map(|f| base_dir(&self.config_path).join(f))
            .ok_or_else(|| {
                format!(
                    "the config names no `{}` table under [ivr.lookups]; add one with config.set",
                    kind.name
                )
            })?;
        let before = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let rows = if merge {
            let mut all = kind.parse_file(&String::from_utf8_lossy(&before));
            for r in new_rows {
                match all.iter_mut().find(|o| o[0] == r[0]) {
                    Some(o) => *o = r,
                    None => all.push(r),
                }
            }
            all
        } else {
            new_rows
        };
        write_atomic(&file, kind.to_csv(&rows).as_bytes(), None)
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        let put_back = |why: String| {
            if let Err(e) = write_atomic(&file, &before, None) {
                tracing::error!("putting back {}: {e}", file.display());
                return format!("{why} (and the previous table could not be put back: {e})");
            }
            why
        };
        // The whole config again, as check-config would: a table is only
        // good with the flows that read it.
        let new = match self.check(run.text.clone()).await {
            Ok(c) => c,
            Err(e) => return Err(put_back(e)),
        };
        let mut undo = Undo::default();
        if let Err(e) = self.apply(&daemon, &run.config, &new, &[], &mut undo).await {
            self.undo(&daemon, undo).await;
            return Err(put_back(e));
        }
        run.config = Arc::new(new);
        tracing::info!(table, rows = rows.len(), merge, "lookup table updated");
        Ok(json!({"table": table, "rows": rows.len()}))
    }

    /// A number list under `[ivr.lists]`: the list in the config text is
    /// rewritten, the rest of the file kept as it is.
    async fn update_list(
        &self,
        run: &mut Running,
        name: &str,
        merge: bool,
        rows: &[Value],
    ) -> Result<Value, String> {
        let mut new: Vec<String> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Value::String(s) = r else {
                return Err(format!("rows[{i}]: must be a string (a number pattern)"));
            };
            let s = s.trim();
            Pattern::parse(s).map_err(|e| format!("rows[{i}]: {e}"))?;
            if let Some(j) = new.iter().position(|o| o == s) {
                return Err(format!(
                    "rows[{i}]: `{}` appears twice (also rows[{j}])",
                    clip(s)
                ));
            }
            new.push(s.to_string());
        }
        let (span, existing) = list_in(&run.text, name).ok_or_else(|| {
            format!(
                "no list `{}` under [ivr.lists] in the config; add it with config.set",
                clip(name)
            )
        })?;
        let entries = if merge {
            let mut all = existing;
            for n in new {
                if !all.contains(&n) {
                    all.push(n);
                }
            }
            all
        } else {
            new
        };
        let mut text = run.text.clone();
        text.replace_range(span, &toml_array(&entries));
        let version = run.version;
        self.change(run, text, version, false).await?;
        tracing::info!(
            list = name,
            rows = entries.len(),
            merge,
            "number list updated"
        );
        Ok(json!({"table": format!("lists.{name}"), "rows": entries.len()}))
    }
}

/// A CSV lookup table's shape (as `ivr/lookup.rs` reads it).
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    /// Trailing columns that may be left out.
    optional: usize,
    /// Whether the key (first column) may start with `+`.
    plus: bool,
    /// What a key must be, for the error.
    key_rule: &'static str,
}

const TABLES: [Table; 3] = [
    Table {
        name: "products",
        columns: &["code", "region", "product"],
        optional: 1,
        plus: false,
        key_rule: "digits a caller can key",
    },
    Table {
        name: "regions",
        columns: &["prefix", "region"],
        optional: 0,
        plus: true,
        key_rule: "digits (a leading + allowed)",
    },
    Table {
        name: "orders",
        columns: &["order", "status"],
        optional: 0,
        plus: false,
        key_rule: "digits a caller can key",
    },
];

impl Table {
    /// Rows as sent, checked: every problem names the row's index.
    fn rows(&self, rows: &[Value]) -> Result<Vec<Vec<String>>, String> {
        let required = self.columns.len() - self.optional;
        let mut out: Vec<Vec<String>> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Value::Object(m) = r else {
                return Err(format!(
                    "rows[{i}]: must be an object with {}",
                    self.columns.join(", ")
                ));
            };
            if let Some(k) = m.keys().find(|k| !self.columns.contains(&k.as_str())) {
                return Err(format!(
                    "rows[{i}]: unknown column `{}`; the {} table has {}",
                    clip(k),
                    self.name,
                    self.columns.join(", ")
                ));
            }
            let mut fields = Vec::with_capacity(self.columns.len());
            for (j, col) in self.columns.iter().enumerate() {
                let v = match m.get(*col) {
                    None | Some(Value::Null) if j >= required => String::new(),
                    None | Some(Value::Null) => {
                        return Err(format!("rows[{i}]: `{col}` is missing"));
                    }
                    Some(Value::String(s)) => s.trim().to_string(),
                    Some(_) => return Err(format!("rows[{i}]: `{col}` must be a string")),
                };
                if v.is_empty() && j < required {
                    return Err(format!("rows[{i}]: `{col}` is empty"));
                }
                // The file has no quoting: these would split the row.
                if v.contains([',', '\n', '\r']) {
                    return Err(format!(
                        "rows[{i}]: `{col}` cannot contain a comma or a line break"
                    ));
                }
                fields.push(v);
            }
            let key = &fields[0];
            let digits = if self.plus {
                key.strip_prefix('+').unwrap_or(key)
            } else {
                key
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "rows[{i}]: {} `{}` must be {}",
                    self.columns[0],
                    clip(key),
                    self.key_rule
                ));
            }
            if let Some(j) = out.iter().position(|o| o[0] == *key) {
                return Err(format!(
                    "rows[{i}]: {} `{key}` appears twice (also rows[{j}])",
                    self.columns[0]
                ));
            }
            out.push(fields);
        }
        Ok(out)
    }

    /// The rows of a table file (header and comments skipped), each padded
    /// to every column.
    fn parse_file(&self, text: &str) -> Vec<Vec<String>> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .skip(1)
            .map(|l| {
                let mut f: Vec<String> = l.split(',').map(|f| f.trim().to_string()).collect();
                f.resize(self.columns.len(), String::new());
                f
            })
            .collect()
    }

    fn to_csv(&self, rows: &[Vec<String>]) -> String {
        let mut out = format!(
            "# {} table, written by callboxd for headquarters (lookup.update)\n{}\n",
            self.name,
            self.columns.join(",")
        );
        for r in rows {
            out.push_str(&r.join(","));
            out.push('\n');
        }
        out
    }
}

/// The arguments of a command, with errors that name the field.
struct Args<'a>(Option<&'a Map<String, Value>>);

impl<'a> Args<'a> {
    fn new(v: &'a Value) -> Result<Args<'a>, String> {
        match v {
            Value::Null => Ok(Args(None)),
            Value::Object(m) => Ok(Args(Some(m))),
            _ => Err("`args` must be an object".into()),
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.and_then(|m| m.get(k)).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Result<&'a str, String> {
        self.str_opt(k)?.ok_or_else(|| format!("`{k}` is missing"))
    }

    fn str_opt(&self, k: &str) -> Result<Option<&'a str>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    }

    fn u64(&self, k: &str) -> Result<u64, String> {
        self.u64_opt(k)?.ok_or_else(|| format!("`{k}` is missing"))
    }

    fn u64_opt(&self, k: &str) -> Result<Option<u64>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a whole number, 0 or more")),
        }
    }

    fn bool_opt(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("`{k}` must be true or false")),
        }
    }

    fn array(&self, k: &str) -> Result<&'a [Value], String> {
        match self.get(k) {
            None => Err(format!("`{k}` is missing")),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(format!("`{k}` must be an array")),
        }
    }

    fn object_opt(&self, k: &str) -> Result<Option<&'a Map<String, Value>>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(format!("`{k}` must be an object")),
        }
    }
}

/// At most 64 characters of something a sender wrote, for an error.
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len(), |j| j.len())
}

/// The top-level sections whose TOML differs, in [`SECTIONS`] order.
fn sections_changed(old: &str, new: &str) -> Vec<&'static str> {
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (a, b) = (parse(old), parse(new));
    SECTIONS
        .into_iter()
        .filter(|s| a.get(*s) != b.get(*s))
        .collect()
}

/// Why `new` cannot replace `old` while the box runs (empty: it can).
fn restart_reasons(old: &SiteConfig, new: &SiteConfig, changed: &[&str]) -> Vec<String> {
    let mut why: Vec<String> = [
        ("line", "[[line]]"),
        ("hal", "[hal]"),
        ("storage", "[storage]"),
        ("uplink", "[uplink]"),
    ]
    .into_iter()
    .filter(|(s, _)| changed.contains(s))
    .map(|(_, what)| format!("changing {what} needs a restart"))
    .collect();
    if old.site_id != new.site_id {
        why.push("changing [site] id needs a restart".into());
    }
    // The ACD actor and the lines' access to it are set up at start.
    if old.acd.is_some() != new.acd.is_some() {
        why.push("adding or removing [acd] needs a restart".into());
    }
    why
}

/// The directory relative paths in the config resolve against (as
/// [`TomlSource::base_dir`]).
fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The file `[ivr.lookups] <table>` names, as written.
fn lookup_file(text: &str, table: &str) -> Option<String> {
    let doc = text.parse::<toml::Table>().ok()?;
    doc.get("ivr")?
        .get("lookups")?
        .get(table)?
        .as_str()
        .map(str::to_string)
}

/// Where the array of `[ivr.lists] <name>` is in the text, and its entries.
fn list_in(text: &str, name: &str) -> Option<(std::ops::Range<usize>, Vec<String>)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let DeValue::Table(ivr) = doc.get_ref().get("ivr")?.get_ref() else {
        return None;
    };
    let DeValue::Table(lists) = ivr.get("lists")?.get_ref() else {
        return None;
    };
    let list = lists.get(name)?;
    let DeValue::Array(items) = list.get_ref() else {
        return None;
    };
    let entries = items
        .iter()
        .filter_map(|v| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    Some((list.span(), entries))
}

/// A TOML array of strings: on one line when short, one entry a line
/// otherwise.
fn toml_array(entries: &[String]) -> String {
    let quoted: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    let one_line = format!("[{}]", quoted.join(", "));
    if one_line.len() <= 80 {
        return one_line;
    }
    let mut out = String::from("[\n");
    for q in quoted {
        out.push_str("    ");
        out.push_str(&q);
        out.push_str(",\n");
    }
    out.push(']');
    out
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes a new running config, keeping the previous one as `<file>.prev`.
fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    // No change without a copy of the running file to roll back to: an
    // older `.prev` left by an earlier change would be the wrong one.
    let old = std::fs::read(path)?;
    write_atomic(&with_suffix(path, ".prev"), &old, None)?;
    write_atomic(path, text.as_bytes(), None)
}

/// Puts `<file>.prev` back as the running config.
fn restore_config(path: &Path) -> std::io::Result<()> {
    let prev = std::fs::read(with_suffix(path, ".prev"))?;
    write_atomic(path, &prev, None)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionFile {
    version: u64,
    sha256: String,
}

/// The version headquarters gave the running config and the checksum it
/// had; `(0, None)` when it never set one.
fn read_version(data_dir: &Path) -> (u64, Option<String>) {
    let path = data_dir.join(VERSION_FILE);
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
        Err(e) => {
            tracing::error!("{}: {e}; reporting config version 0", path.display());
            (0, None)
        }
        Ok(b) => match serde_json::from_slice::<VersionFile>(&b) {
            Ok(v) => (v.version, Some(v.sha256)),
            Err(e) => {
                tracing::error!("{}: {e}; reporting config version 0", path.display());
                (0, None)
            }
        },
    }
}

fn write_version(data_dir: &Path, version: u64, sha256: &str) -> std::io::Result<()> {
    let v = VersionFile {
        version,
        sha256: sha256.to_string(),
    };
    let bytes = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    write_atomic(&data_dir.join(VERSION_FILE), &bytes, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{self, IdleSignal, RunError, RunOptions};
    use crate::clock::Clock;
    use crate::store::{CallRecord, RecordQuery, read_records};
    use callbox_hal::sim::{Scenario, SimControl, SimStats};

    /// Two trunks, a desk with Alice logged in, a greeting, and an IVR
    /// whose routes reach a hangup, a queue and an order-status lookup.
    const SITE: &str = r#"[site]
id = "branch-1"

[[line]]
id = "trunk-1"
kind = "trunk"

[[line]]
id = "trunk-2"
kind = "trunk"

[[line]]
id = "desk-1"
kind = "station"

[inbound]
greeting = "long.wav"

[ivr]
start = "main"

[ivr.lists]
vip = ["1380000000X"]

[[ivr.route]]
dialled = ["4002"]
start = "sales"

[[ivr.route]]
dialled = ["4003"]
start = "order"

[ivr.lookups]
orders = "orders.csv"

[ivr.node.main]
type = "hangup"
prompt = "short.wav"
outcome = "done"

[ivr.node.sales]
type = "queue"
on_overflow = "main"

[ivr.node.order]
type = "collect"
var = "order_no"
prompt = "short.wav"
min = 4
max = 4
next = "order-status"

[ivr.node.order-status]
type = "order_status"
var = "order_no"
statuses = { shipped = "short.wav", pending = "short.wav" }
next = "main"

[acd.agent.alice]
station = "desk-1"
logged_in = true

[acd.queue.sales]
members = { alice = 0 }
"#;

    /// Greeting of 4 s, then the 1 s goodbye: a call to 4001 lasts 5 s.
    const LONG_MS: i64 = 5000;
    /// The greeting of 2 s a config change brings: 3 s in all.
    const MID_MS: i64 = 3000;

    /// The daemon running [`SITE`] in virtual time on the sim backend.
    struct Site {
        _dir: tempfile::TempDir,
        path: PathBuf,
        data: PathBuf,
        commands: Arc<dyn CommandHandler>,
        shutdown: CancellationToken,
        run: tokio::task::JoinHandle<Result<(), RunError>>,
        control: SimControl,
    }

    fn tone(path: &Path, ms: usize) {
        let samples: Vec<i16> = (0..ms * 8)
            .map(|i| if i % 16 < 8 { 3000 } else { -3000 })
            .collect();
        callbox_hal::wav::write_pcm16_mono(path, 8000, &samples).unwrap();
    }

    /// Starts the box; with `until_idle` it stops by itself once the
    /// scenario is over.
    async fn start(scenario: &str, until_idle: bool) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let prompts = dir.path().join("prompts");
        std::fs::create_dir(&prompts).unwrap();
        tone(&prompts.join("long.wav"), 4000);
        tone(&prompts.join("mid.wav"), 2000);
        tone(&prompts.join("short.wav"), 1000);
        std::fs::write(
            dir.path().join("orders.csv"),
            "order,status\n1001,pending\n",
        )
        .unwrap();
        let path = dir.path().join("site.toml");
        std::fs::write(&path, SITE).unwrap();
        let data = dir.path().join("data");
        let config = SiteConfig::load(&path).unwrap();
        let scenario = Scenario::from_source(
            &TomlSource::new(&dir.path().join("calls.toml"), scenario.to_string()),
            &config.lines,
        )
        .unwrap();
        let hal = callbox_hal::registry::open(
            "sim",
            callbox_hal::registry::BackendArgs {
                lines: config.lines.clone(),
                scenario: Some(scenario),
                board: None,
            },
        )
        .unwrap();
        let control = hal.sim_control().unwrap();
        let idle: Option<IdleSignal> = until_idle.then(|| {
            let mut c = control.clone();
            Box::pin(async move { c.finished().await }) as IdleSignal
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = RunOptions {
            data_dir: data.clone(),
            clock: Clock::new(true),
            until_idle: idle,
            commands: Some(tx),
        };
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(app::run(Arc::new(config), hal, opts, shutdown.clone()));
        let commands = rx.await.unwrap();
        Site {
            _dir: dir,
            path,
            data,
            commands,
            shutdown,
            run,
            control,
        }
    }

    impl Site {
        async fn cmd(&self, cmd: &str, args: Value) -> Result<Value, String> {
            self.commands.handle(cmd, args).await
        }

        fn file(&self) -> String {
            std::fs::read_to_string(&self.path).unwrap()
        }

        /// Waits (in the box's time) until `n` calls were answered.
        async fn answered(&self, n: u64) {
            while SimStats::get(&self.control.stats().calls_answered) < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }

        /// Waits for the run to end by itself (`until_idle`, a restart).
        async fn ended(self) -> Vec<CallRecord> {
            // No timeout: in paused time it would fire while the store's
            // thread (not a timer) finishes.
            self.run.await.unwrap().unwrap();
            read_records(&self.data, &RecordQuery::default()).unwrap()
        }

        async fn stop(self) -> Vec<CallRecord> {
            self.shutdown.cancel();
            self.ended().await
        }
    }

    fn by_caller<'a>(records: &'a [CallRecord], caller: &str) -> &'a CallRecord {
        records
            .iter()
            .find(|r| r.caller.as_deref() == Some(caller))
            .unwrap_or_else(|| panic!("no call from {caller} in {records:#?}"))
    }

    fn near(got: Option<i64>, want: i64) -> bool {
        got.is_some_and(|g| (g - want).abs() <= 300)
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_config_reaches_new_calls_while_a_call_in_progress_keeps_its_own() {
        let site = start(
            r#"
[[call]]
at = "1s"
from = "13800000001"
to = "4001"

[[call]]
at = "20s"
from = "13800000002"
to = "4001"
"#,
            true,
        )
        .await;
        site.answered(1).await;

        // A config with a mistake: check-config's lines, nothing changes.
        let bad = SITE.replace("greeting = \"long.wav\"", "greeting = \"nope.wav\"");
        let e = site
            .cmd("config.set", json!({"version": 1, "toml": bad}))
            .await
            .unwrap_err();
        let expected = SiteConfig::from_source(&TomlSource::new(&site.path, bad.clone()))
            .unwrap_err()
            .to_string();
        assert_eq!(e, expected);
        let line = bad.lines().position(|l| l.contains("nope.wav")).unwrap() + 1;
        assert!(
            e.starts_with(&format!(
                "{}:{line}:12: prompt file `nope.wav` not found",
                site.path.display()
            )),
            "{e}"
        );
        assert_eq!(site.file(), SITE);
        assert_eq!(site.commands.reported_config()["version"], 0);

        let good = SITE.replace("long.wav", "mid.wav");
        let r = site
            .cmd("config.set", json!({"version": 3, "toml": good}))
            .await
            .unwrap();
        assert_eq!(r, json!({"version": 3, "applied": ["inbound"]}));
        let e = site
            .cmd("config.set", json!({"version": 3, "toml": good}))
            .await
            .unwrap_err();
        assert_eq!(e, "version 3 is not above the running version 3");

        let sha = sha256_hex(good.as_bytes());
        let got = site.cmd("config.get", Value::Null).await.unwrap();
        assert_eq!(got, json!({"version": 3, "sha256": sha, "toml": good}));
        assert_eq!(
            site.commands.reported_config(),
            json!({"version": 3, "sha256": sha})
        );
        assert_eq!(site.file(), good);
        let prev = std::fs::read_to_string(with_suffix(&site.path, ".prev")).unwrap();
        assert_eq!(prev, SITE);
        assert_eq!(read_version(&site.data), (3, Some(sha)));

        let records = site.ended().await;
        let before = by_caller(&records, "13800000001");
        assert_eq!(before.hangup_side.as_deref(), Some("box"), "{before:#?}");
        assert!(near(before.duration_ms, LONG_MS), "{before:#?}");
        let after = by_caller(&records, "13800000002");
        assert!(near(after.duration_ms, MID_MS), "{after:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_that_fails_half_way_puts_the_previous_config_back() {
        let site = start(
            "[[call]]\nat = \"5s\"\nfrom = \"13800000001\"\nto = \"4001\"\n",
            true,
        )
        .await;
        // The version cannot be recorded: the last step fails.
        std::fs::create_dir_all(site.data.join(VERSION_FILE)).unwrap();
        let good = SITE.replace("long.wav", "mid.wav");
        let e = site
            .cmd("config.set", json!({"version": 1, "toml": good}))
            .await
            .unwrap_err();
        assert!(e.starts_with("recording the config version"), "{e}");
        assert!(e.ends_with("the previous config is back in force"), "{e}");
        assert_eq!(site.file(), SITE);
        let got = site.cmd("config.get", Value::Null).await.unwrap();
        assert_eq!(
            (got["version"].as_u64(), got["toml"].as_str()),
            (Some(0), Some(SITE))
        );

        let records = site.ended().await;
        let call = by_caller(&records, "13800000001");
        assert!(near(call.duration_ms, LONG_MS), "old greeting: {call:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn lines_and_the_site_id_need_a_restart_which_the_box_then_does() {
        let site = start("", false).await;
        let more_lines = SITE.replacen(
            "[[line]]",
            "[[line]]\nid = \"trunk-3\"\nkind = \"trunk\"\n\n[[line]]",
            1,
        );
        let e = site
            .cmd("config.set", json!({"version": 1, "toml": more_lines}))
            .await
            .unwrap_err();
        assert!(
            e.starts_with(
                "changing [[line]] needs a restart: send it again with \"restart\": true"
            ),
            "{e}"
        );
        let renamed = SITE.replace("branch-1", "branch-9");
        let e = site
            .cmd("config.set", json!({"version": 1, "toml": renamed}))
            .await
            .unwrap_err();
        assert!(e.starts_with("changing [site] id needs a restart"), "{e}");
        assert_eq!(site.file(), SITE);

        let r = site
            .cmd(
                "config.set",
                json!({"version": 1, "toml": more_lines, "restart": true}),
            )
            .await
            .unwrap();
        assert_eq!(
            r,
            json!({"version": 1, "applied": ["line"], "restarting": true})
        );
        assert_eq!(site.file(), more_lines);
        assert_eq!(site.commands.reported_config()["version"], 1);
        // The answer comes first; the box then stops by itself.
        assert!(!site.run.is_finished());
        site.ended().await;
    }

    #[tokio::test(start_paused = true)]
    async fn restart_answers_then_stops_the_daemon_cleanly() {
        let site = start("", false).await;
        let r = site.cmd("restart", Value::Null).await.unwrap();
        assert_eq!(r, json!({"restarting": true}));
        assert!(!site.run.is_finished());
        site.ended().await;
    }

    #[tokio::test(start_paused = true)]
    async fn removing_an_agent_on_a_call_is_refused_and_nothing_changes() {
        let site = start(
            r#"
[[agent]]
name = "alice"
line = "desk-1"
answer_after = "1s"
talk = "30s"

[[call]]
at = "1s"
from = "13800000001"
to = "4002"
"#,
            false,
        )
        .await;
        while SimStats::get(&site.control.stats().stations_answered) < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let without_alice = SITE
            .replace(
                "[acd.agent.alice]\nstation = \"desk-1\"\nlogged_in = true\n",
                "[acd.agent.bob]\nstation = \"desk-1\"\n",
            )
            .replace("members = { alice = 0 }", "members = { bob = 0 }");
        let e = site
            .cmd("config.set", json!({"version": 1, "toml": without_alice}))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("[acd] cannot change now: agent `alice` is on a call"),
            "{e}"
        );
        assert!(e.ends_with("the previous config is back in force"), "{e}");
        assert_eq!(site.file(), SITE);
        assert_eq!(site.commands.reported_config()["version"], 0);
        // A change that keeps her is fine while she talks.
        let r = site
            .cmd(
                "config.set",
                json!({"version": 1, "toml": SITE.replace("members = { alice = 0 }", "members = { alice = 0 }\nring_timeout = \"25s\"")}),
            )
            .await
            .unwrap();
        assert_eq!(r, json!({"version": 1, "applied": ["acd"]}));
        // The call goes on with Alice.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let records = site.stop().await;
        let call = by_caller(&records, "13800000001");
        assert_eq!(call.agent.as_deref(), Some("alice"), "{call:#?}");
    }

    #[tokio::test(start_paused = true)]
    async fn agent_commands_answer_the_new_state_and_name_what_is_wrong() {
        let site = start("", false).await;
        let agent = |args: Value| site.cmd("agent", args);
        let r = agent(json!({"action": "pause", "agent": "alice", "reason": "lunch"}))
            .await
            .unwrap();
        assert_eq!(
            (&r["agent"], &r["state"], &r["station"], &r["reason"]),
            (
                &json!("alice"),
                &json!("paused"),
                &json!("desk-1"),
                &json!("lunch")
            )
        );
        let r = agent(json!({"action": "unpause", "agent": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            (&r["state"], &r["reason"]),
            (&json!("available"), &Value::Null)
        );
        let r = agent(json!({"action": "logout", "agent": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            (&r["state"], &r["station"]),
            (&json!("logged_out"), &Value::Null)
        );
        // Without a station: the agent's home desk.
        let r = agent(json!({"action": "login", "agent": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            (&r["state"], &r["station"]),
            (&json!("available"), &json!("desk-1"))
        );

        let bad = [
            (json!({"action": "pause", "agent": "bob"}), "no agent `bob`"),
            (
                json!({"action": "dance", "agent": "alice"}),
                "`action` must be login, logout, pause or unpause, not `dance`",
            ),
            (
                json!({"action": "pause", "agent": 5}),
                "`agent` must be a string",
            ),
            (json!({"agent": "alice"}), "`action` is missing"),
            (
                json!({"action": "login", "agent": "alice", "station": "desk-9"}),
                "no station `desk-9`",
            ),
            (json!(["pause"]), "`args` must be an object"),
        ];
        for (args, want) in bad {
            assert_eq!(agent(args.clone()).await.unwrap_err(), want, "{args}");
        }
        site.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_commands_and_wrong_types_are_refused_by_name() {
        let site = start("", false).await;
        let cases = [
            (
                "reboot",
                Value::Null,
                "unknown command `reboot`; known: status, config.get, config.set, agent, originate, lookup.update, logs, restart",
            ),
            (
                "config.set",
                json!({"version": "2", "toml": SITE}),
                "`version` must be a whole number, 0 or more",
            ),
            (
                "config.set",
                json!({"version": -1, "toml": SITE}),
                "`version` must be a whole number, 0 or more",
            ),
            ("config.set", json!({"version": 2}), "`toml` is missing"),
            (
                "config.set",
                json!({"version": 2, "toml": SITE, "restart": "yes"}),
                "`restart` must be true or false",
            ),
            (
                "logs",
                json!({"lines": "all"}),
                "`lines` must be a whole number, 0 or more",
            ),
            (
                "originate",
                json!({"node": "nope", "number": "123"}),
                "no IVR node `nope`",
            ),
            (
                "originate",
                json!({"node": "main", "number": "12x"}),
                "`number` `12x` is not a number that can be dialled (1-32 of 0-9 * # A-D)",
            ),
            (
                "originate",
                json!({"node": "main", "number": "123", "vars": {"a": 1}}),
                "`vars.a` must be a string",
            ),
            (
                "originate",
                json!({"node": "main", "number": "123", "vars": []}),
                "`vars` must be an object",
            ),
            (
                "lookup.update",
                json!({"table": "orders", "rows": []}),
                "`mode` is missing",
            ),
            (
                "lookup.update",
                json!({"table": "orders", "mode": "append", "rows": []}),
                "`mode` must be \"replace\" or \"merge\", not `append`",
            ),
            (
                "lookup.update",
                json!({"table": "orders", "mode": "merge", "rows": {}}),
                "`rows` must be an array",
            ),
        ];
        for (cmd, args, want) in cases {
            assert_eq!(
                site.cmd(cmd, args.clone()).await.unwrap_err(),
                want,
                "{cmd} {args}"
            );
        }
        // Nothing above changed the config.
        assert_eq!(site.file(), SITE);
        assert_eq!(site.commands.reported_config()["version"], 0);
        site.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn logs_answer_the_newest_lines_up_to_the_bound() {
        let site = start("", false).await;
        let ring = crate::logging::ring();
        for i in 0..2100 {
            ring.push(format!("test line {i}"));
        }
        let lines = |v: Value| v["lines"].as_array().unwrap().clone();
        let r = site.cmd("logs", Value::Null).await.unwrap();
        assert_eq!(lines(r).len(), 200);
        let r = site.cmd("logs", json!({"lines": 3})).await.unwrap();
        assert_eq!(
            lines(r),
            [
                json!("test line 2097"),
                json!("test line 2098"),
                json!("test line 2099")
            ]
        );
        let r = site.cmd("logs", json!({"lines": 100000})).await.unwrap();
        let all = lines(r);
        assert!(all.len() <= 2000, "{}", all.len());
        assert_eq!(all.last(), Some(&json!("test line 2099")));
        // Within one message (120 KiB without an [uplink]).
        assert!(json!({"lines": all}).to_string().len() <= DEFAULT_MAX_MESSAGE);
        site.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn originate_answers_the_call_id_and_the_call_runs_the_flow() {
        let site = start(
            "[[callee]]\nnumber = \"13500000000\"\nanswer_after = \"2s\"\n",
            false,
        )
        .await;
        let r = site
            .cmd(
                "originate",
                json!({"node": "main", "number": "13500000000", "vars": {"order": "1001"}}),
            )
            .await
            .unwrap();
        let id = r["call_id"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let records = site.stop().await;
        let call = records
            .iter()
            .find(|c| c.id == id)
            .expect("the call's record");
        assert_eq!(
            (
                call.direction.as_str(),
                call.dialled.as_deref(),
                call.disposition.as_str()
            ),
            ("outbound", Some("13500000000"), "answered"),
            "{call:#?}"
        );
        assert_eq!(call.outcome.as_deref(), Some("done"), "{call:#?}");
        assert_eq!(call.job, None);
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_update_replaces_merges_and_a_bad_row_changes_nothing() {
        let site = start(
            r#"
[[call]]
at = "30s"
from = "13800000001"
to = "4003"
script = [{ wait = "6s" }, { press = "1001", via = "signal" }]
"#,
            true,
        )
        .await;
        let orders = site.path.with_file_name("orders.csv");
        let upd = |table: &str, mode: &str, rows: Value| {
            site.cmd(
                "lookup.update",
                json!({"table": table, "mode": mode, "rows": rows}),
            )
        };
        let r = upd(
            "orders",
            "replace",
            json!([{"order": "1001", "status": "pending"}, {"order": "1002", "status": "pending"}]),
        )
        .await
        .unwrap();
        assert_eq!(r, json!({"table": "orders", "rows": 2}));
        let r = upd(
            "orders",
            "merge",
            json!([{"order": "1001", "status": "shipped"}]),
        )
        .await
        .unwrap();
        assert_eq!(r, json!({"table": "orders", "rows": 2}));
        let table = std::fs::read_to_string(&orders).unwrap();
        assert!(
            table.ends_with("order,status\n1001,shipped\n1002,pending\n"),
            "{table}"
        );

        let bad = [
            (
                json!([{"order": "1003", "status": "pending"}, {"order": "10a", "status": "shipped"}]),
                "rows[1]: order `10a` must be digits a caller can key".to_string(),
            ),
            (
                json!([{"order": "1003"}]),
                "rows[0]: `status` is missing".into(),
            ),
            (
                json!([{"order": "1003", "status": 7}]),
                "rows[0]: `status` must be a string".into(),
            ),
            (
                json!([{"order": "1003", "status": "ok", "eta": "x"}]),
                "rows[0]: unknown column `eta`; the orders table has order, status".into(),
            ),
            (
                json!([{"order": "1003", "status": "a,b"}]),
                "rows[0]: `status` cannot contain a comma or a line break".into(),
            ),
            (
                json!([{"order": "1003", "status": "ok"}, {"order": "1003", "status": "ok"}]),
                "rows[1]: order `1003` appears twice (also rows[0])".into(),
            ),
        ];
        for (rows, want) in bad {
            assert_eq!(
                upd("orders", "merge", rows.clone()).await.unwrap_err(),
                want,
                "{rows}"
            );
        }
        // A status the flow has no prompt for: the whole config is checked.
        let e = upd(
            "orders",
            "merge",
            json!([{"order": "1003", "status": "lost"}]),
        )
        .await
        .unwrap_err();
        assert!(
            e.contains("order status `lost` (orders table line 5) has no entry here"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(&orders).unwrap(),
            table,
            "nothing changed"
        );
        let e = upd("products", "merge", json!([])).await.unwrap_err();
        assert!(e.starts_with("the config names no `products` table"), "{e}");
        let e = upd("colours", "merge", json!([])).await.unwrap_err();
        assert!(e.starts_with("no lookup table `colours`"), "{e}");

        // A number list lives in the config itself.
        let r = upd("lists.vip", "merge", json!(["13900000001", "1380000000X"]))
            .await
            .unwrap();
        assert_eq!(r, json!({"table": "lists.vip", "rows": 2}));
        let text = site.file();
        assert!(
            text.contains("vip = [\"1380000000X\", \"13900000001\"]\n"),
            "{text}"
        );
        assert_eq!(
            text.replace(", \"13900000001\"", ""),
            SITE,
            "the rest is kept"
        );
        let reported = site.commands.reported_config();
        assert_eq!(
            reported,
            json!({"version": 0, "sha256": sha256_hex(text.as_bytes())})
        );
        let e = upd("lists.vip", "replace", json!(["13(9"]))
            .await
            .unwrap_err();
        assert!(e.starts_with("rows[0]: "), "{e}");
        let e = upd("lists.gold", "merge", json!(["1"])).await.unwrap_err();
        assert!(e.starts_with("no list `gold` under [ivr.lists]"), "{e}");
        assert_eq!(site.file(), text);

        // The call after the update hears the new status.
        let records = site.ended().await;
        let call = by_caller(&records, "13800000001");
        assert!(
            call.ivr_path.iter().any(|p| p == "order_status=shipped"),
            "{call:#?}"
        );
    }
}
