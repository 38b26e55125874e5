//! `callbox-hq`: headquarters' tool.
//!
//! Boxes seal call recordings with age to headquarters' X25519 public keys;
//! this tool makes and shows those keys (`keygen`, `pubkey`) and decrypts the
//! recordings (`decrypt`). The identity files are standard age files, so the
//! `age` CLI can decrypt recordings too. The MQTT issue adds the fleet
//! commands (`fleet`, `watch`, `collect`, `cmd`, `config push`).

mod decrypt;
mod keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Watches and steers a fleet of callboxes; holds the keys to their recordings.
#[derive(Parser, Debug)]
#[command(name = "callbox-hq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generates an identity for decrypting recordings and prints its public
    /// key (the `age1…` string for the boxes' config).
    Keygen {
        /// Identity file to create (mode 0600); never overwritten.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Prints the public key of each identity in an identity file.
    Pubkey {
        /// Identity file (age format: `AGE-SECRET-KEY-1…` lines).
        #[arg(long, short)]
        identity: PathBuf,
    },
    /// Decrypts a sealed recording (`*.wav.age`).
    Decrypt {
        /// Identity file (age format: `AGE-SECRET-KEY-1…` lines).
        #[arg(long, short)]
        identity: PathBuf,
        /// The age file to decrypt.
        input: PathBuf,
        /// Where to write the plaintext [default: INPUT without `.age`].
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace OUTPUT if it exists.
        #[arg(long, short)]
        force: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without the
            // backtrace `anyhow` would add when RUST_BACKTRACE is set.
            eprintln!("callbox-hq: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { out } => {
            let public = keys::keygen(&out)?;
            println!("{public}");
        }
        Command::Pubkey { identity } => {
            for key in keys::public_keys(&identity)? {
                println!("{key}");
            }
        }
        Command::Decrypt {
            identity,
            input,
            output,
            force,
        } => {
            decrypt::decrypt(&identity, &input, output.as_deref(), force)?;
        }
    }
    Ok(())
}
