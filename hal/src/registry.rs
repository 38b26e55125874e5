//! Backends, chosen by name from the site config.
//!
//! [`BACKENDS`] is the one table of `(name, builder)`: the default (`sim`)
//! first, hardware backends behind their cargo features. Builders return a
//! `Result` and never exit the process. The firmware runs on an
//! [`AnyBackend`], which dispatches to the chosen backend without boxing or
//! allocating per frame.

use crate::analog::{self, AnalogBackend, board::Board};
use crate::audio::{AudioFormat, AudioIn, AudioOut, Frame};
use crate::error::{Error, ErrorKind};
use crate::io::{BoxStatus, ButtonPress, Indicators, Inputs};
use crate::line::{Line, LineCommand, LineEvent, LineInfo};
use crate::sim::{self, Scenario, SimBackend};

/// One telephony port: its signalling and the two halves of its audio, split
/// so that a call can wait on all three at once.
#[derive(Debug)]
pub struct Port<L, I, O> {
    /// Signalling.
    pub line: L,
    /// Audio from the line.
    pub audio_in: I,
    /// Audio to the line.
    pub audio_out: O,
}

/// A set of lines and indicators the firmware runs on.
pub trait Backend: Send + 'static {
    /// Signalling half of a port.
    type Line: Line;
    /// Inbound audio.
    type AudioIn: AudioIn;
    /// Outbound audio.
    type AudioOut: AudioOut;
    /// LEDs and relays.
    type Indicators: Indicators;
    /// Buttons.
    type Inputs: Inputs;

    /// The backend's registry name.
    fn name(&self) -> &'static str;
    /// Hands over every port, once.
    fn take_ports(&mut self) -> Vec<Port<Self::Line, Self::AudioIn, Self::AudioOut>>;
    /// Hands over the indicators, once.
    fn take_indicators(&mut self) -> Option<Self::Indicators>;
    /// Hands over the buttons, once.
    fn take_inputs(&mut self) -> Option<Self::Inputs>;
    /// Starts delivering events. Called once the firmware listens on every
    /// port, inside the tokio runtime.
    fn start(&mut self) -> Result<(), OpenError>;
    /// When every port's inbound frames are produced on one clock (the
    /// ports of one sound card, the simulator), the instant that clock's
    /// grid starts: frames are due at `grid + k·frame period`, and the media
    /// engine ticks just after each. `None` (the default) when frames come
    /// at their own times (RTP) or the phase is not known: the engine
    /// keeps a grid of its own. Valid once started.
    fn frame_grid(&self) -> Option<tokio::time::Instant> {
        None
    }
}

