//! A `redis-server` of a test's own (Debian's package) on a free loopback port, with no
//! persistence: the shared-cache, key-less host and proxy tests start one each. Without the
//! binaries a test says SKIPPED loudly, or fails when `GHAPP_TEST_REQUIRE_REDIS=1` (.ci/run sets
//! it once it installed the package).

use crate::pki::{ServerCert, TestCa};
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
    /// With TLS: the CA and the server's certificate; the plain port is closed.
    tls: Option<Tls>,
}

/// A TLS-only server's CA and certificate.
struct Tls {
    ca: TestCa,
    server: ServerCert,
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
        Self::start_on(None)
    }

    /// A fresh server speaking TLS only on a free port (no plain port, no client
    /// certificates asked for), its certificate for `127.0.0.1` signed by a CA of its own:
    /// [`Redis::ca_file`].
    pub fn start_tls() -> anyhow::Result<Redis> {
        let ca = TestCa::new("ghapp test Redis CA")?;
        let server = ca.issue_loopback("redis")?;
        Self::start_on(Some(Tls { ca, server }))
    }

    fn start_on(tls: Option<Tls>) -> anyhow::Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let mut redis = Redis {
            port,
            dir,
            child: None,
            tls,
        };
        redis.spawn()?;
        Ok(redis)
    }

    /// The CA a `rediss://` client must trust (`[cache] ca_file`); `None` for a plain server.
    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.tls.as_ref().map(|tls| tls.ca.ca_file())
    }

    /// Starts (or starts again) the server on its port and waits for PONG.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))?;
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(&tls.server.cert_file)
                .arg("--tls-key-file")
                .arg(&tls.server.key_file)
                .arg("--tls-ca-cert-file")
                .arg(tls.ca.ca_file())
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
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

    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:PORT` whatever the server speaks: for a TLS server, the URL a
    /// misconfigured client would use.
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's log (its stderr and stdout).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// `redis-cli -p PORT ARGS… --raw` (with `--tls --cacert CA` for a TLS server): its stdout.
    pub fn cli_bytes(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"]);
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(tls.ca.ca_file());
        }
        let out = command.args(args).stderr(Stdio::null()).output()?;
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
