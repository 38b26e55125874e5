//! Getting recordings onto the card: every `sync_every` the writer
//! rewrites the headers of files that grew and asks for one `syncfs`, which
//! runs on a thread of its own so the writer keeps taking audio meanwhile.

use std::path::{Path, PathBuf};
use std::sync::mpsc as smpsc;

use super::writer::Writer;

impl Writer {
    pub(super) fn sync_round(&mut self) {
        if self.dirty {
            self.dirty = false;
            self.sync_files();
        }
        // Also when idle: a box that stopped recording for lack of space
        // must notice when there is room again.
        self.check_space();
    }

    fn sync_files(&mut self) {
        for f in self.files.values_mut() {
            if let Some(w) = f.wav.as_mut()
                && f.since_header > 0
            {
                f.since_header = 0;
                let _ = w.update_header();
            }
        }
        // One syncfs flushes every open recording at once, instead of an
        // fsync per file. It runs on its own thread: an SD card can take
        // seconds over it, and the writer must keep taking audio meanwhile.
        // A sync already waiting covers this round too.
        match &self.syncer {
            Some(t) => {
                let _ = t.try_send(());
            }
            None => syncfs(&self.open_dir()),
        }
    }
}

fn syncfs(dir: &Path) {
    match std::fs::File::open(dir) {
        Ok(d) => {
            if let Err(e) = nix::unistd::syncfs(&d) {
                tracing::warn!("syncing recordings: {e}");
            }
        }
        Err(e) => tracing::warn!("syncing recordings: {e}"),
    }
}

/// The thread that flushes the recordings' filesystem when asked; it ends
/// when the writer drops its sender.
pub(super) fn spawn_syncer(dir: PathBuf) -> Option<smpsc::SyncSender<()>> {
    let (tx, rx) = smpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("recorder-sync".into())
        .spawn(move || {
            crate::priority::background();
            while rx.recv().is_ok() {
                syncfs(&dir);
            }
        })
        .ok()?;
    Some(tx)
}

pub(super) fn sync_dir(dir: Option<&Path>) -> std::io::Result<()> {
    match dir {
        Some(d) => std::fs::File::open(d)?.sync_all(),
        None => Ok(()),
    }
}
