//! A client for the ghapp daemon's socket API, used by `git-credential-ghapp` and the `ghapp`
//! CLI. Every call is bounded by one deadline covering connect, request and response, so a
//! wedged daemon can never hold git up.
//!
//! Errors separate "the daemon is not there" ([`ClientError::Unreachable`],
//! [`ClientError::Timeout`]) — where the helper falls through silently — from "the daemon
//! answered no" ([`ClientError::Api`]), which carries the daemon's actionable message.
//!
//! Before a request leaves, the socket must be trustworthy
//! ([`ghapp_protocol::paths::trust`]): its directories and file belong to this uid, root or a
//! configured `trusted_uids` entry, none of them is a link or writable by others, and the
//! process answering on it (`SO_PEERCRED`) runs as one of those uids. Otherwise the call fails
//! with [`ClientError::Untrusted`] and nothing — no query, no token — is sent.

use ghapp_protocol::api::{
    ErrorBody, InvalidateRequest, InvalidateResponse, RUNNER_TOKEN_PATH, RunnerTokenRequest,
    RunnerTokenResponse, STATUS_PATH, StatusResponse, TOKEN_PATH, TokenQuery, TokenResponse,
};
use ghapp_protocol::paths::trust::{self, TrustedUids, Untrusted};
use ghapp_protocol::secret::Token;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

pub mod blocking;
pub mod id_token;
use std::time::Duration;

/// The largest response body accepted: status with thousands of cached tokens fits easily.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon at the socket: missing file, connection refused, or the socket vanished.
    #[error("ghapp daemon not reachable at {socket}: {reason}")]
    Unreachable {
        /// The socket path tried.
        socket: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The daemon did not answer within the deadline.
    #[error("ghapp daemon at {socket} did not answer within {timeout:?}")]
    Timeout {
        /// The socket path tried.
        socket: PathBuf,
        /// The deadline.
        timeout: Duration,
    },
    /// The daemon answered with an error status and message.
    #[error("{message} (daemon answered {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The daemon's `error` message.
        message: String,
    },
    /// The socket, or the process answering on it, is not one this client may trust: nothing
    /// was sent.
    #[error("refusing to use the ghapp socket {socket}: {reason}")]
    Untrusted {
        /// The socket path.
        socket: PathBuf,
        /// What is wrong with it.
        reason: Untrusted,
    },
    /// `$GHAPP_ID_TOKEN_FILE` is set but the token cannot be read from it: nothing was sent
    /// (sending no token would be judged as a different caller).
    #[error("cannot read the ID token file {path} (named by ${var}): {reason}", var = id_token::ENV)]
    IdToken {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// The daemon answered something that is not the API (a different program on the socket?).
    #[error("unexpected answer from {socket}: {reason}")]
    Protocol {
        /// The socket path.
        socket: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// True when no daemon answered at all (the helper's silent fall-through case).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. }
        )
    }

    /// The HTTP status the daemon answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for the daemon's socket with a per-call deadline. Connections are pooled
/// (keep-alive); each new one is checked for trust before it is used.
#[derive(Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
    http: Client<TrustedConnector, Full<Bytes>>,
    id_token_file: Option<PathBuf>,
}

