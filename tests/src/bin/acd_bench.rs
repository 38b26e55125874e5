//! ACD scheduling benchmark: 200 agents, 5,000 calls an hour through
//! shared queues, in virtual time, through the real `callboxd`.
//!
//! ```sh
//! cargo build --release --bins && target/release/acd-bench [--agents 200] [--calls 5000]
//! ```
//!
//! Prints the wall time of the run and the ACD actor's own decision time
//! per call (its `scheduler_us` statistic), the figure docs/PERFORMANCE.md
//! records.

use std::time::Instant;

use callbox_tests::{RUN_LIMIT, Site, cmd, output_within, text};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let agents = arg("--agents", 200);
    let calls = arg("--calls", 5000);
    // Average talk 2 min, 5,000 calls an hour: about 170 calls connected at
    // once, plus those waiting; trunks enough that nobody is blocked.
    let trunks = 400;
    let site = Site::new(trunks, agents as usize, 0, "");
    let mut cfg = std::fs::read_to_string(site.config())
        .unwrap()
        .replace("greeting = \"greeting.wav\"\n", "");
    cfg += "\n[ivr]\nstart = \"sales\"\n\n[[ivr.route]]\ndialled = [\"4002\"]\nstart = \"support\"\n\n";
    cfg += "[ivr.node.sales]\ntype = \"queue\"\nannounce = []\non_overflow = \"bye\"\n\n";
    cfg += "[ivr.node.support]\ntype = \"queue\"\nannounce = []\non_overflow = \"bye\"\n\n";
    cfg += "[ivr.node.bye]\ntype = \"hangup\"\n\n";
    let mut sales = Vec::new();
    let mut support = Vec::new();
    for i in 1..=agents {
        cfg += &format!(
            "[acd.agent.a{i}]\nstation = \"desk-{i}\"\nlogged_in = true\nwrap_up = \"10s\"\n\n"
        );
        // Two thirds in sales, two thirds in support (overlapping), with
        // the overlap in tier 1.
        if i % 3 != 0 {
            sales.push(format!("a{i} = {}", u32::from(i % 3 == 2)));
        }
        if i % 3 != 1 {
            support.push(format!("a{i} = {}", u32::from(i % 3 == 2)));
        }
    }
    cfg += &format!(
        "[acd.queue.sales]\nstrategy = \"longest_idle\"\nmembers = {{ {} }}\ntier_step = \"20s\"\nmax_wait = \"5m\"\n\n",
        sales.join(", ")
    );
    cfg += &format!(
        "[acd.queue.support]\nstrategy = \"round_robin\"\nmembers = {{ {} }}\ntier_step = \"20s\"\nmax_wait = \"5m\"\npriority = 1\n\n",
        support.join(", ")
    );
    site.write("site.toml", &cfg);

    let every_ms = 3_600_000 / calls;
    let mut sc = format!(
        "[[call]]\nat = \"0s\"\nfrom = \"1{{n:6}}\"\nto = \"4001\"\nrepeat = {}\nevery = \"{}ms\"\nhangup_after = \"6m\"\n\n",
        calls / 2,
        every_ms * 2
    );
    sc += &format!(
        "[[call]]\nat = \"{every_ms}ms\"\nfrom = \"2{{n:6}}\"\nto = \"4002\"\nrepeat = {}\nevery = \"{}ms\"\nhangup_after = \"6m\"\n\n",
        calls / 2,
        every_ms * 2
    );
    for i in 1..=agents {
        sc += &format!(
            "[[agent]]\nname = \"a{i}\"\nline = \"desk-{i}\"\nanswer_after = \"{}ms\"\ntalk = \"{}s\"\n\n",
            1000 + (i * 37) % 4000,
            60 + (i * 13) % 120
        );
    }
    let path = site.write("calls.toml", &sc);

    let t0 = Instant::now();
    let mut run = cmd();
    run.args(["run", "--fast", "--until-idle", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .arg("--scenario")
        .arg(&path)
        .env("RUST_LOG", "warn");
    let out = output_within(run, RUN_LIMIT * 4);
    let wall = t0.elapsed();
    assert!(out.status.success(), "{}", text(&out));

    let table = cmd()
        .arg("records")
        .arg("--data")
        .arg(site.data())
        .args(["--table", "outbox"])
        .output()
        .unwrap();
    let stats: serde_json::Value = String::from_utf8_lossy(&table.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|o| o["stream"] == "acd_stats")
        .map(|o| o["payload"].clone())
        .expect("acd_stats in the outbox");
    let answered: u64 = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["answered"].as_u64().unwrap_or(0))
        .sum();
    let sched = stats["scheduler_us"].as_u64().unwrap_or(0);
    println!(
        "acd-bench: {agents} agents, {calls} calls over 1 h of virtual time, 2 queues sharing agents"
    );
    for q in stats["queues"].as_array().unwrap() {
        println!(
            "  queue {:<8} joined {} answered {} abandoned {} timeouts {} service level {:.0} % ASA {:.1} s",
            q["queue"].as_str().unwrap_or("?"),
            q["joined"],
            q["answered"],
            q["abandoned"],
            q["timeouts"],
            q["service_level"].as_f64().unwrap_or(0.0) * 100.0,
            q["avg_speed_of_answer_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        );
    }
    println!(
        "  wall time of the whole run      {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "  ACD scheduling time             {:.3} s",
        sched as f64 / 1e6
    );
    println!(
        "  scheduling cost per call        {:.1} µs",
        sched as f64 / calls.max(1) as f64
    );
    println!("  calls connected                 {answered}");
}
