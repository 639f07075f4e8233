//! The daemon's side of the API proxy (`[proxy]`, docs/proxy.md): the broker as the proxy's
//! [`TokenSource`]; the daemon's identity model as its [`Identities`] (`[[client]]` keys and
//! `[[oidc]]` ID tokens, judged by `[[policy]]` with the settings in force); the `[cache]` store
//! (the broker's sealed Redis) as its [`SharedStore`]; the proxy served on the daemon's network
//! listener ([`Listener`]: TLS with `tls_cert_file`/`tls_key_file`, plain HTTP on loopback
//! only); and its `[[proxy.client]]`s reloaded on SIGHUP.

use crate::access::Grant;
use crate::identity::{Caller, Credential, Origin};
use crate::network::Listener;
use crate::network::tls::ReloadableCertificate;
use crate::service::TokenService;
use crate::state::State;
use anyhow::Context as _;
use ghapp_broker::{Config, SealedStore, StoreUser};
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::secret::Token;
use ghapp_proxy::shared::SharedStore;
use ghapp_proxy::{BoxFuture, Call, Identities, Peer, Proxy, Refused, TokenSource};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, StatusCode};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Connections the proxy serves at once; more are closed straight away.
pub const MAX_PROXY_CONNECTIONS: usize = 1024;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker behind the daemon's state, as the proxy's source of installation tokens.
pub struct BrokerTokens<S> {
    state: Arc<State<S>>,
}

impl<S: TokenService> TokenSource for BrokerTokens<S> {
    fn installation_token<'a>(
        &'a self,
        host: &'a str,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Token, String>> {
        Box::pin(async move {
            let query = TokenQuery {
                host: Some(host.to_string()),
                owner: Some(owner.to_string()),
                ..TokenQuery::default()
            };
            self.state
                .service
                .token(&query)
                .await
                .map(|answer| answer.token)
                .map_err(|e| e.to_string())
        })
    }
}

/// The daemon's identity model for the proxy's callers: the credential verified by the
/// settings' authenticator, the caller judged by the one policy model
/// ([`crate::access::AccessRules::judge`]), the request checked against the entry's
/// `proxy_scopes`, `hosts`, `owners` and `repos` ([`crate::access::PeerPolicy::check_proxy`]).
/// The settings in force are read for every call, so a SIGHUP reload applies at once.
pub struct PolicyIdentities<S> {
    state: Arc<State<S>>,
}

impl<S: TokenService> Identities for PolicyIdentities<S> {
    fn admit<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<String, Refused>> {
        Box::pin(async move {
            let settings = self.state.settings();
            let headers = id_token_as_bearer(call.headers);
            let credential = match settings.authenticator.authenticate(&headers).await {
                Ok(Some(credential)) => credential,
                Ok(None) => {
                    return Err(refused(
                        StatusCode::UNAUTHORIZED,
                        "Requires authentication".into(),
                    ));
                }
                Err(failure) => {
                    // As /v1/token does: counted and logged with the reason, never the
                    // credential.
                    self.state.metrics.credential_refused();
                    tracing::info!(
                        peer = %call.peer.address,
                        reason = %failure,
                        "proxy: refused an invalid credential"
                    );
                    return Err(refused(
                        StatusCode::UNAUTHORIZED,
                        format!("Bad credentials: {failure}"),
                    ));
                }
            };
            let caller = Caller {
                origin: Origin::Network {
                    address: call.peer.address,
                    tls: call.peer.tls,
                },
                credential: Some(credential),
            };
            let grant = settings.access.judge(&caller);
            let Grant::Policy(entry) = grant else {
                let message = grant.refusal_for(&caller).map_or_else(
                    || format!("no [[policy]] entry grants {caller} the API proxy"),
                    |refusal| refusal.message().to_string(),
                );
                tracing::info!("proxy: refused {caller}: {message}");
                return Err(refused(StatusCode::FORBIDDEN, message));
            };
            if let Err(refusal) = entry.check_proxy(
                call.host,
                call.method,
                call.path,
                call.owner,
                call.repository,
            ) {
                tracing::info!("proxy: refused {caller}: {}", refusal.message());
                return Err(refused(
                    StatusCode::FORBIDDEN,
                    refusal.message().to_string(),
                ));
            }
            Ok(match &caller.credential {
                Some(Credential::Client(name)) => format!("client:{name}"),
                _ => format!("policy:{}", entry.index),
            })
        })
    }
}

fn refused(status: StatusCode, message: String) -> Refused {
    Refused { status, message }
}

/// GitHub's clients send every token as `token X` (PyGithub, gh); the authenticator takes ID
/// tokens only as `Bearer`, so a JWT sent as `token` is presented to it as `Bearer`.
fn id_token_as_bearer(headers: &HeaderMap) -> Cow<'_, HeaderMap> {
    let jwt = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("token"))
        .map(|(_, secret)| secret.trim())
        .filter(|secret| secret.starts_with("eyJ") && secret.split('.').count() == 3);
    let Some(jwt) = jwt else {
        return Cow::Borrowed(headers);
    };
    let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {jwt}")) else {
        return Cow::Borrowed(headers);
    };
    // The ID token is a credential: kept out of any Debug output of these headers.
    value.set_sensitive(true);
    let mut rewritten = headers.clone();
    rewritten.insert(header::AUTHORIZATION, value);
    Cow::Owned(rewritten)
}

