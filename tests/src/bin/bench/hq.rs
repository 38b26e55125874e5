//! The `hq` part: headquarters' collectors into PostgreSQL at fleet scale.
//! A real PostgreSQL and mosquitto on this machine; `callbox-hq simulate`
//! puts 10,000 boxes on the broker (300 with `--quick`), each sending
//! its calls' `cdr` and `call_events` records every 5 s, faster than the
//! collectors can store them; 1, 2 and then 4 collectors of one group
//! store into a fresh database each. Figures: records per second stored
//! while the backlog lasts (from PostgreSQL's own insert counters, between
//! 20 % and 80 % of the run's records), the time to store them all, and a
//! check that every record published is stored once. Then the
//! dashboard's latency over 10 million calls.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use callbox_tests::console::Api;
use callbox_tests::hq::{add_user, serve};
use callbox_tests::mqtt::{Broker, Collector, Pki, hq_net_within, last_json};
use callbox_tests::postgres::Postgres;

use super::{Figure, Opts, fig};

/// Records PostgreSQL has inserted into `db`'s records partitions.
fn inserted(pg: &Postgres, db: &str) -> u64 {
    pg.psql_in(
        db,
        "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname LIKE 'records%'",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

pub(super) fn hq(o: &Opts) -> Result<Vec<Figure>> {
    let pg = Postgres::start();
    let broker = Broker::start();
    let (boxes, secs) = if o.quick { (300, 8) } else { (10_000, 40) };
    let mut out = Vec::new();
    let mut rates = Vec::new();
    let mut subscribed = 0;
    for n in [1usize, 2, 4] {
        let db = format!("ingest{n}");
        pg.psql(&format!("CREATE DATABASE {db}"));
        let base = pg.url();
        let url = format!(
            "{}/{db}",
            &base[..base.rfind('/').context("a database URL")?]
        );
        let group = format!("bench{n}");
        let mut cols = Vec::new();
        for i in 0..n {
            subscribed += 1;
            let id = format!("bench-{n}-{i}");
            cols.push(Collector::start_db(
                &broker,
                &url,
                &["--client-id", &id, "--group", &group],
                subscribed,
            ));
        }
        // The fleet in a thread; PostgreSQL's counters sampled meanwhile.
        let args: Vec<String> = [
            "simulate",
            "--boxes",
            &boxes.to_string(),
            "--calls-per-day",
            "86400",
            "--batch-every",
            "5",
            "--seconds",
            &secs.to_string(),
            "--connect-rate",
            "2000",
            "--ack-wait",
            "600",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t0 = Instant::now();
        let mut samples = Vec::new();
        let res = std::thread::scope(|s| {
            let sim = s.spawn(|| {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                hq_net_within(&broker, &a, Duration::from_secs(1800))
            });
            while !sim.is_finished() {
                samples.push((t0.elapsed().as_secs_f64(), inserted(&pg, &db)));
                std::thread::sleep(Duration::from_secs(1));
            }
            sim.join()
        })
        .map_err(|_| anyhow::anyhow!("the simulator thread panicked"))?;
        ensure!(
            res.status.success(),
            "simulate: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let totals = last_json(&res.stdout);
        let records = totals["records"]
            .as_u64()
            .context("the simulator's totals")?;
        let stored: u64 = pg
            .psql_in(&db, "SELECT count(*) FROM records")
            .trim()
            .parse()
            .context("counting the records")?;
        ensure!(
            stored == records && totals["acked"] == records,
            "{n} collectors: {records} records published, {} acked, {stored} stored",
            totals["acked"]
        );
        // Sustained: between 20 % and 80 % of the run's records.
        let at = |share: f64| {
            samples
                .iter()
                .find(|(_, c)| *c as f64 >= share * records as f64)
                .copied()
        };
        let rate = match (at(0.2), at(0.8)) {
            (Some((t1, c1)), Some((t2, c2))) if t2 > t1 => (c2 - c1) as f64 / (t2 - t1),
            _ => records as f64 / totals["acked_s"].as_f64().unwrap_or(f64::MAX),
        };
        let published = records as f64 / totals["published_s"].as_f64().unwrap_or(1.0);
        println!(
            "{n} collector(s): {records} records from {boxes} boxes, {rate:.0}/s stored sustained, all stored in {:.1} s (published at {published:.0}/s)",
            totals["acked_s"].as_f64().unwrap_or(0.0)
        );
        rates.push(rate);
        out.push(fig(
            format!("records stored into PostgreSQL, {n} collector(s), {boxes} simulated boxes, every record once"),
            format!(
                "**{rate:.0}/s** sustained ({records} records, all stored {:.1} s after the start; published at {published:.0}/s)",
                totals["acked_s"].as_f64().unwrap_or(0.0)
            ),
            if n == 2 { "≥ 10,000/s" } else { "" },
        ));
        drop(cols);
    }
    out.push(fig(
        "ingest from 1 to 2 collectors",
        format!("**{:.2}×**", rates[1] / rates[0].max(1.0)),
        "≥ 1.6×",
    ));
    out.extend(dashboard(o, &pg)?);
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The dashboard's latency over a database of 10 million calls (200,000
/// with `--quick`) from 10,000 boxes over a year: the fleet list, the
/// boxes with a problem, a 30-day report and a number's calls, each asked
/// over a new HTTPS connection by a logged-in viewer.
pub(super) fn dashboard(o: &Opts, pg: &Postgres) -> Result<Vec<Figure>> {
    let calls: u64 = if o.quick { 200_000 } else { 10_000_000 };
    pg.psql("CREATE DATABASE dash");
    let base = pg.url();
    let url = format!(
        "{}/dash",
        &base[..base.rfind('/').context("a database URL")?]
    );
    // The user (and with it the schema, migrated by callbox-hq).
    add_user(&url, "bench", "viewer", "bench-viewer-pass");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let year = 365 * 86_400_000i64;
    let t0 = Instant::now();
    pg.psql_in(
        "dash",
        &format!(
            "INSERT INTO boxes (site, box, state, session, firmware, telemetry_ms, calls, waiting, backlog,
                 lines_up, lines_total, lines_down, alarms, seen_ms)
             SELECT 'site-' || lpad((i / 10)::text, 4, '0'), 'box-' || lpad(i::text, 5, '0'),
                 CASE WHEN i % 50 = 0 THEN 'offline' ELSE 'online' END, 1, '0.1.0', {now}, i % 5, i % 3, 0,
                 CASE WHEN i % 97 = 0 THEN 1 ELSE 2 END, 2, CASE WHEN i % 97 = 0 THEN 'trunk-2' END,
                 CASE WHEN i % 89 = 0 THEN 1 ELSE 0 END, {now}
             FROM generate_series(0, 9999) i"
        ),
    );
    pg.psql_in(
        "dash",
        &format!(
            "INSERT INTO calls (site, box, id, epoch, seq, started_ms, direction, caller, dialled, queue,
                 agent, disposition, outcome, duration_ms, talk_ms, wrap_code, survey_score)
             SELECT 'site-' || lpad(((i % 10000) / 10)::text, 4, '0'), 'box-' || lpad((i % 10000)::text, 5, '0'),
                 'c' || i, 'E', i, {now} - (i * {year} / {calls}), 'inbound',
                 '138' || lpad((i % 100000000)::text, 8, '0'), '40080' || lpad((i % 50)::text, 5, '0'), 'sales',
                 'a' || (i % 20),
                 CASE WHEN i % 10 < 8 THEN 'answered' WHEN i % 10 = 8 THEN 'abandoned' ELSE 'no_answer' END,
                 'done', 60000, 30000, CASE WHEN i % 7 = 0 THEN (i % 4)::text END,
                 CASE WHEN i % 5 = 0 THEN 1 + (i / 5) % 5 END
             FROM generate_series(1::bigint, {calls}::bigint) i"
        ),
    );
    pg.psql_in("dash", "VACUUM ANALYZE");
    let filled = t0.elapsed().as_secs_f64();
    println!("dashboard: {calls} calls and 10,000 boxes in PostgreSQL in {filled:.0} s");

    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path());
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "metrics-token-0123456789")?;
    let s = serve(&url, dir.path(), &pki, &token);
    let mut api = Api::new(s.port, &s.fingerprint);
    ensure!(
        api.login("bench", "bench-viewer-pass").status == 200,
        "login: {}",
        s.log()
    );
    let today = jiff::Zoned::now().date();
    let month_ago = today.checked_sub(jiff::Span::new().days(29))?;
    let report = format!("/api/reports?from={month_ago}&to={today}");
    let numbers = format!("/api/calls?dialled=4008000007&from={month_ago}&to={today}");
    let mut out = Vec::new();
    for (what, path, target) in [
        (
            "the fleet list (10,000 boxes, first 1,000 shown, totals)",
            "/api/fleet",
            "p95 ≤ 300 ms",
        ),
        ("the boxes with a problem", "/api/fleet?problems=true", ""),
        (
            "a 30-day report, every campaign number",
            report.as_str(),
            "p95 ≤ 300 ms",
        ),
        (
            "a campaign number's calls over 30 days (newest 1,000)",
            numbers.as_str(),
            "",
        ),
    ] {
        // One to warm the caches, then the measured ones.
        let first = api.send("GET", path, None);
        ensure!(first.status == 200, "{path}: {}\n{}", first.status, s.log());
        let mut ms = Vec::new();
        for _ in 0..if o.quick { 5 } else { 30 } {
            let t = Instant::now();
            let a = api.send("GET", path, None);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            ensure!(a.status == 200, "{path}: {}", a.status);
        }
        ms.sort_by(f64::total_cmp);
        let (p50, p95) = (percentile(&ms, 0.5), percentile(&ms, 0.95));
        println!("dashboard: {what}: p50 {p50:.0} ms, p95 {p95:.0} ms");
        out.push(fig(
            format!("dashboard over {calls} calls: {what}"),
            format!("p50 {p50:.0} ms, **p95 {p95:.0} ms**"),
            target,
        ));
    }
    Ok(out)
}
