//! One client connection: HTTP/1.1 on any accepted stream — the daemon's network listener
//! hands over plain TCP on loopback or a TLS session — with a deadline for each request's head
//! and a bound on request bodies.

use crate::Proxy;
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

/// Serves HTTP/1.1 on one accepted stream until the client closes it. `loopback` says whether
/// the peer is on this machine (`/metrics`); `scheme` is how it reached the proxy (`http`,
/// `https`: the base URLs in answers are rewritten to it).
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
