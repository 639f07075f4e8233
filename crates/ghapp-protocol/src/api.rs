//! The daemon's socket API: HTTP/1.1 + JSON over a Unix socket. Routes, query encoding and
//! bodies are defined here once and used by the daemon (server), the credential helper and the
//! CLI (clients). docs/socket-api.md documents each route with examples.
//!
//! Every error is `{"error": "<actionable message>"}` with a status that says what kind:
//! 400 malformed, 403 refused by policy, 404 not installed / no App for host, 409 ambiguous
//! (no owner given and more than one installation), 422 permission beyond the ceiling,
//! 503 GitHub unreachable and nothing cached with enough life.

use crate::duration::{format_duration, parse_duration};
use crate::permissions::Permissions;
use crate::secret::Token;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// `GET` a token; `DELETE` invalidates one.
pub const TOKEN_PATH: &str = "/v1/token";
/// `GET` what the daemon holds (never a secret).
pub const STATUS_PATH: &str = "/v1/status";
/// `POST` a runner registration or removal token.
pub const RUNNER_TOKEN_PATH: &str = "/v1/runner-token";
/// `GET` Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// `GET` liveness.
pub const HEALTH_PATH: &str = "/healthz";
/// Seed compatibility: tokman's health probe, `GET` → `{"message": "ok"}`; no credential needed.
pub const API_HEALTH_PATH: &str = "/api/health";
/// `GET` the public keys that verify signed (`Accept: application/jwt`) answers; no credential
/// needed.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Seed compatibility: tokman's `GET /api/{namespace}/{repository}`.
pub const TOKMAN_PREFIX: &str = "/api/";
/// Seed compatibility: the workspace endpoint.
pub const WORKSPACE_TOKEN_PATH: &str = "/admin/github-installation-token";

/// The host ghapp serves when none is named.
pub const DEFAULT_HOST: &str = "github.com";

/// A request for a token: `GET /v1/token?host=&owner=&repo=&permissions=&min_ttl=&protocol=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenQuery {
    /// The git host as git names it (`github.com`, `ghe.example.com:8443`); default github.com.
    pub host: Option<String>,
    /// The account. `None` asks for the host's only installation (git without useHttpPath).
    pub owner: Option<String>,
    /// The repository; a token is then narrowed to it.
    pub repo: Option<String>,
    /// Permissions wanted; empty means the App's ceiling (or everything the installation has).
    pub permissions: Permissions,
    /// The least remaining life acceptable; the daemon never serves less than its own min_ttl.
    pub min_ttl: Option<Duration>,
    /// `https` (default) or `http` (served only for Apps with `insecure_http`).
    pub protocol: Option<String>,
}

/// Why a query string was refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// The longest value accepted for any query parameter; owner and repo names are far shorter.
pub const MAX_QUERY_VALUE: usize = 256;

