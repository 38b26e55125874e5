//! Who may use the console and as what.
//!
//! - Users are in the store (`console_users`): a name, a role and the
//!   argon2id hash of their password. An agent's name is their agent
//!   number and their password a PIN of digits.
//! - There is no default password. The first admin logs in as `admin`
//!   with a one-time password: its hash waits in [`OTP_FILE`] (written by
//!   `callboxd console reset-admin`, or by provisioning from the label's
//!   password), and a session opened with it can do nothing but set the
//!   admin's own password, which removes the file.
//! - A session is a random token in an HttpOnly, Secure, SameSite=Strict
//!   cookie; it ends after `idle_timeout` unused or `session_max` after
//!   login. Every change also needs the session's CSRF token in the
//!   `X-CSRF-Token` header.
//! - Failed logins are counted per address; past `login_attempts` within
//!   [`LOGIN_WINDOW`] the address is refused until the window has passed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::{ConsoleConfig, LOGIN_WINDOW};
use crate::store::{ConsoleUser, ReadOnly, StoreError};

/// The first admin's one-time password hash, under the data directory.
pub const OTP_FILE: &str = "console/admin-otp";
/// The shortest password for an admin or a supervisor.
pub(super) const MIN_PASSWORD: usize = 10;
/// Most sessions at once; the oldest unused goes first.
const MAX_SESSIONS: usize = 500;
/// Addresses whose failures are remembered at once.
const MAX_TRACKED: usize = 10_000;

/// What a user may do. Ordered: each role may do what the ones before it
/// may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Role {
    /// Their own state and calls.
    Agent,
    /// The wallboard and every agent.
    Supervisor,
    /// Everything: users, the config, the audit log.
    Admin,
}

impl Role {
    pub(super) fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) user: String,
    pub(super) role: Role,
    pub(super) csrf: String,
    /// Opened with the one-time password: only a new password may be set.
    pub(super) must_change: bool,
    created: Instant,
    last: Instant,
}

/// Why a request's session does not count.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoSession {
    /// No cookie, or a token the box does not know.
    Missing,
    /// Unused too long, or too old.
    Expired,
}

/// Sessions and the login limit, in memory: a restart logs everyone out.
#[derive(Debug)]
pub(super) struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    idle: Duration,
    max: Duration,
    attempts: u32,
    data_dir: PathBuf,
}

/// The outcome of checking a name and password.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Checked {
    /// Right: the role, and whether it was the one-time password.
    Ok(Role, bool),
    /// Wrong name or password (never which).
    Wrong,
}

impl Auth {
    pub(super) fn new(config: &ConsoleConfig, data_dir: &Path) -> Auth {
        Auth {
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            idle: config.idle_timeout,
            max: config.session_max,
            attempts: config.login_attempts,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Seconds until `ip` may try again, when it has used its attempts.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = f.get_mut(&ip)?;
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
        {
            list.pop_front();
        }
        if list.len() < self.attempts as usize {
            return None;
        }
        let oldest = *list.front()?;
        Some((LOGIN_WINDOW - now.duration_since(oldest)).as_secs().max(1))
    }

    /// Counts a failed login from `ip`.
    pub(super) fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            // Forget addresses whose window has passed before a new one.
            let now = Instant::now();
            f.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
        }
        let list = f.entry(ip).or_default();
        list.push_back(Instant::now());
        while list.len() > self.attempts as usize {
            list.pop_front();
        }
    }

    /// Checks a name and password against the store and the one-time
    /// password. Slow on purpose (argon2id): call it off the runtime.
    pub(super) fn check(&self, name: &str, password: &str) -> Result<Checked, StoreError> {
        if name == "admin"
            && let Ok(hash) = std::fs::read_to_string(self.data_dir.join(OTP_FILE))
            && crate::secrets::matches(hash.trim(), password)
        {
            return Ok(Checked::Ok(Role::Admin, true));
        }
        let user = ReadOnly::open(&self.data_dir)?.console_user(name)?;
        Ok(match user {
            Some(u) if !u.disabled && crate::secrets::matches(&u.hash, password) => {
                match Role::parse(&u.role) {
                    Some(r) => Checked::Ok(r, false),
                    None => Checked::Wrong,
                }
            }
            Some(_) => Checked::Wrong,
            None => {
                // As slow as a real check, so a name's existence does not
                // show in the answer's time.
                let _ = crate::secrets::hash(password);
                Checked::Wrong
            }
        })
    }

    /// Opens a session; its token and CSRF token.
    pub(super) fn open(
        &self,
        user: &str,
        role: Role,
        must_change: bool,
    ) -> std::io::Result<(String, Session)> {
        let token = crate::secrets::random_hex(32)?;
        let now = Instant::now();
        let s = Session {
            user: user.to_string(),
            role,
            csrf: crate::secrets::random_hex(16)?,
            must_change,
            created: now,
            last: now,
        };
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_SESSIONS {
            self.prune(&mut all, now);
            if all.len() >= MAX_SESSIONS
                && let Some(oldest) = all
                    .iter()
                    .min_by_key(|(_, s)| s.last)
                    .map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
        }
        all.insert(token.clone(), s.clone());
        Ok((token, s))
    }

    fn prune(&self, all: &mut HashMap<String, Session>, now: Instant) {
        all.retain(|_, s| !self.expired(s, now));
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last) >= self.idle || now.duration_since(s.created) >= self.max
    }

    /// The session of `token`, marked used now.
    pub(super) fn session(&self, token: &str) -> Result<Session, NoSession> {
        let now = Instant::now();
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = all.get_mut(token) else {
            return Err(NoSession::Missing);
        };
        if self.expired(s, now) {
            all.remove(token);
            return Err(NoSession::Expired);
        }
        s.last = now;
        Ok(s.clone())
    }

    /// Ends one session.
    pub(super) fn close(&self, token: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// Ends every session of `user` but `keep` (a changed password, a
    /// removed user).
    pub(super) fn close_user(&self, user: &str, keep: Option<&str>) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t, s| s.user != user || Some(t.as_str()) == keep);
    }

    /// The session of `token` no longer needs a new password.
    pub(super) fn changed(&self, token: &str) {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(token)
        {
            s.must_change = false;
        }
    }

    /// Removes the one-time password once the admin has their own.
    pub(super) fn otp_used(&self) {
        let p = self.data_dir.join(OTP_FILE);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!("the one-time admin password {} stays: {e}", p.display());
        }
    }
}

