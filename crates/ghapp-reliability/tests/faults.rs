//! The fault matrix: each GitHub failure the emulator can stage, against a real `ghapp daemon`
//! with second-scale token lifetimes, measured and asserted (docs/reliability.md):
//!
//! - what callers see: the cached token while it has its margin, then a clear error with the
//!   right status;
//! - zero expired tokens served (every served token checked against the emulator's ledger and
//!   clock);
//! - GitHub traffic during and after the fault stays bounded (no storm);
//! - the time to recover once the fault clears.
//!
//! Every case gets its own emulator and daemon, and all cases run at once on their own threads
//! (one `#[test]`, so the harness's thread count does not serialize them); their figures are
//! written as JSON lines to `$CARGO_TARGET_TMPDIR/ghapp-reliability/faults.jsonl` and printed.
//! `GHAPP_FAULT_CASES=5xx,timeout` runs only the named cases.

use anyhow::Context;
use ghapp_protocol::api::RUNNER_TOKEN_PATH;
use ghapp_reliability::expiry::{self, ExpiryCheck};
use ghapp_reliability::figures;
use ghapp_reliability::github::{EmulatorAdmin, Ledger, unix_now};
use ghapp_reliability::probe::{self, Ask, Probe};
use ghapp_reliability::rate::TrafficLog;
use ghapp_reliability::scenario::{self, Callers, FaultFigures, Plan};
use ghapp_reliability::stack::{Stack, Timing, fixture_with_runners};
use ghapp_testkit::daemon::DaemonStart;
use ghapp_testkit::emulator::EmulatorProcess;
use ghapp_testkit::git::{GitBinary, GitHome};
use github_emulator::admin::{Fault, FaultServer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type CaseResult = anyhow::Result<serde_json::Value>;

/// A case: its name and what it runs.
struct Case {
    name: &'static str,
    run: fn() -> CaseResult,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "5xx",
            run: five_xx,
        },
        Case {
            name: "timeout",
            run: timeout,
        },
        Case {
            name: "drop",
            run: dropped_connections,
        },
        Case {
            name: "429",
            run: rate_limited_429,
        },
        Case {
            name: "403-secondary",
            run: secondary_rate_limit_403,
        },
        Case {
            name: "clock+300",
            run: clock_ahead,
        },
        Case {
            name: "clock-300",
            run: clock_behind,
        },
        Case {
            name: "replication",
            run: replication_delay,
        },
        Case {
            name: "suspended",
            run: suspended,
        },
        Case {
            name: "uninstalled",
            run: uninstalled,
        },
        Case {
            name: "key-rotation",
            run: key_rotation,
        },
        Case {
            name: "kill-9",
            run: killed_and_restarted,
        },
    ]
}

fn fault_all(status: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status {
        route: None,
        status,
        retry_after,
        times: None,
        message: None,
        server: FaultServer::Api,
    }
}

/// A warm cache, then GitHub failing for longer than the cached token's whole margin, then
/// GitHub back. Shared by the 5xx, timeout, drop and rate-limit cases.
fn outage(case: &str, fault: Fault, timing: Timing) -> anyhow::Result<FaultFigures> {
    let stack = Stack::start(timing, "", DaemonStart::default())?;
    let run = scenario::run(
        &stack,
        &stack.three_keys(),
        Plan {
            inject: Box::new(move |s| s.emulator.inject(fault)),
            hold: Duration::from_secs(26),
            clear: Box::new(|s| s.emulator.inject(Fault::Clear)),
            // The App's hold-off after a long outage may last up to 30 s (jittered).
            recover_within: Duration::from_secs(35),
            settle: Duration::from_secs(8),
            callers: Callers::default(),
        },
    )?;
    let figures = run.figures(case);
    Ok(figures)
}

