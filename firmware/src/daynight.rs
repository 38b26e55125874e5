//! The day/night switch: whether the office is taking calls as by day or
//! as after hours.
//!
//! The switch has three positions: `auto` follows the IVR's business hours
//! (`[ivr] business_hours`), `day` and `night` hold until changed. The case
//! button, the `*28` feature code, the command API and headquarters move it;
//! IVR branches test it (`{ mode = "night", goto = … }`), the status LED and
//! telemetry show it. The position is kept in `daynight` in the data
//! directory, so it survives a restart or a power cut.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The feature code that moves the switch from a station: alone it
/// toggles, followed by `0`, `1` or `2` it sets auto, day or night.
pub const CODE: &str = "*28";
/// The file in the data directory that keeps the position.
const FILE: &str = "daynight";

/// Where the switch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Day by business hours, night outside them.
    #[default]
    Auto,
    /// Day until changed.
    Day,
    /// Night until changed.
    Night,
}

impl Mode {
    /// Parses `auto`, `day` or `night`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "auto" => Some(Mode::Auto),
            "day" => Some(Mode::Day),
            "night" => Some(Mode::Night),
            _ => None,
        }
    }

    /// Whether calls are handled as at night in this position, given
    /// whether the business hours have the office open (`None`: the site
    /// names no business hours, and `auto` is then day).
    pub fn is_night(self, open: Option<bool>) -> bool {
        match self {
            Mode::Auto => open == Some(false),
            Mode::Day => false,
            Mode::Night => true,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Day => "day",
            Mode::Night => "night",
        })
    }
}

/// What a station keyed, if it was the switch's code: the position asked
/// for, `None` inside for a toggle. `Err` for the code followed by
/// anything but `0`, `1` or `2`.
pub fn parse_code(digits: &str) -> Option<Result<Option<Mode>, ()>> {
    let rest = digits.strip_prefix(CODE)?;
    Some(match rest {
        "" => Ok(None),
        "0" => Ok(Some(Mode::Auto)),
        "1" => Ok(Some(Mode::Day)),
        "2" => Ok(Some(Mode::Night)),
        _ => Err(()),
    })
}

/// The switch's position and what it means now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// The position.
    pub mode: Mode,
    /// Whether calls are handled as at night, as last evaluated (`auto`
    /// changes with the clock; see [`DayNight::evaluate`]).
    pub night: bool,
}

/// The switch, shared by everything that moves or reads it. Cheap to
/// clone; every clone is the same switch.
#[derive(Clone)]
pub struct DayNight {
    state: Arc<watch::Sender<State>>,
    file: Arc<PathBuf>,
    open: OpenFn,
}

/// Whether the business hours have the office open now (`None`: the site
/// names none).
pub type OpenFn = Arc<dyn Fn() -> Option<bool> + Send + Sync>;

impl fmt::Debug for DayNight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DayNight")
            .field("state", &self.state())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The position could not be kept on disk; the switch did not move.
#[derive(Debug, thiserror::Error)]
#[error("could not keep the day/night position in {path}: {source}")]
pub struct SaveError {
    path: String,
    source: std::io::Error,
}

