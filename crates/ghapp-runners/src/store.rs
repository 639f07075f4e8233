//! [`Store`]: the runner database — one SQLite file in WAL mode with `synchronous = FULL` (a
//! committed change survives the process being killed, and power loss), its schema migrated at
//! open. Every change to a runner and the audit row recording it commit in one transaction.
//!
//! One connection behind a mutex: each operation is a short local transaction (no network call
//! is ever made while it is held). A damaged or read-only file is an error at open, never
//! replaced.

use crate::audit::{self, Actor, Verification};
use crate::error::StoreError;
use crate::schema::{self, MigrationError};
use ghapp_protocol::runners::{ProvisionMode, RunnerRecord, RunnerState};
use ghapp_protocol::time::Timestamp;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long a write waits for another connection's (a backup's, the CLI's) lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A runner about to be provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRunner {
    /// Its name.
    pub name: String,
    /// Who asks (the owner of the record).
    pub owner_identity: String,
    /// The git host.
    pub host: String,
    /// The organization, or the repository's owner.
    pub org: String,
    /// The repository, for a repository's runner.
    pub repo: Option<String>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its runner group.
    pub runner_group_id: u64,
    /// Takes one job.
    pub ephemeral: bool,
    /// JIT or registration token.
    pub mode: ProvisionMode,
}

/// What a sync saw of a runner at GitHub, applied by [`Store::transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// GitHub's id, when GitHub listed it.
    pub github_id: Option<u64>,
    /// Busy with a job.
    pub busy: bool,
}

/// The runner database.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const COLUMNS: &str = "name, github_id, owner_identity, host, org, repo, labels, runner_group_id, ephemeral, mode, state, busy, created_at, updated_at, last_online_at, offline_since, deleted_at";

