//! GitHub's REST and GraphQL surface: dispatch (github.com layout at the root, GHES layout under
//! `/api/v3` and `/api/graphql`), faults, counters, authentication, and headers every response
//! carries (`Date`, `x-ratelimit-*`, `x-github-request-id`).

mod access_tokens;
mod apps;
mod misc;

use crate::admin::FaultServer;
use crate::core::{Core, RateHeaders, TokenAuth, TokenProblem};
use crate::http::{ApiError, Body, DOCS_REST, read_body};
use crate::jwt::{self, Rejection};
use crate::model::App;
use crate::router::{Matched, route};
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
    "GET /rate_limit",
    "POST /graphql",
];

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
    let matched = route(ROUTES, &method, &path);
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
    let Some(matched) = matched else {
        return Ok(finish(
            &core,
            ApiError::not_found(DOCS_REST).into_response(),
            None,
        ));
    };
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
            misc::runner_token(&mut ctx, "registration")
        }
        "POST /orgs/{org}/actions/runners/remove-token" => misc::runner_token(&mut ctx, "remove"),
        "GET /rate_limit" => misc::rate_limit(&mut ctx),
        "POST /graphql" => misc::graphql(&mut ctx),
        _ => Err(ApiError::not_found(DOCS_REST)),
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    let rate = ctx.rate;
    Ok(finish(&core, response, rate))
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
        403 | 429 if retry_after.is_some() => {
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID."
        }
        403 | 429 => "API rate limit exceeded. See the documentation for details.",
        500 => "Server Error",
        502 => "Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let docs = if rate_limited {
        "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
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
        let limit = core.rate_limit.limit;
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
            Credential::Secret(secret) => {
                let rotated = self.core.lock().app_keys.clone();
                jwt::verify_with_keys(&secret, &self.core.apps, &rotated, now)
            }
        };
        match result {
            Ok(app_id) => {
                let key = format!("app:{app_id}");
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

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::http::query_pairs(self.query.as_deref())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn rate_exceeded(who: &str) -> ApiError {
    ApiError::with_docs(
        StatusCode::FORBIDDEN,
        format!(
            "API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."
        ),
        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    )
}
