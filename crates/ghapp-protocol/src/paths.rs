//! Where the daemon's socket and the config file live — one resolution, used by the daemon, the
//! credential helper and the CLI, so they always agree.
//!
//! Socket, first that applies:
//! 1. `--socket PATH`;
//! 2. `$GHAPP_SOCKET`;
//! 3. `[daemon] socket` in the config file;
//! 4. `$XDG_RUNTIME_DIR/ghapp/ghapp.sock` (a user daemon under systemd or a desktop session);
//! 5. `/run/ghapp/ghapp.sock` (the system daemon);
//! 6. `$TMPDIR/ghapp-<uid>/ghapp.sock` (a per-uid 0700 directory when nothing else exists).
//!
//! The daemon binds the first of 4–6 that fits it (5 only when running as root); a client
//! connects to the first of 4–6 that exists, so a user process finds the system daemon's socket
//! without configuration, and a container finds a socket mounted at `/run/ghapp/`.
//!
//! Config file: `$GHAPP_CONFIG`, else `<user config dir>/ghapp/config.toml` if it exists, else
//! `/etc/ghapp/config.toml`.
//!
//! Whichever rule chose it, a client talks to a socket only when [`trust`] accepts its path and
//! the process answering on it: a path merely existing proves nothing (anyone may create
//! `/tmp/ghapp-<uid>` before its owner does).

pub mod trust;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the socket.
pub const SOCKET_ENV: &str = "GHAPP_SOCKET";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "GHAPP_CONFIG";
/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/run/ghapp/ghapp.sock";
/// The system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/ghapp/config.toml";
/// File name of the socket inside its directory.
pub const SOCKET_FILE_NAME: &str = "ghapp.sock";
/// The longest socket path Linux accepts (`sun_path` is 108 bytes with its NUL).
pub const SUN_PATH_MAX: usize = 107;

/// Which rule chose a path; shown by `ghapp doctor` and in errors, so users know what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The config file.
    Config,
    /// `$XDG_RUNTIME_DIR`.
    XdgRuntimeDir,
    /// The system-wide default.
    System,
    /// The per-uid directory under the temp dir.
    TempDir,
    /// The per-user config directory.
    UserConfigDir,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "--socket/--config flag",
            Source::Env => "environment",
            Source::Config => "config file",
            Source::XdgRuntimeDir => "$XDG_RUNTIME_DIR",
            Source::System => "system default",
            Source::TempDir => "per-user temp dir",
            Source::UserConfigDir => "user config dir",
        })
    }
}

/// A resolved path and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path.
    pub path: PathBuf,
    /// Why this path.
    pub source: Source,
}

/// The process environment that resolution reads, captured once so resolution itself is pure
/// and testable.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$GHAPP_SOCKET`.
    pub socket: Option<OsString>,
    /// `$GHAPP_CONFIG`.
    pub config: Option<OsString>,
    /// `$XDG_RUNTIME_DIR`, used only when absolute.
    pub xdg_runtime_dir: Option<OsString>,
    /// The user's config dir (`~/.config` on Linux), from `directories`; none when `$HOME` is
    /// unset or empty.
    pub user_config_dir: Option<PathBuf>,
    /// The temp dir.
    pub temp_dir: PathBuf,
    /// The effective uid.
    pub uid: u32,
}

impl Environment {
    /// Reads this process's environment.
    pub fn current() -> Self {
        let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Environment {
            socket: nonempty(SOCKET_ENV),
            config: nonempty(CONFIG_ENV),
            xdg_runtime_dir: nonempty("XDG_RUNTIME_DIR"),
            // Only from $HOME: without it `directories` asks the passwd database, and a
            // statically linked helper (what install.sh installs) would then dlopen NSS modules
            // of another glibc — which crashes it. No HOME, no user config: the system one.
            user_config_dir: nonempty("HOME")
                .and_then(|_| directories::BaseDirs::new())
                .map(|d| d.config_dir().to_path_buf()),
            temp_dir: std::env::temp_dir(),
            uid: rustix::process::geteuid().as_raw(),
        }
    }

    fn xdg_socket(&self) -> Option<PathBuf> {
        let dir = PathBuf::from(self.xdg_runtime_dir.as_ref()?);
        dir.is_absolute()
            .then(|| dir.join("ghapp").join(SOCKET_FILE_NAME))
    }

    fn temp_socket(&self) -> PathBuf {
        self.temp_dir
            .join(format!("ghapp-{}", self.uid))
            .join(SOCKET_FILE_NAME)
    }

    /// Steps 1–3 of the socket rule.
    fn explicit_socket(
        &self,
        flag: Option<&Path>,
        config_socket: Option<&Path>,
    ) -> Option<Resolved> {
        if let Some(path) = flag {
            return Some(Resolved {
                path: path.to_path_buf(),
                source: Source::Flag,
            });
        }
        if let Some(path) = &self.socket {
            return Some(Resolved {
                path: PathBuf::from(path),
                source: Source::Env,
            });
        }
        config_socket.map(|path| Resolved {
            path: path.to_path_buf(),
            source: Source::Config,
        })
    }

