//! The simulated backend: scripted callers on trunk lines, scripted agents on
//! station lines.
//!
//! This is a real backend, not a mock. Each line is a pair of channel ends:
//! the box side implements the HAL traits exactly as a hardware backend does
//! (events, commands, paced audio), and the *world* side is played by actors
//! that follow a [`Scenario`]: callers arrive on free trunks, listen to what
//! the box plays, key digits as real DTMF audio or as digit events, play WAV
//! files, give up or hang up; agents answer when their station rings, talk,
//! hang up, and dial feature codes.
//!
//! The world runs on tokio time, so the same scenario plays in real time (the
//! demo) or in virtual time (tests, `--fast`) where an hour of calls takes
//! seconds.

pub mod scenario;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};

use crate::audio::{AudioFormat, AudioIn, AudioOut, Frame};
use crate::error::{Error, ErrorKind};
use crate::io::{BoxStatus, ButtonPress, Indicators, Inputs};
use crate::line::{Line, LineCommand, LineEvent, LineInfo};
use crate::queue;
use crate::registry::Port;

pub use scenario::Scenario;

/// Frames buffered from the far end towards the box (1 s); beyond that the
/// box is not keeping up and frames are dropped, as a sound card would.
const AUDIO_IN_DEPTH: usize = 50;
/// Frames the box may queue ahead of the far end: the playout buffer. Small,
/// so writing paces the writer at the frame rate.
const AUDIO_OUT_DEPTH: usize = 3;
/// A frame the box reads later than this after its deadline counts as late.
/// As a sound card does, a far end delivers the frame it captured during a
/// period at the period's end: that is its deadline (or when the far end
/// got it out, if it fell behind even that).
pub const LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// Errors of the simulated backend.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The simulated world has stopped.
    #[error("simulated line closed")]
    Closed,
}

impl Error for SimError {
    fn kind(&self) -> ErrorKind {
        match self {
            SimError::Closed => ErrorKind::Closed,
        }
    }
}

/// Box side of a simulated line's signalling.
#[derive(Debug)]
pub struct SimLine {
    info: LineInfo,
    events: mpsc::Receiver<LineEvent>,
    commands: mpsc::Sender<LineCommand>,
}

impl Line for SimLine {
    type Error = SimError;

    fn info(&self) -> &LineInfo {
        &self.info
    }

    fn status(&self) -> crate::line::StatusWatch {
        crate::line::LineStatus::fixed(crate::line::Health::Up, "simulated")
    }

    async fn next_event(&mut self) -> Result<LineEvent, SimError> {
        self.events.recv().await.ok_or(SimError::Closed)
    }

    async fn command(&mut self, cmd: LineCommand) -> Result<(), SimError> {
        self.commands.send(cmd).await.map_err(|_| SimError::Closed)
    }
}

/// Box side of a simulated line's inbound audio.
#[derive(Debug)]
pub struct SimAudioIn {
    frames: queue::Receiver<(Frame, tokio::time::Instant)>,
    stats: Arc<SimStats>,
}

impl AudioIn for SimAudioIn {
    type Error = SimError;

    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }

    async fn read_frame(&mut self) -> Result<Frame, SimError> {
        loop {
            if let Some(f) = self.try_read_frame()? {
                return Ok(f);
            }
            // Nothing delivered yet: wait for the next frame's delivery.
            let due = self.frames.peek(|(_, due)| *due).await;
            match due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => return Err(SimError::Closed),
            }
        }
    }

    fn try_read_frame(&mut self) -> Result<Option<Frame>, SimError> {
        let now = tokio::time::Instant::now();
        match self.frames.try_take_if(|(_, due)| *due <= now) {
            Ok(Some((frame, due))) => Ok(Some(self.took(frame, due, now))),
            Ok(None) => Ok(None),
            Err(()) => Err(SimError::Closed),
        }
    }
}

impl SimAudioIn {
    /// Counts a frame the box took: how far behind the far end's clock it
    /// was taken is the real-time capacity figure (share of frames later
    /// than LATE_AFTER).
    fn took(&self, frame: Frame, due: tokio::time::Instant, now: tokio::time::Instant) -> Frame {
        let behind = now.saturating_duration_since(due);
        let s = &self.stats;
        SimStats::add(&s.frames_to_box);
        if behind > LATE_AFTER {
            SimStats::add(&s.frames_late);
            tracing::debug!(
                seq = frame.seq,
                behind_ms = behind.as_millis(),
                "frame read late"
            );
        }
        let us = u64::try_from(behind.as_micros()).unwrap_or(u64::MAX);
        s.lateness_max_us.fetch_max(us, Ordering::Relaxed);
        frame
    }
}