/// What every outage must show: served while the margin lasts, then only `status` errors;
/// nothing expired; recovery; no failure after it.
fn check_outage(figures: &FaultFigures, status: u16, needle: &str) -> anyhow::Result<()> {
    anyhow::ensure!(figures.expiry.clean(), "expiry: {:?}", figures.expiry);
    anyhow::ensure!(
        figures.served_during_fault > 0,
        "the warm cache served nobody during the fault"
    );
    let carried = figures
        .carried_s
        .ok_or_else(|| anyhow::anyhow!("callers never failed: the fault outlasted no margin"))?;
    anyhow::ensure!(carried >= 5.0, "callers failed {carried}s into the fault");
    anyhow::ensure!(
        figures.error_statuses.keys().all(|s| *s == status),
        "statuses {:?}, expected only {status}",
        figures.error_statuses
    );
    let example = figures
        .error_examples
        .get(&status)
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        example.contains(needle),
        "error {example:?} lacks {needle:?}"
    );
    anyhow::ensure!(figures.recovery_s.is_some(), "no recovery");
    // No storm: GitHub gets about one attempt a second from the App while it fails, however
    // many cache keys (three here) and callers are waiting on it.
    let budget = (figures.fault_s * 1.1).ceil() as u64 + 4;
    anyhow::ensure!(
        figures.during.mint_attempts <= budget,
        "{} mint attempts in a {}s fault (at most {budget}): a retry storm",
        figures.during.mint_attempts,
        figures.fault_s
    );
    check_after(figures)?;
    anyhow::ensure!(
        figures.failed_after_recovery == 0,
        "{} failures after recovery",
        figures.failed_after_recovery
    );
    Ok(())
}

/// No storm after the fault either: from the clear to the end, the three keys are minted again
/// once and then refreshed about every 8 s, nothing more.
fn check_after(figures: &FaultFigures) -> anyhow::Result<()> {
    let bound = 3 * ((figures.after_s / 8.0).ceil() as u64 + 2);
    anyhow::ensure!(
        figures.after.mint_attempts <= bound,
        "{} mint attempts in the {}s after the fault (at most {bound})",
        figures.after.mint_attempts,
        figures.after_s
    );
    Ok(())
}

fn five_xx() -> CaseResult {
    let figures = outage("5xx", fault_all(503, None), Timing::fast())?;
    check_outage(&figures, 503, "GitHub unreachable")
        .with_context(|| serde_json::to_string(&figures).unwrap_or_default())?;
    Ok(serde_json::to_value(figures)?)
}

fn timeout() -> CaseResult {
    let timing = Timing::fast();
    let fault = Fault::Latency {
        route: None,
        ms: 3 * timing.request_timeout.as_millis() as u64,
        times: None,
        server: FaultServer::Api,
    };
    let figures = outage("timeout", fault, timing)?;
    check_outage(&figures, 503, "GitHub unreachable")
        .with_context(|| serde_json::to_string(&figures).unwrap_or_default())?;
    Ok(serde_json::to_value(figures)?)
}

fn dropped_connections() -> CaseResult {
    let fault = Fault::Drop {
        route: None,
        times: None,
        server: FaultServer::Api,
    };
    let figures = outage("drop", fault, Timing::fast())?;
    check_outage(&figures, 503, "GitHub unreachable")
        .with_context(|| serde_json::to_string(&figures).unwrap_or_default())?;
    Ok(serde_json::to_value(figures)?)
}

fn rate_limited_429() -> CaseResult {
    let figures = outage("429", fault_all(429, Some(8)), Timing::fast())?;
    check_outage(&figures, 503, "rate limited")
        .with_context(|| serde_json::to_string(&figures).unwrap_or_default())?;
    Ok(serde_json::to_value(figures)?)
}

fn secondary_rate_limit_403() -> CaseResult {
    let figures = outage("403-secondary", fault_all(403, Some(8)), Timing::fast())?;
    check_outage(&figures, 503, "rate limited")
        .with_context(|| serde_json::to_string(&figures).unwrap_or_default())?;
    Ok(serde_json::to_value(figures)?)
}

/// `figures` with `extra` fields added.
fn with_extra(
    figures: &FaultFigures,
    extra: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(figures)?;
    if let (Some(object), serde_json::Value::Object(more)) = (value.as_object_mut(), extra) {
        object.extend(more);
    }
    Ok(value)
}

