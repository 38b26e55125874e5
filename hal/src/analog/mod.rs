//! The analog line backend: the ports of a line-interface board on a
//! Raspberry Pi — FXO ports towards the carrier's lines, FXS ports for the
//! agents' phones — with their audio on a sound card and their hook, ring,
//! relay and LED signals on GPIO.
//!
//! - [`board`]: the board description from the site config;
//! - [`engine`]: the thread that owns the PCMs and moves 20 ms periods
//!   between the sound card and the calls, with the per-port DSP (caller
//!   id, call progress, echo guard);
//! - [`pins`]: GPIO behind a small trait (rppal on a Pi, [`pins::SimGpio`]
//!   for tests);
//! - [`signal`]: debounce, hook flash, ring cadence, flapping and LED
//!   patterns as plain state machines;
//! - [`port`]: the line logic of a trunk and of a station.
//!
//! The sound card is reached through [`engine::Pcm`]; the ALSA
//! implementation is behind the `alsa` feature, GPIO on a Pi behind `rpi`.
//! [`AnalogBackend::with_parts`] builds the backend on any PCM and GPIO
//! driver, which is how the tests run it without the hardware.

pub mod board;
pub mod engine;
pub mod pins;
pub mod port;
pub mod probe;
pub mod signal;

#[cfg(feature = "alsa")]
pub mod alsa_pcm;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use self::board::{Board, PinSpec, Wiring};
use self::engine::{Engine, MediaCmd, MediaStats, Pcm, PortMedia};
use self::pins::{Edge, GpioDriver, PinError};
use self::port::{PortIo, StationCfg, Wired};
use self::signal::{Debouncer, status_pattern};
use crate::audio::{AudioFormat, AudioIn, AudioOut, Frame};
use crate::error::{Error, ErrorKind};
use crate::io::{BoxStatus, ButtonPress, Indicators, Inputs};
use crate::line::{Line, LineCommand, LineEvent, LineInfo, LineKind};
use crate::queue;
use crate::registry::{OpenError, Port};

/// Errors of the analog backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalogError {
    /// The port's task or the audio engine has stopped.
    #[error("analog line closed")]
    Closed,
    /// A pin failed.
    #[error(transparent)]
    Pin(#[from] PinError),
}

impl Error for AnalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            AnalogError::Closed => ErrorKind::Closed,
            AnalogError::Pin(_) => ErrorKind::Io,
        }
    }
}

/// Signalling of an analog port.
#[derive(Debug)]
pub struct AnalogLine {
    info: LineInfo,
    events: mpsc::Receiver<LineEvent>,
    commands: mpsc::Sender<LineCommand>,
    status: crate::line::StatusWatch,
}

impl Line for AnalogLine {
    type Error = AnalogError;
    fn info(&self) -> &LineInfo {
        &self.info
    }
    fn status(&self) -> crate::line::StatusWatch {
        self.status.clone()
    }
    async fn next_event(&mut self) -> Result<LineEvent, AnalogError> {
        self.events.recv().await.ok_or(AnalogError::Closed)
    }
    async fn command(&mut self, cmd: LineCommand) -> Result<(), AnalogError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| AnalogError::Closed)
    }
}

/// Audio from an analog port.
#[derive(Debug)]
pub struct AnalogAudioIn {
    frames: queue::Receiver<Frame>,
}

impl AudioIn for AnalogAudioIn {
    type Error = AnalogError;
    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }
    async fn read_frame(&mut self) -> Result<Frame, AnalogError> {
        self.frames.recv().await.ok_or(AnalogError::Closed)
    }
    fn try_read_frame(&mut self) -> Result<Option<Frame>, AnalogError> {
        self.frames.try_take().map_err(|()| AnalogError::Closed)
    }
}

/// Audio to an analog port.
#[derive(Debug)]
pub struct AnalogAudioOut {
    frames: queue::Sender<Frame>,
}

impl AudioOut for AnalogAudioOut {
    type Error = AnalogError;
    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }
    async fn write_frame(&mut self, frame: Frame) -> Result<(), AnalogError> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| AnalogError::Closed)
    }
    fn offer_frame(&mut self, frame: Frame) -> Result<bool, AnalogError> {
        match self.frames.try_send(frame) {
            Ok(()) => Ok(true),
            Err(queue::Full::Full) => Ok(false),
            Err(queue::Full::Closed) => Err(AnalogError::Closed),
        }
    }
    async fn drain(&mut self) -> Result<(), AnalogError> {
        self.frames
            .drained(AudioFormat::NARROWBAND.frame_duration() / 2)
            .await
            .map_err(|_| AnalogError::Closed)?;
        // The engine took the last frame; the sound card's buffer still
        // holds it and one more period.
        tokio::time::sleep(AudioFormat::NARROWBAND.frame_duration() * 3).await;
        Ok(())
    }
}

