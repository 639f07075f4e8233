//! `ghapp daemon` as a real process for integration tests, plus small tools to talk to it and
//! check what it says.
//!
//! - [`DaemonProcess::start`]: a temp dir (short path — sockets are limited to 107 bytes) holding
//!   the config, the socket and the daemon's stderr (`daemon.log`); waits for the `ready <socket>`
//!   line (after the `listening <ADDR:PORT> <tls|plain>` lines of a `[network]` daemon, see
//!   [`DaemonProcess::listening`]); kills the daemon on drop.
//! - [`http_request`]: one HTTP/1.1 request over the socket with `Connection: close`, from std
//!   only, so tests can also send what a proper client never would.
//! - [`parse_prometheus`]: a strict parser for the text exposition format.
//! - [`config_for_emulator`] / [`config_for`]: a config with one App pointing at the emulator.

use anyhow::{Context, anyhow, bail};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon may take to print `ready`: generous for a loaded 2-core CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`DaemonProcess::start_with`].
#[derive(Debug, Clone, Default)]
pub struct DaemonStart {
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// Extra arguments after `daemon`.
    pub args: Vec<String>,
    /// Mode for the temp dir holding the socket (e.g. `0o711` so another uid can reach the
    /// socket); default 0700.
    pub dir_mode: Option<u32>,
}

/// A running `ghapp daemon --foreground` (working directory: its temp dir), killed when dropped.
pub struct DaemonProcess {
    dir: tempfile::TempDir,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    options: DaemonStart,
    child: Option<Child>,
    listening: Vec<NetworkAddress>,
}

/// One network address a `[network]` daemon announced (`listening ADDR:PORT tls|plain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkAddress {
    /// The bound address, with the port the kernel chose for port 0.
    pub address: std::net::SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
}

/// A directory for sockets with a short path: `/tmp` when it exists (`$TMPDIR` may be long).
pub fn short_temp_dir() -> anyhow::Result<tempfile::TempDir> {
    let base = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("ghd")
        .tempdir_in(base)
        .context("cannot create a temp dir")
}

/// Adds `daemon --foreground --config CONFIG --socket SOCKET` to `command` (the `ghapp` binary,
/// or a wrapper such as `setpriv … -- ghapp`) and removes the systemd variables a test runner may
/// have inherited, so the daemon binds its own socket and sends no readiness notification.
pub fn foreground_daemon<'a>(
    command: &'a mut Command,
    config: &Path,
    socket: &Path,
) -> &'a mut Command {
    command
        .args(["daemon", "--foreground", "--config"])
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
}

impl DaemonProcess {
    /// Writes `config_toml`, starts the daemon on `<tempdir>/d.sock` and waits for `ready`.
    pub fn start(config_toml: &str) -> anyhow::Result<DaemonProcess> {
        Self::start_with(config_toml, DaemonStart::default())
    }

