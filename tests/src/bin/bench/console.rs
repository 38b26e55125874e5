//! The `console` part: the web console's cost on the demo site in real
//! time. Idle RSS with `[console]` and without; then, with the demo's
//! callers moving the wallboard, 50 browser sessions at once, each holding
//! the wallboard's event stream open and asking for the wallboard, the
//! newest 50 call records and the page in turn (a fresh TLS connection per
//! request, as the harness's client has no keep-alive: the pessimistic
//! case). Figures: latency percentiles per request, requests per second,
//! RSS under that load.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use callbox_tests::console::Api;
use callbox_tests::mqtt::free_port;
use callbox_tests::{Site, callboxd};

use super::{Figure, Opts, Running, copy_tree, daemon_cmd, fig, run_site, status_kib, workspace};

const SESSIONS: usize = 50;

fn idle_rss(site: &Site, settle: Duration) -> Result<f64> {
    let mut c = daemon_cmd(&[]);
    run_site(&mut c, site, None);
    let (mut d, _) = Running::start(c)?;
    d.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(settle);
    let kib = status_kib(d.pid(), "VmRSS").context("VmRSS")?;
    d.stop()?;
    Ok(kib as f64 / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(super) fn console(o: &Opts) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    let site = Site {
        dir: tempfile::tempdir()?,
    };
    for e in std::fs::read_dir(workspace().join("firmware/demo"))? {
        let e = e?;
        copy_tree(&e.path(), &site.dir.path().join(e.file_name()))?;
    }
    let settle = Duration::from_secs(if o.quick { 1 } else { 5 });
    let off = idle_rss(&site, settle)?;
    let port = free_port();
    let text = site.config_text() + &format!("\n[console]\nlisten = [\"127.0.0.1:{port}\"]\n");
    site.write("site.toml", &text);
    let otp = std::process::Command::new(callboxd())
        .args(["console", "reset-admin", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()?;
    ensure!(otp.status.success(), "reset-admin failed");
    let otp = String::from_utf8(otp.stdout)?.trim().to_string();
    let info = std::process::Command::new(callboxd())
        .args(["console", "info", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()?;
    let fp = String::from_utf8(info.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: ").map(str::to_string))
        .context("no fingerprint")?;
    let on = idle_rss(&site, settle)?;
    println!("idle RSS: {off:.1} MiB without the console, {on:.1} MiB with it");
    out.push(fig(
        "idle RSS, this build, demo site: no `[console]` / `[console]` on, nobody logged in",
        format!("{off:.1} MiB / **{on:.1} MiB** (+{:.1} MiB)", on - off),
        "+≤ 2 MiB",
    ));

    // Under load: the demo's callers, 50 sessions.
    let mut c = daemon_cmd(&[]);
    run_site(&mut c, &site, Some(&site.dir.path().join("calls.toml")));
    let (mut d, _) = Running::start(c)?;
    d.wait_ready(Duration::from_secs(30))?;
    let mut admin = Api::new(port, &fp);
    let end = Instant::now() + Duration::from_secs(10);
    while admin.try_send("GET", "/", None, &[]).is_err() {
        ensure!(Instant::now() < end, "the console did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        admin.login("admin", &otp).status == 200,
        "the one-time login failed"
    );
    let set = admin.send(
        "POST",
        "/api/password",
        Some(r#"{"new":"bench-admin-password"}"#),
    );
    ensure!(set.status == 200, "setting the password failed");
    let before = status_kib(d.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0;
    let run_for = Duration::from_secs(if o.quick { 3 } else { 20 });
    let latencies = Arc::new(Mutex::new(Vec::<(usize, f64)>::new()));
    let events = Arc::new(Mutex::new(0usize));
    let errors = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..SESSIONS {
        let mut api = Api::new(port, &fp);
        let login = api.login("admin", "bench-admin-password");
        ensure!(
            login.status == 200,
            "a session's login failed: {}",
            login.status
        );
        let (lat, ev, err) = (latencies.clone(), events.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            // The wallboard's stream, read on its own thread until the
            // daemon stops.
            if let Ok(mut s) = api.stream("/api/wallboard/events") {
                let ev = ev.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let k = buf[..n]
                            .windows(16)
                            .filter(|w| w == b"event: wallboard")
                            .count();
                        *ev.lock().unwrap() += k;
                    }
                });
            }
            let paths = ["/api/wallboard", "/api/records?limit=50", "/"];
            let mut i = 0;
            while started.elapsed() < run_for {
                let t = Instant::now();
                match api.try_send("GET", paths[i % 3], None, &[]) {
                    Ok(a) if a.status == 200 => {
                        lat.lock()
                            .unwrap()
                            .push((i % 3, t.elapsed().as_secs_f64() * 1000.0));
                    }
                    _ => *err.lock().unwrap() += 1,
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(run_for / 2);
    let loaded = status_kib(d.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0;
    for t in threads {
        let _ = t.join();
    }
    let took = started.elapsed().as_secs_f64();
    d.stop()?;
    let lat = latencies.lock().unwrap().clone();
    let n = lat.len();
    ensure!(n > 0, "no request answered");
    for (k, name) in [
        (0, "GET /api/wallboard"),
        (1, "GET /api/records?limit=50"),
        (2, "GET / (the page)"),
    ] {
        let mut v: Vec<f64> = lat
            .iter()
            .filter(|(i, _)| *i == k)
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        let (p50, p95, p99) = (
            percentile(&v, 0.5),
            percentile(&v, 0.95),
            percentile(&v, 0.99),
        );
        println!(
            "{name}: {} requests, p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms",
            v.len()
        );
        out.push(fig(
            format!("{name}, {SESSIONS} sessions at once with their event streams open, demo calls running; new TLS connection per request"),
            format!("p50 **{p50:.0} ms**, p95 {p95:.0} ms, p99 {p99:.0} ms ({} requests)", v.len()),
            "",
        ));
    }
    let errs = *errors.lock().unwrap();
    let evs = *events.lock().unwrap();
    println!(
        "{n} requests in {took:.1} s ({:.0}/s), {errs} failed; {evs} wallboard events pushed; RSS {before:.1} → {loaded:.1} MiB",
        n as f64 / took
    );
    out.push(fig(
        format!("console load: requests answered per second / failed / wallboard events pushed, {SESSIONS} sessions"),
        format!("**{:.0}/s** / {errs} / {evs}", n as f64 / took),
        "",
    ));
    out.push(fig(
        format!("RSS, demo calls running: console idle / {SESSIONS} sessions under load"),
        format!("{before:.1} MiB / **{loaded:.1} MiB**"),
        "",
    ));
    Ok(out)
}
