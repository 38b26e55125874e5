//! Helpers for the end-to-end tests: find the real `callboxd` binary, lay
//! out a site in a temporary directory, run commands, read records.
//!
//! The binary is taken from `$CALLBOXD` when set (the ARM suite points it at
//! the aarch64 build run under qemu), else from the target directory these
//! tests were built into. `scripts/test-all` builds it first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod console;
pub mod hq;
pub mod mqtt;
pub mod postgres;
pub mod sip;

/// Path of the `callboxd` binary under test.
pub fn callboxd() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLBOXD") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> or target/<profile>/<tool>
    // -> target/<profile>/callboxd
    let exe = std::env::current_exe().expect("test binary path");
    let here = exe.parent().expect("target dir");
    let bin = [
        here.join("callboxd"),
        here.parent()
            .map_or_else(|| here.join("callboxd"), |d| d.join("callboxd")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| here.join("callboxd"));
    assert!(
        bin.is_file(),
        "{} not found: build it first (`cargo build --bins`) or set CALLBOXD",
        bin.display()
    );
    bin
}

/// A `callboxd` command (optionally wrapped, e.g. by qemu via `$CALLBOXD_WRAPPER`).
pub fn cmd() -> Command {
    match std::env::var_os("CALLBOXD_WRAPPER") {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(callboxd());
            c
        }
        None => Command::new(callboxd()),
    }
}

/// A site laid out in a temporary directory.
#[derive(Debug)]
pub struct Site {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A site with `trunks` trunk lines, `stations` station lines, a tone
    /// greeting of `greeting_ms` and the given `[inbound]` extras.
    pub fn new(trunks: usize, stations: usize, greeting_ms: u32, inbound_extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("prompts")).unwrap();
        write_tone(&dir.path().join("prompts/greeting.wav"), greeting_ms);
        let mut cfg = String::from("[site]\nid = \"test-site\"\n\n[log]\nlevel = \"info\"\n\n");
        for i in 1..=trunks {
            cfg += &format!("[[line]]\nid = \"trunk-{i}\"\nkind = \"trunk\"\n\n");
        }
        for i in 1..=stations {
            cfg += &format!("[[line]]\nid = \"desk-{i}\"\nkind = \"station\"\n\n");
        }
        cfg += &format!("[inbound]\ngreeting = \"greeting.wav\"\n{inbound_extra}\n");
        std::fs::write(dir.path().join("site.toml"), cfg).unwrap();
        Site { dir }
    }

    /// A site with `trunks` and `stations`, no greeting (the IVR in
    /// `config` answers), and `config` after `[inbound]`.
    pub fn with_config(trunks: usize, stations: usize, config: &str) -> Site {
        let site = Site::new(trunks, stations, 0, "");
        let cfg = site
            .config_text()
            .replace("greeting = \"greeting.wav\"\n", "")
            + config;
        site.write("site.toml", &cfg);
        site
    }

    /// `callboxd check-config` on this site, which must refuse the config
    /// (exit 78); its error lines.
    pub fn refused(&self) -> String {
        let out = cmd()
            .arg("check-config")
            .arg(self.config())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The site config's text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.config()).unwrap()
    }

    /// The site config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("site.toml")
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes a file next to the config and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `callboxd run --fast --until-idle` on this site, playing `scenario`,
    /// with extra arguments.
    pub fn run_fast_with(&self, scenario: &Path, extra: &[&str]) -> Output {
        let mut c = cmd();
        c.args(["run", "--fast", "--until-idle", "--config"])
            .arg(self.config())
            .arg("--data")
            .arg(self.data())
            .arg("--scenario")
            .arg(scenario)
            .args(extra);
        output_within(c, RUN_LIMIT)
    }

    /// `callboxd run --fast --until-idle` on this site, playing `scenario`.
    pub fn run_fast(&self, scenario: &Path) -> Output {
        self.run_fast_with(scenario, &[])
    }

    /// Plays `scenario` (as `calls.toml`) with `--sim-report`; the run must
    /// succeed. Returns the report (what each simulated line heard) and the
    /// run's output.
    pub fn run_heard(&self, scenario: &str) -> (Value, Output) {
        let path = self.write("calls.toml", scenario);
        let report = self.dir.path().join("report.json");
        let out = self.run_fast_with(&path, &["--sim-report", report.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let rep = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        (rep, out)
    }

    /// `callboxd records --table NAME`, parsed.
    pub fn table(&self, name: &str) -> Vec<Value> {
        export(&self.data(), &["records", "--table", name])
    }

    /// `callboxd records --json`, parsed.
    pub fn records(&self) -> Vec<Value> {
        export(&self.data(), &["records", "--json"])
    }

    /// `callboxd recordings --json`, parsed.
    pub fn recordings(&self) -> Vec<Value> {
        export(&self.data(), &["recordings", "--json"])
    }
}

/// `callboxd <args> --data DATA`, one JSON object per output line; the
/// command must succeed.
pub fn export(data: &Path, args: &[&str]) -> Vec<Value> {
    let out = cmd().args(args).arg("--data").arg(data).output().unwrap();
    assert!(out.status.success(), "callboxd {args:?}: {}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The record of the call from `caller` (the test fails if there is none).
pub fn by_caller<'a>(recs: &'a [Value], caller: &str) -> &'a Value {
    recs.iter()
        .find(|r| r["caller"] == caller)
        .unwrap_or_else(|| panic!("no record from {caller}: {recs:#?}"))
}

/// Frames in which the far end on `line` heard the probe tone `hz`, as a
/// `--sim-report` counts them.
pub fn probes(report: &Value, line: &str, hz: &str) -> u64 {
    report["probes_heard"][line][hz].as_u64().unwrap_or(0)
}

/// A record's `ivr_path`, as strings.
pub fn ivr_path(record: &Value) -> Vec<String> {
    record["ivr_path"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks that `stderr` of `check-config` on `config` has `message` at the
/// line of `config` that contains `needle` (`site.toml:LINE:`).
pub fn assert_error_at(config: &str, stderr: &str, needle: &str, message: &str) {
    let line = config
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} is not in the config"))
        + 1;
    let want = format!("site.toml:{line}:");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&want) && l.contains(message)),
        "expected `{message}` at line {line}:\n{stderr}"
    );
}

