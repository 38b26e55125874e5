//! `callboxd`: the call-center box daemon and its operator commands.
//!
//! Exit codes (for systemd and the watchdog): 0 success, 1 the call asked
//! for is not in the database (`records --call`), 64 bad usage, 69 hardware
//! backend unavailable, 70 internal error, 73 data directory or database
//! unusable, 78 configuration or scenario invalid.
//!
//! This file holds the command line, that mapping ([`Failure`]) and the
//! dispatch; each subcommand (or family of them) has its own module.

use std::path::PathBuf;
use std::process::ExitCode;

use callbox_firmware::app::RunError;
use callbox_firmware::store;
use callbox_hal::diag::Diagnostics;
use clap::{Parser, Subcommand};

mod check;
mod console;
mod demo;
mod hw;
mod records;
mod run;

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
        /// call_events, recordings, alarms, lookups, campaign_contacts,
        /// console_audit.
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
    /// Where each outbound campaign stands: contacts by state (pending,
    /// in_progress, done, exhausted, dnc) and attempts made.
    Campaigns {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// One JSON object per campaign and line.
        #[arg(long)]
        json: bool,
    },
    /// The web console: where it listens and its certificate's
    /// fingerprint, or a new one-time password for `admin`.
    Console {
        #[command(subcommand)]
        cmd: ConsoleCmd,
    },
    /// Hash a voicemail PIN (4 to 12 digits, read from standard input) for
    /// `[voicemail.box.NAME] pin`: prints its argon2id hash.
    HashPin,
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
enum ConsoleCmd {
    /// Print the console's addresses and its certificate's SHA-256
    /// fingerprint (to compare with what the browser shows).
    Info {
        /// Site config file.
        #[arg(long)]
        config: PathBuf,
        /// Data directory; overrides the config.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Make a one-time password for the `admin` user and print it; whoever
    /// logs in with it must choose a new one. The running daemon takes it
    /// at once.
    ResetAdmin {
        /// Site config file.
        #[arg(long)]
        config: PathBuf,
        /// Data directory; overrides the config.
        #[arg(long)]
        data: Option<PathBuf>,
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

/// `callboxd hash-pin`: the PIN on standard input's first line, hashed.
fn hash_pin() -> Result<(), Failure> {
    let mut pin = String::new();
    std::io::stdin()
        .read_line(&mut pin)
        .map_err(|e| Failure::Other(anyhow::anyhow!("reading the PIN: {e}")))?;
    let hash = callbox_firmware::voicemail::hash_pin(pin.trim())
        .map_err(|e| Failure::Other(anyhow::anyhow!(e)))?;
    println!("{hash}");
    Ok(())
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
    few_malloc_arenas();
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
        } => run::first_boot(bundle.as_deref(), &config, data.as_deref()).and_then(|provisioned| {
            if !provisioned {
                return Ok(());
            }
            run::run(
                &config,
                data,
                scenario.as_deref(),
                fast,
                until_idle,
                None,
                start_at,
            )
            .and_then(|control| match (sim_report, control) {
                (Some(path), Some(c)) => run::write_sim_report(&path, &c),
                _ => Ok(()),
            })
        }),
        Cmd::CheckConfig { config, scenario } => check::check_config(&config, scenario.as_deref()),
        Cmd::Demo {
            seconds,
            data,
            fast,
        } => demo::demo(seconds, data, fast),
        Cmd::Records {
            data,
            json,
            since,
            call,
            table,
        } => match table {
            Some(t) => records::table_rows(&data, &t),
            None => records::records(
                &data,
                json,
                &store::RecordQuery {
                    since_ms: since,
                    call,
                    ..Default::default()
                },
            ),
        },
        Cmd::Recordings { data, json, call } => records::recordings(&data, json, call.as_deref()),
        Cmd::Hw { cmd } => hw::hw(cmd),
        Cmd::HashPin => hash_pin(),
        Cmd::Console {
            cmd: ConsoleCmd::Info { config, data },
        } => console::info(&config, data),
        Cmd::Console {
            cmd: ConsoleCmd::ResetAdmin { config, data },
        } => console::reset_admin(&config, data),
        Cmd::Campaigns { data, json } => records::campaigns(&data, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// At most two glibc malloc arenas. glibc gives each thread that allocates
/// under contention an arena of its own and keeps what was freed in it: the
/// console's TLS connections under load (50 sessions) took the daemon from
/// 39 to 236 MiB with the default (8 per core), 97 MiB with two, at the
/// same requests per second (docs/PERFORMANCE.md, the console). Set before
/// any thread starts.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called first thing
    // in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
