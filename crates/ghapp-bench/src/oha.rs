//! The independent witness: the same throughput rows measured by `oha` (crates.io, a load
//! generator ghapp does not write), over the daemon's Unix socket. `scripts/bench.sh` installs a
//! pinned version when it is absent; without it these rows say so instead of passing silently.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The version `scripts/bench.sh` installs (`cargo install oha --version … --locked`).
pub const PINNED_VERSION: &str = "1.16.0";

/// What one oha run measured.
#[derive(Debug, Clone, Copy)]
pub struct OhaFigures {
    /// Answers per second over the run.
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Answers other than 200, plus requests that got no answer.
    pub failures: u64,
}

#[derive(Deserialize)]
struct Report {
    summary: Summary,
    metrics: Metrics,
    #[serde(rename = "statusCodeDistribution", default)]
    status_codes: std::collections::BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution", default)]
    errors: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(rename = "requestsPerSec")]
    requests_per_sec: f64,
}

#[derive(Deserialize)]
struct Metrics {
    latency_ms: Latency,
}

#[derive(Deserialize)]
struct Latency {
    p50: f64,
    p99: f64,
}

/// The oha binary: `$GHAPP_BENCH_OHA`, else `oha` on `PATH`, else `~/.cargo/bin/oha`.
pub fn locate() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GHAPP_BENCH_OHA") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("oha"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let cargo = Path::new(&home).join(".cargo/bin/oha");
        cargo.is_file().then_some(cargo)
    })
}

/// The version line oha prints (`oha 1.16.0`).
pub fn version(oha: &Path) -> Result<String> {
    let output = Command::new(oha)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", oha.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Runs `requests` GETs of `path` on `concurrency` connections over `socket`.
pub fn run(
    oha: &Path,
    socket: &Path,
    path: &str,
    concurrency: usize,
    requests: u64,
    keep_alive: bool,
) -> Result<OhaFigures> {
    let mut command = Command::new(oha);
    command
        .arg("--no-tui")
        .args(["--output-format", "json"])
        .arg("-n")
        .arg(requests.to_string())
        .arg("-c")
        .arg(concurrency.to_string())
        .arg("--unix-socket")
        .arg(socket);
    if !keep_alive {
        command.arg("--disable-keepalive");
    }
    command.arg(format!("http://ghapp{path}"));
    let output = command
        .output()
        .with_context(|| format!("running {}", oha.display()))?;
    if !output.status.success() {
        bail!(
            "oha failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let report: Report = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "oha's JSON report: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let ok = report.status_codes.get("200").copied().unwrap_or(0);
    let answered: u64 = report.status_codes.values().sum();
    let unanswered: u64 = report.errors.values().sum();
    Ok(OhaFigures {
        per_sec: report.summary.requests_per_sec,
        p50_ms: report.metrics.latency_ms.p50,
        p99_ms: report.metrics.latency_ms.p99,
        failures: answered - ok + unanswered,
    })
}
