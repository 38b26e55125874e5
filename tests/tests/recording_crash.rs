//! Recordings against the two ways a box loses its footing: the daemon
//! killed outright (power cut, watchdog, OOM killer) and a data disk that
//! fills up.
//!
//! The crash test runs the real `callboxd` in real time, kills it with
//! SIGKILL at a random moment in the middle of recorded calls, restarts it so
//! that it repairs `recordings/.open/`, and reads every recording back with
//! two independent readers (hound and sox) against the audio that was sent.
//! The kill times come from a seeded generator: the seed is printed, and
//! `CALLBOX_CRASH_SEED=<seed>` replays a run exactly.
//!
//! The disk tests put the data directory on a 3 MiB tmpfs in a private
//! mount namespace (`unshare`; as root, or as a user where user namespaces
//! are allowed) and fill it with recordings in virtual time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use callbox_tests::{
    RUN_LIMIT, Site, callboxd, cmd, export, output_within, text, tone_level, write_tone_hz,
};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Shared: sites, exports, reading recordings back.

/// How long the consent notice (`prompts/notice.wav`) plays.
const NOTICE_MS: u64 = 1500;

/// A site with 4 trunks and 4 desks whose agents `a1`..`a4` all serve the
/// queue `sales`, every caller going straight to that queue, and the given
/// `[recording]` section.
fn site_config(recording: &str) -> String {
    let mut cfg = String::from("[site]\nid = \"crash\"\n\n[log]\nlevel = \"info\"\n\n");
    for i in 1..=4 {
        cfg += &format!("[[line]]\nid = \"trunk-{i}\"\nkind = \"trunk\"\n\n");
    }
    for i in 1..=4 {
        cfg += &format!("[[line]]\nid = \"desk-{i}\"\nkind = \"station\"\n\n");
    }
    cfg += r#"[inbound]

[ivr]
start = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"

[acd.queue.sales]
members = { a1 = 0, a2 = 0, a3 = 0, a4 = 0 }

"#;
    for i in 1..=4 {
        cfg += &format!("[acd.agent.a{i}]\nstation = \"desk-{i}\"\nlogged_in = true\n\n");
    }
    cfg += recording;
    cfg
}

/// The four agents, each answering `answer_after_ms` after the ring and
/// talking (1000 Hz) from the moment they pick up.
fn agents(answer_after_ms: u64) -> String {
    (1..=4)
        .map(|i| {
            format!(
                "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"{answer_after_ms}ms\"\nscript = [ {{ play = \"agent.wav\" }} ]\n\n"
            )
        })
        .collect()
}

/// Writes the callers' and agents' voices (600 Hz and 1000 Hz, 30 s) and
/// the consent notice into `dir`.
fn write_voices(dir: &Path) {
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    write_tone_hz(&dir.join("prompts/notice.wav"), 1400.0, NOTICE_MS as u32);
    write_tone_hz(&dir.join("caller.wav"), 600.0, 30_000);
    write_tone_hz(&dir.join("agent.wav"), 1000.0, 30_000);
}

fn records(data: &Path) -> Vec<Value> {
    export(data, &["records", "--json"])
}

fn recordings(data: &Path) -> Vec<Value> {
    export(data, &["recordings", "--json"])
}

fn alarms(data: &Path) -> Vec<Value> {
    export(data, &["records", "--table", "alarms"])
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string `{key}` in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

/// An RFC 3339 time of the exports, as a `SystemTime`.
fn time_of(v: &Value, key: &str) -> SystemTime {
    let t: jiff::Timestamp = str_of(v, key)
        .parse()
        .unwrap_or_else(|e| panic!("`{key}` of {v}: {e}"));
    SystemTime::from(t)
}

/// Seconds from `a` to `b` (negative if `b` is earlier).
fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A recording format as the files carry it.
#[derive(Debug, Clone, Copy)]
struct Format {
    name: &'static str,
    /// Bytes of the header the recorder writes (RIFF, fmt, [fact], data).
    header_len: u64,
    bytes_per_sample: u64,
    /// What `sox --i -e` calls it.
    sox: &'static str,
}

const PCM16: Format = Format {
    name: "pcm16",
    header_len: 44,
    bytes_per_sample: 2,
    sox: "Signed Integer PCM",
};
const ALAW: Format = Format {
    name: "alaw",
    header_len: 58,
    bytes_per_sample: 1,
    sox: "A-law",
};
const ULAW: Format = Format {
    name: "ulaw",
    header_len: 58,
    bytes_per_sample: 1,
    sox: "u-law",
};

fn format_named(name: &str) -> Format {
    [PCM16, ALAW, ULAW]
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("unknown format `{name}`"))
}

