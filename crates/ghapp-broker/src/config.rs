//! The config file (TOML) — a user-facing contract documented key by key in
//! docs/configuration.md. One parser for the whole file, daemon keys included, so every error
//! names the file, the line and the key.
//!
//! STUB: the structure below is the contract other crates build on; loading, validation and the
//! private-key sources are the broker's to complete.

use ghapp_protocol::permissions::Permissions;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the file was read from (set by [`Config::load`]); used in messages.
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// `[daemon]`.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// `[[app]]`, one per GitHub App.
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
}

/// `[daemon]`: how the daemon serves and how long tokens must live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Socket path (see `ghapp_protocol::paths` for the full resolution order).
    pub socket: Option<PathBuf>,
    /// Group that may connect (socket mode becomes 0660 and the group is allowed).
    pub socket_group: Option<String>,
    /// Uids allowed to connect; default: the daemon's own uid and root.
    #[serde(default)]
    pub allow_uids: Vec<u32>,
    /// Gids allowed to connect.
    #[serde(default)]
    pub allow_gids: Vec<u32>,
    /// Never hand out a token with less life left than this.
    #[serde(default = "defaults::min_ttl", with = "ghapp_protocol::duration::serde_human")]
    pub min_ttl: Duration,
    /// How long "not installed" is remembered.
    #[serde(default = "defaults::negative_cache_ttl", with = "ghapp_protocol::duration::serde_human")]
    pub negative_cache_ttl: Duration,
    /// How long an owner/repo → installation mapping is trusted before it is looked up again.
    #[serde(default = "defaults::installation_cache_ttl", with = "ghapp_protocol::duration::serde_human")]
    pub installation_cache_ttl: Duration,
    /// Total timeout of one call to GitHub.
    #[serde(default = "defaults::request_timeout", with = "ghapp_protocol::duration::serde_human")]
    pub request_timeout: Duration,
    /// Connect timeout to GitHub.
    #[serde(default = "defaults::connect_timeout", with = "ghapp_protocol::duration::serde_human")]
    pub connect_timeout: Duration,
    /// JSON-lines audit log (`-` for stderr); none when absent.
    pub audit_log: Option<PathBuf>,
    /// Per-uid/gid policy.
    #[serde(default)]
    pub policy: Vec<PolicyConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: None,
            socket_group: None,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            min_ttl: defaults::min_ttl(),
            negative_cache_ttl: defaults::negative_cache_ttl(),
            installation_cache_ttl: defaults::installation_cache_ttl(),
            request_timeout: defaults::request_timeout(),
            connect_timeout: defaults::connect_timeout(),
            audit_log: None,
            policy: Vec::new(),
        }
    }
}

/// `[[daemon.policy]]`: what one uid or gid may ask for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The peer uid this applies to.
    pub uid: Option<u32>,
    /// The peer gid this applies to.
    pub gid: Option<u32>,
    /// Accounts it may ask for (`*` or absent: any).
    pub owners: Option<Vec<String>>,
    /// Repositories (`owner/repo`) it may ask for (absent: any within `owners`).
    pub repos: Option<Vec<String>>,
    /// Permission ceiling for this peer.
    pub permissions: Option<Permissions>,
}

/// `[[app]]`: one GitHub App.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Label in logs, status and errors.
    pub name: String,
    /// The git host it serves, as git sends it (`host[:port]`).
    #[serde(default = "defaults::host")]
    pub host: String,
    /// REST API base URL; derived from `host` when absent.
    pub api_url: Option<String>,
    /// Numeric App id.
    pub app_id: Option<u64>,
    /// Client id (`Iv23…`); used as the JWT `iss` when given.
    pub client_id: Option<String>,
    /// PEM private key file (refused if group/world-readable).
    pub private_key_file: Option<PathBuf>,
    /// Environment variable holding the PEM.
    pub private_key_env: Option<String>,
    /// Command whose stdout is the PEM (e.g. a secrets manager CLI).
    pub private_key_command: Option<Vec<String>>,
    /// Only these accounts.
    pub owners: Option<Vec<String>>,
    /// Permission ceiling for every token.
    pub permissions: Option<Permissions>,
    /// Serve `protocol=http` for this host (emulators and tests only).
    #[serde(default)]
    pub insecure_http: bool,
    /// Mint installation-wide tokens instead of narrowing to the repo asked for.
    #[serde(default)]
    pub installation_wide: bool,
    /// Extra PEM CA certificates to trust for this App's API (GHES with a private CA, tests).
    pub ca_file: Option<PathBuf>,
}

mod defaults {
    use std::time::Duration;
    pub fn min_ttl() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn negative_cache_ttl() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn installation_cache_ttl() -> Duration {
        Duration::from_secs(60 * 60)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn host() -> String {
        ghapp_protocol::api::DEFAULT_HOST.to_string()
    }
}

/// A config file that could not be used: the message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config {}: {e}", path.display())))?;
        let mut config = Config::parse(&text, path)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("config {}: {e}", origin.display())))
    }
}