impl Store {
    /// Opens (creating it and its directory, 0700, if missing) the database at `path` for the
    /// daemon: checks it is writable and intact, switches it to WAL, applies the migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StoreError::Open {
                    path: path.to_path_buf(),
                    detail: format!("cannot create its directory {}: {e}", dir.display()),
                })?;
        }
        create_private(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, "opening", e))?;
        let read_only = conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| classify(path, "opening", e))?;
        if read_only {
            return Err(read_only_error(path, "SQLite opened the file read-only"));
        }
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(path, "setting the busy timeout", e))?;
        check_intact(&conn, path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| classify(path, "switching to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(read_only_error(
                path,
                &format!("it stays in journal mode {mode} instead of WAL"),
            ));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| classify(path, "setting pragmas", e))?;
        match schema::migrate(&mut conn) {
            Ok(from) if from < schema::VERSION => {
                tracing::info!(database = %path.display(), from, to = schema::VERSION, "runner database migrated");
            }
            Ok(_) => {}
            Err(MigrationError::TooNew(found)) => {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                    known: schema::VERSION,
                });
            }
            Err(MigrationError::Sql(e)) => return Err(classify(path, "migrating the schema", e)),
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing database read-only (the CLI's `audit verify`, `audit export`,
    /// `backup`): never creates, migrates or writes it.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                detail:
                    "no such file (is [runners] database the daemon's? name it with --database)"
                        .to_string(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(path, "opening", e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(path, "setting the busy timeout", e))?;
        check_intact(&conn, path)?;
        let version =
            schema::version(&conn).map_err(|e| classify(path, "reading the version", e))?;
        if version > schema::VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: schema::VERSION,
            });
        }
        if version == 0 {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                detail: "it holds no runner tables (the daemon creates them at start)".to_string(),
            });
        }
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sql(&self, context: &str, e: rusqlite::Error) -> StoreError {
        classify(&self.path, context, e)
    }

    /// Records a runner about to be provisioned (state `pending`, no GitHub id yet) with its
    /// audit row. The partial unique index on live names decides between two concurrent
    /// provisions of a name: the second insert fails, and that is [`StoreError::Conflict`].
    pub fn reserve(
        &self,
        new: &NewRunner,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RunnerRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a provision", e))?;
        let labels = serde_json::to_string(&new.labels).unwrap_or_else(|_| "[]".into());
        let inserted = tx.execute(
            "INSERT INTO runners (name, owner_identity, host, org, repo, labels, runner_group_id, ephemeral, mode, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?10)",
            params![
                new.name,
                new.owner_identity,
                new.host,
                new.org,
                new.repo,
                labels,
                new.runner_group_id as i64,
                new.ephemeral,
                mode_text(new.mode),
                now.unix_seconds()
            ],
        );
        if let Err(e) = inserted {
            if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
                drop(tx);
                let state = live_row(&conn, &new.name)
                    .ok()
                    .flatten()
                    .map_or("pending".to_string(), |r| r.state.to_string());
                return Err(StoreError::Conflict {
                    name: new.name.clone(),
                    state,
                });
            }
            return Err(self.sql("recording a provision", e));
        }
        let detail = serde_json::json!({
            "host": new.host,
            "org": new.org,
            "repo": new.repo,
            "labels": new.labels,
            "runner_group_id": new.runner_group_id,
            "ephemeral": new.ephemeral,
            "mode": mode_text(new.mode),
        });
        audit::append(
            &tx,
            now,
            actor,
            "provision_requested",
            Some(&new.name),
            &detail,
        )
        .map_err(|e| self.sql("writing the audit row", e))?;
        let record = live_row(&tx, &new.name)
            .map_err(|e| self.sql("reading the new runner", e))?
            .ok_or_else(|| StoreError::NotFound {
                name: new.name.clone(),
            })?;
        tx.commit()
            .map_err(|e| self.sql("committing a provision", e))?;
        Ok(record)
    }

    /// Records that GitHub provisioned the reserved runner `name` (its id, for a JIT runner),
    /// with `detail` (fingerprints, never secrets) in the audit row.
    pub fn provisioned(
        &self,
        name: &str,
        github_id: Option<u64>,
        actor: &Actor,
        now: Timestamp,
        detail: &serde_json::Value,
    ) -> Result<RunnerRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a write", e))?;
        let changed = tx
            .execute(
                "UPDATE runners SET github_id = ?2, updated_at = ?3 WHERE name = ?1 AND state <> 'deleted'",
                params![name, github_id.map(|id| id as i64), now.unix_seconds()],
            )
            .map_err(|e| self.sql("recording a provision", e))?;
        if changed == 0 {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        }
        audit::append(&tx, now, actor, "provision", Some(name), detail)
            .map_err(|e| self.sql("writing the audit row", e))?;
        let record = live_row(&tx, name)
            .map_err(|e| self.sql("reading the runner", e))?
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_string(),
            })?;
        tx.commit().map_err(|e| self.sql("committing", e))?;
        Ok(record)
    }

    /// Drops the reservation of `name` after GitHub refused it (the row goes; the audit row
    /// saying why stays).
    pub fn abandon(
        &self,
        name: &str,
        actor: &Actor,
        now: Timestamp,
        reason: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a write", e))?;
        tx.execute(
            "DELETE FROM runners WHERE name = ?1 AND state = 'pending' AND github_id IS NULL",
            params![name],
        )
        .map_err(|e| self.sql("dropping a reservation", e))?;
        audit::append(
            &tx,
            now,
            actor,
            "provision_failed",
            Some(name),
            &serde_json::json!({ "reason": reason }),
        )
        .map_err(|e| self.sql("writing the audit row", e))?;
        tx.commit().map_err(|e| self.sql("committing", e))
    }

    /// The live runner named `name`, else the most recently deleted one of that name.
    pub fn get(&self, name: &str) -> Result<Option<RunnerRecord>, StoreError> {
        let conn = self.lock();
        if let Some(live) = live_row(&conn, name).map_err(|e| self.sql("reading a runner", e))? {
            return Ok(Some(live));
        }
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM runners WHERE name = ?1 ORDER BY id DESC LIMIT 1"),
            params![name],
            record,
        )
        .optional()
        .map_err(|e| self.sql("reading a runner", e))
    }

    /// Runners, oldest first: of `owner` only (or everyone's), deleted ones too or not.
    pub fn list(
        &self,
        owner: Option<&str>,
        include_deleted: bool,
    ) -> Result<Vec<RunnerRecord>, StoreError> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {COLUMNS} FROM runners WHERE (?1 IS NULL OR owner_identity = ?1) AND (?2 OR state <> 'deleted') ORDER BY id"
        );
        let mut statement = conn
            .prepare(&sql)
            .map_err(|e| self.sql("listing runners", e))?;
        let rows = statement
            .query_map(params![owner, include_deleted], record)
            .map_err(|e| self.sql("listing runners", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql("listing runners", e))
    }

    /// Moves the live runner `name` from state `from` to `to` (a compare-and-set: false, and
    /// nothing written, when it is no longer in `from`), updating what GitHub showed, with an
    /// audit row giving `reason`.
    #[allow(clippy::too_many_arguments)]
    pub fn transition(
        &self,
        name: &str,
        from: RunnerState,
        to: RunnerState,
        observed: Observed,
        actor: &Actor,
        now: Timestamp,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a write", e))?;
        let now_s = now.unix_seconds();
        let changed = tx
            .execute(
                "UPDATE runners SET
                    state = ?3,
                    github_id = COALESCE(?4, github_id),
                    busy = ?5,
                    updated_at = ?6,
                    last_online_at = CASE WHEN ?3 = 'active' THEN ?6 ELSE last_online_at END,
                    offline_since = CASE WHEN ?3 = 'offline' THEN ?6 WHEN ?3 = 'active' THEN NULL ELSE offline_since END,
                    deleted_at = CASE WHEN ?3 = 'deleted' THEN ?6 ELSE deleted_at END
                 WHERE name = ?1 AND state = ?2",
                params![
                    name,
                    from.as_str(),
                    to.as_str(),
                    observed.github_id.map(|id| id as i64),
                    observed.busy,
                    now_s
                ],
            )
            .map_err(|e| self.sql("changing a runner's state", e))?;
        if changed == 0 {
            return Ok(false);
        }
        audit::append(
            &tx,
            now,
            actor,
            "transition",
            Some(name),
            &serde_json::json!({ "from": from, "to": to, "reason": reason, "github_id": observed.github_id }),
        )
        .map_err(|e| self.sql("writing the audit row", e))?;
        tx.commit().map_err(|e| self.sql("committing", e))?;
        Ok(true)
    }

    /// Updates what GitHub shows of a live runner without a state change (busy, its id once it
    /// registered, when it was last seen online); an id learnt this way gets an audit row.
    pub fn observe(
        &self,
        name: &str,
        observed: Observed,
        online: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a write", e))?;
        let learnt = match observed.github_id {
            Some(id) => tx
                .execute(
                    "UPDATE runners SET github_id = ?2 WHERE name = ?1 AND state <> 'deleted' AND github_id IS NULL",
                    params![name, id as i64],
                )
                .map_err(|e| self.sql("recording a runner id", e))?,
            None => 0,
        };
        tx.execute(
            "UPDATE runners SET busy = ?2,
                last_online_at = CASE WHEN ?3 THEN ?4 ELSE last_online_at END
             WHERE name = ?1 AND state <> 'deleted'",
            params![name, observed.busy, online, now.unix_seconds()],
        )
        .map_err(|e| self.sql("recording what GitHub shows", e))?;
        if learnt > 0 {
            audit::append(
                &tx,
                now,
                &Actor::sync(),
                "registered",
                Some(name),
                &serde_json::json!({ "github_id": observed.github_id }),
            )
            .map_err(|e| self.sql("writing the audit row", e))?;
        }
        tx.commit().map_err(|e| self.sql("committing", e))
    }

    /// Appends an audit row that changes no runner (a refused request, a GitHub failure).
    pub fn note(
        &self,
        actor: &Actor,
        now: Timestamp,
        action: &str,
        runner: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.sql("starting a write", e))?;
        audit::append(&tx, now, actor, action, runner, detail)
            .map_err(|e| self.sql("writing the audit row", e))?;
        tx.commit().map_err(|e| self.sql("committing", e))
    }

    /// Walks the audit chain (see [`audit::verify`]).
    pub fn verify_audit(&self) -> Result<Verification, StoreError> {
        let conn = self.lock();
        audit::verify(&conn).map_err(|detail| StoreError::Sql {
            path: self.path.clone(),
            context: "reading the audit trail".into(),
            detail,
        })
    }

    /// Writes the audit rows at or after `since` as JSON lines; returns how many.
    pub fn export_audit(
        &self,
        since: Option<Timestamp>,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, StoreError> {
        let conn = self.lock();
        audit::export(&conn, since, out).map_err(|detail| StoreError::Sql {
            path: self.path.clone(),
            context: "exporting the audit trail".into(),
            detail,
        })
    }

    /// Copies the database to `destination` (a new file) with SQLite's online backup: a
    /// consistent snapshot even while the daemon writes.
    pub fn backup(&self, destination: &Path) -> Result<(), StoreError> {
        if destination.exists() {
            return Err(StoreError::Open {
                path: destination.to_path_buf(),
                detail: "the backup file exists already; name a new file".into(),
            });
        }
        let conn = self.lock();
        conn.backup(rusqlite::MAIN_DB, destination, None)
            .map_err(|e| StoreError::Sql {
                path: self.path.clone(),
                context: format!("backing up to {}", destination.display()),
                detail: e.to_string(),
            })
    }

    /// A trivial query: the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT count(*) FROM runners", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|_| ())
        .map_err(|e| self.sql("answering a health check", e))
    }
}

