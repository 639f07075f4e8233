//! The token broker: everything between "a caller wants a token for acme/widgets" and GitHub.
//!
//! STUB — this file fixes the public API the daemon builds on; the broker issue fills in the
//! implementation (config loading, App JWTs, GitHub client, installation resolution, the
//! single-flight cache with background refresh). Keep these signatures, or change them together
//! with their callers.

pub mod config;
mod error;

use ghapp_protocol::api::{
    AppStatus, CachedTokenStatus, InstallationStatus, RunnerTokenResponse, TokenQuery,
    TokenResponse,
};
use std::collections::BTreeMap;

pub use config::{AppConfig, Config, ConfigError, DaemonConfig, PolicyConfig, TokenFormat};
pub use error::{BrokerError, ErrorKind};

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

/// What the broker holds, for `/v1/status` (fingerprints only).
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus {
    /// GitHub failing, cached tokens being served on their margin.
    pub degraded: bool,
    /// Why.
    pub degraded_reason: Option<String>,
    /// Configured Apps.
    pub apps: Vec<AppStatus>,
    /// Installations known.
    pub installations: Vec<InstallationStatus>,
    /// Tokens cached.
    pub tokens: Vec<CachedTokenStatus>,
}

/// The broker. Cheap to clone (shared state inside); must be created inside a tokio runtime,
/// where it spawns its background refresher.
#[derive(Clone)]
pub struct Broker {}

impl Broker {
    /// Builds the broker from a loaded config: loads every App's key, builds the GitHub client
    /// and starts the background refresher.
    pub fn start(_config: &Config) -> Result<Broker, BrokerError> {
        todo!("broker issue")
    }

    /// A token for the query, from cache when it has at least `max(query.min_ttl, config
    /// min_ttl)` left, otherwise minted (single-flight per cache key).
    pub async fn token(&self, _query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        todo!("broker issue")
    }

    /// Drops the cached entry holding exactly this token; true if there was one.
    pub fn invalidate(&self, _token: &str) -> bool {
        todo!("broker issue")
    }

    /// A self-hosted runner registration (or removal) token for an organization.
    pub async fn runner_token(
        &self,
        _host: &str,
        _org: &str,
        _remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        todo!("broker issue")
    }

    /// Applies a new config (SIGHUP): Apps whose identity and key are unchanged keep their
    /// cached tokens; others are dropped.
    pub fn reload(&self, _config: &Config) -> Result<(), BrokerError> {
        todo!("broker issue")
    }

    /// What the broker holds, without secrets.
    pub fn status(&self) -> BrokerStatus {
        todo!("broker issue")
    }

    /// A snapshot of counters.
    pub fn metrics(&self) -> BrokerMetrics {
        todo!("broker issue")
    }

    /// Stops the background refresher.
    pub fn shutdown(&self) {
        todo!("broker issue")
    }
}
