//! Reassembly of recordings from `{b}/upload/{recording}` chunks.
//!
//! Each chunk is written at its offset into `<dir>/<box>/<id>.part` and the
//! byte ranges held are kept in the `uploads` table, so chunks may arrive
//! in any order, twice, or across collector restarts. `have` is the range
//! held contiguously from byte 0: what the box resends from after an
//! `ok:false`. Once the last chunk (the one with the file's SHA-256) has
//! arrived and every byte is held, the file is checked, renamed to
//! `<id>.wav` (`.wav.age` when sealed) and recorded in `recordings`; a
//! checksum mismatch deletes the part file so the upload starts over.
//!
//! The part file is written and synced inside the database transaction
//! that records its ranges, so the ranges never claim bytes not on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::store::{Recording, Upload};
use crate::wire::Chunk;

/// What a chunk led to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Stored; more is to come.
    Partial {
        /// Bytes held from the start.
        have: u64,
    },
    /// The recording is complete and checked.
    Complete {
        /// Bytes.
        size: u64,
        /// Where it is.
        file: PathBuf,
    },
    /// The last chunk again, for a recording already complete (the box
    /// did not get our ack): ack it again.
    AlreadyComplete,
    /// Another chunk of a recording already complete: acked again as
    /// well. The ack of its completion may never have gone out: a chunk
    /// that completed a recording in a group whose records then failed is
    /// taken again with the group, and is then one of these.
    Late,
    /// The last chunk arrived but bytes are missing.
    Missing {
        /// Bytes held from the start.
        have: u64,
        /// The file's size.
        size: u64,
    },
    /// Every byte arrived but the checksum is wrong; the part is deleted.
    ChecksumMismatch {
        /// From the last chunk.
        expected: String,
        /// Of the bytes received.
        got: String,
    },
    /// This recording id is stored already, from another box.
    OtherBox {
        /// The box it came from.
        box_id: String,
    },
}

/// A chunk's verdict and what the collector noticed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// What happened.
    pub verdict: Verdict,
    /// Things an operator should know (an upload started over…).
    pub notes: Vec<String>,
}

/// Why a stored recording could not be read.
#[derive(Debug)]
pub enum LoadError {
    /// Not (yet) stored at headquarters.
    NotStored,
    /// Sealed by the box and no identity was given to open it.
    NoIdentity,
    /// The database, the file or the decryption failed.
    Failed(String),
}

/// A recording the collectors stored: its WAV, decrypted with `identity`
/// when the box sealed it (in a private temporary directory, removed at
/// once). A relative path in the database is taken under `dir`.
pub fn load(
    db: &mut Db,
    dir: Option<&Path>,
    identity: Option<&Path>,
    id: &str,
) -> Result<Vec<u8>, LoadError> {
    let rows = db
        .query(
            "SELECT file, encrypted FROM recordings WHERE id = $1",
            &crate::params![id],
        )
        .map_err(|e| LoadError::Failed(format!("the database: {e:#}")))?;
    let Some(r) = rows.first() else {
        return Err(LoadError::NotStored);
    };
    let mut path = PathBuf::from(r[0].text().unwrap_or(""));
    if path.is_relative()
        && let Some(dir) = dir
    {
        path = dir.join(path);
    }
    if r[1].int().unwrap_or(0) == 0 {
        return fs::read(&path).map_err(|e| LoadError::Failed(format!("{}: {e}", path.display())));
    }
    let identity = identity.ok_or(LoadError::NoIdentity)?;
    let tmp = tempfile::tempdir().map_err(|e| LoadError::Failed(e.to_string()))?;
    let out = tmp.path().join("plain.wav");
    crate::decrypt::decrypt(identity, &path, Some(&out), true)
        .map_err(|e| LoadError::Failed(format!("{e:#}")))?;
    fs::read(&out).map_err(|e| LoadError::Failed(e.to_string()))
}

/// `<dir>/<box>/<id>.part`.
pub fn part_path(dir: &Path, box_id: &str, id: &str) -> PathBuf {
    dir.join(box_id).join(format!("{id}.part"))
}

/// Where a finished recording goes.
fn final_path(dir: &Path, box_id: &str, id: &str, encrypted: bool) -> PathBuf {
    let ext = if encrypted { "wav.age" } else { "wav" };
    dir.join(box_id).join(format!("{id}.{ext}"))
}

