//! The fleet link's harness: a real `mosquitto` on a free loopback port
//! (plain, or TLS with client certificates from a throwaway fleet CA), the
//! real `callboxd` as a long-running process, the real `callbox-hq`, an MQTT
//! sniffer that sees what goes over the broker, RSS sampling, and the outbox
//! filler the backlog tests and the benchmark share.
//!
//! Every process started here is owned by a guard that SIGKILLs it on drop,
//! so a failing test leaves nothing running. Waiting is always "until this
//! holds, or fail after a generous deadline": no test asserts a duration.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{Site, cmd, text};

/// The topic root every harness config uses (the firmware's default).
pub const ROOT: &str = "callbox";

/// Where Debian's `mosquitto` package puts the broker.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The broker binary: `$MOSQUITTO` when set, else Debian's.
pub fn mosquitto() -> PathBuf {
    let p = std::env::var_os("MOSQUITTO").map_or_else(|| PathBuf::from(MOSQUITTO), PathBuf::from);
    assert!(
        p.is_file(),
        "{} not found: install mosquitto (scripts/test-all does: apt-get install mosquitto mosquitto-clients) or set MOSQUITTO",
        p.display()
    );
    p
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    l.local_addr().unwrap().port()
}

/// Waits until `f` holds, polling every 100 ms; fails the test with `what`
/// (and what `f` last said) once `limit` has passed.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return;
        }
        assert!(
            Instant::now() < end,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_until`] but returns whether it held instead of failing.
pub fn holds_within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex(&sha2::Sha256::digest(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to a new file readable by its owner only (private keys).
fn write_private(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

/// Whether this process runs as root (its `/proc` entry is root's).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn sigkill(child: &mut Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

// ---------------------------------------------------------------------------
// Certificates

/// A certificate and its private key, as files.
#[derive(Debug, Clone)]
pub struct Identity {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (mode 0600).
    pub key: PathBuf,
}

/// A throwaway fleet CA with the broker's server certificate, issuing
/// client certificates whose CN is the client's id (mosquitto's
/// `use_identity_as_username` turns it into the MQTT user name).
pub struct Pki {
    dir: PathBuf,
    /// The fleet CA certificate (PEM).
    pub ca: PathBuf,
    /// The broker's certificate, for 127.0.0.1 and localhost.
    pub server: Identity,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A CA's parameters and key: `(certificate PEM, issuer)`.
fn new_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "callbox tests");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(p, key))
}

/// A leaf certificate signed by `issuer`, written as `{dir}/{file}.pem` and
/// `{dir}/{file}.key` (0600).
fn leaf(
    dir: &Path,
    file: &str,
    cn: &str,
    server: bool,
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
) -> Identity {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.use_authority_key_identifier_extension = true;
    if server {
        p.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    let id = Identity {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&id.cert, cert.pem()).unwrap();
    write_private(&id.key, &key.serialize_pem());
    id
}

impl Pki {
    /// A fresh fleet CA and server certificate in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_pem, issuer) = new_ca("callbox test fleet CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        let server = leaf(dir, "server", "localhost", true, &issuer);
        Pki {
            dir: dir.to_path_buf(),
            ca,
            server,
            issuer,
        }
    }

    /// A client certificate from the fleet CA with CN `cn`.
    pub fn client(&self, cn: &str) -> Identity {
        leaf(&self.dir, &format!("client-{cn}"), cn, false, &self.issuer)
    }

    /// A client certificate with CN `cn` from another CA (one the broker
    /// does not trust), with that CA's certificate.
    pub fn foreign_client(&self, cn: &str) -> (Identity, PathBuf) {
        let (ca_pem, issuer) = new_ca("some other CA");
        let ca = self.dir.join(format!("foreign-ca-{cn}.pem"));
        std::fs::write(&ca, ca_pem).unwrap();
        (
            leaf(&self.dir, &format!("foreign-{cn}"), cn, false, &issuer),
            ca,
        )
    }
}

// ---------------------------------------------------------------------------
// The broker

/// A `mosquitto` on a loopback port, killed on drop.
#[derive(Debug)]
pub struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    pki: Option<Pki>,
    child: Option<Child>,
    starts: u32,
}

impl Broker {
    /// A plain-TCP broker (anonymous clients allowed).
    pub fn start() -> Broker {
        Broker::launch(false)
    }

    /// A TLS-only broker that requires a client certificate from the fleet
    /// CA and takes the certificate's CN as the user name.
    pub fn start_tls() -> Broker {
        Broker::launch(true)
    }

    /// A broker configured on a free port but not started: a box pointed at
    /// it finds nobody there until [`Broker::restart`].
    pub fn down() -> Broker {
        let b = Broker::configure(false);
        b.write_config();
        b
    }

    fn configure(tls: bool) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = tls.then(|| Pki::new(&dir.path().join("pki")));
        Broker {
            dir,
            port: free_port(),
            pki,
            child: None,
            starts: 0,
        }
    }

    fn launch(tls: bool) -> Broker {
        let mut b = Broker::configure(tls);
        b.write_config();
        b.spawn();
        b
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// The broker's log (connections, subscriptions, TLS errors).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn write_config(&self) {
        let mut c = format!("listener {} 127.0.0.1\n", self.port);
        if let Some(p) = &self.pki {
            c += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
                p.ca.display(),
                p.server.cert.display(),
                p.server.key.display()
            );
        }
        // Root would otherwise drop to the `mosquitto` user, who cannot read
        // the 0600 keys and the log in this directory.
        if is_root() {
            c += "user root\n";
        }
        c += &format!(
            "allow_anonymous true\n\
             persistence false\n\
             # A test broker never drops a queued message: the tests check the\n\
             # box and the collector, not the broker's queue limits.\n\
             max_queued_messages 0\n\
             set_tcp_nodelay true\n\
             log_dest file {}\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             log_type subscribe\nlog_type unsubscribe\n\
             connection_messages true\n\
             log_timestamp true\n",
            self.log_path().display()
        );
        std::fs::write(self.conf_path(), c).unwrap();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.out"))
            .unwrap();
        // Right after a kill the port may still be held for a moment.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(mosquitto())
                .arg("-c")
                .arg(self.conf_path())
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out.try_clone().unwrap())
                .spawn()
                .expect("starting mosquitto");
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    break true;
                }
                if Instant::now() > end {
                    sigkill(&mut child);
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                self.child = Some(child);
                self.starts += 1;
                return;
            }
            assert!(
                Instant::now() < end,
                "mosquitto did not start on port {}:\n{}\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("mosquitto.out")).unwrap_or_default(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://…` for a TLS broker.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The fleet CA of a TLS broker.
    pub fn pki(&self) -> &Pki {
        self.pki.as_ref().expect("a TLS broker")
    }

    /// Whether the process is up.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// SIGKILL: no will is sent for anyone, nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }

    /// Starts it again (killing it first if it runs) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until a log line satisfies `f`.
    pub fn wait_log(&self, limit: Duration, what: &str, f: impl Fn(&str) -> bool) {
        wait_until(limit, what, || self.log().lines().any(&f));
    }

    /// How many log lines satisfy `f`.
    pub fn count_log(&self, f: impl Fn(&str) -> bool) -> usize {
        self.log().lines().filter(|l| f(l)).count()
    }

    /// The `[uplink]` section for box `box_id` pointing at this broker, with
    /// short reconnect waits and fast telemetry, plus `extra` lines. For a
    /// TLS broker the box gets a certificate from the fleet CA.
    pub fn uplink(&self, box_id: &str, extra: &str) -> String {
        let mut s = format!(
            "\n[uplink]\nbroker = \"{}\"\nbox = \"{box_id}\"\nbackoff_min = \"200ms\"\nbackoff_max = \"2s\"\ntelemetry_every = \"1s\"\n",
            self.url()
        );
        match &self.pki {
            None => s += "allow_plain = true\n",
            Some(p) => {
                let id = p.client(box_id);
                s += &format!(
                    "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                    p.ca.display(),
                    id.cert.display(),
                    id.key.display()
                );
            }
        }
        s += extra;
        s += "\n";
        s
    }

    /// Connection flags for `callbox-hq` (TLS: an `hq` certificate from the
    /// fleet CA).
    pub fn hq_args(&self) -> Vec<String> {
        let mut a = vec![
            "--broker".to_string(),
            self.url(),
            "--root".into(),
            ROOT.into(),
        ];
        match &self.pki {
            None => a.push("--allow-plain".into()),
            Some(p) => {
                let id = p.client("hq");
                a.extend([
                    "--ca".into(),
                    p.ca.display().to_string(),
                    "--cert".into(),
                    id.cert.display().to_string(),
                    "--key".into(),
                    id.key.display().to_string(),
                ]);
            }
        }
        a
    }

    /// `mosquitto_sub`/`mosquitto_pub` connection flags (`-h -p`, and the
    /// TLS identity `id` for a TLS broker).
    pub fn client_args(&self, id: Option<&Identity>) -> Vec<String> {
        let mut a = vec![
            "-h".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ];
        if let Some(p) = &self.pki {
            a.extend(["--cafile".into(), p.ca.display().to_string()]);
            if let Some(id) = id {
                a.extend([
                    "--cert".into(),
                    id.cert.display().to_string(),
                    "--key".into(),
                    id.key.display().to_string(),
                ]);
            }
        }
        a
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Sites with an uplink

/// Appends `section` (e.g. [`Broker::uplink`]) to the site's config.
pub fn add_uplink(site: &Site, section: &str) {
    let mut cfg = std::fs::read_to_string(site.config()).unwrap();
    cfg += section;
    std::fs::write(site.config(), cfg).unwrap();
}

/// Rows of a table of the box's database, as `callboxd records --table`
/// prints them.
pub fn table(data: &Path, name: &str) -> Vec<Value> {
    crate::export(data, &["records", "--table", name])
}

/// Records in the box's outbox right now, counted in the database itself
/// (cheaper than the export for big backlogs); 0 before the database exists.
pub fn outbox_len(data: &Path) -> u64 {
    let path = data.join(callbox_firmware::store::DB_FILE);
    if !path.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
        .unwrap_or_else(|e| panic!("counting the outbox of {}: {e}", path.display())) as u64
}

/// Inserts `n` records of `stream` into the outbox of the box whose data
/// directory is `data`, through the firmware's own store (one transaction
/// per store batch, as the daemon writes them), with a body of about
/// `body_bytes`. The daemon may be running on the same directory (WAL).
pub fn fill_outbox(data: &Path, n: usize, stream: &str, body_bytes: usize) -> anyhow::Result<()> {
    use callbox_firmware::clock::Clock;
    use callbox_firmware::store::{Store, StoreMsg};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let clock = Clock::new(false);
        let (store, _) = Store::open(data, clock.boot_id())
            .map_err(|e| anyhow::anyhow!("opening the store in {}: {e}", data.display()))?;
        let h = store.handle();
        let pad = "x".repeat(body_bytes.saturating_sub(60));
        for i in 0..n {
            h.send(StoreMsg::Outbox {
                stream: stream.into(),
                at: clock.now(),
                payload: serde_json::json!({
                    "call_id": format!("fill-{i:07}"),
                    "flow": "fill",
                    "message": pad,
                }),
            })
            .await;
        }
        h.flush()
            .await
            .map_err(|e| anyhow::anyhow!("committing: {e}"))?;
        drop(h);
        store.close().await;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// callboxd as a daemon

/// A running `callboxd run`, SIGKILLed on drop. Its stdout and stderr go
/// to a log file in the site directory.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// `callboxd run --config SITE --data DATA` plus `extra`, in real time.
    pub fn start(site: &Site, extra: &[&str]) -> Daemon {
        Daemon::start_env(site, extra, &[])
    }

    /// [`Daemon::start`] with environment variables set for the daemon.
    pub fn start_env(site: &Site, extra: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        let n = (0..)
            .find(|i| !site.dir.path().join(format!("daemon-{i}.log")).exists())
            .unwrap();
        let log = site.dir.path().join(format!("daemon-{n}.log"));
        let f = File::create(&log).unwrap();
        let mut c = cmd();
        c.args(["run", "--config"])
            .arg(site.config())
            .arg("--data")
            .arg(site.data())
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let child = c.spawn().expect("starting callboxd");
        Daemon {
            child: Some(child),
            log,
            status: None,
        }
    }

    /// `callboxd run` with `scenario` in real time (no `--until-idle`: it
    /// runs until stopped).
    pub fn with_scenario(site: &Site, scenario: &Path) -> Daemon {
        Daemon::start(site, &["--scenario", scenario.to_str().unwrap()])
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                Ok(Some(s)) => {
                    self.status = Some(s);
                    self.child = None;
                    false
                }
                Err(_) => false,
            },
        }
    }

    /// How it ended, once it has.
    pub fn status(&mut self) -> Option<ExitStatus> {
        self.running();
        self.status
    }

    /// SIGKILL (a power cut, the OOM killer) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }

    /// SIGTERM and wait (failing the test after a minute).
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
        self.wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("callboxd did not stop on SIGTERM:\n{}", self.log()))
    }

    /// Waits for it to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        holds_within(limit, || !self.running());
        self.status
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until its log has a line satisfying `f`.
    pub fn wait_log(&self, limit: Duration, what: &str, f: impl Fn(&str) -> bool) {
        let end = Instant::now() + limit;
        while !self.log().lines().any(&f) {
            assert!(
                Instant::now() < end,
                "gave up after {limit:?} waiting for {what} in the daemon's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// callbox-hq

/// Path of the `callbox-hq` binary: `$CALLBOX_HQ`, else next to `callboxd`
/// in the target directory.
pub fn hq() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLBOX_HQ") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let here = exe.parent().expect("target dir");
    let bin = [
        here.join("callbox-hq"),
        here.parent()
            .map_or_else(|| here.join("callbox-hq"), |d| d.join("callbox-hq")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| here.join("callbox-hq"));
    assert!(
        bin.is_file(),
        "{} not found: build it first (`cargo build --bins`) or set CALLBOX_HQ",
        bin.display()
    );
    bin
}

/// Runs `callbox-hq ARGS` with the broker's connection flags appended;
/// fails the test after two minutes.
pub fn hq_net(broker: &Broker, args: &[&str]) -> Output {
    hq_net_within(broker, args, Duration::from_secs(120))
}

/// [`hq_net`] that may take up to `limit` (the fleet simulator).
pub fn hq_net_within(broker: &Broker, args: &[&str], limit: Duration) -> Output {
    let mut c = Command::new(hq());
    c.args(args).args(broker.hq_args());
    crate::output_within(c, limit)
}

/// Runs `callbox-hq ARGS` (no broker: `export`, `gaps`).
pub fn hq_local(args: &[&str]) -> Output {
    let mut c = Command::new(hq());
    c.args(args);
    crate::output_within(c, Duration::from_secs(120))
}

/// `callbox-hq cmd BOX --site SITE CMD [ARGS]`: the parsed response (the
/// last JSON object it prints) and the raw output.
pub fn hq_cmd(broker: &Broker, site: &str, box_id: &str, extra: &[&str]) -> (Value, Output) {
    let mut args = vec!["cmd", box_id, "--site", site];
    args.extend_from_slice(extra);
    let out = hq_net(broker, &args);
    (last_json(&out.stdout), out)
}

/// The last line of `stdout` that parses as JSON, or the whole of it;
/// `Value::Null` if none does.
pub fn last_json(stdout: &[u8]) -> Value {
    let s = String::from_utf8_lossy(stdout);
    if let Ok(v) = serde_json::from_str::<Value>(s.trim()) {
        return v;
    }
    s.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or(Value::Null)
}

/// Lines of `stdout` that parse as JSON (a JSON array counts as its items).
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    let s = String::from_utf8_lossy(stdout);
    if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(s.trim()) {
        return a;
    }
    s.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .collect()
}

/// A long-running `callbox-hq` (`collect`, `watch`), killed on drop, its
/// output in a file.
#[derive(Debug)]
pub struct HqProcess {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl HqProcess {
    /// Starts `callbox-hq ARGS` with the broker's flags; output under `dir`.
    pub fn start(broker: &Broker, args: &[&str], dir: &Path, name: &str) -> HqProcess {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(hq())
            .args(args)
            .args(broker.hq_args())
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("starting callbox-hq");
        HqProcess {
            child: Some(child),
            out,
            err,
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }
}

impl Drop for HqProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `callbox-hq collect` with its database and recordings directory in a
/// directory of its own.
#[derive(Debug)]
pub struct Collector {
    /// The collector's directory (database, recordings, output).
    pub dir: tempfile::TempDir,
    proc: HqProcess,
    extra: Vec<String>,
    /// `--db`: the SQLite file in `dir`, or a PostgreSQL URL.
    db: String,
}

impl Collector {
    /// Starts a collector and waits until the broker has its subscription
    /// to records (so nothing published from now on misses it).
    pub fn start(broker: &Broker) -> Collector {
        Collector::start_with(broker, &[])
    }

    /// Same, with extra flags (`--group G`).
    pub fn start_with(broker: &Broker, extra: &[&str]) -> Collector {
        let c = Collector::spawned(broker, None, extra);
        c.wait_subscribed(broker, 1);
        c
    }

    /// A collector into the database `db` (a `postgres://` URL), with
    /// extra flags; `subscribed` is how many record subscriptions the
    /// broker has seen in all once it is up (collectors started before
    /// count).
    pub fn start_db(broker: &Broker, db: &str, extra: &[&str], subscribed: usize) -> Collector {
        let c = Collector::spawned(broker, Some(db), extra);
        c.wait_subscribed(broker, subscribed);
        c
    }

    fn spawned(broker: &Broker, db: Option<&str>, extra: &[&str]) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let db = db.map_or_else(
            || dir.path().join("hq.db").display().to_string(),
            str::to_string,
        );
        let proc = Collector::spawn(broker, dir.path(), &db, &extra, 0);
        Collector {
            dir,
            proc,
            extra,
            db,
        }
    }

    fn spawn(broker: &Broker, dir: &Path, db: &str, extra: &[String], n: u32) -> HqProcess {
        let mut args = vec!["collect".to_string(), "--db".into(), db.to_string()];
        if !extra.iter().any(|a| a == "--recordings") {
            args.push("--recordings".into());
            args.push(dir.join("recordings").display().to_string());
        }
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        HqProcess::start(broker, &args, dir, &format!("collect-{n}"))
    }

    /// Waits until the broker's log shows `n` subscriptions to records
    /// topics in all (one per collector start or reconnect).
    pub fn wait_subscribed(&self, broker: &Broker, n: usize) {
        let end = Instant::now() + Duration::from_secs(30);
        while broker.count_log(|l| l.contains("/records/")) < n {
            assert!(
                Instant::now() < end,
                "the collector did not subscribe to records within 30 s.\n--- collector stdout\n{}\n--- collector stderr\n{}\n--- broker log\n{}",
                self.proc.stdout(),
                self.proc.stderr(),
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills and starts it again on the same database.
    pub fn restart(&mut self, broker: &Broker) {
        self.proc.kill();
        let n = (1..)
            .find(|i| !self.dir.path().join(format!("collect-{i}.out")).exists())
            .unwrap();
        self.proc = Collector::spawn(broker, self.dir.path(), &self.db, &self.extra, n);
    }

    /// The collector's SQLite database (when it has one).
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("hq.db")
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Where it writes recordings.
    pub fn recordings(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }

    /// Its output so far (stdout then stderr), for messages.
    pub fn output(&self) -> String {
        format!(
            "--- collector stdout\n{}\n--- collector stderr\n{}",
            self.proc.stdout(),
            self.proc.stderr()
        )
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        self.proc.stdout()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// `callbox-hq export --db DB --stream STREAM`, one JSON value per record.
    pub fn export(&self, stream: &str) -> Vec<Value> {
        let out = hq_local(&["export", "--db", &self.db, "--stream", stream]);
        assert!(out.status.success(), "callbox-hq export: {}", text(&out));
        json_lines(&out.stdout)
    }

    /// `callbox-hq export --latest`: one record per `data.id`, the latest
    /// sent, as docs/mqtt.md tells headquarters to read call records.
    pub fn export_latest(&self, stream: &str) -> Vec<Value> {
        let out = hq_local(&["export", "--db", &self.db, "--stream", stream, "--latest"]);
        assert!(out.status.success(), "callbox-hq export: {}", text(&out));
        json_lines(&out.stdout)
    }

    /// `callbox-hq gaps --db DB --json`: its output (one line per gap).
    pub fn gaps(&self) -> Output {
        hq_local(&["gaps", "--db", &self.db, "--json"])
    }

    /// The file the collector stored for recording `id` (the first file
    /// under its recordings directory whose name starts with the id).
    pub fn recording_file(&self, id: &str) -> Option<PathBuf> {
        fn walk(dir: &Path, id: &str) -> Option<PathBuf> {
            for e in std::fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if let Some(f) = walk(&p, id) {
                        return Some(f);
                    }
                } else if p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(id) && !n.ends_with(".part"))
                {
                    return Some(p);
                }
            }
            None
        }
        walk(&self.recordings(), id).or_else(|| walk(self.dir.path(), id))
    }
}

/// The call record inside an exported record: the export may print the
/// records' envelopes (`{"seq","id","at","data"}`) or their `data` alone.
pub fn record_data(v: &Value) -> &Value {
    match v.get("data") {
        Some(d) if d.is_object() => d,
        _ => v,
    }
}

// ---------------------------------------------------------------------------
// Sniffing the broker

/// One message seen on the broker.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retained flag as delivered.
    pub retain: bool,
}

impl Msg {
    /// The payload as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// A plain MQTT client (rumqttc) subscribed to a filter, keeping every
/// message it gets; it reconnects and subscribes again after a broker
/// restart.
#[derive(Debug)]
pub struct Sniffer {
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// rustls client config for the TLS broker with `id` as client certificate.
pub fn rustls_client(ca: &Path, id: &Identity) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&id.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&id.key).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}

/// MQTT options for a harness client of `broker` (TLS: identity `hq`-like
/// `id`).
pub fn client_options(
    broker: &Broker,
    client_id: &str,
    id: Option<&Identity>,
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", broker.port());
    o.set_keep_alive(Duration::from_secs(5));
    o.set_max_packet_size(64 << 20, 64 << 20);
    if let Some(p) = &broker.pki {
        let id = id.cloned().unwrap_or_else(|| p.client(client_id));
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(rustls_client(&p.ca, &id))),
        ));
    }
    o
}

