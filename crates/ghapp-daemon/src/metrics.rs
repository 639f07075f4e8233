//! The daemon's own counters (requests by route and status, refused peers, overload, the
//! remaining life of tokens handed out) and the `/metrics` page that joins them with the
//! broker's (cache, mints, refreshes, rate limits), written by `prometheus-client` in the
//! Prometheus text format 0.0.4.

use crate::identity::{Caller, MetricIdentity};
use ghapp_broker::{BrokerMetrics, BrokerStatus, Histogram as BrokerHistogram};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `Content-Type` of the `/metrics` page (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bucket bounds (seconds) for the remaining life of served tokens: GitHub tokens live an hour
/// and the default min_ttl is 30 minutes, so the interesting range is 0–60 min.
pub const SERVED_TTL_BUCKETS: [f64; 10] = [
    60.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0, 7200.0,
];

/// `ghapp_requests_total`'s labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern (`/v1/token`, `unmatched`), never the raw path.
    route: &'static str,
    /// The HTTP status answered.
    status: u16,
}

/// The labels of `ghapp_requests_by_identity_total`: bounded by the configuration and the
/// host's accounts ([`MetricIdentity`]), never a credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IdentityLabels {
    /// `uid`, `address`, `client` or `oidc`.
    kind: &'static str,
    /// `uid:1000`, `client:ci-bot`, `issuer:https://…`, or `address`.
    identity: MetricIdentity,
    /// The HTTP status answered.
    status: u16,
}

impl EncodeLabelValue for MetricIdentity {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        // Names come from the config file; keep anything that would need escaping out anyway.
        let mut write_name = |prefix: &str, name: &str| {
            encoder.write_str(prefix)?;
            for c in name.chars() {
                encoder.write_char(if c == '"' || c == '\\' || c.is_control() {
                    '_'
                } else {
                    c
                })?;
            }
            Ok(())
        };
        match self {
            MetricIdentity::Uid(uid) => write!(encoder, "uid:{uid}"),
            MetricIdentity::Client(name) => write_name("client:", name),
            MetricIdentity::Issuer(issuer) => write_name("issuer:", issuer),
            MetricIdentity::Address => encoder.write_str("address"),
        }
    }
}

/// The label of the per-App families.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AppLabel {
    /// The App's configured name.
    app: String,
}

/// Counters kept by the daemon itself. The metric handles are shared (cloning one clones a
/// reference), so the page registers the same counters that requests increment.
#[derive(Debug)]
pub struct DaemonMetrics {
    requests: Family<RequestLabels, Counter>,
    by_identity: Family<IdentityLabels, Counter>,
    credentials_refused: Counter,
    mints_limited: Counter,
    /// All requests, for `/v1/status` (a family cannot be summed).
    requests_answered: Counter,
    served_ttl: Histogram,
    peers_refused: Counter,
    connections_accepted: Counter,
    connections_rejected: Counter,
}