/// A constant skew between this machine and GitHub (the emulator's clock shifted before the
/// daemon's first request): JWTs must be accepted (after at most one correction from `Date`),
/// expiries read on GitHub's clock and restated on ours, callers never notice.
fn clock_skew(case: &str, secs: i64) -> CaseResult {
    let timing = Timing::fast();
    let emulator = EmulatorProcess::start(&fixture_with_runners(timing.token_ttl.as_secs()))?;
    emulator.inject(Fault::ClockOffset { secs })?;
    let stack = Stack::start_on(emulator, timing, "", DaemonStart::default())?;
    let paths = stack.three_keys();
    let started = Instant::now();
    let first = probe::ask(stack.daemon.socket(), &paths[0]);
    let first_token_ms = started.elapsed().as_millis() as u64;
    anyhow::ensure!(
        first.served(),
        "first token under a {secs}s skew: {} {:?}",
        first.status,
        first.error
    );
    let run = scenario::run(
        &stack,
        &paths,
        Plan {
            inject: Box::new(|_| Ok(())),
            hold: Duration::from_secs(20),
            clear: Box::new(|_| Ok(())),
            recover_within: Duration::from_secs(12),
            settle: Duration::from_secs(1),
            callers: Callers::default(),
        },
    )?;
    let figures = run.figures(case);
    let rejections: u64 = stack.emulator.typed_stats()?.jwt_rejections.values().sum();
    anyhow::ensure!(
        figures.error_statuses.is_empty(),
        "callers failed under a constant skew: {:?} {:?}",
        figures.error_statuses,
        figures.error_examples
    );
    anyhow::ensure!(figures.expiry.clean(), "expiry: {:?}", figures.expiry);
    anyhow::ensure!(
        rejections <= 3,
        "{rejections} JWTs rejected: the skew was not learnt once"
    );
    if secs < 0 {
        anyhow::ensure!(
            rejections >= 1,
            "GitHub behind by {secs}s must reject the first JWT's iat"
        );
    }
    // Three keys refreshed about every 8 s over the 20 s hold, plus slack.
    anyhow::ensure!(
        figures.during.mints <= 15,
        "{} mints in 20 s",
        figures.during.mints
    );
    with_extra(
        &figures,
        serde_json::json!({"clock_offset_s": secs, "first_token_ms": first_token_ms, "jwt_rejections": rejections}),
    )
}

fn clock_ahead() -> CaseResult {
    clock_skew("clock+300", 300)
}

fn clock_behind() -> CaseResult {
    clock_skew("clock-300", -300)
}

