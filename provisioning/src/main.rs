//! `callbox-provision`: the field technician's tool.
//!
//! The ARM/provisioning issue gives it its commands (`ca init`, `enroll`,
//! `inject`, `verify`, `label`); until then it only identifies itself.

use clap::Parser;

/// Creates box identities and provisioning bundles, and injects them into
/// firmware images.
#[derive(Parser, Debug)]
#[command(name = "callbox-provision", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    println!(
        "callbox-provision {}: no commands yet; see `--help`",
        env!("CARGO_PKG_VERSION")
    );
}
