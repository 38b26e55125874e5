//! Headquarters' age identities: the private half of the recording keys.
//!
//! Boxes encrypt recordings to X25519 public keys (`age1…`); the matching
//! identities (`AGE-SECRET-KEY-1…`) live only at headquarters, in files in the
//! standard age identity-file format, so `callbox-hq` and the `age` CLI can
//! both use them:
//!
//! ```text
//! # created: 2026-01-01T12:00:00Z
//! # public key: age1…
//! AGE-SECRET-KEY-1…
//! ```
//!
//! Identity files are parsed with [`age::IdentityFile`]; every error names the
//! file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::ExposeSecret;
use anyhow::{Context, Result, anyhow, bail};

/// Generates an identity and writes it to `out` (mode 0600, never over an
/// existing file). Returns its public key, the `age1…` string for the boxes'
/// config.
pub fn keygen(out: &Path) -> Result<age::x25519::Recipient> {
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                anyhow!(
                    "{}: already exists; refusing to overwrite it",
                    out.display()
                )
            }
            _ => anyhow!(e).context(format!("creating {}", out.display())),
        })?;
    // Written straight to the file so the secret is not copied into another
    // buffer that outlives `identity`.
    let written = write!(
        file,
        "# created: {}\n# public key: {public}\n{}\n",
        rfc3339_utc(SystemTime::now()),
        identity.to_string().expose_secret(),
    )
    .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // A half-written identity is useless; let the next attempt create it.
        let _ = fs::remove_file(out);
        return Err(anyhow!(e).context(format!("writing {}", out.display())));
    }
    Ok(public)
}

/// The public keys (`age1…`) of the identities in the file at `path`.
pub fn public_keys(path: &Path) -> Result<Vec<String>> {
    let file = read(path)?;
    let mut out = vec![];
    file.write_recipients_file(&mut out).map_err(|e| match e {
        age::IdentityFileConvertError::NoIdentities { .. } => {
            anyhow!("no identity in {}", path.display())
        }
        e => anyhow!("{}: {e}", path.display()),
    })?;
    let out = String::from_utf8(out).context("age wrote a non-UTF-8 public key")?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// The identities in the file at `path`; an error if there are none.
pub fn identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let ids = read(path)?
        .into_identities()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if ids.is_empty() {
        bail!("no identity in {}", path.display());
    }
    Ok(ids)
}

fn read(path: &Path) -> Result<age::IdentityFile<age::NoCallbacks>> {
    let file =
        File::open(path).with_context(|| format!("opening identity file {}", path.display()))?;
    age::IdentityFile::from_buffer(BufReader::new(file)).map_err(|e| {
        if looks_encrypted(path) {
            anyhow!(
                "{}: passphrase-protected identity files are not supported; decrypt it with `age -d` first",
                path.display()
            )
        } else {
            anyhow!("{}: {e}", path.display())
        }
    })
}

/// Whether the file starts like an age file (an identity file encrypted with
/// `age -p`, which `age` can read and this tool cannot).
fn looks_encrypted(path: &Path) -> bool {
    fs::read(path).is_ok_and(|data| {
        data.starts_with(b"age-encryption.org/")
            || data.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    })
}

/// `t` as RFC 3339 in UTC with whole seconds (`2026-01-01T12:00:00Z`), as
/// `age-keygen` writes it on a UTC machine.
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm,
    // restricted to dates after the epoch).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> String {
        rfc3339_utc(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn rfc3339_utc_formats_known_instants() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(1_790_000_000), "2026-09-21T14:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn identity_file_with_only_comments_has_no_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.key");
        fs::write(&path, "# nothing here\n\n").unwrap();

        let err = identities(&path).err().unwrap().to_string();

        assert_eq!(err, format!("no identity in {}", path.display()));
        let err = public_keys(&path).unwrap_err().to_string();
        assert_eq!(err, format!("no identity in {}", path.display()));
    }

    #[test]
    fn identity_file_with_garbage_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "# comment\nnot a key\n").unwrap();

        let err = identities(&path).err().unwrap().to_string();

        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