    /// [`DaemonProcess::start`] with extra environment, arguments or a dir mode.
    pub fn start_with(config_toml: &str, options: DaemonStart) -> anyhow::Result<DaemonProcess> {
        let dir = short_temp_dir()?;
        if let Some(mode) = options.dir_mode {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode))?;
        }
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml)?;
        let socket = dir.path().join("d.sock");
        let log = dir.path().join("daemon.log");
        let mut daemon = DaemonProcess {
            dir,
            config,
            socket,
            log,
            options,
            child: None,
            listening: Vec::new(),
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(crate::binary("ghapp"));
        foreground_daemon(&mut command, &self.config, &self.socket)
            .args(&self.options.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .env_remove("GHAPP_SOCKET")
            .env_remove("GHAPP_CONFIG")
            .env("GHAPP_LOG", "info,ghapp_daemon=debug");
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().context("cannot start ghapp daemon")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        self.child = Some(child);
        self.listening = wait_for_ready(stdout, &self.socket)
            .map_err(|e| anyhow!("{e}\n--- daemon log ---\n{}", self.log()))?;
        Ok(())
    }

    /// The network addresses the daemon announced before `ready` (none without `[network]`);
    /// renewed by [`DaemonProcess::restart`].
    pub fn listening(&self) -> &[NetworkAddress] {
        &self.listening
    }

    /// The first announced network address (panics with the log when there is none).
    pub fn network_address(&self) -> std::net::SocketAddr {
        match self.listening.first() {
            Some(first) => first.address,
            None => panic!("the daemon announced no network address:\n{}", self.log()),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir (config, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Everything the daemon wrote to stderr so far (across restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces the config file (then [`DaemonProcess::reload`] to apply it).
    pub fn write_config(&self, config_toml: &str) -> anyhow::Result<()> {
        fs::write(&self.config, config_toml).context("cannot write the config")
    }

    /// Sends a signal.
    pub fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("daemon not running"))?;
        let pid = rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| anyhow!("bad pid"))?;
        rustix::process::kill_process(pid, signal).context("kill")
    }

    /// SIGHUP.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.signal(rustix::process::Signal::HUP)
    }

    /// Waits until the log contains `needle` (e.g. after a reload).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{needle:?} not in the daemon log after {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal(rustix::process::Signal::TERM)?;
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("daemon not running"))?;
        wait_with_timeout(&mut child, STOP_TIMEOUT)
    }

    /// SIGKILL (a crash: the socket file stays behind), and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("daemon not running"))?;
        wait_with_timeout(&mut child, timeout)
    }

    /// Stops the daemon if running (SIGTERM) and starts it again on the same dir and socket.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            let status = self.stop()?;
            if !status.success() {
                bail!("daemon exited with {status} on SIGTERM:\n{}", self.log());
            }
        }
        self.spawn()
    }

    /// One request (see [`http_request`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        http_request(&self.socket, method, path, body)
    }

    /// `GET path` → (status, body).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = self.request("GET", path, None)?;
        Ok((response.status, response.body))
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_ready(
    stdout: std::process::ChildStdout,
    socket: &Path,
) -> anyhow::Result<Vec<NetworkAddress>> {
    let (lines, ready) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if lines.send(line.trim_end().to_string()).is_err() {
                        // Keep draining so the daemon never blocks on a full pipe.
                        continue;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut listening = Vec::new();
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match ready.recv_timeout(wait) {
            Ok(line) if line == format!("ready {}", socket.display()) => return Ok(listening),
            Ok(line) if line.starts_with("listening ") => listening.push(parse_listening(&line)?),
            Ok(line) => bail!(
                "expected `ready {}` on stdout, got {line:?}",
                socket.display()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("no ready line within {READY_TIMEOUT:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the daemon exited before it was ready")
            }
        }
    }
}

/// `listening ADDR:PORT tls|plain`.
fn parse_listening(line: &str) -> anyhow::Result<NetworkAddress> {
    let mut words = line.split(' ').skip(1);
    let address = words
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("bad listening line {line:?}"))?;
    let tls = match words.next() {
        Some("tls") => true,
        Some("plain") => false,
        _ => bail!("bad listening line {line:?}"),
    };
    Ok(NetworkAddress { address, tls })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the daemon did not exit within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// Body as text.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {:?}", self.body))
    }
}

/// Sends one request with `Connection: close` and reads the whole answer (30 s deadline).
pub fn http_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<HttpResponse> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    raw_request(socket, request.as_bytes())
}

/// Writes raw bytes and parses whatever comes back as one HTTP response.
pub fn raw_request(socket: &Path, bytes: &[u8]) -> anyhow::Result<HttpResponse> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(bytes)?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => parse_response(&raw),
        // A server that answers without reading a refused body (413) closes with unread data,
        // which resets the connection after its answer: keep the answer if it is complete.
        Err(e) => parse_response(&raw).map_err(|_| anyhow!("reading the answer: {e}")),
    }
}

