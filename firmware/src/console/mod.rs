//! The box's web console: HTTPS pages and a JSON API for the people in the
//! office — the supervisor's wallboard, agents' state, the admin's users
//! and audit log — off unless the site config has a `[console]`.
//!
//! - [`config`]: the `[console]` section.
//! - `auth`: users (argon2id hashes in the store), the first admin's
//!   one-time password, sessions, CSRF tokens and the login limit.
//! - `server`: the TLS listeners (the box's certificate, or a self-signed
//!   one kept in the data directory) and the plain-HTTP redirect.
//! - `api`: the routes, the same for the pages and for scripts
//!   (docs/console.md, and `/api/openapi.json`).
//! - `wallboard`: the live figures and their push to browsers (SSE).
//! - `calls`: the agent's screen pop, wrap-up form and click-to-call.
//! - `records`: call records searched and exported, recordings played.
//! - `reports`: calls per day, week or month by queue, agent, dialled
//!   number or IVR outcome.
//! - `site_config`, `prompts`: the site config edited, checked and applied
//!   through the daemon's `config.set`, its history; prompts uploaded
//!   (converted to 8 kHz mono) and played.
//! - `assets`: the pages, built into the binary.
//!
//! The console changes nothing itself: agent control goes through the
//! daemon's [`CommandHandler`], the path headquarters' commands take, and
//! users and audit entries through the store thread. It runs on the
//! daemon's runtime; a browser that stalls holds only its own connection.

mod api;
mod assets;
mod auth;
mod calls;
pub mod config;
mod prompts;
mod records;
mod reports;
mod server;
mod site_config;
mod users;
mod wallboard;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::events::Events;
use crate::store::StoreHandle;
use crate::sync::CommandHandler;
use crate::sync::telemetry::AcdStatsFn;

pub use auth::{OTP_FILE, reset_admin};
pub use config::ConsoleConfig;
pub use server::Started;

/// Where the box keeps the certificate it makes for itself.
pub const CERT_DIR: &str = "tls";
/// The name of that certificate (`tls/console.crt`, `tls/console.key`).
pub const CERT_NAME: &str = "console";

/// What the console needs from the daemon.
pub struct ConsoleDeps {
    /// The `[console]` section.
    pub config: ConsoleConfig,
    /// The site's name, shown in the pages' title.
    pub site_name: String,
    /// The data directory (database, certificate, one-time password).
    pub data_dir: PathBuf,
    /// The box's time (audit entries).
    pub clock: Clock,
    /// The store (users, audit log).
    pub store: StoreHandle,
    /// Live events (the wallboard's pushes).
    pub events: Events,
    /// The daemon's commands (agent control).
    pub commands: Arc<dyn CommandHandler>,
    /// The ACD's live figures, when the site has an `[acd]`.
    pub acd: Option<AcdStatsFn>,
    /// The site's prompts folder (uploads go there).
    pub prompt_dir: PathBuf,
    /// Where each call outside the queues is (the wallboard's IVR calls,
    /// an agent's preview contact).
    pub inflight: crate::inflight::Inflight,
}

impl std::fmt::Debug for ConsoleDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleDeps")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Starts the console's listeners on the current runtime; they stop when
/// `shutdown` is cancelled. An address that cannot be bound fails the
/// start, and the daemon runs on without a console.
pub async fn start(deps: ConsoleDeps, shutdown: CancellationToken) -> anyhow::Result<Started> {
    server::start(deps, shutdown).await
}

/// The certificate the console serves: the configured files, or the one
/// the box made (made now when missing).
pub fn identity(config: &ConsoleConfig, data_dir: &Path) -> anyhow::Result<crate::certs::Identity> {
    use anyhow::Context as _;
    match &config.cert {
        Some((cert, key)) => Ok(crate::certs::Identity {
            cert_pem: std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        }),
        None => own_identity(data_dir, &config.listen),
    }
}

/// The box's own certificate for a console on `listen`, made now when
/// missing: named `callbox`, `localhost` and each specific address.
pub fn own_identity(
    data_dir: &Path,
    listen: &[std::net::SocketAddr],
) -> anyhow::Result<crate::certs::Identity> {
    let mut hosts = vec!["callbox".to_string(), "localhost".to_string()];
    hosts.extend(
        listen
            .iter()
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.ip().to_string()),
    );
    crate::certs::load_or_make(&data_dir.join(CERT_DIR), CERT_NAME, &hosts)
}
