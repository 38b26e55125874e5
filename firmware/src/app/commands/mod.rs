//! Headquarters' commands (docs/mqtt.md, "Commands"): [`Commands`] is the
//! daemon's [`CommandHandler`].
//!
//! - `config.get`, `config.set`, `config.history`: the running site config
//!   and the version headquarters gave it (`config.set` with `check` only
//!   checks; each applied version is kept in [`files::HISTORY_DIR`]). A new config is checked exactly as `callboxd
//!   check-config` checks it, written atomically over the running file (the
//!   previous one kept as `<file>.prev`) and applied without dropping
//!   calls: a call keeps the config it started with, new calls get the new
//!   one (the IVR, greeting and inbound trunks through
//!   [`LiveConfig`](crate::calls::LiveConfig), the recording policy through
//!   [`Recorder::set_config`](crate::recorder::Recorder::set_config), agents
//!   and queues through [`AcdHandle::reconfigure`](crate::acd::AcdHandle::reconfigure);
//!   outbound jobs new in the config start, removed ones finish). What the
//!   box cannot change while running (`[[line]]`, `[hal]`, `[storage]`,
//!   `[uplink]`, `[console]`, the site id, adding or removing `[acd]`) needs
//!   `"restart": true`, and the box then restarts with it. A change that
//!   fails half-way is undone: the previous file and config are back.
//! - `lookup.update`: replaces or merges the rows of a lookup table (the
//!   CSV files under `[ivr.lookups]`, or a number list under `[ivr.lists]`
//!   in the config itself), checked and applied the same way.
//! - `agent`: login, logout, pause, unpause through the ACD;
//!   `acd.reset_stats`: its queue counters and agents' totals to zero.
//! - `originate`: one outbound IVR call, as an `[[outbound]]` job places it.
//! - `daynight`: the day/night switch's position (`auto`, `day`,
//!   `night`), set with `mode` or only reported without it.
//! - `logs`: the daemon's last log lines ([`crate::logging::LogRing`]).
//! - `restart`: answers, then stops the daemon cleanly; it exits 0 and the
//!   service manager starts it again.
//!
//! Commands that reach the running daemon (config, lookups, agents,
//! originate) are asked of one actor, [`reconfigure`], on the daemon's
//! runtime: it owns the config in force and the daemon's handles, runs
//! one command at a time and puts back what a failed change switched.
//! Commands that change the config run one at a time. The version and the
//! checksum of the running config are kept in [`VERSION_FILE`] in the data
//! directory (version 0: never configured remotely).

mod actions;
mod args;
mod campaigns;
mod error;
mod files;
mod reconfigure;
mod tables;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::Line;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{CallContext, Switch};
use crate::config::SiteConfig;
use crate::daynight::{DayNight, Mode};
use crate::logging::LogRing;
use crate::sync::{BoxFuture, CommandHandler};
use args::{Args, clip, json_len};
use reconfigure::{Reconfigure, Request};

pub use args::ArgError;
pub use error::CommandError;
pub use files::VERSION_FILE;
pub use tables::RowError;

/// `logs` without `lines`.
const LOGS_DEFAULT: u64 = 200;
/// `logs` at most.
const LOGS_MAX: u64 = 2000;
/// Time the fleet link gets to send the answer to `restart` before the
/// daemon starts stopping.
const RESTART_GRACE: Duration = Duration::from_millis(500);
/// Room kept in a message for the envelope around a result.
const ENVELOPE: usize = 1024;
/// `max_message` when the site has no `[uplink]` (docs/mqtt.md).
const DEFAULT_MAX_MESSAGE: usize = 120 * 1024;
/// Every command, for the answer to an unknown one.
const KNOWN: &str = "status, config.get, config.set, config.history, agent, acd.reset_stats, acd.monitor, originate, lookup.update, daynight, campaign, campaign.push, logs, restart";
/// Commands in flight to the daemon's actor.
const INBOX: usize = 8;