    /// The socket the daemon binds.
    pub fn daemon_socket(&self, flag: Option<&Path>, config_socket: Option<&Path>) -> Resolved {
        if let Some(explicit) = self.explicit_socket(flag, config_socket) {
            return explicit;
        }
        if let Some(path) = self.xdg_socket() {
            return Resolved {
                path,
                source: Source::XdgRuntimeDir,
            };
        }
        if self.uid == 0 {
            return Resolved {
                path: PathBuf::from(SYSTEM_SOCKET),
                source: Source::System,
            };
        }
        Resolved {
            path: self.temp_socket(),
            source: Source::TempDir,
        }
    }

    /// The socket a client connects to; `exists` says whether a socket is at a path (injected so
    /// tests need no files).
    pub fn client_socket(
        &self,
        flag: Option<&Path>,
        config_socket: Option<&Path>,
        exists: impl Fn(&Path) -> bool,
    ) -> Resolved {
        if let Some(explicit) = self.explicit_socket(flag, config_socket) {
            return explicit;
        }
        let candidates = self
            .xdg_socket()
            .map(|path| Resolved {
                path,
                source: Source::XdgRuntimeDir,
            })
            .into_iter()
            .chain([
                Resolved {
                    path: PathBuf::from(SYSTEM_SOCKET),
                    source: Source::System,
                },
                Resolved {
                    path: self.temp_socket(),
                    source: Source::TempDir,
                },
            ])
            .collect::<Vec<_>>();
        candidates
            .iter()
            .find(|c| exists(&c.path))
            .cloned()
            .unwrap_or_else(|| self.daemon_socket(None, None))
    }

    /// The config file: `$GHAPP_CONFIG`, else the user's if it exists, else the system one.
    pub fn config_file(&self, flag: Option<&Path>, exists: impl Fn(&Path) -> bool) -> Resolved {
        if let Some(path) = flag {
            return Resolved {
                path: path.to_path_buf(),
                source: Source::Flag,
            };
        }
        if let Some(path) = &self.config {
            return Resolved {
                path: PathBuf::from(path),
                source: Source::Env,
            };
        }
        if let Some(dir) = &self.user_config_dir {
            let path = dir.join("ghapp").join("config.toml");
            if exists(&path) {
                return Resolved {
                    path,
                    source: Source::UserConfigDir,
                };
            }
        }
        Resolved {
            path: PathBuf::from(SYSTEM_CONFIG),
            source: Source::System,
        }
    }
}

/// The socket a client (helper, CLI) should connect to, reading the environment and, when the
/// config file exists and is trusted, its `[daemon] socket`.
pub fn client_socket(flag: Option<&Path>) -> Resolved {
    let env = Environment::current();
    let needs_config = flag.is_none() && env.socket.is_none();
    let config_socket = if needs_config {
        let config = env.config_file(None, |p| p.is_file());
        socket_from_config_file(&config.path)
    } else {
        None
    };
    env.client_socket(flag, config_socket.as_deref(), |p| p.exists())
}

/// What a client needs to reach the daemon: the socket and the uids it may trust there.
#[derive(Debug, Clone)]
pub struct ClientTarget {
    /// The socket and the rule that chose it.
    pub socket: Resolved,
    /// Who may own the socket's directories and file and answer on it: this process's uid,
    /// root, and `[daemon] trusted_uids` of the config file.
    pub trusted: trust::TrustedUids,
    /// The hosts the config file's `[[app]]`s serve, lower-cased; empty when no trusted config
    /// file was read (or it has no App).
    pub app_hosts: Vec<String>,
}

/// [`client_socket`] plus the trusted uids, reading the config file (`config_flag`, else the
/// usual resolution) at most once.
pub fn client_target(socket_flag: Option<&Path>, config_flag: Option<&Path>) -> ClientTarget {
    let env = Environment::current();
    let config = env.config_file(config_flag, |p| p.is_file());
    let settings = crate::config::client_settings(&config.path).unwrap_or_default();
    let config_socket = if socket_flag.is_none() && env.socket.is_none() {
        settings.socket
    } else {
        None
    };
    ClientTarget {
        socket: env.client_socket(socket_flag, config_socket.as_deref(), |p| p.exists()),
        trusted: trust::TrustedUids::new(env.uid, &settings.trusted_uids),
        app_hosts: settings.app_hosts,
    }
}

/// `[daemon] socket` from a config file, if the file exists, is trusted, validates and sets it
/// (see [`crate::config::client_settings`]). A broken file is the daemon's and `ghapp doctor`'s
/// to report; clients just fall back to the defaults. An untrusted one (writable by others) is
/// ignored: its socket is never followed.
pub fn socket_from_config_file(path: &Path) -> Option<PathBuf> {
    crate::config::client_settings(path)?.socket
}

