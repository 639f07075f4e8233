//! The token broker: everything between "a caller wants a token for acme/widgets" and GitHub.
//!
//! [`Broker::token`] validates the request, picks the `[[app]]` entries serving its host,
//! resolves the installation (cached, single-flight), and serves a cached token with at least
//! `min_ttl` left — or waits for the one mint in flight for that key. A background refresher
//! re-mints recently used tokens before they run low. When GitHub fails, cached tokens keep
//! serving down to `degraded_min_ttl`, and [`Broker::status`] reports "degraded".
//!
//! Modules, one concept each: [`config`] (the file), [`key`] (private keys), `jwt` (App JWTs),
//! [`transport`] (the HTTP seam), `github` (GitHub's API with retries and rate limits), `retry`,
//! `clock` (Date-anchored expiry), `resolve` (installations), `cache` (tokens), `mint`,
//! `refresh`, `runner`, `status`, `metrics`.

#![warn(missing_docs)]

mod app;
mod broker;
mod cache;
mod clock;
pub mod config;
mod error;
mod flight;
mod github;
mod jwt;
pub mod key;
mod metrics;
mod mint;
pub mod probe;
mod refresh;
mod resolve;
mod retry;
mod runner;
mod status;
pub mod transport;

use ghapp_protocol::api::{
    AppStatus, CachedTokenStatus, InstallationStatus, RunnerTokenResponse, TokenQuery,
    TokenResponse,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

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
    /// Requests answered with a cached token below `min_ttl` (but above `degraded_min_ttl`)
    /// because GitHub was failing.
    pub degraded_serves: u64,
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
pub struct Broker {
    inner: Arc<broker::Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("apps", &self.inner.runtime().apps.len())
            .finish()
    }
}

impl Broker {
    /// Builds the broker from a loaded config: loads every App's key, builds the GitHub client
    /// and starts the background refresher.
    pub fn start(config: &Config) -> Result<Broker, BrokerError> {
        Broker::build(config, None)
    }

    /// Like [`Broker::start`], but every App talks to GitHub through `transport` instead of
    /// its own reqwest client: for tests (a scripted GitHub on tokio's paused clock) and for
    /// embedding behind a custom HTTP stack.
    pub fn start_with_transport(
        config: &Config,
        transport: Arc<dyn transport::HttpTransport>,
    ) -> Result<Broker, BrokerError> {
        Broker::build(config, Some(transport))
    }

    fn build(
        config: &Config,
        transport: Option<Arc<dyn transport::HttpTransport>>,
    ) -> Result<Broker, BrokerError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BrokerError::internal(
                "the broker must be started inside a tokio runtime",
            ));
        }
        let runtime = app::Runtime::build(config, transport.as_ref())?;
        let inner = Arc::new(broker::Inner::new(runtime, transport, config.path.clone()));
        inner.spawn_refresher();
        Ok(Broker { inner })
    }

    /// A token for the query, from cache when it has at least `max(query.min_ttl, config
    /// min_ttl)` left, otherwise minted (single-flight per cache key). While GitHub is failing,
    /// a cached token with at least `max(query.min_ttl, degraded_min_ttl)` left is served.
    pub async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        let request = broker::Request::from_query(query)?;
        // In its own task: a caller that gives up (its future dropped) leaves the look-up and
        // mint to finish and fill the cache for the next request.
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            inner
                .token_for(&request)
                .await
                .map(|(token, _)| token.response())
        });
        task.await.unwrap_or_else(|e| {
            Err(BrokerError::internal(format!(
                "the token request task failed: {e}"
            )))
        })
    }

    /// Drops the cached entry holding exactly this token; true if there was one.
    ///
    /// A token minted less than GitHub's replication delay ago (5 s) is kept: a 401 then means
    /// GitHub has not replicated it yet, not that it was revoked, and a new token would be just
    /// as new — dropping it would make git (which erases on every 401) fail on each retry.
    pub fn invalidate(&self, token: &str) -> bool {
        if let Some(young) = self.inner.tokens.find(token)
            && young.minted_at.elapsed() < github::REPLICATION_DELAY
        {
            tracing::info!(token = %young.token.fingerprint(), app = %young.plan.app_name, installation = young.installation_id(), minted_ms_ago = young.minted_at.elapsed().as_millis() as u64, "kept a token asked to be invalidated: it is younger than GitHub's replication delay, so a 401 for it is not a revocation");
            return false;
        }
        match self.inner.tokens.invalidate(token) {
            Some(dropped) => {
                tracing::info!(token = %dropped.token.fingerprint(), app = %dropped.plan.app_name, installation = dropped.installation_id(), "invalidated a cached token");
                true
            }
            None => false,
        }
    }

    /// A self-hosted runner registration (or removal) token for an organization.
    pub async fn runner_token(
        &self,
        host: &str,
        org: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        self.inner.runner_token(host, org, remove).await
    }

    /// Applies a new config (SIGHUP): Apps whose identity and key are unchanged keep their
    /// cached tokens; others are dropped. On error the previous config stays in force.
    pub fn reload(&self, config: &Config) -> Result<(), BrokerError> {
        let runtime = app::Runtime::build(config, self.inner.transport.as_ref())?;
        let identities: HashSet<String> = runtime.apps.iter().map(|a| a.identity.clone()).collect();
        self.inner.set_runtime(runtime, config.path.clone());
        self.inner.tokens.retain_apps(&identities);
        self.inner.resolutions.retain_apps(&identities);
        self.inner.tokens.wake.notify_one();
        tracing::info!(apps = identities.len(), "configuration reloaded");
        Ok(())
    }

    /// What the broker holds, without secrets.
    pub fn status(&self) -> BrokerStatus {
        self.inner.status()
    }

    /// A snapshot of counters.
    pub fn metrics(&self) -> BrokerMetrics {
        self.inner.metrics_snapshot()
    }

    /// Stops the background refresher.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }
}
