//! The audit log: one JSON object per line for every request a caller makes (except the noise of
//! `/healthz` and `/metrics` scrapes) and every refused peer or credential — who asked (uid/gid/pid
//! on the socket, the address on the network, the client's name or the ID token's issuer and
//! subject — never the credential itself), for what
//! (route, host, owner/repo, permissions) and what came of it (status, outcome, the token's
//! fingerprint). Never the token itself.
//!
//! Written to `[daemon] audit_log` (appended, created `0600`, never through a symlink, an existing
//! file's wider mode narrowed to `0600`; reopened on SIGHUP so logrotate can move it), or to
//! stderr with `-`.

use crate::access::Peer;
use crate::identity::{Caller, Credential, Origin};
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::time::Timestamp;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What came of a request, for filtering the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A token was handed out.
    Granted,
    /// A cached token was dropped on request.
    Invalidated,
    /// The peer's uid/gid is not allowed.
    DeniedPeer,
    /// The credential presented is not valid (401).
    DeniedCredential,
    /// The identity's mint limit was reached (429).
    Limited,
    /// The peer's policy refused the request.
    DeniedPolicy,
    /// The request was malformed or could not be served.
    Failed,
    /// Anything else that succeeded (status, no-op invalidation).
    Ok,
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// When the request arrived (`2026-11-22T05:00:00Z`).
    pub time: Timestamp,
    /// Peer's uid (Unix socket callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_uid: Option<u32>,
    /// Peer's gid (Unix socket callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_gid: Option<u32>,
    /// Peer's pid, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_pid: Option<i32>,
    /// The source address (network callers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The `[[client]]` whose key was presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The issuer of the verified ID token presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The subject of the verified ID token presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// HTTP method.
    pub method: String,
    /// The route pattern (never the raw path).
    pub route: &'static str,
    /// The git host asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The account asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The repository asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Permissions asked for (`contents:read,…`), or granted when a token was handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// What came of it.
    pub outcome: Outcome,
    /// The error message answered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fingerprint of the token handed out or invalidated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
    /// Installation the token belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// The token's expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The App a failure involved (its configured name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What a failed request was for, as the broker names it (`acme/widgets`, `account acme`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// GitHub's HTTP status, when a failure was GitHub's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_status: Option<u16>,
    /// The GitHub route that failed (`POST /app/installations/{id}/access_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_route: Option<String>,
    /// GitHub's message on a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github_message: Option<String>,
    /// Time spent answering, in milliseconds.
    pub duration_ms: u64,
    /// Whether the audit log was being written when the request arrived ([`AuditLog::event`]).
    /// When it was not, what was asked and granted is not copied in (those copies and the
    /// token's SHA-256 fingerprint were most of the token route's own work; see
    /// docs/benchmarks-findings.md) and the event is never written, even if a reload turns the
    /// log on meanwhile: a record is complete or absent.
    #[serde(skip)]
    pub detailed: bool,
}

impl AuditEvent {
    /// A record for `peer` calling `method route`, to be filled in as the request is served.
    pub fn new(peer: &Peer, method: &str, route: &'static str) -> AuditEvent {
        AuditEvent::for_origin(&Origin::Local(*peer), method, route)
    }

    /// A record for a caller from `origin` (the credential is added once verified).
    pub fn for_origin(origin: &Origin, method: &str, route: &'static str) -> AuditEvent {
        let peer = origin.peer();
        AuditEvent {
            time: Timestamp::now(),
            peer_uid: peer.map(|p| p.uid),
            peer_gid: peer.map(|p| p.gid),
            peer_pid: peer.and_then(|p| p.pid),
            address: origin.address().map(|a| a.to_string()),
            client: None,
            issuer: None,
            subject: None,
            method: method.to_string(),
            route,
            host: None,
            owner: None,
            repo: None,
            permissions: None,
            status: 0,
            outcome: Outcome::Ok,
            error: None,
            token_fingerprint: None,
            installation_id: None,
            expires_at: None,
            app: None,
            target: None,
            github_status: None,
            github_route: None,
            github_message: None,
            duration_ms: 0,
            detailed: true,
        }
    }

    /// Records a token handed out: its fingerprint, installation, expiry, owner and permissions
    /// (the descriptive ones only for a [`AuditEvent::detailed`] event).
    pub fn granted(&mut self, token: &ghapp_protocol::api::TokenResponse) {
        self.outcome = Outcome::Granted;
        self.installation_id = Some(token.installation_id);
        self.expires_at = Some(token.expires_at);
        if self.detailed {
            self.token_fingerprint = Some(token.token.fingerprint());
            self.owner = Some(token.owner.clone());
            self.permissions = Some(permission_list(&token.permissions));
        }
    }

