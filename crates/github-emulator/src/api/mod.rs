//! GitHub's REST and GraphQL surface: dispatch (github.com layout at the root, GHES layout under
//! `/api/v3` and `/api/graphql`), faults, counters, authentication, and headers every response
//! carries (`Date`, `x-ratelimit-*`, `x-github-request-id`).

mod access_tokens;
mod apps;
mod content;
mod misc;
mod repos;
mod runners;

use crate::admin::FaultServer;
use crate::core::{Core, RateHeaders, TokenAuth, TokenProblem};
use crate::http::{ApiError, Body, DOCS_REST, json, read_body};
use crate::jwt::{self, Rejection};
use crate::model::App;
use crate::router::{Matched, route};
use crate::schema::Schema;
use crate::server::Dropped;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// Largest API request body accepted.
const MAX_BODY: usize = 1 << 20;

/// Every API route; the strings are the stats keys.
pub const ROUTES: &[&str] = &[
    "GET /",
    "GET /app",
    "GET /app/installations",
    "GET /app/installations/{installation_id}",
    "DELETE /app/installations/{installation_id}",
    "PUT /app/installations/{installation_id}/suspended",
    "DELETE /app/installations/{installation_id}/suspended",
    "POST /app/installations/{installation_id}/access_tokens",
    "GET /repos/{owner}/{repo}/installation",
    "GET /orgs/{org}/installation",
    "GET /users/{username}/installation",
    "GET /installation/repositories",
    "DELETE /installation/token",
    "POST /orgs/{org}/actions/runners/registration-token",
    "POST /orgs/{org}/actions/runners/remove-token",
    "POST /orgs/{org}/actions/runners/generate-jitconfig",
    "GET /orgs/{org}/actions/runners",
    "GET /orgs/{org}/actions/runners/{runner_id}",
    "DELETE /orgs/{org}/actions/runners/{runner_id}",
    "GET /repos/{owner}/{repo}",
    "GET /repositories/{repository_id}",
    "GET /repositories/{repository_id}/installation",
    "POST /repos/{owner}/{repo}/actions/runners/registration-token",
    "POST /repos/{owner}/{repo}/actions/runners/remove-token",
    "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig",
    "GET /repos/{owner}/{repo}/actions/runners",
    "GET /repos/{owner}/{repo}/actions/runners/{runner_id}",
    "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}",
    "GET /rate_limit",
    "POST /graphql",
    "GET /repos/{owner}/{repo}/pulls",
    crate::conditional::CONTENTS_ROUTE,
];

/// GitHub's answer to a request without a `User-Agent` (its edge answers before the API does,
/// in plain text): observed verbatim in client reports (e.g. NetEase/lordofpomelo#27,
/// gitlab-org/gitlab!43852); the docs quote a shortened form.
pub const MSG_NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (http://developer.github.com/v3/#user-agent-required). Check https://developer.github.com for other possible causes.";

/// The documentation URL of GitHub's 301 for a renamed or transferred repository.
const DOCS_REDIRECTS: &str =
    "https://docs.github.com/rest/guides/best-practices-for-using-the-rest-api#follow-redirects";

/// API versions GitHub accepts in `X-GitHub-Api-Version`.
const API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];

/// One API request, as handlers see it.
pub struct Ctx<'a> {
    /// Shared state.
    pub core: &'a Core,
    /// The matched route.
    pub matched: Matched,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw query string.
    pub query: Option<String>,
    /// The body.
    pub body: Bytes,
    /// The REST base the client used (`http://host:port` or `http://host:port/api/v3`).
    pub api_base: String,
    /// Rate-limit headers decided by authentication.
    pub rate: Option<RateHeaders>,
}

