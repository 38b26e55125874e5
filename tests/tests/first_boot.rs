//! First boot of a flashed box: `callboxd run --bundle /boot/callbox`
//! imports the technician's provisioning bundle into the data partition and
//! runs with it; a box that was never provisioned waits in a safe state.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use callbox_tests::{Site, cmd};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A bundle as `callbox-provision enroll` lays it out, around `site_toml`.
fn write_bundle(dir: &Path, site_toml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cert) = (
        b"-----BEGIN CERTIFICATE-----\nCA\n",
        b"-----BEGIN CERTIFICATE-----\nBOX\n",
    );
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("box.pem"), cert).unwrap();
    std::fs::write(dir.join("box.key"), "-----BEGIN PRIVATE KEY-----\nKEY\n").unwrap();
    std::fs::write(dir.join("site.toml"), site_toml).unwrap();
    let m = serde_json::json!({
        "v": 1, "site": "test-site", "box": "box-9", "broker": "mqtts://hq.example:8883",
        "created": "2026-11-23T00:00:00Z", "ca_sha256": hex(ca), "cert_sha256": hex(cert),
    });
    std::fs::write(dir.join("bundle.json"), m.to_string()).unwrap();
}

#[test]
fn a_bundle_is_imported_on_first_boot_and_the_box_runs_with_its_config() {
    let site = Site::new(1, 0, 1000, "");
    // The config as the bundle carries it; on the box it lives in the data
    // partition, so its prompts are found by absolute path here.
    let text = std::fs::read_to_string(site.config()).unwrap()
        + &format!(
            "\n[prompts]\ndir = \"{}\"\n",
            site.dir.path().join("prompts").display()
        );
    let boot = site.dir.path().join("boot/callbox");
    write_bundle(&boot, &text);
    let data = site.data();
    let config = data.join("site.toml");
    let scenario = site.write(
        "calls.toml",
        "[[call]]\nat = \"1s\"\nfrom = \"13800138000\"\nto = \"4000\"\n",
    );
    let out = cmd()
        .args(["run", "--fast", "--until-idle", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .arg("--bundle")
        .arg(&boot)
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("provisioning bundle imported"), "{log}");
    assert!(
        !boot.exists(),
        "the private key is still on the boot partition"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("identity/box.key")), 0o600);
    assert_eq!(mode(&data.join("identity")), 0o700);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
    // It ran with the imported config: the call has its record.
    let recs = site.records();
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["disposition"], "answered");
}

#[test]
fn a_box_never_provisioned_waits_and_says_so_then_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = cmd()
        .args(["run", "--config"])
        .arg(data.join("site.toml"))
        .arg("--data")
        .arg(&data)
        .arg("--bundle")
        .arg(dir.path().join("boot/callbox"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Still up after a while (no exit into a restart loop).
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(child.try_wait().unwrap().is_none(), "callboxd exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("has not been provisioned"), "{log}");
    assert!(log.contains("no_identity"), "{log}");
    assert!(log.contains("status LED shows no_identity"), "{log}");
}

#[test]
fn a_damaged_bundle_is_left_in_place_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot/callbox");
    write_bundle(&boot, "[site]\nid = \"x\"\n");
    std::fs::write(boot.join("box.pem"), "tampered").unwrap();
    let data = dir.path().join("data");
    let child = cmd()
        .args(["run", "--config"])
        .arg(data.join("site.toml"))
        .arg("--data")
        .arg(&data)
        .arg("--bundle")
        .arg(&boot)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("box.pem does not match bundle.json"), "{log}");
    assert!(boot.join("box.key").exists());
    assert!(!data.join("identity").exists());
}