/// `quick_check`: the file is an SQLite database and its pages hold together.
fn check_intact(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| classify(path, "checking the file", e))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("quick_check: {verdict}"),
        });
    }
    Ok(())
}

/// Creates the database file `0600` when it does not exist (SQLite would create it, and its
/// `-wal` and `-shm` files, which take its mode, `0644` under the usual umask: every local user
/// could read who owns which runner and the audit trail), and refuses one that someone else could
/// have put there or could change: a symlink or a file owned by another non-root user, or a file
/// group/others may write.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let refused = |detail: String| StoreError::Open {
        path: path.to_path_buf(),
        detail,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        // SQLite says why (read-only directory, no such directory) in its own words.
        Err(_) => return Ok(()),
    }
    let link =
        std::fs::symlink_metadata(path).map_err(|e| refused(format!("cannot stat it: {e}")))?;
    if link.file_type().is_symlink() && !ghapp_protocol::config::trusted_owner(link.uid()) {
        return Err(refused(format!(
            "it is a symlink owned by uid {}, neither this process's uid nor root: that user chose where the daemon writes; remove it",
            link.uid()
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| refused(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(refused("it is not a regular file".to_string()));
    }
    if !ghapp_protocol::config::trusted_owner(meta.uid()) {
        return Err(refused(format!(
            "it is owned by uid {}, neither this process's uid nor root: that user could rewrite who owns which runner and the audit trail; chown it to the daemon's user",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refused(format!(
            "it is writable by group/others (mode {mode:04o}): run chmod 600 {}",
            path.display()
        )));
    }
    Ok(())
}

fn read_only_error(path: &Path, detail: &str) -> StoreError {
    StoreError::ReadOnly {
        path: path.to_path_buf(),
        uid: current_uid(),
        detail: detail.to_string(),
    }
}

fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Maps an SQLite error to what it means for the file.
fn classify(path: &Path, context: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("{context}: {e}"),
        },
        Some(ErrorCode::ReadOnly) => read_only_error(path, &format!("{context}: {e}")),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StoreError::Open {
            path: path.to_path_buf(),
            detail: format!("{context}: {e}"),
        },
        _ => StoreError::Sql {
            path: path.to_path_buf(),
            context: context.to_string(),
            detail: e.to_string(),
        },
    }
}

fn mode_text(mode: ProvisionMode) -> &'static str {
    match mode {
        ProvisionMode::Jit => "jit",
        ProvisionMode::RegistrationToken => "registration_token",
    }
}

fn live_row(conn: &Connection, name: &str) -> rusqlite::Result<Option<RunnerRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM runners WHERE name = ?1 AND state <> 'deleted'"),
        params![name],
        record,
    )
    .optional()
}

