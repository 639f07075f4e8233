//! The soak: mixed load against a real daemon and emulator with tokens that live seconds, so
//! hundreds of refresh cycles happen in a minute. Load, each on its own threads:
//!
//! - API clients on the socket (`ghapp_client::DaemonClient`), over eleven cache keys (three
//!   repositories × three permission sets, and two installation-wide tokens);
//! - `git-credential-ghapp get` processes, as git runs them;
//! - `ghapp token OWNER/REPO --json` processes;
//! - `git ls-remote` through the helper, so GitHub (the emulator) checks the tokens too.
//!
//! Every answer is recorded; at the end each served token is checked against the emulator's
//! ledger and clock ([`crate::expiry`]), and the daemon's resident memory and open files at the
//! start of the steady state are compared with the end. [`SoakReport::verdict`] says whether
//! the soak passed: zero failed requests, zero expired tokens served, flat RSS and fds.

use crate::expiry::{self, ExpiryCheck};
use crate::figures::{quantile, round};
use crate::github::{EmulatorAdmin, Ledger, Traffic, unix_now};
use crate::probe::Sample;
use crate::process::{fd_kinds, rss_kib};
use crate::stack::{Stack, Timing};
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use ghapp_testkit::daemon::DaemonStart;
use ghapp_testkit::git::{GitBinary, GitHome};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Total duration of the load.
    pub duration: Duration,
    /// API client threads.
    pub api_clients: usize,
    /// Threads running helper processes.
    pub helpers: usize,
    /// Threads running `ghapp token`.
    pub cli: usize,
    /// Run `git ls-remote` through the helper too.
    pub git: bool,
    /// RSS growth allowed from the start of the steady state to the end: this much…
    pub rss_slack_kib: u64,
    /// …plus this fraction of the starting RSS.
    pub rss_slack_fraction: f64,
}

impl SoakOptions {
    /// The standard mix for `duration`.
    pub fn new(duration: Duration) -> SoakOptions {
        SoakOptions {
            duration,
            api_clients: 4,
            helpers: 2,
            cli: 1,
            git: true,
            rss_slack_kib: 8 * 1024,
            rss_slack_fraction: 0.25,
        }
    }
}

/// The seconds-scale margins of the soak: 10-second tokens, refreshed from 6 s left, never
/// served with less than 4 s.
pub fn soak_timing() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(10),
        min_ttl: Duration::from_secs(4),
        refresh_ahead: Duration::from_secs(2),
        degraded_min_ttl: Duration::from_secs(1),
        retry_budget: Duration::from_secs(4),
        request_timeout: Duration::from_secs(2),
    }
}

/// Per kind of caller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindFigures {
    /// Requests made.
    pub requests: usize,
    /// Requests that failed.
    pub failed: usize,
    /// p50 latency, ms.
    pub p50_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Up to five failure messages.
    pub failures: Vec<String>,
}

/// What the soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Load duration, seconds.
    pub duration_s: f64,
    /// Per kind of caller.
    pub kinds: BTreeMap<String, KindFigures>,
    /// All requests.
    pub requests: usize,
    /// Failed requests.
    pub failed: usize,
    /// Every served token checked.
    pub expiry: ExpiryCheck,
    /// GitHub traffic over the load (mints = refresh cycles plus first mints).
    pub github: Traffic,
    /// Cache keys asked for.
    pub keys: usize,
    /// Daemon RSS at the start of the steady state, KiB.
    pub rss_start_kib: u64,
    /// Daemon RSS at the end, KiB.
    pub rss_end_kib: u64,
    /// Highest RSS seen, KiB.
    pub rss_max_kib: u64,
    /// Allowed end RSS, KiB.
    pub rss_limit_kib: u64,
    /// Daemon open files at the start of the steady state, by kind (`tcp`: its pooled
    /// connections to GitHub; `unix`: the socket and clients; `other`).
    pub fds_start: BTreeMap<&'static str, usize>,
    /// Daemon open files at the end, by kind.
    pub fds_end: BTreeMap<&'static str, usize>,
}

