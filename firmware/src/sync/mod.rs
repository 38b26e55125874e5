//! The fleet link: one MQTT connection to headquarters' broker.
//!
//! The link runs on a thread of its own with its own real-time tokio
//! runtime, so network timeouts and backoff keep wall-clock time even when
//! the calls run in virtual time (`--fast`, tests). It publishes presence,
//! telemetry and live events, drains the SQLite outbox in order (a record
//! leaves the outbox only once acknowledged), uploads finished recordings in
//! chunks, and answers headquarters' commands. The topic and payload
//! contract is `docs/mqtt.md`.

mod actor;
pub mod config;
pub mod link;
mod presence;
mod records;
mod requests;
pub mod telemetry;
mod upload;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::events::Events;
use crate::store::StoreHandle;

pub use config::UplinkConfig;

/// A boxed `Send` future (the hooks below are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs headquarters' commands other than `status` (docs/mqtt.md,
/// "Commands"). Called on the link's runtime: an implementation that needs
/// the daemon's runtime (spawning a call) holds a `tokio::runtime::Handle`.
pub trait CommandHandler: Send + Sync + 'static {
    /// Runs `cmd` with `args`; `Err` is the reason sent back with `ok: false`.
    fn handle<'a>(
        &'a self,
        cmd: &'a str,
        args: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>>;

    /// The config running, for `{b}/config/reported`:
    /// `{"version": n, "sha256": "…"}`.
    fn reported_config(&self) -> serde_json::Value;
}

/// Where telemetry comes from.
pub trait TelemetrySource: Send + Sync + 'static {
    /// The box's health now: every telemetry field of docs/mqtt.md except
    /// the envelope (`v`, `site`, `box`, `at`, `session`) and `backlog`,
    /// which the link adds.
    fn snapshot(&self) -> BoxFuture<'_, serde_json::Value>;
}

/// What the link needs from the daemon.
pub struct SyncDeps {
    /// Site id (topics, payloads).
    pub site_id: String,
    /// The `[uplink]` section.
    pub uplink: UplinkConfig,
    /// Data directory (database, recordings).
    pub data_dir: PathBuf,
    /// The store, for acknowledgements and upload progress.
    pub store: StoreHandle,
    /// The daemon's clock (boot id, record stamps).
    pub clock: Clock,
    /// Live events to publish.
    pub events: Events,
    /// Commands.
    pub commands: Arc<dyn CommandHandler>,
    /// Telemetry.
    pub telemetry: Arc<dyn TelemetrySource>,
}

impl std::fmt::Debug for SyncDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncDeps")
            .field("site_id", &self.site_id)
            .field("uplink", &self.uplink)
            .finish_non_exhaustive()
    }
}

/// The running link.
#[derive(Debug)]
pub struct SyncLink {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SyncLink {
    /// Stops the link: publishes the offline status, gives what is in
    /// flight a moment to be acknowledged, disconnects. What is not
    /// acknowledged stays in the outbox for the next run.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Starts the link on its own thread.
pub fn start(deps: SyncDeps) -> std::io::Result<SyncLink> {
    let stop = CancellationToken::new();
    let thread = std::thread::Builder::new().name("uplink".into()).spawn({
        let stop = stop.clone();
        move || {
            crate::priority::background();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("fleet link: cannot start its runtime: {e}");
                    return;
                }
            };
            rt.block_on(actor::run(deps, stop));
        }
    })?;
    Ok(SyncLink {
        stop,
        thread: Some(thread),
    })
}