/// LEDs of the board.
#[derive(Debug)]
pub struct AnalogIndicators {
    status: watch::Sender<BoxStatus>,
    lines: BTreeMap<String, Wired<dyn pins::OutputPin>>,
}

impl Indicators for AnalogIndicators {
    type Error = AnalogError;
    fn set_status(&mut self, status: BoxStatus) -> Result<(), AnalogError> {
        self.status.send_replace(status);
        Ok(())
    }
    fn set_line_led(&mut self, line: &str, on: bool) -> Result<(), AnalogError> {
        if let Some(led) = self.lines.get_mut(line) {
            led.set(on);
        }
        Ok(())
    }
}

/// Buttons of the board.
#[derive(Debug)]
pub struct AnalogInputs {
    presses: mpsc::Receiver<ButtonPress>,
}

impl Inputs for AnalogInputs {
    type Error = AnalogError;
    async fn next_press(&mut self) -> Result<ButtonPress, AnalogError> {
        match self.presses.recv().await {
            Some(p) => Ok(p),
            // A board without buttons never has a press.
            None => std::future::pending().await,
        }
    }
}

/// A port task not yet started.
#[derive(Debug)]
enum Task {
    Trunk {
        io: PortIo,
        ring_detect: Wired<dyn pins::InputPin>,
        hook_relay: Wired<dyn pins::OutputPin>,
    },
    Station {
        io: PortIo,
        hook: Wired<dyn pins::InputPin>,
        ring_relay: Wired<dyn pins::OutputPin>,
    },
}

/// The analog backend.
pub struct AnalogBackend {
    board: Board,
    ports: Vec<Port<AnalogLine, AnalogAudioIn, AnalogAudioOut>>,
    tasks: Vec<Task>,
    indicators: Option<AnalogIndicators>,
    inputs: Option<AnalogInputs>,
    status_led: Option<(Wired<dyn pins::OutputPin>, watch::Receiver<BoxStatus>)>,
    buttons: Vec<(
        crate::io::Button,
        Wired<dyn pins::InputPin>,
        mpsc::Receiver<Edge>,
    )>,
    presses: mpsc::Sender<ButtonPress>,
    engine: Option<(Engine, Box<dyn Pcm>)>,
    stats: Arc<MediaStats>,
    stop: Arc<AtomicBool>,
    /// Kept so the GPIO driver (rppal's interrupt thread) lives as long
    /// as the backend.
    _gpio: Box<dyn GpioDriver>,
}

fn pin_error(board_key: &str, e: PinError) -> OpenError {
    OpenError::Invalid {
        backend: "analog",
        reason: format!("{board_key}: {e}"),
    }
}

impl std::fmt::Debug for AnalogBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalogBackend")
            .field("board", &self.board.name)
            .field("ports", &self.ports.len())
            .finish_non_exhaustive()
    }
}

impl AnalogBackend {
    /// Opens the board's sound card (ALSA) and GPIO driver.
    pub fn open(board: Board, lines: Vec<LineInfo>) -> Result<AnalogBackend, OpenError> {
        let gpio = pins::open_driver(&board.gpio).map_err(|e| pin_error("board.gpio", e))?;
        let stats = Arc::new(MediaStats::default());
        let pcm = open_pcm(&board, stats.clone())?;
        AnalogBackend::with_parts(board, lines, pcm, gpio, stats)
    }

