//! The `campaign` part: the real `callboxd` in virtual time (`--fast`)
//! dials an agentless campaign of N contacts (100,000; `--quick` 500) on
//! 30 trunks, every tenth number on the do-not-call list, every call
//! refused by the network at once (congestion) and `max_attempts = 1`, so
//! each contact is one dialling decision and, for nine in ten, one call
//! record. Figures: the list's load (CSV read, stored, read back), dialling
//! decisions per second of wall time, peak RSS.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use callbox_tests::Site;

use super::{Figure, Opts, Running, daemon_cmd, fig, run_site, status_kib};

pub(super) fn campaign(o: &Opts) -> Result<Vec<Figure>> {
    let n: usize = o
        .calls
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(if o.quick { 500 } else { 100_000 });
    let trunks = 30;
    let all_day = "[\"00:00-24:00\"]";
    let site = Site::with_config(
        trunks,
        0,
        &format!(
            r#"
[ivr]
language = "en"
start = "bye"

[ivr.node.bye]
type = "hangup"

[campaigns]
dnc = "dnc.csv"

[campaign.bench]
number = "4008001234"
mode = "agentless"
start = "bye"
list = "list.csv"
max_lines = {trunks}
max_attempts = 1

[campaign.bench.window]
mon = {all_day}
tue = {all_day}
wed = {all_day}
thu = {all_day}
fri = {all_day}
sat = {all_day}
sun = {all_day}
"#
        ),
    );
    let mut list = String::from("number,name,plan\n");
    let mut dnc = String::from("number\n");
    for i in 0..n {
        let number = format!("139{i:08}");
        list += &format!("{number},Contact {i},gold\n");
        if i % 10 == 0 {
            dnc += &format!("{number}\n");
        }
    }
    site.write("list.csv", &list);
    site.write("dnc.csv", &dnc);
    let path = site.write("calls.toml", "");
    let mut c = daemon_cmd(&[]);
    run_site(&mut c, &site, Some(&path));
    c.args(["--fast", "--until-idle"]);
    c.env(
        "RUST_LOG",
        "warn,callbox_firmware::app=info,callbox_firmware::calls::campaign=info",
    );
    let (mut d, _) = Running::start(c)?;
    let ready = d.wait_ready(Duration::from_secs(60))?;
    let pid = d.pid();
    let hwm = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let keep = hwm.clone();
    std::thread::spawn(move || {
        while let Some(k) = status_kib(pid, "VmHWM") {
            keep.fetch_max(k, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // The list is loaded when the campaign says it starts.
    let load_deadline = Instant::now() + Duration::from_secs(600);
    let (started, loaded_kib) = loop {
        if d.log_lines().iter().any(|l| l.contains("campaign starts")) {
            break (Instant::now(), status_kib(pid, "VmHWM").unwrap_or(0));
        }
        ensure!(Instant::now() < load_deadline, "the campaign never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    d.wait(Duration::from_secs(7200))?;
    let done = Instant::now();
    let load = started.duration_since(ready).as_secs_f64();
    let dial = done.duration_since(started).as_secs_f64();
    let rate = n as f64 / dial;
    let peak = hwm.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    let at_load = loaded_kib as f64 / 1024.0;
    let db = site.data().join("callbox.db");
    let summary = std::process::Command::new(callbox_tests::callboxd())
        .args(["campaigns", "--json", "--data"])
        .arg(site.data())
        .output()?;
    let text = String::from_utf8_lossy(&summary.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(text.trim())?;
    let barred = v["states"]["dnc"].as_u64().unwrap_or(0);
    let exhausted = v["states"]["exhausted"].as_u64().unwrap_or(0);
    ensure!(
        barred as usize == n.div_ceil(10) && (barred + exhausted) as usize == n,
        "every contact decided: {text}"
    );
    println!(
        "{n} contacts: list loaded in {load:.1} s; {rate:.0} dialling decisions/s ({dial:.1} s, {exhausted} dialled, {barred} barred); peak RSS {at_load:.1} MiB once loaded, {peak:.1} MiB in all; database {:.1} MiB",
        std::fs::metadata(&db).map_or(0.0, |m| m.len() as f64 / 1048576.0)
    );
    Ok(vec![
        fig(
            format!(
                "campaign of {n} contacts (agentless, 30 lines, every call refused at once, one in ten barred): dialling decisions per second of wall time in `--fast`"
            ),
            format!("**{rate:.0}/s** ({dial:.0} s)"),
            "",
        ),
        fig(
            format!(
                "campaign of {n} contacts: list loaded (CSV read, stored, read back); peak RSS once loaded; peak RSS in all"
            ),
            format!("{load:.1} s; {at_load:.1} MiB; {peak:.1} MiB"),
            "",
        ),
    ])
}
