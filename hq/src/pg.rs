//! The collector's PostgreSQL database (`--db postgres://…`), for a fleet
//! too big for one SQLite file and for several collectors on several
//! machines. The same rows as the SQLite store, with:
//!
//! - versioned migrations (`callbox_schema`), applied by whichever
//!   collector starts first, under an advisory lock;
//! - `records` partitioned by the month of each record's `at` (the box's
//!   time of the record, so a record sent again lands in the partition
//!   that already has it), a partition made when its first record comes,
//!   records without a readable `at` in the default partition; whole
//!   months are dropped by `--keep-months`;
//! - a record stored once per (site, box, epoch, stream, seq): `ON
//!   CONFLICT DO NOTHING`, so a batch sent again, or taken by two
//!   collectors, is stored once;
//! - a lost connection (the server restarting) waits and reconnects
//!   instead of stopping the collector, and nothing it did not commit is
//!   acknowledged.
//!
//! TLS: `sslmode=require` (or `verify-full`) in the URL connects through
//! rustls, trusting the CA file `--db-ca` names; without it the server
//! must be on this machine (loopback or a Unix socket).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postgres::{Client, NoTls};

use crate::db::Tx;
use crate::store::{Gap, Recording, Upload};
use crate::wire::{Meta, Records};

/// The schema, one step per version; a step never changes once released.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE records (
         site text NOT NULL,
         box text NOT NULL,
         epoch text NOT NULL,
         stream text NOT NULL,
         seq bigint NOT NULL,
         id text NOT NULL,
         at text,
         month date NOT NULL,
         data text NOT NULL,
         received_at timestamptz NOT NULL,
         PRIMARY KEY (box, epoch, stream, seq, site, month)
     ) PARTITION BY RANGE (month);
     CREATE TABLE records_undated PARTITION OF records DEFAULT;
     CREATE INDEX records_by_stream ON records (stream, month);
     CREATE TABLE recordings (
         site text NOT NULL,
         box text NOT NULL,
         id text PRIMARY KEY,
         call_id text,
         kind text,
         format text,
         encrypted boolean NOT NULL,
         size bigint NOT NULL,
         sha256 text NOT NULL,
         file text NOT NULL,
         box_file text,
         received_at timestamptz NOT NULL
     );
     CREATE INDEX recordings_by_call ON recordings (call_id);
     CREATE TABLE uploads (
         box text NOT NULL,
         id text NOT NULL,
         site text NOT NULL,
         size bigint NOT NULL,
         have bigint NOT NULL,
         ranges text NOT NULL,
         sha256 text,
         last_seen boolean NOT NULL,
         meta text,
         started_ms bigint NOT NULL,
         updated_ms bigint NOT NULL,
         PRIMARY KEY (box, id)
     );",
    ),
    (2, crate::fleetdb::SCHEMA),
];

/// Advisory lock keys: migrations, and making partitions.
const MIGRATE_LOCK: i64 = 0x6361_6c6c_0001;
const PARTITION_LOCK: i64 = 0x6361_6c6c_0002;

/// Longest wait between two attempts to reach a server that went away.
const RECONNECT_MAX: Duration = Duration::from_secs(10);
/// How long a collector starting waits for its database to be there.
const START_WAIT: Duration = Duration::from_secs(120);

/// Whether `e` is the connection's fault (the server away or restarting)
/// rather than a refusal or a mistake.
fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>()
            .is_some_and(|pe| pe.is_closed() || pe.as_db_error().is_none())
    }) || sqlstate(e, &["08", "57P"])
}

/// Whether the server answered `e` with an SQLSTATE starting with one of
/// `classes`.
fn sqlstate(e: &anyhow::Error, classes: &[&str]) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::code)
            .is_some_and(|c| classes.iter().any(|k| c.code().starts_with(k)))
    })
}

