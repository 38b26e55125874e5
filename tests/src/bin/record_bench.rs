//! Call recording benchmark: what recording costs per call, in CPU and in
//! bytes written, with 200 calls recorded at once.
//!
//! ```sh
//! cargo run --release -p callbox-tests --bin record-bench -- \
//!     [--calls 200] [--seconds 60] [--format pcm16|alaw|ulaw|all] [--fast] [--dir PATH]
//! ```
//!
//! In process, against the real recorder: each run opens a real `Store` and
//! starts a real `Recorder` (the default `[recording]` settings) on a fresh
//! data directory under `--dir` (default: the current directory, so the
//! real disk rather than a tmpfs `/tmp`), starts `--calls` taps stereo in the
//! format and feeds every tap one frame of the caller and one of the other
//! side per 20 ms tick, as the bridges do, for `--seconds` of audio
//! (speech-like tones and noise, never silence). Taps start on ten
//! successive ticks, as calls that start at random moments would, so their
//! 500 ms chunks reach the writer spread over every tick rather than all on
//! one. Then it stops every tap, waits for the writer to finish every file
//! (header, `fdatasync`, move, SHA-256) and closes the recorder and the
//! store. The feeding loop is one task on a two-thread tokio runtime, as in
//! the daemon in real time.
//!
//! A baseline run feeds the same frames into taps that are never started;
//! full − baseline is the cost of recording itself. Each run is a child
//! process of its own, so CPU time (`getrusage`), peak RSS and the I/O
//! counters of `/proc/self/io` are that run's alone.
//!
//! By default ticks come from a 20 ms tokio interval (real time: a 60 s run
//! takes 60 s); `--fast` feeds without pacing and gives a throughput figure.
//! The file's header is rewritten by amount of audio, so that work is the
//! same in both modes; `syncfs` runs every `sync_every` of wall time, so
//! `--fast` syncs less often per second of audio. `--fast` keeps the feeder
//! at most 1,000 chunks ahead of the writer (by the process's `wchar`) so
//! that the writer's queue never overflows and drops audio.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use callbox_firmware::clock::Clock;
use callbox_firmware::recorder::config::RecordingConfig;
use callbox_firmware::recorder::wav::Format;
use callbox_firmware::recorder::{self, Recorder, Recording};
use callbox_firmware::store::{self, Store};
use callbox_hal::audio::{AudioFormat, Frame};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Value, json};

const USAGE: &str = "usage: record-bench [--calls N] [--seconds S] [--format pcm16|alaw|ulaw|all] [--fast] [--dir PATH]";
/// Frames a tap hands to the writer at once (the recorder's `CHUNK_FRAMES`).
const CHUNK_FRAMES: u64 = 25;
/// How far `--fast` lets the feeder run ahead of the writer, in chunks (the
/// writer's queue holds 2,048).
const FAST_SLACK_CHUNKS: u64 = 1000;
/// Name of the runtime's threads, which run the feeding loop (the calls'
/// side of recording: interleaving, encoding, handing chunks over).
const FEEDER: &str = "feeder";
/// Frames in the audio bank: one second, so that every tone loops cleanly.
const BANK: usize = 50;

#[derive(Debug, Clone)]
struct Opts {
    calls: usize,
    seconds: u64,
    formats: Vec<Format>,
    fast: bool,
    dir: Option<PathBuf>,
    /// Set in the child processes: `baseline` or a format.
    child: Option<String>,
}

fn format_named(s: &str) -> Result<Format> {
    Ok(match s {
        "pcm16" => Format::Pcm16,
        "alaw" => Format::Alaw,
        "ulaw" => Format::Ulaw,
        _ => bail!("unknown format `{s}`\n{USAGE}"),
    })
}

fn parse() -> Result<Option<Opts>> {
    let mut o = Opts {
        calls: 200,
        seconds: 60,
        formats: vec![Format::Pcm16, Format::Alaw, Format::Ulaw],
        fast: false,
        dir: None,
        child: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--calls" => o.calls = value()?.parse().context("--calls")?,
            "--seconds" => o.seconds = value()?.parse().context("--seconds")?,
            "--format" => {
                let v = value()?;
                if v != "all" {
                    o.formats = vec![format_named(&v)?];
                }
            }
            "--fast" => o.fast = true,
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--child" => o.child = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            _ => bail!("unknown argument `{a}`\n{USAGE}"),
        }
    }
    ensure!(
        o.calls > 0 && o.seconds > 0,
        "--calls and --seconds must be > 0"
    );
    Ok(Some(o))
}

