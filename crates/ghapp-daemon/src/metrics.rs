//! The daemon's own counters (requests by route and status, refused peers, overload, the
//! remaining life of tokens handed out) and the `/metrics` page that joins them with the
//! broker's (cache, mints, refreshes, rate limits).

use crate::exposition::{Exposition, Kind};
use ghapp_broker::{BrokerMetrics, BrokerStatus};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for the remaining life of served tokens: GitHub tokens live an hour
/// and the default min_ttl is 30 minutes, so the interesting range is 0–60 min.
pub const SERVED_TTL_BUCKETS: [f64; 10] = [
    60.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0, 7200.0,
];

/// A fixed-bucket histogram.
#[derive(Debug, Clone)]
struct FixedHistogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last slot is beyond every bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl FixedHistogram {
    fn new(bounds: &'static [f64]) -> FixedHistogram {
        FixedHistogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, n) in self.counts.iter().enumerate() {
            total += n;
            out.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        out
    }
}

/// Counters kept by the daemon itself.
#[derive(Debug)]
pub struct DaemonMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    served_ttl: Mutex<FixedHistogram>,
    peers_refused: AtomicU64,
    connections_accepted: AtomicU64,
    connections_rejected: AtomicU64,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics {
            requests: Mutex::new(BTreeMap::new()),
            served_ttl: Mutex::new(FixedHistogram::new(&SERVED_TTL_BUCKETS)),
            peers_refused: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
        }
    }
}

/// What `/metrics` shows besides the counters: read at render time.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Seconds since start.
    pub uptime: Duration,
    /// Connections being served now.
    pub active_connections: usize,
    /// The connection limit.
    pub max_connections: usize,
}

impl DaemonMetrics {
    /// Counts one answered request by route pattern and status.
    pub fn request(&self, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((route, status)).or_default() += 1;
    }

    /// Records the remaining life of a token handed out.
    pub fn served_token(&self, remaining: Duration) {
        self.served_ttl
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(remaining.as_secs_f64());
    }