/// Whether `password` is acceptable for `role`; the reason when not.
pub(super) fn password_rule(role: Role, password: &str) -> Result<(), String> {
    match role {
        Role::Agent => {
            let pins = crate::voicemail::PIN_DIGITS;
            if pins.contains(&password.len()) && password.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!(
                    "an agent's PIN is {} to {} digits",
                    pins.start(),
                    pins.end()
                ))
            }
        }
        _ if password.chars().count() < MIN_PASSWORD => {
            Err(format!("a password is at least {MIN_PASSWORD} characters"))
        }
        _ => Ok(()),
    }
}

/// A user row for the store, the password hashed.
pub(super) fn user_row(
    name: &str,
    role: Role,
    password: &str,
    now_ms: i64,
) -> Result<ConsoleUser, String> {
    Ok(ConsoleUser {
        name: name.to_string(),
        role: role.name().to_string(),
        hash: crate::secrets::hash(password)?,
        disabled: false,
        updated_ms: now_ms,
    })
}

/// `callboxd console reset-admin`: a new one-time admin password, its hash
/// written to [`OTP_FILE`] (0600); the password itself is returned to be
/// shown once and is kept nowhere.
pub fn reset_admin(data_dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let password = crate::secrets::readable_password(3).context("no randomness")?;
    let hash = crate::secrets::hash(&password).map_err(anyhow::Error::msg)?;
    let path = data_dir.join(OTP_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::fsutil::write_atomic(&path, format!("{hash}\n").as_bytes(), Some(0o600))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(dir: &Path) -> Auth {
        let cfg = super::super::config::check(
            &toml::from_str(
                "listen = [\"127.0.0.1:1\"]\nlogin_attempts = 3\nidle_timeout = \"1m\"",
            )
            .unwrap(),
            dir,
            &[],
        )
        .unwrap();
        Auth::new(&cfg, dir)
    }

    #[test]
    fn the_one_time_password_opens_a_session_that_must_change_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path());
        // No database yet, no file: nothing gets in.
        assert!(a.check("admin", "anything").is_err());
        let otp = reset_admin(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(OTP_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            a.check("admin", &otp).unwrap(),
            Checked::Ok(Role::Admin, true)
        );
        a.otp_used();
        assert!(!dir.path().join(OTP_FILE).exists());
    }

    #[test]
    fn failures_block_an_address_for_the_window_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path());
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        for _ in 0..2 {
            a.failed(ip);
            assert_eq!(a.blocked(ip), None);
        }
        a.failed(ip);
        let wait = a.blocked(ip).unwrap();
        assert!(wait > 290 && wait <= 300, "{wait}");
        assert_eq!(a.blocked(other), None);
    }

    #[test]
    fn sessions_end_when_closed_or_for_their_user() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path());
        let (t1, s) = a.open("sup", Role::Supervisor, false).unwrap();
        let (t2, _) = a.open("sup", Role::Supervisor, false).unwrap();
        assert_eq!(s.csrf.len(), 32);
        assert_eq!(a.session(&t1).unwrap().user, "sup");
        a.close_user("sup", Some(&t1));
        assert!(a.session(&t1).is_ok());
        assert_eq!(a.session(&t2).unwrap_err(), NoSession::Missing);
        a.close(&t1);
        assert_eq!(a.session(&t1).unwrap_err(), NoSession::Missing);
        assert!(password_rule(Role::Agent, "1234").is_ok());
        assert!(password_rule(Role::Agent, "12a4").is_err());
        assert!(password_rule(Role::Admin, "short").is_err());
    }
}
