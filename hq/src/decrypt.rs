//! Decrypting sealed recordings (`*.wav.age`) with headquarters' identities.
//!
//! The plaintext is written to `<output>.part` and renamed to the output only
//! once the whole file has decrypted and authenticated, so a truncated or
//! tampered recording never leaves a partial WAV behind (age authenticates
//! each 64 KiB chunk, and the last one marks the end of the file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::keys;

const MAGIC: &[u8] = b"age-encryption.org/";
const ARMOR_BEGIN: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// Decrypts `input` with the identities in `identity` to `output` (default:
/// `input` without its `.age` suffix) and returns the output path. An existing
/// output is replaced only if `force`.
pub fn decrypt(
    identity: &Path,
    input: &Path,
    output: Option<&Path>,
    force: bool,
) -> Result<PathBuf> {
    let output = match output {
        Some(o) => o.to_owned(),
        None => default_output(input)?,
    };
    if !force && fs::symlink_metadata(&output).is_ok() {
        bail!(
            "{}: already exists; refusing to overwrite it (use --force)",
            output.display()
        );
    }
    let ids = keys::identities(identity)?;

    let mut file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    check_magic(&mut file, input)?;
    let decryptor = age::Decryptor::new_buffered(BufReader::new(file)).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::Io(_) => {
            anyhow!(
                "{}: not an age file (invalid or truncated header)",
                input.display()
            )
        }
        age::DecryptError::UnknownFormat => {
            anyhow!("{}: unknown age format version", input.display())
        }
        e => anyhow!("{}: {e}", input.display()),
    })?;
    if decryptor.is_scrypt() {
        bail!(
            "{}: encrypted with a passphrase, not to an identity; use `age -d`",
            input.display()
        );
    }
    let mut plain = decryptor
        .decrypt(ids.iter().map(|i| i.as_ref()))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => anyhow!(
                "no identity in {} matches {}",
                identity.display(),
                input.display()
            ),
            e => anyhow!("{}: {e}", input.display()),
        })?;

    let part = part_path(&output);
    let result = write_part(&mut plain, input, &part).and_then(|()| {
        fs::rename(&part, &output)
            .with_context(|| format!("renaming {} to {}", part.display(), output.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result.map(|()| output)
}

/// `input` without `.age`; an error if it has no such suffix.
fn default_output(input: &Path) -> Result<PathBuf> {
    match input.file_name().and_then(|n| n.to_str()) {
        Some(name) if name.len() > ".age".len() && name.ends_with(".age") => {
            Ok(input.with_file_name(&name[..name.len() - ".age".len()]))
        }
        _ => bail!(
            "{}: name does not end in .age; give the output with -o",
            input.display()
        ),
    }
}

fn part_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Refuses anything that does not start like a binary age file, before the
/// header parser reads it line by line.
fn check_magic(file: &mut File, input: &Path) -> Result<()> {
    let mut head = Vec::with_capacity(ARMOR_BEGIN.len());
    Read::by_ref(file)
        .take(ARMOR_BEGIN.len() as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", input.display()))?;
    if head.starts_with(ARMOR_BEGIN) {
        bail!(
            "{}: ASCII-armored age file; not supported, use `age -d`",
            input.display()
        );
    }
    if !head.starts_with(MAGIC) {
        bail!("{}: not an age file", input.display());
    }
    file.rewind()
        .with_context(|| format!("reading {}", input.display()))?;
    Ok(())
}

fn write_part(plain: &mut impl Read, input: &Path, part: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(part)
        .with_context(|| format!("creating {}", part.display()))?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match plain.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => bail!(
                "{}: decryption failed, file truncated or damaged: {e}",
                input.display()
            ),
        };
        out.write_all(&buf[..n])
            .with_context(|| format!("writing {}", part.display()))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| anyhow!(e.into_error()).context(format!("writing {}", part.display())))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", part.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_strips_age_suffix() {
        assert_eq!(
            default_output(Path::new("/rec/2026/call-1.wav.age")).unwrap(),
            Path::new("/rec/2026/call-1.wav")
        );
        assert_eq!(
            default_output(Path::new("call.age")).unwrap(),
            Path::new("call")
        );
    }

    #[test]
    fn default_output_needs_age_suffix() {
        for input in ["call.wav", ".age", "/rec/"] {
            let err = default_output(Path::new(input)).unwrap_err().to_string();
            assert!(err.contains("does not end in .age"), "{input}: {err}");
        }
    }
}
