//! Free space: recording stops before the card fills (the database needs
//! room to commit) and resumes once there is room again; when the disk is
//! about to fill the oldest recordings go first.

use std::sync::atomic::Ordering;

use super::writer::{Writer, end_early};
use super::{DIR, retention};
use crate::store::StoreMsg;

impl Writer {
    /// Stops new recordings; the `disk_full` alarm is raised when recording
    /// stops and cleared when it resumes (`stopped` is its state).
    pub(super) fn disk_full(&mut self, message: String) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            tracing::debug!(alarm = "disk_full", "{message}");
            return;
        }
        self.alarm(
            "disk_full",
            "critical",
            format!("{message}; recording stops"),
        );
    }

    /// Ends every open recording where it is (valid files, state failed):
    /// the disk has no room for more.
    fn stop_open(&mut self, why: &str) {
        for f in self.files.values_mut() {
            if f.wav.is_some() {
                tracing::warn!(file = %f.path.display(), "recording stopped: {why}");
                f.error = Some(format!("recording stopped: {why}"));
                end_early(f);
            }
        }
    }

    fn free_space(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(&self.data_dir.join(DIR)).ok()?;
        Some(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Stops or resumes recording by free space, and deletes the oldest
    /// recordings when the disk is about to fill.
    pub(super) fn check_space(&mut self) {
        self.since_space_check = 0;
        let Some(free) = self.free_space() else {
            return;
        };
        let min = self.cfg().min_free;
        if free < min {
            let now = self.clock.now();
            retention::emergency(self, now, min.saturating_sub(free));
        }
        let free = self.free_space().unwrap_or(free);
        if free < min {
            let why = format!(
                "{} free in {}, less than the {} kept free",
                human(free),
                self.data_dir.join(DIR).display(),
                human(min)
            );
            self.stop_open(&why);
            self.disk_full(why);
        } else if self.stopped.load(Ordering::Relaxed) && free >= min.saturating_add(min / 4) {
            self.stopped.store(false, Ordering::Relaxed);
            tracing::info!(alarm = "disk_full", "cleared");
            self.send(StoreMsg::AlarmCleared {
                at: self.clock.now(),
                code: "disk_full".into(),
            });
            tracing::info!(
                free = %human(free),
                "disk has room again; recording resumes"
            );
        }
    }
}

pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    // By kind too: errors re-worded on the way (sealing) lose the errno.
    e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
        || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}

/// How many bytes may be written between looks at the free space.
pub(super) fn space_check_every(min_free: u64) -> u64 {
    (min_free / 8).clamp(16 << 10, 4 << 20)
}

/// A size for people: KiB under a MiB, else MiB.
pub(crate) fn human(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
