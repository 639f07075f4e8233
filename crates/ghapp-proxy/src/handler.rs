//! One request through the proxy: the metrics page (loopback callers only), the layout check,
//! the client's key and scopes — a `[[proxy.client]]`'s, or what the daemon's `[[policy]]`
//! grants a `[[client]]` key or an ID token — (all before the cache or GitHub is touched), then a cached GET
//! (hit, revalidated, or a single-flight miss) or a pass-through, with the pool rotating away
//! from rate-limited credentials. Every answer carries `x-ghapp-cache`.

use crate::cache::{CacheKey, Entry};
use crate::pool::{CredentialId, NoCredential, is_rate_limited, resource_of};
use crate::registry::AuthFailure;
use crate::route::{ApiPath, PathProblem};
use crate::telemetry::{self, UNKNOWN_CLIENT};
use crate::upstream::{Answer, Rewrite};
use crate::{Call, Peer, Proxy};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use std::sync::Arc;
use std::time::Instant;

/// The header naming how an answer was served.
pub const CACHE_HEADER: &str = "x-ghapp-cache";

/// Where the proxy's own error answers point.
const DOCS: &str = "https://docs.github.com/rest";

/// An answer as shared between the waiters of one flight.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers (upstream URLs not yet rewritten).
    pub headers: HeaderMap,
    /// Body (upstream URLs not yet rewritten).
    pub body: Bytes,
}

/// What one fetch produced: the answer, how it was served, and the rate-limit points spent.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The answer.
    pub reply: Arc<Reply>,
    /// `revalidated` or `miss`.
    pub outcome: &'static str,
    /// Points spent (1 for an answer other than 304, 0 for a 304).
    pub points: u64,
}

/// A flight's outcome (shared by its waiters).
pub type Outcome = Result<Fetched, FlightFailure>;