impl TokenQuery {
    /// Encodes as a query string (without `?`), percent-encoding every value.
    pub fn to_query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(host) = &self.host {
            q.append_pair("host", host);
        }
        if let Some(owner) = &self.owner {
            q.append_pair("owner", owner);
        }
        if let Some(repo) = &self.repo {
            q.append_pair("repo", repo);
        }
        if !self.permissions.is_empty() {
            q.append_pair("permissions", &self.permissions.to_list());
        }
        if let Some(ttl) = self.min_ttl {
            q.append_pair("min_ttl", &whole_seconds_up(ttl).as_secs().to_string());
        }
        if let Some(protocol) = &self.protocol {
            q.append_pair("protocol", protocol);
        }
        q.finish()
    }

    /// Parses a query string strictly: unknown or repeated parameters, bad percent-encoding,
    /// oversized values and malformed names are errors that say which parameter.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut out = TokenQuery::default();
        let mut seen = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_component(raw_key)?;
            let value = decode_component(raw_value)?;
            if value.len() > MAX_QUERY_VALUE {
                return Err(QueryError(format!(
                    "a query parameter's value is longer than {MAX_QUERY_VALUE} bytes"
                )));
            }
            if seen.contains(&key) {
                return Err(QueryError(format!("query parameter {key} given twice")));
            }
            match &*key {
                "host" => out.host = Some(check_host(&value)?),
                "owner" => out.owner = Some(check_name("owner", &value)?),
                "repo" => out.repo = Some(check_name("repo", &value)?),
                "permissions" => {
                    out.permissions = Permissions::parse_list(&value).map_err(permissions_error)?
                }
                "min_ttl" => {
                    out.min_ttl = Some(whole_seconds_up(parse_duration(&value).map_err(|_| {
                        QueryError(
                            "min_ttl is not a duration (examples: 30m, 1h, 90s, 1800)".into(),
                        )
                    })?))
                }
                "protocol" => match &*value {
                    "https" | "http" => out.protocol = Some(value.to_string()),
                    _ => {
                        return Err(QueryError(
                            "protocol is not served: only https (and http for Apps with insecure_http)".into(),
                        ));
                    }
                },
                _ => {
                    return Err(QueryError(
                        "unknown query parameter; expected host, owner, repo, permissions, min_ttl, protocol".into(),
                    ));
                }
            }
            seen.push(key);
        }
        if out.repo.is_some() && out.owner.is_none() {
            return Err(QueryError("repo given without owner".into()));
        }
        Ok(out)
    }

    /// The host, defaulted.
    pub fn host_or_default(&self) -> &str {
        self.host.as_deref().unwrap_or(DEFAULT_HOST)
    }
}

/// A least-remaining-life rounded up to whole seconds, the resolution of `expires_at`, so a
/// sub-second `min_ttl` never shrinks between client and daemon.
fn whole_seconds_up(duration: Duration) -> Duration {
    Duration::from_secs(
        duration
            .as_secs()
            .saturating_add(u64::from(duration.subsec_nanos() > 0)),
    )
}

fn decode_component(raw: &str) -> Result<Cow<'_, str>, QueryError> {
    // The common case (plain names, `contents:read`) borrows: parsing sits on the token route's
    // hot path.
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    // Reject malformed escapes instead of passing them through, unlike lenient decoders.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit())
        {
            return Err(QueryError(
                "bad percent-encoding in query: '%' must be followed by two hex digits".into(),
            ));
        }
    }
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|s| Cow::Owned(s.into_owned()))
        .map_err(|_| QueryError("query is not valid UTF-8 after percent-decoding".into()))
}

/// A permissions error that names the rule broken, never the text given (a query value is never
/// echoed: it may be a secret pasted in the wrong place).
fn permissions_error(error: crate::permissions::PermissionError) -> QueryError {
    use crate::permissions::PermissionError;
    QueryError(
        match error {
            PermissionError::Level(_) => "permissions: a level is not read, write or admin",
            PermissionError::Name(_) => {
                "permissions: a name is not a GitHub permission name (lowercase letters, digits and '_')"
            }
            PermissionError::Syntax(..) => {
                "permissions: expected NAME:LEVEL items separated by ',' (e.g. contents:write)"
            }
            PermissionError::Duplicate(_) => "permissions: a permission is given twice",
        }
        .into(),
    )
}

/// Owner and repository names as GitHub allows them: ASCII letters, digits, `-`, `_`, `.`;
/// at most 100 characters; not `.` or `..`.
pub fn check_name(what: &str, value: &str) -> Result<String, QueryError> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok && crate::secret::looks_like_github_token(value) {
        // Never carried further (answers, the audit log) as a name: it is someone's secret.
        return Err(QueryError(format!(
            "invalid {what}: it has the shape of a GitHub token; never put a token in a name"
        )));
    }
    if ok {
        Ok(value.to_string())
    } else {
        Err(QueryError(format!(
            "invalid {what}: GitHub names use letters, digits, '-', '_' and '.' (at most 100)"
        )))
    }
}

