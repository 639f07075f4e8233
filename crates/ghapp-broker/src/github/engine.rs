//! The engine every GitHub call goes through: it builds the request (GitHub's headers, the App
//! JWT or an installation token), sends it through the App's transport and decides, step by
//! named step, what an answer means:
//!
//! - [`GitHubClient::wait_out_rate_limit`]: no request while a rate limit on its bucket and
//!   resource lasts (`limits.rs`); held work resumes spread out after it;
//! - [`GitHubClient::on_jwt_refused`]: a clock-skew 401 on a JWT route adopts GitHub's clock; an
//!   issuer refused as a client id is replaced by the App id, once, and remembered;
//! - [`GitHubClient::wait_for_replication`]: a 401 for a token minted under 5 s ago is
//!   GitHub's replication delay;
//! - [`GitHubClient::on_rate_limit`]: 403/429 rate limits are honoured and remembered for the
//!   bucket and resource they name (repeated secondary limits wait exponentially longer);
//! - a 3xx is never followed here: it is handed to the endpoint, which decides (`endpoints.rs`
//!   follows installation look-ups within the App's API only);
//! - [`GitHubClient::on_server_error`]: 5xx honours `retry-after`, else backs off;
//! - [`GitHubClient::back_off`]: failures that may pass are retried with jittered backoff
//!   within the attempt limit and `retry_budget`;
//! - [`Holdoff`]: after an operation failed for good, the App's next ones are held back.

use super::limits::{Bucket, Hold, RateLimits};
use super::wire::error_message;
use super::{ApiError, REPLICATION_DELAY};
use crate::clock::ServerTime;
use crate::config::TokenFormat;
use crate::jwt::{JwtSigner, is_clock_skew_message, is_issuer_message};
use crate::retry::{
    RetryPolicy, backoff, jittered_backoff, parse_retry_after, rate_limit, resume_spread,
};
use crate::transport::{HttpRequest, HttpResponse, HttpTransport, Method};
use ghapp_protocol::secret::Token;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// GitHub's REST API version the broker speaks.
pub(crate) const API_VERSION: &str = "2022-11-28";

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// The App JWT.
    App,
    /// An installation token of `installation_id`, minted at `minted_at` (for the
    /// replication-delay rule).
    Installation {
        token: &'a Token,
        minted_at: Instant,
        installation_id: u64,
    },
}

impl Auth<'_> {
    /// The rate-limit bucket a request with this credential draws on.
    fn bucket(&self) -> Bucket {
        match self {
            Auth::App => Bucket::App,
            Auth::Installation {
                installation_id, ..
            } => Bucket::Installation(*installation_id),
        }
    }
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
    limits: RateLimits,
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

/// One operation's progress through its retries.
struct Operation {
    /// No attempt starts after this (`retry_budget`).
    deadline: Instant,
    /// Attempts counted against `max_attempts` (clock and replication retries are free).
    attempts: u32,
    /// The JWT clock was corrected once already.
    skew_corrected: bool,
    /// Replication-delay retries so far.
    replication_retries: u32,
    /// The JWT's issuer was switched from the client id to the App id once already.
    issuer_switched: bool,
    /// GitHub rejected a JWT and the next key was tried once already.
    key_switched: bool,
}

/// What one answer from GitHub means for the operation.
enum Verdict {
    /// Finished: a 2xx answer, or a failure retrying will not fix.
    Done(Result<(HttpResponse, ServerTime), ApiError>),
    /// Try again now (any wait already done, or left to the rate-limit step).
    Again,
    /// A failure that may pass: back off and try again.
    Transient(String),
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
            limits: RateLimits::default(),
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
            Err(
                error @ (ApiError::Unreachable { .. }
                | ApiError::JwtRejected { .. }
                | ApiError::Signer { .. }),
            ) => {
                holdoff.failures = holdoff.failures.saturating_add(1);
                let wait =
                    jittered_backoff(Duration::from_secs(1), holdoff.failures - 1, HOLDOFF_CAP);
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

    /// GitHub's last `x-ratelimit-remaining` for this App's own (JWT) bucket.
    pub(crate) fn rate_limit_remaining(&self) -> Option<u64> {
        self.limits.app_remaining()
    }

    /// Until when no mint may be sent (a rate limit on the App's bucket), if one is in force.
    pub(crate) fn mint_held_until(&self) -> Option<(Instant, SystemTime)> {
        self.limits
            .held(Bucket::App, "POST /app/installations/{id}/access_tokens")
            .map(|hold| (hold.until, hold.until_wall))
    }

    /// Which issuer the App JWT carries now: `client id` or `App id`.
    pub(crate) fn jwt_issuer(&self) -> &'static str {
        self.signer.issuer_kind()
    }

