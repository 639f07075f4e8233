//! Responses: JSON bodies, `{"error": …}` for every failure, and the headers every answer carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use serde::Serialize;

const JSON: &str = "application/json";
/// The buffer a JSON answer is written into; larger answers grow it.
const JSON_CAPACITY: usize = 1024;

/// An answer being built. Its `Debug` shows the body's length, never the body: a token answer
/// holds the token.
#[derive(Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The error message, when this is an error (also recorded in the audit log).
    pub error: Option<String>,
    content_type: &'static str,
    body: Bytes,
    allow: Option<&'static str>,
    /// Further headers (`WWW-Authenticate`, `Retry-After`): fixed texts, never request data.
    extra: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("error", &self.error)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .field("allow", &self.allow)
            .finish()
    }
}

impl Reply {
    /// A JSON body.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        // Room for a token answer (~600 bytes with its permissions) at once: serde_json's own
        // 128-byte start grew it three times per answer.
        let mut body = Vec::with_capacity(JSON_CAPACITY);
        match serde_json::to_writer(&mut body, value) {
            Ok(()) => Reply {
                status,
                error: None,
                content_type: JSON,
                body: Bytes::from(body),
                allow: None,
                extra: Vec::new(),
            },
            Err(e) => Reply::error(500, format!("cannot encode the answer: {e}")),
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        let message = message.into();
        let body = serde_json::to_vec(&ghapp_protocol::api::ErrorBody {
            error: message.clone(),
        })
        .unwrap_or_default();
        Reply {
            status,
            error: Some(message),
            content_type: JSON,
            body: Bytes::from(body),
            allow: None,
            extra: Vec::new(),
        }
    }

    /// A plain body of the given type.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            error: None,
            content_type,
            body: Bytes::from(body),
            allow: None,
            extra: Vec::new(),
        }
    }

    /// 405 naming the methods the route has.
    pub fn method_not_allowed(method: &str, route: &str, allow: &'static str) -> Reply {
        let mut reply = Reply::error(405, format!("{route} does not take {method}; use {allow}"));
        reply.allow = Some(allow);
        reply
    }

    /// Adds a header (`WWW-Authenticate`, `Retry-After`) to the answer.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.extra.push((name, value.into()));
        self
    }

    /// The value of a header added with [`Reply::with_header`].
    pub fn header(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The hyper response. Every answer is `no-store`: tokens must not be cached by anything in
    /// between, and nothing else is worth caching.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        for (name, value) in self.extra {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}
