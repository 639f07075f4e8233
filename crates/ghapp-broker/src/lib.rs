//! The token broker: everything between "a caller wants a token for acme/widgets" and GitHub.
//!
//! [`Broker::token`] validates the request, picks the `[[app]]` entries serving its host,
//! resolves the installation (cached, single-flight), and serves a cached token with at least
//! `min_ttl` left — or waits for the one mint in flight for that key. A background refresher
//! re-mints recently used tokens before they run low. When GitHub fails, cached tokens keep
//! serving down to `degraded_min_ttl`, and [`Broker::status`] reports "degraded". Failures are
//! [`BrokerError`]s that carry the App, installation, target and GitHub's answer as data.
//!
//! Modules, one job each (none imports a module that imports it):
//!
//! | module | its one job |
//! |---|---|
//! | `lib` | the public face: [`Broker`] and the re-exports |
//! | `broker` | the orchestrator (`Core`): the request path; coordinates the parts below and carries out failures' consequences |
//! | `request` | validates a token request; picks the Apps that may serve it |
//! | `resolve` | `Resolver`: the installation cache (found / not installed / several), one look-up in flight per target |
//! | `lookup` | asks GitHub, App by App, which installation serves a target |
//! | `mint` | `Minter`: what to ask for (narrowing, ceilings), the mint, checking what GitHub granted |
//! | `cache` | `TokenCache`: cached tokens, one mint in flight per key, and the whole refresh policy |
//! | `refresh` | `Refresher`: the background task that runs refresh rounds on time |
//! | `flight` | single-flight: one task, many waiters, a dead task still ends its flight |
//! | `failure` | the one place a GitHub failure becomes a [`BrokerError`] (and a consequence for the caches) |
//! | `runner` | runner registration/removal tokens and runner management (list, get, delete, generate-jitconfig), organization or repository: the query and the calls |
//! | `shared` | the token cache shared by replicas (`[cache]`): a peer's token, one mint per key in the fleet, the store down → alone; `seal` (AES-256-GCM values, HMAC key names), `redis` (the store, feature `redis`) |
//! | `status` | [`BrokerStatus`] for `/v1/status` |
//! | `upstream` | `[upstream]`: a key-less daemon's tokens from a central broker's `/v1/token` (plan, fetch, health) |
//! | `metrics` | counters and the mint-latency histogram; [`BrokerMetrics`] |
//! | `error` | [`BrokerError`] and [`ErrorKind`] |
//! | `app` | a configured App at run time (key, client, health) and the set in force |
//! | `github` | one App's GitHub client: `engine` (retries, rate limits, clock skew, issuer fallback, replication delay, hold-off), `endpoints` (redirects of look-ups), `error`, `limits` (rate limits by bucket and resource), `wire` |
//! | `retry` | the retry policy, the one jittered backoff, GitHub's rate-limit rules |
//! | `clock` | expiry anchored at GitHub's `Date` |
//! | `jwt` | App JWTs |
//! | [`key`] | private keys |
//! | [`signer`] | who signs the App JWT: the PEM key, a command, a PKCS#11 token |
//! | [`transport`] | the HTTP seam |
//! | [`config`] | the config file: a re-export of `ghapp_protocol::config`, where its schema and validation live |

#![warn(missing_docs)]

mod app;
mod broker;
mod cache;
mod clock;
mod error;
mod failure;
mod flight;
mod github;
mod jwt;
pub mod key;
mod lookup;
mod metrics;
mod mint;
pub mod probe;
mod refresh;
mod request;
mod resolve;
mod retry;
mod runner;
mod shared;
pub mod signer;
mod status;
pub mod transport;
mod upstream;

use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery, TokenResponse};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

pub use config::{
    AppConfig, Config, ConfigError, DaemonConfig, PolicyConfig, SignerKind, TokenFormat,
};
pub use error::{BrokerError, ErrorKind};
/// The config file: its home is `ghapp_protocol::config`, shared by every binary.
pub use ghapp_protocol::config;
pub use github::{JitRunner, SelfHostedRunner};
pub use metrics::{BrokerMetrics, Histogram};
pub use shared::{SealedStore, StoreUser};
pub use status::BrokerStatus;

