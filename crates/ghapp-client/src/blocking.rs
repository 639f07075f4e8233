//! The same socket API, without an async runtime: one HTTP/1.1 exchange (`Connection: close`)
//! over std's `UnixStream`, the answer parsed by `httparse`. The credential helper makes exactly
//! one request per run, so a runtime and a pooled client are start-up cost for nothing; this
//! keeps git's hot path to connect, write, read. The deadline bounds every step.

use super::{ClientError, MAX_RESPONSE_BYTES, decode, untrusted};
use ghapp_protocol::api::{
    InvalidateRequest, InvalidateResponse, STATUS_PATH, TOKEN_PATH, TokenQuery, TokenResponse,
};
use ghapp_protocol::paths::trust::{self, TrustedUids, Untrusted};
use ghapp_protocol::secret::Token;
use serde::de::DeserializeOwned;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A one-request-per-call client for the daemon's socket; every call ends by `deadline`.
pub struct BlockingClient {
    socket: PathBuf,
    deadline: Instant,
    /// The time the caller gave at construction, for messages.
    budget: Duration,
    trusted: TrustedUids,
    id_token_file: Option<PathBuf>,
}

impl BlockingClient {
    /// A client for `socket` whose calls must all be over by `deadline`. It trusts this
    /// process's uid and root; [`BlockingClient::trusting`] widens that.
    pub fn new(socket: impl Into<PathBuf>, deadline: Instant) -> Self {
        let budget = deadline.saturating_duration_since(Instant::now());
        BlockingClient {
            socket: socket.into(),
            deadline,
            budget,
            trusted: TrustedUids::current(&[]),
            id_token_file: None,
        }
    }

    /// Sends the ID token in `file` (read again for every request) as `Authorization: Bearer`.
    pub fn with_id_token_file(mut self, file: Option<PathBuf>) -> Self {
        self.id_token_file = file;
        self
    }

    /// [`BlockingClient::with_id_token_file`] with the file `$GHAPP_ID_TOKEN_FILE` names.
    pub fn with_id_token_from_env(self) -> Self {
        self.with_id_token_file(crate::id_token::file_from_env())
    }

    /// The same client trusting `trusted` (from `[daemon] trusted_uids`).
    pub fn trusting(mut self, trusted: TrustedUids) -> Self {
        self.trusted = trusted;
        self
    }

    /// `GET /v1/token`.
    pub fn token(&self, query: &TokenQuery) -> Result<TokenResponse, ClientError> {
        self.json(
            "GET",
            &format!("{TOKEN_PATH}?{}", query.to_query_string()),
            None,
        )
    }

    /// `DELETE /v1/token`: true if the daemon held this token and dropped it.
    pub fn invalidate(&self, token: &Token) -> Result<bool, ClientError> {
        let body = serde_json::to_vec(&InvalidateRequest {
            token: token.clone(),
        })
        .map_err(|e| self.protocol(format!("cannot encode the request: {e}")))?;
        let answer: InvalidateResponse = self.json("DELETE", TOKEN_PATH, Some(&body))?;
        Ok(answer.invalidated)
    }

