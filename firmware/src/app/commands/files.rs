//! The running config on disk: what changed between two texts, what needs
//! a restart, writing a new file with the previous one kept, and the
//! version headquarters gave it.

use std::path::{Path, PathBuf};

use crate::config::SiteConfig;
use crate::fsutil::write_atomic;

/// Where the running config's version is kept, in the data directory.
pub const VERSION_FILE: &str = "config-version.json";

/// Top-level sections of a site config, in the order `applied` lists them.
const SECTIONS: [&str; 13] = [
    "site",
    "log",
    "hal",
    "storage",
    "line",
    "prompts",
    "inbound",
    "ivr",
    "outbound",
    "acd",
    "recording",
    "uplink",
    "console",
];

/// The top-level sections whose TOML differs, in [`SECTIONS`] order.
pub(super) fn sections_changed(old: &str, new: &str) -> Vec<&'static str> {
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (a, b) = (parse(old), parse(new));
    SECTIONS
        .into_iter()
        .filter(|s| a.get(*s) != b.get(*s))
        .collect()
}

/// Why `new` cannot replace `old` while the box runs (empty: it can).
pub(super) fn restart_reasons(old: &SiteConfig, new: &SiteConfig, changed: &[&str]) -> Vec<String> {
    let mut why: Vec<String> = [
        ("line", "[[line]]"),
        ("hal", "[hal]"),
        ("storage", "[storage]"),
        ("uplink", "[uplink]"),
        ("console", "[console]"),
    ]
    .into_iter()
    .filter(|(s, _)| changed.contains(s))
    .map(|(_, what)| format!("changing {what} needs a restart"))
    .collect();
    if old.site_id != new.site_id {
        why.push("changing [site] id needs a restart".into());
    }
    // The ACD actor and the lines' access to it are set up at start.
    if old.acd.is_some() != new.acd.is_some() {
        why.push("adding or removing [acd] needs a restart".into());
    }
    why
}

/// The directory relative paths in the config resolve against (as
/// [`TomlSource::base_dir`]).
pub(super) fn base_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `path` with `suffix` added to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes a new running config, keeping the previous one as `<file>.prev`.
pub(super) fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    // No change without a copy of the running file to roll back to: an
    // older `.prev` left by an earlier change would be the wrong one.
    let old = std::fs::read(path)?;
    write_atomic(&with_suffix(path, ".prev"), &old, None)?;
    write_atomic(path, text.as_bytes(), None)
}

/// Puts `<file>.prev` back as the running config.
pub(super) fn restore_config(path: &Path) -> std::io::Result<()> {
    let prev = std::fs::read(with_suffix(path, ".prev"))?;
    write_atomic(path, &prev, None)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VersionFile {
    version: u64,
    sha256: String,
}

/// The version headquarters gave the running config and the checksum it
/// had; `(0, None)` when it never set one.
pub(super) fn read_version(data_dir: &Path) -> (u64, Option<String>) {
    let path = data_dir.join(VERSION_FILE);
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, None),
        Err(e) => {
            tracing::error!("{}: {e}; reporting config version 0", path.display());
            (0, None)
        }
        Ok(b) => match serde_json::from_slice::<VersionFile>(&b) {
            Ok(v) => (v.version, Some(v.sha256)),
            Err(e) => {
                tracing::error!("{}: {e}; reporting config version 0", path.display());
                (0, None)
            }
        },
    }
}

pub(super) fn write_version(data_dir: &Path, version: u64, sha256: &str) -> std::io::Result<()> {
    let v = VersionFile {
        version,
        sha256: sha256.to_string(),
    };
    let bytes = serde_json::to_vec(&v).map_err(std::io::Error::other)?;
    write_atomic(&data_dir.join(VERSION_FILE), &bytes, None)
}

/// Where applied configs are kept, one file per version.
pub const HISTORY_DIR: &str = "config-history";
/// Versions kept in the history; older ones are removed.
const HISTORY_KEEP: usize = 50;

/// Keeps `text` as `version` in the history (best effort: a full disk
/// costs the history, never the change).
pub(super) fn keep_in_history(data_dir: &Path, version: u64, text: &str) {
    let dir = data_dir.join(HISTORY_DIR);
    let write = std::fs::create_dir_all(&dir).and_then(|()| {
        write_atomic(
            &dir.join(format!("{version:010}.toml")),
            text.as_bytes(),
            None,
        )
    });
    if let Err(e) = write {
        tracing::warn!(
            "config version {version} not kept in {}: {e}",
            dir.display()
        );
        return;
    }
    let mut all = versions(&dir);
    all.sort_unstable();
    let drop = all.len().saturating_sub(HISTORY_KEEP);
    for v in &all[..drop] {
        let _ = std::fs::remove_file(dir.join(format!("{v:010}.toml")));
    }
}

fn versions(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".toml")?.parse().ok()
        })
        .collect()
}

/// The kept versions, newest first: `{"version","bytes","at_ms"}`.
pub(super) fn history(data_dir: &Path) -> Vec<serde_json::Value> {
    let dir = data_dir.join(HISTORY_DIR);
    let mut all = versions(&dir);
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.into_iter()
        .filter_map(|v| {
            let m = std::fs::metadata(dir.join(format!("{v:010}.toml"))).ok()?;
            let at_ms = m
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_millis() as i64;
            Some(serde_json::json!({"version": v, "bytes": m.len(), "at_ms": at_ms}))
        })
        .collect()
}

/// A kept version's text.
pub(super) fn from_history(data_dir: &Path, version: u64) -> Option<String> {
    std::fs::read_to_string(
        data_dir
            .join(HISTORY_DIR)
            .join(format!("{version:010}.toml")),
    )
    .ok()
}
