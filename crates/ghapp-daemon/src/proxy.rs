//! The daemon's side of the API proxy (`[proxy]`, docs/proxy.md): the broker as the proxy's
//! [`TokenSource`], and starting the proxy's listener when the config asks for it.

use crate::service::TokenService;
use crate::state::State;
use anyhow::Context as _;
use ghapp_broker::Config;
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::secret::Token;
use ghapp_proxy::listener::ProxyListener;
use ghapp_proxy::{BoxFuture, Proxy, TokenSource};
use std::sync::Arc;

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

/// Starts the proxy's listener when `[proxy]` is configured; `None` otherwise. Logs the
/// address it serves (`ghapp proxy listening on http://ADDR`) before returning.
pub async fn start<S: TokenService>(
    config: &Config,
    state: Arc<State<S>>,
) -> anyhow::Result<Option<ProxyListener>> {
    if config.proxy.is_none() {
        return Ok(None);
    }
    let source = Arc::new(BrokerTokens { state });
    let proxy = Proxy::from_config(config, source).context("cannot start the API proxy")?;
    let clients = proxy.registry.len();
    let listener = ghapp_proxy::listener::serve(Arc::new(proxy))
        .await
        .context("cannot start the API proxy")?;
    tracing::info!(
        "ghapp proxy listening on http://{} ({clients} client{})",
        listener.local_addr,
        if clients == 1 { "" } else { "s" }
    );
    Ok(Some(listener))
}
