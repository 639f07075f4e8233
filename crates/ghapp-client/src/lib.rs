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
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

pub mod blocking;
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

/// A client for the daemon's socket with a per-call deadline. Every call opens one connection
/// (a Unix socket connect costs microseconds) so each is checked for trust.
#[derive(Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
    trusted: TrustedUids,
}

impl DaemonClient {
    /// A client for `socket`; every call must finish within `timeout`. It trusts this process's
    /// uid and root; [`DaemonClient::trusting`] widens that.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        DaemonClient {
            socket: socket.into(),
            timeout,
            trusted: TrustedUids::current(&[]),
        }
    }

    /// The same client trusting `trusted` (from `[daemon] trusted_uids`).
    pub fn trusting(mut self, trusted: TrustedUids) -> Self {
        self.trusted = trusted;
        self
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

    /// Checks the socket's path, connects, and checks who answers.
    async fn connect(&self) -> Result<tokio::net::UnixStream, ClientError> {
        let servers = trust::check_socket_path(&self.socket, &self.trusted)
            .map_err(|reason| untrusted(&self.socket, reason))?;
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::Unreachable {
                socket: self.socket.clone(),
                reason: e.to_string(),
            })?;
        let server = stream.peer_cred().map_err(|e| {
            untrusted(
                &self.socket,
                Untrusted::Inspect {
                    path: self.socket.clone(),
                    reason: format!("cannot read the server's credentials: {e}"),
                },
            )
        })?;
        trust::check_peer(&self.socket, server.uid(), &servers)
            .map_err(|reason| untrusted(&self.socket, reason))?;
        Ok(stream)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(format!("HTTP handshake failed: {e}")))?;
        // The connection task ends with the exchange (or with this call's timeout).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "ghapp");
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(format!("cannot build request for {path}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.protocol(e.to_string()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok((status_code(status), bytes))
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            reason,
        }
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
