//! Small file-system helpers shared by the parts of the daemon that replace
//! files which must survive a power cut (the running config, lookup tables,
//! the imported identity).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Replaces `path` with `bytes` so that a power cut leaves the old file or
/// the new one, never a mix: a temporary file beside it, flushed, renamed
/// over it, and the directory flushed. With `mode` the file has those
/// permissions from the moment it exists (a private key is never readable
/// by others, not even for an instant); without, it keeps the permissions
/// of the file it replaces (a config may be kept private).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        if let Some(m) = mode {
            opts.mode(m);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        match mode {
            // The umask may have taken bits away.
            Some(m) => f.set_permissions(Permissions::from_mode(m))?,
            None => {
                if let Ok(meta) = fs::metadata(path) {
                    f.set_permissions(meta.permissions())?;
                }
            }
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Flushes a directory, so that a rename or removal in it survives a power
/// cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
