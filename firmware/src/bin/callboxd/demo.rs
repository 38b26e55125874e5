//! `demo`: a ready-made site with a built-in scenario, run from a temporary
//! directory, and the summary of what happened printed when it ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use callbox_firmware::store;
use callbox_hal::sim::{SimControl, SimStats};

use crate::Failure;
use crate::run::run;

/// The demo site, built in so `callboxd demo` runs from any directory.
/// System prompts come from the installed set (or the source tree).
const DEMO_FILES: &[(&str, &[u8])] = &[
    ("site.toml", include_bytes!("../../../demo/site.toml")),
    ("calls.toml", include_bytes!("../../../demo/calls.toml")),
    ("products.csv", include_bytes!("../../../demo/products.csv")),
    // What the simulated sales caller and agent alice say.
    (
        "caller-order.wav",
        include_bytes!("../../../demo/caller-order.wav"),
    ),
    (
        "agent-greeting.wav",
        include_bytes!("../../../demo/agent-greeting.wav"),
    ),
    (
        "agent-answer.wav",
        include_bytes!("../../../demo/agent-answer.wav"),
    ),
    (
        "prompts/welcome.wav",
        include_bytes!("../../../demo/prompts/welcome.wav"),
    ),
    (
        "prompts/menu.wav",
        include_bytes!("../../../demo/prompts/menu.wav"),
    ),
    (
        "prompts/menu-short.wav",
        include_bytes!("../../../demo/prompts/menu-short.wav"),
    ),
];

pub fn demo(seconds: Option<u64>, data: Option<PathBuf>, fast: bool) -> Result<(), Failure> {
    let dir = tempfile::tempdir().context("creating the demo directory")?;
    std::fs::create_dir_all(dir.path().join("prompts")).context("writing the demo site")?;
    for (name, bytes) in DEMO_FILES {
        std::fs::write(dir.path().join(name), bytes).context("writing the demo site")?;
    }
    let data = data.unwrap_or_else(|| dir.path().join("data"));
    println!(
        "callbox demo: a branch with 6 trunk lines, 2 agent desks, a supervisor's desk and an IVR menu; simulated callers key it in band."
    );
    // In real time the demo also answers softphones on this machine; in
    // virtual time a SIP peer's clock would not match the box's.
    if !fast {
        let sip = add_sip(&dir.path().join("site.toml")).context("writing the demo site")?;
        println!(
            "Call it from a softphone on this machine: dial sip:4008001234@{0} (the IVR), \
             or register as agent carol: account sip:carol@{0}, password {1}.",
            sip.0, sip.1
        );
    }
    if !fast {
        let url = add_console(&dir.path().join("site.toml"), &data).map_err(Failure::Other)?;
        println!(
            "Web console: {} — log in as admin with the one-time password {} and choose your own \
             (the certificate is the box's own, SHA-256 {}).",
            url.0, url.1, url.2
        );
    }
    println!("Data in {}. Ctrl-C stops early.\n", data.display());
    // `--seconds` runs that long even after the simulated callers are done,
    // so a softphone can go on calling.
    let control = run(
        &dir.path().join("site.toml"),
        Some(data.clone()),
        Some(&dir.path().join("calls.toml")),
        fast,
        seconds.is_none(),
        seconds.map(Duration::from_secs),
        None,
    )?;
    summary(&data, control.as_ref())
}

/// Adds SIP to the demo site: a trunk for softphones calling from this
/// machine and a SIP desk for agent carol with a password made now (there
/// is no default password). Port 5060 on loopback when free, else any.
/// Returns the SIP address and carol's password.
fn add_sip(site: &Path) -> std::io::Result<(std::net::SocketAddr, String)> {
    let addr = std::net::UdpSocket::bind("127.0.0.1:5060")
        .or_else(|_| std::net::UdpSocket::bind("127.0.0.1:0"))?
        .local_addr()?;
    let password = callbox_firmware::secrets::random_hex(6)?;
    let text = std::fs::read_to_string(site)?.replace(
        "members = { alice = 0, bob = 0 }",
        "members = { alice = 0, bob = 0, carol = 0 }",
    );
    let text = format!(
        r#"{text}
# SIP (docs/sip.md): softphones on this machine call in as the carrier,
# and agent carol works from a softphone.
[sip]
listen = "{addr}"

[[line]]
id = "softphones"
kind = "trunk"
description = "calls from softphones on this machine"
sip = {{ peer = "127.0.0.1", keepalive = "off" }}

[[line]]
id = "desk-3"
kind = "station"
description = "agent carol's softphone"
sip = {{ username = "carol", password = "{password}" }}

[acd.agent.carol]
number = "1003"
station = "desk-3"
logged_in = true
"#
    );
    std::fs::write(site, text)?;
    Ok((addr, password))
}

