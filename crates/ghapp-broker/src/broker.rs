//! The orchestrator ([`Core`]): the request path and everything that coordinates the broker's
//! parts. Validate the request, pick the Apps for the host, resolve the installation
//! ([`Resolver`]), plan the token, then serve it from the [`TokenCache`] or wait for its single
//! mint ([`Minter`]) — falling back to a cached token on its degraded margin while GitHub fails.
//! The parts never touch each other: a failure's [`Consequence`] for the caches (drop an App's
//! tokens, forget or suspend an installation) is carried out here, and so are the refresher's
//! rounds, runner tokens, reloads and status.

use crate::app::{AppRuntime, Runtime, Trouble};
use crate::cache::{
    Acquire, AfterFailure, CachedToken, MintPlan, MintResult, Origin, TokenCache, digest,
};
use crate::error::{BrokerError, ErrorKind};
use crate::failure::{Consequence, Failure, suspended_error};
use crate::flight::{FlightSender, spawn_flight};
use crate::github::REPLICATION_DELAY;
use crate::lookup::look_up;
use crate::metrics::{BrokerMetrics, Metrics, bump};
use crate::mint::{Minter, plan};
use crate::refresh::{Refresher, Round};
use crate::request::Request;
use crate::resolve::{Answer, Resolved, Resolver, Target};
use crate::runner::{self, RunnerAnswer, RunnerOp, RunnerOutcome, RunnerTarget};
use crate::shared::SharedCache;
use crate::status::{self, BrokerStatus};
use crate::transport::HttpTransport;
use crate::upstream::{Upstream, asked_min_ttl, relayed_too_short};
use ghapp_protocol::api::RunnerTokenResponse;
use ghapp_protocol::duration::format_duration;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A mint's result, with who minted, for scheduling.
type MintAttempt = (Result<Arc<CachedToken>, Failure>, MintedBy);

/// Who a mint went to.
enum MintedBy {
    /// A configured App.
    App(Arc<AppRuntime>),
    /// The upstream broker (`[upstream]`).
    Upstream,
    /// Nobody: the App (or upstream) is no longer configured.
    Gone,
}

/// State shared by every clone of the broker and its background tasks.
pub(crate) struct Core {
    runtime: RwLock<Arc<Runtime>>,
    tokens: TokenCache,
    resolver: Resolver,
    minter: Minter,
    metrics: Arc<Metrics>,
    /// A transport for every App instead of reqwest (tests, embedding).
    transport: Option<Arc<dyn HttpTransport>>,
    /// The cache shared with other replicas (`[cache]`), consulted inside mints and look-ups.
    shared: Option<Arc<SharedCache>>,
    /// The central broker tokens of its hosts come from (`[upstream]`), swapped on reload.
    upstream: RwLock<Option<Arc<Upstream>>>,
    /// The config file, for messages.
    config_path: RwLock<Option<PathBuf>>,
    /// Set to true to stop background work.
    stop: watch::Sender<bool>,
}

impl Core {
    /// New state around `runtime`, with its refresher running.
    pub(crate) fn start(
        runtime: Runtime,
        transport: Option<Arc<dyn HttpTransport>>,
        shared: Option<Arc<SharedCache>>,
        upstream: Option<Arc<Upstream>>,
        config_path: Option<PathBuf>,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let core = Arc::new(Core {
            runtime: RwLock::new(Arc::new(runtime)),
            tokens: TokenCache::default(),
            resolver: Resolver::default(),
            minter: Minter::new(metrics.clone()),
            metrics,
            transport,
            shared,
            upstream: RwLock::new(upstream),
            config_path: RwLock::new(config_path),
            stop: watch::channel(false).0,
        });
        let weak = Arc::downgrade(&core);
        Refresher::spawn(
            core.stop.subscribe(),
            core.tokens.wake.clone(),
            move || match weak.upgrade() {
                Some(core) => Round::NextDue(core.refresh_round()),
                None => Round::Gone,
            },
        );
        core
    }

    /// The Apps and settings in force.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The transport every App uses instead of reqwest, if one was given.
    pub(crate) fn transport(&self) -> Option<&Arc<dyn HttpTransport>> {
        self.transport.as_ref()
    }

