//! The `hq` part: headquarters' collectors into PostgreSQL at fleet scale.
//! A real PostgreSQL and mosquitto on this machine; `callbox-hq simulate`
//! puts 10,000 boxes on the broker (300 with `--quick`), each sending
//! its calls' `cdr` and `call_events` records every 5 s, faster than the
//! collectors can store them; 1, 2 and then 4 collectors of one group
//! store into a fresh database each. Figures: records per second stored
//! while the backlog lasts (from PostgreSQL's own insert counters, between
//! 20 % and 80 % of the run's records), the time to store them all, and a
//! check that every record published is stored once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use callbox_tests::mqtt::{Broker, Collector, hq_net_within, last_json};
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
    Ok(out)
}
