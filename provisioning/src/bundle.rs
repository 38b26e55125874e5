//! The provisioning bundle (docs/provisioning.md, "Bundle format"): the
//! `callbox/` directory a box imports on first boot.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use callbox_contract::{ID_RULE, valid_id};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pki::{self, Identity};

/// The files of a bundle with their mode on a POSIX file system, in the
/// order they are written (the manifest last, so a bundle cut short has no
/// manifest and is ignored by the firmware).
pub const FILES: [(&str, u32); 5] = [
    ("ca.pem", 0o644),
    ("box.pem", 0o644),
    ("box.key", 0o600),
    ("site.toml", 0o644),
    ("bundle.json", 0o644),
];

/// The first admin's one-time web-console password, argon2id-hashed: the
/// box imports it (`DATA/console/admin-otp`) and its console takes it once
/// for `admin`.
pub const CONSOLE_OTP: &str = "console-admin-otp";
/// The same password in the clear, for the label only: `write` and
/// `inject` never copy it to the box.
pub const CONSOLE_PASSWORD: &str = "console-password";

/// The mode a bundle file is written with.
pub fn mode_of(name: &str) -> u32 {
    FILES
        .iter()
        .find(|(f, _)| *f == name)
        .map_or(0o600, |(_, m)| *m)
}

/// A new one-time console password and its argon2id hash.
fn console_password() -> Result<(String, String)> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use std::io::Read;
    let mut random = [0u8; 12 + 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .context("no randomness for the console password")?;
    let password = callbox_contract::readable_password(&random[..12]);
    let salt = SaltString::encode_b64(&random[12..]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the console password: {e}"))?
        .to_string();
    Ok((password, hash))
}

/// `bundle.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version: 1.
    pub v: u32,
    /// Site id.
    pub site: String,
    /// Box id.
    #[serde(rename = "box")]
    pub box_id: String,
    /// Broker URL (`mqtts://host:port`).
    pub broker: String,
    /// When the bundle was made (RFC 3339).
    pub created: String,
    /// sha256 of `ca.pem`, lower-case hex.
    pub ca_sha256: String,
    /// sha256 of `box.pem`, lower-case hex.
    pub cert_sha256: String,
}

/// Lower-case hex sha256.
pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Splits `mqtts://host[:port]` into host and port (8883 by default).
pub fn parse_broker(url: &str) -> Result<(String, u16)> {
    let Some(rest) = url.strip_prefix("mqtts://") else {
        bail!("broker `{url}`: must be mqtts://host[:port] (the box only talks TLS)");
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .with_context(|| format!("broker `{url}`: bad port `{p}`"))?,
        ),
        _ => (rest, 8883),
    };
    if host.is_empty() || host.contains('/') {
        bail!("broker `{url}`: no host");
    }
    Ok((host.to_string(), port))
}

/// The starting site config: one trunk, no agents, calls answered and
/// politely ended by a built-in prompt (no prompt files needed), and the
/// `[uplink]` with the identity files relative to the config.
pub fn site_toml(site: &str, box_id: &str, broker: &str) -> String {
    format!(
        r#"# Starting site config from `callbox-provision enroll`: passes
# `callboxd check-config`; headquarters replaces it (config.set) or the
# technician edits it on the box. See docs/config.md.
[site]
id = "{site}"

[[line]]
id = "trunk-1"
kind = "trunk"

[inbound]
answer_after = "2s"

# No greeting file yet: calls are answered and ended with a built-in prompt.
[ivr]
start = "closed"

[ivr.node.closed]
type = "hangup"
prompt = "system:goodbye"
outcome = "unconfigured"

[uplink]
broker = "{broker}"
box = "{box_id}"
ca = "identity/ca.pem"
cert = "identity/box.pem"
key = "identity/box.key"
"#
    )
}

/// `enroll`: a new identity from the CA in `ca_dir` and its bundle in `out`.
pub fn enroll(
    ca_dir: &Path,
    site: &str,
    box_id: &str,
    broker: &str,
    out: &Path,
    days: i64,
    force: bool,
) -> Result<()> {
    for (what, id) in [("site", site), ("box", box_id)] {
        if !valid_id(id) {
            bail!("{what} id `{id}`: must be {ID_RULE}");
        }
    }
    parse_broker(broker)?;
    if out.exists() && !force {
        bail!(
            "{} already exists: refusing to overwrite a bundle (use --force)",
            out.display()
        );
    }
    let id = pki::issue(ca_dir, site, box_id, days)?;
    write_bundle(&id, site, box_id, broker, out)
}

fn write_bundle(id: &Identity, site: &str, box_id: &str, broker: &str, out: &Path) -> Result<()> {
    let m = Manifest {
        v: 1,
        site: site.into(),
        box_id: box_id.into(),
        broker: broker.into(),
        created: jiff::Timestamp::now()
            .round(jiff::Unit::Second)?
            .to_string(),
        ca_sha256: sha256_hex(id.ca_pem.as_bytes()),
        cert_sha256: sha256_hex(id.cert_pem.as_bytes()),
    };
    let manifest = serde_json::to_string_pretty(&m)? + "\n";
    let site_toml = site_toml(site, box_id, broker);
    // Built beside the target and renamed into place: never half a bundle.
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a directory name", out.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let parent = if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let res = (|| -> Result<()> {
        // Before the manifest: a bundle with a manifest is whole.
        let (password, hash) = console_password()?;
        pki::write_file(
            &tmp.join(CONSOLE_OTP),
            format!("{hash}\n").as_bytes(),
            0o600,
        )?;
        pki::write_file(
            &tmp.join(CONSOLE_PASSWORD),
            format!("{password}\n").as_bytes(),
            0o600,
        )?;
        for (f, mode) in FILES {
            let bytes = match f {
                "ca.pem" => id.ca_pem.as_bytes(),
                "box.pem" => id.cert_pem.as_bytes(),
                "box.key" => id.key_pem.as_bytes(),
                "site.toml" => site_toml.as_bytes(),
                _ => manifest.as_bytes(),
            };
            pki::write_file(&tmp.join(f), bytes, mode)?;
        }
        if out.exists() {
            fs::remove_dir_all(out).with_context(|| format!("cannot replace {}", out.display()))?;
        }
        fs::rename(&tmp, out).with_context(|| format!("cannot create {}", out.display()))
    })();
    if res.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

/// Reads the five files of a bundle, each error naming the file, and the
/// console's one-time password hash when the bundle has one (first: the
/// manifest stays last); never the clear password.
pub fn read_files(bundle: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    if !bundle.is_dir() {
        bail!("{}: not a bundle directory", bundle.display());
    }
    let mut v = Vec::new();
    let otp = bundle.join(CONSOLE_OTP);
    if otp.exists() {
        let b = fs::read(&otp).with_context(|| format!("bundle: cannot read {}", otp.display()))?;
        v.push((CONSOLE_OTP, b));
    }
    for (f, _) in FILES {
        let p = bundle.join(f);
        let b = fs::read(&p).with_context(|| format!("bundle: cannot read {}", p.display()))?;
        if b.is_empty() {
            bail!("bundle: {} is empty", p.display());
        }
        v.push((f, b));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_host_and_port() {
        assert_eq!(
            parse_broker("mqtts://h.example:1883").unwrap(),
            ("h.example".into(), 1883)
        );
        assert_eq!(
            parse_broker("mqtts://h.example").unwrap(),
            ("h.example".into(), 8883)
        );
        assert!(parse_broker("mqtt://h:1883").is_err());
        assert!(parse_broker("mqtts://:1").is_err());
    }
}
