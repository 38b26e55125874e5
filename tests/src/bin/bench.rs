//! The performance harness: every figure of docs/PERFORMANCE.md's summary
//! table from one command.
//!
//! ```sh
//! cargo build --release --bins && target/release/bench all --write docs/PERFORMANCE.md
//! target/release/bench capacity --calls 100,500,1000   # one part
//! ```
//!
//! Parts (each prints its figures; `all` runs them in this order):
//! - `capacity`: the real `callboxd` in real time pinned to one core
//!   (`taskset`), N calls at once, each through an IVR menu keyed in band
//!   (DTMF detection on every inbound frame), a queue, a bridge to a
//!   simulated agent and a stereo A-law recording. The simulated far ends
//!   run on their own thread (`sim-world`), which the harness pins to
//!   another core: they play the sound card and the phones. For each N:
//!   the box's CPU per call-second over a window where all N calls are
//!   bridged, the share of inbound frames the box took more than 5 ms
//!   after their deadline (or dropped), RSS. Capacity is the largest N under
//!   0.1 % late.
//! - `floor`: the DSP floor per call-second from the criterion benchmark
//!   `cargo bench -p callbox-firmware --bench floor`.
//! - `instructions`: `valgrind --tool=callgrind` on a fixed real-time run,
//!   the box's threads' instructions per call-second, projected onto a
//!   Cortex-A72.
//! - `throughput`: 100,000 calls through IVR, queue and the record store
//!   in virtual time (`--fast`), calls per second of wall time.
//! - `sync`: the fleet link's drain rate (the `sync-bench` binary).
//! - `sip`: the real `callboxd` pinned to one core with N SIP calls at
//!   once in the IVR's voicemail, against a load generator in this
//!   process on another core (SIP and 20 ms PCMA over loopback): box CPU
//!   per call-second, the share of the box's RTP packets more than 5 ms
//!   late, frames its jitter buffers concealed; compared with `capacity`'s
//!   sim figure when both run (docs/sip.md, bench/sip.rs).
//! - `campaign`: an agentless campaign of 100,000 contacts in virtual
//!   time: the list's load, dialling decisions per second, peak RSS
//!   (bench/campaign.rs).
//! - `console`: the web console's idle RSS (on / off) and, under the demo's
//!   calls, 50 sessions' request latency and RSS (bench/console.rs).
//! - `footprint`: stripped binary sizes (x86_64 and aarch64, `firmware`
//!   profile), idle RSS with and without the fleet link, start-up time.
//!
//! `--write FILE` appends a dated section with the machine, the commit and
//! every figure to FILE. `--quick` shrinks every part (a smoke run, used by
//! the test suite); its figures are not for the table.
//!
//! For profiling: `BENCH_LOG=<RUST_LOG filter>` passes the daemons' logs
//! through (e.g. `warn,callbox_hal::sim=debug` logs every late frame);
//! `BENCH_WRAP="valgrind --tool=massif"` runs the capacity daemon under a
//! tool, after `taskset`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use callbox_tests::mqtt::{Broker, add_uplink};
use callbox_tests::{Site, callboxd, write_tone_hz};
use serde_json::Value;

#[path = "bench/campaign.rs"]
mod campaign;
#[path = "bench/console.rs"]
mod console;
#[path = "bench/hq.rs"]
mod hq;
#[path = "bench/sip.rs"]
mod sip;

const USAGE: &str = "usage: bench <all|capacity|floor|instructions|throughput|sync|footprint|sip|campaign|console|hq|hq-dashboard> \
[--calls N[,N…]] [--window SECS] [--core C] [--world-core C] [--quick] [--write FILE]";

/// A frame later than this counts as late (the sim backend's LATE_AFTER).
const LATE_MS: u64 = 5;
/// Capacity holds while fewer than this share of frames are late.
const LATE_LIMIT: f64 = 0.001;

#[derive(Debug, Clone)]
struct Opts {
    calls: Option<Vec<usize>>,
    window: u64,
    core: usize,
    world_core: usize,
    quick: bool,
    write: Option<PathBuf>,
}

/// One line of the summary table.
#[derive(Debug)]
struct Figure {
    what: String,
    value: String,
    target: String,
}