    /// Counts a peer refused by the allow-lists.
    pub fn peer_refused(&self) {
        self.peers_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted connection.
    pub fn connection_accepted(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection turned away because the daemon was at `max_connections`.
    pub fn connection_rejected(&self) {
        self.connections_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters for `/v1/status`.
    pub fn counters(&self, broker: &BrokerMetrics) -> BTreeMap<String, u64> {
        let requests: u64 = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        BTreeMap::from([
            ("requests".to_string(), requests),
            (
                "peers_refused".to_string(),
                self.peers_refused.load(Ordering::Relaxed),
            ),
            (
                "connections_accepted".to_string(),
                self.connections_accepted.load(Ordering::Relaxed),
            ),
            (
                "connections_rejected".to_string(),
                self.connections_rejected.load(Ordering::Relaxed),
            ),
            ("cache_hits".to_string(), broker.cache_hits),
            ("cache_misses".to_string(), broker.cache_misses),
            ("mints".to_string(), broker.mints.values().sum()),
            ("mint_failures".to_string(), broker.mint_failures),
            ("refreshes".to_string(), broker.refreshes),
            ("refresh_failures".to_string(), broker.refresh_failures),
            ("degraded_serves".to_string(), broker.degraded_serves),
            (
                "installation_lookups".to_string(),
                broker.installation_lookups,
            ),
        ])
    }

    /// The `/metrics` page.
    pub fn render(&self, broker: &BrokerMetrics, status: &BrokerStatus, gauges: &Gauges) -> String {
        let mut e = Exposition::default();
        e.family(
            "ghapp_build_info",
            Kind::Gauge,
            "ghapp's version; always 1.",
        );
        e.sample(
            "ghapp_build_info",
            &[("version", ghapp_protocol::VERSION)],
            1.0,
        );
        e.single(
            "ghapp_uptime_seconds",
            Kind::Gauge,
            "Seconds since the daemon started.",
            gauges.uptime.as_secs_f64(),
        );

        e.family(
            "ghapp_requests_total",
            Kind::Counter,
            "Socket API requests answered, by route pattern and HTTP status.",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            e.sample(
                "ghapp_requests_total",
                &[("route", route), ("status", &status.to_string())],
                *n as f64,
            );
        }
        e.single(
            "ghapp_peers_refused_total",
            Kind::Counter,
            "Requests refused because the peer's uid/gid is not allowed.",
            self.peers_refused.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "ghapp_connections_accepted_total",
            Kind::Counter,
            "Connections accepted on the socket.",
            self.connections_accepted.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "ghapp_connections_rejected_total",
            Kind::Counter,
            "Connections answered 503 because max_connections were being served.",
            self.connections_rejected.load(Ordering::Relaxed) as f64,
        );
        e.single(
            "ghapp_connections_active",
            Kind::Gauge,
            "Connections being served.",
            gauges.active_connections as f64,
        );
        e.single(
            "ghapp_connections_max",
            Kind::Gauge,
            "The max_connections limit.",
            gauges.max_connections as f64,
        );

        e.single(
            "ghapp_cache_hits_total",
            Kind::Counter,
            "Token requests answered from the cache.",
            broker.cache_hits as f64,
        );
        e.single(
            "ghapp_cache_misses_total",
            Kind::Counter,
            "Token requests that needed a mint (or waited for one).",
            broker.cache_misses as f64,
        );
        e.family(
            "ghapp_token_mints_total",
            Kind::Counter,
            "Installation tokens minted, by App.",
        );
        for (app, n) in &broker.mints {
            e.sample("ghapp_token_mints_total", &[("app", app)], *n as f64);
        }
        e.single(
            "ghapp_token_mint_failures_total",
            Kind::Counter,
            "Mints that failed.",
            broker.mint_failures as f64,
        );
        let latency = &broker.mint_latency;
        e.histogram(
            "ghapp_token_mint_duration_seconds",
            "Time to mint a token at GitHub.",
            &latency.buckets,
            latency.sum,
            latency.count,
        );
        e.single(
            "ghapp_token_refreshes_total",
            Kind::Counter,
            "Background refreshes that succeeded.",
            broker.refreshes as f64,
        );
        e.single(
            "ghapp_token_refresh_failures_total",
            Kind::Counter,
            "Background refreshes that failed.",
            broker.refresh_failures as f64,
        );
        e.single(
            "ghapp_degraded_serves_total",
            Kind::Counter,
            "Tokens served on their safety margin (below min_ttl) while GitHub was failing.",
            broker.degraded_serves as f64,
        );
        e.single(
            "ghapp_installation_lookups_total",
            Kind::Counter,
            "Installation look-ups made at GitHub.",
            broker.installation_lookups as f64,
        );
        e.family(
            "ghapp_github_rate_limit_remaining",
            Kind::Gauge,
            "GitHub's last x-ratelimit-remaining, by App.",
        );
        for (app, n) in &broker.rate_limit_remaining {
            e.sample(
                "ghapp_github_rate_limit_remaining",
                &[("app", app)],
                *n as f64,
            );
        }
        let ttl = self
            .served_ttl
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        e.histogram(
            "ghapp_served_token_remaining_seconds",
            "Remaining life of the tokens handed out, when handed out.",
            &ttl.cumulative(),
            ttl.sum,
            ttl.count,
        );
        e.single(
            "ghapp_cached_tokens",
            Kind::Gauge,
            "Tokens in the cache.",
            status.tokens.len() as f64,
        );
        e.single(
            "ghapp_known_installations",
            Kind::Gauge,
            "Installations resolved.",
            status.installations.len() as f64,
        );
        e.single(
            "ghapp_degraded",
            Kind::Gauge,
            "1 while GitHub is failing and cached tokens are served on their margin.",
            if status.degraded { 1.0 } else { 0.0 },
        );
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_broker::Histogram;

    #[test]
    fn page_parses_and_carries_every_family() {
        let m = DaemonMetrics::default();
        m.request("/v1/token", 200);
        m.request("/v1/token", 200);
        m.request("unmatched", 404);
        m.served_token(Duration::from_secs(3500));
        m.served_token(Duration::from_secs(100));
        m.peer_refused();
        let broker = BrokerMetrics {
            cache_hits: 5,
            mints: BTreeMap::from([("app \"one\"".to_string(), 2)]),
            mint_latency: Histogram {
                buckets: vec![(0.05, 1), (0.5, 2), (f64::INFINITY, 2)],
                sum: 0.3,
                count: 2,
            },
            rate_limit_remaining: BTreeMap::from([("one".to_string(), 4999)]),
            ..Default::default()
        };
        let text = m.render(
            &broker,
            &BrokerStatus::default(),
            &Gauges {
                uptime: Duration::from_secs(3),
                active_connections: 1,
                max_connections: 256,
            },
        );
        let samples = ghapp_testkit::daemon::parse_prometheus(&text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let find = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            find("ghapp_requests_total", Some(("status", "200"))),
            Some(2.0)
        );
        assert_eq!(find("ghapp_cache_hits_total", None), Some(5.0));
        assert_eq!(
            find("ghapp_token_mints_total", Some(("app", "app \"one\""))),
            Some(2.0)
        );
        assert_eq!(
            find("ghapp_token_mint_duration_seconds_count", None),
            Some(2.0)
        );
        assert_eq!(
            find("ghapp_github_rate_limit_remaining", Some(("app", "one"))),
            Some(4999.0)
        );
        assert_eq!(
            find(
                "ghapp_served_token_remaining_seconds_bucket",
                Some(("le", "300"))
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                "ghapp_served_token_remaining_seconds_bucket",
                Some(("le", "+Inf"))
            ),
            Some(2.0)
        );
        assert_eq!(find("ghapp_peers_refused_total", None), Some(1.0));
        assert_eq!(m.counters(&broker)["requests"], 3);
        assert_eq!(m.counters(&broker)["mints"], 2);
    }
}
