//! Campaigns pushed from headquarters (`campaign.push`, docs/mqtt.md): a
//! definition (the `[campaign.NAME]` table as TOML, without `list`) and a
//! contact list (CSV or JSON lines) sent in chunks of whole lines, each
//! kept on disk as it arrives, so a push that breaks off resumes with the
//! chunks still missing.
//!
//! Under the data directory:
//!
//! ```text
//! campaigns/NAME/incoming/UPLOAD/K.part   chunks received so far
//! campaigns/NAME/UPLOAD/campaign.toml     an installed version
//! campaigns/NAME/UPLOAD/list.csv|.jsonl
//! campaigns/NAME/current                  the version in force (UPLOAD)
//! ```
//!
//! `UPLOAD` is the SHA-256 (hex) of the definition, a line `--`, and the
//! list, so a version is installed once however often it is pushed, and a
//! changed definition or list is a new version of the same campaign
//! (whose contacts keep where they stand).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fsutil::{sha256_hex, write_atomic};

/// Where pushed campaigns live in the data directory.
const DIR: &str = "campaigns";
/// Chunks in one push at most.
pub const MAX_CHUNKS: u64 = 4096;
/// Bytes of list in one push at most.
pub const MAX_LIST_BYTES: u64 = 64 << 20;
/// Contacts in one campaign at most.
pub const MAX_CONTACTS: usize = 100_000;
/// A definition's bytes at most.
pub const MAX_DEFINITION: usize = 64 << 10;

/// The list's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// `csv` or `jsonl`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    fn file(self) -> &'static str {
        match self {
            Format::Csv => "list.csv",
            Format::Jsonl => "list.jsonl",
        }
    }
}

/// The version of a campaign the box runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The campaign's name.
    pub name: String,
    /// The version (its upload id).
    pub upload: String,
    /// The definition as pushed.
    pub definition: String,
    /// The list file.
    pub list: PathBuf,
}

/// The upload id of a definition and a list.
pub fn upload_id(definition: &str, list: &[u8]) -> String {
    let mut all = Vec::with_capacity(definition.len() + list.len() + 4);
    all.extend_from_slice(definition.as_bytes());
    all.extend_from_slice(b"\n--\n");
    all.extend_from_slice(list);
    sha256_hex(&all)
}

/// Whether `s` is a campaign name (the config's rule).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `s` is an upload id.
pub fn valid_upload(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The pushed campaigns of a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `data_dir`.
    pub fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join(DIR),
        }
    }

    fn incoming(&self, name: &str, upload: &str) -> PathBuf {
        self.dir.join(name).join("incoming").join(upload)
    }

    /// The version of `name` in force, if any.
    pub fn current(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(name).join("current"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| valid_upload(s))
    }

    /// Keeps chunk `k` of `upload`; a chunk already kept is kept again
    /// (the same bytes, by the upload id). Another upload of the same
    /// campaign still incoming is dropped: only the newest resumes.
    pub fn keep_chunk(&self, name: &str, upload: &str, k: u64, data: &[u8]) -> std::io::Result<()> {
        let inc = self.dir.join(name).join("incoming");
        if let Ok(rd) = std::fs::read_dir(&inc) {
            for e in rd.flatten() {
                if e.file_name() != upload {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = self.incoming(name, upload);
        std::fs::create_dir_all(&dir)?;
        // The chunks on disk stay within what a whole list may weigh.
        let kept: u64 = std::fs::read_dir(&dir)?
            .flatten()
            .filter(|e| e.file_name() != format!("{k}.part").as_str())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if kept + data.len() as u64 > MAX_LIST_BYTES {
            return Err(std::io::Error::other(format!(
                "the chunks would weigh more than a list may ({MAX_LIST_BYTES} bytes)"
            )));
        }
        write_atomic(&dir.join(format!("{k}.part")), data, None)
    }

    /// The chunks of `upload` received so far.
    pub fn received(&self, name: &str, upload: &str) -> BTreeSet<u64> {
        std::fs::read_dir(self.incoming(name, upload))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".part")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The chunks of `upload`, in order, as one list.
    pub fn assemble(&self, name: &str, upload: &str, chunks: u64) -> std::io::Result<Vec<u8>> {
        let dir = self.incoming(name, upload);
        let mut all = Vec::new();
        for k in 0..chunks {
            all.extend(std::fs::read(dir.join(format!("{k}.part")))?);
        }
        Ok(all)
    }

    /// Writes version `upload` of `name` (not yet in force); its list
    /// file's path.
    pub fn stage(
        &self,
        name: &str,
        upload: &str,
        definition: &str,
        format: Format,
        list: &[u8],
    ) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(name).join(upload);
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("campaign.toml"), definition.as_bytes(), None)?;
        let path = dir.join(format.file());
        write_atomic(&path, list, None)?;
        Ok(path)
    }

    /// Puts staged version `upload` of `name` in force, then drops the
    /// others and what came in for it.
    pub fn commit(&self, name: &str, upload: &str) -> std::io::Result<()> {
        let dir = self.dir.join(name);
        write_atomic(&dir.join("current"), upload.as_bytes(), None)?;
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                if e.path().is_dir() && n != upload {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }

    /// Drops a staged version that did not check.
    pub fn discard(&self, name: &str, upload: &str) {
        if self.current(name).as_deref() != Some(upload) {
            let _ = std::fs::remove_dir_all(self.dir.join(name).join(upload));
        }
        let _ = std::fs::remove_dir_all(self.incoming(name, upload));
    }

    /// Every campaign's version in force, by name.
    pub fn installed(&self) -> Vec<Installed> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let upload = self.current(&name)?;
                let dir = self.dir.join(&name).join(&upload);
                let definition = std::fs::read_to_string(dir.join("campaign.toml")).ok()?;
                let list = [Format::Csv, Format::Jsonl]
                    .iter()
                    .map(|f| dir.join(f.file()))
                    .find(|p| p.is_file())?;
                Some(Installed {
                    name,
                    upload,
                    definition,
                    list,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_kept_assembled_and_a_version_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        let def = "number = \"1\"\n";
        let list = b"number\n1\n2\n";
        let up = upload_id(def, list);
        assert!(valid_upload(&up));
        s.keep_chunk("a", &up, 1, b"1\n2\n").unwrap();
        assert_eq!(s.received("a", &up), BTreeSet::from([1]));
        s.keep_chunk("a", &up, 0, b"number\n").unwrap();
        let all = s.assemble("a", &up, 2).unwrap();
        assert_eq!(all, list);
        let path = s.stage("a", &up, def, Format::Csv, &all).unwrap();
        assert!(s.installed().is_empty(), "staged is not in force");
        s.commit("a", &up).unwrap();
        assert_eq!(
            s.installed(),
            [Installed {
                name: "a".into(),
                upload: up.clone(),
                definition: def.into(),
                list: path
            }]
        );
        // A new upload drops the old one's leftovers once committed.
        let up2 = upload_id(def, b"number\n3\n");
        s.keep_chunk("a", &up2, 0, b"number\n3\n").unwrap();
        s.stage("a", &up2, def, Format::Jsonl, b"{\"number\":\"3\"}\n")
            .unwrap();
        s.commit("a", &up2).unwrap();
        let now = s.installed();
        assert_eq!(now[0].upload, up2);
        assert!(now[0].list.ends_with("list.jsonl"));
        assert!(!dir.path().join("campaigns/a").join(&up).exists());
        assert!(!dir.path().join("campaigns/a/incoming").join(&up2).exists());
    }
}