/// Serves one API request. `Err(Dropped)` closes the connection without an answer.
pub async fn handle(core: Arc<Core>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let (path, ghes) = strip_ghes(&raw_path);
    let method = parts.method.as_str().to_string();
    let matched = route(ROUTES, &method, &path).or_else(|| content::route_contents(&method, &path));
    let request_line = format!("{method} {path}");

    let decision = {
        let mut state = core.lock();
        let key = match &matched {
            Some(m) => m.pattern.to_string(),
            None => format!("{method} (unmatched)"),
        };
        *state.stats.requests.entry(key).or_default() += 1;
        if state.faults.is_empty() {
            None
        } else {
            Some(state.faults.decide(
                FaultServer::Api,
                &request_line,
                matched.as_ref().map(|m| m.pattern),
            ))
        }
    };
    let mut fault_status = None;
    if let Some(decision) = decision {
        if !decision.latency.is_zero() {
            tokio::time::sleep(decision.latency).await;
        }
        if decision.drop {
            return Err(Dropped);
        }
        fault_status = decision.status;
    }

    let body = match read_body(body, MAX_BODY).await {
        Ok(body) => body,
        Err(crate::http::BodyError::TooLarge(_)) => {
            return Ok(finish(
                &core,
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large").into_response(),
                None,
            ));
        }
        Err(crate::http::BodyError::Io(_)) => return Err(Dropped),
    };

    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let bases = core.bases();
    let origin = match host {
        Some(host) if !host.is_empty() => format!("{}://{host}", bases.scheme),
        _ => bases.api.clone(),
    };
    let api_base = if ghes {
        format!("{origin}/api/v3")
    } else {
        origin
    };

    // GitHub's edge refuses a request without a User-Agent before anything else.
    let has_user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !has_user_agent {
        let mut response = Response::new(crate::http::full(MSG_NO_USER_AGENT));
        *response.status_mut() = StatusCode::FORBIDDEN;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return Ok(finish(&core, response, None));
    }
    if let Some((status, retry_after, message)) = fault_status {
        return Ok(finish(
            &core,
            fault_response(&core, status, retry_after, message),
            None,
        ));
    }
    if let Some(version) = parts.headers.get("x-github-api-version") {
        let version = version.to_str().unwrap_or("");
        if !API_VERSIONS.contains(&version) {
            let err = ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Unsupported 'X-GitHub-Api-Version' header value: {version}"),
            );
            return Ok(finish(&core, err.into_response(), None));
        }
    }
    // Authentication comes before routing: a bad, expired or revoked token gets 401 on every
    // route, including the ones the emulator does not otherwise emulate.
    // (JWT routes check their credential themselves, with the JWT messages.)
    let jwt_route = matched.as_ref().is_some_and(|m| is_jwt_route(m.pattern));
    if !jwt_route && let Err(err) = check_token(&core, &parts.headers) {
        return Ok(finish(&core, err.into_response(), None));
    }
    let Some(matched) = matched else {
        return Ok(finish(
            &core,
            ApiError::not_found(DOCS_REST).into_response(),
            None,
        ));
    };
    if let Some(response) = renamed_repository(&core, &matched, &path, &api_base, parts.uri.query())
    {
        return Ok(finish(&core, response, None));
    }
    let mut ctx = Ctx {
        core: &core,
        matched,
        headers: parts.headers,
        query: parts.uri.query().map(str::to_string),
        body,
        api_base,
        rate: None,
    };
    let result = match ctx.matched.pattern {
        "GET /" => misc::root(&mut ctx),
        "GET /app" => apps::get_app(&mut ctx),
        "GET /app/installations" => apps::list_installations(&mut ctx),
        "GET /app/installations/{installation_id}" => apps::get_installation(&mut ctx),
        "DELETE /app/installations/{installation_id}" => apps::delete_installation(&mut ctx),
        "PUT /app/installations/{installation_id}/suspended" => apps::set_suspended(&mut ctx, true),
        "DELETE /app/installations/{installation_id}/suspended" => {
            apps::set_suspended(&mut ctx, false)
        }
        "POST /app/installations/{installation_id}/access_tokens" => {
            access_tokens::create(&mut ctx)
        }
        "GET /repos/{owner}/{repo}/installation" => apps::repo_installation(&mut ctx),
        "GET /orgs/{org}/installation" => apps::account_installation(&mut ctx, true),
        "GET /users/{username}/installation" => apps::account_installation(&mut ctx, false),
        "GET /installation/repositories" => misc::installation_repositories(&mut ctx),
        "DELETE /installation/token" => misc::revoke_token(&mut ctx),
        "POST /orgs/{org}/actions/runners/registration-token" => {
            runners::org_runner_token(&mut ctx, "registration")
        }
        "POST /orgs/{org}/actions/runners/remove-token" => {
            runners::org_runner_token(&mut ctx, "remove")
        }
        "GET /repos/{owner}/{repo}" => repos::get_repository(&mut ctx),
        "GET /repositories/{repository_id}" => repos::get_repository(&mut ctx),
        "GET /repositories/{repository_id}/installation" => apps::repo_installation(&mut ctx),
        "POST /repos/{owner}/{repo}/actions/runners/registration-token" => {
            runners::repo_runner_token(&mut ctx, "registration")
        }
        "POST /repos/{owner}/{repo}/actions/runners/remove-token" => {
            runners::repo_runner_token(&mut ctx, "remove")
        }
        "POST /orgs/{org}/actions/runners/generate-jitconfig"
        | "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig" => {
            runners::generate_jitconfig(&mut ctx)
        }
        "GET /orgs/{org}/actions/runners" | "GET /repos/{owner}/{repo}/actions/runners" => {
            runners::list(&mut ctx)
        }
        "GET /orgs/{org}/actions/runners/{runner_id}"
        | "GET /repos/{owner}/{repo}/actions/runners/{runner_id}" => runners::get(&mut ctx),
        "DELETE /orgs/{org}/actions/runners/{runner_id}"
        | "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}" => runners::delete(&mut ctx),
        "GET /rate_limit" => misc::rate_limit(&mut ctx),
        "POST /graphql" => misc::graphql(&mut ctx),
        "GET /repos/{owner}/{repo}/pulls" => content::list_pulls(&mut ctx),
        crate::conditional::CONTENTS_ROUTE => content::get_contents(&mut ctx),
        _ => Err(ApiError::not_found(DOCS_REST)),
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    let mut rate = ctx.rate;
    let response = crate::conditional::apply(&ctx, response, &mut rate).await;
    Ok(finish(&core, response, rate))
}