/// A host as git sends it: a DNS name or IP, optionally `:port`.
pub fn check_host(value: &str) -> Result<String, QueryError> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'));
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(QueryError("invalid host: expected host[:port]".into()))
    }
}

/// A token and what it is good for: `200` from `GET /v1/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The installation token (Debug prints its fingerprint only).
    pub token: Token,
    /// When GitHub will stop accepting it, on the daemon's clock (`2026-11-22T05:00:00Z`).
    pub expires_at: Timestamp,
    /// The installation it was minted for.
    pub installation_id: u64,
    /// The configured name of the App that minted it.
    pub app: String,
    /// The git host.
    pub host: String,
    /// The installation's account.
    pub owner: String,
    /// The repositories it is narrowed to; empty when installation-wide.
    pub repositories: Vec<String>,
    /// The permissions GitHub granted it.
    pub permissions: Permissions,
}

/// `DELETE /v1/token` body: invalidate this token if it is the one cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvalidateRequest {
    /// The token git reported as rejected.
    pub token: Token,
}

/// `DELETE /v1/token` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateResponse {
    /// True when the token was cached and has been dropped (the next request mints afresh).
    pub invalidated: bool,
}

/// Every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// `POST /v1/runner-token` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerTokenRequest {
    /// The git host; default github.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The organization the runner registers with — or, with `repo`, the repository's owner.
    pub org: String,
    /// A repository: a runner for it alone (`POST /repos/{org}/{repo}/actions/runners/…`),
    /// the way a user account's repositories get runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// A removal token instead of a registration token.
    #[serde(default)]
    pub remove: bool,
}

/// `POST /v1/runner-token` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerTokenResponse {
    /// The registration or removal token.
    pub token: Token,
    /// When it expires, as GitHub stated it, in UTC whole seconds (`2026-11-22T05:00:00Z`).
    pub expires_at: Timestamp,
    /// `registration` or `remove`.
    pub kind: String,
    /// The organization (or the repository's owner).
    pub org: String,
    /// The URL a runner's `config.sh --url` takes (`https://github.com/acme`, or
    /// `https://github.com/acme/widgets` for a repository's runner).
    pub url: String,
}

/// `GET /v1/status`: what the daemon holds. Never a secret: tokens appear as fingerprints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// ghapp's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The socket it listens on.
    pub socket: String,
    /// True while GitHub is failing and cached tokens are being served on their margin.
    pub degraded: bool,
    /// Why degraded, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_reason: Option<String>,
    /// The configured Apps.
    pub apps: Vec<AppStatus>,
    /// Installations resolved so far.
    pub installations: Vec<InstallationStatus>,
    /// Cached tokens.
    pub tokens: Vec<CachedTokenStatus>,
    /// Counters (requests, cache hits and misses, mints, refresh failures, …).
    pub counters: BTreeMap<String, u64>,
    /// The token cache shared with other replicas (`[cache]`), when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_cache: Option<SharedCacheStatus>,
    /// The central broker a key-less daemon gets its tokens from (`[upstream]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamStatus>,
}

/// The upstream broker in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// Its URL.
    pub url: String,
    /// The git hosts whose tokens come from it.
    pub hosts: Vec<String>,
    /// False while it is unreachable or failing (cached tokens then serve on their margin).
    pub healthy: bool,
    /// Why it is failing, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The shared token cache in `/v1/status`: where it is (never its password) and how it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedCacheStatus {
    /// `redis://HOST:PORT` (no credentials).
    pub backend: String,
    /// True while it answers; false while this replica serves from its own cache alone.
    pub healthy: bool,
    /// Why it is not healthy, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One configured App in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Configured name.
    pub name: String,
    /// The git host it serves.
    pub host: String,
    /// The API base URL.
    pub api_url: String,
    /// App id, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// Client id, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Fingerprint of the private key's public half, so a rotation is visible.
    pub key_fingerprint: String,
    /// GitHub's last reported `x-ratelimit-remaining` for this App, if seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_remaining: Option<u64>,
    /// What the App JWT's `iss` is: `client id`, or `App id` (configured so, or because GitHub
    /// refused the client id — GHES before 3.14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
}

