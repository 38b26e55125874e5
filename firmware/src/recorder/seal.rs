//! Sealing recordings: encryption at rest to headquarters' public keys.
//!
//! A finished recording is encrypted with the [age] format to one or more
//! X25519 recipients (`age1…` strings from the config). The box holds only
//! these public keys, so nothing on it can decrypt a sealed recording;
//! headquarters decrypts with `callbox-hq decrypt` or the standard `age` CLI.
//!
//! [`seal`] writes the ciphertext to `<dst>.tmp`, fsyncs it, renames it to
//! `dst` and fsyncs the directory, so after a power cut `dst` is either absent
//! or complete. It hashes the ciphertext while writing and returns its
//! [`Digest`], which the store and the upload keep to detect a damaged or
//! truncated copy. The plaintext `src` is left in place: the caller removes it
//! once the digest is recorded.
//!
//! [age]: https://age-encryption.org/v1

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Mode of a sealed recording: the recorder writes it, the uploader's group
/// reads it.
const SEALED_MODE: u32 = 0o640;
/// Read buffer for hashing and encrypting; also age's chunk size.
const BUF_SIZE: usize = 64 * 1024;

/// Headquarters' public keys recordings are encrypted to.
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl Recipients {
    /// Parses `age1…` strings (surrounding whitespace is ignored).
    ///
    /// The error names the entry by its 1-based index and says why, e.g.
    /// `recipient 2 ("age1xyz"): invalid Bech32 encoding`. A secret key given
    /// by mistake is reported without echoing it. An empty list is an error.
    pub fn parse(list: &[String]) -> Result<Recipients, String> {
        if list.is_empty() {
            return Err("no recipients".to_owned());
        }
        list.iter()
            .enumerate()
            .map(|(i, entry)| {
                let entry = entry.trim();
                if entry.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                    // Never copy a secret key into an error message (and so
                    // into logs).
                    return Err(format!(
                        "recipient {}: is a secret key (AGE-SECRET-KEY-…); give its public key (age1…) and keep the secret key off the box",
                        i + 1
                    ));
                }
                entry
                    .parse::<age::x25519::Recipient>()
                    .map_err(|why| format!("recipient {} ({entry:?}): {why}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Recipients)
    }

    /// Number of recipients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no recipients (never true for a parsed list).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| r.to_string()))
            .finish()
    }
}

/// Size and SHA-256 (lowercase hex) of a file as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the contents, 64 lowercase hex digits.
    pub sha256: String,
}

/// Encrypts `src` to `dst` for `recipients` and returns the digest of the
/// ciphertext.
///
/// Writes `<dst>.tmp` first (mode 0o640, binary age format), fsyncs it,
/// renames it to `dst` and fsyncs the directory. On error the `.tmp` file is
/// removed and `dst` is untouched. `src` is never modified or removed.
pub fn seal(src: &Path, dst: &Path, recipients: &Recipients) -> io::Result<Digest> {
    let tmp = tmp_path(dst);
    let result = seal_to_tmp(src, &tmp, recipients).and_then(|digest| {
        fs::rename(&tmp, dst).map_err(at("renaming", &tmp))?;
        sync_dir(dst)?;
        Ok(digest)
    });
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Digest of an existing file, read in 64 KiB blocks.
pub fn digest(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path).map_err(at("opening", path))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(at("reading", path)(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digest {
        size,
        sha256: hex(&hasher.finalize()),
    })
}

fn seal_to_tmp(src: &Path, tmp: &Path, recipients: &Recipients) -> io::Result<Digest> {
    let mut input = File::open(src).map_err(at("opening", src))?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.0.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("sealing {}: {e}", src.display())))?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SEALED_MODE)
        .open(tmp)
        .map_err(at("creating", tmp))?;
    let hashing = HashingWriter::new(BufWriter::with_capacity(BUF_SIZE, file));
    let mut writer = encryptor.wrap_output(hashing).map_err(at("writing", tmp))?;

    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(at("reading", src)(e)),
        };
        writer.write_all(&buf[..n]).map_err(at("writing", tmp))?;
    }
    let hashing = writer.finish().map_err(at("writing", tmp))?;
    let (buffered, digest) = hashing.finish();
    let file = buffered
        .into_inner()
        .map_err(|e| at("writing", tmp)(e.into_error()))?;
    file.sync_all().map_err(at("syncing", tmp))?;
    Ok(digest)
}

/// `dst` with `.tmp` appended to its file name.
fn tmp_path(dst: &Path) -> PathBuf {
    let mut s = OsString::from(dst.as_os_str());
    s.push(".tmp");
    PathBuf::from(s)
}

/// Fsyncs the directory holding `path`, so a rename into it is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at("syncing directory", dir))
}

