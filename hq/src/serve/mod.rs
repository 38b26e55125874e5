//! `callbox-hq serve`: headquarters' dashboard over HTTPS, reading the
//! collectors' database (SQLite or PostgreSQL, [`crate::fleetdb`]'s typed
//! tables).
//!
//! - `api`: users with roles (viewer, operator, admin), sessions, CSRF,
//!   the audit log, and the JSON the pages use: the fleet list, a box's
//!   page, alarms with acknowledge, calls searched, reports.
//! - `commands`: a box's config read, checked and pushed, its agents and
//!   day/night switch steered, a restart, over headquarters' broker.
//! - `reports`: calls per campaign (dialled) number per day and site,
//!   conversions by wrap-up code, survey scores, and CSV.
//! - `recording`: a call's recording, decrypted with headquarters'
//!   identity, for the browser's player.
//! - `metrics`: a Prometheus text endpoint with fleet gauges.
//! - `assets`: the page, English and Chinese, built into the binary.
//!
//! Users are made with `callbox-hq user add` (the password from standard
//! input, stored as an argon2id hash): there is no default user or
//! password. TLS, sessions, the login limit and CSRF are the web crate's
//! ([`callbox_web`]), as on the box's console.

mod api;
mod assets;
mod commands;
mod metrics;
mod recording;
mod reports;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use callbox_web::http::{ApiError, in_turn};

use crate::db::Db;
use crate::params;

/// What a dashboard user may do. Ordered: each role may do what the ones
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything but the users and the audit log.
    Viewer,
    /// Also acknowledges alarms and steers boxes.
    Operator,
    /// Also manages users and reads the audit log.
    Admin,
}

impl Role {
    /// `viewer`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The shortest dashboard password.
pub const MIN_PASSWORD: usize = 12;

/// Options of `serve`.
#[derive(Debug)]
pub struct Options {
    /// The database: a SQLite file, or a `postgres://` URL.
    pub db: String,
    /// The CA of the PostgreSQL server's certificate.
    pub db_ca: Option<PathBuf>,
    /// HTTPS addresses.
    pub listen: Vec<SocketAddr>,
    /// Plain-HTTP addresses answering with a redirect to HTTPS.
    pub redirect: Vec<SocketAddr>,
    /// The certificate chain and key served (PEM).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A session ends after this long unused.
    pub idle_timeout: Duration,
    /// A session ends this long after login.
    pub session_max: Duration,
    /// Failed logins from one address within 5 minutes before it is
    /// refused.
    pub login_attempts: u32,
    /// A file holding the bearer token `/metrics` wants; no file, no
    /// `/metrics`.
    pub metrics_token: Option<PathBuf>,
    /// The time zone reports count days in.
    pub tz: jiff::tz::TimeZone,
    /// Headquarters' broker, for the box pages' commands; `None`: the
    /// dashboard only reads.
    pub broker: Option<crate::mqtt::Broker>,
    /// The collectors' recordings folder, for relative paths.
    pub recordings: Option<PathBuf>,
    /// Headquarters' identity (age), to play sealed recordings.
    pub identity: Option<PathBuf>,
}

/// Database reads at once (each a connection).
const DB_AT_ONCE: usize = 4;

/// Connections to the database, used a few at a time on blocking threads
/// (the PostgreSQL client is a blocking one).
#[derive(Debug)]
pub struct Pool {
    spec: String,
    ca: Option<PathBuf>,
    idle: Mutex<Vec<Db>>,
    turns: tokio::sync::Semaphore,
}

impl Pool {
    /// Opens the first connection now (creating or migrating the tables),
    /// so a wrong `--db` fails the start.
    pub fn open(spec: &str, ca: Option<PathBuf>) -> Result<Pool> {
        let first = Db::open(spec, ca.as_deref())?;
        Ok(Pool {
            spec: spec.to_string(),
            ca,
            idle: Mutex::new(vec![first]),
            turns: tokio::sync::Semaphore::new(DB_AT_ONCE),
        })
    }

    /// Runs `f` with a connection on a blocking thread. A connection that
    /// failed is not used again.
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Db) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let pool = self.clone();
        in_turn(&self.turns, move || {
            let taken = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut db = match taken {
                Some(db) => db,
                None => Db::open(&pool.spec, pool.ca.as_deref())?,
            };
            let r = f(&mut db);
            if r.is_ok() {
                pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(db);
            }
            r
        })
        .await?
        .map_err(|e| ApiError::internal(format!("{e:#}")))
    }
}

