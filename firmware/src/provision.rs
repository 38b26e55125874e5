//! First boot: importing the provisioning bundle a technician put on the
//! boot partition (`callbox-provision inject` / `write`, docs/provisioning.md).
//!
//! The bundle (`/boot/callbox/`: `bundle.json`, `ca.pem`, `box.pem`,
//! `box.key`, `site.toml`) is checked, copied into the data partition —
//! `identity/` (directory 0700, key 0600) and, if the box has no site config
//! yet, `site.toml` — synced, and only then removed from the boot partition,
//! which anyone with the SD card in hand could read. A bundle that does not
//! check out is left where it is, untouched, and the reason logged.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fsutil::{sha256_hex, sync_dir, write_atomic};

/// The bundle's manifest.
#[derive(Debug, Deserialize)]
struct Manifest {
    v: u32,
    site: String,
    #[serde(rename = "box")]
    box_id: String,
    broker: String,
    ca_sha256: String,
    cert_sha256: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Site id from the bundle.
    pub site: String,
    /// Box id from the bundle.
    pub box_id: String,
    /// Broker URL from the bundle.
    pub broker: String,
    /// Whether the bundle's site config became the box's (there was none).
    pub config_written: bool,
}

/// Why a bundle was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The bundle is incomplete or inconsistent.
    #[error("provisioning bundle {dir}: {why}")]
    Bad {
        /// The bundle directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The data partition could not be written.
    #[error("importing the provisioning bundle into {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Files of a bundle, as named on the boot partition.
const FILES: [&str; 5] = ["bundle.json", "ca.pem", "box.pem", "box.key", "site.toml"];

/// Imports the bundle in `bundle` into `data_dir`, writing the site config
/// to `config` if that does not exist yet. `Ok(None)` when there is no
/// bundle (the usual case after the first boot).
pub fn import_bundle(
    bundle: &Path,
    data_dir: &Path,
    config: &Path,
) -> Result<Option<Imported>, ImportError> {
    let manifest_path = bundle.join("bundle.json");
    if !manifest_path.exists() {
        return Ok(None);
    }
    let bad = |why: String| ImportError::Bad {
        dir: bundle.to_path_buf(),
        why,
    };
    let mut contents = Vec::new();
    for f in FILES {
        let p = bundle.join(f);
        let b = fs::read(&p).map_err(|e| bad(format!("{f}: {e}")))?;
        if b.is_empty() {
            return Err(bad(format!("{f} is empty")));
        }
        contents.push(b);
    }
    let m: Manifest =
        serde_json::from_slice(&contents[0]).map_err(|e| bad(format!("bundle.json: {e}")))?;
    if m.v != 1 {
        return Err(bad(format!(
            "bundle.json: version {} is not one this firmware reads (1)",
            m.v
        )));
    }
    for (name, want, got) in [
        ("ca.pem", &m.ca_sha256, &contents[1]),
        ("box.pem", &m.cert_sha256, &contents[2]),
    ] {
        let have = sha256_hex(got);
        if !have.eq_ignore_ascii_case(want) {
            return Err(bad(format!(
                "{name} does not match bundle.json (sha256 {have}, expected {want}): damaged or mixed with another bundle"
            )));
        }
    }
    if !callbox_contract::valid_id(&m.box_id) || !callbox_contract::valid_id(&m.site) {
        return Err(bad(format!(
            "bundle.json: site `{}` / box `{}` are not valid ids",
            m.site, m.box_id
        )));
    }

    let identity = data_dir.join("identity");
    let wr = |path: &Path, source| ImportError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(&identity).map_err(|e| wr(&identity, e))?;
    fs::set_permissions(&identity, fs::Permissions::from_mode(0o700))
        .map_err(|e| wr(&identity, e))?;
    for (name, bytes, mode) in [
        ("ca.pem", &contents[1], 0o644),
        ("box.pem", &contents[2], 0o644),
        ("box.key", &contents[3], 0o600),
        ("bundle.json", &contents[0], 0o644),
    ] {
        let path = identity.join(name);
        write_atomic(&path, bytes, Some(mode)).map_err(|e| wr(&path, e))?;
    }
    // The web console's first admin password (its hash), when provisioning
    // made one: taken once by the console (`crate::console::OTP_FILE`).
    if let Ok(hash) = fs::read(bundle.join("console-admin-otp"))
        && !hash.is_empty()
    {
        let path = data_dir.join(crate::console::OTP_FILE);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| wr(dir, e))?;
        }
        write_atomic(&path, &hash, Some(0o600)).map_err(|e| wr(&path, e))?;
    }
    let config_written = if config.exists() {
        false
    } else {
        if let Some(dir) = config.parent() {
            fs::create_dir_all(dir).map_err(|e| wr(dir, e))?;
        }
        write_atomic(config, &contents[4], Some(0o644)).map_err(|e| wr(config, e))?;
        true
    };
    // Everything is on the data partition: the private key leaves the boot
    // partition.
    if let Err(e) = fs::remove_dir_all(bundle) {
        tracing::error!(
            bundle = %bundle.display(),
            "the bundle was imported but could not be removed from the boot partition: {e}; remove it by hand"
        );
    } else if let Some(parent) = bundle.parent() {
        let _ = sync_dir(parent);
    }
    Ok(Some(Imported {
        site: m.site,
        box_id: m.box_id,
        broker: m.broker,
        config_written,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &Path) -> PathBuf {
        let b = dir.join("boot/callbox");
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join("ca.pem"), "CA").unwrap();
        fs::write(b.join("box.pem"), "CERT").unwrap();
        fs::write(b.join("box.key"), "KEY").unwrap();
        fs::write(b.join("site.toml"), "[site]\nid = \"s1\"\n").unwrap();
        let m = serde_json::json!({
            "v": 1, "site": "s1", "box": "b1", "broker": "mqtts://hq:8883",
            "created": "2026-11-23T00:00:00Z",
            "ca_sha256": sha256_hex(b"CA"),
            "cert_sha256": sha256_hex(b"CERT"),
        });
        fs::write(b.join("bundle.json"), m.to_string()).unwrap();
        b
    }

    #[test]
    fn a_bundle_is_imported_with_a_private_key_and_removed_from_the_boot_partition() {
        let d = tempfile::tempdir().unwrap();
        let b = bundle(d.path());
        let data = d.path().join("data");
        let cfg = data.join("site.toml");
        let got = import_bundle(&b, &data, &cfg).unwrap().unwrap();
        assert_eq!((got.site.as_str(), got.box_id.as_str()), ("s1", "b1"));
        assert!(got.config_written);
        assert!(!b.exists(), "the bundle is still on the boot partition");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join("identity/box.key")), 0o600);
        assert_eq!(mode(&data.join("identity")), 0o700);
        assert_eq!(fs::read(data.join("identity/box.key")).unwrap(), b"KEY");
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "[site]\nid = \"s1\"\n");
        // Nothing to do on the next boot.
        assert_eq!(import_bundle(&b, &data, &cfg).unwrap(), None);
        // No console password in this bundle: none imported.
        assert!(!data.join(crate::console::OTP_FILE).exists());
    }

    #[test]
    fn the_console_one_time_password_hash_is_imported_private() {
        let d = tempfile::tempdir().unwrap();
        let b = bundle(d.path());
        let hash = crate::secrets::hash("abcd-efgh-jkmn").unwrap();
        fs::write(b.join("console-admin-otp"), format!("{hash}\n")).unwrap();
        let data = d.path().join("data");
        import_bundle(&b, &data, &data.join("site.toml"))
            .unwrap()
            .unwrap();
        let otp = data.join(crate::console::OTP_FILE);
        assert_eq!(
            fs::metadata(&otp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(crate::secrets::matches(
            fs::read_to_string(&otp).unwrap().trim(),
            "abcd-efgh-jkmn"
        ));
    }

    #[test]
    fn a_reprovisioned_box_keeps_its_site_config_and_gets_the_new_identity() {
        let d = tempfile::tempdir().unwrap();
        let b = bundle(d.path());
        let data = d.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let cfg = data.join("site.toml");
        fs::write(&cfg, "pushed by headquarters").unwrap();
        let got = import_bundle(&b, &data, &cfg).unwrap().unwrap();
        assert!(!got.config_written);
        assert_eq!(fs::read_to_string(&cfg).unwrap(), "pushed by headquarters");
        assert_eq!(fs::read(data.join("identity/box.pem")).unwrap(), b"CERT");
    }

    #[test]
    fn a_damaged_bundle_is_left_alone_and_named() {
        let d = tempfile::tempdir().unwrap();
        let b = bundle(d.path());
        fs::write(b.join("box.pem"), "OTHER").unwrap();
        let data = d.path().join("data");
        let e = import_bundle(&b, &data, &data.join("site.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("box.pem does not match bundle.json"), "{e}");
        assert!(b.join("box.key").exists());
        assert!(!data.join("identity").exists());
        fs::remove_file(b.join("site.toml")).unwrap();
        let e = import_bundle(&b, &data, &data.join("site.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("site.toml"), "{e}");
    }
}