/// What a builder gets.
#[derive(Debug, Clone, Default)]
pub struct BackendArgs {
    /// Lines from the site config.
    pub lines: Vec<LineInfo>,
    /// A scenario to play (sim backend only).
    pub scenario: Option<Scenario>,
    /// The board description (analog backend only).
    pub board: Option<Board>,
    /// SIP settings and the lines that speak SIP; those lines are the SIP
    /// backend's, beside the chosen backend's.
    #[cfg(feature = "sip")]
    pub sip: Option<crate::sip::SipArgs>,
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No backend has that name in this build.
    #[error("unknown backend `{name}`; this build has: {available}")]
    Unknown {
        /// Name asked for.
        name: String,
        /// Names available.
        available: String,
    },
    /// The backend refused its arguments.
    #[error("backend `{backend}`: {reason}")]
    Invalid {
        /// Backend name.
        backend: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Builds a backend from its arguments.
pub type Builder = fn(BackendArgs) -> Result<AnyBackend, OpenError>;

/// Every backend in this build, default first.
pub const BACKENDS: &[(&str, Builder)] = &[
    ("sim", build_sim),
    #[cfg(feature = "alsa")]
    ("analog", build_analog),
    #[cfg(feature = "sip")]
    ("sip", build_sip_only),
];

/// Only SIP lines: no indicators, no buttons.
#[cfg(feature = "sip")]
fn build_sip_only(args: BackendArgs) -> Result<AnyBackend, OpenError> {
    let sip = args.sip.ok_or_else(|| OpenError::Invalid {
        backend: "sip",
        reason: "the site config has no SIP lines (`sip = { … }` on a `[[line]]`)".into(),
    })?;
    let others: Vec<&str> = args
        .lines
        .iter()
        .filter(|l| !sip.lines.iter().any(|(id, _)| *id == l.id))
        .map(|l| l.id.as_str())
        .collect();
    if !others.is_empty() {
        return Err(OpenError::Invalid {
            backend: "sip",
            reason: format!(
                "lines {} have no `sip` table; use backend `sim` or `analog` for them",
                others.join(", ")
            ),
        });
    }
    Ok(AnyBackend::Sip(open_sip(sip)?))
}

#[cfg(feature = "sip")]
fn open_sip(args: crate::sip::SipArgs) -> Result<crate::sip::SipBackend, OpenError> {
    crate::sip::SipBackend::open(args).map_err(|e| OpenError::Invalid {
        backend: "sip",
        reason: e.to_string(),
    })
}

#[cfg(feature = "alsa")]
fn build_analog(args: BackendArgs) -> Result<AnyBackend, OpenError> {
    let board = args.board.ok_or_else(|| OpenError::Invalid {
        backend: "analog",
        reason: "the site config has no `[board]` describing the line interface".into(),
    })?;
    Ok(AnyBackend::Analog(Box::new(AnalogBackend::open(
        board, args.lines,
    )?)))
}

fn build_sim(args: BackendArgs) -> Result<AnyBackend, OpenError> {
    Ok(AnyBackend::Sim(SimBackend::new(args.lines, args.scenario)))
}

/// Names of the backends in this build.
pub fn names() -> Vec<&'static str> {
    BACKENDS.iter().map(|(n, _)| *n).collect()
}

/// Opens the backend called `name`.
pub fn open(name: &str, args: BackendArgs) -> Result<AnyBackend, OpenError> {
    let (_, build) =
        BACKENDS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| OpenError::Unknown {
                name: name.to_string(),
                available: names().join(", "),
            })?;
    if args.scenario.is_some() && name != "sim" {
        return Err(OpenError::Invalid {
            backend: "sim",
            reason: format!("scenarios play on the sim backend only, not on `{name}`"),
        });
    }
    #[cfg(feature = "sip")]
    if name != "sip"
        && let Some(sip) = args.sip.clone()
    {
        // SIP lines beside the chosen backend's: it gets the others.
        let mut base = args;
        base.sip = None;
        base.lines
            .retain(|l| !sip.lines.iter().any(|(id, _)| *id == l.id));
        let base = build(base)?;
        return Ok(AnyBackend::Mixed(Box::new(base), open_sip(sip)?));
    }
    build(args)
}

/// Any backend of this build.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// Simulated lines.
    Sim(SimBackend),
    /// A line-interface board's analog ports.
    Analog(Box<AnalogBackend>),
    /// SIP lines only.
    #[cfg(feature = "sip")]
    Sip(crate::sip::SipBackend),
    /// Another backend's lines and SIP lines on one box.
    #[cfg(feature = "sip")]
    Mixed(Box<AnyBackend>, crate::sip::SipBackend),
}

impl AnyBackend {
    /// The simulation's control handle, when this is the sim backend.
    pub fn sim_control(&self) -> Option<sim::SimControl> {
        match self {
            AnyBackend::Sim(s) => Some(s.control()),
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, _) => b.sim_control(),
            _ => None,
        }
    }

    /// The address SIP listens on, when the box has SIP lines.
    #[cfg(feature = "sip")]
    pub fn sip_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            AnyBackend::Sip(s) | AnyBackend::Mixed(_, s) => Some(s.local_addr()),
            _ => None,
        }
    }
}

