//! Accept loops: one per port (API + admin, git), plain or TLS, each connection served by hyper's
//! HTTP/1.1 server on its own task. A handler returning [`Dropped`] makes hyper close the
//! connection without an answer (the `drop` fault).

use crate::core::Core;
use crate::http::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A handler's request to close the connection without answering.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// Which surface a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// REST, GraphQL and the admin API.
    Api,
    /// Git smart HTTP.
    Git,
    /// Only the admin API (its own plain-http port when the API is served over TLS).
    Admin,
}

/// Accepts connections until `shutdown` changes; dropping the returned future (or finishing)
/// aborts every open connection.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    core: Arc<Core>,
    surface: Surface,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accept on {surface:?} listener: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let core = core.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => connection(TokioIo::new(stream), core, surface, peer).await,
                            Err(e) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        },
                        None => connection(TokioIo::new(stream), core, surface, peer).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

async fn connection<I>(io: I, core: Arc<Core>, surface: Surface, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let core = core.clone();
        async move { dispatch(core, req, surface, peer).await }
    });
    if let Err(e) = http1::Builder::new()
        .timer(TokioTimer::new())
        // Idle kept-alive connections stay open until the client closes them, so pooled clients
        // never race a server-side idle close (which would look like a GitHub failure).
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}

async fn dispatch(
    core: Arc<Core>,
    req: Request<Incoming>,
    surface: Surface,
    peer: SocketAddr,
) -> Result<Response<Body>, Dropped> {
    match surface {
        Surface::Api if req.uri().path().starts_with("/_emulator/") => {
            Ok(crate::admin_api::handle(&core, req).await)
        }
        Surface::Api if crate::oidc_http::is_public_path(req.uri().path()) => {
            Ok(crate::oidc_http::public(&core, req.method(), req.uri().path()).await)
        }
        Surface::Api => crate::api::handle(core, req).await,
        Surface::Git => crate::git::handle(core, req, peer).await,
        Surface::Admin => Ok(crate::admin_api::handle(&core, req).await),
    }
}
