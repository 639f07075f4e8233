//! The listening socket: where it lives, who may reach it, and never clobbering someone else's.
//!
//! - The parent directory is created `0700` (`0710` and group-owned with `socket_group`), one
//!   `mkdirat` at a time without following links. It and every directory above it must belong
//!   to us or root, be no link, and not be group- or other-writable — except sticky shared
//!   ancestors such as `/tmp`, where nobody can remove or rename our files (git's
//!   credential-cache makes the same exception). The socket's own directory gets no exception:
//!   clients apply the same rule ([`ghapp_protocol::paths::trust`]) and would refuse it.
//! - `<socket>.lock` (flock) keeps two daemons from racing for the same path.
//! - An existing path is replaced only when it is a socket nobody answers on; a live daemon or a
//!   non-socket is a clear error.
//! - The socket is created under a restrictive umask and then given its mode explicitly: `0600`,
//!   or `0660` and `socket_group` as its group.
//! - [`BoundSocket`] removes the socket when dropped, but only if the path still holds the very
//!   socket we created (a successor's socket is left alone).

use anyhow::{Context, anyhow, bail};
use ghapp_protocol::paths::trust::{self, TrustedUids};
use rustix::fs::{FlockOperation, Mode};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Mode of the socket without `socket_group`.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the socket with `socket_group`.
pub const GROUP_SOCKET_MODE: u32 = 0o660;

/// A listening socket and its file.
#[derive(Debug)]
pub struct BoundSocket {
    /// The listener (blocking mode; the server makes it non-blocking).
    pub listener: UnixListener,
    /// The socket file, removed when dropped if we created it.
    pub file: SocketFile,
}

/// The socket's path and, when we created it, the duty to remove it.
#[derive(Debug)]
pub struct SocketFile {
    /// The socket's path.
    pub path: PathBuf,
    owned: Option<OwnedPath>,
}

/// The identity of the socket file we created, and the lock held while it is ours.
#[derive(Debug)]
struct OwnedPath {
    dev: u64,
    ino: u64,
    _lock: File,
}

impl BoundSocket {
    /// Adopts a listener inherited from systemd (socket activation). Its path, mode and
    /// removal are systemd's business.
    pub fn activated(listener: UnixListener) -> anyhow::Result<BoundSocket> {
        let addr = listener
            .local_addr()
            .context("inherited socket has no local address")?;
        let path = addr
            .as_pathname()
            .ok_or_else(|| anyhow!("the inherited socket is not bound to a filesystem path (abstract or unnamed sockets are not supported)"))?
            .to_path_buf();
        Ok(BoundSocket {
            listener,
            file: SocketFile { path, owned: None },
        })
    }
}

impl SocketFile {
    /// Removes the socket file now (if ours): new clients then fail fast instead of queueing.
    /// Idempotent; also done on drop.
    pub fn remove(&mut self) {
        let Some(owned) = self.owned.take() else {
            return;
        };
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == owned.dev && meta.ino() == owned.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!("could not remove socket {}: {e}", self.path.display());
                }
            }
            _ => tracing::debug!(
                "socket {} is no longer ours; leaving it",
                self.path.display()
            ),
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Creates the listening socket at `path` following the rules in the module docs.
/// `group` is `socket_group`'s gid.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<BoundSocket> {
    ghapp_protocol::paths::check_socket_path_length(path).map_err(|e| anyhow!(e))?;
    if path.file_name().is_none() {
        bail!("socket path {} does not name a file", path.display());
    }
    let own_uid = rustix::process::geteuid().as_raw();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    prepare_dir(&dir, group, own_uid)?;
    let lock = take_lock(path, own_uid)?;
    clear_stale(path)?;

    let mode = if group.is_some() {
        GROUP_SOCKET_MODE
    } else {
        SOCKET_MODE
    };
    // The umask keeps the socket private between bind(2) and the explicit chmod below.
    let previous = rustix::process::umask(Mode::from_raw_mode(0o777 & !mode));
    let bound = UnixListener::bind(path);
    rustix::process::umask(previous);
    let listener = bound.with_context(|| format!("cannot create socket {}", path.display()))?;
    let mut socket = BoundSocket {
        listener,
        file: SocketFile {
            path: path.to_path_buf(),
            owned: None,
        },
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on socket {}", path.display()))?;
    if let Some(gid) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))).with_context(|| {
            format!(
                "cannot give socket {} to group {gid} (socket_group)",
                path.display()
            )
        })?;
    }
    let meta = fs::symlink_metadata(path)
        .with_context(|| format!("socket {} vanished after bind", path.display()))?;
    socket.file.owned = Some(OwnedPath {
        dev: meta.dev(),
        ino: meta.ino(),
        _lock: lock,
    });
    Ok(socket)
}

