//! The audit trail: an append-only table where each row carries the SHA-256 of the row before
//! it (a hash chain), so an edited, inserted or deleted row breaks the chain at that point.
//!
//! A row's hash covers its sequence number, time, actor, address, action, runner, details and
//! the previous row's hash, serialized as one JSON array (deterministic); the first row's
//! previous hash is [`GENESIS`]. Triggers refuse `UPDATE` and `DELETE` on the table, so only
//! someone who edits the file outside ghapp (dropping the triggers) can change it — and
//! [`verify`] finds that. Removing rows from the *end* leaves a valid shorter chain: compare the
//! head `verify` prints with one recorded elsewhere (an export, a log line) to catch that.

use ghapp_protocol::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;

/// The previous hash of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who did something, for the audit trail (the seed's "identity, time, IP").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `uid:1000`, `client:ci`, `oidc:ISSUER#SUBJECT`, or `ghapp:sync` for the daemon itself.
    pub identity: String,
    /// The network address, for a network caller.
    pub address: Option<String>,
}

impl Actor {
    /// The daemon's own background sync.
    pub fn sync() -> Actor {
        Actor {
            identity: "ghapp:sync".to_string(),
            address: None,
        }
    }
}

/// One audit row as exported (`ghapp runners audit export`, JSON lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// From where (network callers).
    pub address: Option<String>,
    /// What: `provision`, `provision_failed`, `deprovision`, `transition`, …
    pub action: String,
    /// The runner concerned.
    pub runner: Option<String>,
    /// Details (a JSON object; never a secret — tokens appear as fingerprints).
    pub detail: serde_json::Value,
    /// The previous row's hash.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Rows checked.
    pub rows: u64,
    /// The last row's sequence number and hash (record it elsewhere to detect truncation).
    pub head: Option<(i64, String)>,
    /// Every break found, in order (empty: the chain holds).
    pub problems: Vec<String>,
}

impl Verification {
    /// True when the chain holds.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The hash of a row with these fields.
#[allow(clippy::too_many_arguments)]
fn row_hash(
    seq: i64,
    at: i64,
    actor: &str,
    address: Option<&str>,
    action: &str,
    runner: Option<&str>,
    detail: &str,
    prev_hash: &str,
) -> String {
    let canonical =
        serde_json::json!([seq, at, actor, address, action, runner, detail, prev_hash]).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Appends one row to the chain, inside the caller's transaction (so the row and the change
/// it records commit together or not at all).
pub(crate) fn append(
    tx: &Connection,
    at: Timestamp,
    actor: &Actor,
    action: &str,
    runner: Option<&str>,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let detail = detail.to_string();
    let hash = row_hash(
        seq,
        at.unix_seconds(),
        &actor.identity,
        actor.address.as_deref(),
        action,
        runner,
        &detail,
        &prev_hash,
    );
    tx.execute(
        "INSERT INTO audit (seq, at, actor, address, action, runner, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
            at.unix_seconds(),
            actor.identity,
            actor.address,
            action,
            runner,
            detail,
            prev_hash,
            hash
        ],
    )?;
    Ok(seq)
}

/// A row as stored.
struct Row {
    seq: i64,
    at: i64,
    actor: String,
    address: Option<String>,
    action: String,
    runner: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

fn rows(
    conn: &Connection,
    since: Option<Timestamp>,
    mut each: impl FnMut(Row) -> Result<(), String>,
) -> Result<(), String> {
    let mut statement = conn
        .prepare(
            "SELECT seq, at, actor, address, action, runner, detail, prev_hash, hash FROM audit
             WHERE at >= ?1 ORDER BY seq",
        )
        .map_err(|e| e.to_string())?;
    let since = since.map_or(i64::MIN, Timestamp::unix_seconds);
    let mut cursor = statement.query([since]).map_err(|e| e.to_string())?;
    while let Some(row) = cursor.next().map_err(|e| e.to_string())? {
        let read = || -> rusqlite::Result<Row> {
            Ok(Row {
                seq: row.get(0)?,
                at: row.get(1)?,
                actor: row.get(2)?,
                address: row.get(3)?,
                action: row.get(4)?,
                runner: row.get(5)?,
                detail: row.get(6)?,
                prev_hash: row.get(7)?,
                hash: row.get(8)?,
            })
        };
        each(read().map_err(|e| format!("unreadable audit row: {e}"))?)?;
    }
    Ok(())
}

/// Walks the whole chain and reports every break: a row whose hash does not match its
/// contents (edited), a row whose previous hash is not the hash of the row before it, or a gap
/// in the sequence (deleted or inserted rows).
pub fn verify(conn: &Connection) -> Result<Verification, String> {
    let mut report = Verification {
        rows: 0,
        head: None,
        problems: Vec::new(),
    };
    let mut previous: Option<(i64, String)> = None;
    rows(conn, None, |row| {
        report.rows += 1;
        let expected_seq = previous.as_ref().map_or(1, |(seq, _)| seq + 1);
        let expected_prev = previous
            .as_ref()
            .map_or(GENESIS.to_string(), |(_, hash)| hash.clone());
        if row.seq != expected_seq {
            report.problems.push(format!(
                "row {}: expected row {expected_seq} here: rows {expected_seq}..{} were deleted or the sequence was edited",
                row.seq,
                row.seq - 1
            ));
        }
        if row.prev_hash != expected_prev {
            report.problems.push(format!(
                "row {}: its previous-row hash does not match row {}'s hash: a row before it was deleted, inserted or edited",
                row.seq,
                row.seq - 1
            ));
        }
        let actual = row_hash(
            row.seq,
            row.at,
            &row.actor,
            row.address.as_deref(),
            &row.action,
            row.runner.as_deref(),
            &row.detail,
            &row.prev_hash,
        );
        if actual != row.hash {
            report.problems.push(format!(
                "row {}: its contents do not match its hash: the row was edited",
                row.seq
            ));
        }
        previous = Some((row.seq, row.hash));
        Ok(())
    })?;
    report.head = previous;
    Ok(report)
}

/// Writes every row at or after `since` as one JSON object per line; returns how many.
pub fn export(
    conn: &Connection,
    since: Option<Timestamp>,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let mut written = 0;
    rows(conn, since, |row| {
        let entry = AuditEntry {
            seq: row.seq,
            at: Timestamp::from_unix_seconds(row.at).map_err(|e| e.to_string())?,
            actor: row.actor,
            address: row.address,
            action: row.action,
            runner: row.runner,
            detail: serde_json::from_str(&row.detail)
                .unwrap_or(serde_json::Value::String(row.detail)),
            prev_hash: row.prev_hash,
            hash: row.hash,
        };
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        writeln!(out, "{line}").map_err(|e| format!("cannot write the export: {e}"))?;
        written += 1;
        Ok(())
    })?;
    Ok(written)
}
