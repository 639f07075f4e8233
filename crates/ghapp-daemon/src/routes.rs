//! The API's routes (docs/socket-api.md), on the Unix socket and the network alike: the peer
//! check, the credential (`Authorization: Bearer`, [`crate::identity`]), method checks, request
//! parsing and size limits, the one policy model ([`crate::access`]), the per-identity mint
//! limit ([`crate::mint_limit`]), the call into the token service, metrics and the audit record.

use crate::access::{Grant, Refusal};
use crate::audit::{AuditEvent, Outcome};
use crate::identity::{Caller, Origin};
use crate::metrics::Gauges;
use crate::reply::Reply;
use crate::service::TokenService;
use crate::settings::Settings;
use crate::state::State;
use bytes::Bytes;
use ghapp_broker::{BrokerError, ErrorKind};
use ghapp_protocol::api::{
    self, InvalidateRequest, InvalidateResponse, RunnerTokenRequest, StatusResponse, TokenQuery,
};
use ghapp_protocol::time::Timestamp;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The longest query string accepted (each value is further capped at
/// [`api::MAX_QUERY_VALUE`]); longer ones get 414.
pub const MAX_QUERY_BYTES: usize = 2048;
/// The largest request body accepted (413 beyond); bodies are a token or a small JSON object.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request's route, from its path alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v1/token`: GET a token, DELETE to invalidate one.
    Token,
    /// `/v1/status`.
    Status,
    /// `/v1/runner-token`.
    RunnerToken,
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Health,
    /// tokman's health probe `/api/health`.
    ApiHealth,
    /// `/.well-known/jwks.json`: the keys that verify signed answers.
    Jwks,
    /// tokman's `/api/{namespace}/{repository}`.
    Tokman {
        /// The account (still unvalidated).
        namespace: String,
        /// The repository (still unvalidated).
        repository: String,
    },
    /// The workspace endpoint `/admin/github-installation-token`.
    Workspace,
    /// The runner service's routes (`/api/v1/runners…`, `/health`).
    Runners(crate::runner_routes::RunnerRoute),
    /// Anything else (404).
    Unmatched,
}

impl Route {
    /// Matches a path exactly (no trailing slashes, no normalization).
    pub fn parse(path: &str) -> Route {
        if let Some(runners) = crate::runner_routes::RunnerRoute::parse(path) {
            return Route::Runners(runners);
        }
        match path {
            api::TOKEN_PATH => Route::Token,
            api::STATUS_PATH => Route::Status,
            api::RUNNER_TOKEN_PATH => Route::RunnerToken,
            api::METRICS_PATH => Route::Metrics,
            api::HEALTH_PATH => Route::Health,
            api::API_HEALTH_PATH => Route::ApiHealth,
            api::JWKS_PATH => Route::Jwks,
            api::WORKSPACE_TOKEN_PATH => Route::Workspace,
            _ => match path
                .strip_prefix(api::TOKMAN_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            {
                Some((namespace, repository))
                    if !namespace.is_empty()
                        && !repository.is_empty()
                        && !repository.contains('/') =>
                {
                    Route::Tokman {
                        namespace: namespace.to_string(),
                        repository: repository.to_string(),
                    }
                }
                _ => Route::Unmatched,
            },
        }
    }

    /// The label in metrics and the audit log: the pattern, never the raw path.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Token => api::TOKEN_PATH,
            Route::Status => api::STATUS_PATH,
            Route::RunnerToken => api::RUNNER_TOKEN_PATH,
            Route::Metrics => api::METRICS_PATH,
            Route::Health => api::HEALTH_PATH,
            Route::ApiHealth => api::API_HEALTH_PATH,
            Route::Jwks => api::JWKS_PATH,
            Route::Tokman { .. } => "/api/{namespace}/{repository}",
            Route::Workspace => api::WORKSPACE_TOKEN_PATH,
            Route::Runners(route) => route.label(),
            Route::Unmatched => "unmatched",
        }
    }

    /// The `Allow` header value: the methods the route takes.
    fn allow(&self) -> &'static str {
        match self {
            Route::Token => "GET, DELETE",
            Route::RunnerToken => "POST",
            Route::Runners(route) => route.allow(),
            _ => "GET",
        }
    }

    fn takes(&self, method: &Method) -> bool {
        match self {
            Route::Token => method == Method::GET || method == Method::DELETE,
            Route::RunnerToken => method == Method::POST,
            Route::Runners(route) => route.takes(method),
            Route::Unmatched => true,
            _ => method == Method::GET,
        }
    }

    /// Scrapes and probes are not worth an audit line; everything else is.
    fn audited(&self) -> bool {
        match self {
            Route::Runners(route) => route.audited(),
            _ => !matches!(self, Route::Metrics | Route::Health) && !self.credential_free(),
        }
    }

    /// Probes and public keys: served to any caller, before (and without) authentication.
    pub fn credential_free(&self) -> bool {
        matches!(
            self,
            Route::Health
                | Route::ApiHealth
                | Route::Jwks
                | Route::Runners(crate::runner_routes::RunnerRoute::Health)
        )
    }
}