    /// Records who the verified credential names: the client, or the token's issuer and
    /// subject (never the credential).
    pub fn identify(&mut self, caller: &Caller) {
        match &caller.credential {
            Some(Credential::Client(name)) => self.client = Some(name.to_string()),
            Some(Credential::IdToken(token)) => {
                self.issuer = Some(token.issuer.to_string());
                self.subject = Some(token.subject.clone());
            }
            None => {}
        }
    }

    /// Records what a broker failure was about: the App, installation and target, and GitHub's
    /// status, route and message — each only when the error carries it.
    pub fn broker_failure(&mut self, error: &ghapp_broker::BrokerError) {
        self.app = error.app().map(str::to_string);
        self.installation_id = error.installation_id().or(self.installation_id);
        self.target = error.target().map(str::to_string);
        self.github_status = error.github_status();
        self.github_route = error.github_route().map(str::to_string);
        self.github_message = error.github_message().map(str::to_string);
    }
}

/// `contents:read,issues:write`: [`Permissions::to_list`]'s text, written into one string. Its
/// `format!` per permission and `join` cost ~18,000 instructions per token answer with the 15
/// permissions of a typical installation (callgrind, docs/benchmarks-findings.md).
pub fn permission_list(permissions: &Permissions) -> String {
    let mut list = String::with_capacity(256);
    for (name, level) in permissions.iter() {
        if !list.is_empty() {
            list.push(',');
        }
        list.push_str(name);
        list.push(':');
        list.push_str(level.as_str());
    }
    list
}

enum Sink {
    None,
    Stderr,
    File(PathBuf, File),
}

/// The audit log; cheap to share, writes are whole lines under a lock (no `.await` inside).
pub struct AuditLog {
    sink: Mutex<Sink>,
    /// Whether `sink` writes anywhere: read per request without taking the lock.
    enabled: AtomicBool,
}

impl AuditLog {
    /// Opens the destination: `None` (no audit log), `-` (stderr) or a file.
    pub fn open(destination: Option<&Path>) -> anyhow::Result<AuditLog> {
        let sink = open_sink(destination)?;
        Ok(AuditLog {
            enabled: AtomicBool::new(!matches!(sink, Sink::None)),
            sink: Mutex::new(sink),
        })
    }

    /// True when records are being written (an audit log is configured).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// An event for a request from `origin` ([`AuditEvent::for_origin`]), detailed only when
    /// the log is being written (see [`AuditEvent::detailed`]).
    pub fn event(&self, origin: &Origin, method: &str, route: &'static str) -> AuditEvent {
        let mut event = AuditEvent::for_origin(origin, method, route);
        event.detailed = self.enabled();
        event
    }

    /// Reopens (after SIGHUP: a new path, or the same path moved away by logrotate). On error
    /// the previous destination stays in use.
    pub fn reopen(&self, destination: Option<&Path>) -> anyhow::Result<()> {
        let sink = open_sink(destination)?;
        let mut current = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        self.enabled
            .store(!matches!(sink, Sink::None), Ordering::Relaxed);
        *current = sink;
        Ok(())
    }

    /// Appends one record, unless the event is not [`AuditEvent::detailed`]. A failing audit
    /// log is reported in the logs, never to the client.
    pub fn record(&self, event: &AuditEvent) {
        // No audit log: no lock, nothing to serialize (this runs on every request).
        if !event.detailed || !self.enabled() {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*sink, Sink::None) {
            return;
        }
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!("audit record not serializable: {e}");
                return;
            }
        };
        line.push(b'\n');
        let result = match &mut *sink {
            Sink::None => Ok(()),
            Sink::Stderr => std::io::stderr().lock().write_all(&line),
            Sink::File(_, file) => file.write_all(&line),
        };
        if let Err(e) = result {
            let place = match &*sink {
                Sink::File(path, _) => path.display().to_string(),
                _ => "stderr".to_string(),
            };
            tracing::error!("cannot write the audit log {place}: {e}");
        }
    }
}

fn open_sink(destination: Option<&Path>) -> anyhow::Result<Sink> {
    match destination {
        None => Ok(Sink::None),
        Some(path) if path == Path::new("-") => Ok(Sink::Stderr),
        Some(path) => Ok(Sink::File(path.to_path_buf(), open_private(path)?)),
    }
}

