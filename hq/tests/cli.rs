//! End-to-end tests of `callbox-hq keygen`, `pubkey` and `decrypt`: they run
//! the real binary and encrypt with the `age` crate the way the box does.

use std::fs;
use std::io::{Read, Write};
use std::iter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_callbox-hq");

fn hq(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run callbox-hq")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `keygen` into `dir/name` and returns the identity path and public key.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = hq(&["keygen", "--out", s(&path)]);
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    (path, stdout(&out).trim_end().to_owned())
}

/// A fake recording spanning several age chunks (64 KiB each).
fn recording() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Encrypts `plain` to `public` as the box does (binary age, x25519).
fn seal(plain: &[u8], public: &str, dst: &Path) {
    let recipient: age::x25519::Recipient = public.parse().unwrap();
    let encryptor =
        age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient)).unwrap();
    let mut w = encryptor
        .wrap_output(fs::File::create(dst).unwrap())
        .unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
}

#[test]
fn keygen_writes_0600_identity_file_in_age_keygen_format() {
    let dir = tempfile::tempdir().unwrap();

    let (path, public) = keygen(dir.path(), "hq.key");

    assert!(public.starts_with("age1"), "{public}");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("# created: "), "{text}");
    let created = &lines[0]["# created: ".len()..];
    assert_eq!(created.len(), "2026-01-01T12:00:00Z".len(), "{created}");
    assert!(created.ends_with('Z') && created.as_bytes()[10] == b'T');
    assert_eq!(lines[1], format!("# public key: {public}"));
    assert!(lines[2].starts_with("AGE-SECRET-KEY-1"), "{text}");
    assert!(text.ends_with('\n'));
    let identity: age::x25519::Identity = lines[2].parse().unwrap();
    assert_eq!(identity.to_public().to_string(), public);
}

#[test]
fn keygen_refuses_to_overwrite_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = keygen(dir.path(), "hq.key");
    let before = fs::read(&path).unwrap();

    let out = hq(&["keygen", "--out", s(&path)]);

    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains(s(&path)) && err.contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn pubkey_prints_public_key_of_identity_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, public) = keygen(dir.path(), "hq.key");

    let out = hq(&["pubkey", "--identity", s(&path)]);

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{public}\n"));
}

#[test]
fn pubkey_of_file_without_identity_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.key");
    fs::write(&path, "# just a comment\n").unwrap();

    let out = hq(&["pubkey", "-i", s(&path)]);

    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("no identity in {}", s(&path))));
}

#[test]
fn decrypt_restores_recording_byte_for_byte_next_to_input() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hq.key");
    let sealed = dir.path().join("call-1.wav.age");
    seal(&recording(), &public, &sealed);

    let out = hq(&["decrypt", "--identity", s(&key), s(&sealed)]);

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(dir.path().join("call-1.wav")).unwrap(),
        recording()
    );
    assert!(!dir.path().join("call-1.wav.part").exists());
}

#[test]
fn decrypt_with_identity_file_holding_several_keys_uses_the_matching_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a.key");
    let (b, public_b) = keygen(dir.path(), "b.key");
    let both = dir.path().join("both.key");
    let text = fs::read_to_string(&a).unwrap() + "\n" + &fs::read_to_string(&b).unwrap();
    fs::write(&both, text).unwrap();
    let sealed = dir.path().join("call.wav.age");
    seal(b"short call", &public_b, &sealed);
    let plain = dir.path().join("out.wav");

    let out = hq(&["decrypt", "-i", s(&both), s(&sealed), "-o", s(&plain)]);

    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(&plain).unwrap(), b"short call");
}

#[test]
fn decrypt_with_wrong_identity_fails_naming_files_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keygen(dir.path(), "right.key");
    let (wrong, _) = keygen(dir.path(), "wrong.key");
    let sealed = dir.path().join("call.wav.age");
    seal(&recording(), &public, &sealed);

    let out = hq(&["decrypt", "-i", s(&wrong), s(&sealed)]);

    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "no identity in {} matches {}",
            s(&wrong),
            s(&sealed)
        )),
        "{err}"
    );
    assert!(!dir.path().join("call.wav").exists());
    assert!(!dir.path().join("call.wav.part").exists());
}

#[test]
fn decrypt_refuses_non_age_input() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "hq.key");
    let input = dir.path().join("call.wav.age");
    fs::write(&input, b"RIFF\x24\x00\x00\x00WAVEfmt ").unwrap();

    let out = hq(&["decrypt", "-i", s(&key), s(&input)]);

    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{}: not an age file", s(&input))),
        "{}",
        stderr(&out)
    );
}

#[test]
fn decrypt_of_truncated_file_fails_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hq.key");
    let sealed = dir.path().join("call.wav.age");
    seal(&recording(), &public, &sealed);
    let bytes = fs::read(&sealed).unwrap();
    fs::write(&sealed, &bytes[..bytes.len() - 1000]).unwrap();

    let out = hq(&["decrypt", "-i", s(&key), s(&sealed)]);

    assert!(!out.status.success());
    assert!(stderr(&out).contains(s(&sealed)), "{}", stderr(&out));
    assert!(!dir.path().join("call.wav").exists());
    assert!(!dir.path().join("call.wav.part").exists());
}

#[test]
fn decrypt_refuses_to_overwrite_output_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hq.key");
    let sealed = dir.path().join("call.wav.age");
    seal(b"new", &public, &sealed);
    let plain = dir.path().join("call.wav");
    fs::write(&plain, b"old").unwrap();

    let out = hq(&["decrypt", "-i", s(&key), s(&sealed)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(s(&plain)) && err.contains("--force"), "{err}");
    assert_eq!(fs::read(&plain).unwrap(), b"old");

    let out = hq(&["decrypt", "-i", s(&key), s(&sealed), "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(&plain).unwrap(), b"new");
}

#[test]
fn decrypt_without_age_suffix_needs_explicit_output() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hq.key");
    let sealed = dir.path().join("call.bin");
    seal(b"x", &public, &sealed);

    let out = hq(&["decrypt", "-i", s(&key), s(&sealed)]);

    assert!(!out.status.success());
    assert!(stderr(&out).contains("-o"), "{}", stderr(&out));
}

/// The identity file must work with the reference tool too. Skipped when the
/// `age` CLI is not installed.
#[test]
fn age_cli_decrypts_with_keygen_identity() {
    let installed = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "hq.key");
    let sealed = dir.path().join("call.wav.age");
    seal(&recording(), &public, &sealed);

    let mut child = Command::new("age")
        .args(["--decrypt", "--identity", s(&key), s(&sealed)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut plain = vec![];
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(plain, recording());
}