/// Error of any backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnyError {
    /// From the sim backend.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// From the analog backend.
    #[error(transparent)]
    Analog(#[from] analog::AnalogError),
    /// From the SIP backend.
    #[cfg(feature = "sip")]
    #[error(transparent)]
    Sip(#[from] crate::sip::SipError),
}

impl Error for AnyError {
    fn kind(&self) -> ErrorKind {
        match self {
            AnyError::Sim(e) => e.kind(),
            AnyError::Analog(e) => e.kind(),
            #[cfg(feature = "sip")]
            AnyError::Sip(e) => e.kind(),
        }
    }
}

/// Line of any backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyLine {
    /// SIP.
    #[cfg(feature = "sip")]
    Sip(crate::sip::SipLine),
    /// Sim.
    Sim(sim::SimLine),
    /// Analog.
    Analog(analog::AnalogLine),
}

/// Inbound audio of any backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyAudioIn {
    /// SIP.
    #[cfg(feature = "sip")]
    Sip(crate::sip::SipAudioIn),
    /// Sim.
    Sim(sim::SimAudioIn),
    /// Analog.
    Analog(analog::AnalogAudioIn),
}

/// Outbound audio of any backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyAudioOut {
    /// SIP.
    #[cfg(feature = "sip")]
    Sip(crate::sip::SipAudioOut),
    /// Sim.
    Sim(sim::SimAudioOut),
    /// Analog.
    Analog(analog::AnalogAudioOut),
}

/// Indicators of any backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyIndicators {
    /// Sim.
    Sim(sim::SimIndicators),
    /// Analog.
    Analog(analog::AnalogIndicators),
}

/// Buttons of any backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyInputs {
    /// Sim.
    Sim(sim::SimInputs),
    /// Analog.
    Analog(analog::AnalogInputs),
}

impl Line for AnyLine {
    type Error = AnyError;
    fn info(&self) -> &LineInfo {
        match self {
            AnyLine::Sim(l) => l.info(),
            AnyLine::Analog(l) => l.info(),
            #[cfg(feature = "sip")]
            AnyLine::Sip(l) => l.info(),
        }
    }
    fn status(&self) -> crate::line::StatusWatch {
        match self {
            AnyLine::Sim(l) => l.status(),
            AnyLine::Analog(l) => l.status(),
            #[cfg(feature = "sip")]
            AnyLine::Sip(l) => l.status(),
        }
    }
    async fn next_event(&mut self) -> Result<LineEvent, AnyError> {
        match self {
            AnyLine::Sim(l) => Ok(l.next_event().await?),
            AnyLine::Analog(l) => Ok(l.next_event().await?),
            #[cfg(feature = "sip")]
            AnyLine::Sip(l) => Ok(l.next_event().await?),
        }
    }
    async fn command(&mut self, cmd: LineCommand) -> Result<(), AnyError> {
        match self {
            AnyLine::Sim(l) => Ok(l.command(cmd).await?),
            AnyLine::Analog(l) => Ok(l.command(cmd).await?),
            #[cfg(feature = "sip")]
            AnyLine::Sip(l) => Ok(l.command(cmd).await?),
        }
    }
    fn early_media(&self) -> bool {
        match self {
            AnyLine::Sim(l) => l.early_media(),
            AnyLine::Analog(l) => l.early_media(),
            #[cfg(feature = "sip")]
            AnyLine::Sip(l) => l.early_media(),
        }
    }
}

