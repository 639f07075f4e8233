//! Check 3: the socket and the daemon behind it.
//!
//! - Which socket, and which rule chose it (`--socket`, `$GHAPP_SOCKET`, the config, the
//!   defaults), so a client and a daemon that disagree are obvious.
//! - The directory: not writable by others (a stranger could swap the socket; the daemon
//!   itself refuses such a directory unless it is sticky, as git does), owned by the socket's
//!   owner or root.
//! - The socket: really a socket; a mode open to every user is a WARN (the daemon still checks
//!   each peer's uid/gid, but there is no reason for it).
//! - The daemon: answers `/v1/status` (version, degraded); refusing this user (403) is a FAIL
//!   with the config keys that allow a uid; an App of the config file it does not serve, or
//!   serves with another key (fingerprints compared), is a WARN: it runs another config or was
//!   not reloaded after a change.

use super::keys::ProbedApp;
use super::report::Report;
use crate::commands::Context;
use ghapp_client::{ClientError, DaemonClient};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Reports on the socket, its directory and the daemon.
pub fn check(context: &Context, apps: &[ProbedApp], report: &mut Report) {
    let socket = context.socket();
    let path = &socket.path;
    let start_fix = "start the daemon: `systemctl --user start ghapp.socket` (or `systemctl start ghapp` for \
                     the system daemon), or `ghapp daemon --foreground`; if it runs elsewhere, point --socket / \
                     $GHAPP_SOCKET at its socket";
    let socket_owner = std::fs::symlink_metadata(path).ok().map(|m| m.uid());
    if let Some(dir) = path.parent() {
        check_directory(dir, socket_owner, report);
    }
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(_) => {
            report.fail(
                format!(
                    "daemon not reachable: no socket at {} (chosen by: {})",
                    path.display(),
                    socket.source
                ),
                start_fix,
            );
            return;
        }
    };
    if !metadata.file_type().is_socket() {
        report.fail(
            format!("{} (chosen by: {}) is not a socket", path.display(), socket.source),
            "remove it and restart the daemon, or point --socket / $GHAPP_SOCKET at the daemon's socket",
        );
        return;
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        report.warn(
            format!("socket {} is open to every user (mode {mode:04o}); the daemon still checks each peer", path.display()),
            "let the daemon set the mode (0600, or 0660 with [daemon] socket_group)",
        );
    } else {
        report.ok(format!(
            "socket {} (chosen by: {}): mode {mode:04o}, owner uid {}",
            path.display(),
            socket.source,
            metadata.uid()
        ));
    }

    let client = DaemonClient::new(path, STATUS_TIMEOUT).trusting(context.trusted_uids());
    match ghapp_client::block_on(client.status()) {
        Ok(status) => {
            report.ok(format!(
                "daemon answers on {}: ghapp {}, up {}, {} App(s), {} cached token(s)",
                path.display(),
                status.version,
                ghapp_protocol::duration::format_duration(Duration::from_secs(status.uptime_secs)),
                status.apps.len(),
                status.tokens.len()
            ));
            if status.version != ghapp_protocol::VERSION {
                report.warn(
                    format!(
                        "daemon is ghapp {}, this CLI is {}",
                        status.version,
                        ghapp_protocol::VERSION
                    ),
                    "restart the daemon after upgrading (systemctl --user restart ghapp)",
                );
            }
            compare_apps(apps, &status.apps, report);
            match &status.shared_cache {
                Some(shared) if shared.healthy => {
                    report.ok(format!("shared cache {} answers", shared.backend))
                }
                Some(shared) => report.warn(
                    format!(
                        "shared cache {} is unreachable: {}",
                        shared.backend,
                        shared.problem.as_deref().unwrap_or("no answer")
                    ),
                    "this replica serves from its own cache and mints alone; check that Redis runs and is reachable from the daemon (it rejoins by itself)",
                ),
                None => {}
            }
            match &status.upstream {
                Some(upstream) if upstream.healthy => report.ok(format!(
                    "upstream broker {} answers (tokens for {})",
                    upstream.url,
                    upstream.hosts.join(", ")
                )),
                Some(upstream) => report.fail(
                    format!(
                        "upstream broker {} is failing: {}",
                        upstream.url,
                        upstream.problem.as_deref().unwrap_or("no answer")
                    ),
                    "cached tokens serve on their margin only; check the broker's address, its CA (upstream.ca_file) and that it accepts this host's identity",
                ),
                None => {}
            }
            if status.degraded {
                report.warn(
                    format!(
                        "daemon is degraded: {}",
                        status.degraded_reason.as_deref().unwrap_or("GitHub is failing")
                    ),
                    "cached tokens are served while they last; check GitHub's reachability from the daemon (`ghapp status`)",
                );
            }
        }
        Err(ClientError::Api {
            status: 403,
            message,
        }) => report.fail(
            format!(
                "daemon refused this user (uid {}): {message}",
                rustix::process::getuid().as_raw()
            ),
            "allow the uid with [daemon] allow_uids, or a group with allow_gids / socket_group",
        ),
        Err(error @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) => report
            .fail(
                format!(
                    "daemon not reachable: {error} (socket chosen by: {})",
                    socket.source
                ),
                start_fix,
            ),
        Err(error @ ClientError::Untrusted { .. }) => report.fail(
            format!("{error} (socket chosen by: {})", socket.source),
            "fix the owner or mode named above (only you or root may own the way to your socket), \
             or add the daemon's uid to [daemon] trusted_uids if another user runs it on purpose",
        ),
        Err(error) => report.fail(
            format!(
                "daemon at {} did not answer like ghapp: {error}",
                path.display()
            ),
            "check what listens on the socket; restart the daemon",
        ),
    }
}

