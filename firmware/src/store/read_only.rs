//! Opening the database read-only beside a running daemon: the CLI's
//! readers, the fleet link, telemetry and the recorder read this way (WAL
//! lets them read while the store writes), while every change goes through
//! the store thread, the database's one writer.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::schema::{MIGRATIONS, check_version};
use super::{DB_FILE, StoreError};

/// The database in a data directory, opened read-only. What other modules
/// read through it is in the store's files by job: `status` (telemetry),
/// `recordings` (the recorder), `unsent` (the fleet link).
#[derive(Debug)]
pub struct ReadOnly {
    conn: Connection,
    path: PathBuf,
}

impl ReadOnly {
    /// Opens the database the store has created in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<ReadOnly, StoreError> {
        let path = data_dir.join(DB_FILE);
        let conn = open_read_only(&path)?;
        Ok(ReadOnly { conn, path })
    }

    /// The connection, for the store's own readers.
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `read`; a failure says which database and `what` was read.
    pub(super) fn read<T>(
        &self,
        what: &'static str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        read(&self.conn).map_err(|source| StoreError::Query {
            path: self.path.clone(),
            what,
            source,
        })
    }
}

/// Opens the database read-only, without disturbing a running daemon, and
/// checks its version.
pub(super) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    })?;
    let version = check_version(&conn, path)?;
    let supported = MIGRATIONS.len() as i64;
    // Version 0 is a database the daemon has not initialised yet: it reads
    // as empty. Anything between is older firmware's schema, which these
    // queries do not know.
    if version != 0 && version < supported {
        return Err(StoreError::TooOld {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    Ok(conn)
}

/// Whether the database has `table` (an older schema may not).
pub(super) fn has_table(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![table],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}
