//! The notifier (`callbox-hq notify`) end to end: a real `callboxd` whose
//! callers ask for the price list by SMS and by e-mail and leave a
//! voicemail; its records and the recording reach a real collector through
//! a real mosquitto; the notifier delivers them to a real SMTP server
//! (aiosmtpd, STARTTLS and AUTH) and an HTTPS SMS gateway. The server
//! refuses the first message and the gateway lets the first request time
//! out: both are retried, each message arrives once, with its attachment,
//! and a notifier killed and started again sends nothing twice. The
//! dashboard shows each message's delivery.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callbox_tests::console::Api;
use callbox_tests::hq::{add_user, serve_with};
use callbox_tests::mqtt::{Broker, Collector, Daemon, Pki, add_uplink, free_port, hq, outbox_len};
use callbox_tests::{Site, text, write_tone_hz};
use serde_json::Value;

const BOX: &str = "box-n1";

/// The test site; its recordings sealed to `recipient` (age).
fn site(recipient: &str) -> Site {
    let site = Site::with_config(
        1,
        1,
        &(format!("[recording]\nrecipients = [\"{recipient}\"]\n\n")
            + r#"
[ivr]
start = "main"

[ivr.node.main]
type = "menu"
greeting = "system:beep"
first_digit_timeout = "5s"
options = { "1" = "message", "6" = "by-sms", "7" = "by-mail" }

[ivr.node.message]
type = "voicemail"
mailbox = "sales"
max_length = "20s"
next = "bye"

[ivr.node.by-sms]
type = "notify"
event = "send_document"
fields = { document = "price-list", channel = "sms", to = "{caller}" }
next = "bye"

[ivr.node.by-mail]
type = "notify"
event = "send_document"
fields = { document = "price-list", channel = "email", to = "buyer-{caller}@example.cn" }
next = "bye"

[ivr.node.bye]
type = "hangup"

"#),
    );
    write_tone_hz(&site.dir.path().join("message.wav"), 1400.0, 3_000);
    site
}

struct Peers(Child);

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(prefix) && !n.ends_with(".tmp")
        })
        .collect();
    v.sort();
    v
}

