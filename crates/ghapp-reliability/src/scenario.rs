//! One fault, start to finish, with its figures: callers ask the daemon steadily while GitHub's
//! traffic is sampled; the fault is injected, held, cleared; the run waits for recovery (a
//! caller served a token minted after the fault cleared) and watches a little longer for
//! storms. [`FaultFigures`] then says what callers saw, whether any expired token was served,
//! how hard GitHub was hit during and after, and how long recovery took.

use crate::expiry::{self, ExpiryCheck};
use crate::figures::round;
use crate::github::{EmulatorAdmin, Ledger, Traffic, unix_now};
use crate::probe::{Probe, Sample};
use crate::rate::TrafficLog;
use crate::stack::Stack;
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How callers behave during a run.
#[derive(Debug, Clone, Copy)]
pub struct Callers {
    /// Concurrent callers.
    pub count: usize,
    /// Pause between one caller's requests.
    pub interval: Duration,
}

impl Default for Callers {
    /// Four callers asking five times a second each.
    fn default() -> Self {
        Callers {
            count: 4,
            interval: Duration::from_millis(200),
        }
    }
}

/// The phases of a run and everything recorded.
pub struct FaultRun {
    /// Every caller's answers, in send order.
    pub samples: Vec<Sample>,
    /// When the fault was injected (local Unix seconds).
    pub fault_at: f64,
    /// When it was cleared.
    pub cleared_at: f64,
    /// When every caller had been served a token minted after the clear, if that happened.
    pub recovered_at: Option<f64>,
    /// When the run ended.
    pub ended_at: f64,
    /// GitHub traffic over the run.
    pub traffic: TrafficLog,
    /// Every token the emulator issued.
    pub ledger: Ledger,
    /// Emulator clock minus local clock during the run.
    pub clock_offset: i64,
}

/// One step of a run (inject or clear a fault).
pub type Step<'a> = Box<dyn FnOnce(&Stack) -> anyhow::Result<()> + 'a>;

/// How a run is shaped.
pub struct Plan<'a> {
    /// Injects the fault.
    pub inject: Step<'a>,
    /// How long the fault is held.
    pub hold: Duration,
    /// Clears it.
    pub clear: Step<'a>,
    /// Longest wait for recovery after the clear.
    pub recover_within: Duration,
    /// How long to keep watching after recovery (storms after a fault show here).
    pub settle: Duration,
    /// The callers.
    pub callers: Callers,
}

/// Runs `plan` against `stack`: warms the cache with one request per path, then fault, hold,
/// clear, recovery, settle. Caller `i` asks `paths[i % paths.len()]`, so several cache keys
/// (and installations) can be under the same fault at once.
pub fn run(stack: &Stack, paths: &[String], plan: Plan<'_>) -> anyhow::Result<FaultRun> {
    anyhow::ensure!(!paths.is_empty(), "no path to ask");
    let clock_offset = stack.emulator.clock_offset()?;
    for path in paths {
        let warm = crate::probe::ask(stack.daemon.socket(), path);
        anyhow::ensure!(
            warm.served(),
            "warming the cache with {path} failed: {} {:?}",
            warm.status,
            warm.error
        );
    }
    let mut traffic = TrafficLog::start(stack.emulator.clone(), Duration::from_millis(250));
    let probes: Vec<Probe> = (0..plan.callers.count)
        .map(|i| {
            Probe::start(
                stack.daemon.socket().to_path_buf(),
                paths[i % paths.len()].clone(),
                plan.callers.interval,
            )
        })
        .collect();
    // A moment of normal service first, so the figures have a baseline.
    std::thread::sleep(Duration::from_secs(1));
    let fault_at = unix_now();
    (plan.inject)(stack).context("injecting the fault")?;
    std::thread::sleep(plan.hold);
    let cleared_at = unix_now();
    (plan.clear)(stack).context("clearing the fault")?;

    let deadline = Instant::now() + plan.recover_within;
    let mut recovered_at = None;
    while recovered_at.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let ledger = Ledger::new(&stack.emulator.issued_tokens()?);
        recovered_at = all_served_fresh(&probes, &ledger, cleared_at, clock_offset);
    }
    std::thread::sleep(plan.settle);
    let mut samples: Vec<Sample> = probes.into_iter().flat_map(Probe::finish).collect();
    samples.sort_by(|a, b| a.sent_at.total_cmp(&b.sent_at));
    let ended_at = unix_now();
    // One more sample so the traffic log covers the end.
    std::thread::sleep(Duration::from_millis(300));
    traffic.stop();
    let ledger = Ledger::new(&stack.emulator.issued_tokens()?);
    Ok(FaultRun {
        samples,
        fault_at,
        cleared_at,
        recovered_at,
        ended_at,
        traffic,
        ledger,
        clock_offset,
    })
}