/// Refuses socket paths the kernel cannot bind or connect to, with a message that says why.
pub fn check_socket_path_length(path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len > SUN_PATH_MAX {
        Err(format!(
            "socket path {} is {len} bytes; Unix sockets allow at most {SUN_PATH_MAX}: choose a shorter --socket or $GHAPP_SOCKET",
            path.display()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            temp_dir: PathBuf::from("/tmp"),
            uid: 1000,
            user_config_dir: Some(PathBuf::from("/home/u/.config")),
            ..Default::default()
        }
    }

    #[test]
    fn daemon_order() {
        let mut e = env();
        assert_eq!(
            e.daemon_socket(None, None).path,
            PathBuf::from("/tmp/ghapp-1000/ghapp.sock")
        );
        e.uid = 0;
        assert_eq!(e.daemon_socket(None, None).source, Source::System);
        e.xdg_runtime_dir = Some("relative".into());
        assert_eq!(
            e.daemon_socket(None, None).source,
            Source::System,
            "relative XDG dir ignored"
        );
        e.xdg_runtime_dir = Some("/run/user/0".into());
        assert_eq!(
            e.daemon_socket(None, None).path,
            PathBuf::from("/run/user/0/ghapp/ghapp.sock")
        );
        let cfg = PathBuf::from("/cfg.sock");
        assert_eq!(e.daemon_socket(None, Some(&cfg)).source, Source::Config);
        e.socket = Some("/env.sock".into());
        assert_eq!(
            e.daemon_socket(None, Some(&cfg)).path,
            PathBuf::from("/env.sock")
        );
        let flag = PathBuf::from("/flag.sock");
        assert_eq!(
            e.daemon_socket(Some(&flag), Some(&cfg)).source,
            Source::Flag
        );
    }

    #[test]
    fn client_finds_the_system_socket() {
        let mut e = env();
        e.xdg_runtime_dir = Some("/run/user/1000".into());
        let found = e.client_socket(None, None, |p| p == Path::new(SYSTEM_SOCKET));
        assert_eq!(found.source, Source::System);
        let none = e.client_socket(None, None, |_| false);
        assert_eq!(
            none.source,
            Source::XdgRuntimeDir,
            "falls back to where its own daemon would be"
        );
    }

    #[test]
    fn config_file_order() {
        let mut e = env();
        assert_eq!(
            e.config_file(None, |_| false).path,
            PathBuf::from(SYSTEM_CONFIG)
        );
        assert_eq!(
            e.config_file(None, |_| true).path,
            PathBuf::from("/home/u/.config/ghapp/config.toml")
        );
        e.config = Some("/x.toml".into());
        assert_eq!(e.config_file(None, |_| true).source, Source::Env);
    }

    #[test]
    fn socket_length_limit() {
        assert!(check_socket_path_length(Path::new("/run/ghapp/ghapp.sock")).is_ok());
        let long = PathBuf::from(format!("/{}", "a".repeat(SUN_PATH_MAX)));
        assert!(
            check_socket_path_length(&long)
                .unwrap_err()
                .contains("at most 107")
        );
    }
}

/// The daemon's state directory (its databases and keys): `$STATE_DIRECTORY` (systemd's
/// `StateDirectory=ghapp`; the first of several), else `$XDG_STATE_HOME/ghapp`, else
/// `~/.local/state/ghapp`, else (root without a home) `/var/lib/ghapp` — the rule the network
/// listener's answer key follows too.
pub fn daemon_state_dir() -> PathBuf {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let systemd = nonempty("STATE_DIRECTORY").and_then(|dirs| {
        let first = dirs.to_string_lossy().split(':').next()?.to_string();
        Some(PathBuf::from(first))
    });
    state_dir_from(
        systemd,
        nonempty("XDG_STATE_HOME").map(PathBuf::from),
        nonempty("HOME").map(PathBuf::from),
    )
}

/// [`daemon_state_dir`] from its inputs.
fn state_dir_from(
    systemd: Option<PathBuf>,
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> PathBuf {
    if let Some(dir) = systemd.filter(|d| d.is_absolute()) {
        return dir;
    }
    if let Some(dir) = xdg_state_home.filter(|d| d.is_absolute()) {
        return dir.join("ghapp");
    }
    if let Some(home) = home.filter(|d| d.is_absolute()) {
        return home.join(".local/state/ghapp");
    }
    PathBuf::from("/var/lib/ghapp")
}

#[cfg(test)]
mod state_dir_tests {
    use super::*;

    #[test]
    fn state_dir_follows_systemd_then_xdg_then_home() {
        assert_eq!(
            state_dir_from(Some("/var/lib/x".into()), Some("/s".into()), None),
            PathBuf::from("/var/lib/x")
        );
        assert_eq!(
            state_dir_from(None, Some("/s".into()), Some("/h".into())),
            PathBuf::from("/s/ghapp")
        );
        assert_eq!(
            state_dir_from(None, Some("relative".into()), Some("/h".into())),
            PathBuf::from("/h/.local/state/ghapp")
        );
        assert_eq!(
            state_dir_from(None, None, None),
            PathBuf::from("/var/lib/ghapp")
        );
    }
}