fn sox_info(path: &Path, flag: &str) -> String {
    let out = Command::new("sox")
        .args(["--i", flag])
        .arg(path)
        .output()
        .expect("sox is installed (scripts/test-all installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sox --i {flag} {}: {}",
        path.display(),
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every sample of a recording as sox decodes it (16-bit, interleaved).
/// sox must read it to the end without a warning: a header that promises
/// more (or less) audio than the file holds makes it warn.
fn sox_samples(path: &Path) -> Vec<i16> {
    let out = Command::new("sox")
        .arg("-D")
        .arg(path)
        .args(["-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-"])
        .output()
        .expect("sox is installed (scripts/test-all installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sox decoding {}: status {:?}, stderr {}",
        path.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// What reading a recording back found.
struct ReadBack {
    /// Audio length in milliseconds (whole sample frames).
    ms: u64,
    /// Left channel (the caller).
    left: Vec<i16>,
    /// Right channel (what the caller hears).
    right: Vec<i16>,
}

/// Reads the stereo recording `path` of `format` the way headquarters
/// would: `sox --i` for the header, sox decoding every sample, and for
/// 16-bit PCM hound too (hound does not read G.711), which must agree with
/// sox sample for sample. Checks the header describes exactly the audio
/// the file holds.
fn read_back(path: &Path, format: Format, what: &str) -> ReadBack {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()))
        .len();
    assert_eq!(sox_info(path, "-e"), format.sox, "{what}");
    assert_eq!(sox_info(path, "-c"), "2", "{what}");
    assert_eq!(sox_info(path, "-r"), "8000", "{what}");
    let data = len
        .checked_sub(format.header_len)
        .unwrap_or_else(|| panic!("{what}: {} is {len} bytes", path.display()));
    assert_eq!(
        data % (2 * format.bytes_per_sample),
        0,
        "{what}: a partial sample frame at the end of {}",
        path.display()
    );
    let frames = data / (2 * format.bytes_per_sample);
    let ms = frames * 1000 / 8000;
    let secs: f64 = sox_info(path, "-D").parse().unwrap();
    assert!(
        (secs * 1000.0 - ms as f64).abs() < 0.5,
        "{what}: sox says {secs} s, the file holds {ms} ms of audio"
    );

    let samples = sox_samples(path);
    assert_eq!(
        samples.len() as u64,
        frames * 2,
        "{what}: sox decoded {} samples, the file holds {frames} frames",
        samples.len()
    );
    if format.name == "pcm16" {
        let reader = hound::WavReader::open(path)
            .unwrap_or_else(|e| panic!("{what}: hound opens {}: {e}", path.display()));
        assert_eq!(
            reader.spec(),
            hound::WavSpec {
                channels: 2,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
            "{what}"
        );
        assert_eq!(u64::from(reader.duration()), frames, "{what}");
        let by_hound: Vec<i16> = reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{what}: hound reads {}: {e}", path.display()));
        assert!(
            by_hound == samples,
            "{what}: hound and sox read different audio"
        );
    }
    ReadBack {
        ms,
        left: samples.iter().step_by(2).copied().collect(),
        right: samples.iter().skip(1).step_by(2).copied().collect(),
    }
}

/// The caller's 600 Hz is on the left and the agent's 1000 Hz on the right,
/// judged on the second half of the file (the start of the right channel
/// may be a few frames of silence while the two sides line up).
fn assert_voices(r: &ReadBack, what: &str) {
    let half = |s: &[i16]| s[s.len() / 2..].to_vec();
    let (left, right) = (half(&r.left), half(&r.right));
    let (l600, l1000) = (tone_level(&left, 600.0), tone_level(&left, 1000.0));
    let (r600, r1000) = (tone_level(&right, 600.0), tone_level(&right, 1000.0));
    // The tones are written at amplitude 8000; G.711 keeps them within a
    // few percent.
    assert!(
        l600 > 4000.0 && l1000 < l600 / 8.0,
        "{what}: left channel 600 Hz {l600:.0}, 1000 Hz {l1000:.0}: not the caller"
    );
    assert!(
        r1000 > 4000.0 && r600 < r1000 / 8.0,
        "{what}: right channel 1000 Hz {r1000:.0}, 600 Hz {r600:.0}: not the agent"
    );
}

/// Every file under `data/recordings`, relative to `data`, `.open/`
/// included.
fn files_under(data: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&data.join("recordings"), data, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// SIGKILL in the middle of recorded calls.

/// xorshift64*: small, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// `CALLBOX_CRASH_SEED` (decimal or 0x-hex) if set, else a fresh one.
fn crash_seed() -> u64 {
    match std::env::var("CALLBOX_CRASH_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("CALLBOX_CRASH_SEED={s}: {e}"))
        }
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
    .max(1) // xorshift never leaves 0
}

/// Kill-and-restart cycles. Each lasts its kill time (2.5–9 s) plus a few
/// tenths of a second for the restart and the checks: about 45 s in all,
/// 65 s at worst.
const CYCLES: usize = 7;
/// How long after start-up the kill may come, in milliseconds.
const KILL_AFTER_MS: (u64, u64) = (2500, 9000);
/// How far the scenario clock and a recording's start may be from what the
/// scenario says. The audio itself is paced by the daemon in real time;
/// this only covers the tokio timers and the test noticing "ready".
const TIMING_SLACK_S: f64 = 1.0;
/// The issue's tolerance: a repaired recording is within 2 s of the audio
/// sent before the kill (the daemon loses at most its unsent 200 ms chunk).
const DURATION_TOLERANCE_S: f64 = 2.0;

/// One caller of a cycle.
#[derive(Debug)]
struct Planned {
    caller: String,
    /// Arrival, from the start of the scenario.
    at_ms: u64,
    /// When the agent picks up and the recording starts.
    bridged_ms: u64,
}

/// A running daemon whose log is collected; the moment it logged "ready"
/// is sent on `ready`.
struct Daemon {
    child: std::process::Child,
    log: Arc<Mutex<Vec<String>>>,
    ready: mpsc::Receiver<Instant>,
}

impl Daemon {
    fn start(site: &Site, scenario: &Path) -> Daemon {
        let mut child = cmd()
            .args(["run", "--config"])
            .arg(site.config())
            .arg("--data")
            .arg(site.data())
            .arg("--scenario")
            .arg(scenario)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting callboxd");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, ready) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Logging goes to stderr: "   0.0079s  INFO ready site=…".
                if line.contains(" ready ") {
                    let _ = tx.send(Instant::now());
                }
                lines.lock().unwrap().push(line);
            }
        });
        Daemon { child, log, ready }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

#[test]
fn sigkill_at_random_points_keeps_every_recording_playable() {
    let seed = crash_seed();
    eprintln!("crash test seed {seed} (replay with CALLBOX_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let began = Instant::now();
    let mut site: Option<Site> = None;
    // Calls of earlier cycles in the same data directory, by caller.
    let mut earlier_callers: HashSet<String> = HashSet::new();

    for cycle in 0..CYCLES {
        // Formats and header cadences vary across cycles, so every format
        // meets every cadence over a few runs; "200ms" rewrites the header
        // after every chunk, so kills often land next to a header update.
        let format = [PCM16, ALAW, ULAW][cycle % 3];
        // (`None`: the default, 2 s.)
        let header_every = [Some("200ms"), Some("1s"), None][(cycle + cycle / 3) % 3];
        let consent = cycle % 2 == 0;
        // Even cycles start from an empty data directory; odd ones reuse
        // the previous one, so start-up repair also runs beside finished,
        // repaired and lost recordings of the run before.
        if cycle % 2 == 0 {
            let s = Site::new(0, 0, 0, "");
            write_voices(s.dir.path());
            site = Some(s);
            earlier_callers.clear();
        }
        let site = site.as_ref().unwrap();
        site.write(
            "site.toml",
            &site_config(&format!(
                "[recording]\nmode = \"never\"\nconsent_prompt = \"notice.wav\"\n{}\n\
                 [[recording.policy]]\nqueue = \"sales\"\nmode = \"always\"\nconsent = {consent}\nformat = \"{}\"\n",
                header_every.map_or(String::new(), |h| format!("header_every = \"{h}\"\n")),
                format.name
            )),
        );

        // Four callers over the first 2.5 s, each talking for a minute (the
        // kill comes long before they hang up); the agents pick up after
        // 0.5–1 s of ringing, which starts once the notice has played.
        let answer_after_ms = rng.ms(500, 1000);
        let notice_ms = if consent { NOTICE_MS } else { 0 };
        let plan: Vec<Planned> = (0..4u64)
            .map(|k| {
                let at_ms = 200 + 600 * k + rng.ms(0, 300);
                Planned {
                    caller: format!("7{cycle:02}{k}"),
                    at_ms,
                    bridged_ms: at_ms + notice_ms + answer_after_ms,
                }
            })
            .collect();
        let mut scenario = String::new();
        for p in &plan {
            scenario += &format!(
                "[[call]]\nat = \"{}ms\"\nfrom = \"{}\"\nhangup_after = \"60s\"\nscript = [ {{ play = \"caller.wav\" }} ]\n\n",
                p.at_ms, p.caller
            );
        }
        scenario += &agents(answer_after_ms);
        let scenario = site.write("calls.toml", &scenario);
        let kill_ms = rng.ms(KILL_AFTER_MS.0, KILL_AFTER_MS.1);
        let ctx = format!(
            "seed {seed}, cycle {cycle}: {} with header_every {}, consent {consent}, \
             calls at {:?} ms, bridged at {:?} ms, kill at {kill_ms} ms",
            format.name,
            header_every.unwrap_or("2s (default)"),
            plan.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            plan.iter().map(|p| p.bridged_ms).collect::<Vec<_>>(),
        );
        eprintln!("{ctx}");

        // Run in real time and kill it.
        let mut daemon = Daemon::start(site, &scenario);
        let ready = daemon
            .ready
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = daemon.child.kill();
                let _ = daemon.child.wait();
                panic!("{ctx}: callboxd never logged ready:\n{}", daemon.log())
            });
        std::thread::sleep(
            (ready + Duration::from_millis(kill_ms)).saturating_duration_since(Instant::now()),
        );
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "{ctx}: callboxd stopped before the kill:\n{}",
            daemon.log()
        );
        let kill_wall = SystemTime::now();
        let kill_instant = Instant::now();
        daemon.child.kill().unwrap(); // SIGKILL
        daemon.child.wait().unwrap();
        let killed_after = kill_instant.duration_since(ready).as_secs_f64();
        let log = daemon.log();

        // What the kill left in the open folder: id -> bytes.
        let open_dir = site.data().join("recordings/.open");
        let left_open: BTreeMap<String, u64> = std::fs::read_dir(&open_dir)
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().to_string_lossy().into_owned();
                    let id = name.split('.').next().unwrap().to_string();
                    (id, e.metadata().unwrap().len())
                })
                .collect()
            })
            .unwrap_or_default();

        // Restart with nothing to play: start-up repairs, then it exits.
        let idle = site.write("idle.toml", "");
        let out = site.run_fast(&idle);
        assert!(out.status.success(), "{ctx}: restart: {}", text(&out));
        let restart_log = String::from_utf8_lossy(&out.stderr).into_owned();
        let ctx = format!("{ctx}\n--- run\n{log}\n--- restart\n{restart_log}");

        let data = site.data();
        let recs = records(&data);
        let rows = recordings(&data);

        // Repair keeps every file that had audio and drops the rest.
        assert_eq!(
            std::fs::read_dir(&open_dir).unwrap().count(),
            0,
            "{ctx}: files left in recordings/.open after the restart"
        );
        for (id, &bytes) in &left_open {
            let row = rows.iter().find(|r| str_of(r, "id") == id);
            // Repair cuts a partial sample frame off the end.
            let audio = bytes.saturating_sub(format.header_len);
            let whole = audio - audio % (2 * format.bytes_per_sample);
            if whole > 0 {
                let row = row.unwrap_or_else(|| panic!("{ctx}: no row for repaired {id}"));
                assert_eq!(str_of(row, "state"), "interrupted", "{ctx}: {row}");
                assert_eq!(
                    u64_of(row, "size"),
                    format.header_len + whole,
                    "{ctx}: {row}"
                );
            } else if let Some(row) = row {
                assert_eq!(
                    str_of(row, "state"),
                    "lost",
                    "{ctx}: {id} held no audio: {row}"
                );
            }
        }

        // This cycle's calls.
        let this_cycle: HashMap<&str, &Planned> =
            plan.iter().map(|p| (p.caller.as_str(), p)).collect();
        for r in &recs {
            let caller = str_of(r, "caller");
            assert!(
                this_cycle.contains_key(caller) || earlier_callers.contains(caller),
                "{ctx}: a record nobody called: {r}"
            );
        }
        let record_of =
            |caller: &str| -> Option<&Value> { recs.iter().find(|r| r["caller"] == caller) };
        // "caller: recorded / sent by the scenario / sent since the row's
        // start", for the log.
        let mut durations = Vec::new();
        for p in &plan {
            let margin = killed_after - p.at_ms as f64 / 1000.0;
            // The box answers on arrival: a call that arrived a second
            // before the kill has its record, answered, marked interrupted.
            if margin >= TIMING_SLACK_S {
                let r = record_of(&p.caller)
                    .unwrap_or_else(|| panic!("{ctx}: no record of {}", p.caller));
                assert_eq!(str_of(r, "disposition"), "interrupted", "{ctx}: {r}");
                assert!(r["answer"].is_string(), "{ctx}: {r}");
            }
            if margin < -TIMING_SLACK_S {
                assert!(record_of(&p.caller).is_none(), "{ctx}: {}", p.caller);
            }
            let Some(r) = record_of(&p.caller) else {
                continue;
            };
            let ids = r["recordings"].as_array().unwrap();
            let talked_s = killed_after - p.bridged_ms as f64 / 1000.0;
            if talked_s >= TIMING_SLACK_S {
                // Bridged a second before the kill: at least 800 ms of
                // audio had reached the writer, so the file is there.
                assert_eq!(ids.len(), 1, "{ctx}: {} has no recording: {r}", p.caller);
            }
            let call_rows: Vec<&Value> = rows
                .iter()
                .filter(|row| row["call_id"] == r["id"])
                .collect();
            if talked_s < -TIMING_SLACK_S {
                assert!(
                    call_rows.is_empty(),
                    "{ctx}: recorded before the agent answered: {call_rows:?}"
                );
            }
            assert!(call_rows.len() <= 1, "{ctx}: {call_rows:?}");
            for row in call_rows {
                match str_of(row, "state") {
                    // Killed before the first chunk reached the file.
                    "lost" => assert!(talked_s < TIMING_SLACK_S, "{ctx}: {row}"),
                    "interrupted" => {
                        let ms = u64_of(row, "duration_ms") as f64 / 1000.0;
                        // Against the scenario's clock: independent of
                        // what the daemon wrote down.
                        assert!(
                            (ms - talked_s).abs() <= DURATION_TOLERANCE_S,
                            "{ctx}: {} has {ms} s of audio, {talked_s:.2} s were sent: {row}",
                            p.caller
                        );
                        // Against the row's own start. A row whose start
                        // never reached the database is inserted at repair
                        // with start = file time - duration, which makes
                        // this check weak for it; the one above still
                        // holds.
                        let sent = secs_between(time_of(row, "start"), kill_wall);
                        assert!(
                            (ms - sent).abs() <= DURATION_TOLERANCE_S,
                            "{ctx}: {ms} s recorded, {sent:.2} s from its start to the kill: {row}"
                        );
                        assert_eq!(
                            row["error"], "the box stopped while recording",
                            "{ctx}: {row}"
                        );
                        durations.push(format!("{}: {ms:.2}/{talked_s:.2}/{sent:.2} s", p.caller));
                    }
                    other => panic!("{ctx}: a recording {other} after a kill: {row}"),
                }
            }
        }
        earlier_callers.extend(plan.iter().map(|p| p.caller.clone()));

        // Everything in the data directory, this cycle's and the earlier
        // ones' alike: each repaired file reads back in full, is what the
        // row says, and carries the caller left and the agent right.
        let mut known = HashSet::new();
        for row in &rows {
            let file = str_of(row, "file");
            let path = data.join(file);
            match str_of(row, "state") {
                "interrupted" => {
                    let what = format!("{ctx}\nrecording {row}");
                    let fmt = format_named(str_of(row, "format"));
                    assert_eq!(u64_of(row, "channels"), 2, "{what}");
                    assert_eq!(
                        u64_of(row, "size"),
                        std::fs::metadata(&path).unwrap().len(),
                        "{what}"
                    );
                    let back = read_back(&path, fmt, &what);
                    assert_eq!(back.ms, u64_of(row, "duration_ms"), "{what}");
                    if back.ms >= 1000 {
                        assert_voices(&back, &what);
                    }
                    known.insert(file.to_string());
                }
                "lost" => assert!(!path.exists(), "{ctx}: lost but present: {row}"),
                other => panic!("{ctx}: a recording {other} after kills: {row}"),
            }
        }
        for f in files_under(&data) {
            assert!(known.contains(&f), "{ctx}: {f} belongs to no recording");
        }
        eprintln!(
            "  killed {killed_after:.2} s after ready; {} left open, now {} recording(s) in the directory; \
             recorded/sent/since start: {}",
            left_open.len(),
            known.len(),
            durations.join(", ")
        );
    }
    eprintln!(
        "crash test: {CYCLES} cycles in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// A full data disk.

/// Size of the tmpfs the data directory lives on.
const DISK: &str = "3m";
/// Longest a `--fast` run on it may take (a second or two normally; the
/// rest is for slow machines and emulators) before it counts as hung.
const DISK_RUN_LIMIT_S: u64 = 120;

/// What a run on a small disk left behind.
struct DiskRun {
    /// Holds the copies below.
    _dir: tempfile::TempDir,
    /// The daemon's exit status (137: killed after `limit_s`, hung).
    status: i32,
    /// The daemon's log.
    log: String,
    /// A copy of the data directory, taken inside the namespace after the
    /// daemon ended (the tmpfs goes with the namespace).
    data: PathBuf,
    /// Where the data directory was while it ran.
    ran_at: PathBuf,
}

fn shell_quote(s: &std::ffi::OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"))
}

/// The `unshare` arguments that give a private mount namespace in which a
/// tmpfs can be mounted here: as root, a plain mount namespace; otherwise
/// one inside a user namespace. Fails the test if neither works: skipping
/// would hide the disk-full behaviour from CI.
fn mount_namespace(probe_at: &Path) -> &'static [&'static str] {
    const TRIES: [&[&str]; 2] = [
        &["--mount", "--propagation", "private"],
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ],
    ];
    let mut failures = String::new();
    for args in TRIES {
        let out = Command::new("unshare")
            .args(args)
            .args(["sh", "-c", "mount -t tmpfs -o size=1m probe \"$0\""])
            .arg(probe_at)
            .output();
        match out {
            Ok(o) if o.status.success() => return args,
            Ok(o) => failures += &format!("\nunshare {}: {}", args.join(" "), text(&o)),
            Err(e) => failures += &format!("\nunshare {}: {e}", args.join(" ")),
        }
    }
    panic!(
        "the disk-full tests need a private mount namespace with a small tmpfs: run them as root, \
         or where unprivileged user namespaces are allowed (util-linux `unshare`).{failures}"
    )
}

