//! ghapp's caching GitHub API proxy (docs/proxy.md): clients registered in `[[proxy.client]]`
//! send `Authorization: token KEY` to GitHub's Enterprise layout (`/api/v3/…`,
//! `/api/graphql`) on the proxy's listener; the proxy checks the key and the client's scopes,
//! answers GETs from its cache (revalidated with GitHub's conditional requests, which cost no
//! rate limit when they answer 304), and forwards the rest with a credential from its pool —
//! the broker's installation tokens and optional personal tokens. A client key never reaches
//! GitHub.
//!
//! - [`registry`]: the clients, their keys and scopes.
//! - [`route`]: the Enterprise layout and the account a path names.
//! - [`pool`]: the credentials, their rate-limit state and rests.
//! - [`cache`]: the LRU of answers with a byte budget, in front of a store shared by several
//!   daemons when there is one ([`shared`]: the seam the daemon fills with its sealed Redis);
//!   [`flight`]: single flight of misses.
//! - [`upstream`]: forwarding to GitHub and rewriting its URLs to the proxy's.
//! - [`telemetry`]: per-client and per-credential metrics.
//! - [`handler`]: one request, start to finish; [`connection`]: HTTP/1.1 on one accepted
//!   stream (the daemon's network listener accepts them: TLS, or plain on loopback).
//!
//! The proxy knows nothing of the broker's internals nor of the daemon's identity model: the
//! daemon hands it a [`TokenSource`], and [`Identities`] for callers the registry does not
//! know (`[[client]]` keys and `[[oidc]]` ID tokens judged by `[[policy]]`).

pub mod cache;
pub mod connection;
pub mod flight;
pub mod handler;
pub mod pool;
pub mod registry;
pub mod route;
pub mod shared;
pub mod telemetry;
pub mod upstream;

use cache::{Cache, CacheKey};
use flight::Flights;
use ghapp_protocol::config::Config;
use ghapp_protocol::secret::Token;
use pool::Pool;
use registry::Registry;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use telemetry::Telemetry;
use upstream::Upstream;

/// A boxed future, so [`TokenSource`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where installation tokens come from: the daemon implements it with its broker.
pub trait TokenSource: Send + Sync + 'static {
    /// A token of the installation on `owner` for git host `host` (installation-wide, the
    /// App's permissions), or why there is none (no secret in the message).
    fn installation_token<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Token, String>>;
}

/// Where a connection comes from, as the listener reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The source address.
    pub address: IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Peer {
    /// How the client reached the proxy (`http`, `https`): the base URL answers are rewritten
    /// to.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// A request whose credential the proxy's own registry does not know, as the daemon's identity
/// model judges it: who sent it, what it presented, and what it asks for. Its `Debug` leaves
/// the headers out: they hold the caller's credential.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The request's headers (`Authorization` among them).
    pub headers: &'a http::HeaderMap,
    /// Where it comes from.
    pub peer: Peer,
    /// The git host of the proxied `[[app]]`.
    pub host: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path scopes see (the REST path without `/api/v3` or the query; `/graphql`).
    pub path: &'a str,
    /// The account the path names, lower-cased.
    pub owner: Option<&'a str>,
    /// The repository `/repos/{owner}/{repo}…` names, lower-cased.
    pub repository: Option<&'a str>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("headers", &format_args!("<{} headers>", self.headers.len()))
            .field("peer", &self.peer)
            .field("host", &self.host)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("repository", &self.repository)
            .finish()
    }
}

/// Why the daemon refused a [`Call`]: 401 (the credential is not valid) or 403 (no policy
/// grants the request), with a message naming the caller and the entry, never the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 401 or 403.
    pub status: http::StatusCode,
    /// What to tell the client.
    pub message: String,
}

/// The daemon's identity model, for callers the registry does not know: verifies the credential
/// and asks the policy whether it grants the request.
pub trait Identities: Send + Sync + 'static {
    /// The caller's label for metrics and logs (bounded: a configured name or entry, never a
    /// subject) when it is granted `call`, else why not.
    fn admit<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<String, Refused>>;
}

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The config has no `[proxy]`.
    #[error("the config has no [proxy] table")]
    NotConfigured,
    /// No `[[app]]` serves the upstream host.
    #[error("[proxy] upstream_host {host:?}: no [[app]] serves it")]
    NoUpstream {
        /// The host asked for.
        host: String,
    },
    /// A client entry is unusable.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// A personal token's variable is unset or empty.
    #[error("[[proxy.credential]] {name}: environment variable {variable} is unset or empty")]
    MissingToken {
        /// The credential's name.
        name: String,
        /// The variable.
        variable: String,
    },
    /// The HTTP client for GitHub cannot be built.
    #[error("[proxy] upstream {host}: {reason}")]
    Client {
        /// The upstream host.
        host: String,
        /// What failed.
        reason: String,
    },
}

/// What the handler needs besides its parts.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The git host of the proxied `[[app]]` (asked of the broker).
    pub host: String,
    /// Who the installation tokens act as (the App's id, or the `[upstream]` broker that
    /// mints them): part of every cache key, so daemons sharing a `[cache]` but serving
    /// different Apps never serve each other's answers.
    pub identity: String,
    /// The account of the default installation.
    pub default_installation: Option<String>,
    /// How long an answer is served without revalidation.
    pub fresh_for: Duration,
}

