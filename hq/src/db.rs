//! The collector's database, SQLite or PostgreSQL, behind one interface:
//! `--db hq.db` is a SQLite file (the embedded default, [`crate::store`]),
//! `--db postgres://…` a PostgreSQL database ([`crate::pg`]). Both store a
//! record once per box, epoch, stream and seq, however often it is sent,
//! and commit before the collector acknowledges anything.

use std::path::Path;

use anyhow::Result;

use crate::pg::PgStore;
use crate::store::{self, Gap, Recording, Store, Upload};
use crate::wire::Records;

/// One write transaction: what the collector does with a message, then
/// `commit`. Dropped without a commit, nothing of it stays.
pub trait Tx {
    /// The highest seq stored for (box, epoch, stream), 0 if none.
    fn max_seq(&mut self, box_id: &str, epoch: &str, stream: &str) -> Result<u64>;
    /// The seqs stored for (box, epoch, stream) from `from` to `to`,
    /// ascending.
    fn seqs_between(
        &mut self,
        box_id: &str,
        epoch: &str,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u64>>;
    /// Stores a batch; a record stored before is left as it was. Returns
    /// how many were new.
    fn insert_records(
        &mut self,
        site: &str,
        box_id: &str,
        batch: &Records,
        received_ms: i64,
    ) -> Result<usize>;
    /// The upload of `id` from `box_id`, if one is under way.
    fn upload(&mut self, box_id: &str, id: &str) -> Result<Option<Upload>>;
    /// Saves an upload's progress.
    fn save_upload(&mut self, box_id: &str, id: &str, u: &Upload, now_ms: i64) -> Result<()>;
    /// Forgets an upload (finished).
    fn delete_upload(&mut self, box_id: &str, id: &str) -> Result<()>;
    /// Which box a finished recording came from, if it is stored.
    fn recording_box(&mut self, id: &str) -> Result<Option<String>>;
    /// Stores a finished recording's row.
    fn insert_recording(&mut self, r: &Recording, now_ms: i64) -> Result<()>;
    /// Runs one of headquarters' portable statements ([`crate::sql`]);
    /// rows changed.
    fn exec(&mut self, sql: &str, params: &[crate::sql::Param]) -> Result<u64>;
    /// Makes it all durable.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// The database `--db` names.
#[derive(Debug)]
pub enum Db {
    /// A SQLite file.
    Sqlite(Store),
    /// A PostgreSQL database.
    Postgres(Box<PgStore>),
}

/// Whether `--db` names a PostgreSQL database rather than a file.
pub fn is_postgres(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

impl Db {
    /// Opens (creating or migrating the schema if needed) the database
    /// `spec`: a `postgres://` URL, else a SQLite file's path.
    pub fn open(spec: &str, ca: Option<&Path>) -> Result<Db> {
        if is_postgres(spec) {
            Ok(Db::Postgres(Box::new(PgStore::connect(spec, ca)?)))
        } else {
            Ok(Db::Sqlite(Store::open(Path::new(spec))?))
        }
    }

    /// Opens it for reading (`gaps`, `export`).
    pub fn open_read_only(spec: &str, ca: Option<&Path>) -> Result<Db> {
        if is_postgres(spec) {
            Ok(Db::Postgres(Box::new(PgStore::connect(spec, ca)?)))
        } else {
            Ok(Db::Sqlite(Store::open_read_only(Path::new(spec))?))
        }
    }

    /// Runs one of headquarters' portable queries ([`crate::sql`]).
    pub fn query(&mut self, sql: &str, params: &[crate::sql::Param]) -> Result<crate::sql::Rows> {
        match self {
            Db::Sqlite(s) => crate::sql::sqlite_query(s.conn(), sql, params),
            Db::Postgres(p) => crate::sql::pg_query(p.client(), sql, params),
        }
    }

    /// Runs one of headquarters' portable statements, on its own; rows
    /// changed.
    pub fn exec(&mut self, sql: &str, params: &[crate::sql::Param]) -> Result<u64> {
        match self {
            Db::Sqlite(s) => crate::sql::sqlite_exec(s.conn(), sql, params),
            Db::Postgres(p) => crate::sql::pg_exec(p.client(), sql, params),
        }
    }

    /// Readies what a batch needs before its transaction (PostgreSQL: the
    /// months' partitions).
    pub fn prepare(&mut self, batch: &Records) -> Result<()> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Postgres(p) => p.prepare(batch),
        }
    }

    /// Starts a write transaction.
    pub fn write(&mut self) -> Result<Box<dyn Tx + '_>> {
        match self {
            Db::Sqlite(s) => Ok(Box::new(s.write()?)),
            Db::Postgres(p) => p.write(),
        }
    }

