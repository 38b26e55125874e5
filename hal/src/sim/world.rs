//! The far side of the simulated lines: callers and agents following a
//! scenario.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until, timeout};

use super::scenario::{AgentScript, Arrival, CalleeScript, Dial, Scenario, Step, Via};
use super::{FarEnd, SimStats};
use crate::audio::{AudioFormat, Frame};
use crate::dsp::dtmf::ToneGen;
use crate::io::ButtonPress;
use crate::line::{HangupCause, LineCommand, LineEvent, LineKind};

const FORMAT: AudioFormat = AudioFormat::NARROWBAND;
/// How long a far end waits for the box to release a line after hanging up
/// before it counts the line as leaked and frees it anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbound audio above this level counts as "heard".
const HEARD_DBFS: f32 = -50.0;

/// Counts scripted activities still to finish; flips `done` at zero.
struct Outstanding {
    count: AtomicUsize,
    done: watch::Sender<bool>,
}

impl Outstanding {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
    fn finish(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.done.send_replace(true);
        }
    }
}

/// The trunks' far ends. Each trunk is served by its own task, which
/// places scripted calls towards the box and answers calls the box dials
/// out; `busy` keeps the two from using one trunk at once (a caller that
/// finds every trunk busy is blocked, a box that dials a trunk a caller just
/// took gets busy — glare).
struct TrunkPool {
    slots: Vec<TrunkSlot>,
    ids: Vec<String>,
}

struct TrunkSlot {
    busy: AtomicBool,
    calls: mpsc::Sender<Arrival>,
}

impl TrunkPool {
    fn acquire(&self, line: Option<&str>) -> Option<usize> {
        let take = |i: usize| {
            self.slots[i]
                .busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        };
        match line {
            Some(id) => {
                let i = self.ids.iter().position(|x| x == id)?;
                take(i).then_some(i)
            }
            None => (0..self.slots.len()).find(|&i| take(i)),
        }
    }
}

/// Who the box reaches when it dials: scripts per number, used in turn.
struct Callees {
    scripts: Vec<CalleeScript>,
    calls: Mutex<HashMap<String, usize>>,
}

impl Callees {
    fn next(&self, number: &str) -> Option<CalleeScript> {
        let all: Vec<&CalleeScript> = self.scripts.iter().filter(|c| c.number == number).collect();
        let last = all.len().checked_sub(1)?;
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(number.to_string()).or_insert(0);
        let script = all[(*n).min(last)].clone();
        *n += 1;
        Some(script)
    }
}

