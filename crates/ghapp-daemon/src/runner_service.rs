//! The runner service in the daemon (docs/runners.md): `[runners]` resolved, the database opened
//! at start (a damaged or read-only file stops the daemon with a clear error), GitHub reached
//! through the token service ([`ServiceApi`], the [`RunnerApi`] of `ghapp-runners`), and the
//! background sync that reconciles the records with GitHub every `sync_interval`.

use crate::service::TokenService;
use anyhow::anyhow;
use ghapp_broker::{BrokerError, Config, SelfHostedRunner};
use ghapp_protocol::api;
use ghapp_protocol::runners::SyncReport;
use ghapp_protocol::time::Timestamp;
use ghapp_runners::{
    ApiFailure, GitHubRunner, JitConfig, JitRequest, Limits, RegistrationToken, RunnerApi, Store,
    Target,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The database's file name in the daemon's state directory, when `[runners] database` is unset.
pub const DEFAULT_DATABASE: &str = "runners.sqlite3";

/// The runner service: its database and settings (fixed at start; a reload does not change
/// them).
#[derive(Debug)]
pub struct RunnerService {
    /// The database.
    pub store: Arc<Store>,
    /// `[runners] owner`: the organization when a request names none.
    pub default_owner: Option<String>,
    /// `[runners] cleanup_after`.
    pub cleanup_after: Duration,
    /// `[runners] sync_interval`.
    pub sync_interval: Duration,
}

impl RunnerService {
    /// Opens the database `[runners]` names; `None` when the config has no `[runners]`.
    pub fn open(config: &Config) -> anyhow::Result<Option<RunnerService>> {
        let Some(runners) = &config.runners else {
            return Ok(None);
        };
        let path = runners.database.clone().unwrap_or_else(default_database);
        let store = Store::open(&path).map_err(|e| anyhow!("{e}"))?;
        tracing::info!(
            database = %path.display(),
            schema = ghapp_runners::SCHEMA_VERSION,
            "runner service: database open"
        );
        Ok(Some(RunnerService {
            store: Arc::new(store),
            default_owner: runners.owner.clone(),
            cleanup_after: runners.cleanup_after,
            sync_interval: runners.sync_interval,
        }))
    }

    /// The background sync's limits: offline and pending runners both go after
    /// `cleanup_after`.
    pub fn limits(&self) -> Limits {
        Limits {
            offline_after: self.cleanup_after,
            pending_after: self.cleanup_after,
        }
    }
}

/// `runners.sqlite3` in the daemon's state directory.
pub fn default_database() -> PathBuf {
    ghapp_protocol::paths::daemon_state_dir().join(DEFAULT_DATABASE)
}

/// One reconciliation round with `limits`.
pub async fn sync_now<S: TokenService>(
    service: &S,
    runners: &RunnerService,
    limits: Limits,
) -> SyncReport {
    let api = ServiceApi(service);
    ghapp_runners::reconcile(&runners.store, &api, Timestamp::now(), limits).await
}

/// Starts the background sync: a round every `sync_interval` for as long as the runtime runs.
/// `holder` keeps the token service alive (the daemon's shared state); `service` reaches it.
pub fn spawn_sync<H, S>(holder: Arc<H>, service: fn(&H) -> &S, runners: Arc<RunnerService>)
where
    H: Send + Sync + 'static,
    S: TokenService,
{
    tokio::spawn(async move {
        // The first round one interval after start (not at once): a restart is not a reason to
        // call GitHub, and a round never races the first requests.
        let first = tokio::time::Instant::now() + runners.sync_interval;
        let mut ticks = tokio::time::interval_at(first, runners.sync_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let report = sync_now(service(&holder), &runners, runners.limits()).await;
            if !report.transitions.is_empty() || !report.failures.is_empty() {
                tracing::info!(
                    transitions = report.transitions.len(),
                    failures = report.failures.len(),
                    "runner sync round"
                );
            }
        }
    });
}

/// The [`RunnerApi`] of the token service: installation tokens with the runner permission.
pub struct ServiceApi<'a, S>(pub &'a S);

fn failure(error: BrokerError) -> ApiFailure {
    let github_status = error.github_status();
    let status = match github_status {
        Some(status @ (409 | 422)) => status,
        _ => error.kind.http_status(),
    };
    ApiFailure {
        status,
        github_status,
        message: error.message,
    }
}

fn runner(found: SelfHostedRunner) -> GitHubRunner {
    GitHubRunner {
        id: found.id,
        name: found.name,
        online: found.online,
        busy: found.busy,
        labels: found.labels,
    }
}

impl<S: TokenService> RunnerApi for ServiceApi<'_, S> {
    async fn list(&self, target: &Target) -> Result<Vec<GitHubRunner>, ApiFailure> {
        self.0
            .list_runners(&target.host, &target.org, target.repo.as_deref())
            .await
            .map(|list| list.into_iter().map(runner).collect())
            .map_err(failure)
    }

    async fn get(&self, target: &Target, id: u64) -> Result<Option<GitHubRunner>, ApiFailure> {
        self.0
            .get_runner(&target.host, &target.org, target.repo.as_deref(), id)
            .await
            .map(|found| found.map(runner))
            .map_err(failure)
    }

    async fn delete(&self, target: &Target, id: u64) -> Result<bool, ApiFailure> {
        self.0
            .delete_runner(&target.host, &target.org, target.repo.as_deref(), id)
            .await
            .map_err(failure)
    }

    async fn generate_jitconfig(
        &self,
        target: &Target,
        request: &JitRequest,
    ) -> Result<JitConfig, ApiFailure> {
        let jit = self
            .0
            .generate_jitconfig(&target.host, &target.org, target.repo.as_deref(), request)
            .await
            .map_err(failure)?;
        Ok(JitConfig {
            runner: runner(jit.runner),
            encoded_jit_config: jit.encoded_jit_config,
            url: jit.url,
        })
    }

    async fn registration_token(&self, target: &Target) -> Result<RegistrationToken, ApiFailure> {
        let issued = match &target.repo {
            Some(repo) => {
                self.0
                    .repository_runner_token(&target.host, &target.org, repo, false)
                    .await
            }
            None => self.0.runner_token(&target.host, &target.org, false).await,
        }
        .map_err(failure)?;
        Ok(RegistrationToken {
            token: issued.token,
            expires_at: issued.expires_at,
            url: issued.url,
        })
    }
}

/// The host runners are provisioned on: the daemon's default host, else github.com.
pub fn runner_host(default_host: Option<&str>) -> String {
    default_host.unwrap_or(api::DEFAULT_HOST).to_string()
}
