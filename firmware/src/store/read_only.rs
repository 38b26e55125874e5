//! Opening the database read-only beside a running daemon: the CLI's
//! readers, the fleet link, telemetry and retention read this way, while
//! every change goes through the store thread.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::StoreError;
use super::schema::{MIGRATIONS, check_version};

/// Opens the database read-only, without disturbing a running daemon, and
/// checks its version.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
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
