//! The notifier's config file (`callbox-hq notify --config notify.toml`,
//! docs/hq.md): the SMTP server, the SMS gateway and its request template,
//! the documents callers ask for, and the messages' templates per notify
//! kind and for voicemail.
//!
//! A template names values in braces (`{caller}`); a name the messages of
//! its kind cannot have is an error at start, naming the template, so a
//! typo never reaches a customer as `{calller}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Values every message has.
pub const COMMON: &[&str] = &[
    "site",
    "box",
    "caller",
    "call_id",
    "to",
    "message_id",
    "event",
];
/// Values a voicemail message adds.
pub const VOICEMAIL: &[&str] = &["mailbox", "duration_s"];

/// How to reach the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// STARTTLS, required (port 587).
    Starttls,
    /// None: only for a server on this machine.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    server: String,
    port: Option<u16>,
    tls: SmtpTls,
    ca: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: String,
    #[serde(default = "timeout", with = "humantime_serde_like")]
    timeout: Duration,
}

/// The SMTP server.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// PEM CA certificates to trust besides the system's.
    pub ca: Option<Vec<u8>>,
    pub credentials: Option<(String, String)>,
    pub from: String,
    pub timeout: Duration,
}

fn timeout() -> Duration {
    Duration::from_secs(10)
}

/// `"10s"`-style durations.
mod humantime_serde_like {
    use serde::Deserialize as _;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    url: String,
    #[serde(default = "post")]
    method: String,
    ca: Option<PathBuf>,
    #[serde(default = "json_type")]
    content_type: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    secret_file: Option<PathBuf>,
    body: String,
    #[serde(default = "timeout", with = "humantime_serde_like")]
    timeout: Duration,
}

fn post() -> String {
    "POST".into()
}
fn json_type() -> String {
    "application/json".into()
}

/// The SMS gateway: an HTTPS request made from templates.
#[derive(Debug, Clone)]
pub struct Sms {
    pub url: String,
    pub method: String,
    pub ca: Option<Vec<u8>>,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    /// `{secret}` in the headers and the body.
    pub secret: Option<String>,
    pub body: String,
    pub timeout: Duration,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKind {
    /// The notify fields this kind's messages carry.
    #[serde(default)]
    fields: Vec<String>,
    /// `email` or `sms` when the message's own `channel` field is missing.
    channel: Option<String>,
    email_subject: Option<String>,
    email_text: Option<String>,
    sms_text: Option<String>,
    /// The field naming the document to attach (a key of `[documents]`).
    attach: Option<String>,
}

/// How one notify kind (the IVR node's `event`) is told.
#[derive(Debug, Clone, Default)]
pub struct Kind {
    pub channel: Option<String>,
    pub email_subject: Option<String>,
    pub email_text: Option<String>,
    pub sms_text: Option<String>,
    pub attach: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVoicemail {
    /// The address for mailboxes not in `mailboxes`.
    to: Option<String>,
    #[serde(default)]
    mailboxes: BTreeMap<String, String>,
    subject: String,
    text: String,
}

/// Voicemail by e-mail, the message attached.
#[derive(Debug, Clone)]
pub struct Voicemail {
    pub to: Option<String>,
    pub mailboxes: BTreeMap<String, String>,
    pub subject: String,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    smtp: Option<RawSmtp>,
    sms: Option<RawSms>,
    #[serde(default)]
    documents: BTreeMap<String, PathBuf>,
    #[serde(default)]
    kind: BTreeMap<String, RawKind>,
    voicemail: Option<RawVoicemail>,
    #[serde(default = "attempts")]
    max_attempts: u32,
    #[serde(default = "retry_after", with = "humantime_serde_like")]
    retry_after: Duration,
}

fn retry_after() -> Duration {
    Duration::from_secs(30)
}

fn attempts() -> u32 {
    10
}

/// The notifier's config, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp: Option<Smtp>,
    pub sms: Option<Sms>,
    pub documents: BTreeMap<String, PathBuf>,
    pub kinds: BTreeMap<String, Kind>,
    pub voicemail: Option<Voicemail>,
    /// Attempts before a message is given up (`failed`).
    pub max_attempts: u32,
    /// The first wait after a failure, doubling up to an hour.
    pub retry_after: Duration,
}

/// The placeholder at the start of `s` (just after a `{`): its name and
/// length with the closing brace. A brace not followed by a name and `}`
/// is text (a JSON body's own braces).
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let end = s.find('}')?;
    let name = &s[..end];
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then_some((name, end + 1))
}