impl SoakReport {
    /// `Ok` when the soak passed, else every reason it did not.
    pub fn verdict(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.failed > 0 {
            let examples: Vec<String> = self
                .kinds
                .iter()
                .flat_map(|(kind, f)| f.failures.iter().map(move |m| format!("{kind}: {m}")))
                .collect();
            problems.push(format!("{} failed requests: {examples:?}", self.failed));
        }
        if !self.expiry.clean() {
            problems.push(format!("token expiry: {:?}", self.expiry));
        }
        if self.rss_end_kib > self.rss_limit_kib {
            problems.push(format!(
                "RSS grew from {} KiB to {} KiB (limit {} KiB)",
                self.rss_start_kib, self.rss_end_kib, self.rss_limit_kib
            ));
        }
        // Connections to GitHub are pooled (as many as mints ran at once); everything else must
        // come back to where it was once the clients are gone.
        let grew = |kind: &str| {
            self.fds_end.get(kind).copied().unwrap_or(0)
                > self.fds_start.get(kind).copied().unwrap_or(0)
                    + if kind == "tcp" { 16 } else { 2 }
        };
        if grew("tcp") || grew("unix") || grew("other") {
            problems.push(format!(
                "open files grew from {:?} to {:?}",
                self.fds_start, self.fds_end
            ));
        }
        if self.requests == 0 {
            problems.push("no request was made".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// One recorded answer, with its kind.
struct Record {
    kind: &'static str,
    sample: Sample,
}

type Records = Arc<Mutex<Vec<Record>>>;

/// The targets: (owner, repo or none, permissions list or empty).
fn targets() -> Vec<(&'static str, Option<&'static str>, &'static str)> {
    let mut all = Vec::new();
    for (owner, repo) in [("acme", "widgets"), ("acme", "gadgets"), ("octo", "tools")] {
        for perms in ["", "contents:read", "contents:write,metadata:read"] {
            all.push((owner, Some(repo), perms));
        }
    }
    all.push(("acme", None, ""));
    all.push(("octo", None, ""));
    all
}

/// Runs the soak.
pub fn run(options: &SoakOptions) -> anyhow::Result<SoakReport> {
    let stack = Stack::start(soak_timing(), "", DaemonStart::default())?;
    let host = stack.emulator.git_host();
    let socket = stack.daemon.socket().to_path_buf();
    let pid = stack
        .daemon
        .pid()
        .ok_or_else(|| anyhow::anyhow!("the daemon is not running"))?;
    let records: Records = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    for i in 0..options.api_clients {
        let (records, stop, socket, host) =
            (records.clone(), stop.clone(), socket.clone(), host.clone());
        threads.push(std::thread::spawn(move || {
            let client = ghapp_client::DaemonClient::new(&socket, Duration::from_secs(10));
            let targets = targets();
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let (owner, repo, perms) = targets[n % targets.len()];
                n += 1;
                let query = TokenQuery {
                    host: Some(host.clone()),
                    owner: Some(owner.to_string()),
                    repo: repo.map(str::to_string),
                    permissions: Permissions::parse_list(perms).unwrap_or_default(),
                    ..TokenQuery::default()
                };
                let sent_at = unix_now();
                let started = Instant::now();
                let result = ghapp_client::block_on(client.token(&query));
                let sample = match result {
                    Ok(token) => {
                        served("api", sent_at, started, token.token, Some(token.expires_at))
                    }
                    Err(e) => failed("api", sent_at, started, e.to_string()),
                };
                push(&records, "api", sample);
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    for i in 0..options.helpers {
        let (records, stop, socket, host) =
            (records.clone(), stop.clone(), socket.clone(), host.clone());
        threads.push(std::thread::spawn(move || {
            let repos = ["acme/widgets", "acme/gadgets", "octo/tools"];
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let repo = repos[n % repos.len()];
                n += 1;
                let sample = helper_get(&socket, &host, repo);
                push(&records, "helper", sample);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    for i in 0..options.cli {
        let (records, stop, socket, config) = (
            records.clone(),
            stop.clone(),
            socket.clone(),
            stack.daemon.config_path().to_path_buf(),
        );
        threads.push(std::thread::spawn(move || {
            let repos = ["acme/widgets", "octo/tools", "acme/gadgets"];
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let repo = repos[n % repos.len()];
                n += 1;
                let sample = cli_token(&socket, &config, repo);
                push(&records, "cli", sample);
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    if options.git
        && let Some(git) = GitBinary::newest()
    {
        let home = GitHome::new(&git)?.with_env("GHAPP_SOCKET", &socket);
        home.use_ghapp_helper("ghapp")?;
        let url = stack.emulator.repo_url("acme", "widgets");
        let (records, stop) = (records.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sent_at = unix_now();
                let started = Instant::now();
                let output = home.output(None, &["ls-remote", "--heads", &url]);
                let sample = match output {
                    Ok(o) if o.status.success() => Sample {
                        path: "git ls-remote".into(),
                        sent_at,
                        answered_at: unix_now(),
                        latency: started.elapsed(),
                        status: 200,
                        token: None,
                        expires_at: None,
                        error: None,
                    },
                    Ok(o) => failed(
                        "git",
                        sent_at,
                        started,
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    ),
                    Err(e) => failed("git", sent_at, started, format!("{e:#}")),
                };
                push(&records, "git", sample);
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }

    // Steady state: measure the daemon after the first round of mints and a few seconds of load.
    let load_started = Instant::now();
    std::thread::sleep(Duration::from_secs(5).min(options.duration / 4));
    let rss_start = rss_kib(pid)?;
    let fds_start = fd_kinds(pid)?;
    let traffic_start = Traffic::of(&stack.emulator.typed_stats()?);
    let mut rss_max = rss_start;
    while load_started.elapsed() < options.duration {
        std::thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(rss_kib(pid)?);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let duration = load_started.elapsed();
    // Let the daemon notice the clients' closed connections.
    std::thread::sleep(Duration::from_millis(500));
    let rss_end = rss_kib(pid)?;
    let fds_end = fd_kinds(pid)?;
    let github = Traffic::of(&stack.emulator.typed_stats()?).since(&traffic_start);
    let ledger = Ledger::new(&stack.emulator.issued_tokens()?);
    let records = std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()));
    let samples: Vec<Sample> = records.iter().map(|r| r.sample.clone()).collect();
    let expiry = expiry::check(&samples, &ledger, 0);
    let mut kinds: BTreeMap<String, KindFigures> = BTreeMap::new();
    for record in &records {
        let figures = kinds.entry(record.kind.to_string()).or_default();
        figures.requests += 1;
        if record.sample.status != 200 {
            figures.failed += 1;
            if figures.failures.len() < 5 {
                figures
                    .failures
                    .push(record.sample.error.clone().unwrap_or_default());
            }
        }
    }
    for (kind, figures) in &mut kinds {
        let latencies: Vec<f64> = records
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.sample.latency.as_secs_f64() * 1000.0)
            .collect();
        figures.p50_ms = round(quantile(&latencies, 0.5).unwrap_or_default(), 1);
        figures.p99_ms = round(quantile(&latencies, 0.99).unwrap_or_default(), 1);
    }
    let rss_limit =
        rss_start + options.rss_slack_kib + (rss_start as f64 * options.rss_slack_fraction) as u64;
    Ok(SoakReport {
        duration_s: round(duration.as_secs_f64(), 1),
        requests: records.len(),
        failed: records.iter().filter(|r| r.sample.status != 200).count(),
        kinds,
        expiry,
        github,
        keys: targets().len(),
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
        rss_max_kib: rss_max,
        rss_limit_kib: rss_limit,
        fds_start,
        fds_end,
    })
}

fn push(records: &Records, kind: &'static str, sample: Sample) {
    records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Record { kind, sample });
}

fn served(
    kind: &str,
    sent_at: f64,
    started: Instant,
    token: Token,
    expires_at: Option<Timestamp>,
) -> Sample {
    Sample {
        path: kind.to_string(),
        sent_at,
        answered_at: unix_now(),
        latency: started.elapsed(),
        status: 200,
        token: Some(token),
        expires_at,
        error: None,
    }
}

fn failed(kind: &str, sent_at: f64, started: Instant, error: String) -> Sample {
    Sample {
        path: kind.to_string(),
        sent_at,
        answered_at: unix_now(),
        latency: started.elapsed(),
        status: 0,
        token: None,
        expires_at: None,
        error: Some(error.chars().take(300).collect()),
    }
}

/// One `git-credential-ghapp get`, as git runs it (deadline raised to 10 s: a loaded machine
/// must not turn into a fall-through).
fn helper_get(socket: &std::path::Path, host: &str, repo: &str) -> Sample {
    let sent_at = unix_now();
    let started = Instant::now();
    let child = Command::new(ghapp_testkit::binary("git-credential-ghapp"))
        .args(["--timeout", "10s", "get"])
        .env("GHAPP_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return failed("helper", sent_at, started, e.to_string()),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = write!(stdin, "protocol=http\nhost={host}\npath={repo}.git\n\n");
    }
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(e) => return failed("helper", sent_at, started, e.to_string()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(str::to_string))
    };
    match (field("password="), field("password_expiry_utc=")) {
        (Some(password), Some(expiry)) => {
            let expires_at = expiry
                .parse::<i64>()
                .ok()
                .and_then(|secs| Timestamp::from_unix_seconds(secs).ok());
            served("helper", sent_at, started, Token::new(password), expires_at)
        }
        _ => failed(
            "helper",
            sent_at,
            started,
            format!(
                "no credential ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
    }
}

/// One `ghapp token OWNER/REPO --json`.
fn cli_token(socket: &std::path::Path, config: &std::path::Path, repo: &str) -> Sample {
    let sent_at = unix_now();
    let started = Instant::now();
    let output = Command::new(ghapp_testkit::binary("ghapp"))
        .args(["token", repo, "--json"])
        .env("GHAPP_SOCKET", socket)
        .env("GHAPP_CONFIG", config)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return failed("cli", sent_at, started, e.to_string()),
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&output.stdout).ok();
    match json
        .as_ref()
        .and_then(|j| Some((j["token"].as_str()?, j["expires_at"].as_str()?)))
    {
        Some((token, expires_at)) if output.status.success() => served(
            "cli",
            sent_at,
            started,
            Token::new(token),
            expires_at.parse().ok(),
        ),
        _ => failed(
            "cli",
            sent_at,
            started,
            format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ),
    }
}