/// Box side of a simulated line's outbound audio.
#[derive(Debug)]
pub struct SimAudioOut {
    frames: queue::Sender<Frame>,
}

impl AudioOut for SimAudioOut {
    type Error = SimError;

    fn format(&self) -> AudioFormat {
        AudioFormat::NARROWBAND
    }

    async fn write_frame(&mut self, frame: Frame) -> Result<(), SimError> {
        self.frames.send(frame).await.map_err(|_| SimError::Closed)
    }

    fn offer_frame(&mut self, frame: Frame) -> Result<bool, SimError> {
        match self.frames.try_send(frame) {
            Ok(()) => Ok(true),
            Err(queue::Full::Full) => Ok(false),
            Err(queue::Full::Closed) => Err(SimError::Closed),
        }
    }

    async fn drain(&mut self) -> Result<(), SimError> {
        // The far end takes one frame per tick; poll at twice that rate.
        self.frames
            .drained(AudioFormat::NARROWBAND.frame_duration() / 2)
            .await
            .map_err(|()| SimError::Closed)?;
        // The far end took the last frame at the start of its tick; it is
        // heard for one more frame time.
        tokio::time::sleep(AudioFormat::NARROWBAND.frame_duration()).await;
        Ok(())
    }
}

/// What the simulated LEDs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedState {
    /// The status LED.
    pub status: BoxStatus,
    /// Line ids whose LED is lit.
    pub lines_lit: Vec<String>,
}

/// Simulated LEDs: state is kept and published to [`SimControl`].
#[derive(Debug)]
pub struct SimIndicators {
    state: watch::Sender<LedState>,
}

impl Indicators for SimIndicators {
    type Error = SimError;

    fn set_status(&mut self, status: BoxStatus) -> Result<(), SimError> {
        self.state.send_modify(|s| s.status = status);
        Ok(())
    }

    fn set_line_led(&mut self, line: &str, on: bool) -> Result<(), SimError> {
        self.state.send_modify(|s| {
            s.lines_lit.retain(|l| l != line);
            if on {
                s.lines_lit.push(line.to_string());
            }
        });
        Ok(())
    }
}

/// Simulated buttons, pressed by the scenario.
#[derive(Debug)]
pub struct SimInputs {
    presses: mpsc::Receiver<ButtonPress>,
}

impl Inputs for SimInputs {
    type Error = SimError;

    async fn next_press(&mut self) -> Result<ButtonPress, SimError> {
        self.presses.recv().await.ok_or(SimError::Closed)
    }
}