fn fig(what: impl Into<String>, value: impl Into<String>, target: impl Into<String>) -> Figure {
    Figure {
        what: what.into(),
        value: value.into(),
        target: target.into(),
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let part = args.next().unwrap_or_else(|| "all".into());
    if part == "-h" || part == "--help" {
        println!("{USAGE}");
        return Ok(());
    }
    let mut o = Opts {
        calls: None,
        window: 20,
        core: 1,
        world_core: 0,
        quick: false,
        write: None,
    };
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--calls" => {
                o.calls = Some(
                    val()?
                        .split(',')
                        .map(|n| n.trim().parse().context("--calls: numbers"))
                        .collect::<Result<_>>()?,
                )
            }
            "--window" => o.window = val()?.parse().context("--window")?,
            "--core" => o.core = val()?.parse().context("--core")?,
            "--world-core" => o.world_core = val()?.parse().context("--world-core")?,
            "--quick" => o.quick = true,
            "--write" => o.write = Some(val()?.into()),
            _ => bail!("unknown argument `{a}`\n{USAGE}"),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    ensure!(
        o.core < cores && o.world_core < cores,
        "--core/--world-core: this machine has cores 0..{}",
        cores - 1
    );
    if cfg!(debug_assertions) && !o.quick {
        eprintln!(
            "bench: this is a debug build; figures are meaningless (cargo build --release --bins)"
        );
    }
    let mut figures = Vec::new();
    const ALL: [&str; 10] = [
        "capacity",
        "floor",
        "instructions",
        "throughput",
        "sync",
        "footprint",
        "sip",
        "campaign",
        "console",
        "hq",
    ];
    let parts: Vec<&str> = match part.as_str() {
        "all" => ALL.to_vec(),
        // The dashboard's half of `hq` alone.
        p if ALL.contains(&p) || p == "hq-dashboard" => vec![p],
        other => bail!("unknown part `{other}`\n{USAGE}"),
    };
    let mut state = State::default();
    for p in parts {
        println!("== {p}");
        let got = match p {
            "capacity" => capacity(&o, &mut state),
            "floor" => floor(&o, &mut state),
            "instructions" => instructions(&o, &state),
            "throughput" => throughput(&o),
            "sync" => sync(&o),
            "footprint" => footprint(&o, &state),
            "sip" => sip::sip(&o, &state),
            "campaign" => campaign::campaign(&o),
            "console" => console::console(&o),
            "hq" => hq::hq(&o),
            "hq-dashboard" => hq::dashboard(&o, &callbox_tests::postgres::Postgres::start()),
            _ => unreachable!("parts are checked above"),
        }
        .with_context(|| format!("bench {p}"))?;
        figures.extend(got);
    }
    println!("\n| figure | value | target |\n|---|---|---|");
    for f in &figures {
        println!("| {} | {} | {} |", f.what, f.value, f.target);
    }
    if let Some(path) = &o.write {
        append(path, &part, &o, &figures)?;
        println!("appended to {}", path.display());
    }
    Ok(())
}

/// What one part passes to a later one.
#[derive(Debug, Default)]
struct State {
    /// Box CPU µs per call-second at the largest N measured.
    cpu_us_per_call_s: Option<f64>,
    /// DSP floor, µs per call-second.
    floor_us: Option<f64>,
    /// RSS at 100 and 1,000 calls, and per call, for the footprint table.
    rss_at: Vec<(usize, f64, f64)>,
}

// ---------------------------------------------------------------- capacity

/// The capacity site: `n` trunks and `n` stations, an IVR menu (a 2 s
/// prompt, "1" → the queue), one queue with `n` agents, stereo A-law
/// recording of every call. `record` false leaves recording off.
fn capacity_site(n: usize, record: bool) -> Site {
    let site = Site::new(n, n, 0, "");
    let dir = site.dir.path();
    write_tone_hz(&dir.join("prompts/menu.wav"), 440.0, 2000);
    write_tone_hz(&dir.join("caller.wav"), 600.0, 20_000);
    write_tone_hz(&dir.join("agent.wav"), 1000.0, 20_000);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let mut cfg = cfg.replace("greeting = \"greeting.wav\"\n", "");
    cfg += "\n[ivr]\nstart = \"main\"\n\n";
    cfg += "[ivr.node.main]\ntype = \"menu\"\ngreeting = \"menu.wav\"\n\
            first_digit_timeout = \"5s\"\noptions = { \"1\" = \"q\" }\non_max_failures = \"bye\"\n\n";
    cfg += "[ivr.node.q]\ntype = \"queue\"\nannounce = []\non_overflow = \"bye\"\n\n";
    cfg += "[ivr.node.bye]\ntype = \"hangup\"\n\n";
    let mut members = Vec::new();
    for i in 1..=n {
        cfg += &format!(
            "[acd.agent.a{i}]\nstation = \"desk-{i}\"\nlogged_in = true\nwrap_up = \"0s\"\n\n"
        );
        members.push(format!("a{i} = 0"));
    }
    cfg += &format!(
        "[acd.queue.q]\nmembers = {{ {} }}\nmax_wait = \"10m\"\n\n",
        members.join(", ")
    );
    if record {
        cfg += "[recording]\nmode = \"always\"\nformat = \"alaw\"\n";
    }
    site.write("site.toml", &cfg);
    site
}