    /// The JWT clock offset in use (GitHub minus local, seconds).
    pub(crate) fn clock_offset(&self) -> i64 {
        self.signer.clock_offset()
    }

    /// The REST base URL (no trailing slash).
    pub(super) fn api_base(&self) -> &str {
        &self.api_base
    }

    /// The `token_format` asked of access_tokens, if any.
    pub(super) fn token_format(&self) -> Option<TokenFormat> {
        self.token_format
    }

    /// One logical call, unless a hold-off is in force (see [`Holdoff`]): retries, rate-limit
    /// waits, clock-skew and replication-delay handling. Returns only 2xx answers;
    /// `path_or_url` is a path under the API base or a full URL on it.
    pub(super) async fn call(
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
        let mut op = Operation {
            deadline: Instant::now() + self.policy.budget,
            attempts: 0,
            skew_corrected: false,
            replication_retries: 0,
            issuer_switched: false,
            key_switched: false,
        };
        loop {
            self.wait_out_rate_limit(&op, &route, auth.bucket()).await?;
            let timeout = self.start_attempt(&mut op, &route)?;
            let mut jwt = None;
            let bearer: &Token = match auth {
                Auth::Installation { token, .. } => token,
                Auth::App => jwt.insert(self.signer.jwt().await.map_err(|e| ApiError::Signer {
                    signer: e.signer,
                    detail: e.detail,
                })?),
            };
            let request =
                self.build_request(method, url, bearer, body.clone(), extra_headers, timeout);
            let failure = match self.send(request, timeout, &route).await {
                Err(failure) => failure,
                Ok(response) => match self
                    .judge(&mut op, response, auth, jwt.as_ref(), &route)
                    .await
                {
                    Verdict::Done(result) => return result,
                    Verdict::Again => continue,
                    Verdict::Transient(failure) => failure,
                },
            };
            self.back_off(&op, &route, failure).await?;
        }
    }

    /// Sleeps out a rate limit in force on the request's bucket and resource — resuming a
    /// random little while after it ends, so held work is spread out — or fails when it
    /// outlasts the operation. Limits on other buckets or resources do not hold it.
    async fn wait_out_rate_limit(
        &self,
        op: &Operation,
        route: &str,
        bucket: Bucket,
    ) -> Result<(), ApiError> {
        let Some(hold) = self.limits.held(bucket, route) else {
            return Ok(());
        };
        if hold.until <= op.deadline && op.attempts < self.policy.max_attempts {
            let now = Instant::now();
            let spread = resume_spread(hold.until.saturating_duration_since(now));
            let resume = (hold.until + spread).min(op.deadline.max(hold.until));
            tokio::time::sleep_until(resume).await;
            return Ok(());
        }
        Err(rate_limited(hold, route))
    }

    /// Counts an attempt; its timeout, or the error when the budget is spent.
    fn start_attempt(&self, op: &mut Operation, route: &str) -> Result<Duration, ApiError> {
        let now = Instant::now();
        if now >= op.deadline {
            return Err(ApiError::Unreachable {
                detail: format!(
                    "{route}: no answer within retry_budget ({}s)",
                    self.policy.budget.as_secs()
                ),
            });
        }
        op.attempts += 1;
        Ok(self.policy.attempt_timeout.min(op.deadline - now))
    }

