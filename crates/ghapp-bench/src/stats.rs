//! Latency samples and the summary figures the benchmark tables print.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latency samples in microseconds, plus how long the whole run took.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// One entry per successful operation, in microseconds.
    pub micros: Vec<u64>,
    /// Failed operations.
    pub errors: u64,
    /// The failed operations by what went wrong (`HTTP 503`, `connect: …`), so a report can
    /// say what the errors were.
    pub failures: BTreeMap<String, u64>,
    /// Unix-socket connects that found the daemon's listen backlog full and waited for room,
    /// retrying (a blocking connect, as the credential helper's, waits there by itself).
    pub backlog_waits: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Summary of [`Samples`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    /// Successful operations.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Operations per second over the run.
    pub per_sec: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Worst latency, ms.
    pub max_ms: f64,
}

impl Samples {
    /// Sorts and summarises.
    pub fn summary(&mut self) -> Summary {
        self.micros.sort_unstable();
        let count = self.micros.len() as u64;
        let pick = |q: f64| -> f64 {
            if self.micros.is_empty() {
                return 0.0;
            }
            let rank = ((q * count as f64).ceil() as usize).clamp(1, self.micros.len());
            self.micros[rank - 1] as f64 / 1000.0
        };
        let secs = self.elapsed.as_secs_f64();
        Summary {
            count,
            errors: self.errors,
            per_sec: if secs > 0.0 { count as f64 / secs } else { 0.0 },
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            max_ms: self.micros.last().map_or(0.0, |m| *m as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Samples {
            micros: (1..=100).rev().map(|m| m * 1000).collect(),
            errors: 2,
            elapsed: Duration::from_secs(2),
            ..Samples::default()
        };
        let sum = s.summary();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert_eq!(sum.per_sec, 50.0);
        assert_eq!(Samples::default().summary().p99_ms, 0.0);
    }
}
