//! The daemon as `ghapp demo` runs it: this very executable, `daemon --foreground`, as a child
//! process — exactly what systemd runs — with its logs in a file the demo shows on failure.

use super::child::{self, terminate, wait_briefly};
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long the daemon may take to print `ready <socket>` (a debug build on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd daemon may take to drain and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `ghapp daemon --foreground` child; killed on drop.
pub struct DaemonChild {
    child: Child,
    /// Read until `ready`, then kept open so the daemon never writes to a closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
    /// Its stderr.
    pub log: PathBuf,
}

impl DaemonChild {
    /// Starts `exe daemon --foreground --config CONFIG --socket SOCKET`, logging to `log`;
    /// [`DaemonChild::ready`] waits for it to serve.
    pub fn spawn(exe: &Path, config: &Path, socket: &Path, log: &Path) -> Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(exe);
        for name in super::git::PROXY_VARIABLES {
            command.env_remove(name);
        }
        let mut child = command
            .args(["daemon", "--foreground", "--config"])
            .arg(config)
            .arg("--socket")
            .arg(socket)
            // The demo's daemon is not a systemd service, whatever the demo itself runs under.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("GHAPP_SOCKET")
            .env_remove("GHAPP_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {} daemon", exe.display()))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(DaemonChild {
            child,
            stdout,
            log: log.to_path_buf(),
        })
    }

    /// Waits for the daemon's `ready <socket>` line and returns the socket it announced.
    pub async fn ready(&mut self) -> Result<PathBuf> {
        let stdout = self
            .stdout
            .as_mut()
            .ok_or_else(|| anyhow!("the daemon's stdout is not piped"))?;
        let announced = tokio::time::timeout(READY_TIMEOUT, read_ready_line(stdout)).await;
        match announced {
            Ok(Ok(socket)) => Ok(socket),
            Ok(Err(error)) => {
                let status = wait_briefly(&mut self.child).await;
                bail!("{error}{status}\n{}", log_tail(&self.log));
            }
            Err(_) => {
                let _ = self.child.start_kill();
                bail!(
                    "the daemon printed no `ready` line within {READY_TIMEOUT:?}\n{}",
                    log_tail(&self.log)
                );
            }
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then wait for it to drain and exit; SIGKILL if it does not within the timeout.
    /// Returns its exit status when it exited by itself.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        terminate(&mut self.child, STOP_TIMEOUT).await
    }
}

async fn read_ready_line(stdout: &mut BufReader<ChildStdout>) -> Result<PathBuf> {
    let mut line = String::new();
    loop {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .await
            .context("reading the daemon's stdout")?;
        if read == 0 {
            bail!("the daemon exited before it was ready");
        }
        if let Some(socket) = line.trim_end().strip_prefix("ready ") {
            return Ok(PathBuf::from(socket));
        }
    }
}

/// The last lines of the daemon's log, indented, for failure messages.
pub fn log_tail(log: &Path) -> String {
    child::log_tail("the daemon's", log)
}