impl Proxy {
    /// Serves one request from `peer` (`/metrics` only to loopback peers).
    pub async fn handle(&self, mut parts: Parts, body: Bytes, peer: Peer) -> Response<Full<Bytes>> {
        // The client's credential: kept out of any Debug output of these headers.
        if let Some(value) = parts.headers.get_mut(header::AUTHORIZATION) {
            value.set_sensitive(true);
        }
        let path = parts.uri.path();
        if path == "/metrics" && parts.method == Method::GET {
            return self.metrics(peer.address.is_loopback());
        }
        let api = match ApiPath::parse(path) {
            Ok(api) => api,
            Err(PathProblem::NotApi) => {
                self.telemetry.answered(UNKNOWN_CLIENT, 404);
                return error(
                    StatusCode::NOT_FOUND,
                    "Not Found: the proxy serves /api/v3/… and /api/graphql",
                );
            }
            Err(PathProblem::Ambiguous) => {
                self.telemetry.answered(UNKNOWN_CLIENT, 400);
                return error(
                    StatusCode::BAD_REQUEST,
                    "the path has dot, empty or encoded-slash segments",
                );
            }
        };
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let registry = self.registry();
        let admitted = match (registry.authenticate(authorization), &self.identities) {
            (Ok(client), _) if client.allows(parts.method.as_str(), api.scope_path()) => {
                client.name.clone()
            }
            (Ok(client), _) => {
                let message = format!(
                    "the proxy client {} may not {} {}",
                    client.name,
                    parts.method,
                    api.scope_path()
                );
                return self.refuse(&client.name, StatusCode::FORBIDDEN, &message);
            }
            (Err(AuthFailure::Unknown), Some(identities)) => {
                let owner = api.owner();
                let repository = api.repository();
                let call = Call {
                    headers: &parts.headers,
                    peer,
                    host: &self.settings.host,
                    method: parts.method.as_str(),
                    path: api.scope_path(),
                    owner: owner.as_deref(),
                    repository: repository.as_deref(),
                };
                match identities.admit(call).await {
                    Ok(label) => label,
                    Err(refused) => {
                        return self.refuse(UNKNOWN_CLIENT, refused.status, &refused.message);
                    }
                }
            }
            (Err(failure), _) => {
                self.telemetry.answered(UNKNOWN_CLIENT, 401);
                if failure == AuthFailure::Unknown {
                    tracing::info!(
                        peer = %peer.address,
                        "proxy: refused a key no [[proxy.client]] holds"
                    );
                }
                let message = match failure {
                    AuthFailure::Missing => {
                        "Requires authentication: send `Authorization: token KEY` with your proxy client key"
                    }
                    AuthFailure::Unknown => "Bad credentials",
                };
                return error(StatusCode::UNAUTHORIZED, message);
            }
        };
        let name = admitted.as_str();
        let scheme = peer.scheme();
        let client_base = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|host| format!("{scheme}://{host}/api/v3"));
        let rewrite = Rewrite {
            from: self.upstream.rest_base.clone(),
            to: client_base.unwrap_or_else(|| self.upstream.rest_base.clone()),
        };
        let url = match &api {
            ApiPath::Rest(rest) => match parts.uri.query() {
                Some(query) => format!("{}{rest}?{query}", self.upstream.rest_base),
                None => format!("{}{rest}", self.upstream.rest_base),
            },
            ApiPath::Graphql => self.upstream.graphql_url.clone(),
        };
        let owner = api.owner();
        let candidates = self.pool.candidates(
            owner.as_deref(),
            self.settings.default_installation.as_deref(),
        );
        let cacheable = parts.method == Method::GET && matches!(api, ApiPath::Rest(_));
        let resource = resource_of(matches!(api, ApiPath::Graphql), api.scope_path());
        let result = if cacheable {
            self.cached_get(&parts, &url, &candidates, resource).await
        } else {
            self.exchange(&parts, &url, body, &candidates, resource, None)
                .await
                .map(|fetched| (fetched.reply, "bypass", fetched.points))
        };
        let response = match result {
            Ok((reply, outcome, points)) => {
                self.telemetry.cache(name, outcome);
                if points > 0 {
                    self.telemetry.points(name, points);
                }
                respond(&reply, outcome, &rewrite, &parts.headers)
            }
            Err(response) => response,
        };
        self.telemetry.answered(name, response.status().as_u16());
        response
    }

    /// The proxy's own refusal (401, 403) of `who`, counted; nothing else was touched.
    fn refuse(&self, who: &str, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
        self.telemetry.answered(who, status.as_u16());
        if status == StatusCode::FORBIDDEN {
            self.telemetry.cache(who, "bypass");
        }
        error(status, message)
    }

    /// `/metrics`: for loopback callers only (the page names clients and credentials).
    fn metrics(&self, loopback: bool) -> Response<Full<Bytes>> {
        if !loopback {
            return error(
                StatusCode::FORBIDDEN,
                "/metrics is served to loopback callers only",
            );
        }
        let (entries, bytes) = self.cache.usage();
        match self.telemetry.render(&self.pool.report(), entries, bytes) {
            Ok(page) => {
                let mut response = Response::new(Full::new(Bytes::from(page)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(telemetry::CONTENT_TYPE),
                );
                response
            }
            Err(_) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics",
            ),
        }
    }

    /// The cache key of `url` for credential `id`, under the App the tokens act as.
    fn key(&self, id: &CredentialId, accept: &str, url: &str) -> CacheKey {
        let class = format!("{} {}", self.settings.identity, self.pool.cache_class(id));
        CacheKey::new("GET", &class, accept, url)
    }

    /// A GET: served from a fresh entry (`hit`), else revalidated or fetched once for every
    /// identical concurrent request (the flight's waiters count as `hit`s).
    async fn cached_get(
        &self,
        parts: &Parts,
        url: &str,
        candidates: &[CredentialId],
        resource: &'static str,
    ) -> Result<(Arc<Reply>, &'static str, u64), Response<Full<Bytes>>> {
        // GitHub's answers vary on the media type and on the API version asked for.
        let header_text = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let variant = format!(
            "{}|{}",
            header_text("accept"),
            header_text("x-github-api-version")
        );
        let accept = variant.as_str();
        // A credential that already holds an answer keeps serving it (a revalidation is free),
        // so the cache is not split between credentials; a miss goes to the pool's pick.
        let mut first = None;
        for id in candidates {
            if !self.pool.usable(id, resource) {
                continue;
            }
            if let Some(entry) = self
                .cache
                .get(&self.key(id, accept, url), self.settings.fresh_for)
                .await
            {
                if entry.validated.elapsed() < self.settings.fresh_for {
                    return Ok((Arc::new(reply_of(&entry)), "hit", 0));
                }
                first = Some(id.clone());
                break;
            }
        }
        let first = match first {
            Some(id) => id,
            None => self
                .pool
                .pick(candidates, &[], resource)
                .map_err(no_credential)?,
        };
        let key = self.key(&first, accept, url);
        let (fetched, led) = self
            .flights
            .run(&key, || async {
                self.exchange(
                    parts,
                    url,
                    Bytes::new(),
                    candidates,
                    resource,
                    Some((first.clone(), accept)),
                )
                .await
                .map_err(FlightFailure::from)
            })
            .await;
        let fetched = fetched.map_err(|failure| failure.response())?;
        if led {
            Ok((fetched.reply, fetched.outcome, fetched.points))
        } else {
            Ok((fetched.reply, "hit", 0))
        }
    }

    /// Sends the request with the pool's credentials, moving on from each one GitHub answers
    /// with a rate limit. With `cache` (`(first credential, accept)`), revalidates the entry
    /// of the credential used and stores a cacheable answer.
    async fn exchange(
        &self,
        parts: &Parts,
        url: &str,
        body: Bytes,
        candidates: &[CredentialId],
        resource: &'static str,
        cache: Option<(CredentialId, &str)>,
    ) -> Result<Fetched, Response<Full<Bytes>>> {
        let mut tried: Vec<CredentialId> = Vec::new();
        let mut next = cache.as_ref().map(|(id, _)| id.clone());
        let mut last_limited: Option<Answer> = None;
        let mut last_reason: Option<String> = None;
        loop {
            let id = match next.take() {
                Some(id) => id,
                None => match self.pool.pick(candidates, &tried, resource) {
                    Ok(id) => id,
                    Err(no) => {
                        if let Some(answer) = last_limited {
                            return Err(plain(&answer));
                        }
                        let no = match (no, last_reason) {
                            (NoCredential::Unavailable { .. }, Some(reason)) => {
                                NoCredential::Unavailable { reason }
                            }
                            (no, _) => no,
                        };
                        return Err(no_credential(no));
                    }
                },
            };
            tried.push(id.clone());
            let label = self.pool.label(&id);
            let token = match self.pool.secret(&id, &self.settings.host).await {
                Ok(token) => token,
                Err(reason) => {
                    tracing::warn!("proxy: credential {label} unavailable: {reason}");
                    last_reason = Some(format!("{label}: {reason}"));
                    continue;
                }
            };
            let (key, entry) = match &cache {
                Some((_, accept)) => {
                    let key = self.key(&id, accept, url);
                    let entry = self.cache.get_local(&key);
                    (Some(key), entry)
                }
                None => (None, None),
            };
            let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::new();
            if let Some(entry) = &entry {
                if let Some(etag) = entry
                    .etag
                    .as_deref()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                {
                    extra.push((header::IF_NONE_MATCH, etag));
                }
                if let Some(date) = entry
                    .last_modified
                    .as_deref()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                {
                    extra.push((header::IF_MODIFIED_SINCE, date));
                }
            }
            let answer = match self
                .upstream
                .send(
                    &parts.method,
                    url,
                    &parts.headers,
                    &extra,
                    body.clone(),
                    &token,
                )
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!("proxy: GitHub did not answer with {label}: {e}");
                    return Err(error(
                        StatusCode::BAD_GATEWAY,
                        &format!("the proxy could not reach GitHub: {}", e.reason),
                    ));
                }
            };
            let status = answer.status.as_u16();
            self.telemetry.upstream(&label, status);
            self.pool.observe(&id, resource, &answer.headers);
            if is_rate_limited(status, &answer.headers, &answer.body) {
                let rest = self.pool.rest(&id, resource, &answer.headers);
                self.telemetry.rested(&label);
                tracing::warn!(
                    "proxy: {label} is rate limited; resting it {}s and trying the next credential",
                    rest.as_secs()
                );
                last_limited = Some(answer);
                continue;
            }
            if status == 304
                && let (Some(key), Some(entry)) = (key.clone(), entry)
            {
                let mut headers = entry.headers.clone();
                for (name, value) in &answer.headers {
                    if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                        headers.insert(name.clone(), value.clone());
                    }
                }
                let refreshed = Arc::new(Entry {
                    status: entry.status,
                    etag: header_string(&headers, header::ETAG).or_else(|| entry.etag.clone()),
                    last_modified: header_string(&headers, header::LAST_MODIFIED)
                        .or_else(|| entry.last_modified.clone()),
                    headers,
                    body: entry.body.clone(),
                    validated: Instant::now(),
                });
                let reply = Arc::new(reply_of(&refreshed));
                self.cache.put(key, refreshed).await;
                return Ok(Fetched {
                    reply,
                    outcome: "revalidated",
                    points: 0,
                });
            }
            let points = u64::from(status != 304);
            if let Some(key) = key
                && status == 200
            {
                let etag = header_string(&answer.headers, header::ETAG);
                let last_modified = header_string(&answer.headers, header::LAST_MODIFIED);
                if etag.is_some() || last_modified.is_some() {
                    self.cache
                        .put(
                            key,
                            Arc::new(Entry {
                                status: answer.status,
                                headers: answer.headers.clone(),
                                body: answer.body.clone(),
                                etag,
                                last_modified,
                                validated: Instant::now(),
                            }),
                        )
                        .await;
                }
            }
            return Ok(Fetched {
                reply: Arc::new(Reply {
                    status: answer.status,
                    headers: answer.headers,
                    body: answer.body,
                }),
                outcome: "miss",
                points,
            });
        }
    }
}

