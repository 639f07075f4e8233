//! The broker's counters and the mint-latency histogram, updated without locks on the hot path
//! (atomics) and read as a [`BrokerMetrics`] snapshot.

use crate::error::BrokerError;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters and histograms the daemon renders as Prometheus text and in `/v1/status`.
#[derive(Debug, Clone, Default)]
pub struct BrokerMetrics {
    /// Requests answered from cache.
    pub cache_hits: u64,
    /// Requests that needed a mint (or waited on one).
    pub cache_misses: u64,
    /// Tokens minted, by App name.
    pub mints: BTreeMap<String, u64>,
    /// Failed mints.
    pub mint_failures: u64,
    /// Background refreshes that succeeded.
    pub refreshes: u64,
    /// Background refreshes that failed.
    pub refresh_failures: u64,
    /// Installation look-ups made against GitHub.
    pub installation_lookups: u64,
    /// Mint latency in seconds: cumulative (upper bound, count) buckets, sum and count.
    pub mint_latency: Histogram,
    /// GitHub's last `x-ratelimit-remaining` per App name.
    pub rate_limit_remaining: BTreeMap<String, u64>,
    /// Requests answered with a cached token below `min_ttl` (but above `degraded_min_ttl`)
    /// because GitHub was failing.
    pub degraded_serves: u64,
    /// Failed GitHub calls (installation look-ups, mints, runner tokens), by App name and
    /// GitHub's HTTP status — 0 when GitHub did not answer (unreachable, rate limited).
    pub github_failures: BTreeMap<(String, u16), u64>,
}

/// A cumulative histogram in Prometheus' shape.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// (upper bound in seconds, cumulative count) — the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Upper bounds (seconds) of the mint-latency buckets; +Inf is added.
pub(crate) const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Live counters.
#[derive(Default)]
pub(crate) struct Metrics {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub mint_failures: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    pub installation_lookups: AtomicU64,
    pub degraded_serves: AtomicU64,
    mints: Mutex<BTreeMap<String, u64>>,
    github_failures: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<LatencyState>,
}

#[derive(Default)]
struct LatencyState {
    counts: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// A successful mint by `app`, which took `latency`.
    pub(crate) fn record_mint(&self, app: &str, latency: Duration) {
        *self
            .mints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default() += 1;
        let secs = latency.as_secs_f64();
        let mut state = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                state.counts[i] += 1;
            }
        }
        state.sum += secs;
        state.count += 1;
    }

    /// A failed GitHub call, as its mapped error records it (App and GitHub's status); errors
    /// that are not about a GitHub call are not counted.
    pub(crate) fn record_github_failure(&self, error: &BrokerError) {
        let (Some(app), Some(_)) = (error.app(), error.github_message()) else {
            return;
        };
        let status = error.github_status().unwrap_or(0);
        *self
            .github_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((app.to_string(), status))
            .or_default() += 1;
    }

    /// A snapshot; `rate_limit_remaining` comes from the Apps' clients.
    pub(crate) fn snapshot(&self, rate_limit_remaining: BTreeMap<String, u64>) -> BrokerMetrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .zip(latency.counts.iter())
            .map(|(b, c)| (*b, *c))
            .collect();
        buckets.push((f64::INFINITY, latency.count));
        BrokerMetrics {
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            mints: self.mints.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            mint_failures: load(&self.mint_failures),
            refreshes: load(&self.refreshes),
            refresh_failures: load(&self.refresh_failures),
            installation_lookups: load(&self.installation_lookups),
            mint_latency: Histogram {
                buckets,
                sum: latency.sum,
                count: latency.count,
            },
            rate_limit_remaining,
            degraded_serves: load(&self.degraded_serves),
            github_failures: self
                .github_failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.record_mint("a", Duration::from_millis(30));
        m.record_mint("a", Duration::from_millis(700));
        m.record_mint("b", Duration::from_secs(60));
        bump(&m.cache_hits);
        let s = m.snapshot(BTreeMap::new());
        assert_eq!(s.mints.get("a"), Some(&2));
        assert_eq!(s.cache_hits, 1);
        assert_eq!(s.mint_latency.count, 3);
        assert_eq!(s.mint_latency.buckets[0], (0.05, 1));
        assert_eq!(s.mint_latency.buckets[4], (1.0, 2));
        assert_eq!(s.mint_latency.buckets.last().unwrap().1, 3);
        assert!((s.mint_latency.sum - 60.73).abs() < 1e-9);
    }

    #[test]
    fn github_failures_by_app_and_status() {
        let m = Metrics::default();
        let refused = || {
            BrokerError::forbidden("refused").with_app("a").with_github(
                Some(403),
                Some("POST /x".into()),
                "no",
            )
        };
        m.record_github_failure(&refused());
        m.record_github_failure(&refused());
        m.record_github_failure(&BrokerError::unavailable("down").with_app("a").with_github(
            None,
            None,
            "timed out",
        ));
        m.record_github_failure(&BrokerError::bad_request("not GitHub's").with_app("a"));
        let s = m.snapshot(BTreeMap::new());
        assert_eq!(
            s.github_failures,
            BTreeMap::from([(("a".to_string(), 0), 1), (("a".to_string(), 403), 2)])
        );
    }
}
