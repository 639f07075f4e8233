//! The config file (TOML) — a user-facing contract documented key by key in
//! docs/configuration.md. Its schema and all its validation live here, once, the daemon's keys
//! and policies included, and every binary reads the file through this module. Every error
//! names the file, the line and the key: `config FILE line N: KEY: what is wrong and what to do`.
//!
//! Three ways in:
//! - [`Config::load`] (the daemon, `ghapp doctor`, `ghapp configure`): refuses a file that
//!   someone other than its reader or root could have written (see `trust`), then parses and
//!   validates strictly — unknown keys are errors.
//! - [`Config::parse`]: text already in hand (tests, templates); no file to trust.
//! - [`client_settings`] (the credential helper and the CLI): the few keys a client needs; a
//!   missing, unreadable, broken or untrusted file just means "nothing from the config".

mod locate;
mod schema;
mod trust;
mod validate;

use locate::Located;
use std::fmt;
use std::path::{Path, PathBuf};

pub use schema::{
    AppConfig, CacheConfig, ClientConfig, Config, DaemonConfig, NetworkConfig, OidcConfig,
    PolicyConfig, RunnersConfig, SignerKind, TokenFormat, UpstreamConfig, api_url_for_host,
};
pub use schema::{ProxyClientConfig, ProxyConfig, ProxyCredentialConfig, ProxyScopeConfig};
pub use trust::{private_key_file_problem, trusted_owner};
pub use validate::{MAX_CONNECTIONS_LIMIT, parse_address_range};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The 1-based line it is on, when it is about one key.
    pub line: Option<usize>,
    /// The key as people read it (`daemon.min_ttl`, `app[0] (acme-bot)`); empty when the
    /// problem is the file as a whole (unreadable, untrusted).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A config file that could not be used: one line per problem, each naming the file, the
/// line and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or the label of the text) the problems are in.
    pub file: PathBuf,
    /// Every problem found, in file order where possible.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "config {}", self.file.display())?;
            if let Some(line) = problem.line {
                write!(f, " line {line}")?;
            }
            if !problem.key.is_empty() {
                write!(f, ": {}", problem.key)?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A problem with the file as a whole (it cannot be read, or is not trusted).
    fn whole_file(file: &Path, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![ConfigProblem {
                line: None,
                key: String::new(),
                message,
            }],
        }
    }
}

impl Config {
    /// Reads, checks the trust of (see `trust`) and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            trust::read_trusted(path).map_err(|message| ConfigError::whole_file(path, message))?;
        let mut config = Config::parse(&text, path)?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let located = Located::new(text);
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (
                    Some(located.line_of(span.start)),
                    locate::render(&located.path_at(&span)),
                ),
                None => (None, String::new()),
            };
            ConfigError {
                file: origin.to_path_buf(),
                problems: vec![ConfigProblem {
                    line,
                    key,
                    message: e.message().trim_end().to_string(),
                }],
            }
        })?;
        let problems = validate::validate(&mut config);
        if !problems.is_empty() {
            return Err(ConfigError {
                file: origin.to_path_buf(),
                problems: problems
                    .into_iter()
                    .map(|problem| ConfigProblem {
                        line: located.line_of_path(&problem.path),
                        key: problem.subject,
                        message: problem.message,
                    })
                    .collect(),
            });
        }
        config.source = schema::SourceText {
            origin: origin.to_path_buf(),
            text: text.into(),
        };
        Ok(config)
    }

    /// An error about `key` — a dotted path as errors print it, such as `daemon.socket_group`
    /// or `daemon.policy[1].hosts` — naming the file and the key's line. For the checks a
    /// binary makes after loading, on values only it can resolve (a group name to a gid).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let located = Located::new(&self.source.text);
        let file = match (&self.path, self.source.origin.as_os_str().is_empty()) {
            (Some(path), true) => path.clone(),
            _ => self.source.origin.clone(),
        };
        ConfigError {
            file,
            problems: vec![ConfigProblem {
                line: located.line_of_path(&locate::parse_path(key)),
                key: key.to_string(),
                message: message.into(),
            }],
        }
    }
}

/// What a client (the credential helper, the CLI) takes from the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// `[daemon] socket`.
    pub socket: Option<PathBuf>,
    /// `[daemon] trusted_uids`: uids besides the client's own and root that it trusts to
    /// answer on the socket (the uid a system daemon runs as).
    pub trusted_uids: Vec<u32>,
    /// The `host` of every `[[app]]`, lower-cased, in file order, then `[upstream]`'s hosts.
    pub app_hosts: Vec<String>,
}

/// The client's view of a config file: `None` when the file is missing, unreadable, not
/// trusted (writable by others: its socket must never be followed), not TOML, or when one of the
/// keys a client reads is wrong (a socket that is no path, a uid that is no number, a host
/// [`check_host`](crate::api::check_host) refuses).
///
/// Every run of the credential helper reads it, so it reads only those keys: the trust checks
/// are the daemon's ([`Config::load`]), the rest of the file — the daemon's keys, policies, App
/// keys — is neither validated nor located line by line (the daemon and `ghapp doctor` report a
/// broken file; a key unknown here is theirs to refuse). Measured: docs/benchmarks.md, section a.
pub fn client_settings(path: &Path) -> Option<ClientSettings> {
    let text = trust::read_trusted(path).ok()?;
    let view: client_view::ClientView = toml::from_str(&text).ok()?;
    let app_hosts = view
        .apps
        .into_iter()
        .map(|app| app.host)
        .chain(
            view.upstream
                .into_iter()
                .flat_map(|upstream| upstream.hosts),
        )
        .map(|host| crate::api::check_host(&host).ok())
        .collect::<Option<Vec<String>>>()?;
    Some(ClientSettings {
        socket: view.daemon.socket,
        trusted_uids: view.daemon.trusted_uids,
        app_hosts,
    })
}

/// The keys of the config file a client reads; serde skips every other key unvalidated.
mod client_view {
    use serde::Deserialize;
    use std::path::PathBuf;

    #[derive(Deserialize)]
    pub(super) struct ClientView {
        #[serde(default)]
        pub daemon: DaemonView,
        #[serde(default, rename = "app")]
        pub apps: Vec<AppView>,
        pub upstream: Option<UpstreamView>,
    }

    #[derive(Deserialize)]
    pub(super) struct UpstreamView {
        #[serde(default = "default_hosts")]
        pub hosts: Vec<String>,
    }

    fn default_hosts() -> Vec<String> {
        vec![default_host()]
    }

    #[derive(Deserialize, Default)]
    pub(super) struct DaemonView {
        pub socket: Option<PathBuf>,
        #[serde(default)]
        pub trusted_uids: Vec<u32>,
    }

    #[derive(Deserialize)]
    pub(super) struct AppView {
        #[serde(default = "default_host")]
        pub host: String,
    }

    fn default_host() -> String {
        crate::api::DEFAULT_HOST.to_string()
    }
}