/// A failure shared by a flight's waiters (responses are not `Clone`).
#[derive(Debug, Clone)]
pub struct FlightFailure {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl From<Response<Full<Bytes>>> for FlightFailure {
    fn from(response: Response<Full<Bytes>>) -> Self {
        let (parts, body) = response.into_parts();
        // A Full body is one ready frame.
        let body = futures_ready(body);
        FlightFailure {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

impl FlightFailure {
    fn response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// The bytes of a `Full` body without awaiting (it holds one frame, ready at once).
fn futures_ready(body: Full<Bytes>) -> Bytes {
    use http_body_util::BodyExt as _;
    use std::future::Future as _;
    let mut collect = std::pin::pin!(body.collect());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match collect.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(collected)) => collected.to_bytes(),
        _ => Bytes::new(),
    }
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn reply_of(entry: &Entry) -> Reply {
    Reply {
        status: entry.status,
        headers: entry.headers.clone(),
        body: entry.body.clone(),
    }
}

/// The client's answer: GitHub's (URLs rewritten), or 304 when the client's own
/// `If-None-Match` matches, with `x-ghapp-cache`.
fn respond(
    reply: &Reply,
    outcome: &'static str,
    rewrite: &Rewrite,
    request: &HeaderMap,
) -> Response<Full<Bytes>> {
    let mut headers = reply.headers.clone();
    rewrite.headers(&mut headers);
    headers.insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(outcome),
    );
    let not_modified = reply.status == StatusCode::OK
        && request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .zip(headers.get(header::ETAG).and_then(|v| v.to_str().ok()))
            .is_some_and(|(wanted, etag)| etag_matches(wanted, etag));
    let (status, body) = if not_modified {
        headers.remove(header::CONTENT_TYPE);
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (reply.status, rewrite.body(&reply.headers, &reply.body))
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `If-None-Match` (a list, or `*`) against an ETag, comparing weakly as RFC 9110 says for
/// GET.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    let etag = opaque(etag);
    if_none_match
        .split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == etag)
}

/// GitHub's rate-limited answer as it came (no credential left to try).
fn plain(answer: &Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(answer.body.clone()));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers.clone();
    response.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static("bypass"),
    );
    response
}

/// The answer when no credential can serve a request.
fn no_credential(no: NoCredential) -> Response<Full<Bytes>> {
    match no {
        NoCredential::Resting { retry_after } => {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded: every credential of the ghapp proxy that can serve this path is rate limited",
            );
            let headers = response.headers_mut();
            headers.insert("retry-after", HeaderValue::from(retry_after));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            response
        }
        NoCredential::Unavailable { reason } => error(
            StatusCode::BAD_GATEWAY,
            &format!("the proxy has no credential for this path: {reason}"),
        ),
    }
}

