//! `callbox-hq`: headquarters' tool.
//!
//! Boxes seal call recordings with age to headquarters' X25519 public keys;
//! this tool makes and shows those keys (`keygen`, `pubkey`) and decrypts the
//! recordings (`decrypt`). The identity files are standard age files, so the
//! `age` CLI can decrypt recordings too.
//!
//! The fleet commands speak the MQTT contract of docs/mqtt.md: `fleet`
//! (a snapshot of presence and telemetry), `watch` (live events),
//! `collect` (records and recordings into SQLite, with `gaps` and `export`
//! to read them back), `cmd`, `config push|get` and `campaign
//! push|status|pause|resume|stop` (commands to one box).

mod campaign;
mod cmd;
mod collect;
mod db;
mod decrypt;
mod fleet;
mod fleetdb;
mod keys;
mod mqtt;
mod notify;
mod pg;
mod recordings;
mod serve;
mod simulate;
mod sql;
mod store;
mod tally;
mod watch;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use mqtt::BrokerArgs;

/// Exit code of a bad invocation (sysexits' EX_USAGE): distinct from the
/// answers of `cmd` (0 ok, 1 refused, 2 no answer).
const EX_USAGE: u8 = 64;

/// Watches and steers a fleet of callboxes; holds the keys to their recordings.
#[derive(Parser, Debug)]
#[command(name = "callbox-hq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generates an identity for decrypting recordings and prints its public
    /// key (the `age1…` string for the boxes' config).
    Keygen {
        /// Identity file to create (mode 0600); never overwritten.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Prints the public key of each identity in an identity file.
    Pubkey {
        /// Identity file (age format: `AGE-SECRET-KEY-1…` lines).
        #[arg(long, short)]
        identity: PathBuf,
    },
    /// Decrypts a sealed recording (`*.wav.age`).
    Decrypt {
        /// Identity file (age format: `AGE-SECRET-KEY-1…` lines).
        #[arg(long, short)]
        identity: PathBuf,
        /// The age file to decrypt.
        input: PathBuf,
        /// Where to write the plaintext [default: INPUT without `.age`].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace OUTPUT if it exists.
        #[arg(long, short)]
        force: bool,
    },
    /// Shows every box: presence, firmware, lines, calls, queues, agents,
    /// backlog and alarms, from the retained status and telemetry.
    Fleet {
        #[command(flatten)]
        broker: BrokerArgs,
        /// One JSON object per box per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Seconds to gather messages for, once subscribed.
        #[arg(long, default_value = "2", value_name = "SECS", value_parser = secs)]
        wait: Duration,
    },
    /// Prints the boxes' live events and presence changes, one line each,
    /// until SIGINT/SIGTERM.
    Watch {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Only this box.
        #[arg(long = "box", value_name = "BOX")]
        box_id: Option<String>,
        /// Only this site.
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
    },
    /// Collects records and recordings into a SQLite database until
    /// SIGINT/SIGTERM, acknowledging each once stored.
    Collect {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        collect: CollectArgs,
    },
    /// Publishes the traffic of a fleet of simulated boxes (presence,
    /// telemetry, call records and events, recordings, alarms), each with
    /// its own session, and prints what the collectors acknowledged.
    Simulate {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        sim: SimulateArgs,
    },
    /// Prints every missing range of record seqs in a collector's database.
    Gaps {
        /// The collector's database: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        db: String,
        /// The CA of the PostgreSQL server's certificate (with sslmode).
        #[arg(long, value_name = "FILE")]
        db_ca: Option<PathBuf>,
        /// One JSON object per gap per line.
        #[arg(long)]
        json: bool,
    },
    /// Prints the stored `data` of a stream's records, one JSON per line,
    /// ordered by box, epoch and seq.
    Export {
        /// The collector's database: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        db: String,
        /// The CA of the PostgreSQL server's certificate (with sslmode).
        #[arg(long, value_name = "FILE")]
        db_ca: Option<PathBuf>,
        /// The stream (`cdr`, `call_events`, `voicemail`…).
        #[arg(long, value_name = "STREAM")]
        stream: String,
        /// Only this site.
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
        /// Only this box.
        #[arg(long = "box", value_name = "BOX")]
        box_id: Option<String>,
        /// One record per `data.id`, the latest sent: a box sends a call's
        /// record again when it changes after the call (a wrap-up code).
        #[arg(long)]
        latest: bool,
    },
    /// Sends a command to a box and prints its answer (exit 0 ok, 1 refused,
    /// 2 no answer in time).
    Cmd {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        target: TargetArgs,
        /// The command: status, config.get, agent, originate, logs…
        #[arg(required_unless_present = "raw")]
        cmd: Option<String>,
        /// Its arguments, a JSON object.
        #[arg(value_name = "ARGS_JSON", conflicts_with = "raw")]
        args: Option<String>,
        /// Send PAYLOAD verbatim instead of building the command.
        #[arg(long, value_name = "PAYLOAD", conflicts_with = "cmd")]
        raw: Option<String>,
    },
    /// Serves headquarters' dashboard over HTTPS from a collector's
    /// database: the fleet, each box's charts, alarms, calls, reports.
    Serve(ServeArgs),
    /// Delivers the callers' requests (`notify` records) and voicemail by
    /// e-mail and SMS, each message once, retrying failures, until
    /// SIGINT/SIGTERM.
    Notify(NotifyArgs),
    /// The dashboard's users: add or change one (the password is read from
    /// standard input), remove one, list them.
    #[command(subcommand)]
    User(UserCommand),
    /// A box's config file: push a new version, or get the running one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A box's outbound campaigns: push one (definition and contact list),
    /// see how one is doing, pause, resume or stop it.
    #[command(subcommand)]
    Campaign(CampaignCommand),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The collectors' database: a SQLite file or a postgres:// URL.
    #[arg(long, value_name = "FILE|URL")]
    db: String,
    /// The CA of the PostgreSQL server's certificate (with sslmode).
    #[arg(long, value_name = "FILE")]
    db_ca: Option<PathBuf>,
    /// An address to serve HTTPS on (repeat for more).
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Vec<std::net::SocketAddr>,
    /// An address answering plain HTTP with a redirect to HTTPS.
    #[arg(long, value_name = "ADDR")]
    redirect: Vec<std::net::SocketAddr>,
    /// The certificate chain served (PEM).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A session ends after this long unused.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// A session ends this long after login.
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = humantime::parse_duration)]
    session_max: Duration,
    /// Failed logins from one address within 5 minutes before it is
    /// refused for the rest of them.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    login_attempts: u32,
    /// A file (mode 0600) holding the bearer token that `/metrics` asks
    /// for; without it there is no `/metrics`.
    #[arg(long, value_name = "FILE")]
    metrics_token: Option<PathBuf>,
    /// The time zone reports count days in [default: the system's].
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// The collectors' --recordings folder, for relative paths.
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// Headquarters' identity (age), to play recordings the boxes sealed.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Headquarters' broker (mqtts://HOST[:PORT]), for the box pages'
    /// commands (config push, agents, restart); without it the dashboard
    /// only reads its database.
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// Topic root, the boxes' `[uplink] root`.
    #[arg(
        long,
        default_value = "callbox",
        value_name = "ROOT",
        requires = "broker"
    )]
    root: String,
    /// Fleet CA certificate(s) the broker's certificate chains to, PEM.
    #[arg(long, value_name = "FILE", requires = "broker")]
    broker_ca: Option<PathBuf>,
    /// Headquarters' client certificate for the broker, PEM.
    #[arg(long, value_name = "FILE", requires_all = ["broker", "broker_key"])]
    broker_cert: Option<PathBuf>,
    /// Its private key, PEM.
    #[arg(long, value_name = "FILE", requires_all = ["broker", "broker_cert"])]
    broker_key: Option<PathBuf>,
    /// Allow an unencrypted mqtt:// broker (tests, a broker on loopback).
    #[arg(long, requires = "broker")]
    allow_plain: bool,
}

