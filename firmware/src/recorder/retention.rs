//! Retention: recordings older than `keep` and beyond `quota` are deleted,
//! oldest first; when free space drops under `min_free`, the oldest go
//! whatever their state, with an alarm and a note on each record.
//!
//! A recording headquarters has not confirmed is kept by age and quota
//! rules while a fleet link is configured
//! ([`RecordingConfig::require_delivery`](super::config::RecordingConfig::require_delivery));
//! only the free-space emergency deletes it. Deleted recordings keep their row, with
//! when and why.

use super::Writer;
use crate::clock::Stamp;
use crate::store::{ReadOnly, RecordingFile, StoreError, StoreMsg};

/// A row the store still has as `recording`.
pub(super) use crate::store::OpenRecording as OpenRow;

/// Stored recordings, oldest first, as the store has committed them.
fn rows(w: &Writer) -> Result<Vec<RecordingFile>, StoreError> {
    let rows = ReadOnly::open(&w.data_dir)?.finished_recordings()?;
    Ok(rows
        .into_iter()
        .filter(|r| !w.deleted.contains(&r.id))
        .collect())
}

/// Rows the store still has as `recording` (only meaningful at start-up,
/// before any new recording).
pub(super) fn open_rows(w: &Writer) -> Result<Vec<OpenRow>, StoreError> {
    ReadOnly::open(&w.data_dir)?.open_recordings()
}

fn delete(w: &mut Writer, row: &RecordingFile, now: Stamp, reason: String) {
    let path = w.data_dir.join(&row.file);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!("deleting {}: {e}", path.display());
            return;
        }
    }
    tracing::info!(recording = %row.id, file = %row.file, %reason, "recording deleted");
    w.deleted.insert(row.id.clone());
    w.send(StoreMsg::RecordingDeleted {
        id: row.id.clone(),
        at: now,
        reason,
    });
}

/// Finished recordings in the dated folders, by file (id and start time
/// from the name); nothing headquarters confirmed is known this way.
fn on_disk(w: &Writer) -> Vec<RecordingFile> {
    let base = w.data_dir.join(super::DIR);
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(&base) else {
        return out;
    };
    for day in days.flatten() {
        let name = day.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "damaged" {
            continue;
        }
        let Ok(files) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for f in files.flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            let Some(id) = file.split('.').next().filter(|_| file.contains(".wav")) else {
                continue;
            };
            if w.deleted.contains(id) {
                continue;
            }
            let Ok(meta) = f.metadata() else {
                continue;
            };
            // Recording ids are UUIDv7 taken from the box's clock when the
            // recording started: the same time base as the rows.
            let started_ms = uuid::Uuid::parse_str(id)
                .ok()
                .and_then(|u| u.get_timestamp())
                .map_or(0, |t| {
                    let (secs, nanos) = t.to_unix();
                    secs as i64 * 1000 + i64::from(nanos / 1_000_000)
                });
            out.push(RecordingFile {
                id: id.to_string(),
                file: format!("{}/{name}/{file}", super::DIR),
                size: meta.len(),
                started_ms,
                delivered: false,
            });
        }
    }
    out
}

/// Applies `keep` and `quota`.
pub(super) fn apply(w: &mut Writer, now: Stamp) {
    let cfg = w.cfg();
    let (keep, quota) = (cfg.keep, cfg.quota);
    if keep.is_none() && quota.is_none() {
        return;
    }
    // Recordings just finished were reported to the store by this thread;
    // wait until they are committed so the rules see them.
    let (tx, rx) = tokio::sync::oneshot::channel();
    w.send(StoreMsg::Flush(tx));
    // Never wait on a store that is itself waiting (for space this thread
    // frees, or for room in its queue): the rules then see a little less.
    // In short steps, giving up as soon as the store reports trouble:
    // it may fail on this very batch.
    if w.backlog.is_empty() {
        let mut rx = rx;
        loop {
            match rx.try_recv() {
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
                    if !w.store.disk_trouble() =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => break,
            }
        }
    }
    let rows = match rows(w) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("retention: {e}");
            return;
        }
    };
    let deletable = |r: &RecordingFile| r.delivered || !cfg.require_delivery;
    let mut total: u64 = rows.iter().map(|r| r.size).sum();
    for r in &rows {
        let old = keep.is_some_and(|k| now.wall_ms - r.started_ms > k.as_millis() as i64);
        let over = quota.is_some_and(|q| total > q);
        if !(old || over) || !deletable(r) {
            continue;
        }
        let reason = if old {
            format!(
                "older than {}",
                humantime::format_duration(keep.unwrap_or_default())
            )
        } else {
            format!(
                "recordings over the {} quota",
                super::human(quota.unwrap_or_default())
            )
        };
        delete(w, r, now, reason);
        total = total.saturating_sub(r.size);
    }
}

/// The disk is about to fill: frees at least `need` bytes (and a quarter of
/// `min_free` more, so the box does not flap at the edge), oldest first,
/// delivered or not, and raises an alarm saying so.
pub(super) fn emergency(w: &mut Writer, now: Stamp, need: u64) {
    let mut rows = match rows(w) {
        Ok(r) => r,
        Err(e) => {
            // A full disk may be why: the files themselves still say what
            // there is.
            tracing::error!("freeing space: {e}");
            Vec::new()
        }
    };
    // Finished files whose rows the store has not committed (it may be
    // the one waiting for space) count too: the disk is the truth here.
    let known: std::collections::HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
    rows.extend(on_disk(w).into_iter().filter(|r| !known.contains(&r.id)));
    rows.sort_by_key(|r| r.started_ms);
    let target = need.saturating_add(w.cfg().min_free / 4);
    let mut freed = 0u64;
    let mut n = 0usize;
    // Delivered ones first: they are safe at headquarters.
    let order = rows
        .iter()
        .filter(|r| r.delivered)
        .chain(rows.iter().filter(|r| !r.delivered));
    let mut victims = Vec::new();
    for r in order {
        if freed >= target {
            break;
        }
        freed += r.size;
        victims.push(r);
    }
    for r in victims {
        let reason = if r.delivered {
            "disk nearly full".to_string()
        } else {
            "disk nearly full; deleted before headquarters had it".to_string()
        };
        delete(w, r, now, reason);
        n += 1;
    }
    if n > 0 {
        // Each emergency is its own alarm: headquarters must see every
        // deletion of recordings it may not have.
        let message = format!(
            "disk nearly full: deleted the {n} oldest recording(s), {}",
            super::human(freed)
        );
        tracing::error!(alarm = "recordings_deleted", "{message}");
        w.send(StoreMsg::Alarm {
            at: now,
            code: "recordings_deleted".into(),
            severity: "critical",
            message,
        });
    }
}