/// Creates the socket's directory, or checks an existing one is safe to create a socket in, by
/// the rule clients apply ([`ghapp_protocol::paths::trust`]): from `/` down, no component is a
/// link (nothing is followed: each is opened `O_NOFOLLOW` relative to the one before, missing
/// ones made with `mkdirat`), each belongs to this uid or root, none is group/other-writable
/// (sticky ancestors such as `/tmp` aside; the socket's own directory never).
pub fn prepare_dir(dir: &Path, group: Option<u32>, own_uid: u32) -> anyhow::Result<()> {
    let mode = if group.is_some() { 0o710 } else { 0o700 };
    let trusted = TrustedUids::new(own_uid, &[]);
    let refuse = |e: trust::Untrusted| anyhow!("unsafe socket directory {}: {e}", dir.display());
    let existed = fs::symlink_metadata(dir).is_ok();
    // A directory made here cannot fail for its mode (mkdirat's mode has no group/other write
    // bits, and the umask only narrows it), so any refusal is about the chain: report it.
    drop(trust::prepare_socket_dir(dir, mode, &trusted).map_err(refuse)?);
    if existed {
        return Ok(());
    }
    // We made (at least) the last directory: give it its exact mode (the umask may have
    // narrowed it) and group. The chain was just checked link-free and writable by no one
    // else, so the path still names the directory we made.
    let meta = fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect socket directory {}", dir.display()))?;
    if meta.is_dir() && meta.uid() == own_uid {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set mode {mode:o} on {}", dir.display()))?;
        if let Some(gid) = group {
            rustix::fs::chown(dir, None, Some(rustix::fs::Gid::from_raw(gid))).with_context(
                || {
                    format!(
                        "cannot give {} to group {gid} (socket_group)",
                        dir.display()
                    )
                },
            )?;
        }
    }
    // Re-check: someone may have created it first with other permissions.
    trust::prepare_socket_dir(dir, mode, &trusted)
        .map(drop)
        .map_err(refuse)
}

/// `<socket>.lock`, exclusively flocked for the daemon's lifetime, holding its pid.
fn take_lock(socket: &Path, own_uid: u32) -> anyhow::Result<File> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect lock file {}", path.display()))?;
    if !meta.is_file() || meta.uid() != own_uid {
        bail!(
            "lock file {} is not a regular file of uid {own_uid}: remove it or choose another --socket",
            path.display()
        );
    }
    if let Err(e) = rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            bail!(
                "another ghapp daemon{who} is already running with socket {}: stop it first (e.g. `systemctl --user stop ghapp`) or choose another --socket",
                socket.display()
            );
        }
        return Err(anyhow!("cannot lock {}: {e}", path.display()));
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write lock file {}", path.display()))?;
    Ok(file)
}

/// What an existing path at the socket location turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Nothing there.
    Nothing,
    /// A socket nobody listens on (left by a crashed daemon).
    Stale,
    /// A socket something answers on.
    Live,
    /// A file, directory, symlink…
    NotASocket,
}

/// Looks at `path` without blocking: a non-blocking connect tells live from stale.
pub fn probe(path: &Path) -> anyhow::Result<Existing> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => bail!("cannot inspect {}: {e}", path.display()),
    };
    if !meta.file_type().is_socket() {
        return Ok(Existing::NotASocket);
    }
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .context("cannot create a probe socket")?;
    let addr =
        SocketAddrUnix::new(path).with_context(|| format!("bad socket path {}", path.display()))?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => Ok(Existing::Live),
        // Backlog full or connection in progress: someone is listening.
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INPROGRESS => {
            Ok(Existing::Live)
        }
        Err(e) if e == rustix::io::Errno::CONNREFUSED => Ok(Existing::Stale),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(Existing::Nothing),
        Err(e) => bail!(
            "cannot tell whether socket {} is in use: {e}",
            path.display()
        ),
    }
}