/// Amplitude of the `hz` component of 8 kHz `samples` (Goertzel): a pure
/// tone of amplitude A gives about A.
pub fn tone_level(samples: &[i16], hz: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let c = 2.0 * (std::f64::consts::TAU * hz / 8000.0).cos();
    let (mut a, mut b) = (0.0f64, 0.0f64);
    for &x in samples {
        let n = f64::from(x) + c * a - b;
        b = a;
        a = n;
    }
    let p = a * a + b * b - c * a * b;
    2.0 * p.sqrt() / samples.len() as f64
}

/// Longest a virtual-time run may take in wall time before a test calls it
/// hung (a debug build under qemu included).
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs a command to its end, killing it (and failing the test) if it
/// takes longer than `limit`: a hung daemon must fail CI, not stall it.
pub fn output_within(mut c: Command, limit: Duration) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting callboxd");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let _ = waiter.join();
            out.expect("waiting for callboxd")
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = rx.recv().ok().and_then(Result::ok);
            panic!(
                "callboxd did not finish within {limit:?}; killed it.\n{}",
                out.as_ref().map(text).unwrap_or_default()
            );
        }
    }
}

/// Writes a 425 Hz tone of `ms` milliseconds as an 8 kHz mono WAV.
pub fn write_tone(path: &Path, ms: u32) {
    write_tone_hz(path, 425.0, ms);
}

/// Writes a tone of `hz` for `ms` milliseconds as an 8 kHz mono WAV.
pub fn write_tone_hz(path: &Path, hz: f64, ms: u32) {
    let n = ms as usize * 8;
    let mut data = Vec::with_capacity(44 + n * 2);
    let samples: Vec<i16> = (0..n)
        .map(|i| (8000.0 * (std::f64::consts::TAU * hz * i as f64 / 8000.0).sin()) as i16)
        .collect();
    let bytes = (n * 2) as u32;
    data.extend_from_slice(b"RIFF");
    data.extend_from_slice(&(36 + bytes).to_le_bytes());
    data.extend_from_slice(b"WAVEfmt ");
    data.extend_from_slice(&16u32.to_le_bytes());
    data.extend_from_slice(&1u16.to_le_bytes()); // PCM
    data.extend_from_slice(&1u16.to_le_bytes()); // mono
    data.extend_from_slice(&8000u32.to_le_bytes());
    data.extend_from_slice(&16000u32.to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&16u16.to_le_bytes());
    data.extend_from_slice(b"data");
    data.extend_from_slice(&bytes.to_le_bytes());
    for s in samples {
        data.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}

/// Output as text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