/// `n` callers arriving `every_ms` apart who key "1" in band after the
/// menu prompt, then talk until `hangup_s` after the box answered; agents
/// who answer after 1 s and talk longer than any caller.
fn capacity_scenario(n: usize, every_ms: u64, hangup_s: u64) -> String {
    let mut sc = format!(
        "[[call]]\nat = \"0s\"\nfrom = \"1{{n:7}}\"\nto = \"4001\"\nrepeat = {n}\nevery = \"{every_ms}ms\"\n\
         hangup_after = \"{hangup_s}s\"\n\
         script = [{{ wait = \"2500ms\" }}, {{ press = \"1\" }}, {{ play = \"caller.wav\" }}, {{ play = \"caller.wav\" }}, {{ play = \"caller.wav\" }}, {{ play = \"caller.wav\" }}, {{ play = \"caller.wav\" }}, {{ play = \"caller.wav\" }}]\n\n"
    );
    for i in 1..=n {
        sc += &format!(
            "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"1s\"\ntalk = \"{}s\"\n\
             script = [{{ play = \"agent.wav\" }}, {{ play = \"agent.wav\" }}, {{ play = \"agent.wav\" }}, {{ play = \"agent.wav\" }}, {{ play = \"agent.wav\" }}, {{ play = \"agent.wav\" }}]\n\n",
            hangup_s + 60
        );
    }
    sc
}

/// CPU time of a process or thread so far (utime + stime), from
/// `/proc/…/stat`, in seconds.
fn cpu_of(stat: &Path) -> Option<f64> {
    let s = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name, which may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// A field of `/proc/PID/status` in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Thread id of the process's thread called `name`.
fn thread_named(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))?
        .file_name()
        .to_str()?
        .parse()
        .ok()
}

