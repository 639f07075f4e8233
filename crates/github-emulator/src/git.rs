//! Git smart HTTP at `{git_url}/{owner}/{repo}.git/...`, served by running `git http-backend` as a
//! CGI behind GitHub's Basic authentication: user `x-access-token`, password an unexpired
//! installation token whose installation and repository scope cover the repository, with
//! `contents: read` for fetch/clone and `contents: write` for push (`git-receive-pack`).
//! Missing or bad credentials get 401 with `WWW-Authenticate: Basic realm="GitHub"` (so git asks
//! its credential helpers, and tells them to `erase` a rejected password); a valid token without
//! access gets 403. Public repositories can be fetched anonymously.

use crate::admin::FaultServer;
use crate::core::{Core, TokenProblem};
use crate::http::{Body, ChannelBody, full};
use crate::model::Level;
use crate::server::Dropped;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The user name GitHub expects with an installation token.
pub const TOKEN_USER: &str = "x-access-token";

/// Largest CGI header block accepted from `git http-backend`.
const MAX_CGI_HEADER: usize = 64 * 1024;

/// Serves one git request and counts it by status.
pub async fn handle(
    core: Arc<Core>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Dropped> {
    let request_line = format!("{} {}", req.method(), req.uri().path());
    let decision = {
        let mut state = core.lock();
        if state.faults.is_empty() {
            None
        } else {
            Some(state.faults.decide(FaultServer::Git, &request_line, None))
        }
    };
    let mut response = None;
    if let Some(decision) = decision {
        if !decision.latency.is_zero() {
            tokio::time::sleep(decision.latency).await;
        }
        if decision.drop {
            return Err(Dropped);
        }
        if let Some((status, retry_after, message)) = decision.status {
            let mut r = text(status, &message.unwrap_or_else(|| status.to_string()));
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response = Some(r);
        }
    }
    let mut response = match response {
        Some(r) => r,
        None => serve(&core, req, peer).await,
    };
    if let Ok(date) = HeaderValue::from_str(&core.clock.http_date()) {
        response.headers_mut().insert(header::DATE, date);
    }
    *core
        .lock()
        .stats
        .git_requests
        .entry(response.status().as_u16().to_string())
        .or_default() += 1;
    Ok(response)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{body}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn challenge() -> Response<Body> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "Invalid username or token. Password authentication is not supported for Git operations.",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitHub\""),
    );
    response
}

fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn serve(core: &Arc<Core>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let (Some(owner), Some(repo_segment)) = (segments.next(), segments.next()) else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    let rest = segments.next().unwrap_or("");
    let name = repo_segment.strip_suffix(".git").unwrap_or(repo_segment);
    let query = req.uri().query().unwrap_or("").to_string();
    let service = if rest == "git-receive-pack" || query.contains("service=git-receive-pack") {
        "receive-pack"
    } else if rest == "git-upload-pack" || query.contains("service=git-upload-pack") {
        "upload-pack"
    } else {
        "other"
    };
    let needed = if service == "receive-pack" {
        Level::Write
    } else {
        Level::Read
    };
    let repo = core.repo(owner, name).cloned();

    match basic_credentials(&req) {
        None => {
            let public_read = repo.as_ref().is_some_and(|r| !r.private) && needed == Level::Read;
            if !public_read {
                return challenge();
            }
        }
        Some((user, password)) => {
            if user != TOKEN_USER || password.is_empty() {
                return challenge();
            }
            let auth = match core.authenticate_token(&password) {
                Ok(auth) => auth,
                Err(TokenProblem::BadCredentials) => return challenge(),
                Err(TokenProblem::Suspended) => {
                    return text(
                        StatusCode::FORBIDDEN,
                        "This installation has been suspended",
                    );
                }
            };
            let Some(repo) = &repo else {
                return text(StatusCode::NOT_FOUND, "Repository not found.");
            };
            if !auth.covers(repo) || auth.level("contents").is_none_or(|l| l < needed) {
                let verb = if needed == Level::Write {
                    "Write"
                } else {
                    "Read"
                };
                return text(
                    StatusCode::FORBIDDEN,
                    &format!("{verb} access to repository not granted."),
                );
            }
        }
    }
    let Some(repo) = repo else {
        return text(StatusCode::NOT_FOUND, "Repository not found.");
    };
    *core
        .lock()
        .stats
        .git_services
        .entry(service.to_string())
        .or_default() += 1;
    if let Err(e) = core
        .repo_maker
        .ensure_named(&repo.owner.login, &repo.name)
        .await
    {
        tracing::warn!("creating {}: {e:#}", repo.full_name());
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "repository could not be created",
        );
    }
    let path_info = format!("/{}/{}.git/{rest}", repo.owner.login, repo.name);
    match run_backend(core, req, peer, &path_info, &query).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!("git http-backend for {}: {e:#}", repo.full_name());
            text(StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed")
        }
    }
}

async fn run_backend(
    core: &Arc<Core>,
    req: Request<Incoming>,
    peer: SocketAddr,
    path_info: &str,
    query: &str,
) -> anyhow::Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let header_text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", &core.state_dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GIT_PROJECT_ROOT", &core.repos_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("PATH_INFO", path_info)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", TOKEN_USER)
        .env("REMOTE_ADDR", peer.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header_text("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    if let Some(v) = header_text("content-length") {
        cmd.env("CONTENT_LENGTH", v);
    }
    if let Some(v) = header_text("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header_text("git-protocol") {
        cmd.env("HTTP_GIT_PROTOCOL", v);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;

    // Feed the request body while reading the answer, so neither side can block the other.
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        if !text.is_empty() {
            tracing::debug!(
                "git http-backend: {}",
                String::from_utf8_lossy(&text).trim()
            );
        }
    });

    // CGI header block.
    let mut buffer = Vec::with_capacity(8192);
    let header_end = loop {
        if let Some(end) = find_header_end(&buffer) {
            break end;
        }
        if buffer.len() > MAX_CGI_HEADER {
            anyhow::bail!("CGI header block too large");
        }
        let mut chunk = [0u8; 8192];
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            anyhow::bail!("git http-backend exited before sending headers");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let (head, body_start) = header_end;
    let head_text = String::from_utf8_lossy(&buffer[..head]).to_string();
    let remainder = Bytes::copy_from_slice(&buffer[body_start..]);

    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head_text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            builder = builder
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        } else if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(n, v);
        }
    }

    let (sender, body) = ChannelBody::channel(8);
    tokio::spawn(async move {
        if !remainder.is_empty() && sender.send(Ok(remainder)).await.is_err() {
            return;
        }
        loop {
            let mut chunk = vec![0u8; 32 * 1024];
            match stdout.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return; // client gone: dropping `child` kills the backend
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            }
        }
        let _ = child.wait().await;
    });
    Ok(builder.body(body)?)
}

/// Finds the blank line ending the CGI headers: (end of headers, start of body).
fn find_header_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::find_header_end;

    #[test]
    fn finds_cgi_header_end() {
        assert_eq!(
            find_header_end(b"Status: 200\r\nA: b\r\n\r\nbody"),
            Some((17, 21))
        );
        assert_eq!(find_header_end(b"A: b\n\nbody"), Some((4, 6)));
        assert_eq!(find_header_end(b"A: b\r\n"), None);
    }
}