/// Runs `callboxd run --fast --until-idle` with `scenario` on a fresh
/// `DISK` tmpfs, in a mount namespace of its own, and copies the data
/// directory out before the namespace (and its tmpfs) goes away.
fn run_on_small_disk(recording: &str, scenario: &str, limit_s: u64) -> DiskRun {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_voices(root);
    std::fs::write(root.join("site.toml"), site_config(recording)).unwrap();
    std::fs::write(root.join("calls.toml"), scenario).unwrap();
    let mnt = root.join("disk");
    let out_dir = root.join("out");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&out_dir).unwrap();
    let ns = mount_namespace(&mnt);

    let mut daemon = String::new();
    if let Some(w) = std::env::var_os("CALLBOXD_WRAPPER") {
        daemon += &shell_quote(&w);
        daemon += " ";
    }
    daemon += &shell_quote(callboxd().as_os_str());
    let q = |p: &Path| shell_quote(p.as_os_str());
    let ran_at = mnt.join("data");
    // The daemon is killed by `timeout` inside the namespace if it hangs,
    // so the data is copied out either way and nothing is left running.
    let script = format!(
        "mount -t tmpfs -o size={DISK} callbox-test {mnt} || exit 90\n\
         RUST_LOG=info timeout -s KILL {limit_s} {daemon} run --fast --until-idle \
           --config {cfg} --scenario {calls} --data {data} 2> {out}/run.log\n\
         echo $? > {out}/status\n\
         cp -a {data} {out}/data || exit 91\n",
        mnt = q(&mnt),
        cfg = q(&root.join("site.toml")),
        calls = q(&root.join("calls.toml")),
        data = q(&ran_at),
        out = q(&out_dir),
    );
    let mut c = Command::new("unshare");
    c.args(ns).args(["sh", "-c", &script]);
    let out = output_within(c, Duration::from_secs(limit_s) + RUN_LIMIT);
    assert!(
        out.status.success(),
        "the disk-full run (mount, callboxd, copy out) failed: {}",
        text(&out)
    );
    let status = std::fs::read_to_string(out_dir.join("status")).unwrap();
    let log = std::fs::read_to_string(out_dir.join("run.log")).unwrap();
    DiskRun {
        status: status.trim().parse().unwrap(),
        log,
        data: out_dir.join("data"),
        ran_at,
        _dir: dir,
    }
}

