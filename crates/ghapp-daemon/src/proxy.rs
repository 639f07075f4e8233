//! The daemon's side of the API proxy (`[proxy]`, docs/proxy.md): the broker as the proxy's
//! [`TokenSource`], and the proxy served on the daemon's network listener ([`Listener`]: TLS
//! with `tls_cert_file`/`tls_key_file`, plain HTTP on loopback only).

use crate::network::Listener;
use crate::network::tls::ReloadableCertificate;
use crate::service::TokenService;
use crate::state::State;
use anyhow::Context as _;
use ghapp_broker::Config;
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::secret::Token;
use ghapp_proxy::{BoxFuture, Proxy, TokenSource};
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

/// The running proxy listener; dropping it stops accepting (open connections finish).
pub struct ProxyServer {
    /// The address bound.
    pub local_addr: SocketAddr,
    accept: JoinHandle<()>,
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
    let source = Arc::new(BrokerTokens { state });
    let proxy = Arc::new(Proxy::from_config(config, source).context("cannot start the API proxy")?);
    let local_addr = listener.local_addr();
    let scheme = if listener.is_tls() { "https" } else { "http" };
    let clients = proxy.registry.len();
    tracing::info!(
        "ghapp proxy listening on {scheme}://{local_addr} ({clients} client{})",
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
            let loopback = accepted.origin().address().is_some_and(|a| a.is_loopback());
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
                ghapp_proxy::connection::serve_connection(proxy, stream, loopback, scheme).await;
                drop(slot);
            });
        }
    });
    Ok(Some(ProxyServer { local_addr, accept }))
}