    /// Every missing range of seqs: 1..max per (site, box, epoch, stream).
    pub fn gaps(&mut self) -> Result<Vec<Gap>> {
        match self {
            Db::Sqlite(s) => s.gaps(),
            Db::Postgres(p) => p.gaps(),
        }
    }

    /// Calls `each` with the `data` of every record of `stream`, ordered
    /// by (box, epoch, seq); `site` and `box_id` narrow it down.
    pub fn export(
        &mut self,
        stream: &str,
        site: Option<&str>,
        box_id: Option<&str>,
        each: impl FnMut(&str) -> bool,
    ) -> Result<()> {
        match self {
            Db::Sqlite(s) => s.export(stream, site, box_id, each),
            Db::Postgres(p) => p.export(stream, site, box_id, each),
        }
    }

    /// Whether a failed write is the message's own fault (the database
    /// refuses its data), so that it would fail again on every try.
    pub fn refuses_data(&self, e: &anyhow::Error) -> bool {
        match self {
            Db::Sqlite(_) => false,
            Db::Postgres(_) => PgStore::refuses_data(e),
        }
    }

    /// After a failed write: whether it is worth trying again (the
    /// database server went away) — reconnecting if so — rather than
    /// stopping. A SQLite failure is a disk or file problem: never.
    pub fn recover(&mut self, e: &anyhow::Error) -> bool {
        match self {
            Db::Sqlite(_) => false,
            Db::Postgres(p) => p.recover(e),
        }
    }
}

impl Tx for rusqlite::Transaction<'_> {
    fn max_seq(&mut self, box_id: &str, epoch: &str, stream: &str) -> Result<u64> {
        store::max_seq(self, box_id, epoch, stream)
    }
    fn seqs_between(
        &mut self,
        box_id: &str,
        epoch: &str,
        stream: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<u64>> {
        store::seqs_between(self, box_id, epoch, stream, from, to)
    }
    fn insert_records(
        &mut self,
        site: &str,
        box_id: &str,
        batch: &Records,
        received_ms: i64,
    ) -> Result<usize> {
        store::insert_records(self, site, box_id, batch, received_ms)
    }
    fn upload(&mut self, box_id: &str, id: &str) -> Result<Option<Upload>> {
        store::upload(self, box_id, id)
    }
    fn save_upload(&mut self, box_id: &str, id: &str, u: &Upload, now_ms: i64) -> Result<()> {
        store::save_upload(self, box_id, id, u, now_ms)
    }
    fn delete_upload(&mut self, box_id: &str, id: &str) -> Result<()> {
        store::delete_upload(self, box_id, id)
    }
    fn recording_box(&mut self, id: &str) -> Result<Option<String>> {
        store::recording_box(self, id)
    }
    fn insert_recording(&mut self, r: &Recording, now_ms: i64) -> Result<()> {
        store::insert_recording(self, r, now_ms)
    }
    fn exec(&mut self, sql: &str, params: &[crate::sql::Param]) -> Result<u64> {
        crate::sql::sqlite_exec(self, sql, params)
    }
    fn commit(self: Box<Self>) -> Result<()> {
        Ok((*self).commit()?)
    }
}