fn clear_stale(path: &Path) -> anyhow::Result<()> {
    match probe(path)? {
        Existing::Nothing => Ok(()),
        Existing::Stale => {
            tracing::info!(
                "removing stale socket {} (nothing answers on it)",
                path.display()
            );
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(anyhow!(
                    "cannot remove stale socket {}: {e}",
                    path.display()
                )),
            }
        }
        Existing::Live => bail!(
            "another process is already serving socket {}: stop it first (e.g. `systemctl --user stop ghapp`) or choose another --socket",
            path.display()
        ),
        Existing::NotASocket => bail!(
            "{} exists and is not a socket; refusing to replace it: remove it or choose another --socket",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn creates_a_private_dir_and_socket_and_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/dir/ghapp.sock");
        let socket = bind(&path, None).unwrap();
        let dir_mode = fs::metadata(tmp.path().join("sub/dir")).unwrap().mode() & 0o7777;
        assert_eq!(dir_mode, 0o700);
        let sock_mode = fs::symlink_metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(sock_mode, SOCKET_MODE);
        assert_eq!(probe(&path).unwrap(), Existing::Live);
        let err = bind(&path, None).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        drop(socket);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn group_mode_and_group_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("g/ghapp.sock");
        let _socket = bind(&path, Some(4242)).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, GROUP_SOCKET_MODE);
        if own_uid() == 0 {
            assert_eq!(meta.gid(), 4242);
            assert_eq!(fs::metadata(tmp.path().join("g")).unwrap().gid(), 4242);
        }
        assert_eq!(
            fs::metadata(tmp.path().join("g")).unwrap().mode() & 0o7777,
            0o710
        );
    }

    #[test]
    fn stale_sockets_are_replaced_other_files_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ghapp.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a socket file nobody listens on
        assert_eq!(probe(&path).unwrap(), Existing::Stale);
        let socket = bind(&path, None).unwrap();
        drop(socket);

        let live = tmp.path().join("live.sock");
        let _other = UnixListener::bind(&live).unwrap();
        let err = bind(&live, None).unwrap_err().to_string();
        assert!(err.contains("already serving"), "{err}");
        assert!(live.exists(), "a live socket is never removed");

        let file = tmp.path().join("file.sock");
        fs::write(&file, "data").unwrap();
        let err = bind(&file, None).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "data");
    }

    #[test]
    fn unsafe_directories_and_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let loose = tmp.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        let err = bind(&loose.join("ghapp.sock"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("group- or other-writable"), "{err}");

        // A sticky directory others may write is fine above the socket, not as its own:
        // anyone could create the socket there before the daemon does.
        let sticky = tmp.path().join("sticky");
        fs::create_dir(&sticky).unwrap();
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = bind(&sticky.join("ghapp.sock"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("group- or other-writable"), "{err}");
        let _socket = bind(&sticky.join("mine/ghapp.sock"), None).unwrap();

        // No link is followed, anywhere on the way.
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let err = bind(&tmp.path().join("link/ghapp.sock"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let err = bind(&tmp.path().join("link/sub/ghapp.sock"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(
            !real.join("sub").exists(),
            "nothing created through the link"
        );

        if own_uid() == 0 {
            let foreign = tmp.path().join("foreign");
            fs::create_dir(&foreign).unwrap();
            rustix::fs::chown(&foreign, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
            let err = bind(&foreign.join("ghapp.sock"), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");

            // Sticky does not help when someone else owns the directory: its owner may still
            // remove our socket and put its own in its place.
            let foreign_sticky = tmp.path().join("foreign-sticky");
            fs::create_dir(&foreign_sticky).unwrap();
            fs::set_permissions(&foreign_sticky, fs::Permissions::from_mode(0o1777)).unwrap();
            rustix::fs::chown(
                &foreign_sticky,
                Some(rustix::fs::Uid::from_raw(65534)),
                None,
            )
            .unwrap();
            let err = bind(&foreign_sticky.join("ghapp.sock"), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
    }

    #[test]
    fn socket_removal_spares_a_successor() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ghapp.sock");
        let mut socket = bind(&path, None).unwrap();
        fs::remove_file(&path).unwrap();
        let _successor = UnixListener::bind(&path).unwrap();
        socket.file.remove();
        assert!(path.exists(), "the successor's socket stays");
    }

    #[test]
    fn long_paths_are_refused_before_touching_anything() {
        let long = PathBuf::from(format!("/tmp/{}/ghapp.sock", "x".repeat(120)));
        let err = bind(&long, None).unwrap_err().to_string();
        assert!(err.contains("at most 107"), "{err}");
        assert!(!long.parent().unwrap().exists());
    }
}