/// A running `callboxd` whose stderr is watched for the `ready` line.
struct Running {
    child: Child,
    ready: std::sync::mpsc::Receiver<Instant>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    fn start(mut c: Command) -> Result<(Running, Instant)> {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let t0 = Instant::now();
        let mut child = c.spawn().context("starting callboxd")?;
        let err = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains(" ready") && line.contains("backend=") {
                    let _ = tx.send(Instant::now());
                }
                if std::env::var_os("BENCH_LOG").is_some() {
                    eprintln!("{line}");
                }
                let mut l = keep.lock().unwrap();
                // The first lines (start-up, warnings), and every SIP
                // call's RTP summary (the `sip` part sums them).
                if l.len() < 200 || line.contains("RTP: ") {
                    l.push(line);
                }
            }
        });
        Ok((
            Running {
                child,
                ready: rx,
                log,
            },
            t0,
        ))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<Instant> {
        self.ready.recv_timeout(limit).map_err(|_| {
            let _ = self.child.kill();
            anyhow::anyhow!(
                "callboxd never said ready:\n{}",
                self.log.lock().unwrap().join("\n")
            )
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far (see `start` for which lines are kept).
    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn wait(mut self, limit: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                ensure!(
                    st.success(),
                    "callboxd exited with {st}:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
                return Ok(());
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                bail!("callboxd did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let st = self.child.wait()?;
        ensure!(st.success(), "callboxd exited with {st} after SIGTERM");
        Ok(())
    }
}

fn daemon_cmd(wrap: &[String]) -> Command {
    daemon_cmd_of(&callboxd(), wrap)
}

/// [`daemon_cmd`] for the binary `bin`.
fn daemon_cmd_of(bin: &Path, wrap: &[String]) -> Command {
    let mut c = Command::new(
        wrap.first()
            .map_or_else(|| bin.to_path_buf(), PathBuf::from),
    );
    if !wrap.is_empty() {
        c.args(&wrap[1..]).arg(bin);
    }
    // Warnings, and the `ready` line the harness times; not a line per
    // call, which a site at `info` would log.
    // BENCH_LOG (a RUST_LOG filter) shows the daemons' logs instead.
    match std::env::var("BENCH_LOG") {
        Ok(f) => c.env("RUST_LOG", format!("{f},callbox_firmware::app=info")),
        Err(_) => c.env("RUST_LOG", "warn,callbox_firmware::app=info"),
    };
    c
}

/// `run` on `site`'s config and data directory, with `scenario` if any.
fn run_site(c: &mut Command, site: &Site, scenario: Option<&Path>) {
    c.arg("run")
        .arg("--config")
        .arg(site.config())
        .arg("--data")
        .arg(site.data());
    if let Some(sc) = scenario {
        c.arg("--scenario").arg(sc);
    }
}

/// One capacity run of `n` calls.
#[derive(Debug)]
struct CapRun {
    n: usize,
    cpu_us: f64,
    world_cpu_share: f64,
    frames: u64,
    late: u64,
    sent_late: u64,
    dropped: u64,
    max_late_ms: f64,
    rss_ready_kib: u64,
    rss_kib: u64,
    records: usize,
    recordings_complete: usize,
}

impl CapRun {
    fn late_share(&self) -> f64 {
        (self.late + self.dropped) as f64 / (self.frames + self.dropped).max(1) as f64
    }
}

fn capacity_run(n: usize, o: &Opts) -> Result<CapRun> {
    let site = capacity_site(n, true);
    // Arrivals over `ramp`; every call is bridged (menu 2.5 s, ring 1 s)
    // by ramp + 6 s; the window runs from there; the first caller hangs up
    // after it.
    let ramp_ms = (n as u64 * 10).max(2000);
    let window = o.window;
    let settle = 6;
    let hangup_s = ramp_ms / 1000 + settle + window + 4;
    let sc = site.write(
        "calls.toml",
        &capacity_scenario(n, ramp_ms / n as u64, hangup_s),
    );
    let report = site.dir.path().join("report.json");
    let mut wrap: Vec<String> = vec!["taskset".into(), "-c".into(), o.core.to_string()];
    // BENCH_WRAP: a profiler to run the daemon under (e.g. "valgrind
    // --tool=massif"), after taskset.
    if let Ok(w) = std::env::var("BENCH_WRAP") {
        wrap.extend(w.split_whitespace().map(String::from));
    }
    let mut c = daemon_cmd(&wrap);
    run_site(&mut c, &site, Some(&sc));
    c.arg("--until-idle").arg("--sim-report").arg(&report);
    let (mut d, _) = Running::start(c)?;
    d.wait_ready(Duration::from_secs(30))?;
    let pid = d.pid();
    let rss_ready_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    // The thread names itself once it runs, which may be just after `ready`.
    let mut world = None;
    for _ in 0..200 {
        world = thread_named(pid, "sim-world");
        if world.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let world = world.context("no sim-world thread")?;
    let st = Command::new("taskset")
        .args(["-p", "-c", &o.world_core.to_string(), &world.to_string()])
        .stdout(Stdio::null())
        .status()?;
    ensure!(st.success(), "taskset -p on the sim-world thread failed");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(ramp_ms) + Duration::from_secs(settle));
    let proc_stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let world_stat = PathBuf::from(format!("/proc/{pid}/task/{world}/stat"));
    let (p0, w0, at0) = (cpu_of(&proc_stat), cpu_of(&world_stat), Instant::now());
    std::thread::sleep(Duration::from_secs(window));
    let (p1, w1, at1) = (cpu_of(&proc_stat), cpu_of(&world_stat), Instant::now());
    let rss_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let secs = at1.duration_since(at0).as_secs_f64();
    let (p, w) = (
        p1.zip(p0).map(|(a, b)| a - b).context("process CPU")?,
        w1.zip(w0).map(|(a, b)| a - b).context("sim-world CPU")?,
    );
    let limit = Duration::from_secs(hangup_s + 120) + Duration::from_millis(ramp_ms);
    d.wait(limit.saturating_sub(t0.elapsed()) + Duration::from_secs(60))?;
    let rep: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let get = |k: &str| rep[k].as_u64().unwrap_or(0);
    let recs = callbox_tests::export(&site.data(), &["records", "--json"]);
    let recordings = callbox_tests::export(&site.data(), &["records", "--table", "recordings"]);
    Ok(CapRun {
        n,
        cpu_us: (p - w) * 1e6 / (n as f64 * secs),
        world_cpu_share: w / secs,
        frames: get("frames_to_box"),
        late: get("frames_late"),
        sent_late: get("frames_sent_late"),
        dropped: get("frames_dropped"),
        max_late_ms: get("lateness_max_us") as f64 / 1000.0,
        rss_ready_kib,
        rss_kib,
        records: recs.len(),
        recordings_complete: recordings
            .iter()
            .filter(|r| r["state"] == "complete")
            .count(),
    })
}

fn capacity(o: &Opts, state: &mut State) -> Result<Vec<Figure>> {
    let ns = o.calls.clone().unwrap_or_else(|| {
        if o.quick {
            vec![5]
        } else {
            vec![50, 100, 250, 500, 750, 1000, 1250, 1500]
        }
    });
    let o = Opts {
        window: if o.quick { 3 } else { o.window },
        ..o.clone()
    };
    println!(
        "callboxd on core {}, simulated far ends on core {}; window {} s",
        o.core, o.world_core, o.window
    );
    println!(
        "{:>6} {:>12} {:>10} {:>11} {:>9} {:>12} {:>10} {:>10} {:>9} {:>8} {:>10}",
        "calls",
        "µs/call-s",
        "late %",
        "world late",
        "dropped",
        "max late ms",
        "RSS MiB",
        "KiB/call",
        "world %",
        "records",
        "recorded"
    );
    let mut runs = Vec::new();
    for &n in &ns {
        let r = capacity_run(n, &o)?;
        let per_call = (r.rss_kib as f64 - r.rss_ready_kib as f64) / n as f64;
        println!(
            "{:>6} {:>12.1} {:>10.4} {:>11} {:>9} {:>12.1} {:>10.1} {:>10.1} {:>9.1} {:>8} {:>10}",
            r.n,
            r.cpu_us,
            r.late_share() * 100.0,
            r.sent_late,
            r.dropped,
            r.max_late_ms,
            r.rss_kib as f64 / 1024.0,
            per_call,
            r.world_cpu_share * 100.0,
            r.records,
            r.recordings_complete
        );
        ensure!(r.records == n, "{n} calls left {} records", r.records);
        runs.push(r);
    }
    let best = runs
        .iter()
        .filter(|r| r.late_share() < LATE_LIMIT)
        .max_by_key(|r| r.n);
    let mut out = vec![fig(
        format!(
            "real-time capacity, 1 core: calls (IVR keyed in band + queue + agent bridge + stereo A-law recording) with < 0.1 % of frames > {LATE_MS} ms late (tried {})",
            ns.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        best.map_or_else(|| "none".into(), |r| format!("**{}**", r.n)),
        "≥ 1,000",
    )];
    if let Some(best) = best {
        state.cpu_us_per_call_s = Some(best.cpu_us);
        out.push(fig(
            format!(
                "box CPU per call-second at {} calls (sim far ends excluded)",
                best.n
            ),
            format!("**{:.1} µs**", best.cpu_us),
            "≤ 100 µs",
        ));
    } else if let Some(r) = runs.first() {
        state.cpu_us_per_call_s = Some(r.cpu_us);
    }
    for r in &runs {
        out.push(fig(
            format!(
                "{} calls: late frames (of them sent late by the far ends) / max lateness / box CPU per call-second / RSS",
                r.n
            ),
            format!(
                "{:.4} % ({}) / {:.1} ms / {:.1} µs / {:.1} MiB",
                r.late_share() * 100.0,
                r.sent_late,
                r.max_late_ms,
                r.cpu_us,
                r.rss_kib as f64 / 1024.0
            ),
            "",
        ));
        let per_call = (r.rss_kib as f64 - r.rss_ready_kib as f64) / r.n as f64;
        state
            .rss_at
            .push((r.n, r.rss_kib as f64 / 1024.0, per_call));
    }
    Ok(out)
}

// ---------------------------------------------------------------- floor

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

fn floor(o: &Opts, state: &mut State) -> Result<Vec<Figure>> {
    let mut c = Command::new("cargo");
    c.current_dir(workspace())
        .args(["bench", "-p", "callbox-firmware", "--bench", "floor", "--"]);
    if o.quick {
        c.args([
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]);
    }
    let st = c.status().context("cargo bench")?;
    ensure!(
        st.success(),
        "cargo bench -p callbox-firmware --bench floor failed"
    );
    let est = target_dir().join("criterion/dsp_floor/call_second/new/estimates.json");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&est).with_context(|| format!("reading {}", est.display()))?,
    )?;
    let ns = v["mean"]["point_estimate"]
        .as_f64()
        .context("mean in estimates.json")?;
    let us = ns / 1000.0;
    state.floor_us = Some(us);
    println!("DSP floor: {us:.2} µs per call-second");
    let mut out = vec![fig(
        "DSP floor per call-second: G.711 A-law in and out, DTMF detection on the inbound audio, both sides encoded into the recording buffer",
        format!("{us:.2} µs"),
        "",
    )];
    if let Some(cpu) = state.cpu_us_per_call_s {
        out.push(fig(
            "full system / DSP floor",
            format!("**{:.1}×**", cpu / us),
            "≤ 3×",
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- instructions

/// One callgrind run of `n` calls of `talk` seconds: the box threads' and
/// the far ends' instructions, and the call-seconds.
fn callgrind_run(n: usize, talk: u64) -> Result<(u64, u64, f64)> {
    let site = capacity_site(n, true);
    let sc = site.write("calls.toml", &capacity_scenario(n, 200, talk));
    let out_dir = site.dir.path().join("callgrind");
    std::fs::create_dir(&out_dir)?;
    let mut c = daemon_cmd(&[
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--separate-threads=yes".into(),
        format!("--callgrind-out-file={}/cg.%p", out_dir.display()),
    ]);
    run_site(&mut c, &site, Some(&sc));
    c.arg("--until-idle");
    let (d, _) = Running::start(c)?;
    d.wait(Duration::from_secs(900))?;
    let recs = callbox_tests::export(&site.data(), &["records", "--json"]);
    ensure!(recs.len() == n, "{n} calls left {} records", recs.len());
    // Call-seconds: from answer to end, as billed.
    let call_s: f64 = recs
        .iter()
        .map(|r| r["answered_ms"].as_f64().unwrap_or(0.0) / 1000.0)
        .sum();
    ensure!(
        call_s > 0.0,
        "no answered call-seconds in the records: {:?}",
        recs.first()
    );
    let (mut box_ir, mut world_ir, mut threads) = (0u64, 0u64, 0);
    for e in std::fs::read_dir(&out_dir)? {
        let text = std::fs::read_to_string(e?.path())?;
        let total = text
            .lines()
            .find_map(|l| l.strip_prefix("totals: "))
            .or_else(|| text.lines().find_map(|l| l.strip_prefix("summary: ")))
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        threads += 1;
        // The far ends' thread runs the sim world and never a call flow
        // (it may log, through the firmware's logging layer).
        let world = text.contains("sim::world::") && !text.contains("callbox_firmware::ivr::");
        if world {
            world_ir += total;
        } else {
            box_ir += total;
        }
    }
    ensure!(
        world_ir > 0,
        "no sim-world thread among {threads} callgrind outputs"
    );
    println!(
        "  {n} calls: {threads} threads; box {box_ir} instructions, far ends {world_ir}; {call_s:.0} call-seconds"
    );
    Ok((box_ir, world_ir, call_s))
}

fn instructions(o: &Opts, state: &State) -> Result<Vec<Figure>> {
    // Two runs, the second with three times the calls: the difference is
    // what calls cost, without start-up and the idle box.
    let (n1, n2, talk) = if o.quick { (1, 3, 4) } else { (5, 15, 30) };
    let (ir1, _, cs1) = callgrind_run(n1, talk)?;
    let (ir2, _, cs2) = callgrind_run(n2, talk)?;
    ensure!(cs2 > cs1, "the larger run had no more call-seconds");
    let per = ir2.saturating_sub(ir1) as f64 / (cs2 - cs1);
    let n = n2;
    println!(
        "callgrind: {:.0} instructions per call-second ({n2} calls minus {n1} calls); all of the {n2}-call run: {:.0}",
        per,
        ir2 as f64 / cs2
    );
    // Cortex-A72 at 1.5 GHz (Pi 4; 1.8 GHz on newer boards). Sustained IPC
    // on this kind of code (branchy async bookkeeping, short DSP loops,
    // syscalls) assumed 1.0; x86-64 and AArch64 instruction counts taken
    // as equal (AArch64 usually needs a little more).
    let a72_us = per / 1.5e3 / 1.0;
    let calls_per_core = 1e6 / a72_us;
    let mut out = vec![
        fig(
            format!(
                "instructions per call-second, box threads (callgrind; a run of {n} calls minus one of {n1}, {talk} s each; x86-64)"
            ),
            format!("**{:.2} M**", per / 1e6),
            "",
        ),
        fig(
            "projected onto one Cortex-A72 core at 1.5 GHz, IPC 1.0 (per call-second / calls per core at 100 %)",
            format!("{a72_us:.0} µs / {calls_per_core:.0} calls"),
            "",
        ),
    ];
    if let Some(cpu) = state.cpu_us_per_call_s {
        out.push(fig(
            "this machine: instructions per µs of box CPU (effective rate of the capacity run)",
            format!("{:.0}", per / cpu),
            "",
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- throughput

fn throughput(o: &Opts) -> Result<Vec<Figure>> {
    let n: usize = o
        .calls
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(if o.quick { 200 } else { 100_000 });
    let agents = 50;
    let site = capacity_site_throughput(agents);
    // About 50 calls at once: each holds an agent ~4.5 s, one arrives
    // every 100 ms.
    let sc = format!(
        "[[call]]\nat = \"0s\"\nfrom = \"1{{n:7}}\"\nto = \"4001\"\nrepeat = {n}\nevery = \"100ms\"\n\
         hangup_after = \"7s\"\nscript = [{{ wait = \"1200ms\" }}, {{ press = \"1\" }}, {{ play = \"caller.wav\" }}]\n\n{}",
        (1..=agents)
            .map(|i| format!(
                "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"500ms\"\ntalk = \"1h\"\n\n"
            ))
            .collect::<String>()
    );
    let path = site.write("calls.toml", &sc);
    let t0 = Instant::now();
    let mut c = daemon_cmd(&[]);
    run_site(&mut c, &site, Some(&path));
    c.args(["--fast", "--until-idle"]);
    let (d, _) = Running::start(c)?;
    let pid = d.pid();
    let hwm = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let keep = hwm.clone();
    std::thread::spawn(move || {
        while let Some(k) = status_kib(pid, "VmHWM") {
            keep.fetch_max(k, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    d.wait(Duration::from_secs(7200))?;
    let wall = t0.elapsed().as_secs_f64();
    let out = Command::new(callboxd())
        .args(["records", "--json", "--data"])
        .arg(site.data())
        .output()?;
    ensure!(out.status.success(), "callboxd records failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut total, mut agent) = (0usize, 0usize);
    for l in text.lines() {
        total += 1;
        if l.contains("\"agent\":\"a") {
            agent += 1;
        }
    }
    ensure!(total == n, "{n} calls left {total} records");
    let rate = n as f64 / wall;
    let peak = hwm.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    println!(
        "{n} calls (menu keyed in band, queue, agent, record) in {wall:.1} s wall: {rate:.0} calls/s; {agent} reached an agent; peak RSS {peak:.1} MiB"
    );
    Ok(vec![fig(
        format!(
            "call throughput in virtual time (`--fast`): {n} calls, each IVR menu keyed in band → queue → agent (50 agents) → call record; {agent} reached an agent; peak RSS {peak:.1} MiB"
        ),
        format!("**{rate:.0} calls/s** ({wall:.0} s)"),
        "",
    )])
}

/// The capacity site's IVR and queue, with `agents` trunks and agents, a
/// 1 s prompt and no recording (100,000 recordings would fill the disk).
fn capacity_site_throughput(agents: usize) -> Site {
    let site = capacity_site(agents, false);
    write_tone_hz(&site.dir.path().join("prompts/menu.wav"), 440.0, 1000);
    write_tone_hz(&site.dir.path().join("caller.wav"), 600.0, 5000);
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    // Enough trunks that nobody is turned away.
    let mut extra = String::new();
    for i in agents + 1..=agents + 30 {
        extra += &format!("[[line]]\nid = \"trunk-{i}\"\nkind = \"trunk\"\n\n");
    }
    site.write("site.toml", &format!("{extra}{cfg}"));
    site
}

// ---------------------------------------------------------------- sync

fn sync(o: &Opts) -> Result<Vec<Figure>> {
    let records = if o.quick { 2000 } else { 100_000 };
    let exe = std::env::current_exe()?;
    let sb = exe.with_file_name("sync-bench");
    let out = Command::new(&sb)
        .args(["--records", &records.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", sb.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    ensure!(out.status.success(), "sync-bench failed");
    // "  box drain:   N records, …: R records/s" and "  rumqttc: …: R msg/s".
    let rate = |line: &str, unit: &str| -> Option<f64> {
        let l = text.lines().find(|l| l.trim_start().starts_with(line))?;
        let (_, tail) = l.rsplit_once(": ")?;
        tail.strip_suffix(unit)?.trim().parse().ok()
    };
    let box_rate = rate("box drain:", "records/s").context("box rate in sync-bench output")?;
    let loop_rate = rate("rumqttc:", "msg/s").context("loop rate in sync-bench output")?;
    Ok(vec![
        fig(
            format!("sync drain of a {records}-record backlog to a local mosquitto"),
            format!("**{box_rate:.0} records/s**"),
            "≥ 10,000",
        ),
        fig(
            "… against a plain rumqttc QoS 1 publish loop, same broker, same run",
            format!("**{:.1}×** ({loop_rate:.0} msg/s)", box_rate / loop_rate),
            "≥ 0.5",
        ),
    ])
}

// ---------------------------------------------------------------- footprint

fn file_mib(p: &Path) -> Result<f64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .len() as f64
        / (1024.0 * 1024.0))
}

fn footprint(o: &Opts, state: &State) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    // Start-up and idle RSS of what the image ships: the x86_64 `firmware`
    // build once it is built, else the build the harness came with.
    let mut daemon = callboxd();
    if !o.quick {
        for (target, label) in [
            (None, "x86_64"),
            (Some("aarch64-unknown-linux-gnu"), "aarch64"),
        ] {
            let mut c = Command::new("cargo");
            c.current_dir(workspace()).args([
                "build",
                "--profile",
                "firmware",
                "-p",
                "callbox-firmware",
                "--bin",
                "callboxd",
            ]);
            if let Some(t) = target {
                c.args(["--target", t]);
            }
            let st = c.status().context("cargo build --profile firmware")?;
            ensure!(st.success(), "building the {label} firmware binary failed");
            let bin = match target {
                Some(t) => target_dir().join(t).join("firmware/callboxd"),
                None => target_dir().join("firmware/callboxd"),
            };
            let mib = file_mib(&bin)?;
            if target.is_none() {
                daemon = bin.clone();
            }
            println!("{label}: {} {mib:.2} MiB", bin.display());
            out.push(fig(
                format!("stripped `callboxd`, {label}, `firmware` profile"),
                format!("**{mib:.2} MiB**"),
                if label == "aarch64" { "≤ 6 MiB" } else { "" },
            ));
        }
    }
    // Idle and start-up on the demo site (6 trunks, 2 stations, IVR).
    let demo = workspace().join("firmware/demo");
    let site = Site {
        dir: tempfile::tempdir()?,
    };
    for e in std::fs::read_dir(&demo)? {
        let e = e?;
        copy_tree(&e.path(), &site.dir.path().join(e.file_name()))?;
    }
    let starts = if o.quick { 2 } else { 10 };
    let mut ready_ms = Vec::new();
    for _ in 0..starts {
        let mut c = daemon_cmd_of(&daemon, &[]);
        run_site(&mut c, &site, None);
        let (mut d, t0) = Running::start(c)?;
        let at = d.wait_ready(Duration::from_secs(30))?;
        ready_ms.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        d.stop()?;
    }
    ready_ms.sort_by(f64::total_cmp);
    let median = ready_ms[ready_ms.len() / 2];
    let max = ready_ms[ready_ms.len() - 1];
    println!("ready after exec: median {median:.1} ms, max {max:.1} ms over {starts} starts");
    let build = if daemon == callboxd() {
        "this build"
    } else {
        "`firmware` build"
    };
    out.push(fig(
        format!("start-up, exec → `ready` (lines up, store open), {build}, demo site, existing database, median / max of {starts}"),
        format!("**{median:.0} ms** / {max:.0} ms"),
        "≤ 200 ms",
    ));
    let settle = Duration::from_secs(if o.quick { 1 } else { 5 });
    let idle = || -> Result<f64> {
        let mut c = daemon_cmd_of(&daemon, &[]);
        run_site(&mut c, &site, None);
        let (mut d, _) = Running::start(c)?;
        d.wait_ready(Duration::from_secs(30))?;
        std::thread::sleep(settle);
        let kib = status_kib(d.pid(), "VmRSS").context("VmRSS")?;
        d.stop()?;
        Ok(kib as f64 / 1024.0)
    };
    let plain = idle()?;
    let broker = Broker::start();
    add_uplink(&site, &broker.uplink("bench-box", ""));
    let linked = idle()?;
    println!("idle RSS: {plain:.1} MiB; with the fleet link up: {linked:.1} MiB");
    out.push(fig(
        format!("idle RSS, {build}, real time, demo site (8 lines, IVR), no fleet link / fleet link connected"),
        format!("**{plain:.1} MiB** / {linked:.1} MiB"),
        "≤ 10 MiB",
    ));
    for (n, rss, per) in &state.rss_at {
        if [100, 1000].contains(n) || o.quick {
            out.push(fig(
                format!("RSS with {n} calls in progress (capacity run; per call above the same daemon before its first call)"),
                format!("{rss:.1} MiB; **{per:.0} KiB per call**"),
                "≤ 64 KiB per call",
            ));
        }
    }
    Ok(out)
}

pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- report

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .map_or(0.0, |k| k as f64 / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let kernel = run_text("uname", &["-r"]);
    let rustc = run_text("rustc", &["-V"]);
    format!("{model}, {cores} cores, {mem:.0} GiB, Linux {kernel}, {rustc}")
}

fn run_text(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(workspace())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn append(path: &Path, part: &str, o: &Opts, figures: &[Figure]) -> Result<()> {
    let date = run_text("date", &["-u", "+%Y-%m-%d"]);
    let commit = run_text("git", &["rev-parse", "--short", "HEAD"]);
    let mut cmdline = format!("target/release/bench {part}");
    if let Some(c) = &o.calls {
        cmdline += &format!(
            " --calls {}",
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if o.quick {
        cmdline += " --quick";
    }
    let mut s = format!(
        "\n### Harness run {date} (commit {commit})\n\nMachine: {}.\nCommand: `cargo build --release --bins && {cmdline}`.\n\n| figure | value | target |\n|---|---|---|\n",
        machine()
    );
    for f in figures {
        s += &format!("| {} | {} | {} |\n", f.what, f.value, f.target);
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(s.as_bytes())?;
    Ok(())
}
