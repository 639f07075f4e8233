//! HTTP plumbing shared by the API, git and admin servers: the response body type, JSON and
//! error responses in GitHub's exact shape, and request helpers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use serde::Serialize;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Every response body the emulator sends: a full buffer or a stream (git's CGI output).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The `Content-Type` GitHub puts on every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The generic documentation URL GitHub puts on authentication errors.
pub const DOCS_REST: &str = "https://docs.github.com/rest";

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A `status` response whose body is `value` as JSON.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
}

/// GitHub's error body; field order is GitHub's (`message`, `documentation_url`, `status`).
#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    documentation_url: &'a str,
    status: String,
}

/// An API error as GitHub answers it: status, exact message and documentation URL, plus any
/// extra headers (e.g. `retry-after`). Handlers return it; the dispatcher renders it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// GitHub's exact `message` text.
    pub message: String,
    /// The `documentation_url` GitHub sends with it.
    pub documentation_url: &'static str,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with the generic REST documentation URL.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self::with_docs(status, message, DOCS_REST)
    }

    /// An error with a specific documentation URL.
    pub fn with_docs(status: StatusCode, message: impl Into<String>, docs: &'static str) -> Self {
        ApiError {
            status,
            message: message.into(),
            documentation_url: docs,
            headers: Vec::new(),
        }
    }

    /// 401 `Bad credentials`: expired, revoked, unknown or wrongly typed tokens.
    pub fn bad_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Bad credentials")
    }

    /// 404 `Not Found` with the given documentation URL.
    pub fn not_found(docs: &'static str) -> Self {
        Self::with_docs(StatusCode::NOT_FOUND, "Not Found", docs)
    }

    /// 403 `Resource not accessible by integration`.
    pub fn not_accessible(docs: &'static str) -> Self {
        Self::with_docs(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
            docs,
        )
    }

    /// 400 `Problems parsing JSON`.
    pub fn bad_json(docs: &'static str) -> Self {
        Self::with_docs(StatusCode::BAD_REQUEST, "Problems parsing JSON", docs)
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Renders the JSON response.
    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            message: &self.message,
            documentation_url: self.documentation_url,
            status: self.status.as_u16().to_string(),
        };
        let mut response = json(self.status, &body);
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent more than the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed while reading.
    #[error("reading request body: {0}")]
    Io(#[from] hyper::Error),
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// A streaming body fed through a bounded channel, so a slow client slows the producer
/// (git's CGI output) instead of the emulator buffering without bound.
pub struct ChannelBody {
    receiver: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it; dropping the sender ends the body.
    pub fn channel(capacity: usize) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Body) {
        let (sender, receiver) = mpsc::channel(capacity);
        (sender, ChannelBody { receiver }.boxed_unsync())
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.receiver
            .poll_recv(cx)
            .map(|item| item.map(|result| result.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The query string of a request as decoded key/value pairs.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}
