//! The `[console]` part of the site config: the box's web console. Without
//! the section nothing listens.
//!
//! ```toml
//! [console]
//! listen = ["0.0.0.0:443"]          # HTTPS, one or more addresses
//! redirect = ["0.0.0.0:80"]         # plain HTTP that only redirects (optional)
//! cert = "/data/identity/console.pem"  # optional: else a self-signed one
//! key = "/data/identity/console.key"   # is made on first start
//! idle_timeout = "15m"
//! ```
//!
//! Every other key has a default (docs/config.md, "Web console").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callbox_hal::diag::parse_duration;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsole {
    listen: Vec<String>,
    #[serde(default)]
    redirect: Vec<String>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    idle_timeout: Option<String>,
    #[serde(default)]
    session_max: Option<String>,
    #[serde(default)]
    login_attempts: Option<u32>,
    #[serde(default)]
    wrap_codes: std::collections::BTreeMap<String, RawWrapCode>,
    #[serde(default)]
    scripts: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawWrapCode {
    Label(String),
    Full {
        label: String,
        #[serde(default)]
        lead: bool,
    },
}

/// A wrap-up code agents choose after a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WrapCode {
    /// The code (digits: the same code can be keyed on a phone).
    pub code: String,
    /// What it means, as the form shows it.
    pub label: String,
    /// A lead for headquarters: the call goes to the `lead` stream too.
    pub lead: bool,
}

/// A checked `[console]`.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// HTTPS addresses.
    pub listen: Vec<SocketAddr>,
    /// Plain-HTTP addresses that answer with a redirect to HTTPS.
    pub redirect: Vec<SocketAddr>,
    /// The certificate and key files (PEM), when the site gives them;
    /// otherwise the box makes its own in the data directory.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after its login, used or not.
    pub session_max: Duration,
    /// Failed logins from one address within [`LOGIN_WINDOW`] before
    /// further tries are refused until it has passed.
    pub login_attempts: u32,
    /// The wrap-up form's codes, in code order.
    pub wrap_codes: Vec<WrapCode>,
    /// Call scripts by queue (or campaign) name, with `{caller}`,
    /// `{caller_name}`, `{queue}`, `{agent}` and the call's recordable
    /// variables filled in.
    pub scripts: std::collections::BTreeMap<String, String>,
}

/// The window failed logins are counted over.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);

/// Shorter timeouts would log people out between two clicks.
const MIN_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_DEFAULT: Duration = Duration::from_secs(15 * 60);
const SESSION_MAX_DEFAULT: Duration = Duration::from_secs(12 * 3600);
const ATTEMPTS_DEFAULT: u32 = 5;