impl Default for DaemonMetrics {
    fn default() -> Self {
        DaemonMetrics {
            requests: Family::default(),
            by_identity: Family::default(),
            credentials_refused: Counter::default(),
            mints_limited: Counter::default(),
            requests_answered: Counter::default(),
            served_ttl: Histogram::new(SERVED_TTL_BUCKETS),
            peers_refused: Counter::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
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
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.requests_answered.inc();
    }

    /// Counts one answered request by the identity that made it.
    pub fn identity_request(&self, caller: &Caller, status: u16) {
        self.by_identity
            .get_or_create(&IdentityLabels {
                kind: caller.kind(),
                identity: caller.metric_identity(),
                status,
            })
            .inc();
    }

    /// Counts a request refused for an invalid credential.
    pub fn credential_refused(&self) {
        self.credentials_refused.inc();
    }

    /// Counts a request refused by the per-identity mint limit.
    pub fn mint_limited(&self) {
        self.mints_limited.inc();
    }

    /// Records the remaining life of a token handed out.
    pub fn served_token(&self, remaining: Duration) {
        self.served_ttl.observe(remaining.as_secs_f64());
    }

    /// Counts a peer refused by the allow-lists.
    pub fn peer_refused(&self) {
        self.peers_refused.inc();
    }

    /// Counts an accepted connection.
    pub fn connection_accepted(&self) {
        self.connections_accepted.inc();
    }

    /// Counts a connection turned away because the daemon was at `max_connections`.
    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// Counters for `/v1/status`.
    pub fn counters(&self, broker: &BrokerMetrics) -> BTreeMap<String, u64> {
        BTreeMap::from([
            ("requests".to_string(), self.requests_answered.get()),
            ("peers_refused".to_string(), self.peers_refused.get()),
            (
                "credentials_refused".to_string(),
                self.credentials_refused.get(),
            ),
            ("mints_limited".to_string(), self.mints_limited.get()),
            (
                "connections_accepted".to_string(),
                self.connections_accepted.get(),
            ),
            (
                "connections_rejected".to_string(),
                self.connections_rejected.get(),
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

    /// The `/metrics` page. The daemon's own metrics are registered live; the broker's and the
    /// gauges are a snapshot taken for this scrape. Counter names are registered without
    /// `_total`, which the encoder appends; help texts get a final `.` from the registry.
    pub fn render(
        &self,
        broker: &BrokerMetrics,
        status: &BrokerStatus,
        gauges: &Gauges,
    ) -> Result<String, std::fmt::Error> {
        let mut r = Registry::default();
        r.register(
            "ghapp_build",
            "ghapp's version; always 1",
            Info::new([("version", ghapp_protocol::VERSION)]),
        );
        r.register(
            "ghapp_uptime_seconds",
            "Seconds since the daemon started",
            ConstGauge::new(gauges.uptime.as_secs_f64()),
        );
        r.register(
            "ghapp_requests",
            "Socket API requests answered, by route pattern and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "ghapp_peers_refused",
            "Requests refused because the peer's uid/gid is not allowed",
            self.peers_refused.clone(),
        );
        r.register(
            "ghapp_requests_by_identity",
            "Requests answered, by the caller's identity (uid, client name, ID-token issuer; address and subject only in the audit log) and HTTP status",
            self.by_identity.clone(),
        );
        r.register(
            "ghapp_credentials_refused",
            "Requests refused because the credential presented is not valid",
            self.credentials_refused.clone(),
        );
        r.register(
            "ghapp_oidc_jwks_fetches",
            "Fetches of an [[oidc]] issuer's signing keys (JWKS, through discovery when needed), by issuer and outcome (ok, unreachable, http_error, invalid)",
            crate::identity::oidc::jwks_fetch_counters(),
        );
        r.register(
            "ghapp_mints_limited",
            "Requests refused by the per-identity mint limit",
            self.mints_limited.clone(),
        );
        r.register(
            "ghapp_connections_accepted",
            "Connections accepted on the socket",
            self.connections_accepted.clone(),
        );
        r.register(
            "ghapp_connections_rejected",
            "Connections answered 503 because max_connections were being served",
            self.connections_rejected.clone(),
        );
        r.register(
            "ghapp_connections_active",
            "Connections being served",
            ConstGauge::new(gauges.active_connections as u64),
        );
        r.register(
            "ghapp_connections_max",
            "The max_connections limit",
            ConstGauge::new(gauges.max_connections as u64),
        );

        r.register(
            "ghapp_cache_hits",
            "Token requests answered from the cache",
            ConstCounter::new(broker.cache_hits),
        );
        r.register(
            "ghapp_cache_misses",
            "Token requests that needed a mint (or waited for one)",
            ConstCounter::new(broker.cache_misses),
        );
        let mints = Family::<AppLabel, Counter>::default();
        for (app, n) in &broker.mints {
            mints
                .get_or_create(&AppLabel { app: app.clone() })
                .inc_by(*n);
        }
        r.register(
            "ghapp_token_mints",
            "Installation tokens minted, by App",
            mints,
        );
        r.register(
            "ghapp_token_mint_failures",
            "Mints that failed",
            ConstCounter::new(broker.mint_failures),
        );
        r.register(
            "ghapp_token_mint_duration_seconds",
            "Time to mint a token at GitHub",
            HistogramSnapshot::from(&broker.mint_latency),
        );
        r.register(
            "ghapp_token_refreshes",
            "Background refreshes that succeeded",
            ConstCounter::new(broker.refreshes),
        );
        r.register(
            "ghapp_token_refresh_failures",
            "Background refreshes that failed",
            ConstCounter::new(broker.refresh_failures),
        );
        r.register(
            "ghapp_degraded_serves",
            "Tokens served on their safety margin (below min_ttl) while GitHub was failing",
            ConstCounter::new(broker.degraded_serves),
        );
        r.register(
            "ghapp_installation_lookups",
            "Installation look-ups made at GitHub",
            ConstCounter::new(broker.installation_lookups),
        );
        let rate_limit = Family::<AppLabel, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
        for (app, n) in &broker.rate_limit_remaining {
            rate_limit
                .get_or_create(&AppLabel { app: app.clone() })
                .set(*n);
        }
        r.register(
            "ghapp_github_rate_limit_remaining",
            "GitHub's last x-ratelimit-remaining, by App",
            rate_limit,
        );
        r.register(
            "ghapp_served_token_remaining_seconds",
            "Remaining life of the tokens handed out, when handed out",
            self.served_ttl.clone(),
        );
        r.register(
            "ghapp_cached_tokens",
            "Tokens in the cache",
            ConstGauge::new(status.tokens.len() as u64),
        );
        r.register(
            "ghapp_known_installations",
            "Installations resolved",
            ConstGauge::new(status.installations.len() as u64),
        );
        r.register(
            "ghapp_degraded",
            "1 while GitHub is failing and cached tokens are served on their margin",
            ConstGauge::new(u64::from(status.degraded)),
        );
        let mut page = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut page, &r)?;
        Ok(page)
    }
}

/// The broker's mint-latency histogram as read at scrape time. The broker keeps cumulative
/// counts with a final `+Inf` bucket; the encoder wants each bucket's own count and adds
/// `+Inf` itself.
#[derive(Debug)]
struct HistogramSnapshot {
    /// `(upper bound, observations in this bucket alone)`, finite bounds only.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl From<&BrokerHistogram> for HistogramSnapshot {
    fn from(histogram: &BrokerHistogram) -> Self {
        let mut buckets = Vec::with_capacity(histogram.buckets.len());
        let mut below = 0u64;
        for &(bound, cumulative) in &histogram.buckets {
            // Kept cumulative even if the snapshot raced with an observation.
            let cumulative = cumulative.max(below);
            if bound.is_finite() {
                buckets.push((bound, cumulative - below));
            }
            below = cumulative;
        }
        HistogramSnapshot {
            buckets,
            sum: histogram.sum,
            // `+Inf` is `count`, which must cover every bucket.
            count: histogram.count.max(below),
        }
    }
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            mint_latency: BrokerHistogram {
                buckets: vec![(0.05, 1), (0.5, 2), (f64::INFINITY, 2)],
                sum: 0.3,
                count: 2,
            },
            rate_limit_remaining: BTreeMap::from([("one".to_string(), 4999)]),
            ..Default::default()
        };
        let text = m
            .render(
                &broker,
                &BrokerStatus::default(),
                &Gauges {
                    uptime: Duration::from_secs(3),
                    active_connections: 1,
                    max_connections: 256,
                },
            )
            .unwrap();
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
