//! The store's errors: what went wrong, with the database or directory it
//! concerns and, for a query, what was being read.

use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory cannot be used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// A read or a write failed.
    #[error("database {path}: {what}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being read or written.
        what: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by newer firmware.
    #[error(
        "database {path} has schema version {found}, newer than this firmware's {supported}; refusing to touch it (install newer firmware or move the file aside)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this firmware knows.
        supported: i64,
    },
    /// The database has an older schema that the daemon has not migrated yet.
    #[error(
        "database {path} has schema version {found}, older than this firmware's {supported}; start callboxd once to migrate it"
    )]
    TooOld {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Version this firmware reads.
        supported: i64,
    },
    /// No database where one was expected.
    #[error("no call database at {0}")]
    Missing(PathBuf),
    /// The store thread is gone.
    #[error("the store has stopped")]
    Stopped,
}