/// Serves until SIGINT/SIGTERM.
pub async fn run(o: Options) -> Result<()> {
    // Refusals and failures (the web crate's log lines) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let cert = std::fs::read(&o.cert).with_context(|| format!("--cert {}", o.cert.display()))?;
    let key = std::fs::read(&o.key).with_context(|| format!("--key {}", o.key.display()))?;
    let tls = callbox_web::tls::server_config(&cert, &key, "the --cert certificate")?;
    let metrics_token = match &o.metrics_token {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("--metrics-token {}", p.display()))?
                .trim()
                .to_string();
            if t.len() < 16 {
                bail!(
                    "--metrics-token {}: the token is shorter than 16 characters",
                    p.display()
                );
            }
            Some(t)
        }
        None => None,
    };
    let (spec, ca) = (o.db.clone(), o.db_ca.clone());
    // Opened off the runtime: the PostgreSQL client has a runtime of its
    // own.
    let pool = tokio::task::spawn_blocking(move || Pool::open(&spec, ca))
        .await
        .context("opening the database")??;
    let pool = Arc::new(pool);
    let users = pool
        .with(|db| db.query("SELECT COUNT(*) FROM hq_users", &[]))
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    if users[0][0].int() == Some(0) {
        eprintln!(
            "callbox-hq: serve: no users yet; add one with `callbox-hq user add NAME --role admin --db …`"
        );
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let app = api::router(api::Deps {
        pool,
        sessions: callbox_web::session::Sessions::new(o.idle_timeout, o.session_max),
        limit: callbox_web::session::LoginLimit::new(o.login_attempts, Duration::from_secs(300)),
        metrics_token,
        tz: o.tz,
        broker: o.broker,
        recordings: o.recordings,
        identity: o.identity,
    });
    let bound = callbox_web::tls::serve(
        "dashboard",
        &o.listen,
        &o.redirect,
        tls,
        app,
        shutdown.clone(),
    )
    .await?;
    let fp = fingerprint(&cert).unwrap_or_default();
    for a in &bound.https {
        crate::mqtt::out_line(&format!(
            "# serving https://{a}/ (certificate SHA-256 {fp})"
        ));
    }
    for a in &bound.http {
        crate::mqtt::out_line(&format!("# redirecting http://{a}/ to HTTPS"));
    }
    crate::mqtt::shutdown_signal()?.await;
    shutdown.cancel();
    Ok(())
}

/// The SHA-256 fingerprint (`AB:CD:…`) of the first certificate in `pem`.
fn fingerprint(pem: &[u8]) -> Option<String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let sum = sha2::Sha256::digest(der.as_ref());
    Some(
        sum.iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `callbox-hq user add|passwd`: sets `name`'s role and password (from
/// `password`), creating the user if needed; their open sessions end at
/// the dashboard's next check of the database.
pub fn user_set(db: &mut Db, name: &str, role: Role, password: &str, who: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-@".contains(c))
    {
        bail!("a user name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`");
    }
    if password.chars().count() < MIN_PASSWORD {
        bail!("a password is at least {MIN_PASSWORD} characters");
    }
    let hash = callbox_web::secret::hash(password).map_err(anyhow::Error::msg)?;
    let now = crate::mqtt::now_ms();
    db.exec(
        "INSERT INTO hq_users (name, role, hash, updated_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash,
             updated_ms = excluded.updated_ms",
        &params![name, role.name(), hash, now],
    )?;
    audit(
        db,
        Some(who),
        None,
        "user.set",
        &serde_json::json!({"name": name, "role": role}),
    )?;
    Ok(())
}

/// `callbox-hq user remove`.
pub fn user_remove(db: &mut Db, name: &str, who: &str) -> Result<()> {
    if db.exec("DELETE FROM hq_users WHERE name = $1", &params![name])? == 0 {
        bail!("no user `{name}`");
    }
    audit(
        db,
        Some(who),
        None,
        "user.remove",
        &serde_json::json!({"name": name}),
    )?;
    Ok(())
}

/// `callbox-hq user list`: (name, role).
pub fn user_list(db: &mut Db) -> Result<Vec<(String, String)>> {
    Ok(db
        .query("SELECT name, role FROM hq_users ORDER BY name", &[])?
        .into_iter()
        .map(|r| {
            (
                r[0].text().unwrap_or_default().to_string(),
                r[1].text().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Writes an audit entry.
pub fn audit(
    db: &mut Db,
    who: Option<&str>,
    ip: Option<&str>,
    action: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    db.exec(
        "INSERT INTO hq_audit (at_ms, who, ip, action, detail) VALUES ($1, $2, $3, $4, $5)",
        &params![crate::mqtt::now_ms(), who, ip, action, detail.to_string()],
    )?;
    Ok(())
}