/// Answers one request from a connection of `origin`: admits a local peer, authenticates the
/// credential it presents (if any), judges the [`Caller`] by the one policy model and serves it.
pub async fn handle<S: TokenService>(
    state: &State<S>,
    origin: Origin,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if matches!(origin, Origin::Network { .. })
        && let Some(response) = credential_free(state, &request)
    {
        return response;
    }
    let started = Instant::now();
    let settings = state.settings();
    let method = request.method().clone();
    let route = Route::parse(request.uri().path());
    let mut audit = state
        .audit
        .event(&origin, method_label(&method), route.label());
    let (reply, caller) =
        answer(state, &settings, origin, route.clone(), request, &mut audit).await;

    audit.status = reply.status;
    if reply.error.is_some() && audit.outcome == Outcome::Ok {
        audit.outcome = Outcome::Failed;
    }
    audit.error = reply.error.clone();
    audit.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    state.metrics.request(route.label(), reply.status);
    state.metrics.identity_request(&caller, reply.status);
    if route.audited()
        || matches!(
            audit.outcome,
            Outcome::DeniedPeer | Outcome::DeniedCredential
        )
    {
        state.audit.record(&audit);
    }
    if reply.status >= 500 {
        tracing::warn!(caller = %caller, route = route.label(), status = reply.status, error = reply.error.as_deref().unwrap_or(""), "request failed");
    } else {
        tracing::debug!(caller = %caller, route = route.label(), status = reply.status, "request answered");
    }
    reply.into_response()
}