fn timestamp(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    let seconds: Option<i64> = row.get(index)?;
    seconds
        .map(|s| {
            Timestamp::from_unix_seconds(s).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    index,
                    rusqlite::types::Type::Integer,
                    Box::new(e),
                )
            })
        })
        .transpose()
}

fn conversion(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, message.into())
}

fn record(row: &Row<'_>) -> rusqlite::Result<RunnerRecord> {
    let labels: String = row.get(6)?;
    let mode: String = row.get(9)?;
    let state: String = row.get(10)?;
    Ok(RunnerRecord {
        name: row.get(0)?,
        github_id: row.get::<_, Option<i64>>(1)?.map(|id| id as u64),
        owner_identity: row.get(2)?,
        host: row.get(3)?,
        org: row.get(4)?,
        repo: row.get(5)?,
        labels: serde_json::from_str(&labels).map_err(|e| conversion(6, e.to_string()))?,
        runner_group_id: row.get::<_, i64>(7)? as u64,
        ephemeral: row.get(8)?,
        mode: match mode.as_str() {
            "registration_token" => ProvisionMode::RegistrationToken,
            _ => ProvisionMode::Jit,
        },
        state: RunnerState::parse(&state)
            .ok_or_else(|| conversion(10, format!("unknown state {state:?}")))?,
        busy: row.get(11)?,
        created_at: timestamp(row, 12)?.unwrap_or_default(),
        updated_at: timestamp(row, 13)?.unwrap_or_default(),
        last_online_at: timestamp(row, 14)?,
        offline_since: timestamp(row, 15)?,
        deleted_at: timestamp(row, 16)?,
    })
}