/// One known installation in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationStatus {
    /// The App's configured name.
    pub app: String,
    /// The host.
    pub host: String,
    /// The account.
    pub owner: String,
    /// The installation id.
    pub installation_id: u64,
    /// An Enterprise installation (the owner is the enterprise's slug): it covers no
    /// repository, so it never serves a token request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enterprise: bool,
}

/// One cached token in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedTokenStatus {
    /// `sha256:` fingerprint of the token.
    pub fingerprint: String,
    /// The App's configured name.
    pub app: String,
    /// The host.
    pub host: String,
    /// The account.
    pub owner: String,
    /// The installation id.
    pub installation_id: u64,
    /// Repositories it is narrowed to (empty: installation-wide).
    pub repositories: Vec<String>,
    /// Its permissions.
    pub permissions: Permissions,
    /// When it expires (`2026-11-22T05:00:00Z`).
    pub expires_at: Timestamp,
    /// Seconds of life left.
    pub remaining_secs: u64,
}

/// Human form of a remaining lifetime, for CLI output (`47m 12s`).
pub fn describe_remaining(secs: u64) -> String {
    format_duration(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trip() {
        let q = TokenQuery {
            host: Some("ghe.example.com:8443".into()),
            owner: Some("acme".into()),
            repo: Some("widgets.io".into()),
            permissions: Permissions::parse_list("contents:write,issues:read").unwrap(),
            min_ttl: Some(Duration::from_secs(1800)),
            protocol: Some("https".into()),
        };
        let s = q.to_query_string();
        assert_eq!(TokenQuery::parse(&s).unwrap(), q);
    }

    #[test]
    fn query_rejects_with_reasons() {
        let err = |s: &str| TokenQuery::parse(s).unwrap_err().0;
        assert!(err("owner=acme&bogus=1").contains("unknown query parameter"));
        assert!(err("owner=acme&owner=b").contains("given twice"));
        assert!(err("owner=ac%zzme").contains("percent-encoding"));
        assert!(err("owner=ac%e").contains("percent-encoding"));
        assert!(err("owner=a/b").contains("invalid owner"));
        assert!(err("repo=x").contains("without owner"));
        assert!(err("owner=a&min_ttl=soon").contains("min_ttl"));
        assert!(err("owner=a&protocol=ssh").contains("not served"));
        assert!(err(&format!("owner={}", "a".repeat(300))).contains("longer than"));
        assert!(err("owner=acme&permissions=contents").contains("NAME:LEVEL"));
        // No value is ever echoed: it may be a token pasted in the wrong place.
        let secret = "ghs_0123456789abcdefghijklmnopqrstuvwxyz";
        for query in [
            format!("owner={secret}!"),
            format!("host={secret}/"),
            format!("{secret}=1"),
            format!("owner=a&permissions={secret}"),
            format!("owner=a&permissions=x:{secret}"),
            format!("owner=a&min_ttl={secret}"),
            format!("owner=a&protocol={secret}"),
            format!("owner={secret}%zz"),
            format!("{secret}={}", "a".repeat(300)),
        ] {
            let message = err(&query);
            assert!(!message.contains("ghs_0123"), "{query}: {message}");
        }
        assert_eq!(TokenQuery::parse("").unwrap(), TokenQuery::default());
    }

    #[test]
    fn token_response_debug_redacts() {
        let r = TokenResponse {
            token: Token::new("ghs_secretsecret"),
            expires_at: "2026-11-22T05:00:00Z".parse().unwrap(),
            installation_id: 1,
            app: "a".into(),
            host: "github.com".into(),
            owner: "acme".into(),
            repositories: vec![],
            permissions: Permissions::new(),
        };
        assert!(!format!("{r:?}").contains("ghs_secretsecret"));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"token\":\"ghs_secretsecret\""));
        assert_eq!(serde_json::from_str::<TokenResponse>(&json).unwrap(), r);
    }
}