/// The names a template uses (`{name}`), in order.
pub fn names(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        rest = &rest[i + 1..];
        if let Some((name, len)) = placeholder(rest) {
            out.push(name.to_string());
            rest = &rest[len..];
        }
    }
    out
}

/// Fills `template` with `values`, each passed through `escape`.
pub fn fill(
    template: &str,
    values: &BTreeMap<String, String>,
    escape: impl Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        match placeholder(rest) {
            Some((name, len)) => {
                out.push_str(&escape(values.get(name).map_or("", String::as_str)));
                rest = &rest[len..];
            }
            None => out.push('{'),
        }
    }
    out.push_str(rest);
    out
}

fn check(errors: &mut Vec<String>, what: &str, template: &str, allowed: &[&str]) {
    for n in names(template) {
        if !allowed.contains(&n.as_str()) {
            errors.push(format!(
                "{what}: unknown field `{{{n}}}` (this message has: {})",
                allowed.join(", ")
            ));
        }
    }
}

fn read(p: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("{what} {}", p.display()))
}

fn secret(p: &Path, what: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(p)
        .with_context(|| format!("{what} {}", p.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {}: readable by others (mode {:o}); chmod 600 it",
            p.display(),
            mode & 0o777
        );
    }
    Ok(String::from_utf8(read(p, what)?)
        .with_context(|| format!("{what} {}: not UTF-8", p.display()))?
        .trim()
        .to_string())
}

fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