/// Whether a route takes an App JWT (`/app…` and the installation look-ups).
fn is_jwt_route(pattern: &str) -> bool {
    let path = pattern.split_once(' ').map_or(pattern, |(_, p)| p);
    path == "/app" || path.starts_with("/app/") || path.ends_with("}/installation")
}

/// 401 `Bad credentials` when the request carries a token (not a JWT) that is unknown, expired,
/// revoked or unparsable. A valid token, a JWT and no credentials pass (the route decides).
fn check_token(core: &Core, headers: &HeaderMap) -> Result<(), ApiError> {
    match credential(headers) {
        Credential::None => Ok(()),
        Credential::Malformed => Err(ApiError::bad_credentials()),
        Credential::Secret(secret) if jwt::looks_like_jwt(&secret) => Ok(()),
        Credential::Secret(secret) => match core.authenticate_token(&secret) {
            Err(TokenProblem::BadCredentials) => Err(ApiError::bad_credentials()),
            Ok(_) | Err(TokenProblem::Suspended) => Ok(()),
        },
    }
}

/// GitHub's 301 for a route under `/repos/{owner}/{repo}` naming a repository by a former name:
/// `Location` and `url` point at the same route under `/repositories/{id}`.
fn renamed_repository(
    core: &Core,
    matched: &Matched,
    path: &str,
    api_base: &str,
    query: Option<&str>,
) -> Option<Response<Body>> {
    if !matched.pattern.contains(" /repos/{owner}/{repo}") {
        return None;
    }
    let id = core.renamed(matched.param("owner"), matched.param("repo"))?;
    // The rest of the path after /repos/{owner}/{repo}.
    let rest: String = path
        .trim_end_matches('/')
        .split('/')
        .skip(4)
        .map(|segment| format!("/{segment}"))
        .collect();
    let mut url = format!("{api_base}/repositories/{id}{rest}");
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    let mut response = json(
        StatusCode::MOVED_PERMANENTLY,
        &serde_json::json!({
            "message": "Moved Permanently",
            "url": url,
            "documentation_url": DOCS_REDIRECTS,
        }),
    );
    if let Ok(location) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Some(response)
}

/// Maps the GHES layout onto the github.com one: `/api/v3/x` → `/x`, `/api/graphql` → `/graphql`.
fn strip_ghes(path: &str) -> (String, bool) {
    if path == "/api/graphql" {
        return ("/graphql".to_string(), true);
    }
    if path == "/api/v3" || path == "/api/v3/" {
        return ("/".to_string(), true);
    }
    match path.strip_prefix("/api/v3/") {
        Some(rest) => (format!("/{rest}"), true),
        None => (path.to_string(), false),
    }
}