/// Parses one HTTP/1.1 response with a Content-Length (or read-to-close) body.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete head in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = match headers
        .get("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => rest
            .get(..n)
            .ok_or_else(|| anyhow!("body truncated: {} of {n} bytes", rest.len()))?
            .to_string(),
        None => rest.to_string(),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A config with one App, `test-app`, served by the emulator at `api_url`, for git at
/// `git_url` (the App's host is `git_url`'s `host:port`), with `extra_daemon` lines (TOML) in
/// `[daemon]` — `[[daemon.policy]]` tables may follow them.
pub fn config_for_emulator(
    api_url: &str,
    git_url: &str,
    private_key: &Path,
    extra_daemon: &str,
) -> String {
    let host = git_url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    format!(
        "[daemon]\n{extra_daemon}\n\n[[app]]\nname = \"test-app\"\nhost = {host:?}\napi_url = {api_url:?}\napp_id = 1\nprivate_key_file = {key:?}\ninsecure_http = true\n",
        key = private_key.display().to_string()
    )
}

/// [`config_for_emulator`] for a running emulator started from
/// [`crate::emulator::basic_fixture`] (App 1, key `app1.pem`).
pub fn config_for(emulator: &crate::emulator::EmulatorProcess, extra_daemon: &str) -> String {
    config_for_emulator(
        &emulator.urls.api_url,
        &emulator.urls.git_url,
        &emulator.key_path("app1.pem"),
        extra_daemon,
    )
}

/// One sample of a Prometheus text page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` for histograms).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the Prometheus text exposition format (0.0.4) strictly: every sample belongs to a
/// family declared by `# TYPE` before it; families are contiguous; names and labels are
/// well-formed with only the format's escapes; values are floats (`+Inf`, `-Inf`, `NaN`); no
/// series repeats; histograms have ascending `le` buckets, cumulative counts, a `+Inf` bucket
/// equal to `_count`, and a `_sum`. The text ends with a newline and has no blank lines.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the page does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = std::collections::BTreeSet::new();
    let mut finished = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples: Vec<Sample> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("blank line".into()));
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or_else(|| at("TYPE without a name".into()))?;
                    let kind = parts
                        .next()
                        .ok_or_else(|| at("TYPE without a type".into()))?;
                    check_name(name).map_err(&at)?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                    if samples
                        .iter()
                        .any(|s| family_of(&s.name, &types) == Some(name.to_string()))
                    {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    if let Some(previous) = current.replace(name.to_string()) {
                        finished.insert(previous);
                    }
                }
                Some("HELP") => {
                    let name = parts
                        .next()
                        .ok_or_else(|| at("HELP without a name".into()))?;
                    check_name(name).map_err(&at)?;
                    if !helps.insert(name.to_string()) {
                        return Err(at(format!("second HELP for {name}")));
                    }
                }
                _ => {}
            }
            continue;
        }
        let sample = parse_sample(line).map_err(&at)?;
        let family = family_of(&sample.name, &types)
            .ok_or_else(|| at(format!("sample {} has no # TYPE before it", sample.name)))?;
        if finished.contains(&family) {
            return Err(at(format!("family {family} is not contiguous")));
        }
        if current.as_deref() != Some(family.as_str())
            && let Some(previous) = current.replace(family.clone())
        {
            finished.insert(previous);
        }
        let key = format!("{}{:?}", sample.name, sample.labels);
        if !seen.insert(key) {
            return Err(at("repeated series".into()));
        }
        samples.push(sample);
    }
    for (family, kind) in &types {
        if kind == "histogram" {
            check_histogram(family, &samples)?;
        }
    }
    Ok(samples)
}

