//! The GitHub emulator as `ghapp demo` runs it: the separately built `github-emulator` binary,
//! as a child process. The `ghapp` binary holds the App keys in production, so it links no
//! emulator code (docs/architecture.md); the demo finds `github-emulator` next to this
//! executable (where cargo builds it and install.sh installs it), then on PATH.

use super::child::{log_tail, terminate, wait_briefly};
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The emulator's executable name.
pub const PROGRAM: &str = "github-emulator";
/// How long the emulator may take to start (it generates an RSA key and a bare repository).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd emulator may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The emulator's admin route for its counters (docs/emulator.md), read for the demo's summary.
const STATS_PATH: &str = "/_emulator/stats";

/// The demo's fixture: one App, one organization installation with one repository.
pub fn fixture() -> &'static str {
    r#"# ghapp demo fixture (see docs/emulator.md)
token_ttl_secs = 3600

[[apps]]
id = 1
client_id = "Iv1.0000000000demo"
slug = "ghapp-demo"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
repositories = ["widgets"]
permissions = { contents = "write", metadata = "read" }

[[repositories]]
full_name = "acme/widgets"
"#
}

/// Where the started emulator serves: the JSON line `github-emulator` prints on stdout.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Urls {
    /// REST API base.
    pub api_url: String,
    /// Git smart-HTTP base.
    pub git_url: String,
    /// Admin API base.
    pub admin_url: String,
}

/// A `github-emulator` child; killed on drop, so cleanup after a Ctrl-C never leaves it
/// writing into the temp directory.
pub struct EmulatorChild {
    child: Child,
    /// Read until the URL line, then kept open so the emulator never writes to a closed pipe.
    stdout: Option<BufReader<ChildStdout>>,
    urls: Option<Urls>,
    /// Its stderr.
    log: PathBuf,
}

impl EmulatorChild {
    /// Starts `program --fixture FIXTURE --state-dir STATE_DIR --listen 127.0.0.1:0`, logging to
    /// `log`; [`EmulatorChild::ready`] waits for it to serve.
    pub fn spawn(program: &Path, fixture: &Path, state_dir: &Path, log: &Path) -> Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(program)
            .arg("--fixture")
            .arg(fixture)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", program.display()))?;
        let stdout = child.stdout.take().map(BufReader::new);
        Ok(EmulatorChild {
            child,
            stdout,
            urls: None,
            log: log.to_path_buf(),
        })
    }

    /// Waits for the emulator's URL line and returns where it serves.
    pub async fn ready(&mut self) -> Result<Urls> {
        if let Some(urls) = &self.urls {
            return Ok(urls.clone());
        }
        let stdout = self
            .stdout
            .as_mut()
            .ok_or_else(|| anyhow!("the emulator's stdout is not piped"))?;
        let urls = match tokio::time::timeout(START_TIMEOUT, read_urls(stdout)).await {
            Ok(Ok(urls)) => urls,
            Ok(Err(error)) => {
                let status = wait_briefly(&mut self.child).await;
                bail!("{error}{status}\n{}", log_tail("the emulator's", &self.log));
            }
            Err(_) => {
                let _ = self.child.start_kill();
                bail!(
                    "the emulator printed no URLs within {START_TIMEOUT:?}\n{}",
                    log_tail("the emulator's", &self.log)
                );
            }
        };
        self.urls = Some(urls.clone());
        Ok(urls)
    }

    /// The emulator's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the emulator (SIGTERM, then SIGKILL if it lingers).
    pub async fn stop(&mut self) {
        terminate(&mut self.child, STOP_TIMEOUT).await;
    }

    /// The emulator's counters, as JSON.
    pub async fn stats(&self) -> Result<serde_json::Value> {
        let urls = self
            .urls
            .as_ref()
            .ok_or_else(|| anyhow!("the emulator is not serving"))?;
        let body = http_get(&urls.admin_url, STATS_PATH).await?;
        serde_json::from_slice(&body).context("the emulator's stats are not JSON")
    }
}

/// Finds `github-emulator` next to `exe_dir`'s ghapp, then on PATH, or says how to get it.
pub fn find(exe_dir: &Path) -> Result<PathBuf> {
    super::git::find_program(PROGRAM, exe_dir).ok_or_else(|| {
        anyhow!(
            "{PROGRAM} is neither next to ghapp (in {}) nor on PATH: the demo runs GitHub's \
             emulator as a separate program, so the ghapp binary that holds App keys carries no \
             emulator code. Run scripts/demo.sh (builds everything), or build it with \
             `cargo build -p github-emulator`, or install it next to ghapp with ./install.sh",
            exe_dir.display()
        )
    })
}

async fn read_urls(stdout: &mut BufReader<ChildStdout>) -> Result<Urls> {
    let mut line = String::new();
    let read = stdout
        .read_line(&mut line)
        .await
        .context("reading the emulator's stdout")?;
    if read == 0 {
        bail!("the emulator exited before it was ready");
    }
    serde_json::from_str(line.trim()).with_context(|| {
        format!(
            "the emulator's first line is not its URLs: {:?}",
            line.trim()
        )
    })
}

/// A plain HTTP/1.1 GET over TCP (the admin API is local, unauthenticated and tiny: no client
/// library needed). Handles both Content-Length and chunked bodies.
async fn http_get(base_url: &str, path: &str) -> Result<Vec<u8>> {
    let authority = base_url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("admin URL {base_url} is not http://"))?
        .trim_end_matches('/');
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("GET {base_url}{path} timed out"))?
        .with_context(|| format!("GET {base_url}{path}"))?;
    parse_response(&answer).with_context(|| format!("GET {base_url}{path}"))
}

/// Splits a raw HTTP/1.1 response into its body, requiring a 2xx status.
fn parse_response(answer: &[u8]) -> Result<Vec<u8>> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("answer has no header end"))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let body = &answer[split + 4..];
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        bail!("answered {status_line:?}");
    }
    let chunked = head.lines().any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    if chunked {
        decode_chunked(body)
    } else {
        Ok(body.to_vec())
    }
}

fn decode_chunked(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| anyhow!("bad chunk size {size_hex:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn refuses_errors_and_garbage() {
        assert!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nno")
                .unwrap_err()
                .to_string()
                .contains("404")
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab")
                .is_err()
        );
    }
}