/// The answer, and the caller as far as it was identified.
async fn answer<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    origin: Origin,
    route: Route,
    request: Request<Incoming>,
    audit: &mut AuditEvent,
) -> (Reply, Caller) {
    let method = request.method().clone();
    let anonymous = Caller::anonymous(origin);
    if let Origin::Local(peer) = origin
        && !settings.access.admits(&peer)
    {
        state.metrics.peer_refused();
        audit.outcome = Outcome::DeniedPeer;
        tracing::warn!(peer = %peer, route = route.label(), "refused a peer that is not in allow_uids/allow_gids");
        let config = settings.config_path.display().to_string();
        let reply = Reply::error(403, settings.access.refusal_message(&peer, &config));
        return (reply, anonymous);
    }
    // Probes and public keys need no credential (and one sent anyway is not looked at).
    let credential = if route.credential_free() {
        None
    } else {
        match settings.authenticator.authenticate(request.headers()).await {
            Ok(credential) => credential,
            Err(failure) => {
                state.metrics.credential_refused();
                audit.outcome = Outcome::DeniedCredential;
                tracing::warn!(caller = %anonymous, route = route.label(), reason = %failure, "refused an invalid credential");
                let reply = Reply::error(401, format!("invalid credential: {failure}"))
                    .with_header("www-authenticate", r#"Bearer error="invalid_token""#);
                return (reply, anonymous);
            }
        }
    };
    let caller = Caller { origin, credential };
    audit.identify(&caller);
    let reply = if !route.takes(&method) {
        Reply::method_not_allowed(method_label(&method), route.label(), route.allow())
    } else {
        dispatch(state, settings, &caller, route, request, audit).await
    };
    (reply, caller)
}

/// A credential-free route ([`Route::credential_free`]) answered to a network caller before
/// authentication; `None` for every other route.
fn credential_free<S: TokenService>(
    state: &State<S>,
    request: &Request<Incoming>,
) -> Option<Response<Full<Bytes>>> {
    let route = Route::parse(request.uri().path());
    if !route.credential_free() {
        return None;
    }
    let reply = if route.takes(request.method()) {
        public_reply(state, &route)
    } else {
        Reply::method_not_allowed(method_label(request.method()), route.label(), route.allow())
    };
    state.metrics.request(route.label(), reply.status);
    Some(reply.into_response())
}

/// The answer of a credential-free route.
fn public_reply<S: TokenService>(state: &State<S>, route: &Route) -> Reply {
    match route {
        Route::ApiHealth => Reply::json(200, &serde_json::json!({"message": "ok"})),
        Route::Jwks => match state.answers.signer() {
            Ok(signer) => Reply::json(200, &signer.jwks()),
            Err(e) => answer_key_failure(&e),
        },
        Route::Runners(_) => crate::runner_routes::public_health(state.runners.as_deref()),
        _ => Reply::json(200, &serde_json::json!({"status": "ok"})),
    }
}

/// The `sub` of a signed answer when the request asks for one (`Accept: application/jwt`).
fn signed_answer_for(request: &Request<Incoming>, caller: &Caller) -> Option<String> {
    request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(crate::signed::wants_jwt)
        .then(|| caller.identity_key())
}

/// A token answer as a signed JWT for `sub` (see [`crate::signed`]).
fn signed_token<S: TokenService>(state: &State<S>, sub: &str, token: &api::TokenResponse) -> Reply {
    match state
        .answers
        .signer()
        .and_then(|signer| signer.sign(sub, token))
    {
        Ok(jws) => Reply::text(200, crate::signed::JWT_MEDIA_TYPE, jws),
        Err(e) => answer_key_failure(&e),
    }
}

/// A `500` that does not show callers where the daemon keeps its key; the log has the detail.
fn answer_key_failure(error: &crate::signed::AnswerKeyError) -> Reply {
    tracing::error!("{error}");
    Reply::error(
        500,
        "signed answers are unavailable: the daemon's answer key cannot be used (its log says why)",
    )
}

async fn dispatch<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    route: Route,
    request: Request<Incoming>,
    audit: &mut AuditEvent,
) -> Reply {
    let query_len = request.uri().query().map_or(0, str::len);
    if query_len > MAX_QUERY_BYTES {
        return Reply::error(
            414,
            format!(
                "the query string is {query_len} bytes; at most {MAX_QUERY_BYTES} are accepted"
            ),
        );
    }
    let network = matches!(caller.origin, Origin::Network { .. });
    let grant = settings.access.judge(caller);
    match route {
        Route::Token if request.method() == Method::DELETE => {
            // Knowing a token is what an invalidation needs; on the network the caller must
            // also be someone the policy knows.
            if network && let Some(refusal) = grant.refusal_for(caller) {
                return refused(refusal, audit);
            }
            invalidate(state, settings, request, audit).await
        }
        Route::Token => {
            let signed_for = signed_answer_for(&request, caller);
            token(
                state,
                settings,
                caller,
                grant,
                request.uri().query().unwrap_or(""),
                signed_for,
                audit,
            )
            .await
        }
        Route::Status => match grant.refusal_for(caller) {
            Some(refusal) if refusal.status() == 401 => refused(refusal, audit),
            _ => status(state, grant),
        },
        Route::RunnerToken => runner_token(state, settings, caller, grant, request, audit).await,
        Route::Metrics if grant.allows_metrics() || is_loopback(caller) => metrics(state),
        Route::Metrics => {
            audit.outcome = Outcome::DeniedPolicy;
            match grant.refusal_for(caller) {
                Some(refusal) if refusal.status() == 401 => refused(refusal, audit),
                _ => Reply::error(
                    403,
                    "/metrics is served only to local peers no [[policy]] restricts, to loopback, and to callers whose [[policy]] entry has metrics = true: it describes every installation and token",
                ),
            }
        }
        Route::Health | Route::ApiHealth | Route::Jwks => public_reply(state, &route),
        Route::Tokman {
            namespace,
            repository,
        } => {
            tokman(
                state,
                settings,
                caller,
                grant,
                &namespace,
                &repository,
                audit,
            )
            .await
        }
        Route::Workspace if network && caller.credential.is_none() => {
            audit.outcome = Outcome::DeniedPolicy;
            unauthenticated(format!(
                "{} on the network needs a credential: send Authorization: Bearer with a client key or an ID token",
                api::WORKSPACE_TOKEN_PATH
            ))
        }
        Route::Workspace => workspace(state, settings, caller, grant, audit).await,
        Route::Runners(route) => {
            let (method, query) = (
                request.method().clone(),
                request.uri().query().map(str::to_string),
            );
            match read_body(request, settings.client_timeout).await {
                Ok(body) => {
                    crate::runner_routes::handle(
                        state,
                        settings,
                        caller,
                        route,
                        &method,
                        query.as_deref(),
                        &body,
                        audit,
                    )
                    .await
                }
                Err(reply) => reply,
            }
        }
        Route::Unmatched => Reply::error(
            404,
            format!(
                "no route {} for this path: the API has GET/DELETE {}, GET {}, POST {}, GET {}, GET {}, GET {}{{namespace}}/{{repository}}, GET {}, GET {}, GET {} (see docs/socket-api.md)",
                method_label(request.method()),
                api::TOKEN_PATH,
                api::STATUS_PATH,
                api::RUNNER_TOKEN_PATH,
                api::METRICS_PATH,
                api::HEALTH_PATH,
                api::TOKMAN_PREFIX,
                api::WORKSPACE_TOKEN_PATH,
                api::API_HEALTH_PATH,
                api::JWKS_PATH
            ),
        ),
    }
}