#[derive(Args, Debug)]
struct NotifyArgs {
    /// The collectors' database: a SQLite file or a postgres:// URL.
    #[arg(long, value_name = "FILE|URL")]
    db: String,
    /// The CA of the PostgreSQL server's certificate (with sslmode).
    #[arg(long, value_name = "FILE")]
    db_ca: Option<PathBuf>,
    /// The notifier's config: SMTP, the SMS gateway, documents, templates
    /// (docs/hq.md).
    #[arg(long, value_name = "FILE", required_unless_present = "retry_failed")]
    config: Option<PathBuf>,
    /// The collectors' --recordings folder, for relative paths.
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// Headquarters' identity, for voicemail the boxes recorded encrypted.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// This notifier's name in its claims [default: the machine's name
    /// and the process id].
    #[arg(long)]
    name: Option<String>,
    /// Put the messages given up back to pending, and exit.
    #[arg(long)]
    retry_failed: bool,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Adds a user, or sets an existing one's role and password; the
    /// password (at least 12 characters) is read from standard input.
    Add {
        /// The collectors' database: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        db: String,
        /// The CA of the PostgreSQL server's certificate (with sslmode).
        #[arg(long, value_name = "FILE")]
        db_ca: Option<PathBuf>,
        /// The user's name.
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// Removes a user; their sessions end with their next request.
    Remove {
        /// The collectors' database: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        db: String,
        /// The CA of the PostgreSQL server's certificate (with sslmode).
        #[arg(long, value_name = "FILE")]
        db_ca: Option<PathBuf>,
        /// The user's name.
        name: String,
    },
    /// Lists the users and their roles.
    List {
        /// The collectors' database: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        db: String,
        /// The CA of the PostgreSQL server's certificate (with sslmode).
        #[arg(long, value_name = "FILE")]
        db_ca: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CampaignCommand {
    /// Sends a campaign in chunks (`campaign.push`); run again, it resumes
    /// with the chunks the box still needs. Prints the box's last answer:
    /// contacts taken, rows left out with their line.
    Push {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        target: TargetArgs,
        /// The campaign's name on the box.
        #[arg(long)]
        name: String,
        /// The definition: the keys of a `[campaign.NAME]` table (TOML),
        /// without `list`.
        #[arg(long, value_name = "FILE")]
        definition: PathBuf,
        /// The contact list: CSV with a header, or JSON lines (`*.jsonl`).
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
        /// Largest chunk, in bytes (whole lines).
        #[arg(long, default_value_t = 64 << 10, value_name = "BYTES")]
        chunk_bytes: usize,
    },
    /// How a campaign is doing (`campaign`).
    Status(CampaignTarget),
    /// Dials nobody new until `resume`.
    Pause(CampaignTarget),
    /// Dials again.
    Resume(CampaignTarget),
    /// Ends the campaign (calls in progress end first); `resume` takes it up.
    Stop(CampaignTarget),
}

/// A campaign on a box.
#[derive(Args, Debug)]
struct CampaignTarget {
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    target: TargetArgs,
    /// The campaign's name.
    #[arg(long)]
    name: String,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Sends a site config file (`config.set`) and prints the answer.
    Push {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        target: TargetArgs,
        /// The site config file (TOML).
        file: PathBuf,
        /// Its version; must be above the one the box runs.
        #[arg(long, value_name = "N")]
        version: u64,
    },
    /// Prints the config file the box runs (`config.get`).
    Get {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// The box a command goes to.
#[derive(Args, Debug)]
struct TargetArgs {
    /// The box's id.
    #[arg(value_name = "BOX")]
    box_id: String,
    /// The box's site.
    #[arg(long, value_name = "SITE")]
    site: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = secs)]
    timeout: Duration,
    /// Request id [default: hq-<ms>-<random>].
    #[arg(long, value_name = "REQ")]
    id: Option<String>,
}

impl TargetArgs {
    fn target(self) -> cmd::Target {
        cmd::Target {
            site: self.site,
            box_id: self.box_id,
            id: self.id,
            timeout: self.timeout,
        }
    }
}

/// Options of `simulate` besides the broker's.
#[derive(Args, Debug)]
struct SimulateArgs {
    /// Boxes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    boxes: u32,
    /// Sites the boxes are spread over [default: one per 10 boxes].
    #[arg(long)]
    sites: Option<u32>,
    /// Calls per box per day of simulated time.
    #[arg(long, default_value_t = 500.0)]
    calls_per_day: f64,
    /// Simulated seconds per real second (1: real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// How long the boxes make calls, real seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Share of calls recorded and uploaded, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    recorded: f64,
    /// Chance per batch that a box's trunk goes down (the alarm
    /// `line_down:trunk-1` raised, as an event and a record), 0 to 1; a
    /// trunk down comes back with a chance of 5 % per batch.
    #[arg(long, default_value_t = 0.001)]
    trunk_faults: f64,
    /// Bytes of a simulated recording.
    #[arg(long, default_value_t = 16_384)]
    recording_bytes: usize,
    /// Boxes connecting per second at the start.
    #[arg(long, default_value_t = 1000)]
    connect_rate: u32,
    /// Seconds to wait at the end for the collectors' last acks.
    #[arg(long, default_value = "30", value_parser = secs)]
    ack_wait: Duration,
    /// Seconds between a box's batches (its calls since, one batch per
    /// stream).
    #[arg(long, default_value = "1", value_parser = secs)]
    batch_every: Duration,
}

/// Options of `collect` besides the broker's.
#[derive(Args, Debug)]
struct CollectArgs {
    /// The database: a SQLite file (created if needed) or a PostgreSQL
    /// URL `postgres://user:password@host/db` (its schema created or
    /// brought up to date).
    #[arg(long, value_name = "FILE|URL")]
    db: String,
    /// The CA that signed the PostgreSQL server's certificate, for a URL
    /// with `sslmode=require`.
    #[arg(long, value_name = "FILE")]
    db_ca: Option<PathBuf>,
    /// Months kept (this one included), checked at start and every 6
    /// hours: PostgreSQL drops whole older months of records; both
    /// databases delete older telemetry samples, calls, cleared alarms
    /// and delivered messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1200))]
    keep_months: Option<u32>,
    /// Shared-subscription group: collectors of one group share the load.
    #[arg(long, default_value = "collectors", value_name = "NAME")]
    group: String,
    /// Where finished recordings go [default: <db dir>/recordings].
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// MQTT client id [default: callbox-hq-collect-<group>-<hash of the
    /// db path>, stable so a restarted collector resumes its session].
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Largest message taken, in bytes; bigger ones are dropped.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    max_message: usize,
}

/// Seconds, possibly fractional.
fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|f| Duration::try_from_secs_f64(f).ok())
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // For `cmd` and `config`, 1 and 2 mean "refused" and "no answer";
    // their own errors all come before anything is sent.
    let failure = match cli.command {
        Command::Cmd { .. } | Command::Config(_) | Command::Campaign(_) => ExitCode::from(EX_USAGE),
        _ => ExitCode::FAILURE,
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without the
            // backtrace `anyhow` would add when RUST_BACKTRACE is set.
            eprintln!("callbox-hq: {e:#}");
            failure
        }
    }
}