impl DayNight {
    /// The switch as the data directory keeps it; `auto` when it keeps
    /// nothing (or something unreadable, which is logged). `open` tells
    /// whether business hours have the office open now.
    pub fn load(data_dir: &Path, open: OpenFn) -> DayNight {
        let path = data_dir.join(FILE);
        let mode = match std::fs::read_to_string(&path) {
            Ok(s) => Mode::parse(s.trim()).unwrap_or_else(|| {
                tracing::warn!(file = %path.display(), content = %s.trim(), "day/night position unreadable; auto");
                Mode::Auto
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Mode::Auto,
            Err(e) => {
                tracing::warn!(file = %path.display(), "day/night position unreadable ({e}); auto");
                Mode::Auto
            }
        };
        DayNight {
            state: Arc::new(
                watch::channel(State {
                    mode,
                    night: mode.is_night(open()),
                })
                .0,
            ),
            file: Arc::new(path),
            open,
        }
    }

    /// The position and its meaning as last evaluated.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Follows every change.
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Moves the switch to `mode` (kept on disk first: a switch that says
    /// night survives a power cut); `by` says who moved it, for the log.
    pub async fn set(&self, mode: Mode, by: &str) -> Result<State, SaveError> {
        let path = self.file.clone();
        let bytes = format!("{mode}\n");
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            crate::fsutil::write_atomic(&path, bytes.as_bytes(), None)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|source| SaveError {
            path: shown,
            source,
        })?;
        let state = State {
            mode,
            night: mode.is_night((self.open)()),
        };
        let before = self.state.send_replace(state);
        tracing::info!(%mode, night = state.night, was = %before.mode, by, "day/night switch set");
        Ok(state)
    }

    /// Toggles: night now becomes `day`, day becomes `night`.
    pub async fn toggle(&self, by: &str) -> Result<State, SaveError> {
        let now = self.state().mode.is_night((self.open)());
        let to = if now { Mode::Day } else { Mode::Night };
        self.set(to, by).await
    }

    /// Re-evaluates `auto` against the business hours; subscribers hear of
    /// it only when the meaning changed.
    pub fn evaluate(&self) {
        let open = (self.open)();
        self.state.send_if_modified(|s| {
            let night = s.mode.is_night(open);
            let changed = s.night != night;
            if changed {
                tracing::info!(mode = %s.mode, night, "business hours turned the day/night switch");
            }
            s.night = night;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn auto_follows_the_hours_and_the_forced_positions_do_not() {
        assert!(Mode::Auto.is_night(Some(false)));
        assert!(!Mode::Auto.is_night(Some(true)));
        assert!(!Mode::Auto.is_night(None));
        assert!(Mode::Night.is_night(Some(true)));
        assert!(!Mode::Day.is_night(Some(false)));
    }

    #[test]
    fn the_code_alone_toggles_and_a_digit_after_it_sets() {
        assert_eq!(parse_code("*28"), Some(Ok(None)));
        assert_eq!(parse_code("*280"), Some(Ok(Some(Mode::Auto))));
        assert_eq!(parse_code("*281"), Some(Ok(Some(Mode::Day))));
        assert_eq!(parse_code("*282"), Some(Ok(Some(Mode::Night))));
        assert_eq!(parse_code("*283"), Some(Err(())));
        assert_eq!(parse_code("*71"), None);
    }

    /// Business hours a test opens and closes.
    fn hours() -> (Arc<AtomicBool>, OpenFn) {
        let open = Arc::new(AtomicBool::new(true));
        let o = open.clone();
        (open, Arc::new(move || Some(o.load(Ordering::Relaxed))))
    }

    #[tokio::test]
    async fn the_position_survives_a_restart_and_junk_on_disk_means_auto() {
        let dir = tempfile::tempdir().unwrap();
        let (open, f) = hours();
        let sw = DayNight::load(dir.path(), f.clone());
        assert_eq!(sw.state().mode, Mode::Auto);
        let st = sw.toggle("test").await.unwrap();
        assert_eq!(
            st,
            State {
                mode: Mode::Night,
                night: true
            }
        );
        let again = DayNight::load(dir.path(), f.clone());
        assert_eq!(again.state().mode, Mode::Night);
        // Toggling at night gives day, even in auto outside the hours.
        open.store(false, Ordering::Relaxed);
        assert!(sw.set(Mode::Auto, "test").await.unwrap().night);
        assert_eq!(sw.toggle("test").await.unwrap().mode, Mode::Day);
        std::fs::write(dir.path().join(FILE), "dusk\n").unwrap();
        assert_eq!(DayNight::load(dir.path(), f).state().mode, Mode::Auto);
    }

    #[tokio::test]
    async fn subscribers_hear_when_the_hours_change_the_meaning_of_auto() {
        let dir = tempfile::tempdir().unwrap();
        let (open, f) = hours();
        let sw = DayNight::load(dir.path(), f);
        let mut rx = sw.subscribe();
        rx.mark_unchanged();
        sw.evaluate();
        assert!(!rx.has_changed().unwrap());
        open.store(false, Ordering::Relaxed);
        sw.evaluate();
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().night);
    }
}
