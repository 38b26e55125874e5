//! Headquarters' database harness (issue 20): a real PostgreSQL cluster,
//! `initdb`'d in a temporary directory and listening on a free loopback
//! port, for tests that need the server's own behaviour (transactions,
//! constraints, crash recovery) rather than a stand-in.
//!
//! Each [`Postgres`] is a cluster of its own: a superuser [`USER`] with a
//! password generated for that cluster (scram-sha-256, no default password),
//! a database [`DATABASE`], unix sockets in the temporary directory. It keeps
//! `fsync` on, so [`Postgres::kill`] followed by [`Postgres::restart`] is a
//! real crash and a real recovery. Dropping it stops the server and removes
//! the directory.
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, not on
//! `PATH`), the highest version installed, else whatever `PATH` has.
//! PostgreSQL refuses to run as root: when the tests do, the server and
//! `initdb` run as `nobody`, through `setpriv`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::mqtt::free_port;
use crate::text;

/// The superuser every cluster has.
pub const USER: &str = "callbox";

/// The database every cluster has.
pub const DATABASE: &str = "callbox";

/// How long a start (or a crash recovery) may take before the test fails.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// Where Debian installs each major version's binaries.
const DEBIAN_PG: &str = "/usr/lib/postgresql";

/// The path of PostgreSQL program `name`: from the highest version under
/// `/usr/lib/postgresql`, else the bare name for `PATH` to resolve.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_PG)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.to_string();
            let key = v
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = e.path().join("bin").join(name);
            bin.is_file().then_some((key, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from(name), |(_, bin)| bin)
}