fn main() -> Result<()> {
    let Some(o) = parse()? else {
        return Ok(());
    };
    match &o.child {
        Some(kind) => child(&o, kind),
        None => parent(&o),
    }
}

// ---- the parent: one child per run, then the table ----

fn parent(o: &Opts) -> Result<()> {
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let args: Vec<String> = std::env::args().collect();
    println!(
        "record-bench: {} calls recorded at once, {} s of audio each, stereo, {}",
        o.calls,
        o.seconds,
        if o.fast {
            "fed as fast as the writer takes it (--fast)"
        } else {
            "fed in real time (a 20 ms tick)"
        }
    );
    println!("  command: {}", args.join(" "));
    println!(
        "  data dirs under {} (filesystem {}, device {})",
        dir.display(),
        fs_type(&dir),
        block_dev(&dir).unwrap_or_else(|| "n/a".into())
    );
    println!(
        "  cpu: {}, {} cores",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let c = RecordingConfig::default();
    println!(
        "  recorder: default [recording] settings (header_every {:?} of audio, sync_every {:?} of wall time), 500 ms chunks",
        c.header_every, c.sync_every
    );
    if o.fast {
        println!(
            "  --fast: header rewrites go by amount of audio, as in real time; syncfs goes by wall time, so fewer per audio second"
        );
    }

    let kinds: Vec<&str> = std::iter::once("baseline")
        .chain(o.formats.iter().map(|f| f.name()))
        .collect();
    let mut runs = Vec::new();
    for kind in kinds {
        eprintln!("record-bench: {kind} run…");
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["--child", kind])
            .args(["--calls", &o.calls.to_string()])
            .args(["--seconds", &o.seconds.to_string()])
            .arg("--dir")
            .arg(&dir)
            .stderr(Stdio::inherit());
        if o.fast {
            c.arg("--fast");
        }
        let out = c.output()?;
        ensure!(out.status.success(), "the {kind} run failed");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.lines().last().unwrap_or_default())
            .with_context(|| format!("the {kind} run's report: {line}"))?;
        runs.push(v);
    }
    report(o, &runs);
    Ok(())
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn report(o: &Opts, runs: &[Value]) {
    let call_s = o.calls as f64 * o.seconds as f64;
    let call_min = call_s / 60.0;
    let per_call_s = |x: f64| x * 1e6 / call_s;
    let per_call_min = |x: f64| x / 1e3 / call_min;
    let base_cpu = runs
        .iter()
        .find(|r| r["kind"] == "baseline")
        .map_or(f64::NAN, |r| f(r, "cpu_s"));
    let name = |r: &Value| r["kind"].as_str().unwrap_or("?").to_string();
    println!();
    println!(
        "CPU, µs per call-second = CPU time / ({} calls × {} s)",
        o.calls, o.seconds
    );
    println!(
        "  {:<9} {:>8} {:>10} {:>8} {:>8} {:>8}",
        "run", "process", "recording", "feeder", "writer", "store"
    );
    for r in runs {
        let cpu = f(r, "cpu_s");
        let rec = if r["kind"] == "baseline" {
            "—".to_string()
        } else {
            format!("{:.1}", per_call_s(cpu - base_cpu))
        };
        println!(
            "  {:<9} {:>8.1} {:>10} {:>8.1} {:>8.1} {:>8.1}",
            name(r),
            per_call_s(cpu),
            rec,
            per_call_s(f(r, "feeder_cpu_s")),
            per_call_s(f(r, "writer_cpu_s")),
            per_call_s(f(r, "store_cpu_s")),
        );
    }
    println!();
    println!("Runs");
    println!(
        "  {:<9} {:>7} {:>7} {:>7} {:>12} {:>10} {:>9} {:>9} {:>7} {:>9}",
        "run",
        "wall s",
        "CPU s",
        "finish",
        "finish CPU s",
        "switches/s",
        "max late",
        "throttled",
        "others",
        "peak RSS"
    );
    for r in runs {
        println!(
            "  {:<9} {:>7.1} {:>7.2} {:>6.2}s {:>12.2} {:>10.0} {:>7.1}ms {:>8.1}s {:>6.1}s {:>6.1}MiB",
            name(r),
            f(r, "wall_s"),
            f(r, "cpu_s"),
            f(r, "finish_s"),
            f(r, "finish_cpu_s"),
            f(r, "context_switches") / f(r, "wall_s"),
            f(r, "max_late_ms"),
            f(r, "throttled_s"),
            f(r, "others_cpu_s"),
            f(r, "peak_rss_kib") / 1024.0,
        );
    }
    println!();
    println!(
        "Bytes, kB (1,000 bytes) per call-minute = bytes / ({} calls × {:.2} min)",
        o.calls,
        o.seconds as f64 / 60.0
    );
    println!(
        "  {:<9} {:>6} {:>9} {:>10} {:>9} {:>10} {:>10} {:>10}",
        "run", "files", "complete", "dropped", "file", "write()", "dirtied", "device"
    );
    for r in runs {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        println!(
            "  {:<9} {:>6} {:>9} {:>8}ms {:>9.1} {:>10.1} {:>10.1} {:>10}",
            name(r),
            n("files"),
            n("complete"),
            n("dropped_ms"),
            per_call_min(f(r, "file_bytes")),
            per_call_min(f(r, "wchar")),
            per_call_min(f(r, "write_bytes")),
            r["device_bytes"]
                .as_f64()
                .map_or("n/a".into(), |b| format!("{:.1}", per_call_min(b))),
        );
    }
    println!();
    for line in [
        "process    CPU time of the whole process (getrusage: user + system)",
        "recording  process − baseline: what recording adds to the calls",
        "feeder     CPU of the runtime's threads, which feed the taps (interleave, encode, hand over)",
        "writer     CPU of the \"recorder\" thread: appends, headers, syncfs, finishing files",
        "store      CPU of the \"store\" thread (the recordings' rows and events)",
        "           (thread figures: utime + stime from /proc, in 10 ms ticks)",
        "finish     from stopping every tap to the last file finished (header, fdatasync, move,",
        "           SHA-256), wall time and the process's CPU",
        "switches/s voluntary + involuntary context switches of the process per second of wall time",
        "max late   latest start of a 20 ms tick; throttled: --fast waiting for the writer",
        "others     CPU the rest of the machine used meanwhile (/proc/stat): the kernel's writeback",
        "           of these files, and whatever else ran (compare with the baseline's)",
        "file       sum of the finished files' sizes: what the recordings occupy",
        "write()    bytes the process passed to write()/pwrite() (wchar): audio, headers, SQLite",
        "dirtied    page-cache bytes the process dirtied (write_bytes): what it sends to the disk,",
        "           in 4 KiB pages; a header or file tail rewritten after a sync counts again",
        "device     sectors written to the data dir's block device meanwhile (whole device: adds",
        "           the filesystem's journal and metadata, and anything else writing to it)",
    ] {
        println!("  {line}");
    }
}

