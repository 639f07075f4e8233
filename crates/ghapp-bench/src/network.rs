//! Section h: the network listener (`[network]`) against the Unix socket of the same daemon, in
//! the same run — loopback plain TCP and TCP+TLS with keep-alive, and a new TLS connection per
//! request with session resumption — each against its socket baseline.
//!
//! Network `/v1/token` needs a credential: the TLS daemon has a `[[client]]` key
//! ([`BENCH_CLIENT_KEY`]) and a `[[policy]]` entry for it, and the token row sends it as
//! `Authorization: Bearer`.

use crate::load::{self, LoadSpec, Target};
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// A throwaway CA and a leaf for 127.0.0.1, as files the daemon reads, and a client trusting it.
pub struct TestTls {
    dir: tempfile::TempDir,
    client: Arc<rustls::ClientConfig>,
}

impl TestTls {
    /// Generates the CA and the leaf.
    pub fn generate() -> Result<TestTls> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ghapp bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "ghapp bench daemon");
        let leaf_key = KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("cert.pem"), leaf.pem())?;
        let key = dir.path().join("key.pem");
        std::fs::write(&key, leaf_key.serialize_pem())?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        Ok(TestTls { dir, client })
    }

    /// A client trusting the CA; its session cache lets new connections resume.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.client.clone()
    }

    /// The `[network]` table serving TLS on a free loopback port, with the bench's client key
    /// and a `[[policy]]` entry granting it everything the App has.
    pub fn network_table(&self) -> String {
        format!(
            "\n[network]\nlisten = [\"127.0.0.1:0\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nanswer_key_file = \"answer-key.pem\"\n\n[[client]]\nname = \"bench\"\nkey_sha256 = \"{}\"\n\n[[policy]]\nclient = \"bench\"\n",
            self.dir.path().join("cert.pem").display(),
            self.dir.path().join("key.pem").display(),
            ghapp_protocol::client_key::digest_hex(BENCH_CLIENT_KEY)
        )
    }
}

/// The client key the TLS daemon knows (a throwaway, for this benchmark only).
pub const BENCH_CLIENT_KEY: &str = "ghk_bench-client-key-not-a-secret-0123456789";

/// The `[network]` table serving plain HTTP on a free loopback port.
pub const PLAIN_NETWORK_TABLE: &str =
    "\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n";

/// Starts a daemon from `config` (the bench's, plus a `[network]` table) at log level `info`.
pub fn start_daemon(config: &str, daemon_env: &[(String, String)]) -> Result<DaemonProcess> {
    let mut env = vec![("GHAPP_LOG".to_string(), "info".to_string())];
    env.extend(daemon_env.iter().cloned());
    DaemonProcess::start_with(
        config,
        DaemonStart {
            env,
            ..DaemonStart::default()
        },
    )
    .context("starting a daemon with [network]")
}

/// One measured pair: the network figure against the socket's, as a report row's cells.
pub struct Pair {
    /// What was measured.
    pub what: String,
    /// The network run.
    pub network: Summary,
    /// The socket run (baseline).
    pub socket: Summary,
    /// The target ratio, if any.
    pub target: Option<f64>,
}

async fn measure(target: Target, path: &str, keep_alive: bool, requests: u64) -> Result<Summary> {
    measure_with(target, path, keep_alive, requests, Vec::new()).await
}

async fn measure_with(
    target: Target,
    path: &str,
    keep_alive: bool,
    requests: u64,
    headers: Vec<(String, String)>,
) -> Result<Summary> {
    let summary = load::run(LoadSpec {
        target: target.clone(),
        paths: vec![path.to_string()],
        concurrency: 16,
        requests,
        keep_alive,
        headers,
    })
    .await?
    .summary();
    if summary.errors > 0 {
        bail!(
            "{} of {requests} requests to {path} on {target:?} failed",
            summary.errors
        );
    }
    Ok(summary)
}

/// Whether a second connection with `client` resumes the first one's session.
async fn resumes(address: SocketAddr, client: &Arc<rustls::ClientConfig>) -> Result<bool> {
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let mut kind = None;
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let mut tls = connector.connect(name.clone(), tcp).await?;
        kind = tls.get_ref().1.handshake_kind();
        // Read the session ticket the server sends after the handshake.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
    }
    Ok(kind == Some(rustls::HandshakeKind::Resumed))
}

/// The rows of section h: `plain` and `tls` are daemons with `[network]` (loopback plain and
/// TLS); each network figure is compared with the same daemon's Unix socket. `token_path` is a
/// `/v1/token` request both may serve (its token is minted once, then cached).
pub async fn measure_all(
    plain: &DaemonProcess,
    tls: &DaemonProcess,
    client: &Arc<rustls::ClientConfig>,
    token_path: &str,
    scale: u64,
) -> Result<(Vec<Pair>, bool)> {
    let keep_alive_requests = 20_000 / scale;
    let per_connection_requests = 4_000 / scale;
    let tls_address = tls.network_address();
    let resumed = resumes(tls_address, client).await?;
    let mut pairs = Vec::new();
    let unix = |daemon: &DaemonProcess| Target::Unix(daemon.socket().to_path_buf());

    let socket = measure(unix(plain), "/healthz", true, keep_alive_requests).await?;
    let network = measure(
        Target::Tcp(plain.network_address()),
        "/healthz",
        true,
        keep_alive_requests,
    )
    .await?;
    pairs.push(Pair {
        what: "`/healthz`, loopback TCP (plain), keep-alive, 16 connections".into(),
        network,
        socket,
        target: None,
    });

    let socket = measure(unix(tls), "/healthz", true, keep_alive_requests).await?;
    let network = measure(
        Target::Tls(tls_address, client.clone()),
        "/healthz",
        true,
        keep_alive_requests,
    )
    .await?;
    pairs.push(Pair {
        what: "`/healthz`, TCP+TLS, keep-alive, 16 connections".into(),
        network,
        socket,
        target: Some(0.5),
    });

    let socket = measure(unix(tls), "/healthz", false, per_connection_requests).await?;
    let network = measure(
        Target::Tls(tls_address, client.clone()),
        "/healthz",
        false,
        per_connection_requests,
    )
    .await?;
    pairs.push(Pair {
        what: format!(
            "`/healthz`, TCP+TLS, a new connection per request ({}), 16 connections",
            if resumed {
                "sessions resumed"
            } else {
                "NOT resumed: full handshakes"
            }
        ),
        network,
        socket,
        target: None,
    });
    // The token route, cached: warmed once, then the socket against TLS with the client key.
    measure(unix(tls), token_path, true, 16).await?;
    let socket = measure(unix(tls), token_path, true, keep_alive_requests).await?;
    let bearer = vec![(
        "authorization".to_string(),
        format!("Bearer {BENCH_CLIENT_KEY}"),
    )];
    let network = measure_with(
        Target::Tls(tls_address, client.clone()),
        token_path,
        true,
        keep_alive_requests,
        bearer,
    )
    .await?;
    pairs.push(Pair {
        what: "`/v1/token` (cached), TCP+TLS, keep-alive, a `[[client]]` key, 16 connections"
            .into(),
        network,
        socket,
        target: Some(0.5),
    });
    Ok((pairs, resumed))
}
