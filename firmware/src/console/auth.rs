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
//! - Sessions, CSRF tokens and the login limit are the web crate's
//!   ([`callbox_web::session`]): `idle_timeout`, `session_max` and
//!   `login_attempts` within [`LOGIN_WINDOW`] set them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use callbox_web::session::{LoginLimit, Sessions};

use serde::Serialize;

use super::config::{ConsoleConfig, LOGIN_WINDOW};
use crate::store::{ConsoleUser, ReadOnly, StoreError};

/// The first admin's one-time password hash, under the data directory.
pub const OTP_FILE: &str = "console/admin-otp";
/// The shortest password for an admin or a supervisor.
pub(super) const MIN_PASSWORD: usize = 10;

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
pub(super) type Session = callbox_web::session::Session<Role>;
pub(super) use callbox_web::session::NoSession;

/// Sessions and the login limit, in memory: a restart logs everyone out.
#[derive(Debug)]
pub(super) struct Auth {
    sessions: Sessions<Role>,
    limit: LoginLimit,
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
            sessions: Sessions::new(config.idle_timeout, config.session_max),
            limit: LoginLimit::new(config.login_attempts, LOGIN_WINDOW),
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Seconds until `ip` may try again, when it has used its attempts.
    pub(super) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        self.limit.blocked(ip)
    }

    /// Counts a failed login from `ip`.
    pub(super) fn failed(&self, ip: IpAddr) {
        self.limit.failed(ip);
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

    /// The open sessions.
    pub(super) fn sessions(&self) -> &Sessions<Role> {
        &self.sessions
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
    fn passwords_follow_the_role_rule() {
        assert!(password_rule(Role::Agent, "1234").is_ok());
        assert!(password_rule(Role::Agent, "12a4").is_err());
        assert!(password_rule(Role::Admin, "short").is_err());
    }
}
