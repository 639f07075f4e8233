//! Whether a socket path, and the process answering on it, may be trusted with a token request.
//!
//! Clients (the credential helper, the CLI) and the daemon apply the same rule to the socket's
//! directory chain, so a daemon never creates a socket its clients would refuse:
//!
//! - No component from `/` to the socket's directory is a symbolic link (each is opened with
//!   `O_NOFOLLOW | O_DIRECTORY` relative to the one before; nothing is followed).
//! - Every directory is owned by a trusted uid (the caller's own, root, or one it names).
//! - No directory is group- or other-writable — except a *sticky* ancestor such as `/tmp`, where
//!   nobody may rename or remove what another user created. The socket's own directory gets no
//!   such exception: in a writable directory, sticky or not, anyone can create the socket first.
//! - The socket itself is a socket (not a link) and owned by a trusted uid.
//! - The process answering (`SO_PEERCRED` of the connected socket: the credentials of whoever
//!   called `listen(2)`) has a trusted uid.
//!
//! One delegation: the system socket's directory (`/run/ghapp`) sits in `/run`, where only root
//! creates entries; when `/run` is root's and writable by root alone, whoever owns
//! `/run/ghapp` was given it by root (systemd's `RuntimeDirectory=` for the `ghapp` user), so
//! that owner is trusted for this socket as well.

use super::SYSTEM_SOCKET;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// The uids a socket's directories, its file and its server may belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedUids {
    uids: Vec<u32>,
}

impl TrustedUids {
    /// `own` (the caller's effective uid), root, and `extra` (`[daemon] trusted_uids`).
    pub fn new(own: u32, extra: &[u32]) -> Self {
        let mut uids = vec![own, 0];
        uids.extend_from_slice(extra);
        uids.sort_unstable();
        uids.dedup();
        TrustedUids { uids }
    }

    /// This process's effective uid and root, plus `extra`.
    pub fn current(extra: &[u32]) -> Self {
        Self::new(rustix::process::geteuid().as_raw(), extra)
    }

    /// Whether `uid` is trusted.
    pub fn contains(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// The trusted uids, ascending (for messages).
    pub fn as_slice(&self) -> &[u32] {
        &self.uids
    }

    fn with(&self, uid: u32) -> Self {
        let mut more = self.uids.clone();
        more.push(uid);
        TrustedUids::new(self.uids[0], &more)
    }
}

/// Why a socket is not trusted. The message names the path and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// A component of the path is a symbolic link.
    #[error(
        "{path} is a symbolic link; ghapp follows no links on the way to its socket (use the real path)"
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A component is not a directory (or the socket is not a socket).
    #[error("{path} is not a {expected}")]
    WrongType {
        /// The path.
        path: PathBuf,
        /// "directory" or "socket".
        expected: &'static str,
    },
    /// A directory or the socket belongs to an untrusted uid.
    #[error(
        "{path} belongs to uid {owner}, who is not trusted (trusted: {trusted:?}; add the uid to [daemon] trusted_uids in your config only if that user runs your daemon)"
    )]
    Owner {
        /// The directory or socket.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who would have been trusted.
        trusted: Vec<u32>,
    },
    /// A directory others may write to.
    #[error(
        "{path} is group- or other-writable (mode {mode:04o}): another user could put their own socket there; run `chmod go-w {path}` or choose another socket path"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The process answering on the socket runs as an untrusted uid.
    #[error(
        "the process answering on {path} runs as uid {uid}, who is not trusted (trusted: {trusted:?}; add the uid to [daemon] trusted_uids in your config only if that user runs your daemon)"
    )]
    Peer {
        /// The socket.
        path: PathBuf,
        /// The server's uid (`SO_PEERCRED`).
        uid: u32,
        /// Who would have been trusted.
        trusted: Vec<u32>,
    },
    /// The file system could not be inspected.
    #[error("cannot inspect {path}: {reason}")]
    Inspect {
        /// The path.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
}

/// What to do about a missing directory while walking the chain.
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// Stop: the socket cannot exist below it (the caller's connect fails with ENOENT).
    Stop,
    /// Create it with this mode (the daemon).
    Create(u32),
}

/// The result of walking a directory chain.
enum Walk {
    /// Every directory exists and is trusted; the last one is open.
    Complete(OwnedFd),
    /// A directory is missing (only with [`Missing::Stop`]).
    Absent,
}