/// An answer of the proxy's own, shaped like GitHub's errors.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message, "documentation_url": DOCS });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static("bypass"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::CredentialId;
    use crate::{BoxFuture, TokenSource};
    use ghapp_protocol::config::Config;
    use ghapp_protocol::secret::Token;

    struct NoTokens;

    impl TokenSource for NoTokens {
        fn installation_token<'a>(
            &'a self,
            _host: &'a str,
            _owner: &'a str,
        ) -> BoxFuture<'a, Result<Token, String>> {
            Box::pin(async { Err("none in this test".to_string()) })
        }
    }

    fn proxy(app: &str) -> Proxy {
        let text = format!(
            "[[app]]\nname = \"main\"\n{app}\nprivate_key_env = \"UNUSED_PEM\"\n\n\
             [proxy]\nlisten = \"127.0.0.1:0\"\n\n[[proxy.credential]]\nname = \"bot\"\n\
             token_env = \"BOT\"\n"
        );
        let config = Config::parse(&text, std::path::Path::new("test.toml")).expect("config");
        Proxy::with_environment(&config, Arc::new(NoTokens), |_| Some("ghp_bot".into()))
            .expect("proxy")
    }

    /// Two daemons sharing one `[cache]` with different Apps: the installation on `acme` is
    /// not the same credential, so their answers must not share a key.
    #[test]
    fn the_cache_key_names_the_app_the_tokens_act_as() {
        let url = "https://api.github.com/repos/acme/secret";
        let acme = CredentialId::Installation("acme".into());
        let (a, a_again, b) = (
            proxy("app_id = 1"),
            proxy("app_id = 1"),
            proxy("app_id = 2"),
        );
        assert_eq!(a.key(&acme, "", url), a_again.key(&acme, "", url));
        assert_ne!(a.key(&acme, "", url), b.key(&acme, "", url));
        let by_client = proxy("client_id = \"Iv23abc\"");
        assert_ne!(a.key(&acme, "", url), by_client.key(&acme, "", url));
        // A personal token is keyed by its fingerprint, not its local name.
        let bot = CredentialId::Personal(0);
        assert!(
            a.key(&bot, "", url).0.contains("sha256:"),
            "{:?}",
            a.key(&bot, "", url)
        );
        assert!(!a.key(&bot, "", url).0.contains("ghp_bot"));
    }

    #[test]
    fn weak_etag_comparison() {
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