/// Runs a fleet command on a single-threaded runtime (the collector's
/// database has a thread of its own).
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// `callbox-hq user …`, as the local operator (`user@host` in the audit
/// log).
fn user(u: UserCommand) -> anyhow::Result<()> {
    let who = format!(
        "{}@cli",
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    );
    match u {
        UserCommand::Add {
            db,
            db_ca,
            name,
            role,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let role = serve::Role::parse(&role).context("--role")?;
            let mut db = db::Db::open(&db, db_ca.as_deref())?;
            serve::user_set(&mut db, &name, role, password, &who)?;
            println!("{name}: {}", role.name());
        }
        UserCommand::Remove { db, db_ca, name } => {
            let mut db = db::Db::open(&db, db_ca.as_deref())?;
            serve::user_remove(&mut db, &name, &who)?;
            println!("{name}: removed");
        }
        UserCommand::List { db, db_ca } => {
            let mut db = db::Db::open(&db, db_ca.as_deref())?;
            for (name, role) in serve::user_list(&mut db)? {
                println!("{name}\t{role}");
            }
        }
    }
    Ok(())
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen { out } => {
            let public = keys::keygen(&out)?;
            println!("{public}");
        }
        Command::Pubkey { identity } => {
            for key in keys::public_keys(&identity)? {
                println!("{key}");
            }
        }
        Command::Decrypt {
            identity,
            input,
            output,
            force,
        } => {
            decrypt::decrypt(&identity, &input, output.as_deref(), force)?;
        }
        Command::Fleet { broker, json, wait } => {
            let broker = broker.resolve()?;
            block_on(fleet::run(&broker, json, wait))?;
        }
        Command::Watch {
            broker,
            box_id,
            site,
        } => {
            let broker = broker.resolve()?;
            block_on(watch::run(&broker, site.as_deref(), box_id.as_deref()))?;
        }
        Command::Simulate { broker, sim } => {
            let broker = broker.resolve()?;
            let options = simulate::Options {
                boxes: sim.boxes,
                sites: sim.sites.unwrap_or(sim.boxes.div_ceil(10)),
                calls_per_day: sim.calls_per_day,
                speed: sim.speed,
                seconds: sim.seconds,
                recorded: sim.recorded,
                trunk_faults: sim.trunk_faults.clamp(0.0, 1.0),
                recording_bytes: sim.recording_bytes.max(2),
                connect_rate: sim.connect_rate,
                ack_wait: sim.ack_wait,
                batch_every: sim.batch_every.max(Duration::from_millis(100)),
            };
            // Thousands of boxes: every core.
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(simulate::run(&broker, options))?;
        }
        Command::Collect { broker, collect: c } => {
            let broker = broker.resolve()?;
            let options = collect::Options {
                db: c.db,
                db_ca: c.db_ca,
                keep_months: c.keep_months,
                group: c.group,
                recordings: c.recordings,
                client_id: c.client_id,
                max_message: c.max_message,
            };
            block_on(collect::run(&broker, options))?;
        }
        Command::Serve(a) => {
            let tz = match &a.tz {
                Some(z) => jiff::tz::TimeZone::get(z).with_context(|| format!("--tz {z}"))?,
                None => jiff::tz::TimeZone::system(),
            };
            let broker = match &a.broker {
                Some(url) => Some(
                    BrokerArgs {
                        broker: url.clone(),
                        root: a.root.clone(),
                        ca: a.broker_ca.clone(),
                        cert: a.broker_cert.clone(),
                        key: a.broker_key.clone(),
                        allow_plain: a.allow_plain,
                    }
                    .resolve()?,
                ),
                None => None,
            };
            let options = serve::Options {
                broker,
                recordings: a.recordings,
                identity: a.identity,
                db: a.db,
                db_ca: a.db_ca,
                listen: a.listen,
                redirect: a.redirect,
                cert: a.cert,
                key: a.key,
                idle_timeout: a.idle_timeout,
                session_max: a.session_max,
                login_attempts: a.login_attempts,
                metrics_token: a.metrics_token,
                tz,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve::run(options))?;
        }
        Command::User(u) => user(u)?,
        Command::Notify(a) => {
            if a.retry_failed {
                let mut db = db::Db::open(&a.db, a.db_ca.as_deref())?;
                println!(
                    "{} messages back to pending",
                    notify::retry_failed(&mut db)?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let options = notify::Options {
                db: a.db,
                db_ca: a.db_ca,
                config: a.config.context("--config")?,
                recordings: a.recordings,
                identity: a.identity,
                name: a
                    .name
                    .unwrap_or_else(|| format!("{}-{}", collect::host_name(), std::process::id())),
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let signal = {
                let _guard = runtime.enter();
                mqtt::shutdown_signal()?
            };
            // A thread of its own: the PostgreSQL client is a blocking one
            // that must not run on a runtime. It sets the flag when it
            // ends, so an error ends the wait below too.
            let flag = stop.clone();
            let worker = std::thread::Builder::new()
                .name("notify".into())
                .spawn(move || {
                    let r = notify::run(&options, &flag);
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    r
                })
                .context("starting the notifier")?;
            let flag = stop.clone();
            runtime.block_on(async move {
                tokio::select! {
                    () = signal => flag.store(true, std::sync::atomic::Ordering::Relaxed),
                    () = async {
                        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    } => {}
                }
            });
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("the notifier panicked"))??;
        }
        Command::Gaps { db, db_ca, json } => collect::gaps(&db, db_ca.as_deref(), json)?,
        Command::Export {
            db,
            db_ca,
            stream,
            site,
            box_id,
            latest,
        } => collect::export(
            &db,
            db_ca.as_deref(),
            &stream,
            site.as_deref(),
            box_id.as_deref(),
            latest,
        )?,
        Command::Cmd {
            broker,
            target,
            cmd: name,
            args,
            raw,
        } => {
            let broker = broker.resolve()?;
            let t = target.target();
            return block_on(cmd::cmd(&broker, &t, name.as_deref(), args.as_deref(), raw));
        }
        Command::Config(ConfigCommand::Push {
            broker,
            target,
            file,
            version,
        }) => {
            let broker = broker.resolve()?;
            return block_on(cmd::config_push(&broker, &target.target(), &file, version));
        }
        Command::Config(ConfigCommand::Get { broker, target }) => {
            let broker = broker.resolve()?;
            return block_on(cmd::config_get(&broker, &target.target()));
        }
        Command::Campaign(CampaignCommand::Push {
            broker,
            target,
            name,
            definition,
            list,
            chunk_bytes,
        }) => {
            let broker = broker.resolve()?;
            return block_on(campaign::push(
                &broker,
                &target.target(),
                &name,
                &definition,
                &list,
                chunk_bytes,
            ));
        }
        Command::Campaign(c) => {
            let (t, action) = match c {
                CampaignCommand::Status(t) => (t, None),
                CampaignCommand::Pause(t) => (t, Some("pause")),
                CampaignCommand::Resume(t) => (t, Some("resume")),
                CampaignCommand::Stop(t) => (t, Some("stop")),
                CampaignCommand::Push { .. } => unreachable!("matched above"),
            };
            let broker = t.broker.resolve()?;
            return block_on(campaign::control(
                &broker,
                &t.target.target(),
                &t.name,
                action,
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
