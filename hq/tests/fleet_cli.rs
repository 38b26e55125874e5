//! Tests of the fleet commands through the real binary: bad invocations
//! and exit codes need no broker; the collector's round trip runs against
//! a real mosquitto on a free loopback port, and is skipped (with a note)
//! where mosquitto and its clients are not installed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_callbox-hq");

fn hq(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run callbox-hq")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cmd_refuses_a_bad_invocation_with_64_before_sending() {
    let plain = ["--broker", "mqtt://127.0.0.1:1", "--allow-plain"];
    let cases: [(Vec<&str>, &str); 4] = [
        (
            [&plain[..], &["b1", "--site", "s1", "agent", "{bad"]].concat(),
            "ARGS_JSON",
        ),
        (
            [&plain[..], &["b+1", "--site", "s1", "status"]].concat(),
            "BOX `b+1`",
        ),
        (
            vec![
                "--broker",
                "mqtt://127.0.0.1:1",
                "b1",
                "--site",
                "s1",
                "status",
            ],
            "--allow-plain",
        ),
        ([&plain[..], &["b1", "--site", "s1"]].concat(), "CMD"),
    ];
    for (args, want) in cases {
        let out = hq(&[&["cmd"][..], &args].concat());
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn cmd_without_an_answer_in_time_exits_2_saying_the_broker_was_not_reached() {
    let out = hq(&[
        "cmd",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--allow-plain",
        "b1",
        "--site",
        "s1",
        "status",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no answer from s1/b1") && err.contains("not reached"),
        "{err}"
    );
}

#[test]
fn gaps_and_export_of_a_missing_database_fail_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("none.db");
    let db = db.to_str().unwrap();
    for args in [
        vec!["gaps", "--db", db],
        vec!["export", "--db", db, "--stream", "cdr"],
    ] {
        let out = hq(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(db), "{}", stderr(&out));
    }
}

/// A mosquitto on a free loopback port, stopped on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Option<Broker> {
        let installed = |bin: &str| {
            Command::new(bin)
                .arg("--help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !["mosquitto", "mosquitto_pub"].iter().all(|b| installed(b)) {
            eprintln!("mosquitto or mosquitto_pub not installed: skipping");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Broker {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn publish(&self, topic: &str, payload: &str) {
        let st = Command::new("mosquitto_pub")
            .args([
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                payload,
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The collector's stdout, line by line, with a deadline per line. Lines
/// passed over while waiting for another prefix are kept: a resumed
/// session's queued messages can be stored before `# subscribed` is printed.
struct Lines {
    rx: mpsc::Receiver<String>,
    passed: std::cell::RefCell<Vec<String>>,
}

impl Lines {
    fn new(out: ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            passed: Default::default(),
        }
    }

    /// Takes the first line not yet taken that starts with `prefix`,
    /// waiting for it if it has not come yet.
    fn wait_for(&self, prefix: &str) -> String {
        let mut passed = self.passed.borrow_mut();
        if let Some(i) = passed.iter().position(|l| l.starts_with(prefix)) {
            return passed.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) => passed.push(l),
                Err(_) => panic!("no line starting with `{prefix}`; seen {passed:?}"),
            }
        }
    }
}

fn collector(broker: &Broker, db: &Path) -> (Child, Lines) {
    let mut child = Command::new(BIN)
        .args([
            "collect",
            "--broker",
            &broker.url(),
            "--allow-plain",
            "--db",
        ])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("# subscribed");
    (child, lines)
}

fn stop(mut child: Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

fn batch(seqs: &[u64]) -> String {
    let records: Vec<String> = seqs
        .iter()
        .map(|s| {
            format!(r#"{{"seq":{s},"id":"E1/cdr/{s}","at":"t","data":{{"call":{s},"b":1,"a":2}}}}"#)
        })
        .collect();
    format!(
        r#"{{"v":1,"site":"s1","box":"b1","epoch":"E1","stream":"cdr","records":[{}]}}"#,
        records.join(",")
    )
}

#[test]
fn collector_stores_each_record_once_across_a_restart_and_exports_them_in_order() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hq.db");
    let topic = "callbox/s1/b1/records/cdr";

    let (child, lines) = collector(&broker, &db);
    broker.publish(topic, &batch(&[1, 2]));
    // What was stored comes in a summary every 5 s.
    assert_eq!(
        lines.wait_for("stored"),
        "stored in 5s: 2 records, 0 recordings from 1 box — s1/b1: cdr 2"
    );
    broker.publish(topic, "not json");
    broker.publish(topic, &batch(&[2, 4]));
    assert_eq!(
        lines.wait_for("stored"),
        "stored in 5s: 1 record, 0 recordings from 1 box (1 already stored) — s1/b1: cdr 1+1 again"
    );
    stop(child);

    // Published while no collector runs: the persistent session keeps it.
    broker.publish(topic, &batch(&[3]));
    let (child, lines) = collector(&broker, &db);
    assert_eq!(
        lines.wait_for("stored"),
        "stored in 5s: 1 record, 0 recordings from 1 box — s1/b1: cdr 1"
    );
    stop(child);

    let db = db.to_str().unwrap();
    let out = hq(&["export", "--db", db, "--stream", "cdr"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want: String = (1..=4)
        .map(|s| format!("{{\"call\":{s},\"b\":1,\"a\":2}}\n"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    let out = hq(&["gaps", "--db", db]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
