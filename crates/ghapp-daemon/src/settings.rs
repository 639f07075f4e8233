//! The daemon's own settings: the config file's `[daemon]` table (and the `[[app]]` hosts, for
//! the default host), already validated by `ghapp_protocol::config`, turned into runtime values
//! — a group name into its gid, a relative audit log path into one next to the config. Errors
//! of that step name the file, line and key too. Rebuilt on every reload; a config that does
//! not load leaves the previous settings in force.

use crate::access::AccessRules;
use crate::identity::Authenticator;
use crate::mint_limit::MintRate;
use ghapp_broker::{Config, ConfigError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use ghapp_protocol::config::MAX_CONNECTIONS_LIMIT;

/// Settings in force; swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file they were read from (named in messages).
    pub config_path: PathBuf,
    /// Allow-lists and policies.
    pub access: AccessRules,
    /// Verifies `Authorization: Bearer` credentials (`[[client]]`, `[[oidc]]`); rebuilt on
    /// reload (keys are fetched again on first use).
    pub authenticator: Arc<Authenticator>,
    /// Per-identity mint limit (`[network] mint_rate`/`mint_burst`).
    pub mint_rate: MintRate,
    /// `socket_group`'s gid, if configured.
    pub socket_gid: Option<u32>,
    /// `[daemon] socket`, for the socket resolution order.
    pub config_socket: Option<PathBuf>,
    /// Number of `[[app]]` entries; the workspace endpoint answers 404 when zero.
    pub apps_configured: usize,
    /// Host for requests that name none (and the seed routes): github.com when an App serves
    /// it, else the first `[[app]]`'s host; `None` without Apps.
    pub default_host: Option<String>,
    /// Owner the workspace endpoint asks for (`[daemon] default_owner`).
    pub default_owner: Option<String>,
    /// Audit log destination (`-` is stderr).
    pub audit_log: Option<PathBuf>,
    /// Deadline for a client to send a request head (also the keep-alive idle deadline) or body.
    pub client_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Settings {
    /// Resolves the validated `[daemon]` table into runtime values. `own_uid` is the daemon's
    /// effective uid.
    pub fn from_config(
        config: &Config,
        config_path: &Path,
        own_uid: u32,
    ) -> Result<Settings, ConfigError> {
        let daemon = &config.daemon;
        let socket_gid = daemon
            .socket_group
            .as_deref()
            .map(resolve_group)
            .transpose()
            .map_err(|e| config.error_at("daemon.socket_group", e))?;
        let (table, policies) = config.policies();
        let access = AccessRules::new(
            own_uid,
            &daemon.allow_uids,
            &daemon.allow_gids,
            socket_gid,
            policies,
        )
        .map_err(|e| {
            let key = if table == "[[policy]]" {
                "policy"
            } else {
                "daemon.policy"
            };
            config.error_at(key, e)
        })?
        .spelled(table);
        let authenticator =
            Authenticator::from_config(config).map_err(|e| config.error_at("oidc", e))?;
        Ok(Settings {
            config_path: config_path.to_path_buf(),
            access,
            authenticator: Arc::new(authenticator),
            mint_rate: MintRate::from_config(config),
            socket_gid,
            config_socket: daemon.socket.clone(),
            // A key-less daemon's upstream serves tokens like an App (docs/scale-out.md).
            apps_configured: config.apps.len() + usize::from(config.upstream.is_some()),
            default_host: default_host(config),
            default_owner: daemon.default_owner.clone(),
            audit_log: daemon
                .audit_log
                .as_deref()
                .map(|path| relative_to_config(path, config_path)),
            client_timeout: daemon.client_timeout,
            max_connections: daemon.max_connections,
        })
    }
}

fn default_host(config: &Config) -> Option<String> {
    let hosts: Vec<String> = config
        .apps
        .iter()
        .map(|app| app.host.to_ascii_lowercase())
        .chain(config.upstream.iter().flat_map(|u| u.hosts.clone()))
        .collect();
    let github = ghapp_protocol::api::DEFAULT_HOST;
    if hosts.iter().any(|h| h == github) {
        Some(github.to_string())
    } else {
        hosts.into_iter().next()
    }
}

/// A relative path in the config names a file next to the config (the daemon's working
/// directory is `/` under systemd); `-` (stderr) stays as it is.
fn relative_to_config(path: &Path, config_path: &Path) -> PathBuf {
    if path.is_absolute() || path == Path::new("-") {
        return path.to_path_buf();
    }
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// A group's gid from a numeric string or a name in /etc/group (NSS-only groups such as LDAP
/// ones must be given numerically).
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(|e| {
        format!("cannot read /etc/group ({e}) to find group {group:?}: give the gid as a number")
    })?;
    gid_in_group_file(&text, group).ok_or_else(|| {
        format!("{group:?} is not a group in /etc/group: create it or give the gid as a number")
    })
}

fn gid_in_group_file(text: &str, group: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_or_name() {
        assert_eq!(resolve_group("4242"), Ok(4242));
        assert_eq!(
            gid_in_group_file("root:x:0:\nghapp:x:997:alice,bob\n", "ghapp"),
            Some(997)
        );
        assert_eq!(gid_in_group_file("root:x:0:\n", "ghapp"), None);
        assert_eq!(gid_in_group_file("broken\n", "broken"), None);
        assert!(
            resolve_group("no-such-group-here")
                .unwrap_err()
                .contains("not a group")
        );
    }

    #[test]
    fn defaults_and_validation() {
        let path = Path::new("/etc/ghapp/config.toml");
        let config = Config::parse("", path).unwrap();
        let s = Settings::from_config(&config, path, 1000).unwrap();
        assert_eq!(s.apps_configured, 0);
        assert_eq!(s.default_host, None);
        assert!(s.access.uids.contains(&1000) && s.access.uids.contains(&0));
        assert_eq!(s.max_connections, 4096);

        let config = Config::parse(
            "[daemon]\nmin_ttl = \"30m\"\nsocket_group = \"no-such-group-here\"\n",
            path,
        )
        .unwrap();
        assert_eq!(
            Settings::from_config(&config, path, 0)
                .unwrap_err()
                .to_string(),
            "config /etc/ghapp/config.toml line 3: daemon.socket_group: \"no-such-group-here\" is not a group in /etc/group: create it or give the gid as a number",
            "resolving names the file, line and key"
        );
        let config = Config::parse("[daemon]\nsocket_group = \"4242\"\n[[app]]\nname = \"a\"\nhost = \"GHE.example.com\"\napp_id = 1\nprivate_key_env = \"GHAPP_TEST_KEY\"\n", path).unwrap();
        let s = Settings::from_config(&config, path, 0).unwrap();
        assert_eq!(s.socket_gid, Some(4242));
        assert!(s.access.gids.contains(&4242));
        assert_eq!(
            s.default_host.as_deref(),
            Some("ghe.example.com"),
            "the only host"
        );
        let app = |name: &str, host: &str| {
            format!(
                "[[app]]\nname = \"{name}\"\nhost = \"{host}\"\napp_id = 1\nprivate_key_env = \"K\"\n"
            )
        };
        let two = format!("{}{}", app("a", "ghe.example.com"), app("b", "github.com"));
        let config = Config::parse(&two, path).unwrap();
        let s = Settings::from_config(&config, path, 0).unwrap();
        assert_eq!(
            s.default_host.as_deref(),
            Some("github.com"),
            "github.com when an App serves it"
        );
        assert_eq!(
            relative_to_config(Path::new("audit.jsonl"), path),
            PathBuf::from("/etc/ghapp/audit.jsonl")
        );
        assert_eq!(relative_to_config(Path::new("-"), path), PathBuf::from("-"));
        assert_eq!(
            relative_to_config(Path::new("/var/log/a"), path),
            PathBuf::from("/var/log/a")
        );
    }
}
