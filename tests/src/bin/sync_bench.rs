//! Fleet-link benchmark: how fast a box drains its records backlog into a
//! real mosquitto, against a plain rumqttc QoS 1 publish loop on the same
//! broker.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/sync-bench [--records 100000] [--bytes 300]
//! ```
//!
//! 1. Starts mosquitto (`/usr/sbin/mosquitto`, or `$MOSQUITTO`) on a free
//!    loopback port, no persistence.
//! 2. Fills a fresh data directory's outbox with `--records` `notify`
//!    records of about `--bytes` bytes of JSON each, through the firmware's
//!    own store (the `outbox-fill` code).
//! 3. Starts the real `callboxd run` (the binary next to this one) on that
//!    directory with an `[uplink]` to the broker over plain TCP (default
//!    batching, in-flight window and PUBACK acknowledgement) and polls the
//!    outbox every 10 ms until it is empty. The rate counts from the first
//!    record acknowledged (the connection is up) to the last.
//! 4. In the same run, a rumqttc client publishes as many QoS 1 messages,
//!    each the size of one record's JSON as the box sends it, to a topic
//!    nobody subscribes to, and counts from the first publish to the last
//!    PUBACK.
//!
//! Nobody subscribes in either case: both measure the publisher and the
//! broker, not a collector. The box sends `batch` (100) records per
//! message, so its records/s may beat the loop's messages/s.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use callbox_tests::mqtt::{Broker, Daemon, add_uplink, fill_outbox, outbox_len};
use callbox_tests::{Site, callboxd};

const USAGE: &str = "usage: sync-bench [--records N] [--bytes N]";

fn main() -> Result<()> {
    let mut records = 100_000usize;
    let mut bytes = 300usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--records" => records = val()?.parse().context("--records")?,
            "--bytes" => bytes = val()?.parse().context("--bytes")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument `{a}`\n{USAGE}"),
        }
    }
    ensure!(records > 0, "--records must be at least 1");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let broker = Broker::start();
    let version = std::process::Command::new(callbox_tests::mqtt::mosquitto())
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default();
    println!(
        "sync-bench: {records} records of ~{bytes} bytes; {version} on 127.0.0.1:{}; {profile} build",
        broker.port()
    );

    // The backlog.
    let site = Site::new(1, 0, 500, "");
    let cfg =
        std::fs::read_to_string(site.config())?.replace("level = \"info\"", "level = \"warn\"");
    site.write("site.toml", &cfg);
    add_uplink(&site, &broker.uplink("box-bench", ""));
    let t = Instant::now();
    fill_outbox(&site.data(), records, "notify", bytes)?;
    let fill = t.elapsed();
    ensure!(
        outbox_len(&site.data()) == records as u64,
        "the fill left a different count"
    );
    println!(
        "  fill:        {records} records in {:.2} s ({:.0} records/s)",
        fill.as_secs_f64(),
        records as f64 / fill.as_secs_f64()
    );

    // The box drains it.
    println!("  callboxd:    {}", callboxd().display());
    let mut d = Daemon::start(&site, &[]);
    let started = Instant::now();
    let limit = Duration::from_secs(3600);
    let mut first: Option<(Instant, u64)> = None;
    let done = loop {
        let left = outbox_len(&site.data());
        let now = Instant::now();
        if first.is_none() && left < records as u64 {
            first = Some((now, left));
        }
        if left == 0 {
            break now;
        }
        ensure!(d.running(), "callboxd stopped:\n{}", d.log());
        ensure!(
            started.elapsed() < limit,
            "not drained within {limit:?} ({left} left):\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (t1, left1) = first.context("nothing drained")?;
    let counted = left1 as f64;
    let secs = done.duration_since(t1).as_secs_f64().max(1e-3);
    let box_rate = if counted > 0.0 {
        counted / secs
    } else {
        records as f64 / done.duration_since(started).as_secs_f64()
    };
    let _ = d.stop();
    println!(
        "  box drain:   {records} records, {:.2} s from start ({:.2} s from the first ack): {box_rate:.0} records/s",
        done.duration_since(started).as_secs_f64(),
        secs
    );

    // The plain loop.
    let size = one_record_size(bytes);
    let (n, secs) = rumqttc_loop(&broker, records, size)?;
    let loop_rate = n as f64 / secs;
    println!(
        "  rumqttc:     {n} QoS 1 messages of {size} bytes in {secs:.2} s: {loop_rate:.0} msg/s"
    );
    println!(
        "  ratio:       box records/s / rumqttc msg/s = {:.2}",
        box_rate / loop_rate
    );
    let build = if profile == "release" {
        "cargo build --release --bins"
    } else {
        "cargo build --bins"
    };
    println!(
        "  reproduce:   {build} && target/{profile}/sync-bench --records {records} --bytes {bytes}"
    );
    Ok(())
}

/// Bytes of one record as the box sends it: the `notify` body plus the
/// record's envelope (`seq`, `id`, `at`).
fn one_record_size(bytes: usize) -> usize {
    let body = serde_json::json!({
        "call_id": "fill-0000000",
        "flow": "fill",
        "message": "x".repeat(bytes.saturating_sub(60)),
    });
    let rec = serde_json::json!({
        "seq": 12345,
        "id": "0193b7e2-5c4a-7f00-8000-000000000000/notify/12345",
        "at": "2026-11-23T10:00:00.000Z",
        "data": body,
    });
    rec.to_string().len()
}

/// Publishes `n` QoS 1 messages of `size` bytes to a topic with no
/// subscriber and waits for every PUBACK; returns (n, seconds).
fn rumqttc_loop(broker: &Broker, n: usize, size: usize) -> Result<(usize, f64)> {
    use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut opts = callbox_tests::mqtt::client_options(broker, "sync-bench-loop", None);
        opts.set_clean_session(true);
        let (client, mut el) = AsyncClient::new(opts, 1000);
        // Connect first, so the clock counts publishing only.
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => bail!("rumqttc connect: {e}"),
            }
        }
        let payload = vec![b'x'; size];
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            for _ in 0..n {
                if client
                    .publish(
                        "bench/sink/records",
                        QoS::AtLeastOnce,
                        false,
                        payload.clone(),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
            }
            client
        });
        let mut acked = 0usize;
        while acked < n {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(Event::Outgoing(Outgoing::Publish(_)) | _) => {}
                Err(e) => bail!("rumqttc: {e} after {acked} acks"),
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let client = publisher.await?;
        let _ = client.disconnect().await;
        Ok((n, secs))
    })
}