/// Whether this process runs as root (its `/proc` entry is root's).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `id -u nobody` and `id -g nobody`: the unprivileged user root runs the
/// server as (looked up, never created).
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "nobody"])
            .output()
            .expect("running id");
        assert!(out.status.success(), "id {flag} nobody: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// A password for one cluster: 144 random bits, hex (safe in a URL).
fn new_password() -> String {
    let mut bytes = [0u8; 18];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PostgreSQL cluster on a loopback port; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    /// `(uid, gid)` the server runs as when the tests run as root.
    owner: Option<(u32, u32)>,
    /// The postmaster, leader of its own process group.
    child: Option<Child>,
}

impl Postgres {
    /// A fresh cluster, running and accepting connections, with the
    /// database [`DATABASE`] created.
    pub fn start() -> Postgres {
        let owner = is_root().then(nobody);
        // Root's $TMPDIR may sit under a directory `nobody` cannot enter;
        // /tmp is world-traversable.
        let parent = if owner.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("callbox-pg-")
            .tempdir_in(parent)
            .expect("tempdir");
        let mut pg = Postgres {
            dir,
            port: free_port(),
            password: new_password(),
            owner,
            child: None,
        };
        // Only the server's user (and root) may read the cluster and its
        // sockets; tempfile leaves the directory to the umask.
        std::fs::set_permissions(pg.dir.path(), PermissionsExt::from_mode(0o700)).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(pg.dir.path(), Some(uid), Some(gid)).unwrap();
        }
        pg.initdb();
        pg.spawn();
        pg.psql_in("postgres", &format!("create database {DATABASE}"));
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log file (its stderr, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A command running `program` as the cluster's owner: `nobody` through
    /// `setpriv` when the tests run as root, else this process's user.
    fn as_owner(&self, program: &Path) -> Command {
        let mut c = match self.owner {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        // initdb and postgres complain when they cannot enter the working
        // directory (root's home, for `nobody`).
        c.current_dir(self.dir.path());
        c
    }

    fn initdb(&self) {
        let pwfile = self.dir.path().join("pwfile");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .unwrap();
            f.write_all(self.password.as_bytes()).unwrap();
        }
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let out = self
            .as_owner(&pg_bin("initdb"))
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            // The cluster's first files need no fsync: the crashes tests
            // make are process kills, which the page cache survives. The
            // server itself runs with fsync on.
            .arg("--no-sync")
            .stdin(Stdio::null())
            .output()
            .expect("running initdb (is PostgreSQL installed? scripts/test-all installs it)");
        std::fs::remove_file(&pwfile).unwrap();
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        let conf = format!(
            "\n# callbox-tests\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             shared_buffers = 32MB\n\
             max_connections = 50\n\
             # Segments in the data directory, not /dev/shm: a killed cluster\n\
             # leaves nothing behind once its directory goes.\n\
             dynamic_shared_memory_type = mmap\n",
            port = self.port,
            dir = self.dir.path().display()
        );
        File::options()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("appending to postgresql.conf");
    }

    /// Starts the postmaster and waits until it accepts connections.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let end = Instant::now() + READY_LIMIT;
        loop {
            let child = self
                .as_owner(&pg_bin("postgres"))
                .arg("-D")
                .arg(self.data())
                // Its own group, so that kill() takes the backends with it.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .expect("starting postgres");
            self.child = Some(child);
            let ready = loop {
                if !self.is_running() {
                    break false;
                }
                if self.accepting() {
                    break true;
                }
                if Instant::now() > end {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if ready {
                return;
            }
            self.kill();
            // A first attempt right after a kill may find the old backends
            // still holding the shared memory; they go within moments.
            assert!(
                Instant::now() < end,
                "postgres did not accept connections on port {} within {READY_LIMIT:?}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the server accepts connections (`pg_isready`): not while it
    /// starts or recovers from a crash.
    fn accepting(&self) -> bool {
        Command::new(pg_bin("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-t",
                "2",
                "-U",
                USER,
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/callbox`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password, self.port
        )
    }

    /// Whether the postmaster is up.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// A crash: SIGKILL to the postmaster and its backends at once, as when
    /// the machine dies. Nothing is flushed or shut down; the next start
    /// recovers from the WAL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = Pid::from_raw(c.id() as i32);
            // The whole group: a postmaster killed alone leaves backends
            // serving their connections, and a restart refused until they
            // notice. Only while the postmaster is unreaped, so the group
            // id cannot have been reused.
            if matches!(c.try_wait(), Ok(None)) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data directory and port (killing it
    /// first if it runs), waiting until it accepts connections: after a
    /// [`Postgres::kill`] that includes crash recovery.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A `psql` to the database `db` as the superuser with the password,
    /// quiet and unaligned (`-At`), stopping at the first error, reading no
    /// `.psqlrc`. Override `PGPASSWORD` to try another password.
    pub fn psql_command_in(&self, db: &str) -> Command {
        let mut c = Command::new(pg_bin("psql"));
        c.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", USER, "-d", db])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        c
    }

    /// [`Postgres::psql_command_in`] for the database [`DATABASE`].
    pub fn psql_command(&self) -> Command {
        self.psql_command_in(DATABASE)
    }

    /// Runs `sql` (statements and psql commands) in [`DATABASE`]; its
    /// output. Fails the test, with psql's errors, if any statement fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// [`Postgres::psql`] in the database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = run_with_input(self.psql_command_in(db).args(["-f", "-"]), sql);
        assert!(
            out.status.success(),
            "psql failed on:\n{sql}\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// After a kill the postmaster leaves its SysV interlock segment (the
    /// big shared memory is anonymous and goes with the processes); a
    /// restart would reuse it, a dropped cluster removes it here.
    fn remove_stale_segment(&self) {
        let Ok(pid_file) = std::fs::read_to_string(self.data().join("postmaster.pid")) else {
            return;
        };
        // Line 7: "KEY SHMID".
        if let Some(shmid) = pid_file
            .lines()
            .nth(6)
            .and_then(|l| l.split_whitespace().nth(1))
        {
            let _ = Command::new("ipcrm")
                .args(["-m", shmid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `c` with `input` on its stdin, to its end.
fn run_with_input(c: &mut Command, input: &str) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", c.get_program()));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    // A writer thread: psql may fill its stdout before it has read all of
    // a long script.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = Pid::from_raw(c.id() as i32);
            // SIGQUIT is `pg_ctl stop -m immediate`: no checkpoint, but the
            // postmaster stops its backends and frees its shared memory.
            let _ = kill(pid, Signal::SIGQUIT);
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let _ = c.wait();
        }
        self.remove_stale_segment();
    }
}