// ---- a child: one run ----

fn child(o: &Opts, kind: &str) -> Result<()> {
    callbox_firmware::logging::init("warn");
    let format = match kind {
        "baseline" => None,
        s => Some(format_named(s)?),
    };
    let dir = o.dir.clone().context("--dir")?;
    // As the daemon runs in real time: two worker threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(FEEDER)
        .enable_all()
        .build()?;
    // The feeding loop runs as a task on a worker thread, as a call's would.
    let o = o.clone();
    let mut v =
        rt.block_on(
            async move { tokio::spawn(async move { run(&o, format, &dir).await }).await },
        )??;
    v["kind"] = json!(kind);
    v["peak_rss_kib"] = json!(getrusage(UsageWho::RUSAGE_SELF)?.max_rss());
    println!("{v}");
    Ok(())
}

async fn run(o: &Opts, format: Option<Format>, dir: &Path) -> Result<Value> {
    let tmp = tempfile::Builder::new()
        .prefix("record-bench-")
        .tempdir_in(dir)?;
    let data = tmp.path().join("data");
    let clock = Clock::new(false);
    let (store, _) = Store::open(&data, clock.boot_id())?;
    let (recorder, thread, _) = Recorder::start(
        Arc::new(RecordingConfig::default()),
        &data,
        store.handle(),
        clock,
    )
    .await;
    ensure!(
        !recorder.is_stopped(),
        "the recorder cannot record in {}",
        data.display()
    );
    let mut taps: Vec<Recording> = (0..o.calls)
        .map(|i| Recording::for_call(&recorder, &format!("bench-{i:04}")))
        .collect();
    let bank = Bank::new();
    let ticks = o.seconds * 50;
    let chunk_bytes = format.map_or(0, |f| {
        CHUNK_FRAMES * 160 * 2 * u64::from(f.bytes_per_sample())
    });

    let cpu0 = cpu_s()?;
    let busy0 = machine_busy_s();
    let io0 = proc_io()?;
    let dev0 = device_bytes(&data);
    let writer0 = thread_cpu("recorder").map_or(0.0, |t| t.0);
    let store0 = thread_cpu("store").map_or(0.0, |t| t.0);
    let feeder0 = thread_cpu(FEEDER).map_or(0.0, |t| t.0);
    let switches0 = context_switches()?;
    let t0 = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    let mut max_late = Duration::ZERO;
    let mut throttled = Duration::ZERO;
    let mut handed = 0;
    // Call `i` starts at tick `i % CHUNK_FRAMES` and gets `ticks` frames: as
    // with calls that start at random moments, the taps hand their chunks
    // over on different ticks rather than all on the same one.
    for tick in 0..ticks + CHUNK_FRAMES - 1 {
        if !o.fast {
            let due = interval.tick().await;
            max_late = max_late.max(due.elapsed());
        }
        for (i, tap) in taps.iter_mut().enumerate() {
            let Some(n) = tick
                .checked_sub(i as u64 % CHUNK_FRAMES)
                .filter(|&n| n < ticks)
            else {
                continue;
            };
            if let Some(f) = format
                && n == 0
            {
                ensure!(tap.start("call", f, 2), "a recording did not start");
            }
            let (caller, other) = bank.frames(i, n);
            tap.other(other);
            tap.caller(caller);
            if (n + 1) % CHUNK_FRAMES == 0 {
                handed += chunk_bytes;
            }
        }
        if o.fast && chunk_bytes > 0 && tick % CHUNK_FRAMES == 0 {
            let w = Instant::now();
            while handed.saturating_sub(proc_io()?.wchar - io0.wchar)
                > FAST_SLACK_CHUNKS * chunk_bytes
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            throttled += w.elapsed();
        }
    }
    let fed = t0.elapsed();
    let cpu_fed = cpu_s()?;
    for t in &mut taps {
        t.stop();
    }
    // The writer has finished a file once it has left the open folder; the
    // thread is done once it sleeps with the folder empty.
    let open = data.join(recorder::DIR).join(recorder::OPEN_DIR);
    loop {
        let empty = std::fs::read_dir(&open)?.next().is_none();
        if empty && thread_cpu("recorder").is_none_or(|t| t.1 == 'S') {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let finished = t0.elapsed();
    let writer1 = thread_cpu("recorder").map_or(0.0, |t| t.0);
    store.handle().flush().await?;
    let store1 = thread_cpu("store").map_or(0.0, |t| t.0);
    let feeder1 = thread_cpu(FEEDER).map_or(0.0, |t| t.0);
    drop(taps);
    drop(recorder);
    thread.close().await;
    store.close().await;
    let wall = t0.elapsed();
    let cpu1 = cpu_s()?;
    let switches1 = context_switches()?;
    let busy1 = machine_busy_s();
    let io1 = proc_io()?;
    let dev1 = device_bytes(&data);

    let (files, file_bytes) = finished_files(&data.join(recorder::DIR))?;
    let rows = store::read_recordings(&data, None)?;
    let want_ms = o.seconds * 1000;
    let complete = rows
        .iter()
        .filter(|r| r.state == "complete" && r.error.is_none() && r.duration_ms == Some(want_ms))
        .count();
    let dropped_ms: u64 = rows
        .iter()
        .map(|r| want_ms.saturating_sub(r.duration_ms.unwrap_or(0)))
        .sum();
    for r in rows.iter().filter(|r| r.error.is_some()).take(3) {
        eprintln!("record-bench: {} {}: {:?}", r.id, r.state, r.error);
    }
    Ok(json!({
        "calls": o.calls,
        "seconds": o.seconds,
        "wall_s": wall.as_secs_f64(),
        "fed_s": fed.as_secs_f64(),
        "finish_s": (finished - fed).as_secs_f64(),
        "cpu_s": cpu1 - cpu0,
        "finish_cpu_s": cpu1 - cpu_fed,
        "others_cpu_s": busy0.zip(busy1).map(|(a, b)| b - a - (cpu1 - cpu0)),
        "writer_cpu_s": writer1 - writer0,
        "store_cpu_s": store1 - store0,
        "feeder_cpu_s": feeder1 - feeder0,
        "context_switches": switches1 - switches0,
        "max_late_ms": max_late.as_secs_f64() * 1e3,
        "throttled_s": throttled.as_secs_f64(),
        "files": files,
        "complete": complete,
        "dropped_ms": dropped_ms,
        "file_bytes": file_bytes,
        "wchar": io1.wchar - io0.wchar,
        "write_bytes": io1.write_bytes - io0.write_bytes,
        "device_bytes": dev0.zip(dev1).map(|(a, b)| b - a),
    }))
}

/// Finished recordings under `dir` (the open folder excluded): count and
/// total size.
fn finished_files(dir: &Path) -> Result<(u64, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_name() == recorder::OPEN_DIR {
            continue;
        }
        if e.file_type()?.is_dir() {
            let (a, b) = finished_files(&p)?;
            n += a;
            bytes += b;
        } else {
            n += 1;
            bytes += e.metadata()?.len();
        }
    }
    Ok((n, bytes))
}

// ---- audio ----

/// One second of speech-like audio per side (two tones under a 4 Hz
/// syllable envelope, plus noise); call `i` reads it from its own offset.
struct Bank {
    caller: Vec<Frame>,
    other: Vec<Frame>,
}

impl Bank {
    fn new() -> Bank {
        let mut seed: u32 = 0x2545_f491;
        let mut noise = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            f64::from(seed as i32) / f64::from(i32::MAX)
        };
        let mut side = |f1: f64, f2: f64| -> Vec<Frame> {
            (0..BANK)
                .map(|k| {
                    let mut fr = Frame::silence(AudioFormat::NARROWBAND, k as u32, k as u64 * 160);
                    for (j, s) in fr.samples_mut().iter_mut().enumerate() {
                        let t = (k * 160 + j) as f64 / 8000.0;
                        let tau = std::f64::consts::TAU;
                        let env = 0.5 - 0.5 * (tau * 4.0 * t).cos();
                        let x = env * (0.35 * (tau * f1 * t).sin() + 0.15 * (tau * f2 * t).sin())
                            + 0.03 * noise();
                        *s = (x * 32767.0) as i16;
                    }
                    fr
                })
                .collect()
        };
        let caller = side(220.0, 660.0);
        let other = side(180.0, 1100.0);
        Bank { caller, other }
    }

    fn frames(&self, call: usize, tick: u64) -> (&Frame, &Frame) {
        let k = (call * 7 + tick as usize) % BANK;
        (&self.caller[k], &self.other[(k + BANK / 2) % BANK])
    }
}

