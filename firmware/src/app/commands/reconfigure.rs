//! The daemon's command actor: it owns the config in force and the
//! daemon's handles, on the daemon's runtime, and runs one command at a
//! time. A config change is checked as `callboxd check-config` checks it,
//! written over the running file (the previous one kept), put in force for
//! new calls, and undone — file and config — if any step fails; what cannot
//! change while the box runs needs a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use callbox_hal::diag::TomlSource;
use callbox_hal::{Line, LineKind};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::args::{Args, clip};
use super::campaigns::CampaignDesk;
use super::error::{CommandError, not_put_back};
use super::files::{
    base_dir, read_version, restart_reasons, restore_config, sections_changed, write_config,
    write_version,
};
use super::tables::{RowError, TABLES, bad_row, list_in, lookup_file, toml_array};
use crate::acd::AcdConfig;
use crate::calls::campaign::Dialer;
use crate::calls::{CallContext, Switch};
use crate::config::SiteConfig;
use crate::fsutil::{sha256_hex, write_atomic};
use crate::ivr::pattern::Pattern;
use crate::recorder::config::RecordingConfig;

/// A command for the actor, with where its answer goes.
#[derive(Debug)]
pub(super) struct Request {
    /// The command's name.
    pub(super) cmd: String,
    /// Its arguments (an object, already checked to be one).
    pub(super) args: Value,
    /// The answer.
    pub(super) reply: oneshot::Sender<Result<Value, CommandError>>,
}

/// What commands reach in the running daemon. The actor lets go of it
/// when the daemon stops: it holds handles whose drop lets the panel and
/// the store finish.
pub(super) struct Daemon<L> {
    pub(super) ctx: CallContext,
    pub(super) sw: Switch<L>,
    pub(super) jobs: TaskTracker,
    /// Trunks an originated call may dial on, in file order.
    pub(super) trunks: Vec<String>,
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

/// The actor.
pub(super) struct Reconfigure<L> {
    pub(super) daemon: Daemon<L>,
    running: Running,
    config_path: PathBuf,
    data_dir: PathBuf,
    /// What [`super::Commands::reported_config`] shows.
    reported: watch::Sender<(u64, String)>,
    /// The campaigns the dialer runs, and those pushed from headquarters.
    pub(super) campaigns: CampaignDesk,
}

impl<L> Reconfigure<L>
where
    L: Line,
{
    pub(super) fn new(
        config: Arc<SiteConfig>,
        data_dir: &Path,
        ctx: CallContext,
        sw: Switch<L>,
        jobs: TaskTracker,
        dialer: Dialer,
    ) -> (Self, watch::Receiver<(u64, String)>) {
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
        let (reported, seen) = watch::channel((version, sha256.clone()));
        let campaigns = CampaignDesk {
            dialer,
            store: crate::calls::campaign::pushed::Store::new(data_dir),
            ivr: ctx.live.current().ivr.clone(),
        };
        campaigns.apply(&config);
        let actor = Reconfigure {
            daemon: Daemon {
                ctx,
                sw,
                jobs,
                trunks,
            },
            running: Running {
                config: config.clone(),
                text,
                version,
                sha256,
                jobs: started,
            },
            config_path: config.path.clone(),
            data_dir: data_dir.to_path_buf(),
            reported,
            campaigns,
        };
        (actor, seen)
    }

    /// Answers requests one at a time until the daemon stops or the
    /// handler is gone; the daemon's handles go with it.
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        shutdown: CancellationToken,
    ) {
        loop {
            let req = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            let answer = self.handle(&req.cmd, &req.args).await;
            let _ = req.reply.send(answer);
        }
    }

    async fn handle(&mut self, cmd: &str, args: &Value) -> Result<Value, CommandError> {
        let args = Args::new(args)?;
        match cmd {
            "config.get" => self.config_get(&args),
            "config.set" => self.config_set(&args).await,
            "config.history" => Ok(json!({"versions": super::files::history(&self.data_dir)})),
            "agent" => self.agent(&args).await,
            "acd.reset_stats" => {
                let acd = self.daemon.sw.acd.as_ref().ok_or(CommandError::NoAcd)?;
                if acd.reset_stats().await {
                    Ok(json!({"reset": true}))
                } else {
                    Err(CommandError::Stopping)
                }
            }
            "originate" => self.originate(&args).await,
            "acd.monitor" => self.monitor(&args).await,
            "lookup.update" => self.lookup_update(&args).await,
            "campaign.push" => self.campaign_push(&args).await,
            other => Err(CommandError::NotTheDaemons { cmd: clip(other) }),
        }
    }

    /// The config in force.
    pub(super) fn running_config(&self) -> Arc<SiteConfig> {
        Arc::clone(&self.running.config)
    }

