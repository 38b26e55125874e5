//! The daemon's one entry point: [`run`].
//!
//! `run` opens the store, starts the panel, the line watchers and the
//! backend, the fleet link when the site has an `[uplink]` and the web
//! console when it has a `[console]`; serves
//! calls until `shutdown` is cancelled (a signal, or headquarters'
//! `restart`), then drains: every call in progress is ended and recorded,
//! the link stops, and the store commits everything before `run` returns.
//!
//! The config calls run by lives in a [`LiveConfig`] that headquarters'
//! `config.set` replaces ([`commands`]); `config` here is the
//! one the box started with.

pub mod commands;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use callbox_hal::io::BoxStatus;
use callbox_hal::registry::OpenError;
use callbox_hal::{Backend, Line};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::calls::{CallContext, LiveConfig};
use crate::clock::Clock;
use crate::config::SiteConfig;
use crate::daynight::DayNight;
use crate::events::Events;
use crate::media::lines::Port;
use crate::recorder::{Recorder, StartReport};
use crate::store::{Store, StoreError, StoreMsg};
use crate::sync::{CommandHandler, SyncDeps};
use crate::{panel, supervisor};
use commands::Commands;

/// How long calls get to end and be recorded after a stop request.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often recordings past their retention are looked for.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often `auto` is held against the business hours.
const DAYNIGHT_EVERY: Duration = Duration::from_secs(30);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The record store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hardware backend failed.
    #[error(transparent)]
    Backend(#[from] OpenError),
    /// The backend's lines do not match the config.
    #[error("the backend has no port for line `{0}` named in the config")]
    MissingLine(String),
}

/// Resolves when outside activity is over (a simulation's scenario).
pub type IdleSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where `run` keeps its data and how it keeps time.
pub struct RunOptions {
    /// Data directory (database, voicemail, later recordings).
    pub data_dir: PathBuf,
    /// Time source.
    pub clock: Clock,
    /// Stop once this resolves and every outbound job has finished
    /// (`--until-idle`).
    pub until_idle: Option<IdleSignal>,
    /// Receives the command handler once the box is up, to give commands
    /// without a fleet link (tests).
    pub commands: Option<tokio::sync::oneshot::Sender<Arc<dyn CommandHandler>>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("data_dir", &self.data_dir)
            .field("clock", &self.clock)
            .field("until_idle", &self.until_idle.is_some())
            .field("commands", &self.commands.is_some())
            .finish()
    }
}