impl AudioIn for AnyAudioIn {
    type Error = AnyError;
    fn format(&self) -> AudioFormat {
        match self {
            AnyAudioIn::Sim(a) => a.format(),
            AnyAudioIn::Analog(a) => a.format(),
            #[cfg(feature = "sip")]
            AnyAudioIn::Sip(a) => a.format(),
        }
    }
    async fn read_frame(&mut self) -> Result<Frame, AnyError> {
        match self {
            AnyAudioIn::Sim(a) => Ok(a.read_frame().await?),
            AnyAudioIn::Analog(a) => Ok(a.read_frame().await?),
            #[cfg(feature = "sip")]
            AnyAudioIn::Sip(a) => Ok(a.read_frame().await?),
        }
    }
    fn try_read_frame(&mut self) -> Result<Option<Frame>, AnyError> {
        match self {
            AnyAudioIn::Sim(a) => Ok(a.try_read_frame()?),
            AnyAudioIn::Analog(a) => Ok(a.try_read_frame()?),
            #[cfg(feature = "sip")]
            AnyAudioIn::Sip(a) => Ok(a.try_read_frame()?),
        }
    }
    fn keys_in_band(&self) -> bool {
        match self {
            AnyAudioIn::Sim(a) => a.keys_in_band(),
            AnyAudioIn::Analog(a) => a.keys_in_band(),
            #[cfg(feature = "sip")]
            AnyAudioIn::Sip(a) => a.keys_in_band(),
        }
    }
    fn paced(&self) -> bool {
        match self {
            AnyAudioIn::Sim(a) => a.paced(),
            AnyAudioIn::Analog(a) => a.paced(),
            #[cfg(feature = "sip")]
            AnyAudioIn::Sip(a) => a.paced(),
        }
    }
}

impl AudioOut for AnyAudioOut {
    type Error = AnyError;
    fn format(&self) -> AudioFormat {
        match self {
            AnyAudioOut::Sim(a) => a.format(),
            AnyAudioOut::Analog(a) => a.format(),
            #[cfg(feature = "sip")]
            AnyAudioOut::Sip(a) => a.format(),
        }
    }
    async fn write_frame(&mut self, frame: Frame) -> Result<(), AnyError> {
        match self {
            AnyAudioOut::Sim(a) => Ok(a.write_frame(frame).await?),
            AnyAudioOut::Analog(a) => Ok(a.write_frame(frame).await?),
            #[cfg(feature = "sip")]
            AnyAudioOut::Sip(a) => Ok(a.write_frame(frame).await?),
        }
    }
    fn offer_frame(&mut self, frame: Frame) -> Result<bool, AnyError> {
        match self {
            AnyAudioOut::Sim(a) => Ok(a.offer_frame(frame)?),
            AnyAudioOut::Analog(a) => Ok(a.offer_frame(frame)?),
            #[cfg(feature = "sip")]
            AnyAudioOut::Sip(a) => Ok(a.offer_frame(frame)?),
        }
    }
    async fn drain(&mut self) -> Result<(), AnyError> {
        match self {
            AnyAudioOut::Sim(a) => Ok(a.drain().await?),
            AnyAudioOut::Analog(a) => Ok(a.drain().await?),
            #[cfg(feature = "sip")]
            AnyAudioOut::Sip(a) => Ok(a.drain().await?),
        }
    }
}

impl Indicators for AnyIndicators {
    type Error = AnyError;
    fn set_status(&mut self, status: BoxStatus) -> Result<(), AnyError> {
        match self {
            AnyIndicators::Sim(i) => Ok(i.set_status(status)?),
            AnyIndicators::Analog(i) => Ok(i.set_status(status)?),
        }
    }
    fn set_line_led(&mut self, line: &str, on: bool) -> Result<(), AnyError> {
        match self {
            AnyIndicators::Sim(i) => Ok(i.set_line_led(line, on)?),
            AnyIndicators::Analog(i) => Ok(i.set_line_led(line, on)?),
        }
    }
}

impl Inputs for AnyInputs {
    type Error = AnyError;
    async fn next_press(&mut self) -> Result<ButtonPress, AnyError> {
        match self {
            AnyInputs::Sim(i) => Ok(i.next_press().await?),
            AnyInputs::Analog(i) => Ok(i.next_press().await?),
        }
    }
}

impl Backend for AnyBackend {
    type Line = AnyLine;
    type AudioIn = AnyAudioIn;
    type AudioOut = AnyAudioOut;
    type Indicators = AnyIndicators;
    type Inputs = AnyInputs;