/// Takes one chunk (already parsed and checked against its topic).
pub fn receive(
    store: &mut Db,
    dir: &Path,
    site: &str,
    box_id: &str,
    c: &Chunk,
    now_ms: i64,
) -> Result<Received> {
    let mut tx = store.write()?;
    let mut notes = Vec::new();
    let done = |verdict, notes| Ok(Received { verdict, notes });

    // The upload first: with PostgreSQL this takes the recording's lock,
    // and only then is it known whether another collector finished the
    // recording meanwhile (checked before the lock, a chunk waiting on it
    // would start a fresh part file for a recording already stored).
    let upload = tx.upload(box_id, &c.id)?;
    if let Some(owner) = tx.recording_box(&c.id)? {
        if owner != box_id {
            return done(Verdict::OtherBox { box_id: owner }, notes);
        }
        let v = if c.last {
            Verdict::AlreadyComplete
        } else {
            Verdict::Late
        };
        return done(v, notes);
    }

    let part = part_path(dir, box_id, &c.id);
    let mut up = match upload {
        Some(u) if u.size != c.size => {
            notes.push(format!(
                "size changed from {} to {} bytes: starting over",
                u.size, c.size
            ));
            remove(&part)?;
            Upload::new(site, c.size, now_ms)
        }
        Some(mut u) if !u.ranges.is_empty() && !part.exists() => {
            notes.push(format!(
                "{} is gone: starting over from byte 0",
                part.display()
            ));
            u.ranges.clear();
            u
        }
        Some(u) => u,
        None => Upload::new(site, c.size, now_ms),
    };
    up.site = site.to_string();

    write_at(&part, c.offset, &c.data)?;
    if !c.data.is_empty() {
        add_range(&mut up.ranges, c.offset, c.offset + c.data.len() as u64);
    }
    if c.last {
        up.sha256.clone_from(&c.sha256);
        up.last_seen = true;
    }
    if c.meta.is_some() {
        up.meta.clone_from(&c.meta);
    }

    let verdict = if up.last_seen && up.have() == up.size {
        let expected = up.sha256.clone().unwrap_or_default();
        let got = sha256_file(&part, up.size)?;
        if got == expected {
            let meta = up.meta.clone().unwrap_or_default();
            let file = final_path(dir, box_id, &c.id, meta.encrypted);
            fs::rename(&part, &file)
                .with_context(|| format!("renaming {} to {}", part.display(), file.display()))?;
            sync_dir(&file)?;
            tx.insert_recording(
                &Recording {
                    site: site.to_string(),
                    box_id: box_id.to_string(),
                    id: c.id.clone(),
                    meta,
                    size: up.size,
                    sha256: got,
                    file: file.display().to_string(),
                },
                now_ms,
            )?;
            tx.delete_upload(box_id, &c.id)?;
            tx.commit()?;
            return done(
                Verdict::Complete {
                    size: up.size,
                    file,
                },
                notes,
            );
        }
        remove(&part)?;
        let meta = up.meta.take();
        up = Upload::new(site, up.size, now_ms);
        up.meta = meta;
        Verdict::ChecksumMismatch { expected, got }
    } else if c.last {
        Verdict::Missing {
            have: up.have(),
            size: up.size,
        }
    } else {
        Verdict::Partial { have: up.have() }
    };
    tx.save_upload(box_id, &c.id, &up, now_ms)?;
    tx.commit()?;
    done(verdict, notes)
}

/// Adds `[start, end)` to sorted, merged `ranges`, merging what touches.
pub fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *ranges = merged;
}

/// Writes `data` at `offset` of `path` (created with its directory) and
/// syncs it.
fn write_at(path: &Path, offset: u64, data: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all_at(data, offset)
        .and_then(|()| f.sync_data())
        .with_context(|| format!("writing {}", path.display()))
}

