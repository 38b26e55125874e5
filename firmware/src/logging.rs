//! Logging set-up: readable on a terminal, plain under systemd.
//!
//! Under journald (`JOURNAL_STREAM` is set) lines carry no colours and no
//! timestamps (the journal adds its own). `RUST_LOG` overrides the level the
//! config gives.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},rusqlite=warn")));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journald && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let _ = if journald {
        builder.without_time().try_init()
    } else {
        builder
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .try_init()
    };
}