impl DaemonClient {
    /// A client for `socket`; every call must finish within `timeout`. It trusts this process's
    /// uid and root; [`DaemonClient::trusting`] widens that.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self::build(socket.into(), timeout, TrustedUids::current(&[]))
    }

    fn build(socket: PathBuf, timeout: Duration, trusted: TrustedUids) -> Self {
        let http = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(TrustedConnector { trusted });
        DaemonClient {
            socket,
            timeout,
            http,
            id_token_file: None,
        }
    }

    /// The same client trusting `trusted` (from `[daemon] trusted_uids`).
    pub fn trusting(self, trusted: TrustedUids) -> Self {
        let id_token_file = self.id_token_file;
        Self::build(self.socket, self.timeout, trusted).with_id_token_file(id_token_file)
    }

    /// Sends the ID token in `file` (read again for every request) as `Authorization: Bearer`.
    pub fn with_id_token_file(mut self, file: Option<PathBuf>) -> Self {
        self.id_token_file = file;
        self
    }

    /// [`DaemonClient::with_id_token_file`] with the file `$GHAPP_ID_TOKEN_FILE` names, if set.
    pub fn with_id_token_from_env(self) -> Self {
        self.with_id_token_file(id_token::file_from_env())
    }

    /// The `Authorization` value to send, read from the ID token file now.
    fn authorization(&self) -> Result<Option<hyper::header::HeaderValue>, ClientError> {
        let Some(path) = &self.id_token_file else {
            return Ok(None);
        };
        let token = id_token::read(path).map_err(|reason| ClientError::IdToken {
            path: path.clone(),
            reason,
        })?;
        let mut value =
            hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::IdToken {
                    path: path.clone(),
                    reason: "it is not a token".into(),
                }
            })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/token`.
    pub async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, ClientError> {
        let path = format!("{TOKEN_PATH}?{}", query.to_query_string());
        self.json(Method::GET, &path, None).await
    }

    /// `DELETE /v1/token`: true if the daemon held this token and dropped it.
    pub async fn invalidate(&self, token: &Token) -> Result<bool, ClientError> {
        let body = serde_json::to_vec(&InvalidateRequest {
            token: token.clone(),
        })
        .expect("a token serializes");
        let answer: InvalidateResponse = self.json(Method::DELETE, TOKEN_PATH, Some(body)).await?;
        Ok(answer.invalidated)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.json(Method::GET, STATUS_PATH, None).await
    }

    /// `POST /v1/runner-token`.
    pub async fn runner_token(
        &self,
        request: &RunnerTokenRequest,
    ) -> Result<RunnerTokenResponse, ClientError> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.json(Method::POST, RUNNER_TOKEN_PATH, Some(body)).await
    }

    /// `POST /api/v1/runners/provision`.
    pub async fn provision_runner(
        &self,
        request: &ghapp_protocol::runners::ProvisionRequest,
    ) -> Result<ghapp_protocol::runners::ProvisionResponse, ClientError> {
        let body = serde_json::to_vec(request).expect("a request serializes");
        self.json(
            Method::POST,
            ghapp_protocol::runners::PROVISION_PATH,
            Some(body),
        )
        .await
    }

    /// `GET /api/v1/runners` (`deleted`: deleted runners too; `all`: every caller's).
    pub async fn list_runners(
        &self,
        deleted: bool,
        all: bool,
    ) -> Result<ghapp_protocol::runners::RunnerList, ClientError> {
        let path = format!(
            "{}?deleted={deleted}&all={all}",
            ghapp_protocol::runners::RUNNERS_PATH
        );
        self.json(Method::GET, &path, None).await
    }

    /// `GET /api/v1/runners/{name}`.
    pub async fn runner(
        &self,
        name: &str,
    ) -> Result<ghapp_protocol::runners::RunnerRecord, ClientError> {
        let path = format!("{}{name}", ghapp_protocol::runners::RUNNER_PREFIX);
        self.json(Method::GET, &path, None).await
    }

    /// `DELETE /api/v1/runners/{name}`.
    pub async fn deprovision_runner(
        &self,
        name: &str,
    ) -> Result<ghapp_protocol::runners::RunnerRecord, ClientError> {
        let path = format!("{}{name}", ghapp_protocol::runners::RUNNER_PREFIX);
        self.json(Method::DELETE, &path, None).await
    }

    /// `POST /api/v1/runners/cleanup`: delete runners offline longer than `offline_for`.
    pub async fn cleanup_runners(
        &self,
        offline_for: Duration,
    ) -> Result<ghapp_protocol::runners::SyncReport, ClientError> {
        let body = serde_json::to_vec(&ghapp_protocol::runners::CleanupRequest {
            offline_for_secs: offline_for.as_secs(),
        })
        .expect("a request serializes");
        self.json(
            Method::POST,
            ghapp_protocol::runners::CLEANUP_PATH,
            Some(body),
        )
        .await
    }

    /// `POST /api/v1/runners/sync`: one reconciliation round now.
    pub async fn sync_runners(&self) -> Result<ghapp_protocol::runners::SyncReport, ClientError> {
        self.json(
            Method::POST,
            ghapp_protocol::runners::SYNC_PATH,
            Some(Vec::new()),
        )
        .await
    }

    /// Any route, raw: (status, body). For `/metrics`, `/healthz` and the seed routes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        match tokio::time::timeout(self.timeout, self.send(method, path, body)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                socket: self.socket.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.raw(method, path, body).await?;
        decode(&self.socket, status, &bytes)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        // hyperlocal's URI carries the socket path (hex) as its authority: the connector reads
        // it back, and the pool keys connections on it.
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(authorization) = self.authorization()? {
            builder = builder.header(hyper::header::AUTHORIZATION, authorization);
        }
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(format!("cannot build request for {path}: {e}")))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.connect_error(e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok((status_code(status), bytes))
    }

    fn connect_error(&self, error: hyper_util::client::legacy::Error) -> ClientError {
        if !error.is_connect() {
            return self.protocol(error.to_string());
        }
        // Walk to the io::Error from our connector: it carries either an Untrusted verdict or
        // what connect(2) said (ENOENT, ECONNREFUSED, EACCES).
        let mut source: &dyn std::error::Error = &error;
        loop {
            if let Some(io) = source.downcast_ref::<std::io::Error>() {
                if let Some(reason) = io.get_ref().and_then(|e| e.downcast_ref::<Untrusted>()) {
                    return untrusted(&self.socket, reason.clone());
                }
                return ClientError::Unreachable {
                    socket: self.socket.clone(),
                    reason: io.to_string(),
                };
            }
            match source.source() {
                Some(inner) => source = inner,
                None => break,
            }
        }
        ClientError::Unreachable {
            socket: self.socket.clone(),
            reason: source.to_string(),
        }
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            reason,
        }
    }
}

/// Connects to the socket named by the URI's authority (hyperlocal's hex form), refusing it
/// unless [`trust`] accepts its path and the process answering on it.
#[derive(Clone)]
struct TrustedConnector {
    trusted: TrustedUids,
}

impl tower_service::Service<hyper::Uri> for TrustedConnector {
    type Response = TrustedStream;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<TrustedStream, std::io::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let trusted = self.trusted.clone();
        Box::pin(async move {
            let socket = socket_of(&uri)?;
            let servers =
                trust::check_socket_path(&socket, &trusted).map_err(std::io::Error::other)?;
            let stream = tokio::net::UnixStream::connect(&socket).await?;
            let server = stream.peer_cred().map_err(|e| {
                std::io::Error::other(Untrusted::Inspect {
                    path: socket.clone(),
                    reason: format!("cannot read the server's credentials: {e}"),
                })
            })?;
            trust::check_peer(&socket, server.uid(), &servers).map_err(std::io::Error::other)?;
            Ok(TrustedStream(TokioIo::new(stream)))
        })
    }
}

/// The socket path hyperlocal put in the URI's authority, hex-encoded.
fn socket_of(uri: &hyper::Uri) -> Result<PathBuf, std::io::Error> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a unix socket URI");
    let hex = uri.host().ok_or_else(bad)?;
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A checked connection.
struct TrustedStream(TokioIo<tokio::net::UnixStream>);

impl Connection for TrustedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TrustedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TrustedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// [`ClientError::Untrusted`] for `socket`.
fn untrusted(socket: &Path, reason: Untrusted) -> ClientError {
    ClientError::Untrusted {
        socket: socket.to_path_buf(),
        reason,
    }
}

/// A 2xx answer's JSON, or the daemon's `{"error": …}` as [`ClientError::Api`].
fn decode<T: DeserializeOwned>(socket: &Path, status: u16, bytes: &[u8]) -> Result<T, ClientError> {
    if (200..300).contains(&status) {
        serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol {
            socket: socket.to_path_buf(),
            reason: format!("bad JSON in {status} answer: {e}"),
        })
    } else {
        let message = serde_json::from_slice::<ErrorBody>(bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status} without an error message"));
        Err(ClientError::Api { status, message })
    }
}

fn status_code(status: StatusCode) -> u16 {
    status.as_u16()
}

/// Runs a future on a fresh current-thread runtime: the helper's and the CLI's entry point into
/// async code (a multi-threaded runtime would cost start-up time for nothing).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("a current-thread runtime starts")
        .block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_socket_is_unreachable_not_an_error() {
        let client = DaemonClient::new("/nonexistent/ghapp.sock", Duration::from_secs(2));
        let err = block_on(client.status()).unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains("/nonexistent/ghapp.sock"));
    }

    #[test]
    fn an_untrusted_socket_gets_no_request() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ghapp-client-loose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.join("ghapp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let client = DaemonClient::new(&path, Duration::from_secs(2));
        let err = block_on(client.status()).unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::Untrusted {
                    reason: Untrusted::Writable { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_unreachable());
        assert!(listener.accept().is_err(), "not even a connection was made");
        let blocking = blocking::BlockingClient::new(
            &path,
            std::time::Instant::now() + Duration::from_secs(2),
        );
        let err = blocking.token(&TokenQuery::default()).unwrap_err();
        assert!(matches!(err, ClientError::Untrusted { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn silent_socket_times_out() {
        let dir = std::env::temp_dir().join(format!("ghapp-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        // Bound but never accepted: connect succeeds (backlog), no answer ever comes.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = DaemonClient::new(&path, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = block_on(client.status()).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
