//! Stopping the real daemon: SIGTERM drains, SIGKILL loses nothing that was
//! committed.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use callbox_tests::{Site, cmd};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn start(site: &Site, scenario: &std::path::Path) -> Child {
    cmd()
        .args(["run", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .arg("--scenario")
        .arg(scenario)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls the records until `pred` holds (real time; the daemon runs in real
/// time here because the point is to catch it mid-call).
fn wait_for(site: &Site, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if site.data().join("callbox.db").exists() {
            let recs = site.records();
            if pred(&recs) {
                return recs;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answered(recs: &[Value]) -> bool {
    recs.len() == 1 && recs[0]["answer"].is_string()
}

#[test]
fn sigterm_during_a_call_ends_it_and_writes_its_record() {
    let site = Site::new(1, 0, 30_000, "");
    let scenario = site.write(
        "calls.toml",
        "[[call]]\nat = \"200ms\"\nfrom = \"13800138000\"\nto = \"4000\"\n",
    );
    let mut child = start(&site, &scenario);
    let during = wait_for(&site, "the call to be answered", answered);
    assert_eq!(during[0]["disposition"], "in_progress");

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");

    let recs = site.records();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["caller"], "13800138000");
    assert_eq!(r["disposition"], "answered", "{r}");
    assert_eq!(r["hangup_cause"], "shutdown", "{r}");
    assert_eq!(r["hangup_side"], "system", "{r}");
    assert!(r["end"].is_string(), "{r}");
    assert!(
        r["duration_ms"].as_i64().unwrap() < 30_000,
        "ended early, not after the greeting: {r}"
    );
}

#[test]
fn sigkill_during_a_call_keeps_its_record_marked_interrupted_after_restart() {
    let site = Site::new(1, 0, 30_000, "");
    let scenario = site.write("calls.toml", "[[call]]\nat = \"200ms\"\nfrom = \"555\"\n");
    let mut child = start(&site, &scenario);
    wait_for(&site, "the call to be answered", answered);
    child.kill().unwrap();
    child.wait().unwrap();

    // Restart with nothing to play; the store repairs the record at open.
    let idle = site.write("idle.toml", "");
    let mut child = start(&site, &idle);
    let recs = wait_for(&site, "the record to be marked interrupted", |r| {
        r.len() == 1 && r[0]["disposition"] == "interrupted"
    });
    assert_eq!(recs[0]["caller"], "555");
    assert!(recs[0]["answer"].is_string());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
}