/// Adds the headers every API response carries.
fn finish(core: &Core, mut response: Response<Body>, rate: Option<RateHeaders>) -> Response<Body> {
    let headers = response.headers_mut();
    if let Ok(date) = HeaderValue::from_str(&core.clock.http_date()) {
        headers.insert(header::DATE, date);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("github.com"));
    headers.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    let mut id = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut id).is_ok() {
        let hex: String = id.iter().map(|b| format!("{b:02X}")).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("{}:{}", &hex[..4], &hex[4..])) {
            headers.insert("x-github-request-id", v);
        }
    }
    if let Some(rate) = rate {
        rate_headers(headers, &rate);
    }
    response
}

fn rate_headers(headers: &mut HeaderMap, rate: &RateHeaders) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
    headers.insert("x-ratelimit-used", HeaderValue::from(rate.used));
    headers.insert("x-ratelimit-reset", HeaderValue::from(rate.reset));
    headers.insert(
        "x-ratelimit-resource",
        HeaderValue::from_static(rate.resource),
    );
}

/// The answer of a `status` fault.
fn fault_response(
    core: &Core,
    status: StatusCode,
    retry_after: Option<u64>,
    message: Option<String>,
) -> Response<Body> {
    let rate_limited = matches!(status.as_u16(), 403 | 429);
    let default_message = match status.as_u16() {
        403 | 429 if retry_after.is_some() => MSG_SECONDARY,
        403 | 429 => "API rate limit exceeded. See the documentation for details.",
        500 => "Server Error",
        502 => "Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let docs = if rate_limited {
        DOCS_RATE_LIMITS
    } else {
        DOCS_REST
    };
    let mut err = ApiError::with_docs(
        status,
        message.unwrap_or_else(|| default_message.to_string()),
        docs,
    );
    if let Some(secs) = retry_after {
        err = err.header("retry-after", secs.to_string());
    }
    let mut response = err.into_response();
    if rate_limited && retry_after.is_none() {
        let reset = core.clock.unix() + 3600;
        let limit = core.rate_limit.limit.max(1);
        rate_headers(
            response.headers_mut(),
            &RateHeaders {
                limit,
                remaining: 0,
                used: limit,
                reset,
                resource: "core",
            },
        );
    }
    response
}

/// The credential a request carries.
pub enum Credential {
    /// No `Authorization` header.
    None,
    /// A bearer-style credential (`Bearer`, `bearer`, `token` schemes, or a Basic password).
    Secret(String),
    /// An `Authorization` header that cannot be parsed.
    Malformed,
}

/// Parses `Authorization`.
pub fn credential(headers: &HeaderMap) -> Credential {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Credential::None;
    };
    let Ok(value) = value.to_str() else {
        return Credential::Malformed;
    };
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return Credential::Malformed;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        if rest.is_empty() {
            return Credential::Malformed;
        }
        return Credential::Secret(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok();
        let text = decoded.and_then(|d| String::from_utf8(d).ok());
        if let Some((_, password)) = text.as_deref().and_then(|t| t.split_once(':'))
            && !password.is_empty()
        {
            return Credential::Secret(password.to_string());
        }
    }
    Credential::Malformed
}

