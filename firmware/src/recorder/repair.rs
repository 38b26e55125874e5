//! Start-up repair: whatever is in `recordings/.open/` was open when the
//! box died. Before any call is taken each file gets its header back from
//! its length and is kept (marked interrupted), removed (no audio) or moved
//! aside (not a recording); rows whose file reached its dated folder before
//! the crash are completed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::handle::StartReport;
use super::writer::Writer;
use super::{DIR, retention, seal, wav};
use crate::clock::Stamp;
use crate::store::{RecordingEnd, StoreMsg};

impl Writer {
    /// Repairs every recording the last run left open.
    pub(super) fn repair_all(&mut self, now: Stamp) -> StartReport {
        let mut report = StartReport::default();
        let dir = self.open_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("reading {}: {e}", dir.display());
                return report;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        // Every recording this pass deals with; their ends are queued, not
        // yet committed.
        let mut seen = HashSet::new();
        for path in paths {
            self.repair_one(&path, now, &mut report, &mut seen);
        }
        self.adopt_moved(now, &seen);
        self.send(StoreMsg::SweepOpenRecordings { at: now });
        self.retention(now);
        report
    }

    /// Repairs one file left open and finishes it: kept as interrupted,
    /// removed when it holds no audio, moved aside when it is not a
    /// recording. Its id goes into `seen`.
    fn repair_one(
        &mut self,
        path: &Path,
        now: Stamp,
        report: &mut StartReport,
        seen: &mut HashSet<String>,
    ) {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            return;
        };
        let parts: Vec<&str> = name.split('.').collect();
        let [id, call_id, kind, "wav"] = parts[..] else {
            tracing::warn!(file = %path.display(), "not a recording; left alone");
            return;
        };
        seen.insert(id.to_string());
        let kind: &'static str = if kind == "voicemail" {
            "voicemail"
        } else {
            "call"
        };
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now.wall_ms, |d| d.as_millis() as i64);
        let at = Stamp {
            wall_ms: mtime,
            mono_ms: 0,
            synced: false,
        };
        let mut end = RecordingEnd::new(id, call_id, kind, at, "interrupted");
        match wav::repair(path) {
            Ok(r) if r.data_len == 0 => {
                let _ = std::fs::remove_file(path);
                report.empty += 1;
                return;
            }
            Ok(r) => {
                tracing::warn!(
                    file = %path.display(),
                    duration_ms = r.duration_ms,
                    cut_bytes = r.truncated,
                    "recording left open by the last run repaired and kept"
                );
                end.format = r.format.name().into();
                end.channels = r.channels;
                end.duration_ms = r.duration_ms;
                end.error = Some("the box stopped while recording".into());
                report.repaired += 1;
            }
            Err(wav::RepairError::NoAudio { .. }) => {
                let _ = std::fs::remove_file(path);
                report.empty += 1;
                return;
            }
            Err(e @ wav::RepairError::NotWav { .. }) => {
                // Never delete what cannot be understood: move it
                // where a person can look at it.
                let damaged = self.data_dir.join(DIR).join("damaged");
                let _ = std::fs::create_dir_all(&damaged);
                let to = damaged.join(&name);
                let _ = std::fs::rename(path, &to);
                tracing::error!("{e}; moved to {}", to.display());
                end.state = "failed";
                end.file = format!("{DIR}/damaged/{name}");
                end.error = Some(e.to_string());
                report.damaged += 1;
                self.send(StoreMsg::RecordingFinished(end));
                return;
            }
            Err(e) => {
                tracing::error!("{e}; left for the next start-up");
                return;
            }
        }
        // Left open by the last run: sealed by the policy in force.
        let encrypt = self.cfg().recipients.clone();
        self.finalize(path, &mut end, encrypt.as_ref());
        self.send(StoreMsg::RecordingFinished(end));
    }

    /// Rows still `recording` whose file already reached its dated folder:
    /// the box stopped between moving the file and committing its end.
    /// They get the file's size and checksum (and length, unless sealed)
    /// instead of being swept as lost.
    fn adopt_moved(&mut self, now: Stamp, seen: &HashSet<String>) {
        let rows = match retention::open_rows(self) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("looking for recordings finished in a crash: {e}");
                return;
            }
        };
        for retention::OpenRow {
            id,
            call_id,
            kind,
            file,
            started_ms,
        } in rows
        {
            if seen.contains(&id) {
                continue;
            }
            let path = self.data_dir.join(&file);
            let Ok(d) = seal::digest(&path) else {
                continue;
            };
            let encrypted = file.ends_with(".age");
            let (format, channels, duration_ms) = if encrypted {
                (String::new(), 0, 0)
            } else {
                match wav::repair(&path) {
                    Ok(r) => (r.format.name().to_string(), r.channels, r.duration_ms),
                    Err(_) => (String::new(), 0, 0),
                }
            };
            tracing::warn!(recording = %id, file = %file, "recording finished before a crash; its record is completed now");
            self.send(StoreMsg::RecordingFinished(RecordingEnd {
                file,
                format,
                channels,
                started: Some(Stamp {
                    wall_ms: started_ms,
                    mono_ms: 0,
                    synced: false,
                }),
                size: d.size,
                duration_ms,
                sha256: Some(d.sha256),
                encrypted,
                error: Some(
                    "stored, but the box stopped before its record was completed (pauses unknown)"
                        .into(),
                ),
                ..RecordingEnd::new(&id, &call_id, &kind, now, "interrupted")
            }));
        }
    }
}