// ---- what the OS says ----

/// User + system CPU time of the whole process so far.
fn cpu_s() -> Result<f64> {
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(s(u.user_time()) + s(u.system_time()))
}

/// Voluntary and involuntary context switches of the whole process.
fn context_switches() -> Result<i64> {
    let u = getrusage(UsageWho::RUSAGE_SELF)?;
    Ok(u.voluntary_context_switches() + u.involuntary_context_switches())
}

#[derive(Debug, Clone, Copy)]
struct Io {
    wchar: u64,
    write_bytes: u64,
}

fn proc_io() -> Result<Io> {
    let text = std::fs::read_to_string("/proc/self/io").context("/proc/self/io")?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(": ")?.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Io {
        wchar: get("wchar"),
        write_bytes: get("write_bytes"),
    })
}

fn clock_tick() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// CPU seconds every CPU of the machine has been busy (`/proc/stat`), to
/// tell whether something else ran during a run.
fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.iter().sum::<u64>() - v.get(3)? - v.get(4)?;
    Some(busy as f64 / clock_tick())
}

/// CPU seconds (utime + stime) of this process's threads called `name`, and
/// the scheduler state of one of them.
fn thread_cpu(name: &str) -> Option<(f64, char)> {
    let tick = clock_tick();
    let mut found = None;
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // Fields after the command name: state is field 3, utime 14, stime 15.
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let state = rest.first()?.chars().next()?;
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        let cpu = (utime + stime) as f64 / tick + found.map_or(0.0, |f: (f64, char)| f.0);
        found = Some((cpu, state));
    }
    found
}

/// The filesystem type `dir` is on (the longest mount point above it).
fn fs_type(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (dev, at, ty) = (w.next()?, w.next()?, w.next()?);
            dir.starts_with(at)
                .then(|| (at.len(), format!("{ty} on {dev}")))
        })
        .max_by_key(|(n, _)| *n)
        .map_or_else(|| "unknown".into(), |(_, t)| t)
}

/// `major:minor` of the block device holding `dir`.
fn block_dev(dir: &Path) -> Option<String> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    Some(format!("{major}:{minor}")).filter(|_| major != 0)
}

/// Bytes written so far to the block device holding `dir` (all writers).
fn device_bytes(dir: &Path) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{}/stat", block_dev(dir)?)).ok()?;
    let sectors: u64 = stat.split_whitespace().nth(6)?.parse().ok()?;
    Some(sectors * 512)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("model name")?
                    .split_once(':')?
                    .1
                    .trim()
                    .to_string(),
            )
        })
        .unwrap_or_else(|| "unknown cpu".into())
}
