//! The box's own certificate for what it serves on the network (SIP over
//! TLS): the one the config names, or a self-signed one made on first start
//! and kept in the data directory, so a technician never has to make one
//! and phones can pin it by the fingerprint the log shows.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;

use crate::fsutil::{sha256_hex, write_atomic};

/// A certificate and its key, PEM.
#[derive(Debug)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
}

/// The SHA-256 fingerprint of a PEM certificate's first block, as phones
/// show it (`AB:CD:…`).
pub fn fingerprint(cert_pem: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(cert_pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
        .filter(|d| !d.is_empty())?;
    let hex = sha256_hex(&der).to_ascii_uppercase();
    Some(
        hex.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `dir/NAME.crt` and `dir/NAME.key`, made (self-signed for `hosts`, the
/// key 0600) when they do not exist yet.
pub fn load_or_make(dir: &Path, name: &str, hosts: &[String]) -> Result<Identity> {
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    if crt.exists() && key.exists() {
        return Ok(Identity {
            cert_pem: std::fs::read(&crt).with_context(|| format!("reading {}", crt.display()))?,
            key_pem: std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
        });
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(hosts.to_vec())
        .context("making a self-signed certificate")?;
    let cert_pem = made.cert.pem().into_bytes();
    let key_pem = made.signing_key.serialize_pem().into_bytes();
    // The key first: a certificate without its key would be kept forever.
    write_atomic(&key, &key_pem, Some(0o600))
        .with_context(|| format!("writing {}", key.display()))?;
    write_atomic(&crt, &cert_pem, Some(0o644))
        .with_context(|| format!("writing {}", crt.display()))?;
    tracing::info!(file = %crt.display(), "made a self-signed certificate");
    Ok(Identity { cert_pem, key_pem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_self_signed_certificate_is_made_once_with_a_private_key() {
        let d = tempfile::tempdir().unwrap();
        let a = load_or_make(d.path(), "sip", &["callbox".into(), "127.0.0.1".into()]).unwrap();
        let mode = std::fs::metadata(d.path().join("sip.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_make(d.path(), "sip", &["other".into()]).unwrap();
        assert_eq!(a.cert_pem, b.cert_pem, "kept, not made again");
        let fp = fingerprint(&a.cert_pem).unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
        assert!(fingerprint(b"not a certificate").is_none());
    }
}
