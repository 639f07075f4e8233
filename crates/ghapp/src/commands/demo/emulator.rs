//! The GitHub emulator embedded in `ghapp demo`: the github-emulator library run on its own
//! thread and runtime, so the demo needs no second binary (install.sh installs only `ghapp` and
//! the helper) and the emulator keeps serving however the demo's own thread is busy.

use anyhow::{Context as _, Result, anyhow, bail};
use github_emulator::{Emulator, Urls};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long the emulator may take to start (it generates an RSA key and a bare repository).
const START_TIMEOUT: Duration = Duration::from_secs(60);

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

/// The embedded emulator: its thread, and once ready, its URLs. Stops on
/// [`EmbeddedEmulator::stop`] or drop — also while still starting, so cleanup after a Ctrl-C never
/// races a half-started emulator writing into the temp directory.
pub struct EmbeddedEmulator {
    urls: Option<Urls>,
    ready: Option<oneshot::Receiver<Result<Urls>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedEmulator {
    /// Starts the emulator's thread from `fixture`, keeping its keys and repositories under
    /// `state_dir`; [`EmbeddedEmulator::ready`] waits for it to serve.
    pub fn spawn(fixture: &Path, state_dir: &Path) -> Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel::<Result<Urls>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let fixture: PathBuf = fixture.to_path_buf();
        let state_dir: PathBuf = state_dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("demo-emulator".into())
            .spawn(move || serve(fixture, state_dir, ready_tx, stop_rx))
            .context("cannot start the emulator's thread")?;
        Ok(EmbeddedEmulator {
            urls: None,
            ready: Some(ready_rx),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Waits until the emulator serves and returns where.
    pub async fn ready(&mut self) -> Result<Urls> {
        if let Some(urls) = &self.urls {
            return Ok(urls.clone());
        }
        let ready = self
            .ready
            .take()
            .ok_or_else(|| anyhow!("the emulator did not start"))?;
        let urls = match tokio::time::timeout(START_TIMEOUT, ready).await {
            Ok(Ok(Ok(urls))) => urls,
            Ok(Ok(Err(error))) => return Err(error),
            Ok(Err(_)) => bail!("the emulator's thread ended before it was ready"),
            Err(_) => bail!("the emulator did not start within {START_TIMEOUT:?}"),
        };
        self.urls = Some(urls.clone());
        Ok(urls)
    }

    /// Stops serving and waits for the emulator's thread to finish.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// The emulator's `GET /_emulator/stats`, as JSON.
    pub async fn stats(&self) -> Result<serde_json::Value> {
        let urls = self
            .urls
            .as_ref()
            .ok_or_else(|| anyhow!("the emulator is not serving"))?;
        let body = http_get(&urls.admin_url, "/_emulator/stats").await?;
        serde_json::from_slice(&body).context("the emulator's stats are not JSON")
    }
}

impl Drop for EmbeddedEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The emulator thread: its own multi-threaded runtime (git http-backend runs as a CGI per git
/// request), serving until told to stop.
fn serve(
    fixture: PathBuf,
    state_dir: PathBuf,
    ready: oneshot::Sender<Result<Urls>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("demo-emulator")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(anyhow!("cannot start the emulator's runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        match Emulator::start(&fixture, &state_dir, listen).await {
            Ok(emulator) => {
                if ready.send(Ok(emulator.urls.clone())).is_ok() {
                    // Serve until the demo says stop (or drops its end).
                    let _ = stop.await;
                }
                emulator.shutdown().await;
            }
            Err(error) => {
                let _ = ready.send(Err(error.context("the emulator did not start")));
            }
        }
    });
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
