//! [`StoreError`]: why the runner database could not do something, with the file and the
//! runner it concerns as fields.

use std::path::PathBuf;

/// A failure of the runner database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not an SQLite database, or it is damaged. Never reset: restore a backup.
    #[error(
        "runner database {path} is damaged or not an SQLite database ({detail}); it was left as it is: restore it from a backup (`ghapp runners backup` makes them) or move it away to start afresh"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file (or its directory) cannot be written.
    #[error(
        "runner database {path} is read-only for the daemon (uid {uid}): it must be able to write the file and its directory (for the -wal and -shm files); {detail}"
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// The daemon's effective uid.
        uid: u32,
        /// What was found.
        detail: String,
    },
    /// The file was written by a newer ghapp (a schema this binary does not know).
    #[error(
        "runner database {path} has schema version {found}, newer than this ghapp knows ({known}): run the newer ghapp, or restore a backup made by this version"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// Cannot open or create the file.
    #[error("cannot open runner database {path}: {detail}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A live runner has this name already.
    #[error(
        "a runner named {name} exists already (state {state}); deprovision it first or pick another name"
    )]
    Conflict {
        /// The name.
        name: String,
        /// The existing runner's state.
        state: String,
    },
    /// No live runner has this name (for this caller).
    #[error("no runner named {name}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// Any other database failure.
    #[error("runner database {path}: {context}: {detail}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// What SQLite said.
        detail: String,
    },
}

impl StoreError {
    /// The HTTP status the socket API answers this with.
    pub fn http_status(&self) -> u16 {
        match self {
            StoreError::Conflict { .. } => 409,
            StoreError::NotFound { .. } => 404,
            _ => 500,
        }
    }
}