/// How the proxy's store names itself in its two log lines.
const PROXY_CACHE: StoreUser = StoreUser {
    label: "the API proxy's shared cache",
    while_down: "the proxy serves from its own in-memory cache until it answers again",
    when_back: "sharing answers with the other daemons' proxies",
};

/// Where proxy answers live in the store: the names are `ghapp:proxy:` + an HMAC of the cache
/// key, so they name no URL, owner or repository.
const PROXY_PREFIX: &str = "ghapp:proxy:";

/// The `[cache]` store (the broker's sealed Redis: AES-256-GCM, the cache key as associated
/// data) as the proxy's shared layer.
pub struct SealedAnswers {
    store: Arc<SealedStore>,
}

impl SealedAnswers {
    /// The key a value is bound to: the proxy's cache key, marked as the proxy's so no value of
    /// another user of the store opens as an answer.
    fn bound(key: &str) -> String {
        format!("proxy\n{key}")
    }
}

impl SharedStore for SealedAnswers {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<(Vec<u8>, Duration)>> {
        Box::pin(async move {
            let (plain, remaining) = self.store.get(PROXY_PREFIX, &Self::bound(key)).await?;
            Some((plain.to_vec(), remaining))
        })
    }

    fn store<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.store
                .put(PROXY_PREFIX, &Self::bound(key), &value, ttl)
                .await;
        })
    }
}

/// The running proxy listener; dropping it stops accepting (open connections finish) and
/// ends its reload task.
pub struct ProxyServer {
    /// The address bound.
    pub local_addr: SocketAddr,
    proxy: Arc<Proxy>,
    accept: JoinHandle<()>,
}

impl ProxyServer {
    /// Puts the `[[proxy.client]]`s of a config the daemon's SIGHUP reload accepted in force (a
    /// scope that does not compile leaves the registry in force). `[[policy]]` identities need
    /// nothing here: they are read from the settings in force. The listener, TLS and cache
    /// settings change with a restart.
    pub fn reload(&self, config: &Config) {
        match self.proxy.reload_registry(config) {
            Ok(clients) => tracing::info!("proxy: {clients} [[proxy.client]] entries in force"),
            Err(e) => tracing::error!(
                "proxy: reload failed, keeping the previous [[proxy.client]] entries: {e}"
            ),
        }
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Starts the proxy when `[proxy]` is configured (`None` otherwise) and logs
/// `ghapp proxy listening on http(s)://ADDR` before returning. Relative TLS file names are
/// taken from the config file's directory.
pub fn start<S: TokenService>(
    config: &Config,
    config_path: &Path,
    state: Arc<State<S>>,
) -> anyhow::Result<Option<ProxyServer>> {
    let Some(settings) = &config.proxy else {
        return Ok(None);
    };
    let address: SocketAddr = settings
        .listen
        .parse()
        .with_context(|| format!("[proxy] listen {:?} is not ADDR:PORT", settings.listen))?;
    let relative = |path: &Path| match config_path.parent() {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    };
    let acceptor = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            ReloadableCertificate::load(&relative(cert), &relative(key))
                .and_then(|certificate| certificate.acceptor())
                .context("cannot use the [proxy] TLS certificate")?,
        ),
        _ => None,
    };
    let listener = Listener::bind(address, acceptor).context("cannot serve [proxy]")?;
    let source = Arc::new(BrokerTokens {
        state: state.clone(),
    });
    let mut proxy = Proxy::from_config(config, source)
        .context("cannot start the API proxy")?
        .with_identities(Arc::new(PolicyIdentities { state }));
    let shared = match &config.cache {
        Some(cache) => {
            let store = SealedStore::start(cache, PROXY_CACHE)
                .map_err(|e| anyhow::anyhow!("[cache] for the API proxy: {e}"))?;
            let described = store.describe().to_string();
            proxy = proxy.with_shared_cache(Arc::new(SealedAnswers { store }));
            format!(", answers shared through {described}")
        }
        None => String::new(),
    };
    let proxy = Arc::new(proxy);
    let proxy_handle = proxy.clone();
    let local_addr = listener.local_addr();
    let scheme = if listener.is_tls() { "https" } else { "http" };
    let clients = proxy.registry().len();
    tracing::info!(
        "ghapp proxy listening on {scheme}://{local_addr} ({clients} client{}{shared})",
        if clients == 1 { "" } else { "s" }
    );
    let slots = Arc::new(Semaphore::new(MAX_PROXY_CONNECTIONS));
    let accept = tokio::spawn(async move {
        loop {
            let accepted = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    "proxy: {MAX_PROXY_CONNECTIONS} connections open; closing a new one"
                );
                continue;
            };
            let Origin::Network { address, tls } = accepted.origin() else {
                continue;
            };
            let peer = Peer { address, tls };
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepted.handshake()).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!("proxy: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                ghapp_proxy::connection::serve_connection(proxy, stream, peer).await;
                drop(slot);
            });
        }
    });
    Ok(Some(ProxyServer {
        local_addr,
        proxy: proxy_handle,
        accept,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_token_sent_as_token_is_presented_as_bearer_and_kept_sensitive() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("token {jwt}")).unwrap(),
        );
        let rewritten = id_token_as_bearer(&headers);
        let value = rewritten.get(header::AUTHORIZATION).expect("authorization");
        assert_eq!(value.to_str().unwrap(), format!("Bearer {jwt}"));
        assert!(value.is_sensitive());
        assert!(!format!("{rewritten:?}").contains(jwt));
    }
}