impl Sniffer {
    /// Subscribes to `filter` (QoS 1) on `broker` and waits for the SUBACK.
    pub fn start(broker: &Broker, filter: &str) -> Sniffer {
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let subscribed = Arc::new(AtomicBool::new(false));
        let id = format!("sniffer-{}-{}", std::process::id(), free_port());
        let opts = client_options(broker, &id, None);
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        let thread = std::thread::spawn({
            let (msgs, stop, subscribed, filter) = (
                msgs.clone(),
                stop.clone(),
                subscribed.clone(),
                filter.to_string(),
            );
            move || {
                use rumqttc::{Event, Packet, QoS};
                while !stop.load(Ordering::Relaxed) {
                    match conn.recv_timeout(Duration::from_millis(200)) {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                            subscribed.store(true, Ordering::SeqCst);
                        }
                        Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                            msgs.lock().unwrap().push(Msg {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(Ok(_)) | Err(rumqttc::RecvTimeoutError::Timeout) => {}
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(200)),
                        Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                let _ = client.try_disconnect();
            }
        });
        let s = Sniffer {
            msgs,
            stop,
            thread: Some(thread),
        };
        wait_until(
            Duration::from_secs(20),
            "the sniffer's subscription",
            || subscribed.load(Ordering::SeqCst),
        );
        s
    }

    /// Everything seen so far.
    pub fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Messages whose topic ends with `suffix`.
    pub fn on(&self, suffix: &str) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic.ends_with(suffix))
            .collect()
    }

    /// Waits for a message satisfying `f`.
    pub fn wait_for(&self, limit: Duration, what: &str, f: impl Fn(&Msg) -> bool) -> Msg {
        let end = Instant::now() + limit;
        loop {
            if let Some(m) = self.msgs.lock().unwrap().iter().find(|m| f(m)) {
                return m.clone();
            }
            assert!(
                Instant::now() < end,
                "gave up after {limit:?} waiting for {what}; seen topics: {:?}",
                self.msgs
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|m| m.topic.clone())
                    .collect::<std::collections::BTreeSet<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Memory

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/PID/status`); `None` once it has gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every `every` on a thread of its own.
#[derive(Debug)]
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (samples, stop) = (samples.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        samples.lock().unwrap().push((Instant::now(), kib));
                    }
                    std::thread::sleep(every);
                }
            }
        });
        RssSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The largest sample taken at or after `since` (KiB), if any.
    pub fn max_since(&self, since: Instant) -> Option<u64> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, k)| *k)
            .max()
    }

    /// The largest sample taken between `from` and `to` (KiB), if any.
    pub fn max_between(&self, from: Instant, to: Instant) -> Option<u64> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, k)| *k)
            .max()
    }

    /// Number of samples so far.
    pub fn len(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
