//! One App's client for GitHub's REST API: the headers GitHub asks for, the App JWT or an
//! installation token, and the failure handling every call shares:
//!
//! - 5xx, timeouts and dropped connections: retried with jittered exponential backoff, at most
//!   [`MAX_ATTEMPTS`](crate::retry::MAX_ATTEMPTS) attempts within `retry_budget`;
//! - 403/429 rate limits: GitHub's wait is honoured, and remembered so no request is sent to
//!   this App's API before it ends; a wait beyond the budget fails the call at once;
//! - a clock-skew 401 on a JWT route: the offset is learnt from `Date`, one retry;
//! - a 401 with an installation token minted under 5 s ago (GitHub's replication delay):
//!   retried with short exponential sleeps until the token is 5 s old;
//! - 404/422 and other 4xx: never retried;
//! - an operation that failed for good (no usable answer after its retries, or the JWT
//!   rejected): the App's next operations are held back, 1 s doubling to 10 s, one trial at a
//!   time, so waiting callers and cache keys cause no retry storm ([`Holdoff`]).
//!
//! Errors quote GitHub's `message` and name the route; they never contain a token.

mod json;

use crate::clock::ServerTime;
use crate::config::TokenFormat;
use crate::error::BrokerError;
use crate::jwt::{JwtSigner, is_clock_skew_message};
use crate::retry::{RetryPolicy, backoff, parse_retry_after, rate_limit};
use crate::transport::{HttpRequest, HttpResponse, HttpTransport, Method};
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use serde::Serialize;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// GitHub's REST API version the broker speaks.
pub(crate) const API_VERSION: &str = "2022-11-28";
/// A 401 with a token younger than this is GitHub's replication delay, not a rejection.
pub(crate) const REPLICATION_DELAY: Duration = Duration::from_secs(5);
/// Most pages of `GET /app/installations` read (100 per page).
const MAX_INSTALLATION_PAGES: usize = 100;

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// The App JWT.
    App,
    /// An installation token, minted at `minted_at` (for the replication-delay rule).
    Installation {
        token: &'a Token,
        minted_at: Instant,
    },
}

/// Why a GitHub call failed, before the caller adds its context.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// GitHub answered an error status that retrying will not fix.
    Status {
        status: u16,
        message: String,
        route: String,
    },
    /// GitHub rejected the App JWT (after any clock correction).
    JwtRejected {
        status: u16,
        message: String,
        route: String,
    },
    /// Rate limited beyond what the budget allows waiting for.
    RateLimited { until: SystemTime, route: String },
    /// No usable answer after the retries: transport failures or 5xx.
    Unreachable { detail: String },
    /// An answer that is not what GitHub documents.
    Protocol { detail: String },
}