    fn report(&self) {
        let run = &self.running;
        self.reported
            .send_replace((run.version, run.sha256.clone()));
    }

    /// The running config, or with `version` an earlier one from the
    /// history.
    fn config_get(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        let run = &self.running;
        match args.u64_opt("version")?.filter(|v| *v != run.version) {
            None => Ok(json!({"version": run.version, "sha256": run.sha256, "toml": run.text})),
            Some(v) => match super::files::from_history(&self.data_dir, v) {
                Some(text) => {
                    Ok(json!({"version": v, "sha256": sha256_hex(text.as_bytes()), "toml": text}))
                }
                None => Err(CommandError::NoSuchVersion { version: v }),
            },
        }
    }

    async fn config_set(&mut self, args: &Args<'_>) -> Result<Value, CommandError> {
        let text = args.str("toml")?;
        if args.bool_opt("check")?.unwrap_or(false) {
            // Only checked, as check-config would: nothing written.
            let new = self.check(text.to_string()).await?;
            let applied = sections_changed(&self.running.text, text);
            let needs = restart_reasons(&self.running.config, &new, &applied);
            return Ok(json!({"checked": true, "would_apply": applied, "needs_restart": needs}));
        }
        let version = args.u64("version")?;
        let restart = args.bool_opt("restart")?.unwrap_or(false);
        if version <= self.running.version {
            return Err(CommandError::StaleVersion {
                version,
                running: self.running.version,
            });
        }
        let done = self.change(text.to_string(), version, restart).await?;
        let mut result = json!({"version": version, "applied": done.applied});
        if done.restarting {
            result["restarting"] = json!(true);
        }
        Ok(result)
    }

    /// Checks `text`, writes it over the running config and puts it in
    /// force (or restarts with it), recording `version`.
    async fn change(
        &mut self,
        text: String,
        version: u64,
        restart: bool,
    ) -> Result<Changed, CommandError> {
        let new = self.check(text.clone()).await?;
        let applied = sections_changed(&self.running.text, &text);
        let needs = restart_reasons(&self.running.config, &new, &applied);
        if !needs.is_empty() && !restart {
            return Err(CommandError::NeedsRestart { reasons: needs });
        }
        let sha256 = sha256_hex(text.as_bytes());
        write_config(&self.config_path, &text).map_err(|source| CommandError::Write {
            path: self.config_path.clone(),
            source,
        })?;
        if !needs.is_empty() {
            if let Err(e) = write_version(&self.data_dir, version, &sha256) {
                let _ = restore_config(&self.config_path);
                return Err(CommandError::NothingChanged(Box::new(
                    CommandError::RecordVersion(e),
                )));
            }
            self.running.version = version;
            self.running.sha256.clone_from(&sha256);
            self.report();
            super::files::keep_in_history(&self.data_dir, version, &text);
            // The command handler restarts the box once the answer is out.
            tracing::warn!(version, changed = ?applied, "{}; restarting", needs.join("; "));
            return Ok(Changed {
                applied,
                restarting: true,
            });
        }
        let mut undo = Undo::default();
        let old = self.running.config.clone();
        let result = async {
            self.apply(&old, &new, &applied, &mut undo).await?;
            write_version(&self.data_dir, version, &sha256).map_err(CommandError::RecordVersion)
        }
        .await;
        if let Err(e) = result {
            self.undo(undo).await;
            let restore = restore_config(&self.config_path).err();
            tracing::error!(
                "config version {version} not applied: {e}{}",
                not_put_back(&self.config_path, restore.as_ref())
            );
            return Err(CommandError::RolledBack {
                cause: Box::new(e),
                config: self.config_path.clone(),
                restore,
            });
        }
        self.start_new_jobs();
        super::files::keep_in_history(&self.data_dir, version, &text);
        let run = &mut self.running;
        run.config = Arc::new(new);
        run.text = text;
        run.version = version;
        run.sha256.clone_from(&sha256);
        self.report();
        if applied.contains(&"ivr") {
            self.campaigns.ivr = self.daemon.ctx.live.current().ivr.clone();
        }
        // Campaigns added start, removed ones stop, changed ones restart;
        // pushed ones are checked again against the new config.
        self.campaigns.apply(&self.running.config);
        tracing::info!(version, applied = ?applied, "config applied");
        Ok(Changed {
            applied,
            restarting: false,
        })
    }

    /// The site config in `text`, checked as `callboxd check-config` checks
    /// it: at the running file's path, so relative paths resolve alike and
    /// errors read `FILE:LINE:COL: message`.
    async fn check(&self, text: String) -> Result<SiteConfig, CommandError> {
        let path = self.config_path.clone();
        // Prompts and tables are read and decoded: off the runtime.
        let checked = tokio::task::spawn_blocking(move || {
            SiteConfig::from_source(&TomlSource::new(&path, text))
        })
        .await
        .map_err(CommandError::CheckFailed)?;
        Ok(checked?)
    }