/// Turns the web console on for the demo: HTTPS on loopback port 8443 when
/// free, else any; a one-time admin password made now. Returns the URL,
/// the password and the certificate's fingerprint.
fn add_console(site: &Path, data: &Path) -> anyhow::Result<(String, String, String)> {
    let addr = std::net::TcpListener::bind("127.0.0.1:8443")
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?
        .local_addr()?;
    let text = std::fs::read_to_string(site)?;
    std::fs::write(
        site,
        format!("{text}\n# The web console (docs/console.md).\n[console]\nlisten = [\"{addr}\"]\n"),
    )?;
    // The certificate the daemon will serve, made now for its fingerprint.
    let id = callbox_firmware::console::own_identity(data, &[addr])?;
    let password = callbox_firmware::console::reset_admin(data)?;
    let fp = callbox_firmware::certs::fingerprint(&id.cert_pem).unwrap_or_default();
    Ok((format!("https://{addr}/"), password, fp))
}

fn summary(data: &Path, control: Option<&SimControl>) -> Result<(), Failure> {
    let recs = store::read_records(data, &store::RecordQuery::default()).map_err(Failure::Store)?;
    let count = |d: &str| recs.iter().filter(|r| r.disposition == d).count();
    let answered: Vec<_> = recs
        .iter()
        .filter(|r| r.disposition == "answered")
        .collect();
    let avg = |v: Vec<i64>| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<i64>() as f64 / v.len() as f64 / 1000.0
        }
    };
    println!("\n== summary ==");
    println!("calls recorded         {}", recs.len());
    println!("  answered             {}", answered.len());
    println!(
        "    caller hung up     {}",
        answered
            .iter()
            .filter(|r| r.hangup_side.as_deref() == Some("caller"))
            .count()
    );
    println!(
        "    ended by the box   {}",
        answered
            .iter()
            .filter(|r| r.hangup_side.as_deref() == Some("box"))
            .count()
    );
    println!(
        "    cut by shutdown    {}",
        answered
            .iter()
            .filter(|r| r.hangup_cause.as_deref() == Some("shutdown"))
            .count()
    );
    println!("  abandoned (ringing)  {}", count("abandoned"));
    println!(
        "  rejected / failed    {} / {}",
        count("rejected"),
        count("failed")
    );
    let mut outcomes: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &recs {
        if let Some(o) = r.outcome.as_deref() {
            *outcomes.entry(o).or_default() += 1;
        }
    }
    if !outcomes.is_empty() {
        println!("IVR outcomes");
        for (o, n) in &outcomes {
            println!("  {o:<20} {n}");
        }
        let scores: Vec<u8> = recs.iter().filter_map(|r| r.survey_score).collect();
        if !scores.is_empty() {
            println!("  survey scores        {scores:?}");
        }
    }
    println!(
        "avg time on line       {:.1} s",
        avg(answered.iter().filter_map(|r| r.answered_ms).collect())
    );
    // The ACD leaves its statistics in the outbox when it stops.
    let stats = store::read_table(data, "outbox").map_err(Failure::Store)?;
    if let Some(acd) = stats.iter().rev().find(|r| r["stream"] == "acd_stats") {
        let p = &acd["payload"];
        for q in p["queues"].as_array().into_iter().flatten() {
            println!(
                "queue {:<16} joined {} answered {} abandoned {} timeouts {} turned away {}; service level {:.0} %, ASA {:.1} s, AHT {:.1} s",
                q["queue"].as_str().unwrap_or("?"),
                q["joined"],
                q["answered"],
                q["abandoned"],
                q["timeouts"],
                q["turned_away"],
                q["service_level"].as_f64().unwrap_or(0.0) * 100.0,
                q["avg_speed_of_answer_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                q["avg_handle_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            );
        }
        for a in p["agents"].as_array().into_iter().flatten() {
            println!(
                "agent {:<16} {:<10} calls {} talk {:.1} s pauses {}",
                a["agent"].as_str().unwrap_or("?"),
                a["state"].as_str().unwrap_or("?"),
                a["calls"],
                a["talk_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                a["pauses"],
            );
        }
    }
    let rows = store::read_recordings(data, None).map_err(Failure::Store)?;
    if !rows.is_empty() {
        let secs: u64 = rows.iter().filter_map(|r| r.duration_ms).sum::<u64>() / 1000;
        let bytes: u64 = rows.iter().filter_map(|r| r.size).sum();
        let mut states: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &rows {
            *states.entry(r.state.as_str()).or_default() += 1;
        }
        println!(
            "recordings             {} ({secs} s, {} KiB) {states:?} in {}",
            rows.len(),
            bytes / 1024,
            data.join(callbox_firmware::recorder::DIR).display()
        );
    }
    if let Some(c) = control {
        let s = c.stats();
        println!(
            "callers blocked (all trunks busy) {}",
            SimStats::get(&s.calls_blocked)
        );
        println!(
            "digits keyed by callers/agents    {}",
            SimStats::get(&s.digits_sent)
        );
        println!("status LED at the end             {}", c.leds().status);
    }
    Ok(())
}
