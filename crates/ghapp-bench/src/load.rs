//! An HTTP/1.1 load generator for the daemon's Unix socket — or its network listener, plain TCP
//! or TLS ([`Target`]): C concurrent workers, each with its own connection (kept alive, or a new
//! one per request), cycling through request paths.
//! It is deliberately lean (hyper's low-level client, no pooling layer) so that on a 2-core
//! machine as much CPU as possible is left to the daemon being measured.

use crate::stats::Samples;
use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

/// Where requests go.
#[derive(Clone)]
pub enum Target {
    /// The daemon's Unix socket.
    Unix(PathBuf),
    /// The network listener, plain TCP (loopback).
    Tcp(SocketAddr),
    /// The network listener over TLS; one client config for all connections, so its session
    /// cache lets a new connection resume a session.
    Tls(SocketAddr, Arc<rustls::ClientConfig>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp(address) => write!(f, "tcp:{address}"),
            Target::Tls(address, _) => write!(f, "tls:{address}"),
        }
    }
}

impl From<PathBuf> for Target {
    fn from(socket: PathBuf) -> Target {
        Target::Unix(socket)
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to send the requests.
    pub target: Target,
    /// Request paths (with query), used round-robin across all requests.
    pub paths: Vec<String>,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Total requests.
    pub requests: u64,
    /// Reuse each connection (keep-alive) or connect for every request.
    pub keep_alive: bool,
    /// Extra request headers (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
}

/// Runs the load and returns per-request latencies (non-2xx answers count as errors).
pub async fn run(spec: LoadSpec) -> Result<Samples> {
    run_with_bearers(spec, Vec::new()).await
}

/// [`run`], with request `n` carrying `Authorization: Bearer {bearers[n % len]}` when `bearers`
/// is not empty (e.g. a distinct, never-seen ID token per request).
pub async fn run_with_bearers(spec: LoadSpec, bearers: Vec<String>) -> Result<Samples> {
    let spec = Arc::new(spec);
    let bearers = Arc::new(bearers);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(spec.concurrency);
    for _ in 0..spec.concurrency {
        let (spec, bearers, next) = (spec.clone(), bearers.clone(), next.clone());
        workers.push(tokio::spawn(
            async move { worker(&spec, &bearers, &next).await },
        ));
    }
    let mut all = Samples::default();
    for worker in workers {
        let samples = worker.await.context("load worker panicked")?;
        all.micros.extend(samples.micros);
        all.errors += samples.errors;
        all.backlog_waits += samples.backlog_waits;
        for (what, n) in samples.failures {
            *all.failures.entry(what).or_default() += n;
        }
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

type Sender = http1::SendRequest<Empty<Bytes>>;

/// How long a Unix-socket connect keeps retrying while the daemon's listen backlog is full.
const BACKLOG_PATIENCE: Duration = Duration::from_secs(30);

async fn connect(target: &Target, backlog_waits: &mut u64) -> Result<Sender> {
    match target {
        Target::Unix(socket) => {
            // tokio's connect is non-blocking: on a full listen backlog the kernel answers
            // EAGAIN at once, where the credential helper's blocking connect would wait for
            // room. Wait likewise (counted), so a burst measures the daemon, not the backlog.
            let deadline = Instant::now() + BACKLOG_PATIENCE;
            let mut waited = false;
            let stream = loop {
                match UnixStream::connect(socket).await {
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && Instant::now() < deadline =>
                    {
                        if !std::mem::replace(&mut waited, true) {
                            *backlog_waits += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    other => {
                        break other
                            .with_context(|| format!("connecting to {}", socket.display()))?;
                    }
                }
            };
            handshake(stream).await
        }
        Target::Tcp(address) => {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .with_context(|| format!("connecting to {address}"))?;
            stream.set_nodelay(true)?;
            handshake(stream).await
        }
        Target::Tls(address, config) => {
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .with_context(|| format!("connecting to {address}"))?;
            stream.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS handshake with {address}"))?;
            handshake(stream).await
        }
    }
}

async fn handshake<IO>(stream: IO) -> Result<Sender>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn worker(spec: &LoadSpec, bearers: &[String], next: &AtomicU64) -> Samples {
    let mut samples = Samples::default();
    let mut sender: Option<Sender> = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= spec.requests {
            break;
        }
        let path = &spec.paths[(n as usize) % spec.paths.len()];
        let bearer = (!bearers.is_empty()).then(|| bearers[(n as usize) % bearers.len()].as_str());
        let started = Instant::now();
        match one_request(spec, &mut sender, path, bearer, &mut samples.backlog_waits).await {
            Ok(status) if (200..300).contains(&status) => {
                samples.micros.push(started.elapsed().as_micros() as u64)
            }
            failed => {
                let what = match failed {
                    Ok(status) => format!("HTTP {status}"),
                    Err(e) => format!("{:#}", e)
                        .split(": ")
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(": "),
                };
                *samples.failures.entry(what).or_default() += 1;
                samples.errors += 1;
                sender = None;
            }
        }
        if !spec.keep_alive {
            sender = None;
        }
    }
    samples
}

async fn one_request(
    spec: &LoadSpec,
    sender: &mut Option<Sender>,
    path: &str,
    bearer: Option<&str>,
    backlog_waits: &mut u64,
) -> Result<u16> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(&spec.target, backlog_waits).await?);
    }
    let s = sender.as_mut().expect("connected above");
    s.ready().await?;
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, "ghapp");
    if !spec.keep_alive {
        request = request.header(hyper::header::CONNECTION, "close");
    }
    for (name, value) in &spec.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(bearer) = bearer {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let response = s.send_request(request.body(Empty::new())?).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

/// Sends one request and returns (status, body) — for warm-up and checks.
pub async fn get(socket: &Path, path: &str) -> Result<(u16, Bytes)> {
    get_from(&Target::Unix(socket.to_path_buf()), path).await
}

/// [`get`] to any target.
pub async fn get_from(target: &Target, path: &str) -> Result<(u16, Bytes)> {
    let mut sender = connect(target, &mut 0).await?;
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "ghapp")
        .body(Empty::new())?;
    let response =
        tokio::time::timeout(Duration::from_secs(60), sender.send_request(request)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