    /// Builds the backend on any PCM and GPIO driver.
    pub fn with_parts(
        board: Board,
        lines: Vec<LineInfo>,
        pcm: Box<dyn Pcm>,
        mut gpio: Box<dyn GpioDriver>,
        stats: Arc<MediaStats>,
    ) -> Result<AnalogBackend, OpenError> {
        let factor = (board.rate / 8000) as usize;
        let (media_tx, media_rx) = std::sync::mpsc::channel();
        let mut media = Vec::new();
        let mut ports = Vec::new();
        let mut tasks = Vec::new();
        let mut line_leds = BTreeMap::new();
        let output = |gpio: &mut Box<dyn GpioDriver>, key: String, spec: PinSpec| {
            gpio.output(spec.pin, spec.active_low)
                .map(|pin| Wired { pin, spec })
                .map_err(|e| pin_error(&key, e))
        };
        let input = |gpio: &mut Box<dyn GpioDriver>, key: String, spec: PinSpec| {
            let (tx, rx) = mpsc::channel(1024);
            let mut pin = gpio
                .input(spec.pin, spec.pull_up)
                .map_err(|e| pin_error(&key, e))?;
            pin.watch(tx).map_err(|e| pin_error(&key, e))?;
            Ok::<_, OpenError>((Wired { pin, spec }, rx))
        };
        for (i, spec) in board.ports.iter().enumerate() {
            let Some(info) = lines.iter().find(|l| l.id == spec.line) else {
                return Err(OpenError::Invalid {
                    backend: "analog",
                    reason: format!("board.port[{i}]: no line `{}` in the site", spec.line),
                });
            };
            let trunk = info.kind == LineKind::Trunk;
            let (m, queues, reports) =
                PortMedia::new(spec.channel, trunk, board.caller_id, board.tones, factor);
            media.push(m);
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let (cmd_tx, cmd_rx) = mpsc::channel(16);
            let (status_tx, status) = watch::channel(crate::line::LineStatus::new(
                crate::line::Health::Up,
                format!("analog port {} ready", spec.channel),
            ));
            let ends = LineEnds {
                events: ev_tx,
                status: status_tx,
                commands: cmd_rx,
            };
            ports.push(Port {
                line: AnalogLine {
                    info: info.clone(),
                    events: ev_rx,
                    commands: cmd_tx,
                    status,
                },
                audio_in: AnalogAudioIn {
                    frames: queues.from_line,
                },
                audio_out: AnalogAudioOut {
                    frames: queues.to_line,
                },
            });
            let at = format!("board.port[{i}]");
            if let Some(led) = spec.led {
                line_leds.insert(
                    spec.line.clone(),
                    output(&mut gpio, format!("{at}.led"), led)?,
                );
            }
            let task = match spec.wiring {
                Wiring::Fxo {
                    ring_detect,
                    hook_relay,
                } => {
                    let (ring_detect, edges) =
                        input(&mut gpio, format!("{at}.ring_detect"), ring_detect)?;
                    let hook_relay = output(&mut gpio, format!("{at}.hook_relay"), hook_relay)?;
                    let io = port_io(i, &spec.line, ends, edges, &media_tx, reports);
                    Task::Trunk {
                        io,
                        ring_detect,
                        hook_relay,
                    }
                }
                Wiring::Fxs { hook, ring_relay } => {
                    let (hook, edges) = input(&mut gpio, format!("{at}.hook"), hook)?;
                    let ring_relay = output(&mut gpio, format!("{at}.ring_relay"), ring_relay)?;
                    let io = port_io(i, &spec.line, ends, edges, &media_tx, reports);
                    Task::Station {
                        io,
                        hook,
                        ring_relay,
                    }
                }
            };
            tasks.push(task);
        }
        let (status_tx, status_rx) = watch::channel(BoxStatus::Booting);
        let status_led = match board.status_led {
            Some(spec) => Some((
                output(&mut gpio, "board.status_led".into(), spec)?,
                status_rx,
            )),
            None => None,
        };
        let mut buttons = Vec::new();
        for (button, spec) in &board.buttons {
            let (pin, edges) = input(&mut gpio, format!("board.buttons.{button:?}"), *spec)?;
            buttons.push((*button, pin, edges));
        }
        let (presses_tx, presses_rx) = mpsc::channel(16);
        let engine = Engine::new(media, board.channels, board.rate, media_rx, stats.clone());
        Ok(AnalogBackend {
            board,
            ports,
            tasks,
            indicators: Some(AnalogIndicators {
                status: status_tx,
                lines: line_leds,
            }),
            inputs: Some(AnalogInputs {
                presses: presses_rx,
            }),
            status_led,
            buttons,
            presses: presses_tx,
            engine: Some((engine, pcm)),
            stats,
            stop: Arc::new(AtomicBool::new(false)),
            _gpio: gpio,
        })
    }

    /// The audio engine's counters.
    pub fn media_stats(&self) -> Arc<MediaStats> {
        self.stats.clone()
    }

    /// Ports, once.
    pub fn take_ports(&mut self) -> Vec<Port<AnalogLine, AnalogAudioIn, AnalogAudioOut>> {
        std::mem::take(&mut self.ports)
    }

    /// LEDs, once.
    pub fn take_indicators(&mut self) -> Option<AnalogIndicators> {
        self.indicators.take()
    }

    /// Buttons, once.
    pub fn take_inputs(&mut self) -> Option<AnalogInputs> {
        self.inputs.take()
    }