/// Runs the box until `shutdown` is cancelled.
pub async fn run<B: Backend>(
    config: Arc<SiteConfig>,
    mut hal: B,
    mut opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (store, report) = Store::open(&opts.data_dir, opts.clock.boot_id())?;
    // Live events for headquarters: agent states from the ACD; alarms,
    // queue events, notify actions and diversion flags once committed.
    let events = Events::new();
    store.handle().set_events(events.clone());
    if report.interrupted > 0 {
        tracing::warn!(
            calls = report.interrupted,
            "previous run stopped during calls"
        );
    }
    if let Some(moved) = &report.moved_aside {
        store
            .handle()
            .send(StoreMsg::Alarm {
                at: opts.clock.now(),
                code: "database_corrupt".into(),
                severity: "critical",
                message: format!(
                    "the call database could not be read and was moved aside to {}; a new one was started",
                    moved.display()
                ),
            })
            .await;
    }
    let hal_ports = hal.take_ports();
    for l in &config.lines {
        if !hal_ports.iter().any(|p| p.line.info().id == l.id) {
            store.close().await;
            return Err(RunError::MissingLine(l.id.clone()));
        }
    }
    // Every port's audio goes to the media engine for the daemon's life;
    // the firmware's ports keep the signalling and a leg in the engine.
    let (signalling, audio): (Vec<_>, Vec<_>) = hal_ports
        .into_iter()
        .map(|p| (p.line, (p.audio_in, p.audio_out)))
        .unzip();
    let (engine, media, legs) = crate::media::engine::engine(audio);
    let ports: Vec<Port<B::Line>> = signalling
        .into_iter()
        .zip(legs)
        .map(|(line, leg)| Port { line, leg })
        .collect();
    // Each line's health as its backend keeps it, for telemetry.
    let health: std::collections::HashMap<String, callbox_hal::StatusWatch> = ports
        .iter()
        .map(|p| (p.line.info().id.clone(), p.line.status()))
        .collect();
    // Recordings left open by a power cut are repaired before any call is
    // taken. The recorder runs without a `[recording]` section too: it
    // writes voicemail.
    let (recorder, recorder_thread) = {
        let (rec, thread, found) = Recorder::start(
            Arc::new(config.recorder_config()),
            &opts.data_dir,
            store.handle(),
            opts.clock.clone(),
        )
        .await;
        if found != StartReport::default() {
            tracing::warn!(
                repaired = found.repaired,
                empty = found.empty,
                damaged = found.damaged,
                "recordings left open by the previous run"
            );
        }
        (rec, thread)
    };
    let tracker = TaskTracker::new();
    let live = LiveConfig::new(config.call_snapshot());
    let daynight = {
        let (live, clock) = (live.clone(), opts.clock.clone());
        DayNight::load(
            &opts.data_dir,
            Arc::new(move || {
                live.current()
                    .ivr
                    .as_ref()
                    .and_then(|ivr| ivr.open_for_business(clock.now().wall_ms))
            }),
        )
    };
    let panel = panel::spawn(
        hal.take_indicators(),
        hal.take_inputs(),
        daynight.clone(),
        shutdown.clone(),
        &tracker,
    );
    panel.status(BoxStatus::Booting).await;
    let first = live.current();
    // What waits in each voicemail box, for the phones' lamps; a database
    // that cannot be read leaves them dark until the next message.
    let mailboxes = crate::store::ReadOnly::open(&opts.data_dir)
        .and_then(|db| db.mailbox_counts())
        .map(crate::voicemail::Mailboxes::new)
        .unwrap_or_else(|e| {
            tracing::warn!("voicemail counts not read: {e}");
            crate::voicemail::Mailboxes::default()
        });
    let ctx = CallContext {
        store: store.handle(),
        clock: opts.clock.clone(),
        inbound: first.inbound.clone(),
        ivr: first.ivr.clone(),
        live,
        data_dir: Arc::new(opts.data_dir.clone()),
        panel: panel.clone(),
        daynight: daynight.clone(),
        recorder: recorder.clone(),
        mailboxes,
        inflight: crate::inflight::Inflight::new(),
        shutdown: shutdown.clone(),
    };
    let acd = config.acd.clone().map(crate::acd::channel);
    let sw = supervisor::spawn_all(
        ports,
        ctx.clone(),
        acd.as_ref().map(|(h, _)| h.clone()),
        &tracker,
    );
    if let Some((handle, inbox)) = acd {
        // The ACD decides whose turn a callback is; the calls layer dials.
        let (callbacks, orders) = tokio::sync::mpsc::channel(8);
        crate::calls::callback::serve(orders, ctx.clone(), sw.clone(), handle.clone(), &tracker);
        crate::acd::spawn(
            &handle,
            inbox,
            sw.lines.clone(),
            store.handle(),
            opts.clock.clone(),
            callbacks,
            events.clone(),
            shutdown.clone(),
            &tracker,
        );
    }
    let jobs = TaskTracker::new();
    let campaigns = crate::calls::campaign::Live::load(&opts.data_dir);
    if let Some(ivr) = first.ivr.clone() {
        crate::calls::outbound::spawn_jobs(ivr, ctx.clone(), sw.clone(), &jobs);
    }
    // The command actor tells the dialer which campaigns run (the
    // config's and those pushed from headquarters), now and after changes.
    let dialer = crate::calls::campaign::Dialer::spawn(
        ctx.clone(),
        sw.clone(),
        campaigns.clone(),
        jobs.clone(),
        &tracker,
    );
    let commands = Arc::new(
        Commands::new(
            config.clone(),
            &opts.data_dir,
            ctx.clone(),
            sw.clone(),
            jobs.clone(),
            dialer,
            &tracker,
        )
        .with_campaigns(campaigns.clone()),
    );
    let acd_stats = sw.acd.clone().map(crate::sync::telemetry::acd_source);
    let acd_console = acd_stats.clone();
    let inflight = ctx.inflight.clone();
    // The panel actor ends when the last handle is gone: keep none here
    // (the command actor lets go of its own at the stop).
    drop((ctx, sw, first));
    jobs.close();
    if let Some(idle) = opts.until_idle {
        let token = shutdown.clone();
        let jobs = jobs.clone();
        tokio::spawn(async move {
            idle.await;
            jobs.wait().await;
            tracing::info!("scenario finished and outbound jobs done");
            token.cancel();
        });
    }
    let started = hal.start();
    // The engine ticks on the backend's frame grid, known once it runs.
    let engine_stopped = crate::media::engine::spawn(engine, hal.frame_grid());
    if let Err(e) = started {
        shutdown.cancel();
        // The panel actor ends with its last handle (the command actor
        // lets go of its own at the stop).
        drop(panel);
        tracker.close();
        tracker.wait().await;
        drop(media);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, engine_stopped).await;
        drop(recorder);
        recorder_thread.close().await;
        store.close().await;
        return Err(e.into());
    }
    {
        // `auto` follows business hours: the LED and telemetry see the
        // office close within a minute of the box's time.
        let (daynight, token) = (daynight.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(DAYNIGHT_EVERY);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => daynight.evaluate(),
                }
            }
        });
    }
    if recorder.config().is_some() {
        // Retention runs once an hour of the box's time (virtual time in
        // tests and --fast).
        let (recorder, clock, token) = (recorder.clone(), opts.clock.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RETENTION_EVERY);
            every.tick().await;
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = every.tick() => recorder.retention(clock.now()),
                }
            }
        });
    }
    drop(recorder);
    // The fleet link runs on its own thread and runtime; it publishes what
    // the store, the recorder and the ACD produce, so it starts once they
    // are up.
    let link = config.uplink.as_ref().and_then(|uplink| {
        let telemetry = crate::sync::telemetry::Telemetry::new(
            opts.data_dir.clone(),
            config.lines.clone(),
            acd_stats,
            opts.clock.clone(),
        )
        .with_daynight(daynight.clone())
        .with_campaigns(campaigns.clone())
        .with_line_state(Arc::new(move |id| {
            health.get(id).map(|w| {
                let s = w.borrow();
                crate::sync::telemetry::LineState {
                    health: s.health,
                    reason: s.reason.clone(),
                    busy: None,
                }
            })
        }));
        let deps = SyncDeps {
            site_id: config.site_id.clone(),
            uplink: uplink.clone(),
            data_dir: opts.data_dir.clone(),
            store: store.handle(),
            clock: opts.clock.clone(),
            events: events.clone(),
            commands: commands.clone(),
            telemetry: Arc::new(telemetry),
        };
        crate::sync::start(deps)
            .inspect_err(|e| tracing::error!("the fleet link could not start: {e}"))
            .ok()
    });
    if let Some(console) = &config.console {
        let deps = crate::console::ConsoleDeps {
            config: console.clone(),
            site_name: config.site_name.clone(),
            data_dir: opts.data_dir.clone(),
            clock: opts.clock.clone(),
            store: store.handle(),
            events: events.clone(),
            commands: commands.clone(),
            acd: acd_console,
            prompt_dir: config.prompt_dir.clone(),
            inflight,
        };
        match crate::console::start(deps, shutdown.clone()).await {
            Ok(up) => tracing::info!(
                https = ?up.https,
                http_redirect = ?up.http,
                fingerprint = %up.fingerprint,
                "web console listening"
            ),
            // Calls go on without a console; the log says why.
            Err(e) => tracing::error!("the web console could not start: {e:#}"),
        }
    }
    if let Some(tx) = opts.commands.take() {
        let _ = tx.send(commands.clone());
    }
    panel.status(BoxStatus::Ready).await;
    tracing::info!(
        site = %config.site_id,
        backend = hal.name(),
        lines = config.lines.len(),
        data = %opts.data_dir.display(),
        "ready"
    );

    shutdown.cancelled().await;
    // The command actor has stopped with the token: commands can no
    // longer start calls, and its handles are gone.
    drop(commands);
    tracing::info!("stopping: ending calls in progress");
    panel.status(BoxStatus::Stopping).await;
    drop(panel);
    tracker.close();
    let all = async {
        tracker.wait().await;
        jobs.wait().await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::error!(
            "calls did not end within {DRAIN_TIMEOUT:?}; their records stay in progress"
        );
    }
    // The engine stops with the last port; a recording it still taps is
    // closed with it, before the writer stops.
    drop(media);
    if tokio::time::timeout(DRAIN_TIMEOUT, engine_stopped)
        .await
        .is_err()
    {
        tracing::error!("the media engine did not stop within {DRAIN_TIMEOUT:?}");
    }
    recorder_thread.close().await;
    // After the calls (their last records are in the outbox for the next
    // run), before the store: the link holds a store handle.
    if let Some(link) = link {
        link.close().await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