impl ApiError {
    /// True for failures of GitHub rather than of the request: worth serving from cache.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. } | ApiError::Unreachable { .. }
        )
    }

    /// What happened, for messages ("HTTP 503 from POST /app/…: Service Unavailable").
    pub(crate) fn detail(&self) -> String {
        match self {
            ApiError::Status {
                status,
                message,
                route,
            }
            | ApiError::JwtRejected {
                status,
                message,
                route,
            } => {
                format!("HTTP {status} from {route}: {message}")
            }
            ApiError::RateLimited { until, route } => {
                format!(
                    "rate limited by GitHub until {} ({route})",
                    Timestamp::from(*until)
                )
            }
            ApiError::Unreachable { detail } | ApiError::Protocol { detail } => detail.clone(),
        }
    }

    /// This failure repeated to an operation that was not sent because of it, with `note`.
    fn held(&self, note: &str) -> ApiError {
        match self.clone() {
            ApiError::Unreachable { detail } => ApiError::Unreachable {
                detail: format!("{detail}; {note}"),
            },
            ApiError::JwtRejected {
                status,
                message,
                route,
            } => ApiError::JwtRejected {
                status,
                message: format!("{message}; {note}"),
                route,
            },
            other => other,
        }
    }

    /// The generic mapping, for callers with nothing more specific to say. `app` describes
    /// the App (`acme-bot (id 12345)`).
    pub(crate) fn into_broker_error(self, app: &str) -> BrokerError {
        match &self {
            ApiError::RateLimited { .. } | ApiError::Unreachable { .. } => {
                BrokerError::unavailable(format!("GitHub unreachable ({})", self.detail()))
            }
            ApiError::JwtRejected { .. } => jwt_rejected_error(app, &self.detail()),
            ApiError::Status { status: 403, .. } => {
                BrokerError::forbidden(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { status: 404, .. } => {
                BrokerError::not_found(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { status: 422, .. } => {
                BrokerError::unprocessable(format!("GitHub App {app}: {}", self.detail()))
            }
            ApiError::Status { .. } | ApiError::Protocol { .. } => {
                BrokerError::internal(format!("GitHub App {app}: {}", self.detail()))
            }
        }
    }
}

/// The "bad key" error: GitHub does not accept this App's JWT.
pub(crate) fn jwt_rejected_error(app: &str, detail: &str) -> BrokerError {
    BrokerError::internal(format!(
        "GitHub rejected the JWT of App {app} ({detail}): check app_id/client_id and that the private key is the App's current key"
    ))
}

/// An installation as the broker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallationInfo {
    /// Installation id.
    pub id: u64,
    /// The account's login (`acme`).
    pub account: String,
    /// What the installation was granted.
    pub permissions: Permissions,
    /// Suspended by the account or GitHub.
    pub suspended: bool,
}

/// The body of `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct TokenRequestBody {
    /// Repository names (bare, within the installation's account).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Permissions; absent means everything the installation has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// A freshly minted installation token.
#[derive(Debug)]
pub(crate) struct MintedToken {
    pub token: Token,
    /// GitHub's `expires_at`.
    pub expires_at: Timestamp,
    /// When the answer arrived, by both clocks and GitHub's.
    pub server_time: ServerTime,
    /// What GitHub granted.
    pub permissions: Permissions,
    /// Granted permissions ghapp does not recognise (treated as more than asked).
    pub unrecognised_permissions: Vec<String>,
    /// The repositories it is narrowed to, when GitHub listed them.
    pub repositories: Option<Vec<String>>,
}

/// A runner registration or removal token.
#[derive(Debug)]
pub(crate) struct RunnerToken {
    pub token: Token,
    /// GitHub's `expires_at`.
    pub expires_at: Timestamp,
}

#[derive(Default)]
struct RateState {
    limited_until: Option<Instant>,
    limited_until_wall: Option<SystemTime>,
    remaining: Option<u64>,
}

/// The longest hold-off after failed operations (see [`Holdoff`]).
pub(crate) const HOLDOFF_CAP: Duration = Duration::from_secs(10);

/// After GitHub fails an operation in a way that retrying at once will not fix — no usable
/// answer after all the retries, or the App's JWT rejected — the App's next operations are held
/// back instead of every waiting caller and cache key trying again (a retry storm against a
/// GitHub that is down, or hammering it with a key it refuses): 1 s after the first failure,
/// doubling to [`HOLDOFF_CAP`], jittered — so recovery after GitHub returns takes at most that
/// long. When the hold ends, one operation goes through as a
/// trial while the others stay held; any answer from GitHub ends the hold-off. Callers are
/// served from cache meanwhile, as for any failure.
#[derive(Default)]
struct Holdoff {
    /// Operations failed in a row.
    failures: u32,
    /// No operation starts before this.
    until: Option<Instant>,
    /// The trial operation is in flight.
    trial: bool,
    /// The last failure, repeated to held operations.
    last: Option<ApiError>,
}

/// One App's API client.
pub(crate) struct GitHubClient {
    api_base: String,
    signer: JwtSigner,
    transport: Arc<dyn HttpTransport>,
    policy: RetryPolicy,
    token_format: Option<TokenFormat>,
    rate: Mutex<RateState>,
    holdoff: Mutex<Holdoff>,
}

/// Ends the trial of a hold-off if its operation is dropped before it finishes.
struct TrialGuard<'a> {
    holdoff: &'a Mutex<Holdoff>,
    active: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.active {
            self.holdoff.lock().unwrap_or_else(|p| p.into_inner()).trial = false;
        }
    }
}

impl GitHubClient {
    /// A client for the API at `api_base` (no trailing slash).
    pub(crate) fn new(
        api_base: String,
        signer: JwtSigner,
        transport: Arc<dyn HttpTransport>,
        policy: RetryPolicy,
        token_format: Option<TokenFormat>,
    ) -> Self {
        GitHubClient {
            api_base,
            signer,
            transport,
            policy,
            token_format,
            rate: Mutex::new(RateState::default()),
            holdoff: Mutex::new(Holdoff::default()),
        }
    }

