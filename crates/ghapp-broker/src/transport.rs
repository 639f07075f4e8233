//! The HTTP seam between the broker and GitHub: one request in, one response (or a transport
//! failure) out. [`ReqwestTransport`] is the real one (rustls, proxies from the environment,
//! per-App CA file); tests put a scripted GitHub behind [`HttpTransport`] to drive retries,
//! rate limits and expiry on tokio's paused clock.
//!
//! Everything GitHub-specific (headers, JWTs, retries, error parsing) sits above this seam in
//! `github.rs`, so the fakes exercise the same code as production.

use crate::config::{AppConfig, DaemonConfig};
use crate::error::BrokerError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use zeroize::Zeroizing;

/// The most bytes read from one GitHub response (100 installations are about 300 KB).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// An HTTP method the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl Method {
    /// As written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to GitHub. `Debug` hides the `Authorization` value.
#[derive(Clone)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Headers, names in lower case (`authorization`, `accept`, …).
    pub headers: Vec<(String, String)>,
    /// A JSON body, if any.
    pub body: Option<Vec<u8>>,
    /// Total time allowed for this attempt.
    pub timeout: Duration,
}

impl HttpRequest {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    if n == "authorization" {
                        "[redacted]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// GitHub's answer. The body is zeroized on drop (it may hold a token).
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Zeroizing<Vec<u8>>,
}

impl HttpResponse {
    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why no response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// The attempt ran out of time.
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake).
    Connect,
    /// The connection broke or the answer was unreadable.
    Other,
}

/// A request that got no HTTP answer. Always worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportErrorKind,
    /// What happened, for messages.
    pub message: String,
}

/// The future a transport returns.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send>>;

/// Sends requests to GitHub. Implementations must be cheap to share between tasks.
pub trait HttpTransport: Send + Sync + 'static {
    /// Sends one request; never retries by itself.
    fn send(&self, request: HttpRequest) -> SendFuture;
}

/// Idle connections kept per GitHub host between requests (a burst opens more, closed when done).
const IDLE_CONNECTIONS_PER_HOST: usize = 8;

/// The production transport: reqwest with rustls and the platform's roots (plus the App's
/// `ca_file`), connect and total timeouts from `[daemon]`, and `HTTPS_PROXY`/`HTTP_PROXY`/
/// `ALL_PROXY`/`NO_PROXY` from the environment (reqwest reads them by default). It follows no
/// redirect: a 3xx comes back as the answer.
#[derive(Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Builds the client for one App.
    pub fn new(daemon: &DaemonConfig, app: &AppConfig) -> Result<Self, BrokerError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(daemon.connect_timeout)
            .timeout(daemon.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // A burst of mints opens one connection per concurrent mint; keeping them all idle
            // for a minute held ~24 KB each (64 after the memory benchmark's burst: 1.5 MB).
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
            // Redirects are the broker's decision (github/endpoints.rs follows installation
            // look-ups within the App's API only, with the JWT), never reqwest's.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca_file) = &app.ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| {
                BrokerError::internal(format!(
                    "GitHub App {}: cannot read ca_file {}: {e}",
                    app.name,
                    ca_file.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                BrokerError::internal(format!(
                    "GitHub App {}: ca_file {} holds no usable PEM certificate: {e}",
                    app.name,
                    ca_file.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(BrokerError::internal(format!(
                    "GitHub App {}: ca_file {} holds no PEM certificate",
                    app.name,
                    ca_file.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            BrokerError::internal(format!(
                "GitHub App {}: cannot build the HTTP client: {e}",
                app.name
            ))
        })?;
        Ok(ReqwestTransport { client })
    }
}

impl HttpTransport for ReqwestTransport {
    fn send(&self, request: HttpRequest) -> SendFuture {
        let client = self.client.clone();
        Box::pin(async move {
            let method = match request.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
                Method::Delete => reqwest::Method::DELETE,
            };
            let mut builder = client
                .request(method, &request.url)
                .timeout(request.timeout);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if let Some(body) = request.body {
                builder = builder.body(body);
            }
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        n.as_str().to_ascii_lowercase(),
                        v.to_str().ok()?.to_string(),
                    ))
                })
                .collect();
            let mut body = Zeroizing::new(Vec::new());
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(TransportError {
                        kind: TransportErrorKind::Other,
                        message: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        })
    }
}

/// Names a reqwest failure with its causes ("error sending request: connection refused").
fn classify(error: reqwest::Error) -> TransportError {
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    if message.contains("certificate") {
        message.push_str(" (a private CA? trust it with ca_file on this [[app]])");
    }
    TransportError { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_hides_authorization() {
        let request = HttpRequest {
            method: Method::Get,
            url: "https://api.github.com/app".into(),
            headers: vec![("authorization".into(), "Bearer eyJsecret".into())],
            body: None,
            timeout: Duration::from_secs(1),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("eyJsecret"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let config = crate::config::Config::parse(
            "[[app]]\nname = \"a\"\napp_id = 1\nprivate_key_env = \"K\"\n",
            std::path::Path::new("t"),
        )
        .unwrap();
        let transport = ReqwestTransport::new(&config.daemon, &config.apps[0]).unwrap();
        let err = transport
            .send(HttpRequest {
                method: Method::Get,
                url: format!("http://127.0.0.1:{port}/app"),
                headers: vec![],
                body: None,
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind, TransportErrorKind::Connect, "{err:?}");
    }
}