/// A network caller on a loopback address (an operator's scraper on the host).
fn is_loopback(caller: &Caller) -> bool {
    caller
        .origin
        .address()
        .is_some_and(|address| match address {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            v4 => v4.is_loopback(),
        })
}

/// 401 asking for a credential.
fn unauthenticated(message: String) -> Reply {
    Reply::error(401, message).with_header("www-authenticate", "Bearer")
}

/// The method as it may appear in an answer or the audit log: one of HTTP's own, else
/// `(other)`. A request's path, query values, body and custom method are never echoed into an
/// error or a log: a secret pasted in the wrong place must not land there.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("(other)", Method::as_str)
}

fn broker_error(error: &BrokerError) -> Reply {
    Reply::error(error.kind.http_status(), error.message.clone())
}

fn refused(refusal: Refusal, audit: &mut AuditEvent) -> Reply {
    audit.outcome = Outcome::DeniedPolicy;
    match refusal {
        Refusal::Unauthenticated(message) => unauthenticated(message),
        other => Reply::error(other.status(), other.message()),
    }
}

/// Refuses (429) a caller whose mint bucket is empty. Callers no policy restricts (the
/// daemon's own uid and root, every local peer when no policy exists) are trusted with
/// everything and not limited.
fn mint_limited<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    audit: &mut AuditEvent,
) -> Option<Reply> {
    if grant.is_unrestricted() {
        return None;
    }
    let rate = settings.mint_rate;
    let wait = state
        .mint_limits
        .check(&caller.identity_key(), rate, Instant::now())
        .err()?;
    state.metrics.mint_limited();
    audit.outcome = Outcome::Limited;
    tracing::warn!(caller = %caller, retry_after_secs = wait.as_secs(), "mint limit reached");
    Some(
        Reply::error(
            429,
            format!(
                "{caller} has caused more token mints than its limit ({} per minute, bursts of {}; [network] mint_rate and mint_burst): retry in {}s",
                rate.per_minute,
                rate.burst,
                wait.as_secs()
            ),
        )
        .with_header("retry-after", wait.as_secs().to_string()),
    )
}

/// Charges a mint to the caller's bucket (see [`mint_limited`]).
fn charge_mint<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
) {
    if !grant.is_unrestricted() {
        state
            .mint_limits
            .charge(&caller.identity_key(), settings.mint_rate, Instant::now());
    }
}