pub(super) fn spawn(
    far_ends: Vec<FarEnd>,
    scenario: Arc<Scenario>,
    stats: Arc<SimStats>,
    done: watch::Sender<bool>,
    presses: mpsc::Sender<ButtonPress>,
    grid: Instant,
) {
    let start = Instant::now();
    let dials: usize = scenario.agents.iter().map(|a| a.dials.len()).sum();
    let outstanding = Arc::new(Outstanding {
        // +1 for the scheduler itself, finished when it has placed every call.
        count: AtomicUsize::new(scenario.arrivals.len() + dials + 1),
        done,
    });
    let callees = Arc::new(Callees {
        scripts: scenario.callees.clone(),
        calls: Mutex::new(HashMap::new()),
    });

    let mut slots = Vec::new();
    let mut ids = Vec::new();
    let mut trunk_ends = Vec::new();
    for mut fe in far_ends {
        fe.grid = grid;
        match fe.info.kind {
            LineKind::Trunk => {
                let (tx, rx) = mpsc::channel(4);
                ids.push(fe.info.id.clone());
                slots.push(TrunkSlot {
                    busy: AtomicBool::new(false),
                    calls: tx,
                });
                trunk_ends.push((fe, rx));
            }
            LineKind::Station => {
                let script = scenario
                    .agents
                    .iter()
                    .find(|a| a.line == fe.info.id)
                    .cloned();
                tokio::spawn(agent(fe, script, start, stats.clone(), outstanding.clone()));
            }
        }
    }
    let pool = Arc::new(TrunkPool { slots, ids });
    for (i, (fe, rx)) in trunk_ends.into_iter().enumerate() {
        tokio::spawn(trunk(
            fe,
            rx,
            i,
            pool.clone(),
            callees.clone(),
            stats.clone(),
            outstanding.clone(),
        ));
    }

    let buttons = scenario.buttons.clone();
    tokio::spawn(async move {
        for b in buttons {
            sleep_until(start + b.at).await;
            sleep(b.held).await;
            let held_ms = u32::try_from(b.held.as_millis()).unwrap_or(u32::MAX);
            if presses
                .send(ButtonPress {
                    button: b.button,
                    held_ms,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });

    tokio::spawn(async move {
        for arrival in scenario.arrivals.iter() {
            sleep_until(start + arrival.at).await;
            SimStats::add(&stats.calls_placed);
            match pool.acquire(arrival.call.line.as_deref()) {
                Some(i) => {
                    if pool.slots[i].calls.send(arrival.clone()).await.is_err() {
                        outstanding.finish();
                    }
                }
                None => {
                    tracing::debug!(call = %arrival.call.name, "all trunks busy");
                    SimStats::add(&stats.calls_blocked);
                    outstanding.finish();
                }
            }
        }
        outstanding.finish();
    });
}

/// One trunk's far end: places the calls given to it, answers the box's
/// outbound calls.
async fn trunk(
    mut fe: FarEnd,
    mut calls: mpsc::Receiver<Arrival>,
    idx: usize,
    pool: Arc<TrunkPool>,
    callees: Arc<Callees>,
    stats: Arc<SimStats>,
    outstanding: Arc<Outstanding>,
) {
    let busy = &pool.slots[idx].busy;
    loop {
        tokio::select! {
            Some(arrival) = calls.recv() => {
                fe.drain();
                place_call(&arrival, &mut fe, &stats).await;
                busy.store(false, Ordering::SeqCst);
                outstanding.finish();
            }
            cmd = fe.commands.recv() => match cmd {
                None => return,
                Some(LineCommand::Dial { number, caller_id }) => {
                    stats
                        .presented
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(number.clone())
                        .or_default()
                        .push(caller_id.unwrap_or_default());
                    if busy
                        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        // A caller took the trunk first.
                        let _ = fe.events.send(LineEvent::Hangup(HangupCause::Busy)).await;
                        continue;
                    }
                    outstanding.add();
                    fe.drain_audio();
                    answer_dialled(&mut fe, &number, &callees, &stats).await;
                    busy.store(false, Ordering::SeqCst);
                    outstanding.finish();
                }
                Some(_) => {}
            },
        }
    }
}

/// The person at a number the box dialled.
async fn answer_dialled(fe: &mut FarEnd, number: &str, callees: &Callees, stats: &SimStats) {
    SimStats::add(&stats.outbound_dialled);
    let script = callees.next(number);
    let unreachable = match &script {
        None => Some(HangupCause::Congestion),
        Some(s) if s.busy => Some(HangupCause::Busy),
        Some(s) if s.not_in_service => Some(HangupCause::NotInService),
        _ => None,
    };
    if let Some(cause) = unreachable {
        if fe.events.send(LineEvent::Hangup(cause)).await.is_ok() {
            wait_release(fe, stats).await;
        }
        return;
    }
    let Some(script) = script else { return };
    if fe.events.send(LineEvent::Ringing).await.is_err() {
        return;
    }
    let pick_up = script.answers.then_some(script.answer_after);
    let talk = Player::new(script.script.clone(), script.hangup_after);
    ring_then_talk(fe, pick_up, talk, &stats.outbound_answered, stats).await;
}

/// A ringing far end: picks up after `pick_up` (never when `None`) unless
/// the box gives up first, then plays its part until one side hangs up.
async fn ring_then_talk(
    fe: &mut FarEnd,
    pick_up: Option<Duration>,
    mut player: Player,
    answered: &AtomicU64,
    stats: &SimStats,
) {
    let pick_up = async {
        match pick_up {
            Some(d) => sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(pick_up);
    loop {
        tokio::select! {
            cmd = fe.commands.recv() => match cmd {
                // The box gave up ringing (caller left, ring timeout).
                Some(LineCommand::Hangup(_)) | None => return,
                Some(_) => {}
            },
            () = &mut pick_up => break,
        }
    }
    if fe.events.send(LineEvent::Answered).await.is_err() {
        return;
    }
    SimStats::add(answered);
    if let Ended::FarHungUp = media(fe, &mut player, stats).await {
        hang_up_and_wait(fe, stats).await;
    }
}

async fn place_call(arrival: &Arrival, fe: &mut FarEnd, stats: &SimStats) {
    let incoming = LineEvent::Incoming {
        caller: arrival.from(),
        dialled: arrival.to(),
    };
    if fe.events.send(incoming).await.is_err() {
        return;
    }
    let patience = arrival.call.patience;
    let give_up = async {
        match patience {
            Some(p) => sleep(p).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            cmd = fe.commands.recv() => match cmd {
                Some(LineCommand::Answer) => break,
                Some(LineCommand::Hangup(_)) => {
                    SimStats::add(&stats.calls_rejected);
                    return;
                }
                Some(_) => {}
                None => return,
            },
            () = &mut give_up => {
                SimStats::add(&stats.calls_abandoned);
                hang_up_and_wait(fe, stats).await;
                return;
            }
        }
    }
    SimStats::add(&stats.calls_answered);
    let mut player = Player::new(arrival.call.script.clone(), arrival.call.hangup_after);
    match media(fe, &mut player, stats).await {
        Ended::BoxHungUp => SimStats::add(&stats.box_hangups),
        Ended::FarHungUp => {
            SimStats::add(&stats.caller_hangups);
            hang_up_and_wait(fe, stats).await;
        }
        Ended::Closed => {}
    }
}

async fn agent(
    mut fe: FarEnd,
    script: Option<AgentScript>,
    start: Instant,
    stats: Arc<SimStats>,
    outstanding: Arc<Outstanding>,
) {
    let script = script.unwrap_or_else(|| AgentScript {
        name: format!("nobody at {}", fe.info.id),
        line: fe.info.id.clone(),
        answers: false,
        answer_after: Duration::ZERO,
        talk: None,
        script: Vec::new(),
        dials: Vec::new(),
    });
    let mut dials = script.dials.iter();
    let mut next_dial = dials.next();
    loop {
        let dial_at = next_dial.map(|d| start + d.at);
        tokio::select! {
            cmd = fe.commands.recv() => match cmd {
                None => return,
                Some(LineCommand::Ring { caller_id, caller_name }) => {
                    outstanding.add();
                    SimStats::add(&stats.stations_rung);
                    tracing::debug!(agent = %script.name, ?caller_id, ?caller_name, "station rings");
                    let shown = [caller_id, caller_name].into_iter().flatten().collect::<Vec<_>>().join(" ");
                    stats
                        .caller_ids
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(fe.info.id.clone())
                        .or_default()
                        .push(shown);
                    fe.drain_audio();
                    ringing(&mut fe, &script, &stats).await;
                    outstanding.finish();
                }
                Some(cmd) => lamp(&fe, &cmd, &stats),
            },
            () = sleep_until_opt(dial_at) => {
                if let Some(d) = next_dial {
                    fe.drain_audio();
                    dial(&mut fe, d, &stats).await;
                    outstanding.finish();
                }
                next_dial = dials.next();
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn ringing(fe: &mut FarEnd, script: &AgentScript, stats: &SimStats) {
    let pick_up = script.answers.then_some(script.answer_after);
    let talk = Player::new(script.script.clone(), script.talk);
    ring_then_talk(fe, pick_up, talk, &stats.stations_answered, stats).await;
}

async fn dial(fe: &mut FarEnd, d: &Dial, stats: &SimStats) {
    if fe.events.send(LineEvent::OffHook).await.is_err() {
        return;
    }
    let mut steps = vec![
        Step::Wait(d.listen),
        Step::Press {
            digits: d.digits.clone(),
            via: d.via,
            tone: Duration::from_millis(100),
            gap: Duration::from_millis(100),
            level_dbfs: -10.0,
        },
    ];
    // Stay on the line (a supervisor listening in), saying something.
    steps.extend(d.then.iter().cloned());
    steps.push(Step::Wait(d.hold.unwrap_or(Duration::from_millis(500))));
    steps.push(Step::Hangup);
    let mut player = Player::new(steps, None);
    let listen = (d.listen.as_millis() / FORMAT.frame_duration().as_millis()) as usize;
    let mut heard = Heard {
        envelope: Vec::with_capacity(listen),
        ..Heard::default()
    };
    let end = exchange(fe, &mut player, stats, &mut heard).await;
    heard.flush(stats, &fe.info.id);
    stats
        .dial_tones
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(fe.info.id.clone())
        .or_default()
        .push(dial_tone(&heard.envelope).to_string());
    if let Ended::FarHungUp = end {
        hang_up_and_wait(fe, stats).await;
    }
}

/// What a picked-up handset heard before the first key, from which frames
/// had sound: nothing, a steady tone, or a tone broken by gaps (a stutter).
/// Silence before the tone starts and after it stops does not count.
fn dial_tone(envelope: &[bool]) -> &'static str {
    let (Some(first), Some(last)) = (
        envelope.iter().position(|&s| s),
        envelope.iter().rposition(|&s| s),
    ) else {
        return "none";
    };
    if envelope[first..=last].iter().all(|&s| s) {
        "steady"
    } else {
        "stutter"
    }
}

async fn hang_up_and_wait(fe: &mut FarEnd, stats: &SimStats) {
    if fe
        .events
        .send(LineEvent::Hangup(HangupCause::Normal))
        .await
        .is_err()
    {
        return;
    }
    wait_release(fe, stats).await;
}

/// Waits for the box to release the line after the far end ended the call.
async fn wait_release(fe: &mut FarEnd, stats: &SimStats) {
    let released = timeout(RELEASE_TIMEOUT, async {
        loop {
            match fe.commands.recv().await {
                Some(LineCommand::Hangup(_)) | None => return,
                Some(cmd) => lamp(fe, &cmd, stats),
            }
        }
    })
    .await;
    if released.is_err() {
        tracing::warn!(line = %fe.info.id, "box never released the line after the far end hung up");
        SimStats::add(&stats.unreleased);
    }
}

enum Ended {
    BoxHungUp,
    FarHungUp,
    Closed,
}

/// Exchanges audio at the frame rate until one side hangs up.
async fn media(fe: &mut FarEnd, player: &mut Player, stats: &SimStats) -> Ended {
    // What this far end heard is counted here and added to the shared
    // per-line totals once, when the call ends: no lock or allocation per
    // frame.
    let mut heard = Heard::default();
    let end = exchange(fe, player, stats, &mut heard).await;
    heard.flush(stats, &fe.info.id);
    end
}

#[derive(Default)]
struct Heard {
    frames: u64,
    probes: [u64; super::PROBES],
    /// Whether each frame had sound, for as many frames as it has room for.
    envelope: Vec<bool>,
}

impl Heard {
    fn flush(&self, stats: &SimStats, line: &str) {
        if self.frames == 0 {
            return;
        }
        *stats
            .heard_by_line
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(line.to_string())
            .or_default() += self.frames;
        if self.probes.iter().any(|&n| n > 0) {
            let mut m = stats.probes_heard.lock().unwrap_or_else(|p| p.into_inner());
            let e = m.entry(line.to_string()).or_default();
            for (n, add) in e.iter_mut().zip(self.probes) {
                *n += add;
            }
        }
    }
}

async fn exchange(
    fe: &mut FarEnd,
    player: &mut Player,
    stats: &SimStats,
    ears: &mut Heard,
) -> Ended {
    // Every far end produces its frames on the backend's one frame grid, as
    // the ports of one sound card do: the box's media engine reads them all
    // in one pass just after.
    let period = FORMAT.frame_duration();
    let mut tick = tokio::time::interval_at(
        crate::audio::next_on_grid(fe.grid, Instant::now(), period),
        period,
    );
    // A sound card's clock does not wait for a late reader: after a stall
    // the frames it produced meanwhile arrive together, each with its own
    // deadline, and the box's lateness shows in all of them.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut seq: u32 = 0;
    let mut signals = Vec::with_capacity(4);
    loop {
        tokio::select! {
            biased;
            cmd = fe.commands.recv() => match cmd {
                Some(LineCommand::Hangup(_)) => return Ended::BoxHungUp,
                Some(cmd) => lamp(fe, &cmd, stats),
                None => return Ended::Closed,
            },
            due = tick.tick() => {
                let mut frame = Frame::silence(FORMAT, seq, u64::from(seq) * FORMAT.frame_samples as u64);
                seq = seq.wrapping_add(1);
                signals.clear();
                player.fill(frame.samples_mut(), &mut signals);
                for s in &signals {
                    match *s {
                        Signal::Digit(d) => {
                            SimStats::add(&stats.digits_sent);
                            if fe.events.send(LineEvent::Digit(d)).await.is_err() {
                                return Ended::Closed;
                            }
                        }
                        Signal::InbandDigit => SimStats::add(&stats.digits_sent),
                        Signal::Flash => {
                            if fe.events.send(LineEvent::HookFlash).await.is_err() {
                                return Ended::Closed;
                            }
                        }
                        Signal::Hangup => return Ended::FarHungUp,
                    }
                }
                // Captured during this period, the frame is delivered at its
                // end, as a sound card delivers a period's audio: the box
                // may take it from then (or from now if the far end itself
                // fell behind even that, counted apart), so the far ends'
                // own time within the period is not the box's lateness.
                let delivered = due + period;
                let now = Instant::now();
                if now.saturating_duration_since(delivered) > super::LATE_AFTER {
                    SimStats::add(&stats.frames_sent_late);
                }
                if fe.audio_to_box.try_send((frame, delivered.max(now))).is_err() {
                    SimStats::add(&stats.frames_dropped);
                }
                let heard = fe.audio_from_box.try_recv();
                if let Some(h) = &heard
                    && ears.envelope.len() < ears.envelope.capacity()
                {
                    ears.envelope.push(h.power_dbfs() > HEARD_DBFS);
                }
                if let Some(heard) = heard
                    && heard.power_dbfs() > HEARD_DBFS
                {
                    SimStats::add(&stats.frames_heard);
                    ears.frames += 1;
                    for (n, hit) in ears.probes.iter_mut().zip(probe_tones(heard.samples())) {
                        *n += u64::from(hit);
                    }
                }
            }
        }
    }
}

/// Notes what a station's message-waiting lamp was told (other commands
/// outside a call mean nothing to a far end).
fn lamp(fe: &FarEnd, cmd: &LineCommand, stats: &SimStats) {
    if let LineCommand::MessageWaiting { new, old } = cmd {
        tracing::debug!(line = %fe.info.id, new, old, "message waiting");
        stats
            .message_waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(fe.info.id.clone())
            .or_default()
            .push(format!("{new}/{old}"));
    }
}

/// Which probe tones carry a real share of a heard frame (mixes of several
/// talkers show several).
fn probe_tones(x: &[i16]) -> [bool; super::PROBES] {
    let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mut out = [false; super::PROBES];
    if total <= 0.0 {
        return out;
    }
    for (k, hz) in super::PROBE_HZ.iter().enumerate() {
        let coeff = 2.0 * (std::f64::consts::TAU * hz / f64::from(FORMAT.sample_rate)).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // A pure tone gives power = total * N / 2; count it when it holds a
        // tenth of the frame's energy.
        out[k] = power > 0.1 * total * x.len() as f64 / 2.0;
    }
    out
}

impl FarEnd {
    fn drain(&mut self) {
        while self.commands.try_recv().is_ok() {}
        self.drain_audio();
    }
    fn drain_audio(&mut self) {
        while self.audio_from_box.try_recv().is_some() {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Send an out-of-band digit event.
    Digit(char),
    /// An in-band digit started (counted only).
    InbandDigit,
    /// Hang up.
    Hangup,
    /// Hook flash.
    Flash,
}

enum Seg {
    Silence(u64),
    Tone(ToneGen, u64),
    Samples(Arc<[i16]>, usize),
    Signal(Signal),
}

/// Turns a script into audio, sample-accurately, frame by frame.
struct Player {
    steps: VecDeque<Step>,
    segs: VecDeque<Seg>,
    elapsed: u64,
    hangup_at: Option<u64>,
}

fn samples(d: Duration) -> u64 {
    (d.as_micros() * u128::from(FORMAT.sample_rate) / 1_000_000) as u64
}

impl Player {
    fn new(steps: Vec<Step>, hangup_after: Option<Duration>) -> Player {
        Player {
            steps: steps.into(),
            segs: VecDeque::new(),
            elapsed: 0,
            hangup_at: hangup_after.map(samples),
        }
    }

    fn expand(&mut self, step: Step) {
        match step {
            Step::Wait(d) => self.segs.push_back(Seg::Silence(samples(d))),
            Step::Press {
                digits,
                via,
                tone,
                gap,
                level_dbfs,
            } => {
                for d in digits.chars() {
                    if matches!(via, Via::Signal | Via::Both) {
                        self.segs.push_back(Seg::Signal(Signal::Digit(d)));
                    }
                    match (via, ToneGen::dtmf(d, FORMAT.sample_rate, level_dbfs)) {
                        (Via::Inband | Via::Both, Some(g)) => {
                            if via == Via::Inband {
                                self.segs.push_back(Seg::Signal(Signal::InbandDigit));
                            }
                            self.segs.push_back(Seg::Tone(g, samples(tone)));
                        }
                        _ => self.segs.push_back(Seg::Silence(samples(tone))),
                    }
                    self.segs.push_back(Seg::Silence(samples(gap)));
                }
            }
            Step::Play(s) => self.segs.push_back(Seg::Samples(s, 0)),
            Step::Hangup => self.segs.push_back(Seg::Signal(Signal::Hangup)),
            Step::Flash => self.segs.push_back(Seg::Signal(Signal::Flash)),
        }
    }

    /// Fills one frame; signals that start within it are pushed to `signals`.
    fn fill(&mut self, out: &mut [i16], signals: &mut Vec<Signal>) {
        let mut pos = 0;
        while pos < out.len() {
            if let Some(at) = self.hangup_at
                && self.elapsed >= at
            {
                signals.push(Signal::Hangup);
                self.hangup_at = None;
            }
            if self.segs.is_empty() {
                match self.steps.pop_front() {
                    Some(step) => {
                        self.expand(step);
                        continue;
                    }
                    None => {
                        // Script over: silence (already in `out`).
                        self.elapsed += (out.len() - pos) as u64;
                        return;
                    }
                }
            }
            let room = out.len() - pos;
            let Some(seg) = self.segs.front_mut() else {
                continue;
            };
            let used = match seg {
                Seg::Silence(n) => {
                    let k = (*n).min(room as u64) as usize;
                    *n -= k as u64;
                    k
                }
                Seg::Tone(g, n) => {
                    let k = (*n).min(room as u64) as usize;
                    g.fill(&mut out[pos..pos + k]);
                    *n -= k as u64;
                    k
                }
                Seg::Samples(s, at) => {
                    let k = (s.len() - *at).min(room);
                    out[pos..pos + k].copy_from_slice(&s[*at..*at + k]);
                    *at += k;
                    k
                }
                Seg::Signal(sig) => {
                    signals.push(*sig);
                    self.segs.pop_front();
                    continue;
                }
            };
            let finished = match self.segs.front() {
                Some(Seg::Silence(n)) | Some(Seg::Tone(_, n)) => *n == 0,
                Some(Seg::Samples(s, at)) => *at >= s.len(),
                _ => false,
            };
            if finished {
                self.segs.pop_front();
            }
            pos += used;
            self.elapsed += used as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(player: &mut Player, frames: usize) -> (Vec<i16>, Vec<(usize, Signal)>) {
        let mut audio = Vec::new();
        let mut sigs = Vec::new();
        for f in 0..frames {
            let mut buf = [0i16; 160];
            let mut s = Vec::new();
            player.fill(&mut buf, &mut s);
            sigs.extend(s.into_iter().map(|x| (f, x)));
            audio.extend_from_slice(&buf);
        }
        (audio, sigs)
    }

    #[test]
    fn press_inband_makes_tones_of_the_right_length() {
        let mut p = Player::new(
            vec![
                Step::Wait(Duration::from_millis(30)),
                Step::Press {
                    digits: "12".into(),
                    via: Via::Inband,
                    tone: Duration::from_millis(70),
                    gap: Duration::from_millis(50),
                    level_dbfs: -10.0,
                },
            ],
            None,
        );
        let (audio, sigs) = run(&mut p, 20);
        let loud: Vec<bool> = audio.iter().map(|&s| s != 0).collect();
        // 30 ms silence = 240 samples, then 70 ms tone = 560 samples
        assert!(!loud[..240].iter().any(|&x| x));
        let first_tone = &loud[240..800];
        assert!(first_tone.iter().filter(|&&x| x).count() > 540);
        assert!(!loud[801..1200].iter().any(|&x| x), "gap of 50 ms");
        assert!(loud[1200..1760].iter().filter(|&&x| x).count() > 540);
        assert_eq!(
            sigs.iter().filter(|s| s.1 == Signal::InbandDigit).count(),
            2
        );
    }

    #[test]
    fn signal_digits_and_hangup_after() {
        let mut p = Player::new(
            vec![Step::Press {
                digits: "#".into(),
                via: Via::Signal,
                tone: Duration::from_millis(100),
                gap: Duration::from_millis(100),
                level_dbfs: -10.0,
            }],
            Some(Duration::from_millis(100)),
        );
        let (audio, sigs) = run(&mut p, 10);
        assert!(audio.iter().all(|&s| s == 0), "out of band only: no tone");
        assert_eq!(sigs[0], (0, Signal::Digit('#')));
        assert_eq!(
            sigs[1],
            (5, Signal::Hangup),
            "hangs up 100 ms (5 frames) in"
        );
    }
}