/// The config file's Apps against what the daemon reports it serves.
fn compare_apps(
    apps: &[ProbedApp],
    served: &[ghapp_protocol::api::AppStatus],
    report: &mut Report,
) {
    let reload_fix = "reload the daemon after changing the config or rotating a key \
                      (`systemctl --user reload ghapp`, or SIGHUP), or point it at this config";
    for loaded in apps {
        let name = &loaded.app.name;
        match served.iter().find(|s| &s.name == name) {
            None => report.warn(format!("the daemon does not serve App {name} from the config file"), reload_fix),
            Some(status) => match loaded.fingerprint() {
                Some(fingerprint) if fingerprint != status.key_fingerprint => report.warn(
                    format!(
                        "the daemon signs for App {name} with key {}, the config's key is {fingerprint}",
                        status.key_fingerprint
                    ),
                    reload_fix,
                ),
                _ => {}
            },
        }
    }
}

fn check_directory(dir: &Path, socket_owner: Option<u32>, report: &mut Report) {
    let Ok(metadata) = std::fs::metadata(dir) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    let owner = metadata.uid();
    if mode & 0o002 != 0 && !sticky {
        report.fail(
            format!(
                "socket directory {} is writable by every user (mode {mode:04o}): anyone could replace the socket",
                dir.display()
            ),
            format!("chmod 700 {} (the daemon creates it 0700)", dir.display()),
        );
    } else if mode & 0o020 != 0 && !sticky {
        report.warn(
            format!(
                "socket directory {} is writable by its group (mode {mode:04o})",
                dir.display()
            ),
            format!(
                "chmod 700 {} (or 750 to let a group reach the socket)",
                dir.display()
            ),
        );
    } else if let Some(socket_owner) = socket_owner.filter(|o| !sticky && *o != owner && owner != 0)
    {
        report.warn(
            format!(
                "socket directory {} belongs to uid {owner}, the socket to uid {socket_owner}: the directory's owner could swap the socket",
                dir.display()
            ),
            format!("let the daemon's user own {} (the daemon creates it), or use the default socket path", dir.display()),
        );
    } else {
        report.ok(format!(
            "socket directory {}: mode {mode:04o}, owner uid {owner}",
            dir.display()
        ));
    }
}
