//! The web console's harness: a real Chromium driven through Debian's
//! chromedriver (WebDriver, by fantoccini), a small HTTPS client that
//! trusts the box's certificate by its fingerprint only, for the API's bad
//! inputs, and the console tests' site with its first admin.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::Digest;

use crate::mqtt::{Daemon, free_port};
use crate::{Site, cmd, text};

/// Chromium under WebDriver, with its own profile; closed on drop.
pub struct Browser {
    driver: Child,
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

/// Where chromedriver is (Debian's `chromium-driver`).
pub fn chromedriver() -> PathBuf {
    for p in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!(
        "chromedriver is not installed: apt-get install chromium chromium-driver (scripts/test-all does)"
    );
}

impl Browser {
    /// A headless Chromium whose language is `lang` (`en-US`, `zh-CN`).
    /// It accepts the box's self-signed certificate, as a user who checked
    /// the fingerprint would.
    pub fn start(lang: &str) -> Browser {
        Browser::start_sized(lang, (1280, 900))
    }

    /// [`Browser::start`] with a window of `size` (a phone: 390 × 844).
    pub fn start_sized(lang: &str, size: (u32, u32)) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let end = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < end,
                "chromedriver did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--window-size={},{}", size.0, size.1),
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {"intl.accept_languages": lang},
            }
        });
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session through chromedriver");
        Browser {
            driver,
            rt,
            client: Some(client),
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).expect("navigating");
    }

    /// Waits up to 10 s for `css`, empties it and types `text` into it
    /// (found again if the page replaced it meanwhile).
    pub fn fill(&self, css: &str, text: &str) {
        for _ in 0..5 {
            let e = self.wait_for(css);
            let typed = self.rt.block_on(async {
                e.clear().await?;
                e.send_keys(text).await
            });
            match typed {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() => {}
                Err(e) => panic!("typing into `{css}`: {e}"),
            }
        }
        panic!("`{css}` kept being replaced before it could be typed into");
    }

    /// Waits up to 10 s for `css` and clicks it (found again if the page
    /// replaced it meanwhile).
    pub fn click(&self, css: &str) {
        for _ in 0..5 {
            let e = self.wait_for(css);
            match self.rt.block_on(e.click()) {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() => {}
                Err(e) => panic!("clicking `{css}`: {e}"),
            }
        }
        panic!("`{css}` kept being replaced before it could be clicked");
    }

    fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.rt
            .block_on(
                self.c()
                    .wait()
                    .at_most(Duration::from_secs(10))
                    .for_element(Locator::Css(css)),
            )
            .unwrap_or_else(|e| panic!("`{css}` did not appear within 10 s: {e}\n{}", self.body()))
    }

    /// Runs `script` (a function body that `return`s) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The text of the first element matching `css`, or `None`.
    pub fn text(&self, css: &str) -> Option<String> {
        let js = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            serde_json::to_string(css).unwrap()
        );
        self.eval(&js).as_str().map(str::to_string)
    }

    /// The page's visible text.
    pub fn body(&self) -> String {
        self.text("body").unwrap_or_default()
    }

    /// Polls every 20 ms until `f(self)` holds; the wall time (ms since
    /// the epoch, the page's `Date.now()`) when it first did.
    pub fn wait_until(&self, limit: Duration, what: &str, f: impl Fn(&Browser) -> bool) -> i64 {
        let end = Instant::now() + limit;
        loop {
            if f(self) {
                return self.eval("return Date.now();").as_i64().unwrap();
            }
            assert!(
                Instant::now() < end,
                "{what} within {limit:?}; the page says:\n{}",
                self.body()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---------------------------------------------------------------- sites

/// One trunk, one desk, queue `sales` with agent `a`, agent `b` with no
/// desk, the console on `port`, and `console` extra keys.
pub fn site(port: u16, console: &str) -> Site {
    site_with(1, port, console)
}

/// [`site`] with `trunks` trunk lines.
pub fn site_with(trunks: usize, port: u16, console: &str) -> Site {
    Site::with_config(
        trunks,
        1,
        &format!(
            r#"
[ivr]
start = "sales"

[ivr.node.sales]
type = "queue"
announce = []
on_overflow = "bye"

[ivr.node.bye]
type = "hangup"
outcome = "overflow"

[acd.agent.a]
station = "desk-1"
logged_in = true

[acd.agent.b]

[acd.queue.sales]
members = {{ a = 0, b = 0 }}

[console]
listen = ["127.0.0.1:{port}"]
{console}
"#
        ),
    )
}

/// `callboxd console reset-admin`: the one-time password.
pub fn reset_admin(site: &Site) -> String {
    let out = cmd()
        .args(["console", "reset-admin", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `callboxd console info`'s fingerprint line.
pub fn fingerprint(site: &Site) -> String {
    let out = cmd()
        .args(["console", "info", "--config"])
        .arg(site.config())
        .arg("--data")
        .arg(site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint in:\n{stdout}"))
        .to_string()
}

/// Waits until the daemon logs that its console listens.
pub fn listening(d: &Daemon) {
    d.wait_log(Duration::from_secs(30), "the console listening", |l| {
        l.contains("web console listening")
    });
}

/// The text of `css` in the page, empty when there is none.
pub fn cell(b: &Browser, css: &str) -> String {
    b.text(css).unwrap_or_default()
}

/// The admin's own password once [`own_admin`] has set it.
pub const ADMIN_PASSWORD: &str = "office-admin-pass";

/// Logs `api` in as admin with the one-time password and sets
/// [`ADMIN_PASSWORD`].
pub fn own_admin(api: &mut Api, otp: &str) {
    assert_eq!(api.login("admin", otp).status, 200);
    let body = format!("{{\"new\":\"{ADMIN_PASSWORD}\"}}");
    assert_eq!(api.send("POST", "/api/password", Some(&body)).status, 200);
}

/// Logs `b` in as admin with [`ADMIN_PASSWORD`] and waits for the page.
pub fn browser_login(b: &Browser, port: u16) {
    b.goto(&format!("https://127.0.0.1:{port}/"));
    b.fill("#login-name", "admin");
    b.fill("#login-password", ADMIN_PASSWORD);
    b.click("#login-submit");
    b.wait_until(Duration::from_secs(10), "logged in", |b| {
        b.text("#nav-reports").is_some()
    });
}

/// Logs `b` in as admin (password set through the API first).
pub fn admin_in_browser(b: &Browser, api: &mut Api, port: u16, otp: &str) {
    own_admin(api, otp);
    browser_login(b, port);
}

/// Trusts exactly one certificate, by its SHA-256 fingerprint.
#[derive(Debug)]
struct Pinned {
    sha256: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha2::Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An HTTPS client for the console that trusts only the certificate with
/// the fingerprint `callboxd console info` printed, and keeps one
/// session cookie and CSRF token.
#[derive(Debug)]
pub struct Api {
    port: u16,
    config: Arc<rustls::ClientConfig>,
    /// The session cookie (`name=value`), once logged in.
    pub cookie: Option<String>,
    /// The session's CSRF token, once logged in.
    pub csrf: Option<String>,
}

impl Api {
    /// A client for `127.0.0.1:port` pinning `fingerprint` (`AB:CD:…`).
    pub fn new(port: u16, fingerprint: &str) -> Api {
        let sha256: Vec<u8> = fingerprint
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("a hex fingerprint"))
            .collect();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { sha256, provider }))
            .with_no_client_auth();
        Api {
            port,
            config: Arc::new(config),
            cookie: None,
            csrf: None,
        }
    }

    /// Sends a request with the session (cookie and CSRF token) if any;
    /// `Err` when the TLS connection fails (a wrong certificate).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, String> {
        self.try_send_bytes(method, path, body.unwrap_or("").as_bytes(), extra)
    }

    /// [`Api::try_send`] with a binary body.
    pub fn try_send_bytes(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let name = ServerName::try_from("callbox").unwrap();
        let conn =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, &mut tcp);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        if let Some(c) = &self.cookie {
            req += &format!("Cookie: {c}\r\n");
        }
        if let Some(t) = &self.csrf
            && !extra
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-csrf-token"))
        {
            req += &format!("X-CSRF-Token: {t}\r\n");
        }
        for (k, v) in extra {
            req += &format!("{k}: {v}\r\n");
        }
        if !body.is_empty()
            && !extra
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req += "Content-Type: application/json\r\n";
        }
        // A large body waits for the server's go-ahead, as curl does: a
        // server that refuses it (413) answers before it is sent.
        let expect = body.len() > 1024 * 1024;
        if expect {
            req += "Expect: 100-continue\r\n";
        }
        req += &format!("Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = req.into_bytes();
        let mut raw = Vec::new();
        if expect {
            tls.write_all(&bytes).map_err(|e| e.to_string())?;
            let head = read_head(&mut tls)?;
            if !head.starts_with(b"HTTP/1.1 100") {
                raw = head;
            } else {
                bytes.clear();
            }
        }
        if raw.is_empty() {
            bytes.extend_from_slice(body);
            // A server that refuses a body early may close before it is
            // all sent: its answer is still there to read.
            let wrote = tls.write_all(&bytes);
            match tls.read_to_end(&mut raw) {
                Ok(_) => {}
                Err(_) if !raw.is_empty() => {}
                Err(e) => return Err(wrote.err().map_or_else(|| e.to_string(), |w| w.to_string())),
            }
        } else {
            let _ = tls.read_to_end(&mut raw);
        }
        Ok(parse(&raw))
    }

    /// Opens `GET path` and returns the connection as it stands after the
    /// request, to read a stream (server-sent events) from.
    pub fn stream(&self, path: &str) -> Result<impl Read + Send + use<>, String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let name = ServerName::try_from("callbox").unwrap();
        let conn =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", self.port);
        if let Some(c) = &self.cookie {
            req += &format!("Cookie: {c}\r\n");
        }
        req += "\r\n";
        tls.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        Ok(tls)
    }

    /// [`Api::try_send`], failing the test on a TLS error.
    pub fn send(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.try_send(method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Logs in; keeps the cookie and the CSRF token on success.
    pub fn login(&mut self, name: &str, password: &str) -> Answer {
        let body = serde_json::json!({"name": name, "password": password}).to_string();
        let a = self.send("POST", "/api/login", Some(&body));
        if a.status == 200 {
            let cookie = a.header("set-cookie").expect("a session cookie");
            self.cookie = Some(cookie.split(';').next().unwrap().to_string());
            self.csrf = a.json()["csrf"].as_str().map(str::to_string);
        }
        a
    }
}

/// Reads up to the end of a response head.
fn read_head(r: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match r.read(&mut byte) {
            Ok(0) => return Err("the connection closed before an answer".into()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(head)
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}
