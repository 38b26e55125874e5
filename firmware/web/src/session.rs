//! Sessions and the failed-login limit, in memory (a restart logs everyone
//! out), and the cookie and CSRF rules around them.
//!
//! - A session is a random token in an HttpOnly, Secure, SameSite=Strict
//!   cookie; it ends after `idle` unused or `max` after login.
//! - Every change (a method other than GET or HEAD) also needs the
//!   session's CSRF token in the [`CSRF_HEADER`] header.
//! - Failed logins are counted per address; past `attempts` within the
//!   window the address is refused until the window has passed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, header};

/// The header every change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most sessions at once; the oldest unused goes first.
const MAX_SESSIONS: usize = 500;
/// Addresses whose failures are remembered at once.
const MAX_TRACKED: usize = 10_000;

/// A logged-in user, with the server's own notion of a role.
#[derive(Debug, Clone)]
pub struct Session<R> {
    /// Who.
    pub user: String,
    /// As what.
    pub role: R,
    /// The token changes must carry.
    pub csrf: String,
    /// Opened with a one-time password: only a new password may be set.
    pub must_change: bool,
    created: Instant,
    last: Instant,
}

/// Why a request's session does not count.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie, or a token the server does not know.
    Missing,
    /// Unused too long, or too old.
    Expired,
}

impl NoSession {
    /// What to tell the user.
    pub fn message(&self) -> &'static str {
        match self {
            NoSession::Missing => "log in first",
            NoSession::Expired => "your session has expired; log in again",
        }
    }
}

/// The open sessions.
#[derive(Debug)]
pub struct Sessions<R> {
    all: Mutex<HashMap<String, Session<R>>>,
    idle: Duration,
    max: Duration,
}

impl<R: Clone> Sessions<R> {
    /// No sessions yet; each will end after `idle` unused or `max` after
    /// login.
    pub fn new(idle: Duration, max: Duration) -> Sessions<R> {
        Sessions {
            all: Mutex::new(HashMap::new()),
            idle,
            max,
        }
    }

    /// The absolute limit (the cookie's `Max-Age`).
    pub fn max(&self) -> Duration {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session<R>>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, s: &Session<R>, now: Instant) -> bool {
        now.duration_since(s.last) >= self.idle || now.duration_since(s.created) >= self.max
    }

    /// Opens a session; its token and the session.
    pub fn open(
        &self,
        user: &str,
        role: R,
        must_change: bool,
    ) -> std::io::Result<(String, Session<R>)> {
        let token = crate::secret::random_hex(32)?;
        let now = Instant::now();
        let s = Session {
            user: user.to_string(),
            role,
            csrf: crate::secret::random_hex(16)?,
            must_change,
            created: now,
            last: now,
        };
        let mut all = self.lock();
        if all.len() >= MAX_SESSIONS {
            all.retain(|_, s| !self.expired(s, now));
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

    /// The session of `token`, marked used now.
    pub fn session(&self, token: &str) -> Result<Session<R>, NoSession> {
        let now = Instant::now();
        let mut all = self.lock();
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
    pub fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of `user` but `keep` (a changed password, a
    /// removed user).
    pub fn close_user(&self, user: &str, keep: Option<&str>) {
        self.lock()
            .retain(|t, s| s.user != user || Some(t.as_str()) == keep);
    }

    /// The session of `token` no longer needs a new password.
    pub fn changed(&self, token: &str) {
        if let Some(s) = self.lock().get_mut(token) {
            s.must_change = false;
        }
    }
}

/// Failed logins per address.
#[derive(Debug)]
pub struct LoginLimit {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    attempts: u32,
    window: Duration,
}

impl LoginLimit {
    /// `attempts` failures within `window` block an address.
    pub fn new(attempts: u32, window: Duration) -> LoginLimit {
        LoginLimit {
            failures: Mutex::new(HashMap::new()),
            attempts,
            window,
        }
    }

    /// Seconds until `ip` may try again, when it has used its attempts.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = f.get_mut(&ip)?;
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
        if list.len() < self.attempts as usize {
            return None;
        }
        let oldest = *list.front()?;
        Some((self.window - now.duration_since(oldest)).as_secs().max(1))
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            // Forget addresses whose window has passed before a new one.
            let now = Instant::now();
            f.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let list = f.entry(ip).or_default();
        list.push_back(Instant::now());
        while list.len() > self.attempts as usize {
            list.pop_front();
        }
    }
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value for session `token` in cookie `name`.
pub fn session_cookie(name: &str, token: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Whether a request by `method` with `headers` carries `csrf` as a change
/// must (reads need none).
pub fn csrf_ok(method: &Method, headers: &HeaderMap, csrf: &str) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return true;
    }
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| same(t, csrf))
}

/// The answer to a request without its CSRF token.
pub const CSRF_MISSING: &str = "the request lacks this session's CSRF token (X-CSRF-Token)";

/// Equal in time whatever the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_an_address_for_the_window_only() {
        let l = LoginLimit::new(3, Duration::from_secs(300));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        for _ in 0..2 {
            l.failed(ip);
            assert_eq!(l.blocked(ip), None);
        }
        l.failed(ip);
        let wait = l.blocked(ip).unwrap();
        assert!(wait > 290 && wait <= 300, "{wait}");
        assert_eq!(l.blocked(other), None);
    }

    #[test]
    fn sessions_end_when_closed_idle_or_for_their_user() {
        let a = Sessions::new(Duration::from_secs(60), Duration::from_secs(3600));
        let (t1, s) = a.open("sup", 1u8, false).unwrap();
        let (t2, _) = a.open("sup", 1u8, false).unwrap();
        assert_eq!(s.csrf.len(), 32);
        assert_eq!(a.session(&t1).unwrap().user, "sup");
        a.close_user("sup", Some(&t1));
        assert!(a.session(&t1).is_ok());
        assert_eq!(a.session(&t2).unwrap_err(), NoSession::Missing);
        a.close(&t1);
        assert_eq!(a.session(&t1).unwrap_err(), NoSession::Missing);
        let short = Sessions::new(Duration::ZERO, Duration::from_secs(3600));
        let (t, _) = short.open("x", 0u8, false).unwrap();
        assert_eq!(short.session(&t).unwrap_err(), NoSession::Expired);
    }

    #[test]
    fn changes_need_the_csrf_token_and_reads_do_not() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; s=tok"));
        assert_eq!(cookie(&h, "s"), Some("tok"));
        assert_eq!(cookie(&h, "t"), None);
        assert!(!same("abc", "ab"));
        assert!(csrf_ok(&Method::GET, &h, "abc"));
        assert!(!csrf_ok(&Method::POST, &h, "abc"));
        h.insert(CSRF_HEADER, HeaderValue::from_static("abd"));
        assert!(!csrf_ok(&Method::POST, &h, "abc"));
        h.insert(CSRF_HEADER, HeaderValue::from_static("abc"));
        assert!(csrf_ok(&Method::DELETE, &h, "abc"));
    }
}
