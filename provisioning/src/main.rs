//! `callbox-provision`: the field technician's tool (docs/provisioning.md).
//!
//! `ca init` makes the fleet CA once at headquarters; `enroll` makes a box's
//! identity and its provisioning bundle; `inject` / `write` put the bundle
//! on the image's or SD card's boot partition, where `callboxd` imports it
//! on first boot; `verify` checks a bundle (and with `--connect` the
//! broker's acceptance); `label` makes the sticker.
//!
//! Exit codes: 0 ok, 1 problems found (or a command failed), 2 the broker
//! refused the box or could not be reached (`verify --connect`).

mod bundle;
mod image;
mod label;
mod pki;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Creates box identities and provisioning bundles, and injects them into
/// firmware images.
#[derive(Parser, Debug)]
#[command(name = "callbox-provision", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The fleet CA.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Create a box's identity (signed by the fleet CA) and its bundle.
    Enroll {
        /// Directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Site id.
        #[arg(long)]
        site: String,
        /// Box id (the certificate's CN).
        #[arg(long = "box")]
        box_id: String,
        /// Broker URL, mqtts://host[:port].
        #[arg(long)]
        broker: String,
        /// Bundle directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Certificate lifetime in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Replace an existing bundle directory.
        #[arg(long)]
        force: bool,
    },
    /// Write a bundle into a disk image's FAT boot partition (offline).
    Inject {
        /// The disk image file (MBR).
        #[arg(long)]
        image: PathBuf,
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
    },
    /// Write a bundle onto a mounted boot partition.
    Write {
        /// The mounted boot partition.
        #[arg(long)]
        dir: PathBuf,
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
    },
    /// Check a bundle; with --connect, that the broker accepts the box.
    Verify {
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// The site the bundle must be for.
        #[arg(long)]
        site: Option<String>,
        /// Also connect to the broker with the box's identity.
        #[arg(long)]
        connect: bool,
    },
    /// Make the box's sticker: id, site and QR code (SVG).
    Label {
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Output file (.svg).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CaCmd {
    /// Create the fleet CA (ECDSA P-256) in DIR, or adopt an existing one.
    Init {
        /// Directory for ca.pem and ca.key (0600).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "callbox Fleet CA")]
        name: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// Use this existing CA certificate instead of creating one.
        #[arg(long, requires = "existing_key")]
        existing: Option<PathBuf>,
        /// The existing CA's private key.
        #[arg(long, requires = "existing")]
        existing_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Ca {
            cmd:
                CaCmd::Init {
                    dir,
                    name,
                    days,
                    existing,
                    existing_key,
                },
        } => {
            if let (Some(c), Some(k)) = (existing, existing_key) {
                pki::ca_adopt(&dir, &c, &k)?;
                println!("fleet CA adopted into {}", dir.display());
            } else {
                if days < 1 {
                    bail!("--days must be at least 1");
                }
                pki::ca_init(&dir, &name, days)?;
                println!(
                    "fleet CA `{name}` created: {} (key {}, mode 600; keep it offline)",
                    dir.join(pki::CA_CERT).display(),
                    dir.join(pki::CA_KEY).display()
                );
            }
        }
        Cmd::Enroll {
            ca_dir,
            site,
            box_id,
            broker,
            out,
            days,
            force,
        } => {
            if days < 1 {
                bail!("--days must be at least 1");
            }
            bundle::enroll(&ca_dir, &site, &box_id, &broker, &out, days, force)?;
            println!(
                "box `{box_id}` of site `{site}` enrolled: bundle {}",
                out.display()
            );
        }
        Cmd::Inject { image, bundle } => {
            image::inject(&image, &bundle)?;
            println!("bundle written to /{}/ in {}", image::DIR, image.display());
        }
        Cmd::Write { dir, bundle } => {
            for w in image::write_dir(&dir, &bundle)? {
                eprintln!("warning: {w}");
            }
            println!("bundle written to {}", dir.join(image::DIR).display());
        }
        Cmd::Verify {
            bundle,
            site,
            connect,
        } => {
            let r = verify::check(&bundle, site.as_deref());
            for (at, what) in &r.warnings {
                eprintln!("warning: {at}: {what}");
            }
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            for (at, what) in &r.problems {
                eprintln!("problem: {at}: {what}");
            }
            if !r.problems.is_empty() {
                eprintln!("{} problem(s) found", r.problems.len());
                return Ok(ExitCode::from(1));
            }
            let m = r.manifest.context("no manifest")?;
            println!(
                "bundle {} ok: box `{}` of site `{}`",
                bundle.display(),
                m.box_id,
                m.site
            );
            if connect {
                match verify::connect(&bundle, &m) {
                    Ok(()) => println!("broker {} accepted box `{}`", m.broker, m.box_id),
                    Err(e) => {
                        eprintln!(
                            "broker {}: box `{}` not accepted: {e:#}",
                            m.broker, m.box_id
                        );
                        return Ok(ExitCode::from(2));
                    }
                }
            }
        }
        Cmd::Label { bundle, out } => {
            let p = bundle.join("bundle.json");
            let m: bundle::Manifest = serde_json::from_slice(
                &std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a bundle manifest", p.display()))?;
            // The web console's one-time admin password, when the bundle
            // was made with one.
            let password = std::fs::read_to_string(bundle.join(bundle::CONSOLE_PASSWORD))
                .ok()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty());
            let svg = label::svg(&m.site, &m.box_id, password.as_deref())?;
            std::fs::write(&out, svg).with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "box {}\nsite {}\nQR {}",
                m.box_id,
                m.site,
                label::payload(&m.site, &m.box_id)
            );
            if let Some(p) = &password {
                println!("console admin one-time password {p}");
            }
            println!("label written to {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