    /// Sends one request; the response, or why none came (timeout, transport error).
    async fn send(
        &self,
        request: HttpRequest,
        timeout: Duration,
        route: &str,
    ) -> Result<HttpResponse, String> {
        let outcome = tokio::time::timeout(
            timeout + Duration::from_millis(500),
            self.transport.send(request),
        )
        .await;
        match outcome {
            Err(_) => Err(format!(
                "{route}: timed out after {:.1}s",
                timeout.as_secs_f64()
            )),
            Ok(Err(e)) => Err(format!("{route}: {}", e.message)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// What an answer means: success, a step that handles its status, or a plain failure.
    async fn judge(
        &self,
        op: &mut Operation,
        response: HttpResponse,
        auth: Auth<'_>,
        jwt: Option<&Token>,
        route: &str,
    ) -> Verdict {
        let server_time = ServerTime::from_date_header(response.header("date"));
        let status = response.status;
        let success = (200..300).contains(&status);
        let resource = self.limits.answered(auth.bucket(), route, success, |name| {
            response.header(name).map(str::to_string)
        });
        if success {
            return Verdict::Done(Ok((response, server_time)));
        }
        if matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Verdict::Done(Err(ApiError::Redirected {
                status,
                location: response.header("location").map(str::to_string),
                route: route.to_string(),
            }));
        }
        let message = error_message(&response);
        let refused = |status| ApiError::Status {
            status,
            message: message.clone(),
            route: route.to_string(),
        };
        match (status, auth) {
            (401, Auth::App) => self.on_jwt_refused(op, &message, &server_time, jwt, route),
            (401, Auth::Installation { minted_at, .. })
                if minted_at.elapsed() < REPLICATION_DELAY =>
            {
                self.wait_for_replication(op, minted_at, route).await
            }
            (403 | 429, _) => self
                .on_rate_limit(op, &response, &message, &server_time, route, auth, resource)
                .unwrap_or_else(|| Verdict::Done(Err(refused(status)))),
            (500..=599, _) => {
                self.on_server_error(op, &response, &message, &server_time, route)
                    .await
            }
            _ => Verdict::Done(Err(refused(status))),
        }
    }

    /// A 401 on a JWT route: GitHub's clock differs from ours (adopt it from `Date`, retry once,
    /// without counting an attempt); or GitHub refuses a client id as the issuer (GHES before
    /// 3.14 knows only App ids: sign with the App id from now on, retry once, without counting
    /// an attempt); or the JWT is rejected: with the App's next key when it has one (key
    /// rotation, once per operation, not counted), else for good.
    fn on_jwt_refused(
        &self,
        op: &mut Operation,
        message: &str,
        server_time: &ServerTime,
        jwt: Option<&Token>,
        route: &str,
    ) -> Verdict {
        if is_clock_skew_message(message) && !op.skew_corrected {
            op.skew_corrected = true;
            op.attempts -= 1;
            let offset = server_time.offset_secs();
            tracing::warn!(route = %route, offset_secs = offset, "GitHub refused the App JWT's times; adopting GitHub's clock from its Date header and retrying");
            self.signer.set_clock_offset(offset);
            return Verdict::Again;
        }
        if is_issuer_message(message) && !op.issuer_switched && self.signer.use_app_id_issuer() {
            op.issuer_switched = true;
            op.attempts -= 1;
            tracing::warn!(route = %route, "GitHub refused the client id as the App JWT's issuer (GHES before 3.14 accepts only the App id); signing with the App id from now on and retrying");
            return Verdict::Again;
        }
        if !op.key_switched
            && let Some(jwt) = jwt
            && self.signer.rejected(jwt)
        {
            op.key_switched = true;
            op.attempts -= 1;
            tracing::warn!(route = %route, "GitHub rejected the App JWT ({message}); retrying with the App's next key");
            return Verdict::Again;
        }
        self.signer.forget();
        Verdict::Done(Err(ApiError::JwtRejected {
            status: 401,
            message: message.to_string(),
            route: route.to_string(),
        }))
    }

    /// A 401 for an installation token younger than GitHub's replication delay: sleep (100 ms
    /// doubling, never past the token's 5th second) and retry, without counting an attempt.
    async fn wait_for_replication(
        &self,
        op: &mut Operation,
        minted_at: Instant,
        route: &str,
    ) -> Verdict {
        let sleep = Duration::from_millis(100 << op.replication_retries.min(5))
            .min(REPLICATION_DELAY.saturating_sub(minted_at.elapsed()));
        op.replication_retries += 1;
        op.attempts -= 1;
        tracing::debug!(route = %route, "new installation token not accepted yet (replication delay); retrying");
        tokio::time::sleep(sleep).await;
        Verdict::Again
    }

    /// A 403/429 that is a rate limit: remember GitHub's wait for the request's bucket and the
    /// answer's `resource` (the next attempt sleeps it out) or fail when it outlasts the
    /// operation. `None`: an ordinary 403.
    #[allow(clippy::too_many_arguments)]
    fn on_rate_limit(
        &self,
        op: &Operation,
        response: &HttpResponse,
        message: &str,
        server_time: &ServerTime,
        route: &str,
        auth: Auth<'_>,
        resource: String,
    ) -> Option<Verdict> {
        let header = |name: &str| response.header(name).map(str::to_string);
        let limit = rate_limit(response.status, header, message, server_time.server_now)?;
        let hold = self.limits.limited(
            auth.bucket(),
            resource,
            &limit,
            server_time.received,
            server_time.local_now,
        );
        let wait = hold.until.saturating_duration_since(server_time.received);
        tracing::warn!(route = %route, bucket = %hold.bucket, resource = %hold.resource, wait_secs = wait.as_secs(), secondary = limit.secondary, "GitHub rate limit: {message}");
        if hold.until > op.deadline || op.attempts >= self.policy.max_attempts {
            return Some(Verdict::Done(Err(rate_limited(hold, route))));
        }
        Some(Verdict::Again)
    }

    /// A 5xx: honour its `retry-after` when it fits the operation (else fail at once), or back
    /// off as for any failure that may pass.
    async fn on_server_error(
        &self,
        op: &Operation,
        response: &HttpResponse,
        message: &str,
        server_time: &ServerTime,
        route: &str,
    ) -> Verdict {
        let detail = format!("{route}: HTTP {}: {message}", response.status);
        let Some(wait) = response
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, server_time.server_now))
        else {
            return Verdict::Transient(detail);
        };
        let resume = Instant::now() + wait;
        if resume <= op.deadline && op.attempts < self.policy.max_attempts {
            tokio::time::sleep_until(resume).await;
            return Verdict::Again;
        }
        Verdict::Done(Err(ApiError::Unreachable { detail }))
    }