/// Counters of what happened on the far side of the lines.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Calls the scenario placed.
    pub calls_placed: AtomicU64,
    /// Calls that found every trunk busy and never reached the box.
    pub calls_blocked: AtomicU64,
    /// Calls the box answered.
    pub calls_answered: AtomicU64,
    /// Calls the caller gave up on before the box answered.
    pub calls_abandoned: AtomicU64,
    /// Calls the box refused (hung up before answering).
    pub calls_rejected: AtomicU64,
    /// Calls that ended by the caller hanging up after answer.
    pub caller_hangups: AtomicU64,
    /// Calls that ended by the box hanging up.
    pub box_hangups: AtomicU64,
    /// Frames of non-silent audio callers heard from the box.
    pub frames_heard: AtomicU64,
    /// Frames callers and agents sent that the box did not take in time.
    pub frames_dropped: AtomicU64,
    /// Times a station rang.
    pub stations_rung: AtomicU64,
    /// Times an agent picked up a ringing station.
    pub stations_answered: AtomicU64,
    /// Digits keyed (in band or out of band).
    pub digits_sent: AtomicU64,
    /// Far-end hangups the box never released the line for.
    pub unreleased: AtomicU64,
    /// Frames each far end heard carrying one of the probe tones
    /// ([`PROBE_HZ`]), by line: the audio-path checks of supervisor and
    /// bridge tests ("the whisper reaches the agent, not the caller").
    pub probes_heard: std::sync::Mutex<std::collections::BTreeMap<String, [u64; PROBES]>>,
    /// What each station's display showed when it rang, in order: the
    /// caller's number and name (`"13800138000 王经理"`, `"1001"`, `""`).
    pub caller_ids: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// The caller id the box presented each time it dialled a number, by
    /// number (`""`: none, the trunk's own).
    pub presented: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// What each station's phone was told of waiting voicemail, in order:
    /// `"new/old"` (`"1/0"`, `"0/1"`), as a SIP phone's lamp would show it.
    pub message_waiting: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// What each agent heard each time they picked up to dial, before the
    /// first key: `steady` (dial tone), `stutter` (a tone with gaps, the
    /// message-waiting dial tone) or `none`.
    pub dial_tones: std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    /// Frames with sound (above -50 dBFS) each far end heard, by line.
    pub heard_by_line: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Calls the box dialled out.
    pub outbound_dialled: AtomicU64,
    /// Of those, answered by the called party.
    pub outbound_answered: AtomicU64,
    /// Frames the box read from the far ends.
    pub frames_to_box: AtomicU64,
    /// Of those, read more than [`LATE_AFTER`] after their deadline.
    pub frames_late: AtomicU64,
    /// The latest any frame was read after its deadline, µs.
    pub lateness_max_us: AtomicU64,
    /// Frames the far ends themselves got out more than [`LATE_AFTER`]
    /// after their deadline, the end of the period they captured (the
    /// simulated world falling behind, not the box). The box's lateness for
    /// those counts from when they were sent.
    pub frames_sent_late: AtomicU64,
}

/// Frequencies the far ends listen for in what the box sends them. Not
/// DTMF or call-progress frequencies, so a test can mark each talker's
/// voice with one.
pub const PROBE_HZ: [f64; PROBES] = [600.0, 1000.0, 1400.0, 1800.0, 2200.0];
/// How many probe tones there are (a five-party conference has a voice
/// for each).
pub const PROBES: usize = 5;