    /// Puts a new runtime in force: Apps whose identity is unchanged keep their cached tokens
    /// and installations; the others' go.
    pub(crate) fn reload(
        &self,
        runtime: Runtime,
        upstream: Option<Arc<Upstream>>,
        config_path: Option<PathBuf>,
    ) -> usize {
        let mut identities: HashSet<String> =
            runtime.apps.iter().map(|a| a.identity.clone()).collect();
        // The upstream's tokens stay while its URL does (its identity is the URL's fingerprint).
        if let Some(upstream) = &upstream {
            identities.insert(upstream.key_identity().to_string());
        }
        *self.upstream.write().unwrap_or_else(|p| p.into_inner()) = upstream;
        *self.runtime.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(runtime);
        *self.config_path.write().unwrap_or_else(|p| p.into_inner()) = config_path;
        self.tokens.retain_apps(&identities);
        self.resolver.retain_apps(&identities);
        self.tokens.wake.notify_one();
        identities.len()
    }

    /// Stops background work.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn config_name(&self) -> String {
        self.config_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or("the config file".to_string(), |p| p.display().to_string())
    }

    /// The upstream broker in force, if any.
    fn upstream(&self) -> Option<Arc<Upstream>> {
        self.upstream
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A token for `request`: from the upstream broker's hosts through it, else from an App;
    /// true when the request waited on a mint.
    pub(crate) async fn token(
        self: &Arc<Self>,
        request: &Request,
    ) -> Result<(Arc<CachedToken>, bool), BrokerError> {
        let Some(upstream) = self.upstream().filter(|u| u.serves(&request.host)) else {
            return self
                .token_for(request)
                .await
                .map(|(token, _, minted)| (token, minted));
        };
        let runtime = self.runtime();
        let plan = Arc::new(upstream.plan(request));
        let required = request
            .min_ttl
            .unwrap_or_default()
            .max(runtime.settings.min_ttl);
        self.obtain(
            &runtime,
            upstream.failing(),
            &plan,
            required,
            request.min_ttl,
        )
        .await
        .map_err(|e| e.with_target(request.target().label()))
    }

    /// A token for `request`, with the App that minted it and whether this request waited on
    /// a mint (a cache miss) rather than a cached token. Every error names the target.
    pub(crate) async fn token_for(
        self: &Arc<Self>,
        request: &Request,
    ) -> Result<(Arc<CachedToken>, Arc<AppRuntime>, bool), BrokerError> {
        self.serve(request)
            .await
            .map_err(|e| e.with_target(request.target().label()))
    }

    /// The request path of [`Self::token_for`].
    async fn serve(
        self: &Arc<Self>,
        request: &Request,
    ) -> Result<(Arc<CachedToken>, Arc<AppRuntime>, bool), BrokerError> {
        let runtime = self.runtime();
        let apps = request.candidate_apps(&runtime, || self.config_name())?;
        let target = request.target();
        let required = request
            .min_ttl
            .unwrap_or_default()
            .max(runtime.settings.min_ttl);
        let mut re_resolved = false;
        loop {
            let resolved = self.resolve(&runtime, &apps, &target).await.map_err(|e| {
                if e.kind == ErrorKind::Unavailable {
                    let message = format!(
                        "{}: no cached token with enough life left for {}",
                        e.message,
                        target.label()
                    );
                    e.with_message(message)
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
                    .with_app(resolved.app_name.clone())
                })?;
            if resolved.installation.suspended {
                return Err(suspended_error(
                    &app.describe(),
                    resolved.installation.id,
                    &resolved.installation.account,
                )
                .with_app(app.name()));
            }
            let label = match &request.repo {
                Some(repo) => format!("{}/{repo}", request.owner.as_deref().unwrap_or_default()),
                None => format!("account {}", resolved.installation.account),
            };
            let plan = Arc::new(
                plan(
                    &app,
                    &request.host,
                    &resolved,
                    request.repo.as_deref(),
                    &request.permissions,
                    label,
                )
                .map_err(|e| e.with_app(app.name()))?,
            );
            let failing = app.health.trouble() == Some(Trouble::Unreachable);
            match self
                .obtain(&runtime, failing, &plan, required, request.min_ttl)
                .await
            {
                Ok((token, minted)) => return Ok((token, app, minted)),
                // The installation is gone (App reinstalled under a new id): look it up again, once.
                Err(error) if error.kind == ErrorKind::NotFound && !re_resolved => {
                    tracing::info!(target = %target.label(), "{}; resolving the installation again", error.message);
                    re_resolved = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The installation serving `target` among `apps`, from the resolver; a look-up's
    /// consequences for the caches are carried out here.
    async fn resolve(
        self: &Arc<Self>,
        runtime: &Runtime,
        apps: &[Arc<AppRuntime>],
        target: &Target,
    ) -> Result<Arc<Resolved>, BrokerError> {
        // The look-up's owned copies are made only when it runs (a cache miss): a hit pays for
        // none of them.
        let start_look_up = || {
            let core = self.clone();
            let asked_apps = apps.to_vec();
            let asked = target.clone();
            async move {
                let shared = core.shared.clone();
                let ttl = core.runtime().settings.installation_cache_ttl;
                let identities: Vec<String> =
                    asked_apps.iter().map(|a| a.identity.clone()).collect();
                if let Some(shared) = &shared
                    && let Some(resolved) = shared.fetch_installation(&asked, &identities).await
                {
                    return Ok(Answer::Found(Arc::new(resolved)));
                }
                let outcome = look_up(&asked_apps, &asked, &core.metrics).await;
                if let (Some(shared), Ok(Answer::Found(resolved))) = (&shared, &outcome.answer) {
                    shared
                        .store_installation(&asked, &identities, resolved, ttl)
                        .await;
                }
                for (app, consequence) in &outcome.consequences {
                    core.apply(app, consequence);
                }
                core.resolver
                    .note_enterprise(&asked.host, &outcome.enterprise);
                outcome.answer
            }
        };
        self.resolver
            .resolve(&runtime.settings, apps, target, start_look_up)
            .await
    }

    /// The token of `plan`: cached with `required` life, or from its (single) mint; when GitHub
    /// (or the upstream broker) is `failing`, a cached token with the degraded margin. True when
    /// the caller waited on a mint.
    async fn obtain(
        self: &Arc<Self>,
        runtime: &Runtime,
        failing: bool,
        plan: &Arc<MintPlan>,
        required: Duration,
        asked_min_ttl: Option<Duration>,
    ) -> Result<(Arc<CachedToken>, bool), BrokerError> {
        // The caller's own min_ttl is never relaxed; the daemon's is, to degraded_min_ttl.
        let degraded_floor = asked_min_ttl
            .unwrap_or_default()
            .max(runtime.settings.degraded_min_ttl);
        let acquired = self.tokens.acquire(
            plan,
            required,
            failing.then_some(degraded_floor),
            |minting, tx| self.spawn_mint(minting, tx, Origin::Caller),
        );
        let flight = match acquired {
            Acquire::Fresh(token) => {
                bump(&self.metrics.cache_hits);
                return Ok((token, false));
            }
            Acquire::Degraded(token) => {
                bump(&self.metrics.cache_hits);
                bump(&self.metrics.degraded_serves);
                tracing::warn!(target = %plan.target, token = %token.token.fingerprint(), remaining_secs = token.remaining(Instant::now()).as_secs(), "GitHub failing: serving a cached token on its margin");
                return Ok((token, false));
            }
            Acquire::Wait(flight) => flight,
        };
        bump(&self.metrics.cache_misses);
        let result = flight
            .wait()
            .await
            .unwrap_or_else(|| Err(BrokerError::internal("the token mint task failed")));
        self.after_mint(plan, result, required, degraded_floor)
            .map(|token| (token, true))
    }

    /// What a caller gets from the mint it waited on: the token if it has `required` life;
    /// while GitHub fails, a cached token with `degraded_floor` left; else the error.
    fn after_mint(
        &self,
        plan: &MintPlan,
        result: MintResult,
        required: Duration,
        degraded_floor: Duration,
    ) -> MintResult {
        match result {
            Ok(token) => {
                let remaining = token.remaining(Instant::now());
                if remaining >= required {
                    self.tokens.mark_served(&plan.key);
                    return Ok(token);
                }
                if self.upstream().is_some_and(|u| u.planned(plan)) {
                    return Err(relayed_too_short(plan, remaining, required));
                }
                Err(BrokerError::unprocessable(format!(
                    "GitHub minted a token for {} with {} left, less than the {} required (min_ttl): lower min_ttl",
                    plan.target,
                    format_duration(remaining),
                    format_duration(required)
                ))
                .with_app(&*plan.app_name)
                .with_installation(plan.key.installation_id)
                .with_target(plan.target.clone()))
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
                    _ => {
                        let message = format!(
                            "{}: no cached token with enough life left for {}",
                            error.message, plan.target
                        );
                        Err(error.with_message(message))
                    }
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Spawns the mint of `plan`; the result goes to `tx` after the cache is updated. A mint
    /// task that dies (a panic under it, the runtime shutting down) still ends its flight.
    fn spawn_mint(
        self: &Arc<Self>,
        plan: Arc<MintPlan>,
        tx: FlightSender<MintResult>,
        origin: Origin,
    ) {
        let (core, settler) = (self.clone(), self.clone());
        let minting = plan.clone();
        spawn_flight(
            tx,
            async move { core.mint(&minting, origin).await },
            move |outcome| settler.settle_mint(&plan, origin, outcome),
        );
    }

    /// Mints `plan` with its App (if still configured), or fetches it from the upstream broker
    /// (asking for the life a caller's, or a refresh's, token must have here); who minted comes
    /// back for scheduling.
    async fn mint(&self, plan: &Arc<MintPlan>, origin: Origin) -> MintAttempt {
        if let Some(upstream) = self.upstream().filter(|u| u.planned(plan)) {
            let min_ttl = asked_min_ttl(&self.runtime().settings, origin);
            return (upstream.fetch(plan, min_ttl).await, MintedBy::Upstream);
        }
        let Some(app) = self.runtime().app(&plan.key.app_identity).cloned() else {
            let error = BrokerError::internal(format!(
                "GitHub App {} is no longer configured",
                plan.app_name
            ))
            .with_app(&*plan.app_name);
            return (
                Err(Failure {
                    error,
                    consequence: None,
                }),
                MintedBy::Gone,
            );
        };
        let result = match &self.shared {
            Some(shared) => {
                let settings = self.runtime().settings.clone();
                shared
                    .mint_once(plan, &settings, || self.minter.mint(&app, plan))
                    .await
            }
            None => self.minter.mint(&app, plan).await,
        };
        (result, MintedBy::App(app))
    }

    /// Records a mint's outcome — in the token cache, the metrics, and for a failure its
    /// consequence — and returns what waiters get; `None`: the mint's task died.
    fn settle_mint(
        &self,
        plan: &Arc<MintPlan>,
        origin: Origin,
        outcome: Option<MintAttempt>,
    ) -> MintResult {
        let Some((result, minted_by)) = outcome else {
            let result: MintResult = Err(BrokerError::internal(format!(
                "the token mint for {} failed unexpectedly (see the daemon's log); the next request tries again",
                plan.target
            ))
            .with_app(&*plan.app_name)
            .with_installation(plan.key.installation_id)
            .with_target(plan.target.clone()));
            self.tokens.finish(plan, &result, AfterFailure::Keep);
            return result;
        };
        match (&result, origin) {
            (Ok(_), Origin::Refresh) => bump(&self.metrics.refreshes),
            (Err(_), Origin::Refresh) => bump(&self.metrics.refresh_failures),
            _ => {}
        }
        let (result, after_failure) = match result {
            Ok(token) => (Ok(token), AfterFailure::Keep),
            Err(Failure { error, consequence }) => {
                let after = match (&consequence, &minted_by) {
                    // The App is gone, or the installation: the old token goes too.
                    (_, MintedBy::Gone)
                    | (
                        Some(Consequence::ForgetInstallation(_) | Consequence::MarkSuspended(_)),
                        _,
                    ) => AfterFailure::Drop,
                    (_, MintedBy::App(app)) => AfterFailure::Retry {
                        not_before: app.client.mint_held_until().map(|(until, _)| until),
                    },
                    (_, MintedBy::Upstream) => AfterFailure::Retry { not_before: None },
                };
                if let (Some(consequence), MintedBy::App(app)) = (&consequence, &minted_by) {
                    self.apply(app, consequence);
                }
                (Err(error), after)
            }
        };
        self.tokens.finish(plan, &result, after_failure);
        result
    }

    /// Carries out what a failure of `app` means for the caches.
    fn apply(&self, app: &AppRuntime, consequence: &Consequence) {
        match consequence {
            Consequence::DropAppTokens => {
                let dropped = self.tokens.drop_app(&app.identity);
                tracing::info!(app = %app.name(), dropped_tokens = dropped, "dropped the App's cached tokens: GitHub rejects its JWT");
            }
            Consequence::ForgetInstallation(id) => {
                self.resolver.forget_installation(*id);
                if let Some(shared) = &self.shared {
                    let ttl = self.runtime().settings.installation_cache_ttl;
                    shared.distrust_installation(*id, ttl);
                }
            }
            Consequence::MarkSuspended(id) => {
                let ttl = self.runtime().settings.negative_cache_ttl;
                self.resolver.mark_suspended(*id, ttl);
            }
        }
    }

    /// One refresher round: evict, start due refreshes; returns when the next one falls due.
    fn refresh_round(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let runtime = self.runtime();
        self.tokens.evict_expired(now);
        self.resolver.evict(now);
        let (due, next) = self.tokens.refresh_due(now, &runtime.settings);
        for plan in due {
            let started = self.tokens.start_refresh(&plan, |minting, tx| {
                self.spawn_mint(minting, tx, Origin::Refresh)
            });
            if started {
                tracing::debug!(target = %plan.target, "refreshing a token in the background");
            }
        }
        next
    }

    /// The installation-token request for runner calls on `target`, and the target with its
    /// names as validated (lower-cased).
    fn runner_request(
        host: &str,
        target: RunnerTarget,
    ) -> Result<(Request, RunnerTarget), BrokerError> {
        let request = Request::from_query(&runner::runner_query(host, &target)?)?;
        let target = match (&request.owner, &request.repo, target) {
            (Some(owner), Some(repo), RunnerTarget::Repository { .. }) => {
                RunnerTarget::Repository {
                    owner: owner.clone(),
                    repo: repo.clone(),
                }
            }
            (Some(owner), _, RunnerTarget::Organization(_)) => {
                RunnerTarget::Organization(owner.clone())
            }
            (_, _, target) => target,
        };
        Ok((request, target))
    }

    /// What a runner call's answer means for its retry loop: `Some` to return (the answer, or
    /// the failure after recording it and applying its consequence); `None` when GitHub no
    /// longer accepts the cached token, which is then dropped so the next try mints a new one.
    fn settle_runner_answer<T>(
        &self,
        app: &AppRuntime,
        token: &CachedToken,
        answer: RunnerAnswer<T>,
    ) -> Option<Result<T, BrokerError>> {
        match answer {
            RunnerAnswer::Issued(answer) => Some(Ok(answer)),
            RunnerAnswer::Revoked => {
                tracing::warn!(app = %app.name(), token = %token.token.fingerprint(), "GitHub no longer accepts the cached installation token; minting a new one");
                self.tokens.invalidate(token.token.expose());
                None
            }
            RunnerAnswer::Failed(failure) => {
                self.metrics.record_github_failure(&failure.error);
                if let Some(consequence) = &failure.consequence {
                    self.apply(app, consequence);
                }
                Some(Err(failure.error))
            }
        }
    }

    /// A runner registration (or removal, with `remove`) token for `target` on `host`.
    pub(crate) async fn runner_token(
        self: &Arc<Self>,
        host: &str,
        target: RunnerTarget,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        let (request, target) = Self::runner_request(host, target)?;
        let mut retried = false;
        loop {
            let (token, app, _) = self
                .token_for(&request)
                .await
                .map_err(|e| Self::runner_advice(&target, e))?;
            let answer = runner::ask(&app, &token, &request.host, &target, remove, !retried).await;
            if let Some(settled) = self.settle_runner_answer(&app, &token, answer) {
                return settled;
            }
            retried = true;
        }
    }

    /// A runner-management call (`op`: list, get, delete, generate-jitconfig) on `target` at
    /// `host`, with an installation token holding the runner permission at write.
    pub(crate) async fn manage_runners(
        self: &Arc<Self>,
        host: &str,
        target: RunnerTarget,
        op: RunnerOp,
    ) -> Result<RunnerOutcome, BrokerError> {
        let (request, target) = Self::runner_request(host, target)?;
        let mut retried = false;
        loop {
            let (token, app, _) = self
                .token_for(&request)
                .await
                .map_err(|e| Self::runner_advice(&target, e))?;
            let answer = runner::manage(&app, &token, &request.host, &target, &op, !retried).await;
            if let Some(settled) = self.settle_runner_answer(&app, &token, answer) {
                return settled;
            }
            retried = true;
        }
    }

    /// A runner-token request's failure, with advice for an organization's runners asked of
    /// an account whose installation cannot have them (a user account's repositories get
    /// runners one repository at a time).
    fn runner_advice(target: &RunnerTarget, error: BrokerError) -> BrokerError {
        let RunnerTarget::Organization(owner) = target else {
            return error;
        };
        if !matches!(error.kind, ErrorKind::Unprocessable | ErrorKind::NotFound)
            || error.message.contains("OWNER/REPO")
        {
            return error;
        }
        let message = format!(
            "{}; if {owner} is a user account, its repositories get runners one at a time: `ghapp runner-token OWNER/REPO`",
            error.message
        );
        error.with_message(message)
    }

    /// Drops the cached entry holding exactly this token (see [`crate::Broker::invalidate`]).
    pub(crate) fn invalidate(&self, token: &str) -> bool {
        if let Some(young) = self.tokens.find(token)
            && young.minted_at().elapsed() < REPLICATION_DELAY
        {
            tracing::info!(token = %young.token.fingerprint(), app = %young.key.app_name, installation = young.installation_id(), minted_ms_ago = young.minted_at().elapsed().as_millis() as u64, "kept a token asked to be invalidated: it is younger than GitHub's replication delay, so a 401 for it is not a revocation");
            return false;
        }
        match self.tokens.invalidate(token) {
            Some(dropped) => {
                tracing::info!(token = %dropped.token.fingerprint(), app = %dropped.key.app_name, installation = dropped.installation_id(), "invalidated a cached token");
                // The other replicas must not take it again from the shared cache.
                if let Some(shared) = self.shared.clone()
                    && tokio::runtime::Handle::try_current().is_ok()
                {
                    tokio::spawn(async move {
                        shared
                            .forget_token(&dropped.key, digest(dropped.token.expose()))
                            .await;
                    });
                }
                true
            }
            None => false,
        }
    }

    /// Apps, installations, cached tokens, and whether GitHub is failing.
    pub(crate) fn status(&self) -> BrokerStatus {
        let mut status = status::status(
            &self.runtime(),
            self.resolver.installations(),
            self.tokens.snapshot(),
        );
        status.shared_cache = self.shared.as_ref().map(|shared| shared.status());
        if let Some(upstream) = self.upstream() {
            let upstream = upstream.status();
            if let Some(problem) = &upstream.problem {
                status.degraded = true;
                let reason = format!("upstream broker {}: {problem}", upstream.url);
                status.degraded_reason = Some(match status.degraded_reason.take() {
                    Some(apps) => format!("{apps}; {reason}"),
                    None => reason,
                });
            }
            status.upstream = Some(upstream);
        }
        status
    }

    /// Counter snapshot.
    pub(crate) fn metrics(&self) -> BrokerMetrics {
        let rate_limits: BTreeMap<String, u64> = self
            .runtime()
            .apps
            .iter()
            .filter_map(|app| Some((app.name().to_string(), app.client.rate_limit_remaining()?)))
            .collect();
        self.metrics.snapshot(rate_limits)
    }
}
