//! Fills a box's outbox with records, the way the firmware writes them
//! (through its own store), for the backlog tests and the benchmark.
//!
//! ```sh
//! outbox-fill --data DIR [--count 100000] [--stream notify] [--bytes 300]
//! ```
//!
//! The daemon may be running on the same data directory: the database is
//! in WAL mode and both write through SQLite's locking.

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: outbox-fill --data DIR [--count N] [--stream NAME] [--bytes N]";

fn main() -> Result<()> {
    let mut data = None;
    let mut count = 100_000usize;
    let mut stream = "notify".to_string();
    let mut bytes = 300usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--data" => data = Some(std::path::PathBuf::from(val()?)),
            "--count" => count = val()?.parse().context("--count")?,
            "--stream" => stream = val()?,
            "--bytes" => bytes = val()?.parse().context("--bytes")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument `{a}`\n{USAGE}"),
        }
    }
    let data = data.with_context(|| USAGE.to_string())?;
    callbox_tests::mqtt::fill_outbox(&data, count, &stream, bytes)?;
    println!(
        "{count} {stream} records added to the outbox in {}",
        data.display()
    );
    Ok(())
}
