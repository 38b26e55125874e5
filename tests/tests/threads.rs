//! The daemon's threads: the call path (the runtime's workers) runs at the
//! daemon's priority, the background (recorder, store) below it, so that
//! disk and database work never makes a frame late (docs/operations.md,
//! "Threads and priorities").

use std::process::Stdio;
use std::time::{Duration, Instant};

use callbox_tests::{Site, cmd};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// (thread name, nice value) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(t.unwrap().path().join("stat")) else {
            continue;
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        // Fields after the name start at field 3; nice is field 19.
        let nice = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        out.push((name, nice));
    }
    out
}

#[test]
fn background_threads_run_below_the_call_path() {
    let site = Site::new(1, 0, 30_000, "");
    let mut child = cmd()
        .args(["run", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let want = ["store", "recorder", "recorder-sync", "tokio-rt-worker"];
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let seen = threads(pid);
        if want.iter().all(|w| seen.iter().any(|(n, _)| n == w)) {
            break seen;
        }
        assert!(Instant::now() < deadline, "threads never all up: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    let own = seen
        .iter()
        .find(|(n, _)| n == "callboxd")
        .map_or(0, |t| t.1);
    for (name, nice) in &seen {
        match name.as_str() {
            "store" | "recorder" | "recorder-sync" => {
                assert_eq!(*nice, (own + 10).min(19), "{name}: {seen:?}")
            }
            "tokio-rt-worker" => assert_eq!(*nice, own, "{name}: {seen:?}"),
            _ => {}
        }
    }
}
