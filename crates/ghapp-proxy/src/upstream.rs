//! Forwarding to GitHub: the upstream URLs (REST base and GraphQL endpoint of the proxied
//! `[[app]]`), which request headers go (never the client's key, never hop-by-hop ones, no
//! `Accept-Encoding` so cached bodies are plain), which response headers come back, and the
//! rewriting of upstream URLs in answers to the proxy's own base so clients follow links
//! (pagination, `url` fields) back through the proxy.

use bytes::Bytes;
use ghapp_protocol::config::{AppConfig, DaemonConfig};
use ghapp_protocol::secret::Token;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use std::time::Duration;

/// The most bytes read from one GitHub answer.
pub const MAX_UPSTREAM_BODY: usize = 32 * 1024 * 1024;

/// Request headers never forwarded: the client's own credentials and conditions (the proxy
/// sends its own), hop-by-hop headers, and what reqwest sets itself.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "forwarded",
    "x-forwarded-for",
];

/// Response headers never passed back: hop-by-hop ones and what hyper sets itself.
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "set-cookie",
];

/// Where requests go.
pub struct Upstream {
    client: reqwest::Client,
    /// The REST base, no trailing slash (`https://api.github.com`, `https://ghe/api/v3`).
    pub rest_base: String,
    /// The GraphQL endpoint.
    pub graphql_url: String,
}

/// GitHub's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers, hop-by-hop ones removed.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why GitHub gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct UpstreamError {
    /// The URL without its query.
    pub url: String,
    /// What failed.
    pub reason: String,
}

impl Upstream {
    /// The upstream of `app` (its `api_url` or the one its host implies), with the daemon's
    /// timeouts and the App's `ca_file`.
    pub fn new(app: &AppConfig, daemon: &DaemonConfig) -> Result<Upstream, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(daemon.connect_timeout)
            .timeout(daemon.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca_file) = &app.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "ca_file {} holds no usable certificate: {e}",
                    ca_file.display()
                )
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let rest_base = app.api_base();
        Ok(Upstream {
            client,
            graphql_url: graphql_url(&rest_base),
            rest_base,
        })
    }

    /// Sends one request with `token` and reads the whole answer.
    pub async fn send(
        &self,
        method: &Method,
        url: &str,
        client_headers: &HeaderMap,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
        token: &Token,
    ) -> Result<Answer, UpstreamError> {
        let failed = |reason: String| UpstreamError {
            url: url.split('?').next().unwrap_or(url).to_string(),
            reason,
        };
        let mut headers = forward_headers(client_headers);
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        let mut authorization = HeaderValue::from_str(&format!("token {}", token.expose()))
            .map_err(|_| failed("the credential is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, authorization);
        let mut request = self.client.request(method.clone(), url).headers(headers);
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| failed(format!("request failed: {}", without_url(&e))))?;
        let status = response.status();
        let headers = clean_response_headers(response.headers());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_UPSTREAM_BODY as u64)
        {
            return Err(failed(format!(
                "answer larger than {MAX_UPSTREAM_BODY} bytes"
            )));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(format!("reading the answer failed: {}", without_url(&e))))?
        {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY {
                return Err(failed(format!(
                    "answer larger than {MAX_UPSTREAM_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

/// reqwest's error text without the URL it may repeat.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the upstream URL");
    }
    text
}

/// The GraphQL endpoint for a REST base: GHES `https://HOST/api/v3` → `https://HOST/api/graphql`;
/// otherwise `BASE/graphql` (`https://api.github.com/graphql`).
pub fn graphql_url(rest_base: &str) -> String {
    match rest_base.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{rest_base}/graphql"),
    }
}

/// The client's headers minus what must not go to GitHub.
pub fn forward_headers(client: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        if !DROPPED_REQUEST_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// GitHub's headers minus hop-by-hop ones.
pub fn clean_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !DROPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Rewrites upstream URLs to the proxy's base in an answer.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The upstream REST base.
    pub from: String,
    /// The proxy's REST base as the client addressed it (`http://127.0.0.1:8081/api/v3`).
    pub to: String,
}

impl Rewrite {
    /// The body with every occurrence of the upstream base replaced (JSON bodies only).
    pub fn body(&self, headers: &HeaderMap, body: &Bytes) -> Bytes {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if !json || self.from == self.to {
            return body.clone();
        }
        match std::str::from_utf8(body) {
            Ok(text) if text.contains(&self.from) => {
                Bytes::from(text.replace(&self.from, &self.to))
            }
            _ => body.clone(),
        }
    }

    /// `Link` and `Location` rewritten in place.
    pub fn headers(&self, headers: &mut HeaderMap) {
        for name in [header::LINK, header::LOCATION] {
            let rewritten: Vec<HeaderValue> = headers
                .get_all(&name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| HeaderValue::from_str(&v.replace(&self.from, &self.to)).ok())
                .collect();
            if rewritten.is_empty() {
                continue;
            }
            headers.remove(&name);
            for value in rewritten {
                headers.append(name.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_endpoints() {
        assert_eq!(
            graphql_url("https://api.github.com"),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            graphql_url("https://ghe.example/api/v3"),
            "https://ghe.example/api/graphql"
        );
    }

    #[test]
    fn client_credentials_never_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("token client-key"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let out = forward_headers(&headers);
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert!(out.get(header::COOKIE).is_none());
        assert!(out.get(header::ACCEPT).is_some());
    }

    #[test]
    fn rewrites_json_and_links() {
        let rewrite = Rewrite {
            from: "https://api.github.com".into(),
            to: "http://127.0.0.1:9/api/v3".into(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::LINK,
            HeaderValue::from_static("<https://api.github.com/x?page=2>; rel=\"next\""),
        );
        let body = rewrite.body(
            &headers,
            &Bytes::from_static(b"{\"url\":\"https://api.github.com/repos/a/b\"}"),
        );
        assert_eq!(
            &body[..],
            b"{\"url\":\"http://127.0.0.1:9/api/v3/repos/a/b\"}"
        );
        rewrite.headers(&mut headers);
        assert_eq!(
            headers.get(header::LINK).and_then(|v| v.to_str().ok()),
            Some("<http://127.0.0.1:9/api/v3/x?page=2>; rel=\"next\"")
        );
    }
}