impl<'a> Ctx<'a> {
    /// Requires a valid App JWT and returns the App.
    pub fn require_jwt(&mut self) -> Result<&'a App, ApiError> {
        let now = self.core.clock.unix();
        let result = match credential(&self.headers) {
            Credential::None => Err(Rejection::Missing),
            Credential::Malformed => Err(Rejection::Undecodable),
            // JWTs go only as `Authorization: Bearer`; GitHub reads `token <JWT>` as an OAuth
            // token and finds none.
            Credential::Secret(_) if !bearer_scheme(&self.headers) => {
                *self
                    .core
                    .lock()
                    .stats
                    .jwt_rejections
                    .entry("not_bearer".to_string())
                    .or_default() += 1;
                return Err(ApiError::bad_credentials());
            }
            Credential::Secret(secret) => {
                let rotated = self.core.lock().app_keys.clone();
                jwt::verify_with_options(
                    &secret,
                    &self.core.apps,
                    &rotated,
                    now,
                    self.core.client_id_issuer,
                )
            }
        };
        match result {
            Ok(app_id) => {
                let key = format!("app:{app_id}");
                if let Err(retry_after) = self.core.secondary_limit(&key) {
                    return Err(secondary_exceeded(retry_after));
                }
                let rate = self.core.rate_limit(&key, "core");
                let app = self
                    .core
                    .apps
                    .get(&app_id)
                    .ok_or_else(|| ApiError::not_found(DOCS_REST))?;
                match rate {
                    Ok(headers) => {
                        self.rate = Some(headers);
                        Ok(app)
                    }
                    Err(headers) => {
                        self.rate = Some(headers);
                        Err(rate_exceeded(&format!("app ID {app_id}")))
                    }
                }
            }
            Err(rejection) => {
                *self
                    .core
                    .lock()
                    .stats
                    .jwt_rejections
                    .entry(rejection.reason().to_string())
                    .or_default() += 1;
                let message = match rejection {
                    Rejection::Missing => jwt::MSG_UNDECODABLE,
                    other => other.message(),
                };
                Err(ApiError::new(rejection.status(), message))
            }
        }
    }

    /// Requires a valid installation token.
    pub fn require_token(&mut self) -> Result<TokenAuth, ApiError> {
        match self.optional_token()? {
            Some(auth) => Ok(auth),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Requires authentication",
            )),
        }
    }

    /// An installation token if one is given; a JWT or a bad token is an error.
    pub fn optional_token(&mut self) -> Result<Option<TokenAuth>, ApiError> {
        let secret = match credential(&self.headers) {
            Credential::None => return Ok(None),
            Credential::Malformed => return Err(ApiError::bad_credentials()),
            Credential::Secret(secret) => secret,
        };
        if jwt::looks_like_jwt(&secret) {
            return Err(ApiError::bad_credentials());
        }
        let auth = match self.core.authenticate_token(&secret) {
            Ok(auth) => auth,
            Err(TokenProblem::BadCredentials) => return Err(ApiError::bad_credentials()),
            Err(TokenProblem::Suspended) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "This installation has been suspended",
                ));
            }
        };
        let resource = if self.matched.pattern == "POST /graphql" {
            "graphql"
        } else {
            "core"
        };
        let key = format!("installation:{}", auth.grant.installation_id);
        if let Err(retry_after) = self.core.secondary_limit(&key) {
            return Err(secondary_exceeded(retry_after));
        }
        match self.core.rate_limit(&key, resource) {
            Ok(headers) => {
                self.rate = Some(headers);
                Ok(Some(auth))
            }
            Err(headers) => {
                self.rate = Some(headers);
                Err(rate_exceeded(&format!(
                    "installation ID {}",
                    auth.grant.installation_id
                )))
            }
        }
    }

    /// Counts an unauthenticated request.
    pub fn anonymous(&mut self) {
        let (Ok(headers) | Err(headers)) = self.core.rate_limit("anonymous", "core");
        self.rate = Some(headers);
    }

    /// `value` as GitHub renders `schema`: everything, or in minimal mode the required fields.
    pub fn render(&self, schema: Schema, value: serde_json::Value) -> serde_json::Value {
        if self.core.minimal {
            schema.minimal(value)
        } else {
            value
        }
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::http::query_pairs(self.query.as_deref())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Whether `Authorization` uses the `Bearer` scheme (any case), the only one GitHub takes JWTs in.
fn bearer_scheme(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// GitHub's secondary rate-limit answer.
fn secondary_exceeded(retry_after: u64) -> ApiError {
    ApiError::with_docs(StatusCode::FORBIDDEN, MSG_SECONDARY, DOCS_RATE_LIMITS)
        .header("retry-after", retry_after.to_string())
}

/// The message of a secondary rate-limit answer.
pub const MSG_SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";

/// Where GitHub's rate-limit answers point.
const DOCS_RATE_LIMITS: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api";

fn rate_exceeded(who: &str) -> ApiError {
    ApiError::with_docs(
        StatusCode::FORBIDDEN,
        format!(
            "API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."
        ),
        DOCS_RATE_LIMITS,
    )
}