    /// Puts `new` in force for everything that can change while calls go
    /// on; what it switched goes into `undo`. The ACD goes first: it is the
    /// only part that can refuse.
    async fn apply(
        &self,
        old: &SiteConfig,
        new: &SiteConfig,
        applied: &[&str],
        undo: &mut Undo,
    ) -> Result<(), CommandError> {
        let daemon = &self.daemon;
        if applied.contains(&"acd")
            && let (Some(acd), Some(cfg), Some(was)) = (&daemon.sw.acd, &new.acd, &old.acd)
        {
            acd.reconfigure(cfg.clone())
                .await
                .map_err(CommandError::AcdRefused)?;
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

    /// Puts back what [`Reconfigure::apply`] switched, last first.
    async fn undo(&self, undo: Undo) {
        let daemon = &self.daemon;
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
    fn start_new_jobs(&mut self) {
        let (daemon, started) = (&self.daemon, &mut self.running.jobs);
        let Some(ivr) = daemon.ctx.live.current().ivr.clone() else {
            return;
        };
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

    async fn lookup_update(&mut self, args: &Args<'_>) -> Result<Value, CommandError> {
        let table = args.str("table")?;
        let merge = match args.str("mode")? {
            "replace" => false,
            "merge" => true,
            other => {
                return Err(CommandError::BadMode { mode: clip(other) });
            }
        };
        let rows = args.array("rows")?;
        if let Some(list) = table.strip_prefix("lists.") {
            return self.update_list(list, merge, rows).await;
        }
        let Some(kind) = TABLES.iter().find(|t| t.name == table) else {
            return Err(CommandError::NoTable { table: clip(table) });
        };
        let new_rows = kind.rows(rows)?;
        let file = lookup_file(&self.running.text, kind.name)
            .map(|f| base_dir(&self.config_path).join(f))
            .ok_or_else(|| CommandError::TableNotInConfig {
                table: kind.name.to_string(),
            })?;
        let before = std::fs::read(&file).map_err(|source| CommandError::Read {
            path: file.clone(),
            source,
        })?;
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
        write_atomic(&file, kind.to_csv(&rows).as_bytes(), None).map_err(|source| {
            CommandError::Write {
                path: file.clone(),
                source,
            }
        })?;
        let put_back = |why: CommandError| {
            if let Err(source) = write_atomic(&file, &before, None) {
                tracing::error!("putting back {}: {source}", file.display());
                return CommandError::TableNotPutBack {
                    cause: Box::new(why),
                    source,
                };
            }
            why
        };
        // The whole config again, as check-config would: a table is only
        // good with the flows that read it.
        let new = match self.check(self.running.text.clone()).await {
            Ok(c) => c,
            Err(e) => return Err(put_back(e)),
        };
        let mut undo = Undo::default();
        let old = self.running.config.clone();
        if let Err(e) = self.apply(&old, &new, &[], &mut undo).await {
            self.undo(undo).await;
            return Err(put_back(e));
        }
        self.running.config = Arc::new(new);
        tracing::info!(table, rows = rows.len(), merge, "lookup table updated");
        Ok(json!({"table": table, "rows": rows.len()}))
    }

    /// A number list under `[ivr.lists]`: the list in the config text is
    /// rewritten, the rest of the file kept as it is.
    async fn update_list(
        &mut self,
        name: &str,
        merge: bool,
        rows: &[Value],
    ) -> Result<Value, CommandError> {
        let mut new: Vec<String> = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let Value::String(s) = r else {
                return Err(bad_row(i, RowError::NotAPattern));
            };
            let s = s.trim();
            Pattern::parse(s).map_err(|e| bad_row(i, e))?;
            if let Some(j) = new.iter().position(|o| o == s) {
                return Err(bad_row(
                    i,
                    RowError::EntryTwice {
                        entry: clip(s),
                        first: j,
                    },
                ));
            }
            new.push(s.to_string());
        }
        let (span, existing) = list_in(&self.running.text, name)
            .ok_or_else(|| CommandError::NoList { name: clip(name) })?;
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
        let mut text = self.running.text.clone();
        text.replace_range(span, &toml_array(&entries));
        let version = self.running.version;
        self.change(text, version, false).await?;
        tracing::info!(
            list = name,
            rows = entries.len(),
            merge,
            "number list updated"
        );
        Ok(json!({"table": format!("lists.{name}"), "rows": entries.len()}))
    }
}