    /// Whether an operation may start now: `Ok(true)` as the hold-off's trial, `Ok(false)`
    /// when no hold-off is in force, `Err` (the last failure, marked as held) otherwise.
    fn admit(&self, route: &str) -> Result<bool, ApiError> {
        let mut holdoff = self.holdoff.lock().unwrap_or_else(|p| p.into_inner());
        if holdoff.failures == 0 {
            return Ok(false);
        }
        let now = Instant::now();
        let wait = holdoff
            .until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        if holdoff.trial || !wait.is_zero() {
            let note = format!(
                "not sent: {} GitHub operation(s) in a row failed, the next try in {:.1}s",
                holdoff.failures,
                wait.as_secs_f64()
            );
            return Err(match &holdoff.last {
                Some(last) => last.held(&note),
                None => ApiError::Unreachable {
                    detail: format!("{route}: {note}"),
                },
            });
        }
        holdoff.trial = true;
        Ok(true)
    }

    /// Records how an operation ended: a failure retrying will not fix soon extends the
    /// hold-off, any answer from GitHub ends it.
    fn settle<T>(&self, result: &Result<T, ApiError>) {
        let mut holdoff = self.holdoff.lock().unwrap_or_else(|p| p.into_inner());
        holdoff.trial = false;
        match result {
            Err(error @ (ApiError::Unreachable { .. } | ApiError::JwtRejected { .. })) => {
                holdoff.failures = holdoff.failures.saturating_add(1);
                let full =
                    Duration::from_secs(1u64 << (holdoff.failures - 1).min(5)).min(HOLDOFF_CAP);
                let wait = full.mul_f64(0.5 + fastrand::f64() * 0.5);
                holdoff.until = Some(Instant::now() + wait);
                holdoff.last = Some(error.clone());
                tracing::debug!(
                    failures = holdoff.failures,
                    wait_ms = wait.as_millis() as u64,
                    "holding this App's GitHub operations back after a failure"
                );
            }
            _ => {
                if holdoff.failures > 0 {
                    tracing::debug!(
                        failures = holdoff.failures,
                        "GitHub answered again: hold-off ended"
                    );
                }
                *holdoff = Holdoff::default();
            }
        }
    }

    /// GitHub's last `x-ratelimit-remaining` for this App.
    pub(crate) fn rate_limit_remaining(&self) -> Option<u64> {
        self.rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remaining
    }

    /// Until when no request may be sent (GitHub's rate-limit wait), if one is in force.
    pub(crate) fn rate_limited_until(&self) -> Option<(Instant, SystemTime)> {
        let rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        match (rate.limited_until, rate.limited_until_wall) {
            (Some(until), Some(wall)) if until > Instant::now() => Some((until, wall)),
            _ => None,
        }
    }

    /// The JWT clock offset in use (GitHub minus local, seconds).
    pub(crate) fn clock_offset(&self) -> i64 {
        self.signer.clock_offset()
    }

    /// The installation serving a repository; `None` when the App is not installed on it.
    pub(crate) async fn repo_installation(
        &self,
        owner: &str,
        repo: &str,
    ) -> Result<Option<InstallationInfo>, ApiError> {
        self.installation_at(&format!("/repos/{owner}/{repo}/installation"))
            .await
    }

    /// The installation on an account: `/orgs/{o}/installation`, then `/users/{o}/installation`
    /// when that is 404 (a user account, or not installed). `None` when neither has one.
    pub(crate) async fn owner_installation(
        &self,
        owner: &str,
    ) -> Result<Option<InstallationInfo>, ApiError> {
        if let Some(found) = self
            .installation_at(&format!("/orgs/{owner}/installation"))
            .await?
        {
            return Ok(Some(found));
        }
        self.installation_at(&format!("/users/{owner}/installation"))
            .await
    }

