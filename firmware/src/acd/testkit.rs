//! For the unit tests: an ACD actor running on stations that nobody
//! answers (an offer rings until its station's inbox is dropped), with a
//! real store in a temporary directory.

use callbox_hal::registry::AnyLine;
use callbox_hal::{LineInfo, LineKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{AcdConfig, AcdHandle, channel, config, spawn};
use crate::clock::Clock;
use crate::events::Events;
use crate::media::lines::{Lines, Seize};
use crate::store::Store;

pub(super) type L = AnyLine;

/// Station lines with these ids.
pub(super) fn stations(ids: &[&str]) -> Vec<LineInfo> {
    ids.iter()
        .map(|id| LineInfo {
            id: id.to_string(),
            kind: LineKind::Station,
        })
        .collect()
}

/// The checked config of an `[acd]` table's text.
pub(super) fn acd_config(text: &str, lines: &[LineInfo]) -> AcdConfig {
    let raw: config::RawAcd = toml::from_str(text).unwrap();
    config::check(&raw, lines).unwrap()
}

/// A running actor and what it needs to stop cleanly.
pub(super) struct Running {
    pub(super) handle: AcdHandle<L>,
    /// Each station's inbox, in the order of the lines given; dropping one
    /// ends any ringing there.
    pub(super) stations: Vec<mpsc::Receiver<Seize<L>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    store: Store,
    _dir: tempfile::TempDir,
}

/// Starts the actor with `cfg` on `lines`, announcing agent states on
/// `events`.
pub(super) fn start(cfg: AcdConfig, lines: &[LineInfo], events: Events) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), "boot").unwrap();
    let mut shared = Lines::<L>::new();
    let stations = lines.iter().map(|l| shared.register(&l.id)).collect();
    let (handle, inbox) = channel::<L>(cfg);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    spawn(
        &handle,
        inbox,
        std::sync::Arc::new(shared),
        store.handle(),
        Clock::new(false),
        mpsc::channel(4).0,
        events,
        shutdown.clone(),
        &tracker,
    );
    Running {
        handle,
        stations,
        shutdown,
        tracker,
        store,
        _dir: dir,
    }
}

impl Running {
    /// Stops the actor and waits for it and the store.
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.store.close().await;
    }
}
