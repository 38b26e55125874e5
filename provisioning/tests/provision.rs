//! End-to-end tests of `callbox-provision`: the real binary on real files
//! (a CA, bundles, a disk image with an MBR and a FAT partition) and, when
//! installed, a real mosquitto with a TLS listener requiring certificates.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callbox-provision"))
}

fn run(args: &[&str]) -> Output {
    tool().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A fleet CA in `<dir>/<name>`.
fn ca(dir: &Path, name: &str) -> PathBuf {
    let ca = dir.join(name);
    let o = run(&["ca", "init", "--dir", p(&ca), "--name", name]);
    assert!(o.status.success(), "{}", text(&o));
    ca
}

/// A bundle for box `b` of site `s` from the CA in `ca`.
fn enroll(ca: &Path, out: &Path, site: &str, b: &str, broker: &str) {
    let o = run(&[
        "enroll",
        "--ca-dir",
        p(ca),
        "--site",
        site,
        "--box",
        b,
        "--broker",
        broker,
        "--out",
        p(out),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

fn verify(bundle: &Path) -> Output {
    run(&["verify", "--bundle", p(bundle)])
}

/// Points bundle.json at the current box.pem, as a forger would.
fn rehash_cert(bundle: &Path) {
    let m = bundle.join("bundle.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&m).unwrap()).unwrap();
    let h: String = Sha256::digest(fs::read(bundle.join("box.pem")).unwrap())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    v["cert_sha256"] = h.into();
    fs::write(&m, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn ca_init_then_enroll_gives_a_bundle_that_verifies_with_keys_0600() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    let b = d.path().join("bundle");
    enroll(&ca, &b, "branch-7", "box-0001", "mqtts://mqtt.example:8883");
    assert_eq!(mode(&b.join("box.key")), 0o600);
    for f in ["bundle.json", "ca.pem", "box.pem", "box.key", "site.toml"] {
        assert!(b.join(f).is_file(), "{f}");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(b.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(m["v"], 1);
    assert_eq!(m["site"], "branch-7");
    assert_eq!(m["box"], "box-0001");
    assert_eq!(m["broker"], "mqtts://mqtt.example:8883");
    let site = fs::read_to_string(b.join("site.toml")).unwrap();
    assert!(site.contains("id = \"branch-7\""), "{site}");
    assert!(site.contains("key = \"identity/box.key\""), "{site}");

    // With callboxd beside us (a workspace build), its check-config runs too.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_callbox-provision"))
        .parent()
        .unwrap();
    let mut cmd = tool();
    cmd.args(["verify", "--bundle", p(&b)]);
    let with_callboxd = bin_dir.join("callboxd").is_file();
    if with_callboxd {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bin_dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    if with_callboxd {
        assert!(text(&o).contains("check-config: ok"), "{}", text(&o));
    } else {
        eprintln!("note: callboxd not built; check-config part not exercised");
    }
}

#[test]
fn ca_init_never_overwrites_a_ca_and_enroll_never_overwrites_a_bundle() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let before = fs::read(ca.join("ca.key")).unwrap();
    let o = run(&["ca", "init", "--dir", p(&ca)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("refusing to overwrite"), "{}", text(&o));
    assert_eq!(fs::read(ca.join("ca.key")).unwrap(), before);

    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h:8883");
    let o = run(&[
        "enroll",
        "--ca-dir",
        p(&ca),
        "--site",
        "s",
        "--box",
        "b",
        "--broker",
        "mqtts://h",
        "--out",
        p(&b),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let o = run(&[
        "enroll",
        "--ca-dir",
        p(&ca),
        "--site",
        "s",
        "--box",
        "b",
        "--broker",
        "mqtts://h",
        "--out",
        p(&b),
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Headquarters files recordings in a directory named after the box, and
/// refuses `..`; an enrolled box `..` could never report in.
#[test]
fn a_box_or_site_id_of_dot_dot_is_not_enrolled() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let out = d.path().join("b");
    for (site, b, want) in [("s", "..", "box id `..`"), ("..", "b", "site id `..`")] {
        let o = run(&[
            "enroll",
            "--ca-dir",
            p(&ca),
            "--site",
            site,
            "--box",
            b,
            "--broker",
            "mqtts://h",
            "--out",
            p(&out),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(want), "{want}: {}", text(&o));
        assert!(
            text(&o).contains("starting with a letter or digit"),
            "{}",
            text(&o)
        );
        assert!(!out.exists());
    }
}

#[test]
fn bad_ids_missing_ca_and_plain_brokers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let out = d.path().join("b");
    for (site, b, broker, want) in [
        ("s/1", "b", "mqtts://h", "site id `s/1`"),
        ("s", "", "mqtts://h", "box id ``"),
        ("s", "b+", "mqtts://h", "box id `b+`"),
        ("s", "b", "mqtt://h:1883", "mqtts://"),
    ] {
        let o = run(&[
            "enroll",
            "--ca-dir",
            p(&ca),
            "--site",
            site,
            "--box",
            b,
            "--broker",
            broker,
            "--out",
            p(&out),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(want), "{want}: {}", text(&o));
        assert!(!out.exists());
    }
    let o = run(&[
        "enroll",
        "--ca-dir",
        p(&d.path().join("nope")),
        "--site",
        "s",
        "--box",
        "b",
        "--broker",
        "mqtts://h",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing CA"), "{}", text(&o));
}

#[test]
fn adopting_an_existing_ca_checks_that_key_and_certificate_match() {
    let d = tempfile::tempdir().unwrap();
    let a = ca(d.path(), "a");
    let b = ca(d.path(), "b");
    let o = run(&[
        "ca",
        "init",
        "--dir",
        p(&d.path().join("mixed")),
        "--existing",
        p(&a.join("ca.pem")),
        "--existing-key",
        p(&b.join("ca.key")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("do not go together"), "{}", text(&o));
    let adopted = d.path().join("adopted");
    let o = run(&[
        "ca",
        "init",
        "--dir",
        p(&adopted),
        "--existing",
        p(&a.join("ca.pem")),
        "--existing-key",
        p(&a.join("ca.key")),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&adopted.join("ca.key")), 0o600);
    enroll(&adopted, &d.path().join("bundle"), "s", "b", "mqtts://h");
}

#[test]
fn a_changed_certificate_is_rejected_by_its_hash() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h");
    let other = d.path().join("other");
    enroll(&ca, &other, "s", "b", "mqtts://h");
    fs::copy(other.join("box.pem"), b.join("box.pem")).unwrap();
    let o = verify(&b);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("box.pem") && t.contains("does not match bundle.json"),
        "{t}"
    );
    assert!(
        t.contains("box.key") && t.contains("does not match box.pem"),
        "{t}"
    );
}

#[test]
fn a_wrong_private_key_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let (b, other) = (d.path().join("bundle"), d.path().join("other"));
    enroll(&ca, &b, "s", "b", "mqtts://h");
    enroll(&ca, &other, "s", "b", "mqtts://h");
    fs::copy(other.join("box.key"), b.join("box.key")).unwrap();
    let o = verify(&b);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("private key does not match box.pem"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_certificate_from_another_ca_is_rejected_even_with_the_same_name() {
    let d = tempfile::tempdir().unwrap();
    let ours = ca(d.path(), "fleet");
    let theirs_dir = d.path().join("theirs");
    fs::create_dir(&theirs_dir).unwrap();
    let theirs = ca(&theirs_dir, "fleet"); // same CN, another key
    let other_name = ca(d.path(), "elsewhere");
    for (other, want) in [
        (&theirs, "signature does not verify"),
        (&other_name, "certificate from another CA"),
    ] {
        let b = d.path().join("bundle");
        let _ = fs::remove_dir_all(&b);
        enroll(other, &b, "s", "b", "mqtts://h");
        // Their box certificate, presented with our CA.
        fs::copy(ours.join("ca.pem"), b.join("ca.pem")).unwrap();
        let m = b.join("bundle.json");
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&m).unwrap()).unwrap();
        v["ca_sha256"] = Sha256::digest(fs::read(b.join("ca.pem")).unwrap())
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into();
        fs::write(&m, serde_json::to_vec(&v).unwrap()).unwrap();
        let o = verify(&b);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o).contains(want), "{want}: {}", text(&o));
    }
}

/// Re-issues the bundle's certificate for the same key with `from..to`
/// validity, signed by the CA in `ca`, and fixes the manifest.
fn reissue(ca: &Path, b: &Path, from: time::OffsetDateTime, to: time::OffsetDateTime) {
    let ca_key = rcgen::KeyPair::from_pem(&fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&fs::read_to_string(ca.join("ca.pem")).unwrap(), ca_key)
            .unwrap();
    let key = rcgen::KeyPair::from_pem(&fs::read_to_string(b.join("box.key")).unwrap()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "b");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "s");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = from;
    params.not_after = to;
    let cert = params.signed_by(&key, &issuer).unwrap();
    fs::write(b.join("box.pem"), cert.pem()).unwrap();
    rehash_cert(b);
}

#[test]
fn expired_not_yet_valid_and_expiring_certificates_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h");
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);

    reissue(&ca, &b, now - day * 400, now - day * 35);
    let o = verify(&b);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("box.pem: expired on"), "{}", text(&o));

    reissue(&ca, &b, now + day * 2, now + day * 400);
    let o = verify(&b);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not yet valid"), "{}", text(&o));

    reissue(&ca, &b, now - day, now + day * 20_000);
    let o = verify(&b);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("after its CA expires"), "{}", text(&o));

    reissue(&ca, &b, now - day, now + day * 10);
    let o = verify(&b);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("expires within 30 days"), "{}", text(&o));
}

#[test]
fn a_bundle_for_another_site_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "branch-7", "b", "mqtts://h");
    let o = run(&["verify", "--bundle", p(&b), "--site", "branch-8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("bundle for another site"), "{}", text(&o));
    // A site config edited for another box is caught too.
    let t = fs::read_to_string(b.join("site.toml")).unwrap();
    fs::write(b.join("site.toml"), t.replace("box = \"b\"", "box = \"c\"")).unwrap();
    let o = verify(&b);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("[uplink] box = \"c\""), "{}", text(&o));
}

// --- images -----------------------------------------------------------

/// A window of a file, as the tool uses, for building and reading images.
struct Window {
    f: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        self.f.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.f.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
impl Write for Window {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        self.f.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.f.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.f.flush()
    }
}
impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => (self.pos as i64 + d) as u64,
            SeekFrom::End(d) => (self.len as i64 + d) as u64,
        };
        Ok(self.pos)
    }
}

const START_LBA: u64 = 2048;
const IMAGE: u64 = 96 << 20;

/// A sparse disk image with an MBR and one partition of type `kind`,
/// formatted FAT32 when `fat`.
fn image(path: &Path, kind: u8, fat: bool) {
    let f = File::create(path).unwrap();
    f.set_len(IMAGE).unwrap();
    let sectors = IMAGE / 512 - START_LBA;
    let mut mbr = [0u8; 512];
    let e = &mut mbr[446..462];
    e[4] = kind;
    e[8..12].copy_from_slice(&(START_LBA as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    f.write_all(&mbr).unwrap();
    if fat {
        let w = Window {
            f,
            start: START_LBA * 512,
            len: sectors * 512,
            pos: 0,
        };
        fatfs::format_volume(
            w,
            fatfs::FormatVolumeOptions::new().fat_type(fatfs::FatType::Fat32),
        )
        .unwrap();
    }
}

fn read_back(path: &Path, file: &str) -> Vec<u8> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let w = Window {
        f,
        start: START_LBA * 512,
        len: IMAGE - START_LBA * 512,
        pos: 0,
    };
    let fs_ = fatfs::FileSystem::new(w, fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs_.fat_type(), fatfs::FatType::Fat32);
    let mut v = Vec::new();
    fs_.root_dir()
        .open_file(file)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn inject_writes_the_bundle_into_the_fat32_boot_partition_byte_for_byte() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h");
    let img = d.path().join("callbox.img");
    image(&img, 0x0c, true);
    let o = run(&["inject", "--image", p(&img), "--bundle", p(&b)]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["bundle.json", "ca.pem", "box.pem", "box.key", "site.toml"] {
        assert_eq!(
            read_back(&img, &format!("callbox/{f}")),
            fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // Again (a re-enrolled box): files replaced, not appended to.
    let b2 = d.path().join("bundle2");
    enroll(&ca, &b2, "s", "b2", "mqtts://h");
    let o = run(&["inject", "--image", p(&img), "--bundle", p(&b2)]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        read_back(&img, "callbox/box.key"),
        fs::read(b2.join("box.key")).unwrap()
    );
    assert_eq!(fs::metadata(&img).unwrap().len(), IMAGE);
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
}

#[test]
fn inject_refuses_images_without_a_fat_partition_and_leaves_them_untouched() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h");

    let ext4 = d.path().join("linux.img");
    image(&ext4, 0x83, false);
    let before = fs::read(&ext4).unwrap();
    let o = run(&["inject", "--image", p(&ext4), "--bundle", p(&b)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("no FAT boot partition"), "{}", text(&o));
    assert!(fs::read(&ext4).unwrap() == before, "image changed");

    let cut = d.path().join("cut.img");
    image(&cut, 0x0c, true);
    OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(IMAGE / 2)
        .unwrap();
    let o = run(&["inject", "--image", p(&cut), "--bundle", p(&b)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("truncated image"), "{}", text(&o));

    let gpt = d.path().join("gpt.img");
    image(&gpt, 0xee, false);
    let o = run(&["inject", "--image", p(&gpt), "--bundle", p(&b)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("GPT"), "{}", text(&o));

    let notes = d.path().join("notes.txt");
    fs::write(&notes, "not an image\n".repeat(100)).unwrap();
    let o = run(&["inject", "--image", p(&notes), "--bundle", p(&b)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a disk image"), "{}", text(&o));

    let o = run(&[
        "inject",
        "--image",
        p(&d.path().join("missing.img")),
        "--bundle",
        p(&b),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing.img"), "{}", text(&o));
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
}

#[test]
fn write_copies_the_bundle_onto_a_mounted_boot_partition_key_0600() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", "mqtts://h");
    let boot = d.path().join("boot");
    fs::create_dir(&boot).unwrap();
    let o = run(&["write", "--dir", p(&boot), "--bundle", p(&b)]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["bundle.json", "ca.pem", "box.pem", "box.key", "site.toml"] {
        assert_eq!(
            fs::read(boot.join("callbox").join(f)).unwrap(),
            fs::read(b.join(f)).unwrap()
        );
    }
    assert_eq!(mode(&boot.join("callbox/box.key")), 0o600);
    // The console's one-time password goes to the box as a hash only.
    assert_eq!(
        fs::read(boot.join("callbox/console-admin-otp")).unwrap(),
        fs::read(b.join("console-admin-otp")).unwrap()
    );
    assert_eq!(mode(&boot.join("callbox/console-admin-otp")), 0o600);
    assert!(!boot.join("callbox/console-password").exists());
    let o = run(&["verify", "--bundle", p(&boot.join("callbox"))]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn label_writes_an_svg_with_the_box_id_and_its_qr_code() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let b = d.path().join("bundle");
    enroll(&ca, &b, "branch-7", "box-0001", "mqtts://h");
    let svg = d.path().join("label.svg");
    let o = run(&["label", "--bundle", p(&b), "--out", p(&svg)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("box-0001"), "{}", text(&o));
    let s = fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<?xml") && s.contains("<svg"), "{s}");
    assert!(s.contains("data-qr=\"callbox:branch-7/box-0001\""));
    assert!(s.contains(">box-0001</text>"));
    // The console's one-time admin password, in the clear on the label and
    // as an argon2id hash in the bundle.
    let password = fs::read_to_string(b.join("console-password")).unwrap();
    let password = password.trim();
    assert_eq!(password.len(), 14, "{password}");
    assert!(
        s.contains(&format!(">console admin {password}</text>")),
        "{s}"
    );
    assert!(text(&o).contains(password));
    let hash = fs::read_to_string(b.join("console-admin-otp")).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
    // A QR code: at least the three finder patterns' modules.
    assert!(s.matches("<rect x=").count() > 3 * 24, "{s}");
}

// --- broker -----------------------------------------------------------

struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto on a free loopback port, TLS, client certificates from the
/// fleet CA in `ca` required; `None` when mosquitto is not installed.
fn mosquitto(dir: &Path, ca: &Path) -> Option<Broker> {
    let bin = Path::new("/usr/sbin/mosquitto");
    if !bin.exists() {
        eprintln!("note: /usr/sbin/mosquitto absent: broker test skipped");
        return None;
    }
    let ca_key = rcgen::KeyPair::from_pem(&fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&fs::read_to_string(ca.join("ca.pem")).unwrap(), ca_key)
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let srv = dir.join("broker");
    fs::create_dir(&srv).unwrap();
    fs::write(srv.join("server.pem"), cert.pem()).unwrap();
    fs::write(srv.join("server.key"), key.serialize_pem()).unwrap();
    fs::copy(ca.join("ca.pem"), srv.join("ca.pem")).unwrap();
    // mosquitto started as root drops to its own user: let it read these.
    for p in [dir, &srv] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["server.pem", "server.key", "ca.pem"] {
        fs::set_permissions(srv.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = srv.join("mosquitto.conf");
    fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nrequire_certificate true\n\
             cafile {}\ncertfile {}\nkeyfile {}\n",
            srv.join("ca.pem").display(),
            srv.join("server.pem").display(),
            srv.join("server.key").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker { child, port };
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(broker)
}

#[test]
fn verify_connect_is_accepted_by_the_fleet_broker_and_refused_for_another_ca() {
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let Some(broker) = mosquitto(d.path(), &ca) else {
        return;
    };
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let b = d.path().join("bundle");
    enroll(&ca, &b, "s", "b", &url);
    let o = run(&["verify", "--bundle", p(&b), "--connect"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("accepted box `b`"), "{}", text(&o));

    // A bundle from another CA: consistent in itself, refused by the broker.
    let rogue_dir = d.path().join("rogue");
    fs::create_dir(&rogue_dir).unwrap();
    let rogue = self::ca(&rogue_dir, "fleet");
    let r = d.path().join("rogue-bundle");
    enroll(&rogue, &r, "s", "b", &url);
    let o = run(&["verify", "--bundle", p(&r), "--connect"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not accepted"), "{}", text(&o));
}

/// The whole chain, when `callboxd` was built beside us: enroll, inject
/// into an image, the box's boot partition as read from that image, first
/// boot imports it and the box connects to the broker with its identity.
#[test]
fn an_injected_bundle_is_imported_by_callboxd_which_then_connects_to_the_broker() {
    let callboxd = Path::new(env!("CARGO_BIN_EXE_callbox-provision"))
        .parent()
        .unwrap()
        .join("callboxd");
    if !callboxd.is_file() {
        eprintln!("note: callboxd not built beside callbox-provision: first-boot test skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ca = ca(d.path(), "fleet");
    let Some(broker) = mosquitto(d.path(), &ca) else {
        return;
    };
    let b = d.path().join("bundle");
    enroll(
        &ca,
        &b,
        "s",
        "b",
        &format!("mqtts://127.0.0.1:{}", broker.port),
    );
    let img = d.path().join("callbox.img");
    image(&img, 0x0c, true);
    let o = run(&["inject", "--image", p(&img), "--bundle", p(&b)]);
    assert!(o.status.success(), "{}", text(&o));
    // The boot partition as the box mounts it.
    let boot = d.path().join("boot/callbox");
    fs::create_dir_all(&boot).unwrap();
    for f in ["bundle.json", "ca.pem", "box.pem", "box.key", "site.toml"] {
        fs::write(boot.join(f), read_back(&img, &format!("callbox/{f}"))).unwrap();
    }
    let data = d.path().join("data");
    let mut child = Command::new(&callboxd)
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
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut log = String::new();
    let connected = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("fleet link connected") {
                    break true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break false,
        }
        if t.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "{log}");
    assert!(log.contains("provisioning bundle imported"), "{log}");
    assert!(!boot.exists(), "bundle left on the boot partition");
    assert_eq!(mode(&data.join("identity/box.key")), 0o600);
    assert_eq!(
        fs::read(data.join("site.toml")).unwrap(),
        fs::read(b.join("site.toml")).unwrap()
    );
}
