//! `github-emulator` as a real process for integration tests and benchmarks.
//!
//! [`EmulatorProcess::start`] writes the fixture into a fresh temp state dir, spawns the binary,
//! reads its one JSON line (with a timeout) and kills it on drop (SIGTERM, then SIGKILL). Helpers
//! talk to the admin API (faults, stats) and to the API itself (sign an App JWT, resolve and mint
//! a token) over a tiny keep-alive HTTP/1.1 client built on std, so they work from sync and async
//! tests alike (no runtime inside).
//!
//! ```no_run
//! use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
//! let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
//! let token = emulator.mint_token(100, serde_json::json!({"repositories": ["widgets"]})).unwrap();
//! assert!(token["token"].as_str().unwrap().starts_with("ghs_"));
//! emulator.fault(serde_json::json!({"kind": "status", "status": 503, "times": 1})).unwrap();
//! let clone_url = emulator.repo_url("acme", "widgets");
//! ```

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the emulator may take to print its URL line (it starts in well under a second; the
/// margin is for a loaded 2-core CI machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `User-Agent` the helpers' HTTP client sends unless the caller gives one.
pub const TESTKIT_USER_AGENT: &str = "ghapp-testkit";

/// Per-request timeout of the helpers' HTTP client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL line the emulator prints.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EmulatorUrls {
    /// REST base, github.com layout (`http://127.0.0.1:P`); GHES layout under `/api/v3`.
    pub api_url: String,
    /// Git base: repositories at `{git_url}/{owner}/{repo}.git`.
    pub git_url: String,
    /// Admin base (`/_emulator/...`).
    pub admin_url: String,
    /// With `--tls`: the CA (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A fixture for most tests: App 1 `ghapp-test` (key written to `app1.pem`); installation 100 on
/// the organization `acme` for `widgets` and `gadgets` with `contents: write, metadata: read`;
/// installation 200 on the user `octo` for `tools` with the same permissions; plus `acme/private`,
/// a repository installation 100 cannot reach.
pub fn basic_fixture(token_ttl_secs: u64) -> String {
    format!(
        r#"token_ttl_secs = {token_ttl_secs}

[[apps]]
id = 1
client_id = "Iv1.0123456789abcdef"
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
repositories = ["widgets", "gadgets"]
permissions = {{ contents = "write", metadata = "read" }}

[[installations]]
id = 200
app = 1
account = "octo"
account_type = "User"
repositories = ["tools"]
permissions = {{ contents = "write", metadata = "read" }}

[[repositories]]
full_name = "acme/widgets"

[[repositories]]
full_name = "acme/gadgets"

[[repositories]]
full_name = "octo/tools"

[[repositories]]
full_name = "acme/private"
"#
    )
}

/// A response from the tiny client.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A running `github-emulator` process.
pub struct EmulatorProcess {
    /// Where it serves.
    pub urls: EmulatorUrls,
    child: Child,
    state: tempfile::TempDir,
    api: Mutex<Option<TcpStream>>,
    jwt: Mutex<Option<(String, Instant)>>,
}

impl EmulatorProcess {
    /// Starts the emulator from fixture text in a fresh temp state dir.
    pub fn start(fixture_toml: &str) -> anyhow::Result<EmulatorProcess> {
        Self::start_with_args(fixture_toml, &[])
    }

    /// Starts it with extra command-line arguments (e.g. `--tls`).
    pub fn start_with_args(fixture_toml: &str, args: &[&str]) -> anyhow::Result<EmulatorProcess> {
        let state = tempfile::Builder::new()
            .prefix("ghapp-emu-")
            .tempdir()
            .context("creating the state dir")?;
        let fixture = state.path().join("fixture.toml");
        std::fs::write(&fixture, fixture_toml).context("writing the fixture")?;
        let mut child = Command::new(crate::binary("github-emulator"))
            .arg("--fixture")
            .arg(&fixture)
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning github-emulator")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let result = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(result);
        });
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            Ok(Ok(_)) => {
                let status = child.wait().ok();
                bail!(
                    "github-emulator exited without printing its URLs ({status:?}); see its stderr above"
                );
            }
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("reading github-emulator's stdout: {e}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("github-emulator printed no URL line within {START_TIMEOUT:?}");
            }
        };
        let urls: EmulatorUrls = match serde_json::from_str(line.trim()) {
            Ok(urls) => urls,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("github-emulator printed {line:?}, not its URL line: {e}");
            }
        };
        Ok(EmulatorProcess {
            urls,
            child,
            state,
            api: Mutex::new(None),
            jwt: Mutex::new(None),
        })
    }

    /// The emulator's state dir (keys, `repos/`, `ca.pem`).
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// A file in the state dir, e.g. `key_path("app1.pem")`.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.state_dir().join(name)
    }

    /// The git credential `host` of the git server: `127.0.0.1:G`.
    pub fn git_host(&self) -> String {
        host_of(&self.urls.git_url).to_string()
    }

    /// The clone URL of `owner/repo`.
    pub fn repo_url(&self, owner: &str, repo: &str) -> String {
        format!("{}/{owner}/{repo}.git", self.urls.git_url)
    }

    /// The bare repository of `owner/repo` on disk.
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        self.state_dir()
            .join("repos")
            .join(owner)
            .join(format!("{repo}.git"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Injects a fault (`POST /_emulator/faults`); an error if the emulator refuses it.
    pub fn fault(&self, fault: Value) -> anyhow::Result<()> {
        let response = request(
            &self.urls.admin_url,
            None,
            "POST",
            "/_emulator/faults",
            &[],
            Some(&fault.to_string()),
        )?;
        if response.status != 200 {
            bail!(
                "fault {fault} refused: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(())
    }

    /// Clears status/latency/drop faults, the clock offset and the replication delay.
    pub fn clear_faults(&self) -> anyhow::Result<()> {
        self.fault(serde_json::json!({"kind": "clear"}))
    }

    /// `GET /_emulator/stats`.
    pub fn stats(&self) -> anyhow::Result<Value> {
        let response = request(
            &self.urls.admin_url,
            None,
            "GET",
            "/_emulator/stats",
            &[],
            None,
        )?;
        if response.status != 200 {
            bail!("stats answered {}", response.status);
        }
        response.json()
    }

    /// Points used so far in one rate-limit bucket (`installation:100`, `app:1`, …) of
    /// `GET /_emulator/rate_limit`; 0 for a bucket not charged yet.
    pub fn rate_limit_used(&self, bucket: &str) -> anyhow::Result<u64> {
        let response = request(
            &self.urls.admin_url,
            None,
            "GET",
            "/_emulator/rate_limit",
            &[],
            None,
        )?;
        if response.status != 200 {
            bail!("rate_limit answered {}", response.status);
        }
        Ok(response.json()?["buckets"][bucket]["used"]
            .as_u64()
            .unwrap_or(0))
    }

    /// Resets the counters (`DELETE /_emulator/stats`).
    pub fn reset_stats(&self) -> anyhow::Result<()> {
        request(
            &self.urls.admin_url,
            None,
            "DELETE",
            "/_emulator/stats",
            &[],
            None,
        )
        .map(|_| ())
    }

    /// An RS256 App JWT for `app_id` signed with the key file `key_name` in the state dir
    /// (`iat` = now − 60 s, `exp` = now + 540 s, `iss` the numeric id).
    pub fn sign_app_jwt(&self, app_id: u64, key_name: &str) -> anyhow::Result<String> {
        let pem = std::fs::read(self.key_path(key_name))
            .with_context(|| format!("reading {key_name}"))?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        sign_jwt(
            &pem,
            &serde_json::json!({ "iat": now - 60, "exp": now + 540, "iss": app_id }),
        )
    }

    /// A cached JWT for App 1 (`app1.pem`), re-signed after 5 minutes.
    pub fn app_jwt(&self) -> anyhow::Result<String> {
        let mut cached = self.jwt.lock().map_err(|_| anyhow!("jwt cache poisoned"))?;
        if let Some((jwt, at)) = cached.as_ref()
            && at.elapsed() < Duration::from_secs(300)
        {
            return Ok(jwt.clone());
        }
        let jwt = self.sign_app_jwt(1, "app1.pem")?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    /// One API request on a kept-alive connection (`path` relative to `api_url`).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        let auth = bearer.map(|b| format!("Bearer {b}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("Authorization", auth.as_str()));
        }
        let mut conn = self
            .api
            .lock()
            .map_err(|_| anyhow!("connection poisoned"))?;
        // A kept-alive connection may have been closed by the server: retry once on a fresh one.
        let reused = conn.take();
        let was_reused = reused.is_some();
        let stream = match reused {
            Some(stream) => stream,
            None => connect(&self.urls.api_url)?,
        };
        let result = match exchange(
            stream,
            host_of(&self.urls.api_url),
            method,
            path,
            &all,
            body,
            true,
        ) {
            Err(_) if was_reused => {
                let stream = connect(&self.urls.api_url)?;
                exchange(
                    stream,
                    host_of(&self.urls.api_url),
                    method,
                    path,
                    &all,
                    body,
                    true,
                )
            }
            other => other,
        };
        let (response, stream) = result?;
        *conn = stream;
        Ok(response)
    }

    /// Mints a token for `installation_id` with App 1 (`body` as the request JSON) and returns
    /// the 201 body; any other status is an error.
    pub fn mint_token(&self, installation_id: u64, body: Value) -> anyhow::Result<Value> {
        let jwt = self.app_jwt()?;
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let response = self.api(
            "POST",
            &path,
            Some(&jwt),
            &[("Content-Type", "application/json")],
            Some(&body.to_string()),
        )?;
        if response.status != 201 {
            bail!(
                "minting for installation {installation_id} answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        response.json()
    }

    /// What a broker does for a cold repository, straight to the emulator with one cached JWT:
    /// `GET /repos/{owner}/{repo}/installation`, then a token narrowed to that repository.
    pub fn resolve_and_mint(&self, owner: &str, repo: &str) -> anyhow::Result<Value> {
        let jwt = self.app_jwt()?;
        let response = self.api(
            "GET",
            &format!("/repos/{owner}/{repo}/installation"),
            Some(&jwt),
            &[],
            None,
        )?;
        if response.status != 200 {
            bail!(
                "installation of {owner}/{repo} answered {}",
                response.status
            );
        }
        let id = response.json()?["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("installation without id"))?;
        self.mint_token(id, serde_json::json!({ "repositories": [repo] }))
    }
}

/// The emulator as an OIDC issuer (docs/emulator.md, "OIDC issuer"): ID tokens for the daemon's
/// `[[oidc]]` identities, hostile variants, key rotation and the JWKS fetch counter.
impl EmulatorProcess {
    /// The default issuer: exactly the `iss` of its tokens and the `issuer` of its discovery
    /// document (the emulator's `api_url`; `https://…` with `--tls`).
    pub fn oidc_issuer(&self) -> String {
        self.urls.api_url.clone()
    }

    /// Creates (if needed) the issuer `name` (`""` = the default one) and returns what
    /// `POST /_emulator/oidc/issuers` answers: `issuer`, `discovery_url`, `jwks_uri`, `kids`,
    /// `rs256_kid`, `es256_kid`. A second issuer is `{api_url}/oidc/{name}`.
    pub fn oidc_issuer_info(&self, name: &str) -> anyhow::Result<Value> {
        self.oidc_admin(
            "POST",
            "/_emulator/oidc/issuers",
            Some(serde_json::json!({ "issuer": name })),
        )
    }

    /// Mints an ID token (`POST /_emulator/oidc/token`, body as documented: `issuer`, `preset`,
    /// `sub`, `aud`, `claims`, `lifetime_secs`, `alg`, `signing_issuer`, `hostile`,
    /// `oversize_bytes`) and returns the whole answer (`token`, `alg`, `kid`, `claims`).
    pub fn mint_id_token_answer(&self, request: Value) -> anyhow::Result<Value> {
        self.oidc_admin("POST", "/_emulator/oidc/token", Some(request))
    }

    /// Mints an ID token and returns the compact JWS.
    pub fn mint_id_token(&self, request: Value) -> anyhow::Result<String> {
        let answer = self.mint_id_token_answer(request)?;
        answer["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the mint answer has no token"))
    }

    /// A GitHub Actions ID token of the default issuer for `repository` (`OWNER/REPO`) on
    /// `git_ref` (e.g. `refs/heads/main`) with audience `aud`, signed RS256.
    pub fn github_actions_id_token(
        &self,
        repository: &str,
        git_ref: &str,
        aud: &str,
    ) -> anyhow::Result<String> {
        self.mint_id_token(serde_json::json!({
            "preset": { "kind": "github_actions", "repository": repository, "ref": git_ref },
            "aud": aud,
        }))
    }

    /// A Kubernetes service-account ID token of the default issuer (`sub`
    /// `system:serviceaccount:NAMESPACE:NAME`, the nested `kubernetes.io` claim) with audience
    /// `[aud]`, signed RS256.
    pub fn kubernetes_id_token(
        &self,
        namespace: &str,
        service_account: &str,
        aud: &str,
    ) -> anyhow::Result<String> {
        self.mint_id_token(serde_json::json!({
            "preset": {
                "kind": "kubernetes",
                "namespace": namespace,
                "service_account": service_account,
            },
            "aud": [aud],
        }))
    }

    /// `request` made deliberately bad: `hostile` is one of `expired`, `not_yet_valid`,
    /// `wrong_audience`, `wrong_issuer`, `wrong_key`, `unknown_kid`, `alg_none`,
    /// `hs256_public_key_pem`, `hs256_public_key_der`, `oversized`.
    pub fn hostile_id_token(&self, mut request: Value, hostile: &str) -> anyhow::Result<String> {
        request
            .as_object_mut()
            .ok_or_else(|| anyhow!("the mint request must be a JSON object"))?
            .insert("hostile".into(), Value::String(hostile.to_string()));
        self.mint_id_token(request)
    }

    /// Rotates the default issuer's RS256 key: a new key signs from now on; the old one stays
    /// in the JWKS when `keep_old`. Returns the answer (`kid`, `previous_kid`, `kids`).
    pub fn rotate_oidc_keys(&self, keep_old: bool) -> anyhow::Result<Value> {
        self.oidc_admin(
            "POST",
            "/_emulator/oidc/rotate",
            Some(serde_json::json!({ "keep_old": keep_old })),
        )
    }

    /// JWKS documents served (all issuers) since start or [`EmulatorProcess::reset_oidc_stats`].
    pub fn jwks_fetches(&self) -> anyhow::Result<u64> {
        let stats = self.oidc_admin("GET", "/_emulator/oidc/stats", None)?;
        stats["jwks_fetches"]
            .as_u64()
            .ok_or_else(|| anyhow!("OIDC stats without jwks_fetches: {stats}"))
    }

    /// Discovery documents served (all issuers).
    pub fn discovery_fetches(&self) -> anyhow::Result<u64> {
        let stats = self.oidc_admin("GET", "/_emulator/oidc/stats", None)?;
        stats["discovery_fetches"]
            .as_u64()
            .ok_or_else(|| anyhow!("OIDC stats without discovery_fetches: {stats}"))
    }

    /// Resets the OIDC fetch counters.
    pub fn reset_oidc_stats(&self) -> anyhow::Result<()> {
        self.oidc_admin("DELETE", "/_emulator/oidc/stats", None)
            .map(|_| ())
    }

    fn oidc_admin(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string());
        let response = request(
            &self.urls.admin_url,
            None,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_deref(),
        )?;
        if response.status != 200 {
            bail!(
                "{method} {path} answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        response.json()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }
}

/// Signs `claims` with an RSA private key PEM (PKCS#1 or PKCS#8) as an RS256 JWT.
pub fn sign_jwt(private_key_pem: &[u8], claims: &Value) -> anyhow::Result<String> {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem).context("parsing the RSA key")?;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        claims,
        &key,
    )
    .context("signing the JWT")
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

fn connect(base: &str) -> anyhow::Result<TcpStream> {
    if base.starts_with("https://") {
        bail!(
            "the testkit's HTTP client speaks plain http only; {base} is https (use admin_url, which stays http)"
        );
    }
    let host = host_of(base);
    let stream = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok();
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok();
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    base: &str,
    bearer: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(auth) = &auth {
        all.push(("Authorization", auth.as_str()));
    }
    let stream = connect(base)?;
    exchange(stream, host_of(base), method, path, &all, body, false).map(|(r, _)| r)
}

fn exchange(
    mut stream: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    keep_alive: bool,
) -> anyhow::Result<(HttpResponse, Option<TcpStream>)> {
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    // GitHub (and so the emulator) refuses requests without a User-Agent; a caller that passes
    // its own (even an empty one, to test that refusal) replaces this one.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
    {
        head.push_str(&format!("User-Agent: {TESTKIT_USER_AGENT}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .context("sending the request")?;
    stream
        .write_all(body.as_bytes())
        .context("sending the body")?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    if reader
        .read_line(&mut status_line)
        .context("reading the status line")?
        == 0
    {
        bail!("connection closed before an answer");
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut response_headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).context("reading headers")? == 0 {
            bail!("connection closed inside the headers");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            response_headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let find = |name: &str| {
        response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).context("reading the body")?;
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader
                .read_line(&mut size_line)
                .context("reading a chunk size")?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| anyhow!("bad chunk size {size_line:?}"))?;
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).context("reading a chunk")?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut body).context("reading the body")?;
    }
    let closing = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let stream = if keep_alive && !closing {
        Some(reader.into_inner())
    } else {
        None
    };
    Ok((
        HttpResponse {
            status,
            headers: response_headers,
            body,
        },
        stream,
    ))
}