/// Checks the directories holding `socket` and the socket file itself (when it exists), before a
/// client connects. A missing socket or directory is not an error here: connecting then fails
/// with "not found" as before. Returns the uids the server may run as.
pub fn check_socket_path(socket: &Path, trusted: &TrustedUids) -> Result<TrustedUids, Untrusted> {
    let socket = absolute(socket)?;
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let trusted = delegated(&socket, trusted);
    let Walk::Complete(dir_fd) = walk(dir, &trusted, Missing::Stop)? else {
        return Ok(trusted);
    };
    let Some(name) = socket.file_name() else {
        return Err(Untrusted::WrongType {
            path: socket.clone(),
            expected: "socket",
        });
    };
    match rustix::fs::statat(&dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
            if kind == rustix::fs::FileType::Symlink {
                return Err(Untrusted::Symlink { path: socket });
            }
            if kind != rustix::fs::FileType::Socket {
                return Err(Untrusted::WrongType {
                    path: socket,
                    expected: "socket",
                });
            }
            if !trusted.contains(stat.st_uid) {
                return Err(Untrusted::Owner {
                    path: socket,
                    owner: stat.st_uid,
                    trusted: trusted.as_slice().to_vec(),
                });
            }
            Ok(trusted)
        }
        Err(Errno::NOENT) => Ok(trusted),
        Err(e) => Err(Untrusted::Inspect {
            path: socket,
            reason: e.to_string(),
        }),
    }
}

/// Checks the uid of the process answering on `socket` (from `SO_PEERCRED`).
pub fn check_peer(socket: &Path, uid: u32, trusted: &TrustedUids) -> Result<(), Untrusted> {
    if trusted.contains(uid) {
        Ok(())
    } else {
        Err(Untrusted::Peer {
            path: socket.to_path_buf(),
            uid,
            trusted: trusted.as_slice().to_vec(),
        })
    }
}

/// The daemon's side: creates the missing directories of `dir` (mode `mode`, one `mkdirat` at
/// a time, following no link) and checks the whole chain by the same rule as clients. Returns the
/// opened directory.
pub fn prepare_socket_dir(
    dir: &Path,
    mode: u32,
    trusted: &TrustedUids,
) -> Result<OwnedFd, Untrusted> {
    let dir = absolute(dir)?;
    match walk(&dir, trusted, Missing::Create(mode))? {
        Walk::Complete(fd) => Ok(fd),
        Walk::Absent => Err(Untrusted::Inspect {
            path: dir,
            reason: "vanished while being created".into(),
        }),
    }
}

/// Walks from `/` down to `dir`, opening each component relative to the one before without
/// following links, and checks each.
fn walk(dir: &Path, trusted: &TrustedUids, missing: Missing) -> Result<Walk, Untrusted> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current = PathBuf::from("/");
    let mut fd = rustix::fs::open("/", flags, Mode::empty()).map_err(|e| inspect(&current, e))?;
    let mut names: Vec<&OsStr> = Vec::new();
    for component in dir.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::ParentDir => {
                return Err(Untrusted::Inspect {
                    path: dir.to_path_buf(),
                    reason: "a socket path may not contain `..`".into(),
                });
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    check_dir(&current, &stat(&fd, &current)?, trusted, names.is_empty())?;
    for (index, name) in names.iter().enumerate() {
        let last = index + 1 == names.len();
        current.push(name);
        let opened = match rustix::fs::openat(&fd, *name, flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::NOENT) => match missing {
                Missing::Stop => return Ok(Walk::Absent),
                Missing::Create(mode) => {
                    match rustix::fs::mkdirat(&fd, *name, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(inspect(&current, e)),
                    }
                    rustix::fs::openat(&fd, *name, flags, Mode::empty())
                        .map_err(|e| classify(&fd, name, &current, e))?
                }
            },
            Err(e) => return Err(classify(&fd, name, &current, e)),
        };
        check_dir(&current, &stat(&opened, &current)?, trusted, last)?;
        fd = opened;
    }
    Ok(Walk::Complete(fd))
}

fn stat(fd: &OwnedFd, path: &Path) -> Result<Stat, Untrusted> {
    rustix::fs::fstat(fd).map_err(|e| inspect(path, e))
}

/// Turns a failed `openat(O_NOFOLLOW | O_DIRECTORY)` into "a link", "not a directory" or the
/// OS's reason.
fn classify(parent: &OwnedFd, name: &OsStr, path: &Path, error: Errno) -> Untrusted {
    let not_followed = error == Errno::LOOP || error == Errno::NOTDIR;
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if not_followed => {
            if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink {
                Untrusted::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                Untrusted::WrongType {
                    path: path.to_path_buf(),
                    expected: "directory",
                }
            }
        }
        _ => inspect(path, error),
    }
}