/// Opens (creating `0600`) the audit file for appending without following a symlink in its last
/// component, so nobody who can write its directory can point the daemon at another file. An
/// existing file must be a regular file owned by the daemon's uid; a mode wider than `0600` is
/// narrowed to `0600` (and said so): the log names every peer and token fingerprint.
fn open_private(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let context = |what: String| {
        anyhow::anyhow!(
            "cannot use audit log {} ([daemon] audit_log): {what}",
            path.display()
        )
    };
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc_flags())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                context("it is a symbolic link; name the real file".to_string())
            }
            // O_NONBLOCK on a FIFO nobody reads.
            Some(code) if code == rustix::io::Errno::NXIO.raw_os_error() => {
                context("not a regular file (a FIFO or a device)".to_string())
            }
            _ => context(e.to_string()),
        })?;
    let meta = file.metadata().map_err(|e| context(e.to_string()))?;
    if !meta.is_file() {
        return Err(context("not a regular file".to_string()));
    }
    let own_uid = rustix::process::geteuid().as_raw();
    if meta.uid() != own_uid {
        return Err(context(format!(
            "owned by uid {}, not by the daemon's uid {own_uid}: remove it or chown it",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| {
                context(format!(
                    "mode {mode:04o} is too wide and chmod 600 failed: {e}"
                ))
            })?;
        tracing::warn!(
            "audit log {} had mode {mode:04o}; narrowed it to 0600",
            path.display()
        );
    }
    Ok(file)
}

/// `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY` for [`OpenOptionsExt::custom_flags`]:
/// `O_NONBLOCK` so a FIFO planted in the log's place fails (or opens) at once instead of
/// blocking the daemon until a reader comes, to be refused as not a regular file; it changes
/// nothing for the regular file the log must be.
fn libc_flags() -> i32 {
    use rustix::fs::OFlags;
    (OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_are_json_lines_and_survive_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        let log = AuditLog::open(Some(&path)).unwrap();
        let peer = Peer {
            uid: 1000,
            gid: 1000,
            pid: Some(7),
        };
        let mut event = AuditEvent::new(&peer, "GET", "/v1/token");
        event.owner = Some("acme".into());
        event.status = 200;
        event.outcome = Outcome::Granted;
        event.token_fingerprint = Some("sha256:0123456789ab".into());
        log.record(&event);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        std::fs::rename(&path, tmp.path().join("audit.jsonl.1")).unwrap();
        log.reopen(Some(&path)).unwrap();
        log.record(&event);
        for file in [tmp.path().join("audit.jsonl.1"), path.clone()] {
            let text = std::fs::read_to_string(&file).unwrap();
            let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(value["peer_uid"], 1000);
            assert_eq!(value["outcome"], "granted");
            assert_eq!(value["route"], "/v1/token");
            assert!(value.get("repo").is_none());
        }
        assert!(
            log.reopen(Some(&tmp.path().join("no/such/dir/audit")))
                .is_err()
        );
        log.record(&event); // still writes to the previous file
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn the_permission_list_is_to_list() {
        for list in [
            "",
            "contents:read",
            "actions:write,contents:read,zz_custom:admin,issues:write",
        ] {
            let permissions = Permissions::parse_list(list).unwrap();
            assert_eq!(permission_list(&permissions), permissions.to_list());
        }
    }

    #[test]
    fn records_are_complete_or_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        let off = AuditLog::open(None).unwrap();
        assert!(!off.enabled());
        let peer = Peer {
            uid: 1000,
            gid: 1000,
            pid: None,
        };
        let early = off.event(&Origin::Local(peer), "GET", "/v1/token");
        assert!(!early.detailed);
        off.reopen(Some(&path)).unwrap();
        assert!(off.enabled());
        // Begun while the log was off: not written half-filled after the reload.
        off.record(&early);
        let late = off.event(&Origin::Local(peer), "GET", "/v1/token");
        assert!(late.detailed);
        off.record(&late);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        off.reopen(None).unwrap();
        assert!(!off.enabled());
    }

    #[test]
    fn symlinks_are_refused_and_wide_modes_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let link = tmp.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = AuditLog::open(Some(&link)).err().unwrap().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let wide = tmp.path().join("wide.jsonl");
        std::fs::write(&wide, "").unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o644)).unwrap();
        AuditLog::open(Some(&wide)).unwrap();
        assert_eq!(
            std::fs::metadata(&wide).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
