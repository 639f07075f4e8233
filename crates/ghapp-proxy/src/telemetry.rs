//! The proxy's Prometheus metrics: per client (requests by status, cache outcomes, GitHub
//! rate-limit points its requests consumed) and per credential (upstream requests by status,
//! rests, and the last `x-ratelimit-remaining` / `-reset` seen), plus the cache's size. Served
//! on the proxy listener's `/metrics` to loopback callers only.

use crate::pool::CredentialReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A client and a status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClientStatus {
    client: String,
    status: u16,
}

/// A client and a cache outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClientOutcome {
    client: String,
    outcome: &'static str,
}

/// A client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClientLabel {
    client: String,
}

/// A credential and a status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CredentialStatus {
    credential: String,
    status: u16,
}

/// A credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CredentialLabel {
    credential: String,
}

/// A credential and a rate-limit resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CredentialResource {
    credential: String,
    resource: &'static str,
}

/// The counters; cloning a handle shares it.
#[derive(Debug, Default)]
pub struct Telemetry {
    requests: Family<ClientStatus, Counter>,
    cache: Family<ClientOutcome, Counter>,
    points: Family<ClientLabel, Counter>,
    upstream: Family<CredentialStatus, Counter>,
    rests: Family<CredentialLabel, Counter>,
}

/// The label of requests that named no known client.
pub const UNKNOWN_CLIENT: &str = "-";

impl Telemetry {
    /// One answer to `client`.
    pub fn answered(&self, client: &str, status: u16) {
        self.requests
            .get_or_create(&ClientStatus {
                client: client.to_string(),
                status,
            })
            .inc();
    }

    /// One cache outcome (`hit`, `revalidated`, `miss`, `bypass`) for `client`.
    pub fn cache(&self, client: &str, outcome: &'static str) {
        self.cache
            .get_or_create(&ClientOutcome {
                client: client.to_string(),
                outcome,
            })
            .inc();
    }

    /// `points` GitHub rate-limit points spent on behalf of `client`.
    pub fn points(&self, client: &str, points: u64) {
        self.points
            .get_or_create(&ClientLabel {
                client: client.to_string(),
            })
            .inc_by(points);
    }

    /// One upstream answer with `credential`.
    pub fn upstream(&self, credential: &str, status: u16) {
        self.upstream
            .get_or_create(&CredentialStatus {
                credential: credential.to_string(),
                status,
            })
            .inc();
    }

    /// `credential` was rested after a rate-limit answer.
    pub fn rested(&self, credential: &str) {
        self.rests
            .get_or_create(&CredentialLabel {
                credential: credential.to_string(),
            })
            .inc();
    }

    /// The page: the counters, the credentials' last rate-limit state and the cache's size.
    pub fn render(
        &self,
        credentials: &[CredentialReport],
        cache_entries: usize,
        cache_bytes: usize,
    ) -> Result<String, std::fmt::Error> {
        let mut r = Registry::default();
        r.register(
            "ghapp_proxy_requests",
            "Answers to clients by client and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "ghapp_proxy_cache",
            "Cache outcomes by client (hit, revalidated, miss, bypass)",
            self.cache.clone(),
        );
        r.register(
            "ghapp_proxy_rate_limit_points",
            "GitHub rate-limit points spent on behalf of each client (answers other than 304)",
            self.points.clone(),
        );
        r.register(
            "ghapp_proxy_upstream_requests",
            "Requests sent to GitHub by credential and the status GitHub answered",
            self.upstream.clone(),
        );
        r.register(
            "ghapp_proxy_credential_rests",
            "Times a credential was rested after a primary or secondary rate limit",
            self.rests.clone(),
        );
        let remaining = Family::<CredentialResource, Gauge>::default();
        let reset = Family::<CredentialResource, Gauge>::default();
        for report in credentials {
            let label = CredentialResource {
                credential: report.label.clone(),
                resource: report.resource,
            };
            if let Some(value) = report.remaining {
                remaining
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
            if let Some(value) = report.reset {
                reset
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        r.register(
            "ghapp_proxy_credential_remaining",
            "The last x-ratelimit-remaining GitHub sent for each credential",
            remaining,
        );
        r.register(
            "ghapp_proxy_credential_reset_seconds",
            "The last x-ratelimit-reset (Unix seconds) GitHub sent for each credential",
            reset,
        );
        r.register(
            "ghapp_proxy_cache_entries",
            "Answers held in the cache",
            ConstGauge::new(cache_entries as i64),
        );
        r.register(
            "ghapp_proxy_cache_bytes",
            "Bytes the cache holds (bodies, headers, keys)",
            ConstGauge::new(cache_bytes as i64),
        );
        let mut page = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut page, &r)?;
        Ok(page)
    }
}
