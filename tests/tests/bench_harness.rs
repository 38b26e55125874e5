//! The performance harness (`bench`, docs/PERFORMANCE.md) runs end to end
//! at small sizes (`--quick`): the real-time capacity run through the real
//! daemon pinned with taskset, the virtual-time throughput run, the sync
//! drain against a real mosquitto, the footprint (start-up and idle RSS),
//! SIP calls over loopback, a 500-contact campaign and 50 web-console
//! sessions, each appending its
//! table to a file. The DSP floor (`cargo bench`)
//! and the instruction count (valgrind) run only from the harness itself.

use std::path::PathBuf;
use std::process::Command;

use callbox_tests::callboxd;

fn bench() -> PathBuf {
    callboxd().with_file_name("bench")
}

/// The value column of the table row whose figure starts with `what`.
fn value<'a>(doc: &'a str, what: &str) -> &'a str {
    doc.lines()
        .find(|l| l.starts_with(&format!("| {what}")))
        .unwrap_or_else(|| panic!("no row `{what}` in:\n{doc}"))
        .split(" | ")
        .nth(1)
        .unwrap()
}

/// The first number in `s` (bold marks and thousands separators aside).
fn number(s: &str) -> f64 {
    let t: String = s
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    t.parse().unwrap_or_else(|_| panic!("no number in `{s}`"))
}

#[test]
fn the_harness_measures_each_part_and_appends_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("PERFORMANCE.md");
    std::fs::write(&doc_path, "# Performance\n").unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (core, world) = if cores > 1 { ("1", "0") } else { ("0", "0") };
    for part in [
        "capacity",
        "throughput",
        "sync",
        "footprint",
        "sip",
        "campaign",
        "console",
        "hq",
    ] {
        let out = Command::new(bench())
            .args([
                part,
                "--quick",
                "--core",
                core,
                "--world-core",
                world,
                "--write",
            ])
            .arg(&doc_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bench {part}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    assert!(
        doc.starts_with("# Performance\n"),
        "the file is appended to"
    );
    assert_eq!(doc.matches("### Harness run ").count(), 8, "{doc}");
    assert_eq!(doc.matches("\nMachine: ").count(), 8, "{doc}");
    // Headquarters: every simulated record stored once by 1, 2, 4 collectors.
    for n in [1, 2, 4] {
        let v = value(
            &doc,
            &format!("records stored into PostgreSQL, {n} collector(s), 300 simulated boxes"),
        );
        assert!(v.contains("/s** sustained"), "{v}");
    }
    for part in [
        "capacity",
        "throughput",
        "sync",
        "footprint",
        "sip",
        "campaign",
        "console",
        "hq",
    ] {
        assert!(
            doc.contains(&format!(
                "Command: `cargo build --release --bins && target/release/bench {part} --quick`"
            )),
            "{doc}"
        );
    }

    // Capacity: five calls through the menu, the queue, an agent and a
    // recording; every frame counted, the box's CPU and RSS measured.
    let five = value(&doc, "5 calls: late frames");
    assert!(five.contains(") / "), "the far ends' share: {five}");
    let parts: Vec<&str> = five.split(" / ").collect();
    assert_eq!(parts.len(), 4, "{five}");
    assert!(number(parts[0]) < 50.0, "late share {five}");
    assert!(number(parts[2]) > 0.0, "CPU per call-second {five}");
    assert!(number(parts[3]) > 1.0, "RSS {five}");

    // Throughput: 200 calls in virtual time, all recorded.
    let t = value(&doc, "call throughput in virtual time");
    assert!(number(t) > 0.0, "{t}");
    assert!(
        doc.contains("200 calls, each IVR menu keyed in band"),
        "{doc}"
    );

    // Sync: the box drained its backlog, and the ratio to the plain loop.
    assert!(number(value(&doc, "sync drain of a 2000-record backlog")) > 0.0);
    assert!(number(value(&doc, "… against a plain rumqttc")) > 0.0);

    // Footprint: start-up time and idle RSS, with and without the link.
    let ready = value(&doc, "start-up, exec → `ready`");
    assert!(number(ready) > 0.0 && number(ready) < 10_000.0, "{ready}");
    let idle = value(&doc, "idle RSS");
    let (plain, linked) = idle.split_once(" / ").unwrap();
    assert!(number(plain) > 1.0 && number(linked) > 1.0, "{idle}");

    // Campaign: 500 contacts decided, 50 of them barred.
    let c = value(&doc, "campaign of 500 contacts (agentless");
    assert!(number(c) > 0.0, "{c}");

    // SIP: five calls over loopback UDP, the box's CPU measured.
    assert!(doc.contains("| SIP calls on one core"), "{doc}");
    let cpu = value(&doc, "SIP box CPU per call-second");
    assert!(number(cpu) > 0.0, "{cpu}");

    // Console: RSS with and without it, and every request kind answered
    // under 50 sessions.
    let rss = value(&doc, "idle RSS, this build, demo site: no `[console]`");
    assert!(number(rss) > 1.0, "{rss}");
    let wall = value(&doc, "GET /api/wallboard, 50 sessions");
    assert!(number(wall.trim_start_matches("p50")) > 0.0, "{wall}");
    let load = value(&doc, "console load: requests answered per second");
    assert!(number(load) > 0.0, "{load}");
}
