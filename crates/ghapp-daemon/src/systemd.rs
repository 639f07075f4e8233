//! systemd integration without libsystemd: socket activation (`sd_listen_fds(3)`) and readiness
//! notification (`sd_notify(3)`).
//!
//! Both read environment variables that must not leak to child processes (a
//! `private_key_command` the broker runs), so [`take_environment`] reads and unsets them once,
//! while the process is still single-threaded.

use anyhow::{Context, anyhow, bail};
use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};

/// The first inherited descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// What systemd handed us.
#[derive(Debug, Default)]
pub struct SystemdEnvironment {
    /// The inherited listening socket, when socket-activated.
    pub listener: Option<UnixListener>,
    /// Where to send readiness notifications, when run as `Type=notify`.
    pub notifier: Notifier,
}

/// Reads and unsets `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` and `NOTIFY_SOCKET`, and adopts
/// the first inherited socket after checking it is a listening Unix stream socket.
///
/// # Safety contract
/// Must be called before the process starts any other thread (it modifies the environment).
pub fn take_environment() -> anyhow::Result<SystemdEnvironment> {
    let listen_fds = std::env::var("LISTEN_FDS").ok();
    let listen_pid = std::env::var("LISTEN_PID").ok();
    let notify_socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
    for name in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
    ] {
        // SAFETY: documented precondition — no other thread exists yet that could read the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let listener = adopt_listener(listen_fds.as_deref(), listen_pid.as_deref())?;
    Ok(SystemdEnvironment {
        listener,
        notifier: Notifier {
            socket: notify_socket,
        },
    })
}

fn adopt_listener(
    listen_fds: Option<&str>,
    listen_pid: Option<&str>,
) -> anyhow::Result<Option<UnixListener>> {
    let Some(count) = listen_fds else {
        return Ok(None);
    };
    let ours = listen_pid
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    if !ours {
        tracing::debug!(
            "LISTEN_FDS is meant for another process (LISTEN_PID {listen_pid:?}); ignoring it"
        );
        return Ok(None);
    }
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| anyhow!("LISTEN_FDS={count:?} is not a number"))?;
    if count == 0 {
        return Ok(None);
    }
    if count > 1 {
        tracing::warn!(
            "systemd passed {count} sockets; ghapp serves only the first (one ListenStream= in ghapp.socket)"
        );
    }
    // SAFETY: systemd's protocol hands us fd 3 (LISTEN_PID matched); nothing else in this process
    // owns it, and it is validated below before use.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let stat = rustix::fs::fstat(&fd).context("inherited fd 3 is not open")?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        bail!("inherited fd 3 is not a socket: check ghapp.socket");
    }
    let kind = rustix::net::sockopt::socket_type(&fd)
        .context("cannot read the inherited socket's type")?;
    if kind != rustix::net::SocketType::STREAM {
        bail!("inherited fd 3 is not a stream socket: ghapp.socket needs ListenStream=");
    }
    let addr =
        rustix::net::getsockname(&fd).context("cannot read the inherited socket's address")?;
    if addr.address_family() != rustix::net::AddressFamily::UNIX {
        bail!(
            "inherited fd 3 is not a Unix socket: ghapp.socket needs ListenStream=/path/to/ghapp.sock"
        );
    }
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)
        .context("cannot set FD_CLOEXEC on fd 3")?;
    Ok(Some(UnixListener::from(fd)))
}

/// Sends `sd_notify` messages when systemd asked for them (`NOTIFY_SOCKET`).
#[derive(Debug, Default, Clone)]
pub struct Notifier {
    socket: Option<OsString>,
}

impl Notifier {
    /// A notifier sending to `socket` (a path, or `@name` for the abstract namespace).
    pub fn new(socket: Option<OsString>) -> Notifier {
        Notifier { socket }
    }

    /// True when systemd is listening.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends newline-separated `KEY=value` assignments, e.g. `READY=1\nSTATUS=serving`.
    /// Failures are logged, never fatal: the daemon serves either way.
    pub fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else { return };
        if let Err(e) = send(socket, state) {
            tracing::warn!("sd_notify to {}: {e}", socket.to_string_lossy());
        }
    }
}

fn send(socket: &OsString, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let datagram = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    datagram.send_to(state.as_bytes(), std::path::Path::new(socket))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Some(path.clone().into_os_string()));
        assert!(notifier.enabled());
        notifier.notify("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        Notifier::default().notify("READY=1"); // disabled: a no-op
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notifications_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ghapp-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(Some(format!("@{name}").into())).notify("READY=1");
        let mut buf = [0u8; 16];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn listen_fds_for_another_pid_or_absent_are_ignored() {
        assert!(adopt_listener(None, None).unwrap().is_none());
        assert!(
            adopt_listener(Some("1"), Some("1")).unwrap().is_none(),
            "pid 1 is not us"
        );
        assert!(
            adopt_listener(Some("1"), None).unwrap().is_none(),
            "LISTEN_PID is required"
        );
        let me = std::process::id().to_string();
        assert!(adopt_listener(Some("0"), Some(&me)).unwrap().is_none());
        assert!(adopt_listener(Some("x"), Some(&me)).is_err());
    }
}