fn family_of(sample: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(sample) {
        return Some(sample.to_string());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && types
                .get(base)
                .is_some_and(|t| t == "histogram" || (t == "summary" && suffix != "_bucket"))
        {
            return Some(base.to_string());
        }
    }
    None
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other
            if other
                .chars()
                .all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) =>
        {
            other.parse().map_err(|_| format!("bad value {other:?}"))
        }
        other => Err(format!("bad value {other:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let consumed;
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if inner[start..].starts_with('}') {
                if !labels.is_empty() {
                    return Err("trailing comma in labels".into());
                }
                consumed = Some(start + 1);
                break;
            }
            let eq = inner[start..].find('=').ok_or("label without '='")? + start;
            let label = &inner[start..eq];
            check_name(label).map_err(|_| format!("bad label name {label:?}"))?;
            if label.contains(':') {
                return Err(format!("bad label name {label:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (_, '"') => break,
                    (_, '\n') => return Err("newline in label value".into()),
                    (_, c) => value.push(c),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} repeated"));
            }
            match chars.next().ok_or("unterminated labels")? {
                (_, ',') => {
                    if chars.peek().is_some_and(|(_, c)| *c == '}') {
                        return Err("trailing comma in labels".into());
                    }
                }
                (i, '}') => {
                    consumed = Some(i + 1);
                    break;
                }
                (_, c) => return Err(format!("unexpected {c:?} after a label")),
            }
        }
        rest = &inner[consumed.ok_or("unterminated labels")?..];
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn check_histogram(family: &str, samples: &[Sample]) -> Result<(), String> {
    // Group by the labels other than `le`.
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let bucket = format!("{family}_bucket");
    for s in samples.iter().filter(|s| s.name == bucket) {
        let le = s
            .labels
            .get("le")
            .ok_or_else(|| format!("{bucket} without le"))?;
        let bound = parse_value(le).map_err(|e| format!("{bucket}: le {e}"))?;
        let mut rest = s.labels.clone();
        rest.remove("le");
        series
            .entry(format!("{rest:?}"))
            .or_default()
            .push((bound, s.value));
    }
    if series.is_empty() {
        return Err(format!("histogram {family} has no buckets"));
    }
    for (labels, buckets) in series {
        for pair in buckets.windows(2) {
            if pair[1].0 <= pair[0].0 {
                return Err(format!("{family}{labels}: le not ascending"));
            }
            if pair[1].1 < pair[0].1 {
                return Err(format!("{family}{labels}: buckets not cumulative"));
            }
        }
        let (last_bound, last_count) = *buckets.last().ok_or("no buckets")?;
        if last_bound != f64::INFINITY {
            return Err(format!("{family}{labels}: no +Inf bucket"));
        }
        let wanted: BTreeMap<String, String> = labels_from_debug(samples, family, &labels);
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count") && s.labels == wanted)
            .ok_or_else(|| format!("{family}{labels}: no _count"))?;
        if count.value != last_count {
            return Err(format!(
                "{family}{labels}: _count {} != +Inf bucket {last_count}",
                count.value
            ));
        }
        if !samples
            .iter()
            .any(|s| s.name == format!("{family}_sum") && s.labels == wanted)
        {
            return Err(format!("{family}{labels}: no _sum"));
        }
    }
    Ok(())
}

fn labels_from_debug(samples: &[Sample], family: &str, key: &str) -> BTreeMap<String, String> {
    samples
        .iter()
        .filter(|s| s.name == format!("{family}_bucket"))
        .map(|s| {
            let mut rest = s.labels.clone();
            rest.remove("le");
            rest
        })
        .find(|rest| format!("{rest:?}") == key)
        .unwrap_or_default()
}

/// Reads a file the daemon wrote (e.g. an audit log), empty if absent.
pub fn read_lines(path: &Path) -> Vec<String> {
    File::open(path)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parser_accepts_good_pages() {
        let page = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n# TYPE g gauge\ng -1.5e3 1700000000\n";
        let samples = parse_prometheus(page).unwrap();
        assert_eq!(samples.len(), 6);
        assert_eq!(samples[0].labels["y"], "q\"\\\n");
        assert_eq!(samples[5].value, -1500.0);
    }

    #[test]
    fn strict_parser_rejects_bad_pages() {
        let bad = [
            "a 1\n",                                                          // no TYPE
            "# TYPE a gauge\na 1",                                            // no final newline
            "# TYPE a gauge\na{x=\"1\",} 1\n",                                // trailing comma
            "# TYPE a gauge\na{x=1} 1\n",                                     // unquoted
            "# TYPE a gauge\na{x=\"\\t\"} 1\n",                               // bad escape
            "# TYPE a gauge\na one\n",                                        // bad value
            "# TYPE a gauge\na 1\na 2\n",                                     // repeated series
            "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n",                     // not contiguous
            "# TYPE a gauge\n\na 1\n",                                        // blank line
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", // count mismatch
            "# TYPE 1a gauge\n",                                                 // bad name
        ];
        for page in bad {
            assert!(parse_prometheus(page).is_err(), "accepted {page:?}");
        }
    }

    #[test]
    fn responses_parse() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.json().unwrap()["error"], "x");
    }

    #[test]
    fn listening_lines_parse() {
        assert_eq!(
            parse_listening("listening 127.0.0.1:4433 tls").unwrap(),
            NetworkAddress {
                address: "127.0.0.1:4433".parse().unwrap(),
                tls: true
            }
        );
        assert!(!parse_listening("listening [::1]:80 plain").unwrap().tls);
        assert!(parse_listening("listening nowhere tls").is_err());
        assert!(parse_listening("listening 127.0.0.1:1 gopher").is_err());
    }

    #[test]
    fn emulator_config_names_the_git_host() {
        let config = config_for_emulator(
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            Path::new("/s/app1.pem"),
            "min_ttl = \"5m\"",
        );
        assert!(config.contains("host = \"127.0.0.1:2\""));
        assert!(config.contains("api_url = \"http://127.0.0.1:1\""));
        assert!(config.contains("min_ttl = \"5m\""));
        assert!(config.contains("private_key_file = \"/s/app1.pem\""));
    }
}