struct Notifier(Child);

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn notifier(db: &str, config: &Path, recordings: &Path, identity: &Path, out: &Path) -> Notifier {
    Notifier(
        Command::new(hq())
            .args(["notify", "--db", db, "--name", "n1"])
            .arg("--identity")
            .arg(identity)
            .arg("--config")
            .arg(config)
            .arg("--recordings")
            .arg(recordings)
            .stdout(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(out)
                    .unwrap(),
            )
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(out.with_extension("err"))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

fn state(db: &Path) -> Vec<Value> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c
        .prepare("SELECT id, kind, state, attempts, channel, recipient, last_error, answer FROM notifications ORDER BY id")
        .unwrap();
    s.query_map([], |r| {
        Ok(serde_json::json!({
            "id": r.get::<_, String>(0)?, "kind": r.get::<_, String>(1)?, "state": r.get::<_, String>(2)?,
            "attempts": r.get::<_, i64>(3)?, "channel": r.get::<_, Option<String>>(4)?,
            "recipient": r.get::<_, Option<String>>(5)?, "last_error": r.get::<_, Option<String>>(6)?,
            "answer": r.get::<_, Option<String>>(7)?,
        }))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The body of the MIME part whose headers name `filename`, decoded by
/// its Content-Transfer-Encoding.
fn attachment(mail: &str, filename: &str) -> Vec<u8> {
    use base64::Engine as _;
    // `filename="…"`, or RFC 2231's `filename*0="…"` for a long one.
    let at = mail
        .find(&format!("{filename}\""))
        .unwrap_or_else(|| panic!("{filename} in {mail:.2000}"));
    // The part's headers: from the boundary line before to the blank line.
    let start = mail[..at].rfind("\r\n--").unwrap();
    let part = &mail[start..];
    let head_end = part.find("\r\n\r\n").unwrap();
    let head = part[..head_end].to_ascii_lowercase();
    let body = &part[head_end + 4..];
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    if head.contains("content-transfer-encoding: base64") {
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    } else if head.contains("content-transfer-encoding: quoted-printable") {
        let mut out = Vec::new();
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'=' if bytes.get(i + 1) == Some(&b'\r') => i += 3,
                b'=' => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    } else {
        body.as_bytes().to_vec()
    }
}

#[test]
fn callers_requests_and_voicemail_are_delivered_once_by_mail_and_sms_through_failures_and_a_restart()
 {
    let broker = Broker::start();
    // Headquarters' key: the box seals its recordings to it.
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("hq.key");
    let keygen = Command::new(hq())
        .args(["keygen", "--out"])
        .arg(&identity)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));
    let recipient = String::from_utf8(keygen.stdout).unwrap().trim().to_string();
    let site = site(&recipient);
    add_uplink(
        &site,
        &broker.uplink(BOX, "e2e_ack = true\nack_timeout = \"3s\"\n"),
    );
    let calls = site.write(
        "calls.toml",
        r#"
[[call]]
at = "1s"
from = "13900000006"
to = "4001"
script = [{ wait = "2s" }, { press = "6", via = "signal" }]
hangup_after = "6s"

[[call]]
at = "10s"
from = "13900000007"
to = "4001"
script = [{ wait = "2s" }, { press = "7", via = "signal" }]
hangup_after = "6s"

[[call]]
at = "20s"
from = "13900000001"
to = "4001"
script = [{ wait = "2s" }, { press = "1", via = "signal" }, { wait = "2s" }, { play = "message.wav" }]
hangup_after = "10s"
"#,
    );
    let out = site.run_fast(&calls);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(site.table("voicemail").len(), 1, "{}", text(&out));

    let col = Collector::start(&broker);
    let mut d = Daemon::start(&site, &[]);
    let end = Instant::now() + Duration::from_secs(120);
    let stored = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM recordings", [], |r| r.get(0)))
            .unwrap_or(0)
    };
    while outbox_len(&site.data()) > 0 || stored(&col.db()) == 0 {
        assert!(
            Instant::now() < end && d.running(),
            "not delivered:\n{}\n{}",
            d.log(),
            col.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(d.stop().success(), "{}", d.log());

    // The peers: the SMTP server refuses the first message, the gateway
    // lets the first request hang past the notifier's timeout.
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let got = dir.path().join("got");
    std::fs::create_dir(&got).unwrap();
    let (smtp_port, http_port) = (free_port(), free_port());
    let peers = Peers(
        Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("support/notify_peers.py"))
            .args([
                "--smtp-port",
                &smtp_port.to_string(),
                "--http-port",
                &http_port.to_string(),
            ])
            .arg("--cert")
            .arg(&pki.server.cert)
            .arg("--key")
            .arg(&pki.server.key)
            .arg("--out")
            .arg(&got)
            .args([
                "--password",
                "smtp-secret-1",
                "--smtp-reject",
                "1",
                "--http-hang",
                "1",
                "--hang",
                "4",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("peers.err")).unwrap())
            .spawn()
            .expect("python3 with aiosmtpd (apt: python3-aiosmtpd)"),
    );
    let ready = Instant::now() + Duration::from_secs(20);
    while !got.join("ready").exists() {
        assert!(
            Instant::now() < ready,
            "peers: {}",
            std::fs::read_to_string(dir.path().join("peers.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = peers;

    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let pass = secret("smtp.pass", "smtp-secret-1\n");
    let token = secret("sms.secret", "gw-token-42\n");
    let pdf = dir.path().join("price-list.pdf");
    std::fs::write(&pdf, b"%PDF-1.4 price list 2026\n%%EOF\n").unwrap();
    let config = dir.path().join("notify.toml");
    std::fs::write(
        &config,
        format!(
            r#"
retry_after = "1s"

[smtp]
server = "localhost"
port = {smtp_port}
tls = "starttls"
ca = "{ca}"
username = "callbox"
password_file = "{pass}"
from = "Callbox HQ <callbox@example.cn>"
timeout = "3s"

[sms]
url = "https://localhost:{http_port}/v1/send"
ca = "{ca}"
headers = {{ Authorization = "Bearer {{secret}}" }}
secret_file = "{token}"
body = '{{"to":"{{to}}","text":"{{text}}","ref":"{{message_id}}"}}'
timeout = "1s"

[documents]
price-list = "{pdf}"

[kind.send_document]
fields = ["document", "channel"]
email_subject = "Your {{document}}"
email_text = "Hello {{caller}}, the {{document}} you asked for is attached."
sms_text = "价目表 price list: https://example.cn/{{document}}"
attach = "document"

[voicemail]
mailboxes = {{ sales = "sales@example.cn" }}
subject = "Voicemail for {{mailbox}} from {{caller}} ({{duration_s}} s)"
text = "A {{duration_s}}-second message from {{caller}} is attached."
"#,
            ca = pki.ca.display(),
            pass = pass.display(),
            token = token.display(),
            pdf = pdf.display(),
        ),
    )
    .unwrap();
    let db = col.db();
    let db_s = db.display().to_string();
    let log = dir.path().join("notify.out");
    let mut n = notifier(&db_s, &config, &col.recordings(), &identity, &log);

    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let s = state(&db);
        if s.len() == 3 && s.iter().all(|m| m["state"] == "sent") {
            break;
        }
        assert!(
            Instant::now() < end,
            "{s:#?}\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = state(&db);
    // The refused and the timed-out message each took a second attempt,
    // their first error kept.
    let retried: Vec<&Value> = s.iter().filter(|m| m["attempts"] == 2).collect();
    assert_eq!(retried.len(), 2, "{s:#?}");
    assert!(
        s.iter()
            .any(|m| m["last_error"].as_str().is_some_and(|e| e.contains("451"))),
        "{s:#?}"
    );
    assert!(
        s.iter().any(|m| m["channel"] == "sms"
            && m["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("v1/send"))),
        "{s:#?}"
    );

    // A notifier killed and started again sends nothing twice.
    let _ = n.0.kill();
    let _ = n.0.wait();
    n = notifier(&db_s, &config, &col.recordings(), &identity, &log);
    std::thread::sleep(Duration::from_secs(3));
    drop(n);
    let mails = files(&got, "mail-");
    let sms = files(&got, "sms-");
    assert_eq!((mails.len(), sms.len()), (2, 1), "{mails:?} {sms:?}");

    let sms: Value = serde_json::from_slice(&std::fs::read(&sms[0]).unwrap()).unwrap();
    assert_eq!(sms["path"], "/v1/send");
    assert_eq!(sms["headers"]["authorization"], "Bearer gw-token-42");
    let body: Value = serde_json::from_str(sms["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["to"], "13900000006");
    assert_eq!(
        body["text"],
        "价目表 price list: https://example.cn/price-list"
    );
    assert_eq!(body["ref"].as_str().unwrap().len(), 32);

    let mails: Vec<String> = mails
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    let doc = mails
        .iter()
        .find(|m| m.contains("X-Envelope-To: buyer-13900000007@example.cn"))
        .expect("the price list by mail");
    assert!(doc.contains("Subject: Your price-list"), "{doc}");
    assert_eq!(
        attachment(doc, "price-list.pdf"),
        std::fs::read(&pdf).unwrap()
    );
    let vm = mails
        .iter()
        .find(|m| m.contains("X-Envelope-To: sales@example.cn"))
        .expect("the voicemail by mail");
    assert!(vm.contains("from 13900000001"), "{vm}");
    let rec_id = site.table("voicemail")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wav = attachment(vm, &format!("voicemail-{rec_id}.wav"));
    assert!(
        wav.starts_with(b"RIFF") && wav.len() > 8000 * 2,
        "{} bytes",
        wav.len()
    );

    // The dashboard shows each message's delivery.
    add_user(&db_s, "olivia", "viewer", "fleet-viewer-pass");
    let token = dir.path().join("metrics.token");
    std::fs::write(&token, "metrics-token-0123456789").unwrap();
    let rec_dir = col.recordings().display().to_string();
    let id_file = identity.display().to_string();
    let s = serve_with(
        &db_s,
        dir.path(),
        &pki,
        &token,
        &["--recordings", &rec_dir, "--identity", &id_file],
    );
    let mut api = Api::new(s.port, &s.fingerprint);
    assert_eq!(api.login("olivia", "fleet-viewer-pass").status, 200);
    let shown = api.send("GET", "/api/notifications", None).json();
    assert_eq!(shown["counts"]["sent"], 3, "{shown:#}");
    let list = shown["notifications"].as_array().unwrap();
    let sms = list.iter().find(|m| m["channel"] == "sms").unwrap();
    assert_eq!(sms["recipient"], "13900000006");
    assert_eq!(sms["attempts"], 2);
    assert!(sms["answer"].as_str().unwrap().starts_with("200 "), "{sms}");
    assert!(
        sms["last_error"].as_str().unwrap().contains("v1/send"),
        "{sms}"
    );
    let vm = list.iter().find(|m| m["kind"] == "voicemail").unwrap();
    assert_eq!(vm["recipient"], "sales@example.cn");
    assert!(vm["answer"].as_str().unwrap().starts_with("250"), "{vm}");
    // The box sealed the recording; the dashboard plays it decrypted, the
    // same audio the e-mail carried.
    let sealed = std::fs::read_dir(col.recordings().join(BOX))
        .unwrap()
        .flatten()
        .any(|e| e.path().to_string_lossy().ends_with(".wav.age"));
    assert!(sealed, "the collector holds the sealed recording");
    let played = api.send("GET", &format!("/api/recordings/{rec_id}"), None);
    assert_eq!(played.status, 200);
    assert_eq!(played.header("content-type"), Some("audio/wav"));
    assert_eq!(played.body, wav);
    assert_eq!(api.send("GET", "/api/recordings/nope", None).status, 404);
}