impl Config {
    /// Reads and checks `path`; every problem at once.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {}", path.display()))?;
        let raw: Raw =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut errors = Vec::new();
        let mut kinds = BTreeMap::new();
        for (name, k) in raw.kind {
            let mut allowed: Vec<&str> = COMMON.to_vec();
            allowed.extend(k.fields.iter().map(String::as_str));
            for (what, t) in [
                ("email_subject", &k.email_subject),
                ("email_text", &k.email_text),
                ("sms_text", &k.sms_text),
            ] {
                if let Some(t) = t {
                    check(&mut errors, &format!("[kind.{name}] {what}"), t, &allowed);
                }
            }
            if let Some(c) = &k.channel
                && c != "email"
                && c != "sms"
            {
                errors.push(format!("[kind.{name}] channel: `{c}` is not email or sms"));
            }
            if k.email_text.is_some() != k.email_subject.is_some() {
                errors.push(format!(
                    "[kind.{name}]: email_subject and email_text go together"
                ));
            }
            if let Some(a) = &k.attach
                && !k.fields.contains(a)
            {
                errors.push(format!(
                    "[kind.{name}] attach: `{a}` is not one of its fields"
                ));
            }
            kinds.insert(
                name,
                Kind {
                    channel: k.channel,
                    email_subject: k.email_subject,
                    email_text: k.email_text,
                    sms_text: k.sms_text,
                    attach: k.attach,
                },
            );
        }
        let voicemail = raw.voicemail.map(|v| {
            let mut allowed: Vec<&str> = COMMON.to_vec();
            allowed.extend(VOICEMAIL);
            check(&mut errors, "[voicemail] subject", &v.subject, &allowed);
            check(&mut errors, "[voicemail] text", &v.text, &allowed);
            Voicemail {
                to: v.to,
                mailboxes: v.mailboxes,
                subject: v.subject,
                text: v.text,
            }
        });
        let smtp = match raw.smtp {
            Some(s) => {
                if s.tls == SmtpTls::None && !loopback(&s.server) {
                    errors.push(format!(
                        "[smtp] tls = \"none\" is only for a server on this machine, not {}",
                        s.server
                    ));
                }
                let credentials = match (s.username, s.password_file) {
                    (Some(u), Some(p)) => Some((u, secret(&p, "[smtp] password_file")?)),
                    (None, None) => None,
                    _ => {
                        errors.push("[smtp]: username and password_file go together".into());
                        None
                    }
                };
                if s.from.parse::<lettre::message::Mailbox>().is_err() {
                    errors.push(format!("[smtp] from: `{}` is not an address", s.from));
                }
                Some(Smtp {
                    port: s.port.unwrap_or(match s.tls {
                        SmtpTls::Implicit => 465,
                        SmtpTls::Starttls => 587,
                        SmtpTls::None => 25,
                    }),
                    server: s.server,
                    tls: s.tls,
                    ca: s.ca.as_deref().map(|p| read(p, "[smtp] ca")).transpose()?,
                    credentials,
                    from: s.from,
                    timeout: s.timeout,
                })
            }
            None => None,
        };
        let sms = match raw.sms {
            Some(s) => {
                match super::send::Url::parse(&s.url) {
                    Ok(u) if !u.tls && !loopback(&u.host) => errors.push(format!(
                        "[sms] url: plain http:// is only for a gateway on this machine, not {}",
                        u.host
                    )),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("[sms] url: {e}")),
                }
                let mut allowed: Vec<&str> = COMMON.to_vec();
                allowed.extend(["text", "secret"]);
                check(&mut errors, "[sms] body", &s.body, &allowed);
                for (k, v) in &s.headers {
                    check(&mut errors, &format!("[sms] headers.{k}"), v, &allowed);
                }
                if !matches!(s.method.as_str(), "POST" | "PUT" | "GET") {
                    errors.push(format!(
                        "[sms] method: `{}` is not POST, PUT or GET",
                        s.method
                    ));
                }
                Some(Sms {
                    url: s.url,
                    method: s.method,
                    ca: s.ca.as_deref().map(|p| read(p, "[sms] ca")).transpose()?,
                    content_type: s.content_type,
                    headers: s.headers.into_iter().collect(),
                    secret: s
                        .secret_file
                        .as_deref()
                        .map(|p| secret(p, "[sms] secret_file"))
                        .transpose()?,
                    body: s.body,
                    timeout: s.timeout,
                })
            }
            None => None,
        };
        for (name, p) in &raw.documents {
            if !p.is_file() {
                errors.push(format!("[documents] {name}: {} is not a file", p.display()));
            }
        }
        if smtp.is_none() && sms.is_none() {
            errors.push("neither [smtp] nor [sms]: nothing could be sent".into());
        }
        if !errors.is_empty() {
            bail!("{}:\n  {}", path.display(), errors.join("\n  "));
        }
        Ok(Config {
            smtp,
            sms,
            documents: raw.documents,
            kinds,
            voicemail,
            max_attempts: raw.max_attempts.max(1),
            retry_after: raw.retry_after.max(Duration::from_secs(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_their_values_and_fill_them_escaped() {
        assert_eq!(names("Your {document}, {caller}"), ["document", "caller"]);
        assert_eq!(names(r#"{"to":"{to}","n":{"x":1}} {oops"#), ["to"]);
        let v: BTreeMap<String, String> = [("to".to_string(), "a\"b".to_string())].into();
        assert_eq!(
            fill(r#"{"to":"{to}","x":"{none}"}"#, &v, |s| s
                .replace('"', "\\\"")),
            r#"{"to":"a\"b","x":""}"#
        );
    }

    #[test]
    fn unknown_fields_and_plain_remote_servers_are_config_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("n.toml");
        std::fs::write(
            &p,
            r#"
[smtp]
server = "mail.example.cn"
tls = "none"
from = "callbox@example.cn"
[sms]
url = "http://sms.example.cn/send"
body = '{"to":"{to}","t":"{txt}"}'
[kind.send_document]
fields = ["document"]
email_subject = "Your {documnet}"
email_text = "{document}"
attach = "doc"
"#,
        )
        .unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        for want in [
            "[kind.send_document] email_subject: unknown field `{documnet}`",
            "[kind.send_document] attach: `doc`",
            "[sms] body: unknown field `{txt}`",
            "[smtp] tls = \"none\" is only for a server on this machine",
            "[sms] url: plain http://",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
    }
}