/// The proxy: every part, shared by all connections.
pub struct Proxy {
    /// Settings.
    pub settings: ProxySettings,
    /// The clients (replaced whole on reload).
    registry: RwLock<Arc<Registry>>,
    /// The credentials.
    pub pool: Pool,
    /// The cache.
    pub cache: Cache,
    /// Misses in flight.
    pub flights: Flights<CacheKey, handler::Outcome>,
    /// GitHub.
    pub upstream: Upstream,
    /// Metrics.
    pub telemetry: Telemetry,
    /// The daemon's identities, for keys the registry does not know.
    pub identities: Option<Arc<dyn Identities>>,
}

impl Proxy {
    /// The clients in force (a cheap snapshot).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts the `[[proxy.client]]`s of a reloaded config in force (every scope compiled first:
    /// a registry that does not build leaves the one in force).
    pub fn reload_registry(&self, config: &Config) -> Result<usize, ProxyError> {
        let proxy = config.proxy.as_ref().ok_or(ProxyError::NotConfigured)?;
        let registry = Registry::new(&proxy.clients)?;
        let clients = registry.len();
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
        Ok(clients)
    }

    /// The same proxy keeping its answers in `shared` too (the daemon's `[cache]` Redis), so
    /// every daemon using that store serves and revalidates the others' answers.
    pub fn with_shared_cache(mut self, shared: Arc<dyn shared::SharedStore>) -> Proxy {
        self.cache = self.cache.with_shared(shared);
        self
    }

    /// The same proxy admitting, beside its `[[proxy.client]]`s, the callers `identities`
    /// grants (the daemon's `[[client]]` keys and `[[oidc]]` ID tokens through `[[policy]]`).
    pub fn with_identities(mut self, identities: Arc<dyn Identities>) -> Proxy {
        self.identities = Some(identities);
        self
    }

    /// Builds the proxy from `[proxy]`, reading personal tokens from the environment.
    pub fn from_config(config: &Config, source: Arc<dyn TokenSource>) -> Result<Proxy, ProxyError> {
        Self::with_environment(config, source, |name| std::env::var(name).ok())
    }

    /// [`Proxy::from_config`] with the environment given as a function (tests).
    pub fn with_environment(
        config: &Config,
        source: Arc<dyn TokenSource>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Proxy, ProxyError> {
        let proxy = config.proxy.as_ref().ok_or(ProxyError::NotConfigured)?;
        let app = match &proxy.upstream_host {
            Some(host) => config.apps_for_host(host).next(),
            None => config.apps.first(),
        }
        .ok_or_else(|| ProxyError::NoUpstream {
            host: proxy.upstream_host.clone().unwrap_or_default(),
        })?;
        let registry = Registry::new(&proxy.clients)?;
        let mut personals = Vec::new();
        for credential in &proxy.credentials {
            let name = credential
                .name
                .clone()
                .unwrap_or_else(|| credential.token_env.clone());
            let token = env(&credential.token_env)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ProxyError::MissingToken {
                    name: name.clone(),
                    variable: credential.token_env.clone(),
                })?;
            personals.push((name, Token::new(token)));
        }
        let upstream = Upstream::new(app, &config.daemon).map_err(|reason| ProxyError::Client {
            host: app.host.clone(),
            reason,
        })?;
        let budget = usize::try_from(proxy.cache_bytes).unwrap_or(usize::MAX);
        Ok(Proxy {
            settings: ProxySettings {
                host: app.host.clone(),
                identity: app_identity(config, app),
                default_installation: proxy.default_installation.clone(),
                fresh_for: proxy.cache_fresh_for,
            },
            registry: RwLock::new(Arc::new(registry)),
            pool: Pool::new(source, personals),
            cache: Cache::new(proxy.cache_ttl, budget),
            flights: Flights::default(),
            upstream,
            telemetry: Telemetry::default(),
            identities: None,
        })
    }
}

/// Who `app`'s installation tokens act as: its App id (or client id) on its API; without
/// either, the `[upstream]` broker that mints them for its host; else the entry's name.
pub fn app_identity(config: &Config, app: &ghapp_protocol::config::AppConfig) -> String {
    let api = app.api_base();
    if let Some(id) = app.app_id {
        return format!("app:{id}@{api}");
    }
    if let Some(client) = &app.client_id {
        return format!("app:{client}@{api}");
    }
    match &config.upstream {
        Some(upstream)
            if upstream
                .hosts
                .iter()
                .any(|host| host.eq_ignore_ascii_case(&app.host)) =>
        {
            format!("upstream:{}@{api}", upstream.url)
        }
        _ => format!("app-entry:{}@{api}", app.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_debug_shows_no_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("token secret-client-key"),
        );
        let call = Call {
            headers: &headers,
            peer: Peer {
                address: IpAddr::from([127, 0, 0, 1]),
                tls: false,
            },
            host: "github.com",
            method: "GET",
            path: "/repos/acme/widgets",
            owner: Some("acme"),
            repository: Some("widgets"),
        };
        let shown = format!("{call:?}");
        assert!(!shown.contains("secret-client-key"), "{shown}");
        assert!(shown.contains("/repos/acme/widgets"), "{shown}");
    }
}
