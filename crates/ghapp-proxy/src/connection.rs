//! One client connection: HTTP/1.1 on any accepted stream — the daemon's network listener
//! hands over plain TCP on loopback or a TLS session — with a deadline for each request's head
//! and a bound on request bodies.

use crate::{Peer, Proxy};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// The largest request body taken (GraphQL queries, REST writes).
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// How long a client may take to send a request's head; an idle keep-alive connection is
/// closed after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP/1.1 on one accepted stream from `peer` until the client closes it.
pub async fn serve_connection<S>(proxy: Arc<Proxy>, stream: S, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let proxy = proxy.clone();
        async move { Ok::<_, std::convert::Infallible>(one_request(&proxy, request, peer).await) }
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
    peer: Peer,
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
    proxy.handle(parts, body, peer).await
}
