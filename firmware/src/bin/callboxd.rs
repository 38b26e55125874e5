//! `callboxd`: the call-center box daemon and its operator commands.
//!
//! Exit codes (for systemd and the watchdog): 0 success, 1 the call asked
//! for is not in the database (`records --call`), 64 bad usage, 69 hardware
//! backend unavailable, 70 internal error, 73 data directory or database
//! unusable, 78 configuration or scenario invalid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callbox_firmware::app::{self, RunError, RunOptions};
use callbox_firmware::clock::Clock;
use callbox_firmware::config::{DEFAULT_DATA_DIR, SiteConfig};
use callbox_firmware::{logging, store};
use callbox_hal::diag::Diagnostics;
use callbox_hal::registry::{self, BackendArgs};
use callbox_hal::sim::{Scenario, SimControl, SimStats};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "callboxd", version, about = "The call-center box daemon")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the box.
    Run {
        /// Site config file.
        #[arg(long)]
        config: PathBuf,
        /// Data directory (database, recordings); overrides the config.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Scenario to play on the sim backend.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Run the scenario in virtual time, as fast as the CPU allows.
        #[arg(long, requires = "scenario")]
        fast: bool,
        /// Exit once the scenario is over and outbound jobs are done.
        #[arg(long, requires = "scenario")]
        until_idle: bool,
        /// With --fast: the wall-clock time the virtual clock starts at
        /// (RFC 3339, e.g. 2026-11-23T09:30:00+08:00), to test business hours.
        #[arg(long, requires = "fast", value_parser = parse_start)]
        start_at: Option<std::time::SystemTime>,
        /// Write what the simulated callers and agents did and heard (JSON)
        /// to this file when the run ends.
        #[arg(long, requires = "scenario")]
        sim_report: Option<PathBuf>,
        /// A provisioning bundle to import first (the boot partition's
        /// `callbox/` directory): the box's identity goes to the data
        /// directory's `identity/`, its site config to `--config` if that
        /// does not exist yet, and the bundle is removed.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
    },
    /// Check a site config (and optionally a scenario); print every problem
    /// as FILE:LINE:COL: message.
    CheckConfig {
        /// Site config file.
        config: PathBuf,
        /// Scenario file to check against the config's lines.
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Run a ready-made demo site with a built-in scenario, in real time.
    Demo {
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// Keep the demo's data here (default: a temporary directory).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run in virtual time.
        #[arg(long)]
        fast: bool,
    },
    /// Print stored call records.
    Records {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only calls that arrived at or after TIME: RFC 3339
        /// (2026-11-23T10:00:00Z), a date (2026-11-23, from midnight UTC) or
        /// a time back from now (2h, 3d).
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<i64>,
        /// Only this call, with its event log.
        #[arg(long, value_name = "ID")]
        call: Option<String>,
        /// Show another table as JSON lines instead of calls: voicemail,
        /// product_checks, callbacks, outbox, outbound_jobs, queue_log,
        /// call_events, recordings, alarms, lookups.
        #[arg(
            long,
            value_parser = clap::builder::PossibleValuesParser::new(store::TABLES),
            conflicts_with_all = ["since", "call"]
        )]
        table: Option<String>,
    },
    /// Line-interface hardware: probe it, measure a loopback.
    Hw {
        #[command(subcommand)]
        cmd: HwCmd,
    },
    /// Print stored recordings (what was recorded, where the file is, its
    /// state).
    Recordings {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Only this call's recordings.
        #[arg(long, value_name = "ID")]
        call: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum HwCmd {
    /// List sound cards and GPIO; with --config, check every port of the
    /// site's board description. Exit 0 when all of it is usable, 1 if not.
    Probe {
        /// Site config with a `[board]` table.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Play a tone out of one port and measure it back (on the same port
    /// through the line's echo, or on another port through a loop cable).
    /// Exit 0 with level, delay and frequency; 1 when nothing came back.
    Loopback {
        /// Site config with a `[board]` table.
        #[arg(long)]
        config: PathBuf,
        /// Line id of the port that plays the tone.
        #[arg(long)]
        port: String,
        /// Line id of the port that listens (default: the same port).
        #[arg(long)]
        to: Option<String>,
        /// Tone frequency, Hz.
        #[arg(long, default_value_t = 1000.0)]
        hz: f64,
        /// Tone level, dBFS.
        #[arg(long, default_value_t = -10.0, allow_negative_numbers = true)]
        level: f64,
        /// Tone length, ms.
        #[arg(long, default_value_t = 1000)]
        ms: u32,
    },
}

/// `--since`: RFC 3339, a date (midnight UTC) or a duration back from now;
/// milliseconds since the Unix epoch.
fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // A date alone: `Date`'s own parser would also take a date-time and drop
    // the time.
    if let Ok(d) = jiff::civil::Date::strptime("%Y-%m-%d", s) {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| format!("`{s}`: {e}"));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let now = jiff::Timestamp::now().as_millisecond();
        let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(back));
    }
    if s.parse::<jiff::civil::DateTime>().is_ok() {
        return Err(format!(
            "`{s}` has no UTC offset: add `Z` (UTC) or the offset, e.g. +08:00"
        ));
    }
    Err(format!(
        "`{s}` is not a time: use RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or a time back from now (2h, 3d)"
    ))
}