/// pcm16 stereo is 32 KB/s. `sync_every = "1h"` keeps the writer's wall-
/// clock space check out of the run: in virtual time a minute of calls
/// takes about a second, so how many checks fall inside it would depend on
/// the machine. Free space is then only checked at start-up and when the
/// daemon stops (its last sync; the hourly retention check is an hour of
/// virtual time away), and what happens in between depends on bytes alone.
const SMALL_DISK_RECORDING: &str = r#"[recording]
mode = "never"
min_free = "256KiB"
sync_every = "1h"

[[recording.policy]]
queue = "sales"
mode = "always"
format = "pcm16"
"#;

/// Three short calls (about 160 KB of recording each) that end; four long
/// ones together that could write 5 MB, more than the disk; two more after
/// those have hung up.
const FILLS_THE_DISK: &str = r#"[[call]]
name = "short"
from = "100{n}"
repeat = 3
every = "1s"
hangup_after = "6s"
script = [ { play = "caller.wav" } ]

[[call]]
name = "long"
at = "10s"
from = "200{n}"
repeat = 4
every = "1s"
hangup_after = "40s"
script = [ { play = "caller.wav" } ]

[[call]]
name = "after"
at = "60s"
from = "300{n}"
repeat = 2
every = "1s"
hangup_after = "5s"
script = [ { play = "caller.wav" } ]