/// What was asked, in the audit record (a record that will not be written is left alone).
fn describe_query(query: &TokenQuery, audit: &mut AuditEvent) {
    if !audit.detailed {
        return;
    }
    audit.host = Some(query.host_or_default().to_string());
    audit.owner = query.owner.clone();
    audit.repo = query.repo.clone();
    audit.permissions =
        (!query.permissions.is_empty()).then(|| crate::audit::permission_list(&query.permissions));
}

/// Applies the caller's grant and mint limit, asks the service; records the grant.
async fn serve_token<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    mut query: TokenQuery,
    audit: &mut AuditEvent,
) -> Result<api::TokenResponse, Reply> {
    describe_query(&query, audit);
    if let Some(refusal) = grant.refusal_for(caller) {
        return Err(refused(refusal, audit));
    }
    grant
        .check_token(&mut query)
        .map_err(|r| refused(r, audit))?;
    describe_query(&query, audit);
    if let Some(reply) = mint_limited(state, settings, caller, grant, audit) {
        return Err(reply);
    }
    match state.service.token_served(&query).await {
        Ok((token, minted)) => {
            if minted {
                charge_mint(state, settings, caller, grant);
            }
            if let Err(refusal) = grant.check_grant(&token.owner, &token.repositories) {
                tracing::warn!(caller = %caller, token = %token.token.fingerprint(), "a granted token is wider than the caller's [[policy]] entry allows; not served");
                return Err(refused(refusal, audit));
            }
            audit.granted(&token);
            state
                .metrics
                .served_token(token.expires_at.remaining(Timestamp::now()));
            Ok(token)
        }
        Err(error) => {
            audit.broker_failure(&error);
            Err(broker_error(&error))
        }
    }
}

async fn token<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    raw_query: &str,
    signed_for: Option<String>,
    audit: &mut AuditEvent,
) -> Reply {
    let mut query = match TokenQuery::parse(raw_query) {
        Ok(query) => query,
        Err(e) => return Reply::error(400, format!("invalid query: {e}")),
    };
    if query.host.is_none() {
        query.host = settings.default_host.clone();
    }
    match (
        serve_token(state, settings, caller, grant, query, audit).await,
        signed_for,
    ) {
        (Ok(token), None) => Reply::json(200, &token),
        (Ok(token), Some(sub)) => signed_token(state, &sub, &token),
        (Err(reply), _) => reply,
    }
}

async fn invalidate<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    request: Request<Incoming>,
    audit: &mut AuditEvent,
) -> Reply {
    let invalidation: InvalidateRequest =
        match read_json(request, settings, r#"{"token": "…"}"#).await {
            Ok(parsed) => parsed,
            Err(reply) => return reply,
        };
    audit.token_fingerprint = Some(invalidation.token.fingerprint());
    let invalidated = state.service.invalidate(invalidation.token.expose());
    if invalidated {
        audit.outcome = Outcome::Invalidated;
        tracing::info!(token = %invalidation.token.fingerprint(), "cached token invalidated on request");
    }
    Reply::json(200, &InvalidateResponse { invalidated })
}

/// The status page, narrowed to what the peer's grant covers: a policy-restricted peer sees the
/// installations of the accounts it may ask for and the cached tokens it could be handed, and no
/// counters; a peer granted nothing sees no installation or token.
fn status<S: TokenService>(state: &State<S>, grant: Grant<'_>) -> Reply {
    let broker = state.service.status();
    let metrics = state.service.metrics();
    let mut apps = broker.apps;
    for app in &mut apps {
        if app.rate_limit_remaining.is_none() {
            app.rate_limit_remaining = metrics.rate_limit_remaining.get(&app.name).copied();
        }
    }
    let (mut installations, mut tokens) = (broker.installations, broker.tokens);
    let counters = match grant {
        Grant::Unrestricted => state.metrics.counters(&metrics),
        Grant::Policy(_) | Grant::Both(..) => {
            // The entries' `hosts` too: an installation or token of another host is not the
            // caller's to see, even for an account it may ask for.
            installations
                .retain(|i| grant.check_host(&i.host).is_ok() && grant.covers_owner(&i.owner));
            tokens.retain(|t| {
                grant.check_host(&t.host).is_ok()
                    && grant.check_grant(&t.owner, &t.repositories).is_ok()
            });
            Default::default()
        }
        Grant::Nothing(_) => {
            installations.clear();
            tokens.clear();
            Default::default()
        }
    };
    Reply::json(
        200,
        &StatusResponse {
            version: ghapp_protocol::VERSION.to_string(),
            uptime_secs: state.uptime().as_secs(),
            socket: state.socket().display().to_string(),
            degraded: broker.degraded,
            degraded_reason: broker.degraded_reason,
            apps,
            installations,
            tokens,
            counters,
            shared_cache: broker.shared_cache,
            upstream: broker.upstream,
        },
    )
}