    fn name(&self) -> &'static str {
        match self {
            AnyBackend::Sim(_) => "sim",
            AnyBackend::Analog(_) => "analog",
            #[cfg(feature = "sip")]
            AnyBackend::Sip(_) => "sip",
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, _) => b.name(),
        }
    }

    fn take_ports(&mut self) -> Vec<Port<AnyLine, AnyAudioIn, AnyAudioOut>> {
        match self {
            AnyBackend::Sim(s) => s
                .take_ports()
                .into_iter()
                .map(|p| Port {
                    line: AnyLine::Sim(p.line),
                    audio_in: AnyAudioIn::Sim(p.audio_in),
                    audio_out: AnyAudioOut::Sim(p.audio_out),
                })
                .collect(),
            AnyBackend::Analog(a) => a
                .take_ports()
                .into_iter()
                .map(|p| Port {
                    line: AnyLine::Analog(p.line),
                    audio_in: AnyAudioIn::Analog(p.audio_in),
                    audio_out: AnyAudioOut::Analog(p.audio_out),
                })
                .collect(),
            #[cfg(feature = "sip")]
            AnyBackend::Sip(s) => sip_ports(s),
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, s) => {
                let mut ports = b.take_ports();
                ports.extend(sip_ports(s));
                ports
            }
        }
    }

    fn take_indicators(&mut self) -> Option<AnyIndicators> {
        match self {
            AnyBackend::Sim(s) => s.take_indicators().map(AnyIndicators::Sim),
            AnyBackend::Analog(a) => a.take_indicators().map(AnyIndicators::Analog),
            #[cfg(feature = "sip")]
            AnyBackend::Sip(_) => None,
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, _) => b.take_indicators(),
        }
    }

    fn take_inputs(&mut self) -> Option<AnyInputs> {
        match self {
            AnyBackend::Sim(s) => s.take_inputs().map(AnyInputs::Sim),
            AnyBackend::Analog(a) => a.take_inputs().map(AnyInputs::Analog),
            #[cfg(feature = "sip")]
            AnyBackend::Sip(_) => None,
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, _) => b.take_inputs(),
        }
    }

    fn frame_grid(&self) -> Option<tokio::time::Instant> {
        match self {
            AnyBackend::Sim(s) => s.frame_grid(),
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, _) => b.frame_grid(),
            _ => None,
        }
    }

    fn start(&mut self) -> Result<(), OpenError> {
        match self {
            AnyBackend::Sim(s) => {
                s.start();
                Ok(())
            }
            AnyBackend::Analog(a) => a.start(),
            #[cfg(feature = "sip")]
            AnyBackend::Sip(s) => start_sip(s),
            #[cfg(feature = "sip")]
            AnyBackend::Mixed(b, s) => {
                b.start()?;
                start_sip(s)
            }
        }
    }
}

#[cfg(feature = "sip")]
fn start_sip(s: &mut crate::sip::SipBackend) -> Result<(), OpenError> {
    s.start().map_err(|e| OpenError::Invalid {
        backend: "sip",
        reason: e.to_string(),
    })
}

#[cfg(feature = "sip")]
fn sip_ports(s: &mut crate::sip::SipBackend) -> Vec<Port<AnyLine, AnyAudioIn, AnyAudioOut>> {
    s.take_ports()
        .into_iter()
        .map(|p| Port {
            line: AnyLine::Sip(p.line),
            audio_in: AnyAudioIn::Sip(p.audio_in),
            audio_out: AnyAudioOut::Sip(p.audio_out),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_backend_lists_the_available_ones() {
        let e = open("carrier-pigeon", BackendArgs::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "unknown backend `carrier-pigeon`; this build has: {}",
                names().join(", ")
            )
        );
        assert_eq!(names().contains(&"analog"), cfg!(feature = "alsa"));
        assert_eq!(names()[0], "sim", "the default comes first");
    }
}