/// The daemon's command handler. It answers `logs` and `restart` itself
/// (on the runtime the command arrives on) and asks the daemon's
/// [`Reconfigure`] actor for everything else.
pub struct Commands {
    tx: mpsc::Sender<Request>,
    /// `(version, sha256)` of the running config, as the actor last set it.
    reported: watch::Receiver<(u64, String)>,
    shutdown: CancellationToken,
    logs: LogRing,
    daynight: DayNight,
    max_result: usize,
    campaigns: Option<crate::calls::campaign::Live>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

impl Commands {
    /// The handler for a daemon running `config` (as loaded from
    /// `config.path`). Call on the daemon's runtime: the actor, originated
    /// calls and new jobs run there, on `tracker`, until `ctx.shutdown`.
    pub fn new<L>(
        config: Arc<SiteConfig>,
        data_dir: &Path,
        ctx: CallContext,
        sw: Switch<L>,
        jobs: TaskTracker,
        dialer: crate::calls::campaign::Dialer,
        tracker: &TaskTracker,
    ) -> Commands
    where
        L: Line,
    {
        let max_message = config
            .uplink
            .as_ref()
            .map_or(DEFAULT_MAX_MESSAGE, |u| u.max_message);
        let shutdown = ctx.shutdown.clone();
        let daynight = ctx.daynight.clone();
        let (actor, reported) = Reconfigure::new(config, data_dir, ctx, sw, jobs, dialer);
        let (tx, rx) = mpsc::channel(INBOX);
        tracker.spawn(actor.run(rx, shutdown.clone()));
        Commands {
            tx,
            reported,
            shutdown,
            logs: crate::logging::ring().clone(),
            daynight,
            max_result: max_message.saturating_sub(ENVELOPE),
            campaigns: None,
        }
    }

    /// Answers `campaign` with these campaigns' controls and figures.
    pub fn with_campaigns(mut self, live: crate::calls::campaign::Live) -> Commands {
        self.campaigns = Some(live);
        self
    }

    /// `campaign`: `name` and an `action` (`pause`, `resume`, `stop`), or
    /// no `action` to ask where it stands.
    async fn campaign(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        use crate::calls::campaign::Control;
        let name = args.str("name")?;
        let Some(live) = self.campaigns.as_ref().filter(|l| l.knows(name)) else {
            return Err(CommandError::UnknownCampaign { name: clip(name) });
        };
        if let Some(action) = args.str_opt("action")? {
            let to = match action {
                "pause" => Control::Paused,
                "resume" => Control::Running,
                "stop" => Control::Stopped,
                other => {
                    return Err(CommandError::BadCampaignAction {
                        action: clip(other),
                    });
                }
            };
            live.set(name, to)
                .await
                .map_err(|e| CommandError::CampaignNotKept {
                    reason: e.to_string(),
                })?;
        }
        let stats = live.snapshot().remove(name).unwrap_or_default();
        Ok(stats.json(name, live.control(name)))
    }

    /// Asks the daemon's actor; once the daemon is stopping it is gone.
    async fn ask(&self, cmd: &str, args: Value) -> Result<Value, CommandError> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            cmd: cmd.to_string(),
            args,
            reply,
        };
        self.tx
            .send(req)
            .await
            .map_err(|_| CommandError::Stopping)?;
        rx.await.map_err(|_| CommandError::Stopping)?
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

    fn recent_logs(&self, args: &Args<'_>) -> Result<Value, CommandError> {
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

    /// `daynight`: moves the switch when `mode` is given; answers where it
    /// stands.
    async fn daynight(&self, args: &Args<'_>) -> Result<Value, CommandError> {
        let state = match args.str_opt("mode")? {
            None => self.daynight.state(),
            Some(m) => {
                let mode =
                    Mode::parse(m).ok_or_else(|| CommandError::BadDayNight { mode: clip(m) })?;
                self.daynight.set(mode, "command").await?
            }
        };
        Ok(json!({"mode": state.mode, "night": state.night}))
    }

    /// Runs one command.
    async fn run(&self, cmd: &str, args: Value) -> Result<Value, CommandError> {
        match cmd {
            "config.get" | "config.set" | "config.history" | "agent" | "acd.reset_stats"
            | "originate" | "acd.monitor" | "lookup.update" | "campaign.push" => {
                // Checked here too: a malformed command never reaches
                // the daemon.
                Args::new(&args)?;
                let result = self.ask(cmd, args).await?;
                if result.get("restarting") == Some(&Value::Bool(true)) {
                    self.restart_soon();
                }
                Ok(result)
            }
            "logs" => self.recent_logs(&Args::new(&args)?),
            "daynight" => self.daynight(&Args::new(&args)?).await,
            "campaign" => self.campaign(&Args::new(&args)?).await,
            "restart" => {
                Args::new(&args)?;
                self.restart_soon();
                Ok(json!({"restarting": true}))
            }
            "status" => Err(CommandError::StatusElsewhere),
            other => {
                Args::new(&args)?;
                Err(CommandError::Unknown { cmd: clip(other) })
            }
        }
    }
}

impl CommandHandler for Commands {
    /// The answer's error is the [`CommandError`]'s text: the one place it
    /// becomes a string, for the wire.
    fn handle<'a>(&'a self, cmd: &'a str, args: Value) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move { self.run(cmd, args).await.map_err(|e| e.to_string()) })
    }