fn metrics<S: TokenService>(state: &State<S>) -> Reply {
    let gauges = Gauges {
        uptime: state.uptime(),
        active_connections: state.active_connections(),
        max_connections: state.max_connections(),
    };
    match state
        .metrics
        .render(&state.service.metrics(), &state.service.status(), &gauges)
    {
        Ok(page) => Reply::text(200, crate::metrics::CONTENT_TYPE, page),
        Err(_) => Reply::error(500, "the metrics page could not be written"),
    }
}

async fn runner_token<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    request: Request<Incoming>,
    audit: &mut AuditEvent,
) -> Reply {
    let wanted: RunnerTokenRequest = match read_json(
        request,
        settings,
        r#"{"org": "…", "repo": "…", "host": "…", "remove": false}"#,
    )
    .await
    {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let org = match api::check_name("org", &wanted.org) {
        Ok(org) => org,
        Err(e) => return Reply::error(400, e.to_string()),
    };
    let repo = match wanted.repo.as_deref().map(|r| api::check_name("repo", r)) {
        None => None,
        Some(Ok(repo)) => Some(repo),
        Some(Err(e)) => return Reply::error(400, e.to_string()),
    };
    let host = match wanted.host.as_deref().map(api::check_host).transpose() {
        Ok(host) => host
            .or_else(|| settings.default_host.clone())
            .unwrap_or_else(|| api::DEFAULT_HOST.to_string()),
        Err(e) => return Reply::error(400, e.to_string()),
    };
    audit.host = Some(host.clone());
    audit.owner = Some(org.clone());
    audit.repo = repo.clone();
    if let Some(refusal) = grant.refusal_for(caller) {
        return refused(refusal, audit);
    }
    if let Err(refusal) = grant
        .check_host(&host)
        .and_then(|()| grant.check_runner(&org, repo.as_deref()))
    {
        return refused(refusal, audit);
    }
    // Every runner-token request asks GitHub: each is charged as a mint.
    if let Some(reply) = mint_limited(state, settings, caller, grant, audit) {
        return reply;
    }
    charge_mint(state, settings, caller, grant);
    let issued = match &repo {
        Some(repo) => {
            state
                .service
                .repository_runner_token(&host, &org, repo, wanted.remove)
                .await
        }
        None => state.service.runner_token(&host, &org, wanted.remove).await,
    };
    match issued {
        Ok(token) => {
            audit.outcome = Outcome::Granted;
            audit.token_fingerprint = Some(token.token.fingerprint());
            audit.expires_at = Some(token.expires_at);
            Reply::json(200, &token)
        }
        Err(error) => {
            audit.broker_failure(&error);
            broker_error(&error)
        }
    }
}

/// tokman's answer.
#[derive(Serialize)]
struct TokmanToken<'a> {
    namespace: &'a str,
    repository: &'a str,
    access_token: &'a str,
}

async fn tokman<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    namespace: &str,
    repository: &str,
    audit: &mut AuditEvent,
) -> Reply {
    const PREFIX: &str = "Failed to retrieve a token";
    let names = api::check_name("namespace", namespace)
        .and_then(|owner| Ok((owner, api::check_name("repository", repository)?)));
    let (owner, repo) = match names {
        Ok(names) => names,
        Err(e) => return Reply::error(400, format!("{PREFIX}: {e}")),
    };
    let query = TokenQuery {
        host: settings.default_host.clone(),
        owner: Some(owner.clone()),
        repo: Some(repo.clone()),
        ..Default::default()
    };
    match serve_token(state, settings, caller, grant, query, audit).await {
        Ok(token) => Reply::json(
            200,
            &TokmanToken {
                namespace: &owner,
                repository: &repo,
                access_token: token.token.expose(),
            },
        ),
        Err(reply) if reply.status == ErrorKind::NotFound.http_status() => {
            // tokman's exact answer, which its clients match on.
            Reply::error(
                400,
                format!("{PREFIX}: App is not installed on {owner}/{repo}"),
            )
        }
        Err(reply) => Reply::error(
            reply.status,
            format!("{PREFIX}: {}", reply.error.unwrap_or_default()),
        ),
    }
}

