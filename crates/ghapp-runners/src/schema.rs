//! The database schema, as numbered migrations compiled into the binary. `PRAGMA user_version`
//! records how many have been applied; at open, the missing ones run, each in its own
//! transaction with the version bump, so a crash leaves the file at one version or the next.

use rusqlite::Connection;

/// The migrations, in order; migration `i` (from 0) brings the file to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: runners and the hash-chained audit trail.
    r#"
    CREATE TABLE runners (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        github_id INTEGER,
        owner_identity TEXT NOT NULL,
        host TEXT NOT NULL,
        org TEXT NOT NULL,
        repo TEXT,
        labels TEXT NOT NULL,
        runner_group_id INTEGER NOT NULL,
        ephemeral INTEGER NOT NULL,
        mode TEXT NOT NULL CHECK (mode IN ('jit', 'registration_token')),
        state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'offline', 'deleted')),
        busy INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_online_at INTEGER,
        offline_since INTEGER,
        deleted_at INTEGER
    );
    -- One live runner per name: two concurrent provisions of a name cannot both insert.
    CREATE UNIQUE INDEX runners_live_name ON runners (name) WHERE state <> 'deleted';
    CREATE INDEX runners_owner ON runners (owner_identity);

    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        address TEXT,
        action TEXT NOT NULL,
        runner TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    "#,
];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Why migrating failed.
pub(crate) enum MigrationError {
    /// The file's version is newer than [`VERSION`].
    TooNew(i64),
    /// SQLite failed.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrationError {
    fn from(e: rusqlite::Error) -> Self {
        MigrationError::Sql(e)
    }
}

/// The file's schema version.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies the migrations the file lacks; returns the version it was at.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, MigrationError> {
    let found = version(conn)?;
    if found > VERSION {
        return Err(MigrationError::TooNew(found));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no parameters; the number is ours.
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
    }
    Ok(found)
}