    fn reported_config(&self) -> Value {
        let (version, sha256) = self.reported.borrow().clone();
        json!({"version": version, "sha256": sha256})
    }
}

#[cfg(test)]
mod tests {
    use super::files::{read_version, with_suffix};
    use super::*;
    use crate::app::{self, IdleSignal, RunError, RunOptions};
    use crate::clock::Clock;
    use crate::fsutil::sha256_hex;
    use crate::store::{CallRecord, RecordQuery, read_records};
    use callbox_hal::diag::TomlSource;
    use callbox_hal::sim::{Scenario, SimControl, SimStats};
    use std::path::PathBuf;

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
contacts = "contacts.csv"

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
        std::fs::write(dir.path().join("contacts.csv"), "number,name\n").unwrap();
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
                ..Default::default()
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
    async fn daynight_reports_sets_keeps_and_lights_the_switch() {
        use callbox_hal::io::BoxStatus;
        let site = start("", false).await;
        let asked = site.cmd("daynight", json!({})).await.unwrap();
        assert_eq!(asked, json!({"mode": "auto", "night": false}));
        // Ready, and the LED says so once the box is up.
        while site.control.leds().status != BoxStatus::Ready {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let set = site.cmd("daynight", json!({"mode": "night"})).await;
        assert_eq!(set.unwrap(), json!({"mode": "night", "night": true}));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(site.control.leds().status, BoxStatus::Night);
        assert_eq!(
            std::fs::read_to_string(site.data.join("daynight")).unwrap(),
            "night\n"
        );
        assert_eq!(
            site.cmd("daynight", json!({"mode": "dusk"}))
                .await
                .unwrap_err(),
            "`mode` must be \"auto\", \"day\" or \"night\", not `dusk`"
        );
        let day = site.cmd("daynight", json!({"mode": "day"})).await;
        assert_eq!(day.unwrap(), json!({"mode": "day", "night": false}));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(site.control.leds().status, BoxStatus::Ready);
        site.stop().await;
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
        // Logged out, an agent has no state but that.
        for action in ["pause", "unpause", "dnd"] {
            assert_eq!(
                agent(json!({"action": action, "agent": "alice"}))
                    .await
                    .unwrap_err(),
                "alice is logged out; log them in first"
            );
        }
        // Without a station: the agent's home desk.
        let r = agent(json!({"action": "login", "agent": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            (&r["state"], &r["station"]),
            (&json!("available"), &json!("desk-1"))
        );
        let r = agent(json!({"action": "dnd", "agent": "alice"}))
            .await
            .unwrap();
        assert_eq!(r["state"], "dnd");

        let bad = [
            (json!({"action": "pause", "agent": "bob"}), "no agent `bob`"),
            (
                json!({"action": "dance", "agent": "alice"}),
                "`action` must be login, logout, pause, unpause or dnd, not `dance`",
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
        // Joining a call: refused with the reason before any phone rings.
        let monitor = |args: Value| site.cmd("acd.monitor", args);
        let refused = [
            (
                json!({"station": "desk-1", "agent": "alice", "mode": "spy"}),
                "`mode` must be `listen`, `whisper` or `barge`",
            ),
            (
                json!({"station": "desk-1", "agent": "alice", "mode": "listen"}),
                "`desk-1` is not a supervisor's phone ([acd] supervisors)",
            ),
            (
                json!({"agent": "alice", "mode": "listen"}),
                "`station` is missing",
            ),
        ];
        for (args, want) in refused {
            assert_eq!(monitor(args.clone()).await.unwrap_err(), want, "{args}");
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
                "unknown command `reboot`; known: status, config.get, config.set, config.history, agent, acd.reset_stats, acd.monitor, originate, lookup.update, daynight, campaign, campaign.push, logs, restart",
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
        // Contacts: the caller after the update is named on the record.
        let r = upd(
            "contacts",
            "merge",
            json!([{"number": "13800000001", "name": "张三"}]),
        )
        .await
        .unwrap();
        assert_eq!(r, json!({"table": "contacts", "rows": 1}));
        let e = upd("contacts", "merge", json!([{"number": "12a", "name": "x"}]))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            "rows[0]: number `12a` must be digits (a leading + allowed)"
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
        assert_eq!(call.caller_name.as_deref(), Some("张三"));
    }
}