    /// Sleeps the jittered backoff before the next attempt, or gives up with `failure` when
    /// the attempts or the budget are spent.
    async fn back_off(&self, op: &Operation, route: &str, failure: String) -> Result<(), ApiError> {
        let sleep = backoff(op.attempts - 1);
        if op.attempts >= self.policy.max_attempts || Instant::now() + sleep >= op.deadline {
            return Err(ApiError::Unreachable {
                detail: format!("{failure} (after {} attempts)", op.attempts),
            });
        }
        tracing::debug!(route = %route, attempt = op.attempts, "GitHub call failed ({failure}); retrying in {sleep:?}");
        tokio::time::sleep(sleep).await;
        Ok(())
    }

    /// The request of one attempt, authenticated with `bearer` (the App JWT or a token).
    fn build_request(
        &self,
        method: Method,
        url: &str,
        bearer: &Token,
        body: Option<Vec<u8>>,
        extra_headers: &[(&str, &str)],
        timeout: Duration,
    ) -> HttpRequest {
        let authorization = format!("Bearer {}", bearer.expose());
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
        HttpRequest {
            method,
            url: url.to_string(),
            headers,
            body,
            timeout,
        }
    }
}

/// The error of an operation a rate limit holds beyond its budget.
fn rate_limited(hold: Hold, route: &str) -> ApiError {
    ApiError::RateLimited {
        until: hold.until_wall,
        route: route.to_string(),
        bucket: hold.bucket,
        resource: hold.resource,
    }
}

/// The path of `url` relative to the API base, query dropped: `/app/installations`.
fn route_of(url: &str, api_base: &str) -> String {
    let path = url.strip_prefix(api_base).unwrap_or(url);
    path.split('?').next().unwrap_or(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
