//! A `redis-server` of a test's own (Debian's package) on a free loopback port, with no
//! persistence: the shared-cache, key-less host and proxy tests start one each. Without the
//! binaries a test says SKIPPED loudly, or fails when `GHAPP_TEST_REQUIRE_REDIS=1` (.ci/run sets
//! it once it installed the package).

use anyhow::{Context, bail};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of this test's own, killed when dropped.
pub struct Redis {
    /// The loopback port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Whether `redis-server` and `redis-cli` are on PATH; when not, says SKIPPED (or panics when
    /// `GHAPP_TEST_REQUIRE_REDIS=1`).
    pub fn available() -> bool {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("redis-cli")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if found {
            return true;
        }
        if std::env::var("GHAPP_TEST_REQUIRE_REDIS").as_deref() == Ok("1") {
            panic!(
                "GHAPP_TEST_REQUIRE_REDIS=1 but redis-server/redis-cli are not on PATH (apt-get install redis-server)"
            );
        }
        eprintln!(
            "\n\n*** SKIPPED: redis-server/redis-cli not found (apt-get install redis-server); this test did not run ***\n\n"
        );
        false
    }

    /// A fresh server on a free port, answering PING.
    pub fn start() -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let mut redis = Redis {
            port,
            dir,
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    /// Starts (or starts again) the server on its port and waits for PONG.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start redis-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not answer PING within 10 s")
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli -p PORT ARGS… --raw`: its stdout.
    pub fn cli_bytes(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stderr(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("redis-cli {args:?} failed");
        }
        Ok(out.stdout)
    }

    /// `redis-cli … --raw` as text.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&self.cli_bytes(args)?).into_owned())
    }

    /// Every key (`redis-cli --scan`) with its value (`GET`), as stored.
    pub fn dump(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let keys = self.cli(&["--scan"])?;
        keys.lines()
            .filter(|k| !k.is_empty())
            .map(|key| Ok((key.to_string(), self.cli_bytes(&["GET", key])?)))
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