/// When every caller had been served a token the emulator minted after `since` (local Unix
/// seconds; each probe asks one path: the latest of their first fresh answers), if all had.
pub fn all_served_fresh(
    probes: &[Probe],
    ledger: &Ledger,
    since: f64,
    clock_offset: i64,
) -> Option<f64> {
    let minted_after = (since + clock_offset as f64).floor();
    let mut latest: Option<f64> = None;
    for probe in probes {
        let first = probe
            .samples()
            .into_iter()
            .filter(|s| s.served() && s.sent_at >= since)
            .filter(|s| {
                s.token
                    .as_ref()
                    .and_then(|t| ledger.lifetime(t.expose()))
                    .is_some_and(|(created, _)| created as f64 >= minted_after)
            })
            .map(|s| s.answered_at)
            .min_by(f64::total_cmp)?;
        latest = Some(latest.map_or(first, |l: f64| l.max(first)));
    }
    latest
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FaultFigures {
    /// The case.
    pub case: String,
    /// How long the fault was held, seconds.
    pub fault_s: f64,
    /// Callers' requests answered with a token while the fault was on.
    pub served_during_fault: usize,
    /// Callers' requests that failed while the fault was on.
    pub failed_during_fault: usize,
    /// From the fault to the first failed request (None: callers never failed): how long the
    /// cached token carried them.
    pub carried_s: Option<f64>,
    /// Failures by HTTP status (0: no HTTP answer), whole run.
    pub error_statuses: BTreeMap<u16, usize>,
    /// Failures by request path, whole run.
    pub failed_by_path: BTreeMap<String, usize>,
    /// One error message per status callers got.
    pub error_examples: BTreeMap<u16, String>,
    /// Expiry check of every served token.
    pub expiry: ExpiryCheck,
    /// GitHub traffic while the fault was on.
    pub during: Traffic,
    /// Mint attempts per minute while the fault was on.
    pub mint_attempts_per_min_during: f64,
    /// The most mint attempts in any 10 s window, whole run.
    pub peak_mint_attempts_10s: u64,
    /// GitHub traffic from the clear to the end.
    pub after: Traffic,
    /// Seconds from the clear to the end.
    pub after_s: f64,
    /// From the clear until every caller had been served a freshly minted token.
    pub recovery_s: Option<f64>,
    /// Failed requests after recovery.
    pub failed_after_recovery: usize,
    /// Callers' p99 latency, ms, whole run.
    pub p99_ms: f64,
}

impl FaultRun {
    /// The figures of this run.
    pub fn figures(&self, case: &str) -> FaultFigures {
        let in_fault = |s: &&Sample| s.sent_at >= self.fault_at && s.sent_at < self.cleared_at;
        let failed = |s: &&Sample| !s.served();
        let during: Vec<&Sample> = self.samples.iter().filter(in_fault).collect();
        let first_failure = self
            .samples
            .iter()
            .filter(|s| s.sent_at >= self.fault_at)
            .find(failed)
            .map(|s| round(s.sent_at - self.fault_at, 1));
        let mut error_statuses = BTreeMap::new();
        let mut failed_by_path = BTreeMap::new();
        for sample in self.samples.iter().filter(failed) {
            *error_statuses.entry(sample.status).or_insert(0) += 1;
            *failed_by_path.entry(sample.path.clone()).or_insert(0) += 1;
        }
        let fault_s = self.cleared_at - self.fault_at;
        let during_traffic = self.traffic.between(self.fault_at, self.cleared_at);
        let latencies: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.latency.as_secs_f64() * 1000.0)
            .collect();
        FaultFigures {
            case: case.to_string(),
            fault_s: round(fault_s, 1),
            served_during_fault: during.iter().filter(|s| s.served()).count(),
            failed_during_fault: during.iter().filter(|s| !s.served()).count(),
            carried_s: first_failure,
            error_statuses,
            failed_by_path,
            error_examples: self
                .samples
                .iter()
                .filter(failed)
                .filter_map(|s| Some((s.status, s.error.clone()?)))
                .rev()
                .collect(),
            expiry: expiry::check(&self.samples, &self.ledger, self.clock_offset),
            during: during_traffic,
            mint_attempts_per_min_during: round(
                during_traffic.mint_attempts as f64 * 60.0 / fault_s.max(1.0),
                1,
            ),
            peak_mint_attempts_10s: self
                .traffic
                .peak(self.fault_at - 1.0, self.ended_at, 10.0)
                .mint_attempts,
            after: self.traffic.between(self.cleared_at, self.ended_at),
            after_s: round(self.ended_at - self.cleared_at, 1),
            recovery_s: self.recovered_at.map(|at| round(at - self.cleared_at, 2)),
            failed_after_recovery: self
                .samples
                .iter()
                .filter(|s| self.recovered_at.is_some_and(|at| s.sent_at > at))
                .filter(failed)
                .count(),
            p99_ms: round(
                crate::figures::quantile(&latencies, 0.99).unwrap_or_default(),
                1,
            ),
        }
    }
}