"#;

/// The disk run with the daemon's log, for assertion messages.
fn context(run: &DiskRun) -> String {
    format!("callboxd exit status {}; its log:\n{}", run.status, run.log)
}

#[test]
fn a_full_disk_stops_recording_keeps_calls_and_the_database() {
    let run = run_on_small_disk(
        SMALL_DISK_RECORDING,
        &(FILLS_THE_DISK.to_string() + &agents(1000)),
        DISK_RUN_LIMIT_S,
    );
    let ctx = context(&run);
    assert_eq!(
        run.status, 0,
        "callboxd did not finish on its own (137: still running after {DISK_RUN_LIMIT_S} s, killed)\n{ctx}"
    );
    let data = &run.data;

    // The database is intact, and every call has its record, answered and
    // ended: a full disk costs recordings, never calls or records.
    let db = rusqlite::Connection::open(data.join("callbox.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{ctx}");
    drop(db);
    let recs = records(data);
    let callers: Vec<&str> = recs.iter().map(|r| str_of(r, "caller")).collect();
    assert_eq!(
        callers,
        [
            "1000", "1001", "1002", "2000", "2001", "2002", "2003", "3000", "3001"
        ],
        "{ctx}"
    );
    for r in &recs {
        assert_eq!(str_of(r, "disposition"), "answered", "{ctx}\n{r}");
        assert!(r["end"].is_string(), "{ctx}\n{r}");
    }
    let rows = recordings(data);
    let wave = |r: &Value| -> char {
        let call = recs
            .iter()
            .find(|c| c["id"] == r["call_id"])
            .unwrap_or_else(|| panic!("{ctx}\na recording of no call: {r}"));
        str_of(call, "caller").chars().next().unwrap()
    };

    // The short calls were recorded in full before the disk filled (their
    // files may have been deleted since: see below).
    let short: Vec<&Value> = rows.iter().filter(|r| wave(r) == '1').collect();
    assert_eq!(short.len(), 3, "{ctx}\n{rows:#?}");
    for r in &short {
        let state = str_of(r, "state");
        assert!(state == "complete" || state == "deleted", "{ctx}\n{r}");
    }

    // The long calls filled the disk: their recordings are ended when free
    // space drops under min_free (or, if a write got there first, by
    // ENOSPC — errno 28, whatever the locale calls it), keep what they had
    // written and end failed, with an alarm naming the folder.
    let recordings_dir = run.ran_at.join("recordings").display().to_string();
    let long: Vec<&Value> = rows.iter().filter(|r| wave(r) == '2').collect();
    assert_eq!(long.len(), 4, "{ctx}\n{rows:#?}");
    for r in &long {
        // Failed, or deleted since by the free-space rule (checked below);
        // a deleted row keeps its error.
        let state = str_of(r, "state");
        assert!(state == "failed" || state == "deleted", "{ctx}\n{r}");
        let error = str_of(r, "error");
        assert!(
            error.contains(&recordings_dir)
                && (error.contains("(os error 28)") || error.contains("recording stopped")),
            "{ctx}\n{r}"
        );
    }
    let alarms = alarms(data);
    assert!(
        alarms
            .iter()
            .any(|a| a["code"] == "disk_full" && str_of(a, "message").contains(&recordings_dir)),
        "no disk_full alarm naming {recordings_dir}: {alarms:#?}\n{ctx}"
    );

    // Recording stays stopped once the disk is full: the calls after the
    // long ones are not recorded (their records are above), and nothing
    // frees space before the daemon stops. Were the writer still catching
    // up on the long calls' audio when they arrived, their recordings
    // would start and fail like those; that is allowed, a complete one is
    // not.
    for r in rows.iter().filter(|r| wave(r) == '3') {
        assert_eq!(str_of(r, "state"), "failed", "{ctx}\n{r}");
    }

    // When the daemon stopped it found less than min_free and deleted the
    // oldest recordings to make room (that is also what let the held
    // records reach the database). Deleted ones are the oldest, keep their
    // rows, and an alarm says so.
    let mut by_start: Vec<&Value> = rows.iter().collect();
    by_start.sort_by_key(|r| time_of(r, "start"));
    let deleted = by_start
        .iter()
        .take_while(|r| r["state"] == "deleted")
        .count();
    assert!(deleted >= 1, "{ctx}\nnothing was deleted: {rows:#?}");
    assert!(
        by_start[deleted..].iter().all(|r| r["state"] != "deleted"),
        "{ctx}\nnot the oldest deleted first: {by_start:#?}"
    );
    for r in &by_start[..deleted] {
        assert!(
            str_of(r, "deleted_reason").starts_with("disk nearly full"),
            "{ctx}\n{r}"
        );
        assert!(!data.join(str_of(r, "file")).exists(), "{ctx}\n{r}");
    }
    assert!(
        alarms.iter().any(|a| a["code"] == "recordings_deleted"),
        "{ctx}\n{alarms:#?}"
    );

    // Every file left opens in sox (and hound) with the audio it holds,
    // and belongs to a row; nothing is left open.
    let mut known = HashSet::new();
    for r in &rows {
        let file = str_of(r, "file");
        match str_of(r, "state") {
            "deleted" => continue,
            // A file that could not even be created.
            "failed" if file.is_empty() => continue,
            "complete" => {
                let back = read_back(&data.join(file), PCM16, &format!("{ctx}\n{r}"));
                assert_eq!(back.ms, u64_of(r, "duration_ms"), "{ctx}\n{r}");
                assert_voices(&back, &format!("{ctx}\n{r}"));
            }
            "failed" => {
                let back = read_back(&data.join(file), PCM16, &format!("{ctx}\n{r}"));
                assert!(back.ms > 1000, "{ctx}\n{r}");
                assert_voices(&back, &format!("{ctx}\n{r}"));
            }
            other => panic!("{ctx}\nrecording {other}: {r}"),
        }
        assert_eq!(
            u64_of(r, "size"),
            std::fs::metadata(data.join(file)).unwrap().len(),
            "{ctx}\n{r}"
        );
        known.insert(file.to_string());
    }
    for f in files_under(data) {
        assert!(
            known.contains(&f),
            "{ctx}\n{f} belongs to no recording (or was left open)"
        );
    }
}

/// Recordings that are open when free space drops under `min_free` are
/// ended there, so the database on the same disk always has room: with no
/// finished recording to delete, nothing else could free space, and records
/// would stay in memory with a daemon that never exits.
#[test]
fn open_recordings_filling_the_disk_leave_room_for_the_records() {
    let scenario = r#"[[call]]
from = "200{n}"
at = "1s"
repeat = 4
every = "1s"
hangup_after = "30s"
script = [ { play = "caller.wav" } ]

"#;
    let run = run_on_small_disk(
        &SMALL_DISK_RECORDING.replace("sync_every = \"1h\"", "sync_every = \"200ms\""),
        &(scenario.to_string() + &agents(1000)),
        30,
    );
    let ctx = context(&run);
    assert_eq!(run.status, 0, "callboxd hung on the full disk\n{ctx}");
    let recs = records(&run.data);
    assert_eq!(recs.len(), 4, "{ctx}");
    for r in &recs {
        assert_eq!(str_of(r, "disposition"), "answered", "{ctx}\n{r}");
    }
    assert!(
        alarms(&run.data).iter().any(|a| a["code"] == "disk_full"),
        "{ctx}"
    );
}

/// A recording cut short by a full disk keeps its audio in a valid file,
/// and its row and headquarters' event say how much.
#[test]
fn a_recording_cut_short_by_a_full_disk_reports_the_audio_it_kept() {
    let run = run_on_small_disk(
        SMALL_DISK_RECORDING,
        &(FILLS_THE_DISK.to_string() + &agents(1000)),
        DISK_RUN_LIMIT_S,
    );
    let ctx = context(&run);
    assert_eq!(run.status, 0, "{ctx}");
    let failed: Vec<Value> = recordings(&run.data)
        .into_iter()
        .filter(|r| r["state"] == "failed")
        .collect();
    assert!(!failed.is_empty(), "{ctx}");
    let outbox = export(&run.data, &["records", "--table", "outbox"]);
    for r in &failed {
        let back = read_back(&run.data.join(str_of(r, "file")), PCM16, &ctx);
        assert_eq!(u64_of(r, "duration_ms"), back.ms, "{r}");
        let sent = outbox
            .iter()
            .find(|o| o["stream"] == "recording" && o["payload"]["id"] == r["id"])
            .unwrap_or_else(|| panic!("no outbox event for {r}"));
        let p = &sent["payload"];
        assert_eq!(
            (
                str_of(p, "format"),
                u64_of(p, "channels"),
                u64_of(p, "duration_ms")
            ),
            ("pcm16", 2, back.ms),
            "{sent}"
        );
    }
}