/// One directory of the chain: trusted owner; not group/other-writable unless it is a sticky
/// ancestor (`is_socket_dir` false).
fn check_dir(
    path: &Path,
    stat: &Stat,
    trusted: &TrustedUids,
    is_socket_dir: bool,
) -> Result<(), Untrusted> {
    // Ownership first: a directory's owner may rename anything in it, sticky bit or not.
    if !trusted.contains(stat.st_uid) {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            trusted: trusted.as_slice().to_vec(),
        });
    }
    let mode = stat.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && (is_socket_dir || !sticky) {
        return Err(Untrusted::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The trusted uids for this socket, with the system socket's delegation applied (module docs).
fn delegated(socket: &Path, trusted: &TrustedUids) -> TrustedUids {
    if socket != Path::new(SYSTEM_SOCKET) {
        return trusted.clone();
    }
    let root_only = |path: &str| {
        rustix::fs::lstat(path).is_ok_and(|s| {
            s.st_uid == 0
                && rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
                && s.st_mode & 0o022 == 0
        })
    };
    if !root_only("/") || !root_only("/run") {
        return trusted.clone();
    }
    match rustix::fs::lstat("/run/ghapp") {
        Ok(s)
            if rustix::fs::FileType::from_raw_mode(s.st_mode)
                == rustix::fs::FileType::Directory =>
        {
            trusted.with(s.st_uid)
        }
        _ => trusted.clone(),
    }
}

fn absolute(path: &Path) -> Result<PathBuf, Untrusted> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .map_err(|e| Untrusted::Inspect {
            path: path.to_path_buf(),
            reason: format!("cannot resolve a relative path: {e}"),
        })
}

fn inspect(path: &Path, error: Errno) -> Untrusted {
    Untrusted::Inspect {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

impl fmt::Display for TrustedUids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.uids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> TrustedUids {
        TrustedUids::current(&[])
    }

    #[test]
    fn a_private_directory_is_trusted_a_writable_or_linked_one_is_not() {
        let tmp = std::env::temp_dir().join(format!("ghapp-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("ok")).unwrap();
        std::fs::set_permissions(tmp.join("ok"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let sock = tmp.join("ok/ghapp.sock");
        assert!(
            check_socket_path(&sock, &me()).is_ok(),
            "missing socket in a good dir"
        );
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(check_socket_path(&sock, &me()).is_ok());

        std::fs::create_dir(tmp.join("loose")).unwrap();
        std::fs::set_permissions(tmp.join("loose"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let err = check_socket_path(&tmp.join("loose/ghapp.sock"), &me()).unwrap_err();
        assert!(matches!(err, Untrusted::Writable { .. }), "{err}");

        std::os::unix::fs::symlink(tmp.join("ok"), tmp.join("link")).unwrap();
        let err = check_socket_path(&tmp.join("link/ghapp.sock"), &me()).unwrap_err();
        assert!(matches!(err, Untrusted::Symlink { .. }), "{err}");

        std::os::unix::fs::symlink(&sock, tmp.join("ok/alias.sock")).unwrap();
        let err = check_socket_path(&tmp.join("ok/alias.sock"), &me()).unwrap_err();
        assert!(matches!(err, Untrusted::Symlink { .. }), "{err}");

        std::fs::write(tmp.join("ok/file.sock"), "").unwrap();
        let err = check_socket_path(&tmp.join("ok/file.sock"), &me()).unwrap_err();
        assert!(matches!(err, Untrusted::WrongType { .. }), "{err}");

        assert!(
            check_socket_path(&tmp.join("absent/deeper/ghapp.sock"), &me()).is_ok(),
            "missing directories are left to connect(2)"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn creation_follows_no_link_and_checks_the_chain() {
        let tmp = std::env::temp_dir().join(format!("ghapp-trust-c-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
        prepare_socket_dir(&tmp.join("a/b"), 0o700, &me()).unwrap();
        assert!(tmp.join("a/b").is_dir());
        std::os::unix::fs::symlink("/", tmp.join("l")).unwrap();
        let err = prepare_socket_dir(&tmp.join("l/x"), 0o700, &me()).unwrap_err();
        assert!(matches!(err, Untrusted::Symlink { .. }), "{err}");
        assert!(!Path::new("/x").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn trusted_set_and_peer() {
        let t = TrustedUids::new(1000, &[2000]);
        assert!(t.contains(0) && t.contains(1000) && t.contains(2000) && !t.contains(1001));
        assert!(check_peer(Path::new("/s"), 1001, &t).is_err());
        assert!(check_peer(Path::new("/s"), 2000, &t).is_ok());
    }
}
