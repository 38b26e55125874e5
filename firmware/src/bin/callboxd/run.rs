//! `run`: the daemon itself, the first boot that imports a provisioning
//! bundle, the sim report of a scenario run, and the SIGTERM/SIGINT handler
//! that starts the drain.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use callbox_firmware::app::{self, RunOptions};
use callbox_firmware::clock::Clock;
use callbox_firmware::config::DEFAULT_DATA_DIR;
use callbox_firmware::logging;
use callbox_hal::registry::{self, BackendArgs};
use callbox_hal::sim::{SimControl, SimStats};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::check::load;

/// Runs the daemon; returns the sim's control handle for summaries.
pub fn run(
    config: &Path,
    data: Option<PathBuf>,
    scenario: Option<&Path>,
    fast: bool,
    until_idle: bool,
    stop_after: Option<Duration>,
    start_at: Option<std::time::SystemTime>,
) -> Result<Option<SimControl>, Failure> {
    let (site, scenario) = load(config, scenario)?;
    logging::init(&site.log_level);
    // Logging may have started earlier (a first-boot import): the site's
    // level applies from here.
    logging::set_level(&site.log_level);
    let data_dir = data
        .or_else(|| site.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

    let runtime = if fast {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
    } else {
        // Two workers, or one when the daemon may use a single core
        // (`taskset`, a cgroup): two workers time-sliced on one core delay
        // each other's calls by whole scheduler slices.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores.clamp(1, 2))
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;

    let sip = sip_with_certificate(site.sip.clone(), &data_dir).map_err(Failure::Other)?;
    runtime.block_on(async move {
        let hal = registry::open(
            &site.backend,
            BackendArgs {
                lines: site.lines.clone(),
                scenario,
                board: site.board.clone(),
                sip,
            },
        )
        .map_err(|e| Failure::Run(e.into()))?;
        let control = hal.sim_control();
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        let idle: Option<app::IdleSignal> = match (until_idle, control.clone()) {
            (true, Some(mut ctl)) => Some(Box::pin(async move {
                ctl.finished().await;
                tracing::info!("scenario finished");
            })),
            _ => None,
        };
        if let Some(after) = stop_after {
            let token = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                token.cancel();
            });
        }
        let opts = RunOptions {
            data_dir,
            clock: match start_at {
                Some(t) => Clock::starting_at(t),
                None => Clock::new(fast),
            },
            until_idle: idle,
            commands: None,
        };
        app::run(Arc::new(site), hal, opts, shutdown)
            .await
            .map_err(Failure::Run)?;
        Ok(control)
    })
}

/// Imports a provisioning bundle if one is waiting; then, if the box still
/// has no site config, it has never been provisioned: it says so and waits
/// in that safe state (no lines, no uplink) until it is stopped, rather
/// than exiting into a restart loop. `Ok(false)` when it was stopped there.
pub fn first_boot(
    bundle: Option<&Path>,
    config: &Path,
    data: Option<&Path>,
) -> Result<bool, Failure> {
    let Some(bundle) = bundle else {
        return Ok(true);
    };
    logging::init("info");
    let data_dir = data.map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_path_buf);
    match callbox_firmware::provision::import_bundle(bundle, &data_dir, config) {
        Ok(Some(i)) => tracing::info!(
            site = %i.site,
            box_id = %i.box_id,
            broker = %i.broker,
            config_written = i.config_written,
            "provisioning bundle imported; removed from {}",
            bundle.display()
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("{e}; left in place"),
    }
    if config.exists() {
        return Ok(true);
    }
    tracing::error!(
        status = %callbox_hal::io::BoxStatus::NoIdentity,
        "this box has no identity and no site config ({}): it has not been provisioned; put a bundle on the boot partition (callbox-provision inject/write) and restart it",
        config.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // The status LED says it too: a technician on site sees it without
        // a console. Without a site config the box has no board
        // description, so this is the build's default backend's LED.
        let mut hal = registry::open(
            registry::names()[0],
            BackendArgs {
                lines: Vec::new(),
                scenario: None,
                board: None,
                ..Default::default()
            },
        )
        .map_err(|e| Failure::Run(e.into()))?;
        use callbox_hal::Backend;
        let _leds = hal.take_indicators().map(|mut leds| {
            use callbox_hal::io::Indicators;
            if let Err(e) = leds.set_status(callbox_hal::io::BoxStatus::NoIdentity) {
                tracing::warn!("status LED: {e}");
            } else {
                tracing::info!(backend = hal.name(), "status LED shows no_identity");
            }
            leds
        });
        let token = CancellationToken::new();
        spawn_signal_handler(token.clone())?;
        token.cancelled().await;
        Ok::<(), Failure>(())
    })?;
    tracing::info!("stopped; still not provisioned");
    Ok(false)
}

fn spawn_signal_handler(token: CancellationToken) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}

pub fn write_sim_report(path: &Path, c: &SimControl) -> Result<(), Failure> {
    let s = c.stats();
    let n = SimStats::get;
    let report = serde_json::json!({
        "calls_placed": n(&s.calls_placed),
        "calls_blocked": n(&s.calls_blocked),
        "calls_answered": n(&s.calls_answered),
        "stations_rung": n(&s.stations_rung),
        "stations_answered": n(&s.stations_answered),
        "outbound_dialled": n(&s.outbound_dialled),
        "unreleased": n(&s.unreleased),
        "frames_to_box": n(&s.frames_to_box),
        "frames_late": n(&s.frames_late),
        "frames_dropped": n(&s.frames_dropped),
        "lateness_max_us": n(&s.lateness_max_us),
        "frames_sent_late": n(&s.frames_sent_late),
        "probes_heard": s.probes(),
        "heard_frames": *s.heard_by_line.lock().unwrap_or_else(|p| p.into_inner()),
        "caller_ids": *s.caller_ids.lock().unwrap_or_else(|p| p.into_inner()),
        "presented": *s.presented.lock().unwrap_or_else(|p| p.into_inner()),
        "message_waiting": *s.message_waiting.lock().unwrap_or_else(|p| p.into_inner()),
        "dial_tones": *s.dial_tones.lock().unwrap_or_else(|p| p.into_inner()),
    });
    std::fs::write(path, report.to_string())
        .with_context(|| format!("writing the sim report {}", path.display()))?;
    Ok(())
}

/// The SIP settings with the TLS certificate filled in: the config's, or
/// the box's self-signed one (made on first start). Its fingerprint goes to
/// the log for phones that pin it.
fn sip_with_certificate(
    sip: Option<callbox_hal::sip::SipArgs>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<callbox_hal::sip::SipArgs>> {
    let Some(mut sip) = sip else { return Ok(None) };
    let public_ip = sip.settings.public_ip();
    if let Some(tls) = sip.settings.tls.as_mut() {
        if tls.cert_pem.is_empty() {
            let hosts = vec!["callbox".to_string(), public_ip.to_string()];
            let id = callbox_firmware::certs::load_or_make(&data_dir.join("tls"), "sip", &hosts)?;
            tls.cert_pem = id.cert_pem;
            tls.key_pem = id.key_pem;
        }
        tracing::info!(
            listen = %tls.listen,
            fingerprint = callbox_firmware::certs::fingerprint(&tls.cert_pem).unwrap_or_default(),
            "SIP over TLS certificate"
        );
    }
    Ok(Some(sip))
}
