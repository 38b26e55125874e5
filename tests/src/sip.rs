//! The SIP harness: the real daemon on loopback with SIP lines, and the
//! real SIP peers that call it (`sipp` from sip-tester as a carrier,
//! `baresip` as agents' phones). Ports are free loopback ports; every peer
//! is run with a time limit so a hang fails the test instead of CI.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{cmd, output_within};

/// Whether the SIP peers are installed (scripts/test-all installs them).
/// Without them a SIP test fails saying so: CI always has them.
pub fn require_peers() {
    for p in ["sipp", "baresip"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()));
        assert!(
            found,
            "`{p}` is not installed: run scripts/test-all, which installs sip-tester and baresip"
        );
    }
}

/// A free TCP port on loopback (bound and released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

/// A free UDP port on loopback (bound and released; the OS does not hand
/// it out again at once).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("binding a loopback UDP port")
        .port()
}

/// `n` free UDP ports in a row starting at an even one (an RTP range).
pub fn free_rtp_range(n: u16) -> (u16, u16) {
    loop {
        let base = (free_udp_port() & !1).max(20000);
        if base.checked_add(n).is_none() {
            continue;
        }
        let ok = (base..base + n).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if ok {
            return (base, base + n - 1);
        }
    }
}

/// A `callboxd run` in real time, its log in a file beside the site.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `callboxd run` on `config` with data in `data` and waits until
    /// its SIP port `sip_port` is taken.
    pub fn start(config: &Path, data: &Path, sip_port: u16) -> Daemon {
        Daemon::start_with(config, data, sip_port, &[])
    }

    /// As [`Daemon::start`], with more arguments (a `--scenario` for the
    /// simulated lines beside the SIP ones).
    pub fn start_with(config: &Path, data: &Path, sip_port: u16, extra: &[&str]) -> Daemon {
        let log = config.with_file_name("callboxd.log");
        let file = std::fs::File::create(&log).expect("creating the daemon log");
        let child = cmd()
            .args(["run", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting callboxd");
        let mut d = Daemon { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UdpSocket::bind(("127.0.0.1", sip_port)).is_ok() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("callboxd exited ({st}) before listening:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "callboxd never listened on {sip_port}:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it with SIGTERM and waits; it must exit cleanly.
    pub fn stop(mut self) -> String {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let st = self.child.wait().expect("waiting for callboxd");
        let log = self.log();
        assert!(st.success(), "callboxd exit {st}:\n{log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sipp command run in `dir` (where `pcap/` links to sip-tester's
/// captures, as its built-in scenarios expect).
pub fn sipp(dir: &Path) -> Command {
    let pcap = dir.join("pcap");
    if !pcap.exists() {
        std::os::unix::fs::symlink("/usr/share/sip-tester", &pcap).expect("linking sipp's pcaps");
    }
    let mut c = Command::new("sipp");
    c.current_dir(dir);
    c
}

/// sipp as the carrier at 127.0.0.1:`carrier` calling the box at
/// 127.0.0.1:`sip_port` (number 4008001234) with the scenario `file`
/// from tests/sip/; the caller adds the call count and limits.
pub fn sipp_carrier(dir: &Path, file: &str, sip_port: u16, carrier: u16) -> Command {
    let mut c = sipp(dir);
    c.arg("-sf")
        .arg(scenario(file))
        .arg(format!("127.0.0.1:{sip_port}"))
        .args([
            "-s",
            "4008001234",
            "-i",
            "127.0.0.1",
            "-p",
            &carrier.to_string(),
        ]);
    c
}

/// [`sipp_carrier`] placing one call, with sipp's media on loopback, and
/// giving up (a failure) after 60 s.
pub fn sipp_one_call(dir: &Path, file: &str, sip_port: u16, carrier: u16) -> Command {
    let mut c = sipp_carrier(dir, file, sip_port, carrier);
    c.args([
        "-mi",
        "127.0.0.1",
        "-m",
        "1",
        "-timeout",
        "60s",
        "-timeout_error",
    ]);
    c
}

/// Runs sipp to its end within `limit`.
pub fn run_sipp(c: Command, limit: Duration) -> Output {
    output_within(c, limit)
}

/// The scenario file `name` from tests/sip/.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sip").join(name)
}

/// baresip as an agent's SIP phone: registers as `user`/`password` to the
/// box at 127.0.0.1:`box_port`, answers calls at once, sends the WAV
/// `source` as its microphone and dumps what it hears and sends into its
/// directory (`dump-*-dec.wav`, `dump-*-enc.wav`).
#[derive(Debug)]
pub struct Phone {
    child: Child,
    /// Its config and dump directory.
    pub dir: PathBuf,
    ctrl: u16,
}

impl Phone {
    /// Starts baresip in `dir` (created) on a free port.
    pub fn start(dir: &Path, user: &str, password: &str, box_port: u16, source: &Path) -> Phone {
        Phone::with_account(
            dir,
            &format!(
                "<sip:{user}@127.0.0.1:{box_port}>;auth_pass={password};regint=60;answermode=auto;audio_codecs=PCMA,PCMU"
            ),
            free_udp_port(),
            source,
        )
    }

    /// Starts baresip with the account line `account` (baresip's
    /// `accounts` file) listening on `port`.
    pub fn with_account(dir: &Path, account: &str, port: u16, source: &Path) -> Phone {
        Phone::with_config(dir, account, port, source, "")
    }

    /// As [`Phone::with_account`], with `extra` lines in baresip's config
    /// (modules, TLS trust) before its accounts are read.
    pub fn with_config(dir: &Path, account: &str, port: u16, source: &Path, extra: &str) -> Phone {
        std::fs::create_dir_all(dir).expect("phone dir");
        let ctrl = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free TCP port")
            .port();
        let config = format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\nmodule_path /usr/lib/baresip/modules\n\
             audio_source aufile,{}\naudio_player aufile,/dev/null\naudio_alert aufile,/dev/null\n\
             {extra}module g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\n\
             module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\nsnd_path {}\n",
            source.display(),
            dir.display()
        );
        std::fs::write(dir.join("config"), config).expect("phone config");
        std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("phone account");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("phone log");
        let child = Command::new("timeout")
            .args(["120", "baresip", "-f"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting baresip");
        Phone {
            child,
            dir: dir.to_path_buf(),
            ctrl,
        }
    }

    /// Sends a command over baresip's ctrl_tcp (a netstring of JSON:
    /// `hold`, `resume`, `transfer` with a URI, `hangup`) and returns its
    /// answer.
    pub fn command(&self, command: &str, params: &str) -> String {
        use std::io::{Read, Write};
        let json = format!(r#"{{"command":"{command}","params":"{params}","token":"t"}}"#);
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.ctrl)).expect("baresip's ctrl_tcp");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{}:{json},", json.len()).as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// What the phone heard: its `dump-*-dec.wav`, as samples.
    pub fn heard(&self) -> Vec<i16> {
        let dump = std::fs::read_dir(&self.dir)
            .expect("phone dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("baresip wrote no dump in {}", self.dir.display()));
        let mut r = hound::WavReader::open(&dump).expect("reading the dump");
        r.samples::<i16>().map(Result::unwrap).collect()
    }

    /// Stops it (it unregisters).
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samples of one channel of a WAV file.
pub fn channel(file: &std::path::Path, ch: usize) -> Vec<i16> {
    let mut r = hound::WavReader::open(file).unwrap();
    let n = usize::from(r.spec().channels);
    r.samples::<i16>()
        .map(Result::unwrap)
        .skip(ch)
        .step_by(n)
        .collect()
}

/// Where `needle` (a prompt as the box plays it) best matches in `hay`
/// (what a far end heard), with the normalised correlation there. Both are
/// decimated by 4 first: a prompt is found by its envelope and formants,
/// not sample by sample (G.711 and the jitter buffer change those).
pub fn best_match(hay: &[i16], needle: &[i16]) -> (usize, f64) {
    let dec = |x: &[i16]| -> Vec<f64> {
        x.chunks(4)
            .map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / c.len() as f64)
            .collect()
    };
    let (h, n) = (dec(hay), dec(needle));
    let nn = n.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = (0, 0.0);
    for at in 0..h.len().saturating_sub(n.len()) {
        let w = &h[at..at + n.len()];
        let ww = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if ww < 1.0 {
            continue;
        }
        let dot: f64 = w.iter().zip(&n).map(|(a, b)| a * b).sum();
        let c = dot / (ww * nn);
        if c > best.1 {
            best = (at * 4, c);
        }
    }
    best
}

/// Root mean square of samples.
pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Waits until `n` calls have ended.
pub fn ended(
    site: &crate::Site,
    daemon: &Daemon,
    n: usize,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let recs = if site.data().join("callbox.db").exists() {
            site.records()
        } else {
            Vec::new()
        };
        if recs.iter().filter(|r| r["end"].is_string()).count() >= n {
            return recs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} calls did not end:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A site for the SIP tests: `[hal] backend`, `[sip]` listening on
/// 127.0.0.1:`sip_port` with `rtp_ports` free RTP ports, the `[[line]]`
/// tables `lines` and, after `[inbound]` (a 300 ms greeting), `rest`.
pub fn sip_site(
    backend: &str,
    sip_port: u16,
    rtp_ports: u16,
    lines: &str,
    rest: &str,
) -> crate::Site {
    let site = crate::Site::new(0, 0, 300, "");
    let (lo, hi) = free_rtp_range(rtp_ports);
    let cfg = std::fs::read_to_string(site.config()).expect("site config").replace(
        "[inbound]\n",
        &format!(
            "[hal]\nbackend = \"{backend}\"\n\n[sip]\nlisten = \"127.0.0.1:{sip_port}\"\nrtp_ports = \"{lo}-{hi}\"\n\n{lines}[inbound]\n"
        ),
    ) + rest;
    std::fs::write(site.config(), cfg).expect("writing the site config");
    site
}

/// Adds `keys` (TOML lines) to the `[sip]` section of a [`sip_site`].
pub fn add_sip_keys(site: &crate::Site, keys: &str) {
    let cfg = std::fs::read_to_string(site.config())
        .expect("site config")
        .replace("[sip]\n", &format!("[sip]\n{keys}"));
    std::fs::write(site.config(), cfg).expect("writing the site config");
}

/// A `[[line]]` table for [`sip_site`]: the trunk `carrier` to the peer at
/// 127.0.0.1:`port`, with the further `sip` keys `extra` (each starting
/// `, `).
pub fn carrier_line(port: u16, extra: &str) -> String {
    format!(
        "[[line]]\nid = \"carrier\"\nkind = \"trunk\"\nsip = {{ peer = \"127.0.0.1:{port}\"{extra} }}\n\n"
    )
}

/// The rest of a site (after `[inbound]`) whose outbound job `name` calls
/// 13700000001 `after` the start and says the code 4829 twice (outcome
/// `code_said`).
pub fn code_job(name: &str, after: &str) -> String {
    format!(
        r#"
[ivr]
language = "en"
timezone = "UTC"
start = "say-code"

[ivr.node.say-code]
type = "play"
prompts = ["system:your-code-is", "{{digits:code}}", "system:repeat", "{{digits:code}}"]
next = "bye"

[ivr.node.bye]
type = "hangup"
outcome = "code_said"

[[outbound]]
name = "{name}"
number = "13700000001"
start = "say-code"
after = "{after}"
vars = {{ code = "4829" }}
"#
    )
}

/// The English system prompt `name` (e.g. `digit-4`) as the box plays it.
pub fn system_prompt(name: &str) -> Vec<i16> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/prompts/system/en")
        .join(format!("{name}.wav"));
    callbox_hal::wav::load_prompt(&p, 8000).expect("a system prompt")
}

/// A carrier that answers every request it gets on its socket with
/// `200 OK` (the box's OPTIONS keep-alives) until dropped.
#[derive(Debug)]
pub struct Answering {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Answering {
    /// Starts answering on `carrier`.
    pub fn start(carrier: std::net::UdpSocket) -> Answering {
        use std::sync::atomic::{AtomicBool, Ordering};
        carrier
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a read timeout");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = carrier.recv_from(&mut buf) else {
                    continue;
                };
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let h = |name: &str| {
                    req.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                        .unwrap_or("")
                        .to_string()
                };
                let resp = format!(
                    "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=c1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                    h("Via"),
                    h("From"),
                    h("To"),
                    h("Call-ID"),
                    h("CSeq")
                );
                let _ = carrier.send_to(resp.as_bytes(), from);
            }
        });
        Answering {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
