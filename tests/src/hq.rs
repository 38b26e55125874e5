//! Headquarters' processes for the tests: `callbox-hq serve` (the
//! dashboard) on a free port, and its users.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mqtt::{Pki, hq};

/// `callbox-hq user add` with `password` on standard input.
pub fn add_user(db: &str, name: &str, role: &str, password: &str) {
    let mut c = Command::new(hq())
        .args(["user", "add", "--db", db, name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(c.stdin.take().unwrap(), "{password}").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `callbox-hq serve` on a free port: the process, its port and the
/// certificate's fingerprint.
#[derive(Debug)]
pub struct Serve {
    child: Child,
    /// The HTTPS port.
    pub port: u16,
    /// The certificate's SHA-256 fingerprint (`AB:CD:…`).
    pub fingerprint: String,
    err: std::path::PathBuf,
}

impl Serve {
    /// What it printed on stderr (refusals, failures).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `callbox-hq serve` on `db` with the `pki` server certificate
/// and the metrics token in `token`; its output goes to `dir`.
pub fn serve(db: &str, dir: &Path, pki: &Pki, token: &Path) -> Serve {
    serve_with(db, dir, pki, token, &[])
}

/// [`serve`] with `extra` flags (`--broker URL --allow-plain`).
pub fn serve_with(db: &str, dir: &Path, pki: &Pki, token: &Path, extra: &[&str]) -> Serve {
    let out = dir.join("serve.out");
    let child = Command::new(hq())
        .args([
            "serve",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--tz",
            "Asia/Shanghai",
        ])
        .arg("--cert")
        .arg(&pki.server.cert)
        .arg("--key")
        .arg(&pki.server.key)
        .arg("--metrics-token")
        .arg(token)
        .args(extra)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join("serve.err")).unwrap())
        .spawn()
        .unwrap();
    let mut s = Serve {
        child,
        port: 0,
        fingerprint: String::new(),
        err: dir.join("serve.err"),
    };
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("# serving https://")) {
            let addr = line
                .split("https://")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap();
            s.port = addr.rsplit(':').next().unwrap().parse().unwrap();
            s.fingerprint = line
                .split("SHA-256 ")
                .nth(1)
                .unwrap()
                .trim_end_matches(')')
                .to_string();
            return s;
        }
        let err = std::fs::read_to_string(dir.join("serve.err")).unwrap_or_default();
        assert!(Instant::now() < end, "serve did not come up: {text}\n{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
