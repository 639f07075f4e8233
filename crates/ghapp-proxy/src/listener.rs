//! The proxy's own listener: plain HTTP/1.1 on a loopback address (a non-loopback address is
//! refused: client keys would cross the network in clear text). Written so the daemon's
//! network listener (TCP + TLS) can take its place: all it needs is [`serve_connection`] for
//! each accepted stream.

use crate::{Proxy, ProxyError};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// The largest request body taken (GraphQL queries, REST writes).
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// How long a client may take to send a request's head; an idle keep-alive connection is
/// closed after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections served at once; more are closed straight away.
pub const MAX_CONNECTIONS: usize = 1024;

/// A running listener; dropping it stops accepting.
pub struct ProxyListener {
    /// The address bound (the port is known even for `:0`).
    pub local_addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for ProxyListener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Binds `[proxy] listen` (loopback only) and serves `proxy` on it.
pub async fn serve(proxy: Arc<Proxy>) -> Result<ProxyListener, ProxyError> {
    let address = proxy.settings.listen.clone();
    let failed = |reason: String| ProxyError::Listen {
        address: address.clone(),
        reason,
    };
    let addr: SocketAddr = address
        .parse()
        .map_err(|_| failed("not ADDR:PORT".into()))?;
    if !addr.ip().is_loopback() {
        return Err(failed(
            "plain HTTP is served on loopback addresses only (client keys would cross the network in clear text)".into(),
        ));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| failed(format!("cannot bind: {e}")))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| failed(format!("cannot read the bound address: {e}")))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!("proxy: {MAX_CONNECTIONS} connections open; closing a new one");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            tokio::spawn(async move {
                serve_connection(proxy, stream, peer.ip().is_loopback(), "http").await;
                drop(slot);
            });
        }
    });
    Ok(ProxyListener { local_addr, accept })
}

/// Serves HTTP/1.1 on one accepted stream (plain TCP here; a TLS stream from the network
/// listener works the same). `loopback` says whether the peer is on this machine.
pub async fn serve_connection<S>(proxy: Arc<Proxy>, stream: S, loopback: bool, scheme: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let proxy = proxy.clone();
        async move {
            Ok::<_, std::convert::Infallible>(one_request(&proxy, request, loopback, scheme).await)
        }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!("proxy: connection ended: {e}");
    }
}

async fn one_request(
    proxy: &Proxy,
    request: Request<Incoming>,
    loopback: bool,
    scheme: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return crate::handler::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large or was cut off",
            );
        }
    };
    proxy.handle(parts, body, loopback, scheme).await
}