fn parse_start(s: &str) -> Result<std::time::SystemTime, String> {
    let t: jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))?;
    Ok(std::time::SystemTime::from(t))
}

/// A failure, classified for the exit code.
enum Failure {
    Config(Diagnostics),
    Run(RunError),
    Store(store::StoreError),
    /// Asked for something the database does not hold.
    NotFound(String),
    Other(anyhow::Error),
}

impl Failure {
    fn report(&self) -> ExitCode {
        match self {
            Failure::Config(d) => {
                eprintln!("{d}");
                ExitCode::from(78)
            }
            Failure::Run(e) => {
                eprintln!("callboxd: {e}");
                ExitCode::from(match e {
                    RunError::Store(_) => 73,
                    RunError::Backend(_) | RunError::MissingLine(_) => 69,
                })
            }
            Failure::Store(e) => {
                eprintln!("callboxd: {e}");
                ExitCode::from(73)
            }
            Failure::NotFound(what) => {
                eprintln!("callboxd: {what}");
                ExitCode::from(1)
            }
            Failure::Other(e) => {
                eprintln!("callboxd: {e:#}");
                ExitCode::from(70)
            }
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.cmd {
        Cmd::Run {
            config,
            data,
            scenario,
            fast,
            until_idle,
            start_at,
            sim_report,
            bundle,
        } => first_boot(bundle.as_deref(), &config, data.as_deref()).and_then(|provisioned| {
            if !provisioned {
                return Ok(());
            }
            run(
                &config,
                data,
                scenario.as_deref(),
                fast,
                until_idle,
                None,
                start_at,
            )
            .and_then(|control| match (sim_report, control) {
                (Some(path), Some(c)) => write_sim_report(&path, &c),
                _ => Ok(()),
            })
        }),
        Cmd::CheckConfig { config, scenario } => check_config(&config, scenario.as_deref()),
        Cmd::Demo {
            seconds,
            data,
            fast,
        } => demo(seconds, data, fast),
        Cmd::Records {
            data,
            json,
            since,
            call,
            table,
        } => match table {
            Some(t) => table_rows(&data, &t),
            None => records(
                &data,
                json,
                &store::RecordQuery {
                    since_ms: since,
                    call,
                },
            ),
        },
        Cmd::Recordings { data, json, call } => recordings(&data, json, call.as_deref()),
        Cmd::Hw { cmd } => hw(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

fn load(config: &Path, scenario: Option<&Path>) -> Result<(SiteConfig, Option<Scenario>), Failure> {
    let mut problems = Vec::new();
    let site = match SiteConfig::load(config) {
        Ok(s) => Some(s),
        Err(d) => {
            problems.extend(d.0);
            None
        }
    };
    let scenario = match (scenario, &site) {
        (Some(path), Some(site)) => match Scenario::load(path, &site.lines) {
            Ok(s) => Some(s),
            Err(d) => {
                problems.extend(d.0);
                None
            }
        },
        _ => None,
    };
    match site {
        Some(site) if problems.is_empty() => {
            if scenario.is_some() && site.backend != "sim" {
                return Err(Failure::Other(anyhow::anyhow!(
                    "--scenario plays on the sim backend; {} uses `{}`",
                    config.display(),
                    site.backend
                )));
            }
            Ok((site, scenario))
        }
        _ => Err(Failure::Config(Diagnostics(problems))),
    }
}

fn check_config(config: &Path, scenario: Option<&Path>) -> Result<(), Failure> {
    let (site, sc) = load(config, scenario)?;
    println!(
        "{}: ok (site `{}`, {} line(s), backend `{}`)",
        config.display(),
        site.site_id,
        site.lines.len(),
        site.backend
    );
    if let (Some(path), Some(sc)) = (scenario, sc) {
        println!(
            "{}: ok ({} call(s), {} agent(s))",
            path.display(),
            sc.arrivals.len(),
            sc.agents.len()
        );
    }
    Ok(())
}

/// Runs the daemon; returns the sim's control handle for summaries.
fn run(
    config: &Path,
    data: Option<PathBuf>,
    scenario: Option<&Path>,
    fast: bool,
    until_idle: bool,
    stop_after: Option<Duration>,
    start_at: Option<std::time::SystemTime>,
) -> Result<Option<SimControl>, Failure> {
    let (site, scenario) = load(config, scenario)?;
    logging::init(&site.log_level);
    // Logging may have started earlier (a first-boot import): the site's
    // level applies from here.
    logging::set_level(&site.log_level);
    let data_dir = data
        .or_else(|| site.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    let runtime = if fast {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
    } else {
        // Two workers, or one when the daemon may use a single core
        // (`taskset`, a cgroup): two workers time-sliced on one core delay
        // each other's calls by whole scheduler slices.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores.clamp(1, 2))
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;

    runtime.block_on(async move {
        let hal = registry::open(
            &site.backend,
            BackendArgs {
                lines: site.lines.clone(),
                scenario,
                board: site.board.clone(),
            },
        )
        .map_err(|e| Failure::Run(e.into()))?;
        let control = hal.sim_control();
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        let idle: Option<app::IdleSignal> = match (until_idle, control.clone()) {
            (true, Some(mut ctl)) => Some(Box::pin(async move {
                ctl.finished().await;
                tracing::info!("scenario finished");
            })),
            _ => None,
        };
        if let Some(after) = stop_after {
            let token = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                token.cancel();
            });
        }
        let opts = RunOptions {
            data_dir,
            clock: match start_at {
                Some(t) => Clock::starting_at(t),
                None => Clock::new(fast),
            },
            until_idle: idle,
            commands: None,
        };
        app::run(Arc::new(site), hal, opts, shutdown)
            .await
            .map_err(Failure::Run)?;
        Ok(control)
    })
}

/// Imports a provisioning bundle if one is waiting; then, if the box still
/// has no site config, it has never been provisioned: it says so and waits
/// in that safe state (no lines, no uplink) until it is stopped, rather
/// than exiting into a restart loop. `Ok(false)` when it was stopped there.
fn first_boot(bundle: Option<&Path>, config: &Path, data: Option<&Path>) -> Result<bool, Failure> {
    let Some(bundle) = bundle else {
        return Ok(true);
    };
    logging::init("info");
    let data_dir = data.map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_path_buf);
    match callbox_firmware::provision::import_bundle(bundle, &data_dir, config) {
        Ok(Some(i)) => tracing::info!(
            site = %i.site,
            box_id = %i.box_id,
            broker = %i.broker,
            config_written = i.config_written,
            "provisioning bundle imported; removed from {}",
            bundle.display()
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("{e}; left in place"),
    }
    if config.exists() {
        return Ok(true);
    }
    tracing::error!(
        status = %callbox_hal::io::BoxStatus::NoIdentity,
        "this box has no identity and no site config ({}): it has not been provisioned; put a bundle on the boot partition (callbox-provision inject/write) and restart it",
        config.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // The status LED says it too: a technician on site sees it without
        // a console. Without a site config the box has no board
        // description, so this is the build's default backend's LED.
        let mut hal = registry::open(
            registry::names()[0],
            BackendArgs {
                lines: Vec::new(),
                scenario: None,
                board: None,
            },
        )
        .map_err(|e| Failure::Run(e.into()))?;
        use callbox_hal::Backend;
        let _leds = hal.take_indicators().map(|mut leds| {
            use callbox_hal::io::Indicators;
            if let Err(e) = leds.set_status(callbox_hal::io::BoxStatus::NoIdentity) {
                tracing::warn!("status LED: {e}");
            } else {
                tracing::info!(backend = hal.name(), "status LED shows no_identity");
            }
            leds
        });
        let token = CancellationToken::new();
        spawn_signal_handler(token.clone())?;
        token.cancelled().await;
        Ok::<(), Failure>(())
    })?;
    tracing::info!("stopped; still not provisioned");
    Ok(false)
}

fn spawn_signal_handler(token: CancellationToken) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}

/// The demo site, built in so `callboxd demo` runs from any directory.
/// System prompts come from the installed set (or the source tree).
const DEMO_FILES: &[(&str, &[u8])] = &[
    ("site.toml", include_bytes!("../../demo/site.toml")),
    ("calls.toml", include_bytes!("../../demo/calls.toml")),
    ("products.csv", include_bytes!("../../demo/products.csv")),
    (
        "prompts/welcome.wav",
        include_bytes!("../../demo/prompts/welcome.wav"),
    ),
    (
        "prompts/menu.wav",
        include_bytes!("../../demo/prompts/menu.wav"),
    ),
    (
        "prompts/menu-short.wav",
        include_bytes!("../../demo/prompts/menu-short.wav"),
    ),
];

fn demo(seconds: Option<u64>, data: Option<PathBuf>, fast: bool) -> Result<(), Failure> {
    let dir = tempfile::tempdir().context("creating the demo directory")?;
    std::fs::create_dir_all(dir.path().join("prompts")).context("writing the demo site")?;
    for (name, bytes) in DEMO_FILES {
        std::fs::write(dir.path().join(name), bytes).context("writing the demo site")?;
    }
    let data = data.unwrap_or_else(|| dir.path().join("data"));
    println!(
        "callbox demo: a branch with 6 trunk lines, 2 agent desks and an IVR menu; simulated callers key it in band."
    );
    println!("Data in {}. Ctrl-C stops early.\n", data.display());
    let control = run(
        &dir.path().join("site.toml"),
        Some(data.clone()),
        Some(&dir.path().join("calls.toml")),
        fast,
        true,
        seconds.map(Duration::from_secs),
        None,
    )?;
    summary(&data, control.as_ref())
}

fn summary(data: &Path, control: Option<&SimControl>) -> Result<(), Failure> {
    let recs = store::read_records(data, &store::RecordQuery::default()).map_err(Failure::Store)?;
    let count = |d: &str| recs.iter().filter(|r| r.disposition == d).count();
    let answered: Vec<_> = recs
        .iter()
        .filter(|r| r.disposition == "answered")
        .collect();
    let avg = |v: Vec<i64>| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<i64>() as f64 / v.len() as f64 / 1000.0
        }
    };
    println!("\n== summary ==");
    println!("calls recorded         {}", recs.len());
    println!("  answered             {}", answered.len());
    println!(
        "    caller hung up     {}",
        answered
            .iter()
            .filter(|r| r.hangup_side.as_deref() == Some("caller"))
            .count()
    );
    println!(
        "    ended by the box   {}",
        answered
            .iter()
            .filter(|r| r.hangup_side.as_deref() == Some("box"))
            .count()
    );
    println!(
        "    cut by shutdown    {}",
        answered
            .iter()
            .filter(|r| r.hangup_cause.as_deref() == Some("shutdown"))
            .count()
    );
    println!("  abandoned (ringing)  {}", count("abandoned"));
    println!(
        "  rejected / failed    {} / {}",
        count("rejected"),
        count("failed")
    );
    let mut outcomes: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &recs {
        if let Some(o) = r.outcome.as_deref() {
            *outcomes.entry(o).or_default() += 1;
        }
    }
    if !outcomes.is_empty() {
        println!("IVR outcomes");
        for (o, n) in &outcomes {
            println!("  {o:<20} {n}");
        }
        let scores: Vec<u8> = recs.iter().filter_map(|r| r.survey_score).collect();
        if !scores.is_empty() {
            println!("  survey scores        {scores:?}");
        }
    }
    println!(
        "avg time on line       {:.1} s",
        avg(answered.iter().filter_map(|r| r.answered_ms).collect())
    );
    // The ACD leaves its statistics in the outbox when it stops.
    let stats = store::read_table(data, "outbox").map_err(Failure::Store)?;
    if let Some(acd) = stats.iter().rev().find(|r| r["stream"] == "acd_stats") {
        let p = &acd["payload"];
        for q in p["queues"].as_array().into_iter().flatten() {
            println!(
                "queue {:<16} joined {} answered {} abandoned {} timeouts {} turned away {}; service level {:.0} %, ASA {:.1} s, AHT {:.1} s",
                q["queue"].as_str().unwrap_or("?"),
                q["joined"],
                q["answered"],
                q["abandoned"],
                q["timeouts"],
                q["turned_away"],
                q["service_level"].as_f64().unwrap_or(0.0) * 100.0,
                q["avg_speed_of_answer_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                q["avg_handle_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            );
        }
        for a in p["agents"].as_array().into_iter().flatten() {
            println!(
                "agent {:<16} {:<10} calls {} talk {:.1} s pauses {}",
                a["agent"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?"),
                a["calls"],
                a["talk_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                a["pauses"],
            );
        }
    }
    let rows = store::read_recordings(data, None).map_err(Failure::Store)?;
    if !rows.is_empty() {
        let secs: u64 = rows.iter().filter_map(|r| r.duration_ms).sum::<u64>() / 1000;
        let bytes: u64 = rows.iter().filter_map(|r| r.size).sum();
        let mut states: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &rows {
            *states.entry(r.state.as_str()).or_default() += 1;
        }
        println!(
            "recordings             {} ({secs} s, {} KiB) {states:?} in {}",
            rows.len(),
            bytes / 1024,
            data.join(callbox_firmware::recorder::DIR).display()
        );
    }
    if let Some(c) = control {
        let s = c.stats();
        println!(
            "callers blocked (all trunks busy) {}",
            SimStats::get(&s.calls_blocked)
        );
        println!(
            "digits keyed by callers/agents    {}",
            SimStats::get(&s.digits_sent)
        );
        println!("status LED at the end             {}", c.leds().status);
    }
    Ok(())
}

fn write_sim_report(path: &Path, c: &SimControl) -> Result<(), Failure> {
    let s = c.stats();
    let n = SimStats::get;
    let report = serde_json::json!({
        "calls_placed": n(&s.calls_placed),
        "calls_blocked": n(&s.calls_blocked),
        "calls_answered": n(&s.calls_answered),
        "stations_rung": n(&s.stations_rung),
        "stations_answered": n(&s.stations_answered),
        "outbound_dialled": n(&s.outbound_dialled),
        "unreleased": n(&s.unreleased),
        "frames_to_box": n(&s.frames_to_box),
        "frames_late": n(&s.frames_late),
        "frames_dropped": n(&s.frames_dropped),
        "lateness_max_us": n(&s.lateness_max_us),
        "frames_sent_late": n(&s.frames_sent_late),
        "probes_heard": s.probes(),
        "heard_frames": *s.heard_by_line.lock().unwrap_or_else(|p| p.into_inner()),
    });
    std::fs::write(path, report.to_string())
        .with_context(|| format!("writing the sim report {}", path.display()))?;
    Ok(())
}

fn table_rows(data: &Path, table: &str) -> Result<(), Failure> {
    use std::io::Write;
    let rows = store::read_table(data, table).map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    for r in rows {
        if writeln!(out, "{r}").is_err() {
            break;
        }
    }
    Ok(())
}

fn records(data: &Path, json: bool, query: &store::RecordQuery) -> Result<(), Failure> {
    let recs = store::read_records(data, query).map_err(Failure::Store)?;
    if let (Some(id), true) = (&query.call, recs.is_empty()) {
        return Err(Failure::NotFound(format!(
            "no call {id} in {}",
            data.join(store::DB_FILE).display()
        )));
    }
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for r in &recs {
        let mut line = if json {
            serde_json::to_string(r).context("encoding a record")?
        } else {
            format!(
                "{}  {:<8} {:<16} -> {:<12} {:<11} {:>7}  {}",
                r.start,
                r.trunk_line.as_deref().unwrap_or("-"),
                r.caller.as_deref().unwrap_or("unknown"),
                r.dialled.as_deref().unwrap_or("unknown"),
                r.disposition,
                r.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                r.hangup_side.as_deref().unwrap_or("-"),
            )
        };
        if !json {
            // One call asked for: its events and recordings under it.
            for e in &r.events {
                line += &format!("\n  {}  {:<18} {}", e.at, e.event, e.data);
            }
            if query.call.is_some() {
                for id in &r.recordings {
                    line += &format!("\n  recording {id}");
                }
            }
        }
        // A closed pipe (`| head`) is not an error worth a message.
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

fn recordings(data: &Path, json: bool, call: Option<&str>) -> Result<(), Failure> {
    let rows = store::read_recordings(data, call).map_err(Failure::Store)?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for r in &rows {
        let line = if json {
            serde_json::to_string(r).context("encoding a recording")?
        } else {
            format!(
                "{}  {}  {}  {:<9} {:<11} {:>8} {:>12}  {}",
                r.start,
                r.id,
                r.call_id,
                r.kind,
                r.state,
                r.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                r.size.map_or("-".into(), |n| format!("{n} B")),
                r.file,
            )
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

/// The board description of a site config, for `hw`.
fn board_of(config: &Path) -> Result<callbox_hal::analog::board::Board, Failure> {
    let site = SiteConfig::load(config).map_err(Failure::Config)?;
    site.board.ok_or_else(|| {
        Failure::NotFound(format!(
            "{}: no `[board]` table; the hardware commands need the board description (docs/hardware.md)",
            config.display()
        ))
    })
}

fn hw(cmd: HwCmd) -> Result<(), Failure> {
    use callbox_hal::analog::probe;
    match cmd {
        HwCmd::Probe { config } => {
            let board = config.as_deref().map(board_of).transpose()?;
            let report = probe::probe(board.as_ref());
            print!("{}", report.text);
            if report.ok {
                Ok(())
            } else {
                Err(Failure::NotFound("the board is not usable here".into()))
            }
        }
        HwCmd::Loopback {
            config,
            port,
            to,
            hz,
            level,
            ms,
        } => {
            let board = board_of(&config)?;
            let channel = |line: &str| {
                board
                    .ports
                    .iter()
                    .find(|p| p.line == line)
                    .map(|p| p.channel)
                    .ok_or_else(|| {
                        Failure::NotFound(format!("no port for line `{line}` on the board"))
                    })
            };
            let to = to.unwrap_or_else(|| port.clone());
            let (out_ch, in_ch) = (channel(&port)?, channel(&to)?);
            if !(100.0..=3800.0).contains(&hz)
                || !(-60.0..=0.0).contains(&level)
                || !(100..=10_000).contains(&ms)
            {
                return Err(Failure::NotFound(
                    "--hz must be 100-3800, --level -60-0 dBFS, --ms 100-10000".into(),
                ));
            }
            loopback(&board, out_ch, in_ch, hz, level, ms).and_then(|m| match m {
                Some(m) => {
                    println!(
                        "{hz:.0} Hz at {level:.1} dBFS out of {port} came back on {to} at {:.1} dBFS (loss {:.1} dB) after {:.0} ms, measured {:.0} Hz",
                        m.level_dbfs,
                        level - m.level_dbfs,
                        m.delay_ms,
                        m.frequency_hz
                    );
                    Ok(())
                }
                None => Err(Failure::NotFound(format!(
                    "no tone came back on {to} (below -60 dBFS): the ports are not looped"
                ))),
            })
        }
    }
}

#[cfg(feature = "alsa")]
fn loopback(
    board: &callbox_hal::analog::board::Board,
    out_ch: u16,
    in_ch: u16,
    hz: f64,
    level: f64,
    ms: u32,
) -> Result<Option<callbox_hal::analog::probe::Loopback>, Failure> {
    callbox_hal::analog::probe::loopback(board, out_ch, in_ch, hz, level, ms)
        .map_err(|e| Failure::Other(anyhow::anyhow!("sound card: {e}")))
}

#[cfg(not(feature = "alsa"))]
fn loopback(
    _board: &callbox_hal::analog::board::Board,
    _out_ch: u16,
    _in_ch: u16,
    _hz: f64,
    _level: f64,
    _ms: u32,
) -> Result<Option<callbox_hal::analog::probe::Loopback>, Failure> {
    Err(Failure::Other(anyhow::anyhow!(
        "this build has no ALSA support (cargo feature `alsa`)"
    )))
}