/// The workspace endpoint's answer.
#[derive(Serialize)]
struct WorkspaceToken<'a> {
    token: &'a str,
    expires_at: Timestamp,
}

async fn workspace<S: TokenService>(
    state: &State<S>,
    settings: &Settings,
    caller: &Caller,
    grant: Grant<'_>,
    audit: &mut AuditEvent,
) -> Reply {
    if settings.apps_configured == 0 {
        return Reply::error(404, "no GitHub App configured");
    }
    let query = TokenQuery {
        host: settings.default_host.clone(),
        owner: settings.default_owner.clone(),
        ..Default::default()
    };
    match serve_token(state, settings, caller, grant, query, audit).await {
        Ok(token) => Reply::json(
            200,
            &WorkspaceToken {
                token: token.token.expose(),
                expires_at: token.expires_at,
            },
        ),
        Err(reply) if audit.outcome == Outcome::DeniedPolicy => reply,
        Err(reply) => {
            tracing::warn!(
                status = reply.status,
                error = reply.error.as_deref().unwrap_or(""),
                "default installation token for {} failed (set [daemon] default_owner if the host has several installations)",
                settings
                    .default_host
                    .as_deref()
                    .unwrap_or(api::DEFAULT_HOST)
            );
            let mut failure = Reply::error(500, "token refresh failed");
            // Keep the real reason in the audit record.
            failure.error = Some(format!(
                "token refresh failed: {}",
                reply.error.unwrap_or_default()
            ));
            failure
        }
    }
}

/// Reads a request body within the size cap and the client deadline.
/// Reads a JSON body within the limits; a body that does not parse gets a 400 showing the
/// `expected` shape.
async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
    settings: &Settings,
    expected: &str,
) -> Result<T, Reply> {
    let body = read_body(request, settings.client_timeout).await?;
    // serde_json's messages quote the input (`invalid type: string "ghs_…"`): say where and what
    // kind of error only.
    serde_json::from_slice(&body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                "not valid JSON"
            }
            serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Data => "JSON of another shape",
        };
        Reply::error(
            400,
            format!(
                "invalid body: expected {expected}, got {kind} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

async fn read_body(request: Request<Incoming>, deadline: Duration) -> Result<Bytes, Reply> {
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Reply::error(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    match tokio::time::timeout(
        deadline,
        Limited::new(request.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Err(_) => Err(Reply::error(
            408,
            format!(
                "request body not received within {}s",
                deadline.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Reply::error(
            413,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )),
        Ok(Err(e)) => Err(Reply::error(
            400,
            format!("cannot read the request body: {e}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exactly() {
        assert_eq!(Route::parse("/v1/token"), Route::Token);
        assert_eq!(Route::parse("/v1/token/"), Route::Unmatched);
        assert_eq!(
            Route::parse("/api/acme/widgets"),
            Route::Tokman {
                namespace: "acme".into(),
                repository: "widgets".into()
            }
        );
        assert_eq!(Route::parse("/api/acme/widgets/x"), Route::Unmatched);
        assert_eq!(Route::parse("/api/acme/"), Route::Unmatched);
        assert_eq!(Route::parse("/api//widgets"), Route::Unmatched);
        assert_eq!(
            Route::parse("/admin/github-installation-token"),
            Route::Workspace
        );
        assert_eq!(
            Route::Tokman {
                namespace: "a".into(),
                repository: "b".into()
            }
            .label(),
            "/api/{namespace}/{repository}"
        );
        assert!(Route::Token.takes(&Method::DELETE) && !Route::Token.takes(&Method::POST));
        assert!(!Route::Health.takes(&Method::HEAD));
    }

    #[test]
    fn only_http_methods_are_named() {
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let custom = Method::from_bytes(b"GHS_SECRET").unwrap();
        assert_eq!(method_label(&custom), "(other)");
    }
}