impl SimStats {
    /// Probe-tone frames heard per line, as JSON-friendly maps.
    pub fn probes(
        &self,
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> {
        let m = self.probes_heard.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(line, counts)| {
                let per: std::collections::BTreeMap<String, u64> = PROBE_HZ
                    .iter()
                    .zip(counts)
                    .map(|(hz, n)| (format!("{hz:.0}"), *n))
                    .collect();
                (line.clone(), per)
            })
            .collect()
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Handle for whoever runs the simulation (the daemon's `--until-idle`, the
/// demo's summary, tests).
#[derive(Debug, Clone)]
pub struct SimControl {
    stats: Arc<SimStats>,
    done: watch::Receiver<bool>,
    leds: watch::Receiver<LedState>,
}

impl SimControl {
    /// The far side's counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Resolves once every scripted call and dial has finished and every line
    /// has been released by the box.
    pub async fn finished(&mut self) {
        // An Err means the world was dropped, which also means it is over.
        let _ = self.done.wait_for(|d| *d).await;
    }

    /// What the LEDs show now.
    pub fn leds(&self) -> LedState {
        self.leds.borrow().clone()
    }
}

/// World side of one line.
#[derive(Debug)]
struct FarEnd {
    info: LineInfo,
    events: mpsc::Sender<LineEvent>,
    commands: mpsc::Receiver<LineCommand>,
    /// Each frame with its deadline.
    audio_to_box: queue::Sender<(Frame, tokio::time::Instant)>,
    audio_from_box: queue::Receiver<Frame>,
    /// The frame grid's epoch (set when the world starts).
    grid: tokio::time::Instant,
}

/// The simulated backend.
#[derive(Debug)]
pub struct SimBackend {
    ports: Vec<Port<SimLine, SimAudioIn, SimAudioOut>>,
    far_ends: Vec<FarEnd>,
    indicators: Option<SimIndicators>,
    inputs: Option<SimInputs>,
    presses: mpsc::Sender<ButtonPress>,
    scenario: Arc<Scenario>,
    stats: Arc<SimStats>,
    done: watch::Sender<bool>,
    leds: watch::Receiver<LedState>,
    started: bool,
    /// Where the far ends' frame grid starts, once started.
    grid: Option<tokio::time::Instant>,
}

impl SimBackend {
    /// Builds the lines the site config names, with an optional scenario to
    /// play on them.
    pub fn new(lines: Vec<LineInfo>, scenario: Option<Scenario>) -> SimBackend {
        let stats = Arc::new(SimStats::default());
        let mut ports = Vec::new();
        let mut far_ends = Vec::new();
        for info in lines {
            let (ev_tx, ev_rx) = mpsc::channel(64);
            let (cmd_tx, cmd_rx) = mpsc::channel(64);
            let (ain_tx, ain_rx) = queue::bounded(AUDIO_IN_DEPTH);
            let (aout_tx, aout_rx) = queue::bounded(AUDIO_OUT_DEPTH);
            ports.push(Port {
                line: SimLine {
                    info: info.clone(),
                    events: ev_rx,
                    commands: cmd_tx,
                },
                audio_in: SimAudioIn {
                    frames: ain_rx,
                    stats: stats.clone(),
                },
                audio_out: SimAudioOut { frames: aout_tx },
            });
            far_ends.push(FarEnd {
                info,
                events: ev_tx,
                commands: cmd_rx,
                audio_to_box: ain_tx,
                audio_from_box: aout_rx,
                grid: tokio::time::Instant::now(),
            });
        }
        let (led_tx, led_rx) = watch::channel(LedState {
            status: BoxStatus::Booting,
            lines_lit: Vec::new(),
        });
        let (press_tx, press_rx) = mpsc::channel(16);
        let (done, _) = watch::channel(false);
        SimBackend {
            ports,
            far_ends,
            indicators: Some(SimIndicators { state: led_tx }),
            inputs: Some(SimInputs { presses: press_rx }),
            presses: press_tx,
            scenario: Arc::new(scenario.unwrap_or_default()),
            stats,
            done,
            leds: led_rx,
            started: false,
            grid: None,
        }
    }

    /// A handle to watch the simulation.
    pub fn control(&self) -> SimControl {
        SimControl {
            stats: self.stats.clone(),
            done: self.done.subscribe(),
            leds: self.leds.clone(),
        }
    }

    /// The far ends' frame grid (see [`crate::Backend::frame_grid`]), once
    /// started.
    pub fn frame_grid(&self) -> Option<tokio::time::Instant> {
        self.grid
    }

    /// Box-side ports, once.
    pub fn take_ports(&mut self) -> Vec<Port<SimLine, SimAudioIn, SimAudioOut>> {
        std::mem::take(&mut self.ports)
    }

    /// Simulated LEDs, once.
    pub fn take_indicators(&mut self) -> Option<SimIndicators> {
        self.indicators.take()
    }

    /// Simulated buttons, once.
    pub fn take_inputs(&mut self) -> Option<SimInputs> {
        self.inputs.take()
    }

    /// Starts playing the scenario. Must be called inside a tokio runtime;
    /// the scenario clock starts now.
    ///
    /// On a multi-thread runtime (real time: virtual time needs a
    /// current-thread one) the far ends run on a thread of their own,
    /// `sim-world`, as a sound card and the phones are not the box's CPU:
    /// its time is then measurable apart, and the capacity harness pins it
    /// to another core than the daemon's. The thread lives as long as the
    /// process. In virtual time they share the box's runtime and clock.
    pub fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let grid = tokio::time::Instant::now();
        self.grid = Some(grid);
        let far_ends = std::mem::take(&mut self.far_ends);
        let (scenario, stats) = (self.scenario.clone(), self.stats.clone());
        let (done, presses) = (self.done.clone(), self.presses.clone());
        let real_time = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !real_time {
            world::spawn(far_ends, scenario, stats, done, presses, grid);
            return;
        }
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(
                    "no runtime for the simulated world's thread ({e}); sharing the box's"
                );
                world::spawn(far_ends, scenario, stats, done, presses, grid);
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("sim-world".into())
            .spawn(move || {
                rt.block_on(async move {
                    world::spawn(far_ends, scenario, stats, done, presses, grid);
                    std::future::pending::<()>().await;
                });
            });
        if let Err(e) = spawned {
            tracing::error!("the simulated world's thread did not start: {e}");
        }
    }
}