    /// Starts the audio thread and the port tasks. Must be called inside
    /// a tokio runtime.
    pub fn start(&mut self) -> Result<(), OpenError> {
        let Some((engine, pcm)) = self.engine.take() else {
            return Ok(());
        };
        let (stop, timing) = (self.stop.clone(), self.board.timing);
        std::thread::Builder::new()
            .name("analog-pcm".into())
            .spawn(move || {
                if let Err(e) = engine::run(pcm, engine, stop, timing) {
                    tracing::error!("sound card failed, analog lines down: {e}");
                }
            })
            .map_err(|e| OpenError::Invalid {
                backend: "analog",
                reason: format!("cannot start the audio thread: {e}"),
            })?;
        let b = &self.board;
        let station_cfg = StationCfg {
            cadence: b.ring,
            flash: b.flash,
            caller_id: b.caller_id,
            mdmf: b.caller_id_mdmf,
        };
        for t in self.tasks.drain(..) {
            match t {
                Task::Trunk {
                    io,
                    ring_detect,
                    hook_relay,
                } => {
                    tokio::spawn(port::trunk(
                        io,
                        ring_detect,
                        hook_relay,
                        b.ring,
                        b.caller_id.is_some(),
                    ));
                }
                Task::Station {
                    io,
                    hook,
                    ring_relay,
                } => {
                    tokio::spawn(port::station(io, hook, ring_relay, station_cfg));
                }
            }
        }
        if let Some((led, status)) = self.status_led.take() {
            tokio::spawn(blink(led, status));
        }
        for (button, pin, edges) in self.buttons.drain(..) {
            tokio::spawn(button_task(button, pin, edges, self.presses.clone()));
        }
        Ok(())
    }
}

impl Drop for AnalogBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The port task's ends of its line's channels.
struct LineEnds {
    events: mpsc::Sender<LineEvent>,
    status: watch::Sender<crate::line::LineStatus>,
    commands: mpsc::Receiver<LineCommand>,
}

fn port_io(
    index: usize,
    line: &str,
    ends: LineEnds,
    edges: mpsc::Receiver<Edge>,
    media: &std::sync::mpsc::Sender<MediaCmd>,
    reports: mpsc::Receiver<engine::MediaReport>,
) -> PortIo {
    PortIo {
        index,
        line: line.to_string(),
        events: ends.events,
        status: ends.status,
        commands: ends.commands,
        edges,
        media: media.clone(),
        reports,
    }
}

/// Shows the box's state on the status LED with [`status_pattern`].
async fn blink(mut led: Wired<dyn pins::OutputPin>, mut status: watch::Receiver<BoxStatus>) {
    loop {
        let pattern = status_pattern(*status.borrow_and_update());
        if let Some(level) = pattern.steady {
            led.set(level);
            if status.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut next = Instant::now();
        'pattern: loop {
            for (i, &ms) in pattern.steps_ms.iter().enumerate() {
                led.set(i % 2 == 0);
                next += Duration::from_millis(u64::from(ms));
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    r = status.changed() => {
                        if r.is_err() {
                            return;
                        }
                        break 'pattern;
                    }
                }
            }
        }
    }
}

/// Debounces a button and reports each press with how long it was held.
async fn button_task(
    button: crate::io::Button,
    pin: Wired<dyn pins::InputPin>,
    mut edges: mpsc::Receiver<Edge>,
    presses: mpsc::Sender<ButtonPress>,
) {
    let mut d = Debouncer::new(pin.read(), pin.spec.debounce);
    let mut down_at: Option<Instant> = None;
    loop {
        let wake = d
            .deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tokio::select! {
            e = edges.recv() => match e {
                Some(e) => d.input(pin.logical(e.high), e.at),
                None => return,
            },
            () = tokio::time::sleep_until(wake) => {
                match d.poll(Instant::now()) {
                    Some((true, at)) => down_at = Some(at),
                    Some((false, at)) => {
                        if let Some(down) = down_at.take() {
                            let held_ms = u32::try_from(at.saturating_duration_since(down).as_millis()).unwrap_or(u32::MAX);
                            let _ = presses.send(ButtonPress { button, held_ms }).await;
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(feature = "alsa")]
fn open_pcm(board: &Board, stats: Arc<MediaStats>) -> Result<Box<dyn Pcm>, OpenError> {
    alsa_pcm::AlsaPcm::open(board, stats)
        .map(|p| Box::new(p) as Box<dyn Pcm>)
        .map_err(|e: engine::PcmError| OpenError::Invalid {
            backend: "analog",
            reason: format!("sound card: {e}"),
        })
}

#[cfg(not(feature = "alsa"))]
fn open_pcm(_board: &Board, _stats: Arc<MediaStats>) -> Result<Box<dyn Pcm>, OpenError> {
    Err(OpenError::Invalid {
        backend: "analog",
        reason: "this build has no ALSA support (cargo feature `alsa`)".into(),
    })
}