    async fn installation_at(&self, path: &str) -> Result<Option<InstallationInfo>, ApiError> {
        match self.call(Method::Get, path, Auth::App, None, &[]).await {
            Ok((response, _)) => {
                let json: json::InstallationJson = parse_json(&response, path)?;
                Ok(Some(installation_info(json)))
            }
            Err(ApiError::Status {
                status: 404,
                message,
                route,
            }) => {
                if message.contains("Integration not found") {
                    // The App itself is unknown: a wrong app_id/client_id, not "not installed".
                    return Err(ApiError::JwtRejected {
                        status: 404,
                        message,
                        route,
                    });
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every installation of the App (`GET /app/installations`, 100 per page, following
    /// `Link: rel="next"` on the same API only).
    pub(crate) async fn installations(&self) -> Result<Vec<InstallationInfo>, ApiError> {
        let mut all = Vec::new();
        let mut next = Some(format!("{}/app/installations?per_page=100", self.api_base));
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_INSTALLATION_PAGES {
                return Err(ApiError::Protocol {
                    detail: format!(
                        "GET /app/installations has more than {MAX_INSTALLATION_PAGES} pages"
                    ),
                });
            }
            let (response, _) = self.call(Method::Get, &url, Auth::App, None, &[]).await?;
            let page: Vec<json::InstallationJson> =
                parse_json(&response, "GET /app/installations")?;
            all.extend(page.into_iter().map(installation_info));
            if let Some(link) = response.header("link").and_then(next_link) {
                if !link.starts_with(&format!("{}/", self.api_base)) {
                    return Err(ApiError::Protocol {
                        detail: format!(
                            "GET /app/installations: next page {link} is outside {}",
                            self.api_base
                        ),
                    });
                }
                next = Some(link);
            }
        }
        Ok(all)
    }

    /// Mints an installation token.
    pub(crate) async fn create_token(
        &self,
        installation_id: u64,
        body: &TokenRequestBody,
    ) -> Result<MintedToken, ApiError> {
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let route = format!("POST {path}");
        let json = serde_json::to_vec(body).map_err(|e| ApiError::Protocol {
            detail: format!("{route}: {e}"),
        })?;
        let mut extra = Vec::new();
        match self.token_format {
            Some(TokenFormat::Stateless) => extra.push(("x-github-stateless-s2s-token", "enabled")),
            Some(TokenFormat::Classic) => extra.push(("x-github-stateless-s2s-token", "disabled")),
            None => {}
        }
        let (response, server_time) = self
            .call(Method::Post, &path, Auth::App, Some(json), &extra)
            .await?;
        let parsed: json::AccessTokenJson = parse_json(&response, &route)?;
        if parsed.token.is_empty() {
            return Err(ApiError::Protocol {
                detail: format!("{route}: empty token"),
            });
        }
        let (permissions, unrecognised_permissions) =
            json::permissions_from_map(&parsed.permissions);
        Ok(MintedToken {
            token: Token::new(parsed.token),
            expires_at: parsed.expires_at,
            server_time,
            permissions,
            unrecognised_permissions,
            repositories: parsed
                .repositories
                .map(|repos| repos.into_iter().map(|r| r.name).collect()),
        })
    }

    /// A runner registration (or removal) token for `org`, using an installation token that
    /// has `organization_self_hosted_runners: write`.
    pub(crate) async fn runner_token(
        &self,
        org: &str,
        remove: bool,
        token: &Token,
        minted_at: Instant,
    ) -> Result<RunnerToken, ApiError> {
        let kind = if remove {
            "remove-token"
        } else {
            "registration-token"
        };
        let path = format!("/orgs/{org}/actions/runners/{kind}");
        let (response, _) = self
            .call(
                Method::Post,
                &path,
                Auth::Installation { token, minted_at },
                None,
                &[],
            )
            .await?;
        let parsed: json::RunnerTokenJson = parse_json(&response, &format!("POST {path}"))?;
        Ok(RunnerToken {
            token: Token::new(parsed.token),
            expires_at: parsed.expires_at,
        })
    }

    /// One logical call, unless a hold-off is in force (see [`Holdoff`]): retries, rate-limit
    /// waits, clock-skew and replication-delay handling. Returns only 2xx answers;
    /// `path_or_url` is a path under the API base or a full URL on it.
    async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        auth: Auth<'_>,
        body: Option<Vec<u8>>,
        extra_headers: &[(&str, &str)],
    ) -> Result<(HttpResponse, ServerTime), ApiError> {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.api_base)
        };
        let route = format!("{} {}", method.as_str(), route_of(&url, &self.api_base));
        let trial = self.admit(&route)?;
        let guard = TrialGuard {
            holdoff: &self.holdoff,
            active: trial,
        };
        let result = self
            .call_with_retries(method, &url, route, auth, body, extra_headers)
            .await;
        self.settle(&result);
        drop(guard);
        result
    }

    /// The retry loop of [`Self::call`], for the full `url` and its `route` (`POST
    /// /app/installations/{id}/access_tokens`, as logged), both worked out once by the caller.
    async fn call_with_retries(
        &self,
        method: Method,
        url: &str,
        route: String,
        auth: Auth<'_>,
        body: Option<Vec<u8>>,
        extra_headers: &[(&str, &str)],
    ) -> Result<(HttpResponse, ServerTime), ApiError> {
        let deadline = Instant::now() + self.policy.budget;
        let mut attempts = 0u32;
        let mut skew_corrected = false;
        let mut replication_retries = 0u32;
        loop {
            if let Some((until, wall)) = self.rate_limited_until() {
                if until <= deadline && attempts < self.policy.max_attempts {
                    tokio::time::sleep_until(until).await;
                } else {
                    return Err(ApiError::RateLimited { until: wall, route });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ApiError::Unreachable {
                    detail: format!(
                        "{route}: no answer within retry_budget ({}s)",
                        self.policy.budget.as_secs()
                    ),
                });
            }
            attempts += 1;
            let timeout = self.policy.attempt_timeout.min(deadline - now);
            let request =
                self.build_request(method, url, auth, body.clone(), extra_headers, timeout)?;
            let outcome = tokio::time::timeout(
                timeout + Duration::from_millis(500),
                self.transport.send(request),
            )
            .await;
            let failure = match outcome {
                Err(_) => format!("{route}: timed out after {:.1}s", timeout.as_secs_f64()),
                Ok(Err(e)) => format!("{route}: {}", e.message),
                Ok(Ok(response)) => {
                    let server_time = ServerTime::from_date_header(response.header("date"));
                    self.record_rate_headers(&response);
                    let status = response.status;
                    if (200..300).contains(&status) {
                        return Ok((response, server_time));
                    }
                    let message = error_message(&response);
                    match (status, auth) {
                        (401, Auth::App) => {
                            if is_clock_skew_message(&message) && !skew_corrected {
                                skew_corrected = true;
                                attempts -= 1;
                                let offset = server_time.offset_secs();
                                tracing::warn!(route = %route, offset_secs = offset, "GitHub refused the App JWT's times; adopting GitHub's clock from its Date header and retrying");
                                self.signer.set_clock_offset(offset);
                                continue;
                            }
                            self.signer.forget();
                            return Err(ApiError::JwtRejected {
                                status,
                                message,
                                route,
                            });
                        }
                        (401, Auth::Installation { minted_at, .. })
                            if minted_at.elapsed() < REPLICATION_DELAY =>
                        {
                            let sleep = Duration::from_millis(100 << replication_retries.min(5))
                                .min(REPLICATION_DELAY.saturating_sub(minted_at.elapsed()));
                            replication_retries += 1;
                            attempts -= 1;
                            tracing::debug!(route = %route, "new installation token not accepted yet (replication delay); retrying");
                            tokio::time::sleep(sleep).await;
                            continue;
                        }
                        (403 | 429, _) => {
                            let header = |name: &str| response.header(name).map(str::to_string);
                            let Some(limit) =
                                rate_limit(status, header, &message, server_time.server_now)
                            else {
                                return Err(ApiError::Status {
                                    status,
                                    message,
                                    route,
                                });
                            };
                            let until = server_time.received + limit.wait;
                            let until_wall = server_time.local_now + limit.wait;
                            {
                                let mut rate = self.rate.lock().unwrap_or_else(|p| p.into_inner());
                                rate.limited_until = Some(until);
                                rate.limited_until_wall = Some(until_wall);
                            }
                            tracing::warn!(route = %route, wait_secs = limit.wait.as_secs(), secondary = limit.secondary, "GitHub rate limit: {message}");
                            if until > deadline || attempts >= self.policy.max_attempts {
                                return Err(ApiError::RateLimited {
                                    until: until_wall,
                                    route,
                                });
                            }
                            continue;
                        }
                        (500..=599, _) => {
                            let detail = format!("{route}: HTTP {status}: {message}");
                            if let Some(wait) = response
                                .header("retry-after")
                                .and_then(|v| parse_retry_after(v, server_time.server_now))
                            {
                                let resume = Instant::now() + wait;
                                if resume <= deadline && attempts < self.policy.max_attempts {
                                    tokio::time::sleep_until(resume).await;
                                    continue;
                                }
                                return Err(ApiError::Unreachable { detail });
                            }
                            detail
                        }
                        _ => {
                            return Err(ApiError::Status {
                                status,
                                message,
                                route,
                            });
                        }
                    }
                }
            };
            let sleep = backoff(attempts - 1);
            if attempts >= self.policy.max_attempts || Instant::now() + sleep >= deadline {
                return Err(ApiError::Unreachable {
                    detail: format!("{failure} (after {attempts} attempts)"),
                });
            }
            tracing::debug!(route = %route, attempt = attempts, "GitHub call failed ({failure}); retrying in {sleep:?}");
            tokio::time::sleep(sleep).await;
        }
    }

    fn build_request(
        &self,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        body: Option<Vec<u8>>,
        extra_headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<HttpRequest, ApiError> {
        let authorization = match auth {
            Auth::App => {
                let jwt = self
                    .signer
                    .jwt()
                    .map_err(|e| ApiError::Protocol { detail: e.message })?;
                format!("Bearer {}", jwt.expose())
            }
            Auth::Installation { token, .. } => format!("Bearer {}", token.expose()),
        };
        let mut headers = vec![
            (
                "user-agent".to_string(),
                format!("ghapp/{}", ghapp_protocol::VERSION),
            ),
            (
                "accept".to_string(),
                "application/vnd.github+json".to_string(),
            ),
            ("x-github-api-version".to_string(), API_VERSION.to_string()),
            ("authorization".to_string(), authorization),
        ];
        if body.is_some() {
            headers.push(("content-type".to_string(), "application/json".to_string()));
        }
        headers.extend(
            extra_headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        Ok(HttpRequest {
            method,
            url: url.to_string(),
            headers,
            body,
            timeout,
        })
    }

    fn record_rate_headers(&self, response: &HttpResponse) {
        if let Some(remaining) = response
            .header("x-ratelimit-remaining")
            .and_then(|v| v.trim().parse().ok())
        {
            self.rate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remaining = Some(remaining);
        }
    }
}

fn installation_info(json: json::InstallationJson) -> InstallationInfo {
    let account = json
        .account
        .and_then(|a| a.login.or(a.slug))
        .unwrap_or_default();
    let (permissions, _) = json::permissions_from_map(&json.permissions);
    InstallationInfo {
        id: json.id,
        account,
        permissions,
        suspended: json.suspended_at.is_some(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    response: &HttpResponse,
    route: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(&response.body).map_err(|e| ApiError::Protocol {
        detail: format!(
            "{route}: unexpected answer from GitHub (HTTP {}): {e}",
            response.status
        ),
    })
}

/// GitHub's `message`, or a short printable excerpt of a non-JSON body.
fn error_message(response: &HttpResponse) -> String {
    let raw = serde_json::from_slice::<json::ErrorBody>(&response.body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&response.body);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_string()
            } else {
                text.chars().take(120).collect()
            }
        });
    let clean: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    clean.trim().to_string()
}

/// The path of `url` relative to the API base, query dropped: `/app/installations`.
fn route_of(url: &str, api_base: &str) -> String {
    let path = url.strip_prefix(api_base).unwrap_or(url);
    path.split('?').next().unwrap_or(path).to_string()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let link = "<https://api.github.com/app/installations?per_page=100&page=2>; rel=\"next\", <https://api.github.com/app/installations?per_page=100&page=5>; rel=\"last\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/app/installations?per_page=100&page=2")
        );
        assert_eq!(next_link("<https://x/?page=1>; rel=\"prev\""), None);
    }

    #[test]
    fn routes_are_relative_and_queryless() {
        assert_eq!(
            route_of(
                "http://h/api/v3/app/installations?page=2",
                "http://h/api/v3"
            ),
            "/app/installations"
        );
    }

    #[test]
    fn token_request_body_shape() {
        let body = TokenRequestBody {
            repositories: vec!["widgets".into()],
            permissions: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"repositories":["widgets"]}"#
        );
        let body = TokenRequestBody {
            repositories: vec![],
            permissions: Some(Permissions::parse_list("contents:read").unwrap()),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"permissions":{"contents":"read"}}"#
        );
    }

    #[test]
    fn error_messages_are_cleaned() {
        let response = HttpResponse {
            status: 502,
            headers: vec![],
            body: zeroize::Zeroizing::new(b"<html>\nBad gateway\n</html>".to_vec()),
        };
        assert_eq!(error_message(&response), "<html> Bad gateway </html>");
        let response = HttpResponse {
            status: 403,
            headers: vec![],
            body: zeroize::Zeroizing::new(
                br#"{"message":"This installation has been suspended","status":"403"}"#.to_vec(),
            ),
        };
        assert_eq!(
            error_message(&response),
            "This installation has been suspended"
        );
    }
}
