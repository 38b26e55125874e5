//! [`CommandError`]: why a command from headquarters was refused or failed.
//! Its text is the `error` of the answer headquarters gets (the fleet link
//! sends it as it is); the ACD's and outbound calls' own errors come
//! through unchanged.

use std::path::{Path, PathBuf};

use callbox_hal::diag::Diagnostics;

use super::KNOWN;
use super::args::ArgError;
use super::tables::RowError;
use crate::acd::AcdError;
use crate::calls::outbound::OriginateError;

/// Why a command did not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A field of `args` is missing or of the wrong type.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// The daemon is stopping: its command actor is gone.
    #[error("the box is stopping")]
    Stopping,
    /// `status` reached the daemon's handler (the link answers it).
    #[error("`status` is answered by the fleet link itself")]
    StatusElsewhere,
    /// No such command.
    #[error("unknown command `{cmd}`; known: {KNOWN}")]
    Unknown {
        /// The command's name (clipped).
        cmd: String,
    },
    /// A command the handler answers itself reached the actor.
    #[error("`{cmd}` is not the daemon's to answer")]
    NotTheDaemons {
        /// The command's name (clipped).
        cmd: String,
    },

    /// `agent` on a box without `[acd]`.
    #[error("this box has no agents (no [acd] in its config)")]
    NoAcd,
    /// `agent` names an agent the config does not have.
    #[error("no agent `{agent}`")]
    NoAgent {
        /// The agent's id.
        agent: String,
    },
    /// `login` without a station, for an agent without a home station.
    #[error("`station` is missing and agent `{agent}` has no home station")]
    NoHomeStation {
        /// The agent's id.
        agent: String,
    },
    /// `action` is none of the agent actions.
    #[error("`action` must be login, logout, pause, unpause or dnd, not `{action}`")]
    BadAction {
        /// The action asked for (clipped).
        action: String,
    },
    /// The ACD refused (or has stopped).
    #[error(transparent)]
    Acd(#[from] AcdError),

    /// `originate` to something that is not a number.
    #[error("`number` `{number}` is not a number that can be dialled (1-32 of 0-9 * # A-D)")]
    NotDiallable {
        /// The number (clipped).
        number: String,
    },
    /// `daynight` with a mode that is none of auto, day, night.
    #[error("`mode` must be \"auto\", \"day\" or \"night\", not `{mode}`")]
    BadDayNight {
        /// The mode asked for (clipped).
        mode: String,
    },
    /// `campaign` names no campaign the box runs.
    #[error("no campaign `{name}` on this box")]
    UnknownCampaign {
        /// The name asked for (clipped).
        name: String,
    },
    /// `campaign` with an action that is none of pause, resume, stop.
    #[error("`action` must be \"pause\", \"resume\" or \"stop\", not `{action}`")]
    BadCampaignAction {
        /// The action asked for (clipped).
        action: String,
    },
    /// `campaign.push` refused, with why.
    #[error("campaign.push: {0}")]
    Push(String),
    /// A campaign's control could not be written to disk (nothing changed).
    #[error("the campaign's control could not be kept on disk: {reason}")]
    CampaignNotKept {
        /// The I/O error.
        reason: String,
    },
    /// The day/night switch could not keep its position.
    #[error(transparent)]
    DayNight(#[from] crate::daynight::SaveError),

    /// `originate` on a box without `[ivr]`.
    #[error("this box has no IVR (no [ivr] in its config)")]
    NoIvr,
    /// `originate` to a node the IVR does not have.
    #[error("no IVR node `{node}`")]
    NoNode {
        /// The node (clipped).
        node: String,
    },
    /// The call could not be placed.
    #[error(transparent)]
    Originate(#[from] OriginateError),
    /// A click-to-call could not start.
    #[error(transparent)]
    ClickToCall(#[from] crate::calls::station::ClickError),
    /// A supervisor's join refused.
    #[error(transparent)]
    Supervise(#[from] crate::calls::station::SuperviseError),

    /// `config.set` with a version not above the running one.
    #[error("version {version} is not above the running version {running}")]
    StaleVersion {
        /// The version sent.
        version: u64,
        /// The running config's version.
        running: u64,
    },
    /// The change needs a restart and `restart` was not set.
    #[error(
        "{}: send it again with \"restart\": true to restart the box with it (calls in progress are ended)",
        .reasons.join("; ")
    )]
    NeedsRestart {
        /// What needs it (`changing [[line]] needs a restart`).
        reasons: Vec<String>,
    },
    /// `config.get` asked for a version the history does not hold.
    #[error(
        "config version {version} is not in the box's history (the newest 50 applied versions are kept)"
    )]
    NoSuchVersion {
        /// The version asked for.
        version: u64,
    },
    /// The new config does not check out: check-config's lines.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
    /// Checking the config did not finish (its task panicked).
    #[error("checking the config failed: {0}")]
    CheckFailed(#[source] tokio::task::JoinError),
    /// The ACD cannot take the new config now.
    #[error("[acd] cannot change now: {0}")]
    AcdRefused(#[source] AcdError),
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The running config's version could not be recorded.
    #[error("recording the config version: {0}")]
    RecordVersion(#[source] std::io::Error),
    /// A change that failed before anything was put in force.
    #[error("{0}; nothing changed")]
    NothingChanged(Box<CommandError>),
    /// A change failed half-way and was undone.
    #[error(
        "{cause}; the previous config is back in force{}",
        not_put_back(.config, .restore.as_ref())
    )]
    RolledBack {
        /// What failed.
        cause: Box<CommandError>,
        /// The running config's file.
        config: PathBuf,
        /// Why the previous file could not be put back, if it could not.
        restore: Option<std::io::Error>,
    },

    /// `lookup.update` with a `mode` other than replace or merge.
    #[error("`mode` must be \"replace\" or \"merge\", not `{mode}`")]
    BadMode {
        /// The mode (clipped).
        mode: String,
    },
    /// `lookup.update` of a table kind that does not exist.
    #[error(
        "no lookup table `{table}`; tables are products, regions, orders, contacts and lists.NAME (a list under [ivr.lists])"
    )]
    NoTable {
        /// The table (clipped).
        table: String,
    },
    /// The config has no file for this table.
    #[error("the config names no `{table}` table under [ivr.lookups]; add one with config.set")]
    TableNotInConfig {
        /// The table.
        table: String,
    },
    /// `lookup.update` of a number list the config does not have.
    #[error("no list `{name}` under [ivr.lists] in the config; add it with config.set")]
    NoList {
        /// The list (clipped).
        name: String,
    },
    /// A row sent with `lookup.update` is wrong.
    #[error("rows[{index}]: {why}")]
    Row {
        /// Its index in `rows`.
        index: usize,
        /// What is wrong with it.
        why: RowError,
    },
    /// An update failed and the table file it had rewritten could not be
    /// put back.
    #[error("{cause} (and the previous table could not be put back: {source})")]
    TableNotPutBack {
        /// What failed.
        cause: Box<CommandError>,
        /// Why the table could not be put back.
        source: std::io::Error,
    },
}

/// What a rolled-back change says when the previous file could not be put
/// back either (nothing when it was).
pub(super) fn not_put_back(config: &Path, restore: Option<&std::io::Error>) -> String {
    match restore {
        None => String::new(),
        Some(e) => format!(" (but {} could not be put back: {e})", config.display()),
    }
}