/// Adds what was being done and to which path to an I/O error.
fn at<'a>(doing: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Counts and hashes every byte that reaches the inner writer.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (W, Digest) {
        let digest = Digest {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        };
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted, so a short write is not
        // counted twice when the caller retries the rest.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::iter;
    use std::os::unix::fs::PermissionsExt;

    use age::secrecy::ExposeSecret;

    use super::*;

    /// A recognisable plaintext spanning several age chunks.
    fn recording() -> Vec<u8> {
        b"RIFF....WAVEfmt CALLER-SAID-HELLO-1234 "
            .iter()
            .copied()
            .cycle()
            .take(3 * BUF_SIZE + 123)
            .collect()
    }

    fn recipients_for(ids: &[&age::x25519::Identity]) -> Recipients {
        let list: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        Recipients::parse(&list).unwrap()
    }

    fn decrypt(path: &Path, id: &age::x25519::Identity) -> Result<Vec<u8>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let decryptor = age::Decryptor::new(file).map_err(|e| e.to_string())?;
        let mut reader = decryptor
            .decrypt(iter::once(id as &dyn age::Identity))
            .map_err(|e| e.to_string())?;
        let mut out = vec![];
        reader.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn sealed_pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("call.wav");
        let dst = dir.path().join("call.wav.age");
        fs::write(&src, recording()).unwrap();
        (dir, src, dst)
    }

    #[test]
    fn sealed_recording_decrypts_to_identical_bytes() {
        let id = age::x25519::Identity::generate();
        let (_dir, src, dst) = sealed_pair();

        seal(&src, &dst, &recipients_for(&[&id])).unwrap();

        assert_eq!(decrypt(&dst, &id).unwrap(), recording());
        assert_eq!(fs::read(&src).unwrap(), recording(), "src left alone");
    }

    #[test]
    fn sealed_recording_decrypts_with_any_of_several_recipients() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let (_dir, src, dst) = sealed_pair();

        seal(&src, &dst, &recipients_for(&[&a, &b])).unwrap();

        assert_eq!(decrypt(&dst, &a).unwrap(), recording());
        assert_eq!(decrypt(&dst, &b).unwrap(), recording());
    }

    #[test]
    fn ciphertext_is_binary_age_without_plaintext() {
        let id = age::x25519::Identity::generate();
        let (_dir, src, dst) = sealed_pair();

        seal(&src, &dst, &recipients_for(&[&id])).unwrap();

        let sealed = fs::read(&dst).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        let needle = b"CALLER-SAID-HELLO";
        assert!(!sealed.windows(needle.len()).any(|w| w == needle));
        let secret = id.to_string();
        let secret = secret.expose_secret().as_bytes();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn another_identity_cannot_decrypt() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let (_dir, src, dst) = sealed_pair();

        seal(&src, &dst, &recipients_for(&[&id])).unwrap();

        assert!(decrypt(&dst, &other).is_err());
    }

    #[test]
    fn sealed_file_has_mode_0640_and_no_tmp_remains() {
        let id = age::x25519::Identity::generate();
        let (dir, src, dst) = sealed_pair();

        seal(&src, &dst, &recipients_for(&[&id])).unwrap();

        let mode = fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
        // The umask may only remove bits.
        assert_eq!(mode & !SEALED_MODE, 0, "mode {mode:o}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn seal_returns_digest_of_ciphertext_as_stored() {
        let id = age::x25519::Identity::generate();
        let (_dir, src, dst) = sealed_pair();

        let sealed = seal(&src, &dst, &recipients_for(&[&id])).unwrap();

        let bytes = fs::read(&dst).unwrap();
        assert_eq!(sealed.size, bytes.len() as u64);
        assert_eq!(sealed.sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(sealed, digest(&dst).unwrap());
    }

    #[test]
    fn missing_source_fails_naming_it_and_leaves_nothing() {
        let id = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("gone.wav");
        let dst = dir.path().join("gone.wav.age");

        let err = seal(&src, &dst, &recipients_for(&[&id])).unwrap_err();

        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("gone.wav"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_destination_fails_naming_it() {
        let id = age::x25519::Identity::generate();
        let (dir, src, _) = sealed_pair();
        let dst = dir.path().join("no-such-dir").join("call.wav.age");

        let err = seal(&src, &dst, &recipients_for(&[&id])).unwrap_err();

        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[test]
    fn digest_matches_known_vector_and_sha2() {
        let dir = tempfile::tempdir().unwrap();
        let abc = dir.path().join("abc");
        fs::write(&abc, b"abc").unwrap();
        assert_eq!(
            digest(&abc).unwrap(),
            Digest {
                size: 3,
                sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
            }
        );

        let big = dir.path().join("big");
        let data = recording();
        fs::write(&big, &data).unwrap();
        let d = digest(&big).unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.sha256, hex(&Sha256::digest(&data)));
    }

    #[test]
    fn digest_of_missing_file_names_it() {
        let err = digest(Path::new("/nonexistent/rec.wav.age")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/rec.wav.age"),
            "{err}"
        );
    }

    #[test]
    fn parse_errors_name_the_entry() {
        let good = age::x25519::Identity::generate().to_public().to_string();

        let err = Recipients::parse(&[good.clone(), "age1xyz".into()]).unwrap_err();
        assert!(err.starts_with("recipient 2 (\"age1xyz\"): "), "{err}");
        assert!(err.contains("Bech32"), "{err}");

        assert_eq!(Recipients::parse(&[]).unwrap_err(), "no recipients");
    }

    #[test]
    fn parse_refuses_secret_key_without_echoing_it() {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string().expose_secret().to_owned();

        let err = Recipients::parse(std::slice::from_ref(&secret)).unwrap_err();

        assert!(err.starts_with("recipient 1: "), "{err}");
        assert!(!err.contains(&secret[15..]), "{err}");
    }

    #[test]
    fn parse_accepts_public_keys_and_debug_prints_them() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();

        let r = Recipients::parse(&[format!(" {a}\n"), b.clone()]).unwrap();

        assert_eq!(r.len(), 2);
        assert!(!r.is_empty());
        assert_eq!(format!("{r:?}"), format!("[{a:?}, {b:?}]"));
    }
}
