//! `callbox-hq`: headquarters' tool.
//!
//! The MQTT issue gives it its commands (`fleet`, `watch`, `collect`, `cmd`,
//! `config push`); until then it only identifies itself.

use clap::Parser;

/// Watches and steers a fleet of callboxes through the MQTT broker.
#[derive(Parser, Debug)]
#[command(name = "callbox-hq", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    println!(
        "callbox-hq {}: no commands yet; see `--help`",
        env!("CARGO_PKG_VERSION")
    );
}
