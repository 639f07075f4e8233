//! The broker's shared state and the request path: validate the request, pick the Apps for the
//! host, resolve the installation, plan the token, then serve it from cache or wait for its
//! single mint — falling back to a cached token on its degraded margin while GitHub fails.

use crate::app::{AppRuntime, Runtime, Trouble};
use crate::cache::{Acquire, CachedToken, MintPlan, Origin, TokenCache};
use crate::error::{BrokerError, ErrorKind};
use crate::metrics::{Metrics, bump};
use crate::mint::{plan, suspended_error};
use crate::resolve::{ResolutionCache, Target};
use crate::transport::HttpTransport;
use ghapp_protocol::api::{TokenQuery, check_host, check_name};
use ghapp_protocol::duration::format_duration;
use ghapp_protocol::permissions::Permissions;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Installation tokens live one hour; no `min_ttl` at or above it can be met.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// State shared by every clone of the broker and its background tasks.
pub(crate) struct Inner {
    runtime: RwLock<Arc<Runtime>>,
    pub(crate) tokens: TokenCache,
    pub(crate) resolutions: ResolutionCache,
    pub(crate) metrics: Metrics,
    /// A transport for every App instead of reqwest (tests, embedding).
    pub(crate) transport: Option<Arc<dyn HttpTransport>>,
    /// The config file, for messages.
    pub(crate) config_path: RwLock<Option<PathBuf>>,
    /// Set to true to stop background work.
    pub(crate) stop: watch::Sender<bool>,
}

/// A token request, validated and normalised.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub host: String,
    pub owner: Option<String>,
    pub repo: Option<String>,
    pub permissions: Permissions,
    pub min_ttl: Option<Duration>,
    pub http: bool,
}

impl Request {
    /// Checks a query the way the socket parser does (the daemon may build queries itself).
    pub(crate) fn from_query(query: &TokenQuery) -> Result<Request, BrokerError> {
        let bad = |e: ghapp_protocol::api::QueryError| BrokerError::bad_request(e.0);
        let host = check_host(query.host_or_default()).map_err(bad)?;
        let owner = query
            .owner
            .as_deref()
            .map(|o| check_name("owner", o))
            .transpose()
            .map_err(bad)?;
        let repo = query
            .repo
            .as_deref()
            .map(|r| check_name("repo", r))
            .transpose()
            .map_err(bad)?;
        let repo = repo.map(|r| r.strip_suffix(".git").map(str::to_string).unwrap_or(r));
        if repo.is_some() && owner.is_none() {
            return Err(BrokerError::bad_request("repo given without owner"));
        }
        if let Some(min_ttl) = query.min_ttl
            && min_ttl >= TOKEN_LIFETIME
        {
            return Err(BrokerError::bad_request(format!(
                "min_ttl {} cannot be met: installation tokens live one hour",
                format_duration(min_ttl)
            )));
        }
        let http = match query.protocol.as_deref() {
            None | Some("https") => false,
            Some("http") => true,
            Some(other) => {
                return Err(BrokerError::bad_request(format!(
                    "protocol {other:?} is not served: only https (and http for insecure_http Apps)"
                )));
            }
        };
        Ok(Request {
            host,
            owner,
            repo,
            permissions: query.permissions.clone(),
            min_ttl: query.min_ttl,
            http,
        })
    }

    fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            owner: self.owner.as_ref().map(|o| o.to_ascii_lowercase()),
            repo: self.repo.as_ref().map(|r| r.to_ascii_lowercase()),
        }
    }
}

impl Inner {
    /// New state around `runtime`.
    pub(crate) fn new(
        runtime: Runtime,
        transport: Option<Arc<dyn HttpTransport>>,
        config_path: Option<PathBuf>,
    ) -> Self {
        Inner {
            runtime: RwLock::new(Arc::new(runtime)),
            tokens: TokenCache::default(),
            resolutions: ResolutionCache::default(),
            metrics: Metrics::default(),
            transport,
            config_path: RwLock::new(config_path),
            stop: watch::channel(false).0,
        }
    }

    /// The Apps and settings in force.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a new runtime in force.
    pub(crate) fn set_runtime(&self, runtime: Runtime, config_path: Option<PathBuf>) {
        *self.runtime.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(runtime);
        *self.config_path.write().unwrap_or_else(|p| p.into_inner()) = config_path;
    }

    fn config_name(&self) -> String {
        self.config_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or("the config file".to_string(), |p| p.display().to_string())
    }