/// The broker. Cheap to clone (shared state inside); must be created inside a tokio runtime,
/// where it spawns its background refresher.
#[derive(Clone)]
pub struct Broker {
    core: Arc<broker::Core>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("apps", &self.core.runtime().apps.len())
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
        let shared = config
            .cache
            .as_ref()
            .map(shared::SharedCache::start)
            .transpose()?;
        let upstream = config
            .upstream
            .as_ref()
            .map(|u| upstream::Upstream::build(u, &config.daemon).map(Arc::new))
            .transpose()?;
        let core = broker::Core::start(runtime, transport, shared, upstream, config.path.clone());
        Ok(Broker { core })
    }

    /// A token for the query, from cache when it has at least `max(query.min_ttl, config
    /// min_ttl)` left, otherwise minted (single-flight per cache key). While GitHub is failing,
    /// a cached token with at least `max(query.min_ttl, degraded_min_ttl)` left is served.
    pub async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        self.token_served(query).await.map(|(token, _)| token)
    }

    /// [`Broker::token`], also telling whether this request waited on a mint (`true`: a cache
    /// miss that asked GitHub, its own mint or one already in flight it joined) — what the
    /// daemon's per-identity mint limit counts. Cached answers (`false`) cost GitHub nothing.
    pub async fn token_served(
        &self,
        query: &TokenQuery,
    ) -> Result<(TokenResponse, bool), BrokerError> {
        let request = request::Request::from_query(query)?;
        let core = self.core.clone();
        let mut answer = Box::pin(async move {
            core.token(&request)
                .await
                .map(|(token, minted)| (token.response(), minted))
        });
        // A cached token is ready at the first poll: answered here, without a task (a spawn per
        // request was a task allocation and a wake-up of the other worker, docs/benchmarks.md).
        // The waker is a no-op: a future that is not ready is polled again, by its task, with
        // that task's waker, which is the one a future must wake.
        let first_poll = answer
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(answer) = first_poll {
            return answer;
        }
        // Otherwise in its own task: a caller that gives up (its future dropped) leaves the
        // look-up and mint to finish and fill the cache for the next request.
        let task = tokio::spawn(answer);
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
        self.core.invalidate(token)
    }

    /// A self-hosted runner registration (or removal) token for an organization
    /// (`POST /orgs/{org}/actions/runners/…`; the installation needs
    /// `organization_self_hosted_runners: write`).
    pub async fn runner_token(
        &self,
        host: &str,
        org: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        let target = runner::RunnerTarget::Organization(org.to_string());
        self.core.runner_token(host, target, remove).await
    }

    /// A self-hosted runner registration (or removal) token for one repository
    /// (`POST /repos/{owner}/{repo}/actions/runners/…`; the installation needs
    /// `administration: write` on it) — the way a user account's repositories get runners.
    pub async fn repository_runner_token(
        &self,
        host: &str,
        owner: &str,
        repo: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        let target = runner::RunnerTarget::Repository {
            owner: owner.to_string(),
            repo: repo.to_string(),
        };
        self.core.runner_token(host, target, remove).await
    }

    /// The self-hosted runners of an organization, or of one repository with `repo` (every
    /// page of `GET …/actions/runners`).
    pub async fn list_runners(
        &self,
        host: &str,
        owner: &str,
        repo: Option<&str>,
    ) -> Result<Vec<SelfHostedRunner>, BrokerError> {
        match self
            .manage_runners(host, owner, repo, runner::RunnerOp::List)
            .await?
        {
            runner::RunnerOutcome::Listed(runners) => Ok(runners),
            _ => Err(BrokerError::internal("runner list: unexpected outcome")),
        }
    }

    /// One self-hosted runner; `None` when GitHub has no runner with that id.
    pub async fn get_runner(
        &self,
        host: &str,
        owner: &str,
        repo: Option<&str>,
        id: u64,
    ) -> Result<Option<SelfHostedRunner>, BrokerError> {
        match self
            .manage_runners(host, owner, repo, runner::RunnerOp::Get(id))
            .await?
        {
            runner::RunnerOutcome::Found(runner) => Ok(runner),
            _ => Err(BrokerError::internal("runner get: unexpected outcome")),
        }
    }

    /// Deletes a self-hosted runner; false when GitHub had no runner with that id.
    pub async fn delete_runner(
        &self,
        host: &str,
        owner: &str,
        repo: Option<&str>,
        id: u64,
    ) -> Result<bool, BrokerError> {
        match self
            .manage_runners(host, owner, repo, runner::RunnerOp::Delete(id))
            .await?
        {
            runner::RunnerOutcome::Deleted(existed) => Ok(existed),
            _ => Err(BrokerError::internal("runner delete: unexpected outcome")),
        }
    }

    /// Registers a just-in-time runner (`POST …/actions/runners/generate-jitconfig`): GitHub
    /// requires a runner group and 1–100 labels; a name in use is a 409 (kind `Ambiguous`,
    /// `github_status` 409).
    #[allow(clippy::too_many_arguments)]
    pub async fn generate_jitconfig(
        &self,
        host: &str,
        owner: &str,
        repo: Option<&str>,
        name: &str,
        runner_group_id: u64,
        labels: &[String],
        work_folder: &str,
    ) -> Result<JitRunner, BrokerError> {
        let body = github::JitConfigBody {
            name: name.to_string(),
            runner_group_id,
            labels: labels.to_vec(),
            work_folder: work_folder.to_string(),
        };
        match self
            .manage_runners(host, owner, repo, runner::RunnerOp::Jit(body))
            .await?
        {
            runner::RunnerOutcome::Registered(jit) => Ok(jit),
            _ => Err(BrokerError::internal(
                "generate-jitconfig: unexpected outcome",
            )),
        }
    }

    async fn manage_runners(
        &self,
        host: &str,
        owner: &str,
        repo: Option<&str>,
        op: runner::RunnerOp,
    ) -> Result<runner::RunnerOutcome, BrokerError> {
        let target = match repo {
            Some(repo) => runner::RunnerTarget::Repository {
                owner: owner.to_string(),
                repo: repo.to_string(),
            },
            None => runner::RunnerTarget::Organization(owner.to_string()),
        };
        self.core.manage_runners(host, target, op).await
    }

    /// Applies a new config (SIGHUP): Apps whose identity and key are unchanged keep their
    /// cached tokens; others are dropped. On error the previous config stays in force.
    pub fn reload(&self, config: &Config) -> Result<(), BrokerError> {
        let runtime = app::Runtime::build(config, self.core.transport())?;
        let upstream = config
            .upstream
            .as_ref()
            .map(|u| upstream::Upstream::build(u, &config.daemon).map(Arc::new))
            .transpose()?;
        let apps = self.core.reload(runtime, upstream, config.path.clone());
        tracing::info!(apps, "configuration reloaded");
        Ok(())
    }

    /// What the broker holds, without secrets.
    pub fn status(&self) -> BrokerStatus {
        self.core.status()
    }

    /// A snapshot of counters.
    pub fn metrics(&self) -> BrokerMetrics {
        self.core.metrics()
    }

    /// Stops the background refresher.
    pub fn shutdown(&self) {
        self.core.stop();
    }
}