    /// The hosts the daemon's Apps serve (`GET /v1/status`, of which only `apps[].host` is
    /// read), so `erase` reports a token only to a daemon serving its host.
    pub fn served_hosts(&self) -> Result<Vec<String>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Status {
            apps: Vec<App>,
        }
        #[derive(serde::Deserialize)]
        struct App {
            host: String,
        }
        let status: Status = self.json("GET", STATUS_PATH, None)?;
        Ok(status.apps.into_iter().map(|app| app.host).collect())
    }

    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.exchange(method, path, body)?;
        decode(&self.socket, status, &bytes)
    }

    /// Sends one request and reads the whole answer: (status, body).
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        // Read before connecting: an unreadable token file sends nothing.
        let token = match &self.id_token_file {
            Some(path) => {
                Some(
                    crate::id_token::read(path).map_err(|reason| ClientError::IdToken {
                        path: path.clone(),
                        reason,
                    })?,
                )
            }
            None => None,
        };
        let mut stream = self.connect()?;
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nhost: ghapp\r\nconnection: close\r\n");
        if let Some(token) = token {
            request.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.arm(&stream)?;
        stream.write_all(&bytes).map_err(|e| self.io_error(e))?;

        let mut answer = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            self.arm(&stream)?;
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    answer.extend_from_slice(&chunk[..n]);
                    if answer.len() > MAX_RESPONSE_BYTES {
                        return Err(self.protocol("answer too large".into()));
                    }
                    if let Some(done) = complete(&answer).map_err(|e| self.protocol(e))? {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        complete(&answer)
            .map_err(|e| self.protocol(e))?
            .ok_or_else(|| self.protocol("the daemon closed the connection mid-answer".into()))
    }

    /// Checks the socket's path, connects, and checks who answers (a few `fstat`s and one
    /// `getsockopt`: cheap enough for git's hot path).
    fn connect(&self) -> Result<UnixStream, ClientError> {
        let servers = trust::check_socket_path(&self.socket, &self.trusted)
            .map_err(|reason| untrusted(&self.socket, reason))?;
        let stream = UnixStream::connect(&self.socket).map_err(|e| ClientError::Unreachable {
            socket: self.socket.clone(),
            reason: e.to_string(),
        })?;
        let server = rustix::net::sockopt::socket_peercred(&stream).map_err(|e| {
            untrusted(
                &self.socket,
                Untrusted::Inspect {
                    path: self.socket.clone(),
                    reason: format!("cannot read the server's credentials: {e}"),
                },
            )
        })?;
        trust::check_peer(&self.socket, server.uid.as_raw(), &servers)
            .map_err(|reason| untrusted(&self.socket, reason))?;
        Ok(stream)
    }

    /// Sets the socket's timeouts to what is left of the deadline (or fails with Timeout).
    fn arm(&self, stream: &UnixStream) -> Result<(), ClientError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            return Err(self.timeout());
        }
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(left)))
            .map_err(|e| self.io_error(e))
    }

    fn io_error(&self, error: std::io::Error) -> ClientError {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timeout(),
            _ => ClientError::Unreachable {
                socket: self.socket.clone(),
                reason: error.to_string(),
            },
        }
    }

    fn timeout(&self) -> ClientError {
        ClientError::Timeout {
            socket: self.socket.clone(),
            timeout: self.budget,
        }
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.clone(),
            reason,
        }
    }
}

/// `Some((status, body))` once `answer` holds a whole response (head plus `content-length` bytes
/// of body), `None` while more is needed.
fn complete(answer: &[u8]) -> Result<Option<(u16, Vec<u8>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(answer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = response.code.ok_or("answer without a status")?;
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .ok_or("answer without content-length")?
        .ok_or("bad content-length")?;
    let body = &answer[head_len..];
    Ok((body.len() >= length).then(|| (status, body[..length].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_complete_only_with_their_whole_body() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(complete(&head[..10]).unwrap(), None);
        let mut partial = head.to_vec();
        partial.extend_from_slice(b"ab");
        assert_eq!(complete(&partial).unwrap(), None);
        partial.extend_from_slice(b"cde");
        assert_eq!(complete(&partial).unwrap(), Some((200, b"abcde".to_vec())));
        assert!(complete(b"garbage\r\n\r\n").is_err());
        assert!(
            complete(b"HTTP/1.1 200 OK\r\n\r\n").is_err(),
            "no content-length"
        );
    }

    #[test]
    fn missing_socket_is_unreachable() {
        let client = BlockingClient::new(
            "/nonexistent/ghapp.sock",
            Instant::now() + Duration::from_secs(2),
        );
        assert!(
            client
                .token(&TokenQuery::default())
                .unwrap_err()
                .is_unreachable()
        );
    }

    #[test]
    fn silent_daemon_times_out_by_the_deadline() {
        let dir = tempfile_dir();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Accept and never answer.
        let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let started = Instant::now();
        let client = BlockingClient::new(&path, started + Duration::from_millis(300));
        let err = client.token(&TokenQuery::default()).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(holder.join());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ghapp-blocking-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