/// Connects, trying again (0.5 s, doubling up to [`RECONNECT_MAX`]) while
/// `keep_trying` says the failure is worth waiting out.
fn connect_waiting(
    url: &str,
    ca: Option<&Path>,
    keep_trying: impl Fn(&anyhow::Error) -> bool,
) -> Result<Client> {
    let mut wait = Duration::from_millis(500);
    loop {
        match connect(url, ca) {
            Ok(c) => return Ok(c),
            Err(e) if keep_trying(&e) => {
                eprintln!("callbox-hq: {e:#}; retrying in {} ms", wait.as_millis());
                std::thread::sleep(wait);
                wait = (wait * 2).min(RECONNECT_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// An open PostgreSQL database.
pub struct PgStore {
    client: Client,
    url: String,
    ca: Option<std::path::PathBuf>,
    /// Months whose partition exists (made or seen by this collector).
    months: HashSet<String>,
    /// The batch insert, prepared once per connection.
    insert: Option<postgres::Statement>,
    /// Set when the collector stops: a reconnect loop gives up.
    stopping: Arc<AtomicBool>,
}

impl PgStore {
    /// The connection (headquarters' portable statements).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &redact(&self.url))
            .finish_non_exhaustive()
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}:…{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn connect(url: &str, ca: Option<&Path>) -> Result<Client> {
    let config: postgres::Config = url
        .parse()
        .with_context(|| format!("--db {}: not a PostgreSQL URL", redact(url)))?;
    let tls = matches!(config.get_ssl_mode(), postgres::config::SslMode::Require)
        || url.contains("sslmode=verify-full")
        || url.contains("sslmode=verify-ca");
    let client = if tls {
        let Some(ca) = ca else {
            bail!(
                "--db {}: TLS asked for (sslmode) but no --db-ca names the CA to trust",
                redact(url)
            );
        };
        let pem = std::fs::read(ca).with_context(|| format!("--db-ca {}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer<'static> =
                cert.with_context(|| format!("--db-ca {}: not PEM certificates", ca.display()))?;
            roots.add(cert).with_context(|| {
                format!("--db-ca {}: a certificate rustls refuses", ca.display())
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
    } else {
        let local = config.get_hosts().iter().all(|h| match h {
            postgres::config::Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            postgres::config::Host::Unix(_) => true,
        });
        if !local {
            bail!(
                "--db {}: a server on another machine needs TLS: add sslmode=require and --db-ca",
                redact(url)
            );
        }
        config.connect(NoTls)
    };
    client.with_context(|| format!("--db {}: cannot connect", redact(url)))
}

impl PgStore {
    /// Connects and brings the schema up to date. A server that is not
    /// there (yet, or restarting) is waited for up to [`START_WAIT`]; a
    /// refusal (a wrong password, no such database) fails at once.
    pub fn connect(url: &str, ca: Option<&Path>) -> Result<PgStore> {
        let give_up = std::time::Instant::now() + START_WAIT;
        let client = connect_waiting(url, ca, |e| {
            transient(e) && std::time::Instant::now() < give_up
        })?;
        let mut s = PgStore {
            client,
            url: url.to_string(),
            ca: ca.map(Path::to_path_buf),
            months: HashSet::new(),
            insert: None,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        s.migrate()
            .with_context(|| format!("--db {}: bringing the schema up to date", redact(url)))?;
        Ok(s)
    }

    /// A flag that, once set, makes [`PgStore::recover`] give up.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    fn migrate(&mut self) -> Result<()> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS callbox_schema (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )?;
        let have: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM callbox_schema", &[])?
            .get(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if have > newest {
            bail!(
                "the database's schema is version {have}, newer than this collector's {newest}: update callbox-hq"
            );
        }
        for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have) {
            tx.batch_execute(sql)
                .with_context(|| format!("migration {v}"))?;
            tx.execute("INSERT INTO callbox_schema (version) VALUES ($1)", &[v])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Starts a write transaction.
    pub fn write(&mut self) -> Result<Box<dyn Tx + '_>> {
        let insert = match &self.insert {
            Some(s) => s.clone(),
            None => {
                let s = self.client.prepare(INSERT_BATCH)?;
                self.insert = Some(s.clone());
                s
            }
        };
        let tx = self.client.transaction()?;
        Ok(Box::new(PgTx { tx, insert }))
    }

    /// Makes the partitions `batch` needs, each in a transaction of its
    /// own before the batch's: making one locks the whole `records`
    /// table, which a transaction that has inserted into it already holds
    /// a lock on — two collectors would wait for each other.
    pub fn prepare(&mut self, batch: &Records) -> Result<()> {
        let months: HashSet<jiff::civil::Date> = batch
            .records
            .iter()
            .filter_map(|r| month_of(r.at.as_deref()))
            .collect();
        for month in months {
            let name = partition_name(month);
            if self.months.contains(&name) {
                continue;
            }
            let next = month
                .checked_add(jiff::Span::new().months(1))
                .context("a record from the end of time")?;
            let mut tx = self.client.transaction()?;
            // Collectors making the same month wait for each other here.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])?;
            let made = tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF records FOR VALUES FROM ('{month}') TO ('{next}')"
            ));
            match made {
                Ok(()) => tx.commit()?,
                // The default partition already holds rows of that month
                // (a month retention dropped, records of it sent late):
                // they go on landing there.
                Err(e) if e.code() == Some(&postgres::error::SqlState::CHECK_VIOLATION) => {}
                Err(e) => return Err(e.into()),
            }
            self.months.insert(name);
        }
        Ok(())
    }

    /// Every missing range of seqs: 1..max per (site, box, epoch, stream).
    pub fn gaps(&mut self) -> Result<Vec<Gap>> {
        let rows = self.client.query(
            "SELECT site, box, epoch, stream, seq, prev FROM (
                 SELECT site, box, epoch, stream, seq,
                        lag(seq, 1, 0::bigint) OVER (PARTITION BY site, box, epoch, stream ORDER BY seq) AS prev
                 FROM records) r
             WHERE seq > prev + 1
             ORDER BY site, box, epoch, stream, seq",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let seq: i64 = r.get(4);
                let prev: i64 = r.get(5);
                Gap {
                    site: r.get(0),
                    box_id: r.get(1),
                    epoch: r.get(2),
                    stream: r.get(3),
                    from: prev as u64 + 1,
                    to: seq as u64 - 1,
                }
            })
            .collect())
    }

    /// Calls `each` with the `data` of every record of `stream`, ordered
    /// by (box, epoch, seq); `site` and `box_id` narrow it down.
    pub fn export(
        &mut self,
        stream: &str,
        site: Option<&str>,
        box_id: Option<&str>,
        mut each: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        // A cursor: the stream may be millions of records.
        let mut tx = self.client.transaction()?;
        let portal = tx.bind(
            "SELECT data FROM records
             WHERE stream = $1 AND ($2::text IS NULL OR site = $2) AND ($3::text IS NULL OR box = $3)
             ORDER BY box, epoch, seq",
            &[&stream, &site, &box_id],
        )?;
        loop {
            let rows = tx.query_portal(&portal, 10_000)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                if !each(r.get(0)) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Drops the partitions of whole months before the `keep` most recent
    /// (this month counts); answers the ones dropped.
    pub fn drop_old_months(&mut self, keep: u32, today: jiff::civil::Date) -> Result<Vec<String>> {
        let first = today.first_of_month();
        let cutoff = first
            .checked_sub(jiff::Span::new().months(i64::from(keep.saturating_sub(1))))
            .context("--keep-months is too large")?;
        let parts = self.client.query(
            "SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'records' AND c.relname LIKE 'records_m%'",
            &[],
        )?;
        let mut dropped = Vec::new();
        for r in parts {
            let name: String = r.get(0);
            let Some(month) = month_of_partition(&name) else {
                continue;
            };
            if month < cutoff {
                self.client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))?;
                self.months.remove(&name);
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Whether a failed write is this message's fault: the server refuses
    /// its data (classes 22, data exception, and 23, integrity), which
    /// would happen again on every try.
    pub fn refuses_data(e: &anyhow::Error) -> bool {
        sqlstate(e, &["22", "23"])
    }

    /// After a failed write: `false` when it is not the connection's
    /// fault; else waits for the server (doubling the wait up to
    /// [`RECONNECT_MAX`]), reconnects and answers `true`, or `false` once
    /// the collector is stopping.
    pub fn recover(&mut self, e: &anyhow::Error) -> bool {
        // A deadlock or a serialization failure: the server rolled the
        // transaction back; it is simply tried again.
        if sqlstate(e, &["40"]) && !self.client.is_closed() {
            return true;
        }
        if !self.client.is_closed() && !transient(e) {
            return false;
        }
        let stopping = self.stopping.clone();
        match connect_waiting(&self.url, self.ca.as_deref(), |_| {
            !stopping.load(Ordering::Relaxed)
        }) {
            Ok(c) => {
                self.client = c;
                self.insert = None;
                eprintln!(
                    "callbox-hq: collect: {}: connected again",
                    redact(&self.url)
                );
                true
            }
            Err(_) => false,
        }
    }
}

/// `records_m2026_12` for December 2026.
fn partition_name(month: jiff::civil::Date) -> String {
    format!("records_m{:04}_{:02}", month.year(), month.month())
}

fn month_of_partition(name: &str) -> Option<jiff::civil::Date> {
    let rest = name.strip_prefix("records_m")?;
    let (y, m) = rest.split_once('_')?;
    jiff::civil::Date::new(y.parse().ok()?, m.parse().ok()?, 1).ok()
}

/// The years a record's time may fall in to have a partition of its
/// month; a box whose clock was never set (1970) or is far off counts as
/// undated.
const DATED_YEARS: std::ops::RangeInclusive<i16> = 2000..=2199;

/// The `month` of undated records: a month no partition ever covers
/// ([`DATED_YEARS`]), so they stay in `records_undated` and retention,
/// which drops partitions, never touches them.
const UNDATED: jiff::civil::Date = jiff::civil::date(1900, 1, 1);

/// The first day of the month of a record's `at` (RFC 3339), `None` when
/// it has none that reads or it is outside [`DATED_YEARS`].
fn month_of(at: Option<&str>) -> Option<jiff::civil::Date> {
    let ts: jiff::Timestamp = at?.parse().ok()?;
    let day = ts.to_zoned(jiff::tz::TimeZone::UTC).date();
    DATED_YEARS
        .contains(&day.year())
        .then(|| day.first_of_month())
}

/// A records batch in one statement: a row per element of the arrays.
const INSERT_BATCH: &str = "INSERT INTO records (site, box, epoch, stream, seq, id, at, month, data, received_at)
     SELECT $1, $2, $3, $4, t.seq, t.id, t.at, t.month::date, t.data, $10
     FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[]) AS t(seq, id, at, month, data)
     ON CONFLICT DO NOTHING";

/// A write transaction.
struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    insert: postgres::Statement,
}

impl Tx for PgTx<'_> {
    fn max_seq(&mut self, box_id: &str, epoch: &str, stream: &str) -> Result<u64> {
        let max: Option<i64> = self
            .tx
            .query_one(
                "SELECT max(seq) FROM records WHERE box = $1 AND epoch = $2 AND stream = $3",
                &[&box_id, &epoch, &stream],
            )?
            .get(0);
        Ok(max.map_or(0, |m| m as u64))
    }

    fn seqs_between(
        &mut self,
        box_id: &str,
        epoch: &str,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u64>> {
        Ok(self
            .tx
            .query(
                "SELECT seq FROM records WHERE box = $1 AND epoch = $2 AND stream = $3
                 AND seq BETWEEN $4 AND $5 ORDER BY seq",
                &[&box_id, &epoch, &stream, &(from as i64), &(to as i64)],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect())
    }

    fn insert_records(
        &mut self,
        site: &str,
        box_id: &str,
        batch: &Records,
        received_ms: i64,
    ) -> Result<usize> {
        // The partitions exist: `PgStore::prepare` made them.
        let months: Vec<String> = batch
            .records
            .iter()
            .map(|r| month_of(r.at.as_deref()).unwrap_or(UNDATED).to_string())
            .collect();
        let seqs: Vec<i64> = batch.records.iter().map(|r| r.seq as i64).collect();
        let ids: Vec<&str> = batch.records.iter().map(|r| r.id.as_str()).collect();
        let ats: Vec<Option<&str>> = batch.records.iter().map(|r| r.at.as_deref()).collect();
        let data: Vec<&str> = batch.records.iter().map(|r| r.data.as_str()).collect();
        let received = std::time::UNIX_EPOCH + Duration::from_millis(received_ms.max(0) as u64);
        let new = self.tx.execute(
            &self.insert,
            &[
                &site,
                &box_id,
                &batch.epoch,
                &batch.stream,
                &seqs,
                &ids,
                &ats,
                &months,
                &data,
                &received,
            ],
        )?;
        Ok(new as usize)
    }

    fn upload(&mut self, box_id: &str, id: &str) -> Result<Option<Upload>> {
        // Chunks of one recording may reach two collectors at once: each
        // takes the recording in turn, so neither loses the other's range.
        self.tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("upload/{box_id}/{id}")],
        )?;
        let row = self.tx.query_opt(
            "SELECT site, size, ranges, sha256, last_seen, meta, started_ms
             FROM uploads WHERE box = $1 AND id = $2",
            &[&box_id, &id],
        )?;
        Ok(row.map(|r| {
            let ranges: String = r.get(2);
            let meta: Option<String> = r.get(5);
            Upload {
                site: r.get(0),
                size: r.get::<_, i64>(1) as u64,
                // A damaged column reads as nothing held: the box resends.
                ranges: serde_json::from_str(&ranges).unwrap_or_default(),
                sha256: r.get(3),
                last_seen: r.get(4),
                meta: meta.as_deref().map(Meta::from_json),
                started_ms: r.get(6),
            }
        }))
    }

    fn save_upload(&mut self, box_id: &str, id: &str, u: &Upload, now_ms: i64) -> Result<()> {
        let ranges = serde_json::to_string(&u.ranges)?;
        self.tx.execute(
            "INSERT INTO uploads
                 (box, id, site, size, have, ranges, sha256, last_seen, meta, started_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (box, id) DO UPDATE SET
                 site = EXCLUDED.site, size = EXCLUDED.size, have = EXCLUDED.have,
                 ranges = EXCLUDED.ranges, sha256 = EXCLUDED.sha256,
                 last_seen = EXCLUDED.last_seen, meta = EXCLUDED.meta,
                 started_ms = EXCLUDED.started_ms, updated_ms = EXCLUDED.updated_ms",
            &[
                &box_id,
                &id,
                &u.site,
                &(u.size as i64),
                &(u.have() as i64),
                &ranges,
                &u.sha256,
                &u.last_seen,
                &u.meta.as_ref().map(Meta::to_json),
                &u.started_ms,
                &now_ms,
            ],
        )?;
        Ok(())
    }

    fn delete_upload(&mut self, box_id: &str, id: &str) -> Result<()> {
        self.tx.execute(
            "DELETE FROM uploads WHERE box = $1 AND id = $2",
            &[&box_id, &id],
        )?;
        Ok(())
    }

    fn recording_box(&mut self, id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_opt("SELECT box FROM recordings WHERE id = $1", &[&id])?
            .map(|r| r.get(0)))
    }

    fn insert_recording(&mut self, r: &Recording, now_ms: i64) -> Result<()> {
        let received = std::time::UNIX_EPOCH + Duration::from_millis(now_ms.max(0) as u64);
        self.tx.execute(
            "INSERT INTO recordings
                 (site, box, id, call_id, kind, format, encrypted, size, sha256, file, box_file, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET
                 site = EXCLUDED.site, box = EXCLUDED.box, call_id = EXCLUDED.call_id,
                 kind = EXCLUDED.kind, format = EXCLUDED.format, encrypted = EXCLUDED.encrypted,
                 size = EXCLUDED.size, sha256 = EXCLUDED.sha256, file = EXCLUDED.file,
                 box_file = EXCLUDED.box_file, received_at = EXCLUDED.received_at",
            &[
                &r.site,
                &r.box_id,
                &r.id,
                &r.meta.call_id,
                &r.meta.kind,
                &r.meta.format,
                &r.meta.encrypted,
                &(r.size as i64),
                &r.sha256,
                &r.file,
                &r.meta.file,
                &received,
            ],
        )?;
        Ok(())
    }

    fn exec(&mut self, sql: &str, params: &[crate::sql::Param]) -> Result<u64> {
        crate::sql::pg_exec(&mut self.tx, sql, params)
    }

    fn commit(self: Box<Self>) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_far_off_are_undated() {
        assert_eq!(month_of(Some("1970-01-01T00:00:05Z")), None);
        assert_eq!(month_of(Some("9999-12-15T00:00:00Z")), None);
        assert_eq!(month_of(Some("-000100-01-01T00:00:00Z")), None);
        assert!(!DATED_YEARS.contains(&UNDATED.year()));
    }

    #[test]
    fn a_record_lands_in_the_month_of_its_time_and_partitions_are_named_by_month() {
        let m = month_of(Some("2026-12-07T10:11:12.345Z")).unwrap();
        assert_eq!(m, jiff::civil::date(2026, 12, 1));
        assert_eq!(partition_name(m), "records_m2026_12");
        assert_eq!(month_of_partition("records_m2026_12"), Some(m));
        assert_eq!(month_of(Some("yesterday")), None);
        assert_eq!(month_of(None), None);
        assert_eq!(month_of_partition("records_undated"), None);
    }

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("postgres://hq:s3cret@db.example:5432/callbox"),
            "postgres://hq:…@db.example:5432/callbox"
        );
        assert_eq!(redact("postgres://localhost/x"), "postgres://localhost/x");
    }
}