/// Checks the section; problems come back as `(key path, message)` pairs.
/// Relative paths are taken from `base` (the config file's directory);
/// `queues` are the names a script may be for (queues and campaigns).
pub(crate) fn check(
    raw: &RawConsole,
    base: &Path,
    queues: &[String],
) -> Result<ConsoleConfig, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |k: &str, m: String| errs.push((format!("console.{k}"), m));
    let addrs = |k: &str, list: &[String], err: &mut dyn FnMut(&str, String)| {
        let mut out = Vec::new();
        for a in list {
            match a.parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => err(
                    k,
                    format!(
                        "`{a}` is not an address and port such as \"0.0.0.0:443\" or \"[::]:443\""
                    ),
                ),
            }
        }
        out
    };
    let listen = addrs("listen", &raw.listen, &mut err);
    let redirect = addrs("redirect", &raw.redirect, &mut err);
    if raw.listen.is_empty() {
        err(
            "listen",
            "name at least one address for the console, e.g. [\"0.0.0.0:443\"]; remove [console] to turn it off".into(),
        );
    }
    for r in &redirect {
        if listen.contains(r) {
            err("redirect", format!("{r} is also in `listen`"));
        }
    }
    let cert = match (&raw.cert, &raw.key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (c, k) = (base.join(c), base.join(k));
            for (name, p) in [("cert", &c), ("key", &k)] {
                match std::fs::metadata(p) {
                    Ok(m) if m.len() == 0 => err(name, format!("{} is empty", p.display())),
                    Ok(_) => {}
                    Err(e) => err(name, format!("cannot read {}: {e}", p.display())),
                }
            }
            if let Ok(m) = std::fs::metadata(&k) {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o077 != 0 {
                    err(
                        "key",
                        format!(
                            "{} can be read by other users (mode {:o}); make it 0600",
                            k.display(),
                            m.permissions().mode() & 0o777
                        ),
                    );
                }
            }
            Some((c, k))
        }
        _ => {
            err(
                "cert",
                "give both `cert` and `key`, or neither (the box then makes its own certificate)"
                    .into(),
            );
            None
        }
    };
    let mut duration = |k: &str, v: &Option<String>, default: Duration| match v {
        None => default,
        Some(s) => match parse_duration(s) {
            Ok(d) if d >= MIN_TIMEOUT => d,
            Ok(_) => {
                err(k, format!("`{s}` is under {MIN_TIMEOUT:?}"));
                default
            }
            Err(e) => {
                err(k, e);
                default
            }
        },
    };
    let idle_timeout = duration("idle_timeout", &raw.idle_timeout, IDLE_DEFAULT);
    let session_max = duration("session_max", &raw.session_max, SESSION_MAX_DEFAULT);
    let login_attempts = raw.login_attempts.unwrap_or(ATTEMPTS_DEFAULT);
    if !(1..=100).contains(&login_attempts) {
        err(
            "login_attempts",
            format!("{login_attempts} is out of range (1 to 100)"),
        );
    }
    let mut wrap_codes = Vec::new();
    for (code, w) in &raw.wrap_codes {
        let (label, lead) = match w {
            RawWrapCode::Label(l) => (l.clone(), false),
            RawWrapCode::Full { label, lead } => (label.clone(), *lead),
        };
        if code.is_empty() || code.len() > 8 || !code.chars().all(|c| c.is_ascii_digit()) {
            err(
                &format!("wrap_codes.{code}"),
                "a wrap-up code is 1 to 8 digits (agents can also key it on the phone)".into(),
            );
        } else if label.trim().is_empty() {
            err(&format!("wrap_codes.{code}"), "the label is empty".into());
        } else {
            wrap_codes.push(WrapCode {
                code: code.clone(),
                label,
                lead,
            });
        }
    }
    for (name, text) in &raw.scripts {
        if !queues.contains(name) {
            err(
                &format!("scripts.{name}"),
                format!("`{name}` is no queue or campaign of this site"),
            );
        } else if text.len() > 16 * 1024 {
            err(
                &format!("scripts.{name}"),
                "a script is at most 16 KiB".into(),
            );
        }
    }
    if errs.is_empty() {
        Ok(ConsoleConfig {
            wrap_codes,
            scripts: raw.scripts.clone(),
            listen,
            redirect,
            cert,
            idle_timeout,
            session_max,
            login_attempts,
        })
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(t: &str) -> RawConsole {
        toml::from_str(t).unwrap()
    }

    #[test]
    fn defaults_and_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let c = check(&raw("listen = [\"127.0.0.1:8443\"]"), dir.path(), &[]).unwrap();
        assert_eq!(c.idle_timeout, IDLE_DEFAULT);
        assert!(c.cert.is_none());
        let e = check(
            &raw(
                "listen = [\"nowhere\"]\nredirect = [\"127.0.0.1:1\"]\ncert = \"c.pem\"\nidle_timeout = \"2s\"\nlogin_attempts = 0",
            ),
            dir.path(),
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "console.listen",
                "console.cert",
                "console.idle_timeout",
                "console.login_attempts"
            ],
            "{e:?}"
        );
    }
}