/// SHA-256 of the first `size` bytes of `path` (cutting anything after,
/// left by an earlier attempt), lower-case hex.
fn sha256_file(path: &Path, size: u64) -> Result<String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    if len > size {
        f.set_len(size)?;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut reader = f.take(size);
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Makes a rename durable.
fn sync_dir(file: &Path) -> Result<()> {
    if let Some(dir) = file.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::wire::Meta;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        store: Db,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("recordings");
        let store = Db::Sqlite(Store::open(&dir.path().join("hq.db")).unwrap());
        Fixture {
            _dir: dir,
            root,
            store,
        }
    }

    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// The chunks of `data`, `size` bytes each, as the box sends them.
    fn chunks(id: &str, data: &[u8], size: usize, encrypted: bool) -> Vec<Chunk> {
        let sha = hex(&Sha256::digest(data));
        let n = data.len().div_ceil(size).max(1);
        (0..n)
            .map(|i| {
                let start = i * size;
                let end = (start + size).min(data.len());
                let last = i == n - 1;
                Chunk {
                    id: id.into(),
                    offset: start as u64,
                    size: data.len() as u64,
                    data: data[start..end].to_vec(),
                    last,
                    sha256: last.then(|| sha.clone()),
                    meta: Some(Meta {
                        call_id: Some("c1".into()),
                        encrypted,
                        ..Meta::default()
                    }),
                }
            })
            .collect()
    }

    impl Fixture {
        fn send(&mut self, c: &Chunk) -> Verdict {
            receive(&mut self.store, &self.root, "s", "b", c, 1)
                .unwrap()
                .verdict
        }
    }

    #[test]
    fn chunks_out_of_order_reassemble_once_the_gap_fills() {
        let mut f = fixture();
        let data = file(10_000);
        let cs = chunks("R1", &data, 3000, false);
        assert_eq!(f.send(&cs[0]), Verdict::Partial { have: 3000 });
        assert_eq!(f.send(&cs[2]), Verdict::Partial { have: 3000 });
        // The last chunk before chunk 1: bytes are missing, resend from 3000.
        assert_eq!(
            f.send(&cs[3]),
            Verdict::Missing {
                have: 3000,
                size: 10_000
            }
        );
        let done = f.send(&cs[1]);
        let path = f.root.join("b").join("R1.wav");
        assert_eq!(
            done,
            Verdict::Complete {
                size: 10_000,
                file: path.clone()
            }
        );
        assert_eq!(fs::read(&path).unwrap(), data);
        assert!(!part_path(&f.root, "b", "R1").exists());
    }

    #[test]
    fn duplicate_chunks_are_harmless_and_a_repeated_last_chunk_is_acked_again() {
        let mut f = fixture();
        let data = file(5000);
        let cs = chunks("R2", &data, 2000, true);
        f.send(&cs[0]);
        f.send(&cs[0]);
        f.send(&cs[1]);
        f.send(&cs[1]);
        assert!(matches!(f.send(&cs[2]), Verdict::Complete { .. }));
        assert_eq!(f.send(&cs[2]), Verdict::AlreadyComplete);
        assert_eq!(f.send(&cs[0]), Verdict::Late);
        let sealed = f.root.join("b").join("R2.wav.age");
        assert_eq!(fs::read(sealed).unwrap(), data);
    }

    #[test]
    fn checksum_mismatch_deletes_the_part_and_starts_over_from_zero() {
        let mut f = fixture();
        let data = file(4000);
        let mut cs = chunks("R3", &data, 2000, false);
        let mut bad = cs[0].clone();
        bad.data[7] ^= 0xff;
        f.send(&bad);
        let v = f.send(&cs[1]);
        assert!(matches!(v, Verdict::ChecksumMismatch { .. }), "{v:?}");
        assert!(!part_path(&f.root, "b", "R3").exists());
        // The box resends from have = 0.
        assert_eq!(f.send(&cs[0]), Verdict::Partial { have: 2000 });
        cs[1].meta = None;
        assert!(matches!(f.send(&cs[1]), Verdict::Complete { .. }));
        assert_eq!(fs::read(f.root.join("b").join("R3.wav")).unwrap(), data);
    }

    #[test]
    fn a_vanished_part_file_restarts_the_upload() {
        let mut f = fixture();
        let data = file(4000);
        let cs = chunks("R4", &data, 1000, false);
        f.send(&cs[0]);
        f.send(&cs[1]);
        fs::remove_file(part_path(&f.root, "b", "R4")).unwrap();
        let r = receive(&mut f.store, &f.root, "s", "b", &cs[2], 1).unwrap();
        assert_eq!(r.verdict, Verdict::Partial { have: 0 });
        assert!(r.notes[0].contains("starting over"), "{:?}", r.notes);
    }

    #[test]
    fn an_empty_recording_completes_with_its_single_chunk() {
        let mut f = fixture();
        let cs = chunks("R5", &[], 1000, false);
        assert_eq!(cs.len(), 1);
        assert!(matches!(f.send(&cs[0]), Verdict::Complete { size: 0, .. }));
    }

    #[test]
    fn a_recording_id_of_another_box_is_not_taken_for_ours() {
        let mut f = fixture();
        let cs = chunks("R6", &file(10), 100, false);
        f.send(&cs[0]);
        let r = receive(&mut f.store, &f.root, "s", "other", &cs[0], 1).unwrap();
        assert_eq!(r.verdict, Verdict::OtherBox { box_id: "b".into() });
    }

    #[test]
    fn ranges_merge_when_they_touch_or_overlap() {
        let mut r = Vec::new();
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        assert_eq!(r, [(10, 20), (30, 40)]);
        add_range(&mut r, 0, 10);
        add_range(&mut r, 15, 32);
        assert_eq!(r, [(0, 40)]);
        add_range(&mut r, 5, 6);
        assert_eq!(r, [(0, 40)]);
    }
}