/// New tokens answer 401 for 3 s (GitHub's replication delay): token callers are not affected,
/// runner-token callers (the broker itself uses a fresh token there) are served after the
/// delay, and git through the helper is watched for what it sees.
fn replication_delay() -> CaseResult {
    let timing = Timing::fast();
    let stack = Stack::start(timing, "", DaemonStart::default())?;
    let socket = stack.daemon.socket().to_path_buf();
    let runner = Probe::start_asking(
        socket.clone(),
        Ask {
            method: "POST",
            path: RUNNER_TOKEN_PATH.to_string(),
            body: Some(r#"{"org":"acme"}"#.to_string()),
        },
        Duration::from_millis(700),
    );
    let git = GitLoop::start(&stack, Duration::from_millis(1500))?;
    let run = scenario::run(
        &stack,
        &stack.three_keys(),
        Plan {
            inject: Box::new(|s| s.emulator.inject(Fault::ReplicationDelay { secs: 3 })),
            hold: Duration::from_secs(15),
            clear: Box::new(|s| s.emulator.inject(Fault::Clear)),
            recover_within: Duration::from_secs(12),
            settle: Duration::from_secs(3),
            callers: Callers::default(),
        },
    )?;
    let runner_samples = runner.finish();
    let git_runs = git.finish();
    let figures = run.figures("replication");
    anyhow::ensure!(
        figures.error_statuses.is_empty(),
        "token callers failed: {:?}",
        figures.error_examples
    );
    anyhow::ensure!(figures.expiry.clean(), "expiry: {:?}", figures.expiry);
    let runner_failed: Vec<String> = runner_samples
        .iter()
        .filter(|s| !s.served())
        .map(|s| format!("{} {}", s.status, s.error.clone().unwrap_or_default()))
        .collect();
    anyhow::ensure!(
        runner_failed.is_empty(),
        "runner-token callers failed: {runner_failed:?}"
    );
    let runner_during: Vec<f64> = runner_samples
        .iter()
        .filter(|s| s.sent_at >= run.fault_at && s.sent_at < run.cleared_at)
        .map(|s| s.latency.as_secs_f64())
        .collect();
    let git_during: Vec<&(f64, bool)> = git_runs
        .iter()
        .filter(|(at, _)| *at >= run.fault_at && *at < run.cleared_at)
        .collect();
    // Three keys refreshed about every 8 s: some 6 mints in 15 s. A git `erase` after a 401
    // must not drop a token GitHub has not replicated yet and force a mint that is too new
    // again (a loop in which git fails every time).
    anyhow::ensure!(
        figures.during.mints <= 9,
        "{} mints during a 15 s replication delay: rejected-too-early tokens were re-minted",
        figures.during.mints
    );
    let git_failed = git_during.iter().filter(|(_, ok)| !ok).count();
    anyhow::ensure!(
        git_during.is_empty() || git_failed < git_during.len(),
        "git failed all {git_failed} runs during a 3 s replication delay"
    );
    with_extra(
        &figures,
        serde_json::json!({
            "runner_calls_during": runner_during.len(),
            "runner_max_latency_s": figures::round(runner_during.iter().copied().fold(0.0, f64::max), 2),
            "git_runs_during": git_during.len(),
            "git_failures_during": git_during.iter().filter(|(_, ok)| !ok).count(),
            "git_failures_after": git_runs.iter().filter(|(at, ok)| *at >= run.cleared_at && !ok).count(),
        }),
    )
}

/// `git ls-remote` through the helper in a loop, recording (time, success).
struct GitLoop {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(f64, bool)>>>,
}

impl GitLoop {
    fn start(stack: &Stack, interval: Duration) -> anyhow::Result<GitLoop> {
        let stop = Arc::new(AtomicBool::new(false));
        let Some(git) = GitBinary::newest() else {
            eprintln!("no git installed: the git part of this case is skipped");
            return Ok(GitLoop { stop, thread: None });
        };
        let home = GitHome::new(&git)?.with_env("GHAPP_SOCKET", stack.daemon.socket());
        home.use_ghapp_helper("ghapp")?;
        let url = stack.emulator.repo_url("acme", "widgets");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut runs = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let at = unix_now();
                let ok = home
                    .output(None, &["ls-remote", "--heads", &url])
                    .is_ok_and(|o| o.status.success());
                runs.push((at, ok));
                std::thread::sleep(interval);
            }
            runs
        });
        Ok(GitLoop {
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> Vec<(f64, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// A fault on installation 100 (acme) while installation 200 (octo) is untouched: acme's callers
/// get `status` with one of `needles` in the message once the daemon learns of it, octo's never notice,
/// acme recovers after `clear`. Returns the run and its figures, checked.
fn installation_fault(
    case: &str,
    inject: Fault,
    clear: Fault,
    status: u16,
    needles: &[&str],
) -> anyhow::Result<(scenario::FaultRun, FaultFigures)> {
    let stack = Stack::start(Timing::fast(), "", DaemonStart::default())?;
    let tools = stack.token_path("octo", "tools");
    let run = scenario::run(
        &stack,
        &stack.three_keys(),
        Plan {
            inject: Box::new(move |s| s.emulator.inject(inject)),
            hold: Duration::from_secs(20),
            clear: Box::new(move |s| s.emulator.inject(clear)),
            recover_within: Duration::from_secs(20),
            settle: Duration::from_secs(3),
            callers: Callers::default(),
        },
    )?;
    let figures = run.figures(case);
    let context = || serde_json::to_string(&figures).unwrap_or_default();
    anyhow::ensure!(figures.expiry.clean(), "expiry: {}", context());
    anyhow::ensure!(
        !figures.failed_by_path.contains_key(&tools),
        "octo/tools (another installation) failed: {}",
        context()
    );
    anyhow::ensure!(
        figures.error_statuses.keys().all(|s| *s == status),
        "statuses other than {status}: {}",
        context()
    );
    let example = figures
        .error_examples
        .get(&status)
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        needles.iter().any(|n| example.contains(n)),
        "{status} without any of {needles:?}: {example:?}"
    );
    anyhow::ensure!(figures.recovery_s.is_some(), "no recovery: {}", context());
    // What GitHub says is remembered: no mint per caller's request while it lasts.
    anyhow::ensure!(
        figures.during.mint_attempts <= 10 && figures.during.requests <= 40,
        "GitHub asked too often during the fault: {}",
        context()
    );
    check_after(&figures)?;
    Ok((run, figures))
}

/// Installation 100 suspended mid-run, then unsuspended: a clear 403 naming the suspension.
fn suspended() -> CaseResult {
    let (run, figures) = installation_fault(
        "suspended",
        Fault::Suspend { installation: 100 },
        Fault::Unsuspend { installation: 100 },
        403,
        &["is suspended"],
    )?;
    let stale = stale_serves(&run, 100, run.fault_at);
    with_extra(
        &figures,
        serde_json::json!({"served_after_suspension_s": stale}),
    )
}

/// How long after `since` callers were still handed tokens of `installation` minted before it
/// (tokens GitHub no longer honours), in seconds; 0 when none.
fn stale_serves(run: &scenario::FaultRun, installation: u64, since: f64) -> f64 {
    let offset = run.clock_offset as f64;
    run.samples
        .iter()
        .filter(|s| s.served() && s.sent_at >= since)
        .filter(|s| {
            s.token
                .as_ref()
                .and_then(|t| run.ledger.get(t.expose()))
                .is_some_and(|t| {
                    t.installation_id == Some(installation)
                        && (t.created_at as f64) < since + offset
                })
        })
        .map(|s| figures::round(s.answered_at - since, 1))
        .fold(0.0, f64::max)
}

/// The App uninstalled from acme mid-run (its routes 404, its tokens revoked), then reinstalled
/// under a new installation id: a clear 404, then tokens from the new installation.
fn uninstalled() -> CaseResult {
    let (run, figures) = installation_fault(
        "uninstalled",
        Fault::Uninstall { installation: 100 },
        Fault::Reinstall {
            installation: 100,
            new_id: Some(101),
        },
        404,
        &[
            "is not installed on acme/",
            "no longer exists (uninstalled or reinstalled)",
        ],
    )?;
    let reinstalled = run
        .samples
        .iter()
        .filter(|s| s.served() && s.sent_at > run.cleared_at)
        .filter_map(|s| run.ledger.get(s.token.as_ref()?.expose()))
        .any(|t| t.installation_id == Some(101));
    anyhow::ensure!(
        reinstalled,
        "never served a token of the new installation 101"
    );
    let stale = stale_serves(&run, 100, run.fault_at);
    with_extra(
        &figures,
        serde_json::json!({"revoked_served_after_uninstall_s": stale}),
    )
}

/// Callers and a traffic log for the cases that script their own phases.
struct Watch {
    probes: Vec<Probe>,
    traffic: TrafficLog,
}

impl Watch {
    /// Warms each path, then starts one caller per path (5 requests/s) and the traffic log.
    fn start(stack: &Stack, paths: &[String]) -> anyhow::Result<Watch> {
        for path in paths {
            let warm = probe::ask(stack.daemon.socket(), path);
            anyhow::ensure!(
                warm.served(),
                "warming {path}: {} {:?}",
                warm.status,
                warm.error
            );
        }
        Ok(Watch {
            traffic: TrafficLog::start(stack.emulator.clone(), Duration::from_millis(250)),
            probes: paths
                .iter()
                .map(|p| {
                    Probe::start(
                        stack.daemon.socket().to_path_buf(),
                        p.clone(),
                        Duration::from_millis(200),
                    )
                })
                .collect(),
        })
    }

    fn samples(&self) -> Vec<probe::Sample> {
        let mut all: Vec<probe::Sample> = self.probes.iter().flat_map(Probe::samples).collect();
        all.sort_by(|a, b| a.sent_at.total_cmp(&b.sent_at));
        all
    }

    /// When every caller had been served, after `since`, a token minted after `since`.
    fn fresh_serve_after(
        &self,
        stack: &Stack,
        since: f64,
        within: Duration,
    ) -> anyhow::Result<Option<f64>> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ledger = Ledger::new(&stack.emulator.issued_tokens()?);
            if let Some(at) = scenario::all_served_fresh(&self.probes, &ledger, since, 0) {
                return Ok(Some(at));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(None)
    }

    /// Stops, and checks every served token against the emulator's ledger (no expired one).
    fn finish_checked(
        self,
        stack: &Stack,
    ) -> anyhow::Result<(Vec<probe::Sample>, TrafficLog, ExpiryCheck)> {
        let (samples, traffic) = self.finish();
        let ledger = Ledger::new(&stack.emulator.issued_tokens()?);
        let expiry = expiry::check(&samples, &ledger, 0);
        anyhow::ensure!(expiry.clean(), "expiry: {expiry:?}");
        Ok((samples, traffic, expiry))
    }

    fn finish(mut self) -> (Vec<probe::Sample>, TrafficLog) {
        let mut all: Vec<probe::Sample> = self.probes.drain(..).flat_map(Probe::finish).collect();
        all.sort_by(|a, b| a.sent_at.total_cmp(&b.sent_at));
        std::thread::sleep(Duration::from_millis(300));
        self.traffic.stop();
        (all, self.traffic)
    }
}

/// Failed samples sent within `[from, to)`, and a message per status.
fn failures_between(
    samples: &[probe::Sample],
    from: f64,
    to: f64,
) -> (usize, BTreeMap<u16, String>) {
    let failed: Vec<&probe::Sample> = samples
        .iter()
        .filter(|s| s.sent_at >= from && s.sent_at < to && !s.served())
        .collect();
    let examples = failed
        .iter()
        .rev()
        .map(|s| (s.status, s.error.clone().unwrap_or_default()))
        .collect();
    (failed.len(), examples)
}

/// Fails when any sample sent after `since` failed.
fn ensure_none_failed_after(
    samples: &[probe::Sample],
    since: f64,
    what: &str,
) -> anyhow::Result<()> {
    let (failed, examples) = failures_between(samples, since, f64::MAX);
    anyhow::ensure!(failed == 0, "{failed} failures after {what}: {examples:?}");
    Ok(())
}

/// Writes `from` over `to` as a key rotation tool would: a 0600 temp file renamed into place.
fn replace_key(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let temp = to.with_extension("rotating");
    std::fs::copy(from, &temp)?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&temp, to)?;
    Ok(())
}

/// The daemon's key fingerprint from `/v1/status`.
fn key_fingerprint(stack: &Stack) -> anyhow::Result<String> {
    let (status, body) = stack.daemon.get("/v1/status")?;
    anyhow::ensure!(status == 200, "status answered {status}");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    json["apps"][0]["key_fingerprint"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no key fingerprint in {body}"))
}

fn wait_for_new_fingerprint(stack: &Stack, old: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = key_fingerprint(stack)?;
        if now != old {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the key fingerprint did not change after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Private key rotation. ghapp's stated behaviour (docs/reliability.md): the daemon signs with
/// the key it loaded until SIGHUP (or a restart) reloads it; replacing the file alone changes
/// nothing. Phase A is a correct rotation — new key added at GitHub, file replaced, SIGHUP, old
/// key removed — with zero failed requests. Phase B is the mistake: the loaded key is removed at
/// GitHub before the daemon reloads: callers keep the cached token while it lasts, then get a
/// 500 naming the key; replacing the file and SIGHUP recovers.
fn key_rotation() -> CaseResult {
    let stack = Stack::start(Timing::fast(), "", DaemonStart::default())?;
    let emulator = stack.emulator.clone();
    let key_file = emulator.key_path("app1.pem");
    let watch = Watch::start(&stack, &stack.three_keys())?;
    let started = unix_now();
    let original = key_fingerprint(&stack)?;

    // Phase A: a correct rotation.
    std::fs::copy(&key_file, emulator.key_path("app1-old.pem"))?;
    emulator.inject(Fault::AddKey {
        app: 1,
        private_key_out: "app1-new.pem".into(),
    })?;
    replace_key(&emulator.key_path("app1-new.pem"), &key_file)?;
    let replaced_at = unix_now();
    std::thread::sleep(Duration::from_secs(10));
    let kept = key_fingerprint(&stack)?;
    anyhow::ensure!(
        kept == original,
        "the daemon reloaded the key without SIGHUP"
    );
    let mints_with_old_key = watch.traffic.between(replaced_at, unix_now()).mints;
    anyhow::ensure!(
        mints_with_old_key > 0,
        "no mint while the file was replaced but not reloaded"
    );
    let hup_at = unix_now();
    stack.daemon.reload()?;
    let rotated = wait_for_new_fingerprint(&stack, &original)?;
    let reload_s = unix_now() - hup_at;
    emulator.inject(Fault::RemoveKey {
        app: 1,
        private_key_file: "app1-old.pem".into(),
    })?;
    std::thread::sleep(Duration::from_secs(10));
    let phase_a_end = unix_now();
    let samples = watch.samples();
    let (failed_a, examples_a) = failures_between(&samples, started, phase_a_end);
    anyhow::ensure!(
        failed_a == 0,
        "{failed_a} requests failed during a correct rotation: {examples_a:?}"
    );
    let mints_after_rotation = watch.traffic.between(hup_at, phase_a_end).mints;
    anyhow::ensure!(mints_after_rotation > 0, "no mint with the new key");

    // Phase B: the loaded key is retired at GitHub before the daemon reloads.
    emulator.inject(Fault::AddKey {
        app: 1,
        private_key_out: "app1-third.pem".into(),
    })?;
    let retired_at = unix_now();
    emulator.inject(Fault::RemoveKey {
        app: 1,
        private_key_file: "app1.pem".into(),
    })?;
    std::thread::sleep(Duration::from_secs(20));
    replace_key(&emulator.key_path("app1-third.pem"), &key_file)?;
    let fixed_at = unix_now();
    stack.daemon.reload()?;
    wait_for_new_fingerprint(&stack, &rotated)?;
    let recovered_at = watch.fresh_serve_after(&stack, fixed_at, Duration::from_secs(15))?;
    std::thread::sleep(Duration::from_secs(3));
    let (samples, traffic, expiry) = watch.finish_checked(&stack)?;
    let (failed_b, examples_b) = failures_between(&samples, retired_at, fixed_at);
    let first_failure = samples
        .iter()
        .find(|s| s.sent_at >= retired_at && !s.served())
        .map(|s| figures::round(s.sent_at - retired_at, 1));
    anyhow::ensure!(
        examples_b.keys().all(|s| *s == 500),
        "statuses with a retired key: {examples_b:?}"
    );
    anyhow::ensure!(
        examples_b.values().all(|m| m.contains("rejected the JWT")),
        "the error does not name the key problem: {examples_b:?}"
    );
    let recovered_at =
        recovered_at.ok_or_else(|| anyhow::anyhow!("no recovery after the fix and SIGHUP"))?;
    ensure_none_failed_after(&samples, recovered_at, "recovery")?;
    let wrong_key = traffic.between(retired_at, fixed_at);
    // A key GitHub rejects is not tried again on every caller's request.
    anyhow::ensure!(
        wrong_key.mint_attempts <= 20,
        "{} mint attempts in 20 s with a key GitHub rejects: a storm",
        wrong_key.mint_attempts
    );
    Ok(serde_json::json!({
        "case": "key-rotation",
        "behaviour": "keeps the loaded key until SIGHUP",
        "phase_a_failed": failed_a,
        "mints_with_old_key_after_file_replaced": mints_with_old_key,
        "sighup_to_new_key_s": figures::round(reload_s, 2),
        "phase_b_failed": failed_b,
        "phase_b_carried_s": first_failure,
        "phase_b_error_examples": examples_b,
        "phase_b_mint_attempts": wrong_key.mint_attempts,
        "phase_b_requests": wrong_key.requests,
        "phase_b_s": figures::round(fixed_at - retired_at, 1),
        "recovery_s": figures::round(recovered_at - fixed_at, 2),
        "expiry": expiry,
    }))
}

/// `ghapp daemon` killed with SIGKILL (the socket file stays behind) and started again: while
/// it is down the helper falls through silently; the restart replaces the stale socket; the
/// cold cache costs one mint per key, no more.
fn killed_and_restarted() -> CaseResult {
    let mut stack = Stack::start(Timing::fast(), "", DaemonStart::default())?;
    let paths = stack.three_keys();
    let watch = Watch::start(&stack, &paths)?;
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = unix_now();
    stack.daemon.kill();
    anyhow::ensure!(
        stack.daemon.socket().exists(),
        "SIGKILL left no stale socket to recover from"
    );
    let helper = std::process::Command::new(ghapp_testkit::binary("git-credential-ghapp"))
        .arg("get")
        .env("GHAPP_SOCKET", stack.daemon.socket())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let helper = {
        let mut helper = helper;
        if let Some(mut stdin) = helper.stdin.take() {
            use std::io::Write;
            write!(
                stdin,
                "protocol=http\nhost={}\npath=acme/widgets.git\n\n",
                stack.emulator.git_host()
            )?;
        }
        helper.wait_with_output()?
    };
    anyhow::ensure!(
        helper.status.success() && helper.stdout.is_empty(),
        "the helper did not fall through while the daemon was down: {:?} {:?}",
        helper.status,
        String::from_utf8_lossy(&helper.stdout)
    );
    std::thread::sleep(Duration::from_secs(2));
    let restart_at = unix_now();
    stack.daemon.restart()?;
    let ready_s = unix_now() - restart_at;
    let recovered_at = watch
        .fresh_serve_after(&stack, restart_at, Duration::from_secs(15))?
        .ok_or_else(|| anyhow::anyhow!("no token after the restart"))?;
    std::thread::sleep(Duration::from_secs(5));
    let ended_at = unix_now();
    let (samples, traffic, expiry) = watch.finish_checked(&stack)?;
    let (down_failed, down_examples) = failures_between(&samples, killed_at, restart_at);
    anyhow::ensure!(
        down_examples.keys().all(|s| *s == 0),
        "while down, callers got HTTP answers: {down_examples:?}"
    );
    ensure_none_failed_after(&samples, recovered_at, "the restart")?;
    let after = traffic.between(restart_at, ended_at);
    // One mint per key for the cold cache, and at most one refresh per key in the rest.
    anyhow::ensure!(
        after.mints <= 2 * paths.len() as u64,
        "{} mints after the restart for {} keys",
        after.mints,
        paths.len()
    );
    Ok(serde_json::json!({
        "case": "kill-9",
        "down_s": figures::round(restart_at - killed_at, 1),
        "failed_while_down": down_failed,
        "helper_while_down": "exit 0, no output (falls through)",
        "restart_to_ready_s": figures::round(ready_s, 2),
        "recovery_s": figures::round(recovered_at - restart_at, 2),
        "mints_after_restart": after.mints,
        "after_s": figures::round(ended_at - restart_at, 1),
        "expiry": expiry,
    }))
}

#[test]
fn fault_matrix() {
    let wanted: Option<Vec<String>> = std::env::var("GHAPP_FAULT_CASES")
        .ok()
        .map(|list| list.split(',').map(|s| s.trim().to_string()).collect());
    let selected: Vec<Case> = cases()
        .into_iter()
        .filter(|c| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| n == c.name))
        })
        .collect();
    let handles: Vec<_> = selected
        .iter()
        .map(|case| {
            let run = case.run;
            (case.name, std::thread::spawn(run))
        })
        .collect();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, handle) in handles {
        match handle.join() {
            Ok(Ok(figures)) => rows.push(figures),
            Ok(Err(e)) => failures.push(format!("{name}: {e:#}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    let dir =
        figures::figures_dir(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ghapp-reliability"));
    figures::write(&dir, "faults.jsonl", &rows).expect("writing the figures");
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}