    /// The Apps that may serve a request: configured for its host, allowing plain http when
    /// asked over http, and allowing its owner.
    fn candidate_apps(
        &self,
        runtime: &Runtime,
        request: &Request,
    ) -> Result<Vec<Arc<AppRuntime>>, BrokerError> {
        let for_host: Vec<Arc<AppRuntime>> = runtime
            .apps
            .iter()
            .filter(|a| a.config.host == request.host)
            .cloned()
            .collect();
        if for_host.is_empty() {
            return Err(BrokerError::not_found(format!(
                "no GitHub App is configured for host {}: add an [[app]] with host = \"{}\" to {}",
                request.host,
                request.host,
                self.config_name()
            )));
        }
        let by_protocol: Vec<Arc<AppRuntime>> = for_host
            .into_iter()
            .filter(|a| !request.http || a.config.insecure_http)
            .collect();
        if by_protocol.is_empty() {
            return Err(BrokerError::not_found(format!(
                "host {} is served over https only: plain http needs insecure_http = true on its [[app]] (emulators and tests only)",
                request.host
            )));
        }
        let Some(owner) = &request.owner else {
            return Ok(by_protocol);
        };
        let allowed: Vec<Arc<AppRuntime>> = by_protocol
            .iter()
            .filter(|a| a.config.allows_owner(owner))
            .cloned()
            .collect();
        if allowed.is_empty() {
            let lists = by_protocol
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.name(),
                        a.config.owners.clone().unwrap_or_default().join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BrokerError::forbidden(format!(
                "account {owner} is not in the owners of any GitHub App for {} ({lists})",
                request.host
            )));
        }
        Ok(allowed)
    }

    /// A token for `request`, with the App that minted it.
    pub(crate) async fn token_for(
        self: &Arc<Self>,
        request: &Request,
    ) -> Result<(Arc<CachedToken>, Arc<AppRuntime>), BrokerError> {
        let runtime = self.runtime();
        let apps = self.candidate_apps(&runtime, request)?;
        let target = request.target();
        let required = request
            .min_ttl
            .unwrap_or_default()
            .max(runtime.settings.min_ttl);
        let mut re_resolved = false;
        loop {
            let resolved = self.resolve(&runtime, &apps, &target).await.map_err(|e| {
                if e.kind == ErrorKind::Unavailable {
                    BrokerError::unavailable(format!(
                        "{}: no cached token with enough life left for {}",
                        e.message,
                        target.label()
                    ))
                } else {
                    e
                }
            })?;
            let app = runtime
                .app(&resolved.app_identity)
                .cloned()
                .ok_or_else(|| {
                    BrokerError::internal(format!(
                        "GitHub App {} is no longer configured",
                        resolved.app_name
                    ))
                })?;
            if resolved.installation.suspended {
                return Err(suspended_error(
                    &app.describe(),
                    resolved.installation.id,
                    &resolved.installation.account,
                ));
            }
            let label = match &request.repo {
                Some(repo) => format!("{}/{repo}", request.owner.as_deref().unwrap_or_default()),
                None => format!("account {}", resolved.installation.account),
            };
            let plan = Arc::new(plan(
                &app,
                &request.host,
                &resolved,
                request.repo.as_deref(),
                &request.permissions,
                label,
            )?);
            match self
                .obtain(&runtime, &app, &plan, required, request.min_ttl)
                .await
            {
                Ok(token) => return Ok((token, app)),
                // The installation is gone (App reinstalled under a new id): look it up again, once.
                Err(error) if error.kind == ErrorKind::NotFound && !re_resolved => {
                    tracing::info!(target = %target.label(), "{}; resolving the installation again", error.message);
                    re_resolved = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The token of `plan`: cached with `required` life, or from its (single) mint; when GitHub
    /// fails, a cached token with the degraded margin.
    async fn obtain(
        self: &Arc<Self>,
        runtime: &Runtime,
        app: &AppRuntime,
        plan: &Arc<MintPlan>,
        required: Duration,
        asked_min_ttl: Option<Duration>,
    ) -> Result<Arc<CachedToken>, BrokerError> {
        // The caller's own min_ttl is never relaxed; the daemon's is, to degraded_min_ttl.
        let degraded_floor = asked_min_ttl
            .unwrap_or_default()
            .max(runtime.settings.degraded_min_ttl);
        let failing = app.health.trouble() == Some(Trouble::Unreachable);
        let acquired =
            self.tokens
                .acquire(plan, required, failing.then_some(degraded_floor), |tx| {
                    self.spawn_mint(plan.clone(), tx, Origin::Caller)
                });
        let flight = match acquired {
            Acquire::Fresh(token) => {
                bump(&self.metrics.cache_hits);
                return Ok(token);
            }
            Acquire::Degraded(token) => {
                bump(&self.metrics.cache_hits);
                bump(&self.metrics.degraded_serves);
                tracing::warn!(target = %plan.target, token = %token.token.fingerprint(), remaining_secs = token.remaining(Instant::now()).as_secs(), "GitHub failing: serving a cached token on its margin");
                return Ok(token);
            }
            Acquire::Wait(flight) => flight,
        };
        bump(&self.metrics.cache_misses);
        let result = flight
            .wait()
            .await
            .unwrap_or_else(|| Err(BrokerError::internal("the token mint task failed")));
        match result {
            Ok(token) => {
                let remaining = token.remaining(Instant::now());
                if remaining >= required {
                    self.tokens.mark_served(&plan.key);
                    return Ok(token);
                }
                Err(BrokerError::unprocessable(format!(
                    "GitHub minted a token for {} with {} left, less than the {} required (min_ttl): lower min_ttl",
                    plan.target,
                    format_duration(remaining),
                    format_duration(required)
                )))
            }
            Err(error) if error.kind == ErrorKind::Unavailable => {
                let now = Instant::now();
                match self.tokens.cached(&plan.key) {
                    Some(token)
                        if token.remaining(now) >= degraded_floor
                            && !token.remaining(now).is_zero() =>
                    {
                        self.tokens.mark_served(&plan.key);
                        bump(&self.metrics.degraded_serves);
                        tracing::warn!(target = %plan.target, token = %token.token.fingerprint(), remaining_secs = token.remaining(now).as_secs(), "{}; serving a cached token on its margin", error.message);
                        Ok(token)
                    }
                    _ => Err(BrokerError::unavailable(format!(
                        "{}: no cached token with enough life left for {}",
                        error.message, plan.target
                    ))),
                }
            }
            Err(error) => Err(error),
        }
    }
}
