//! Section h: the network listener (`[network]`) against the Unix socket of the same daemon, in
//! the same run — loopback plain TCP and TCP+TLS with keep-alive, and a new TLS connection per
//! request with session resumption — each against its socket baseline; and the cost of an ID
//! token the daemon has not seen yet against one it has verified and cached, in the same run.
//!
//! Network `/v1/token` needs a credential: the TLS daemon has a `[[client]]` key
//! ([`BENCH_CLIENT_KEY`]) and an `[[oidc]]` issuer (the emulator's), each with a `[[policy]]`
//! entry, and the token rows send one as `Authorization: Bearer`. The ID tokens are minted in
//! advance by the emulator's issuer ([`IdTokens`]), so minting is never inside a measurement.

use crate::load::{self, LoadSpec, Target};
use crate::row::SectionRow;
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart};
use ghapp_testkit::emulator::EmulatorProcess;
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

    /// The `[network]` table serving TLS on a free loopback port, with the bench's client key,
    /// `oidc_issuer` (audience [`BENCH_AUDIENCE`]) and a `[[policy]]` entry for each granting
    /// everything the App has (the ID token's only to `bench/*` workflows).
    pub fn network_table(&self, oidc_issuer: &str) -> String {
        format!(
            "\n[network]\nlisten = [\"127.0.0.1:0\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nanswer_key_file = \"answer-key.pem\"\n\n[[client]]\nname = \"bench\"\nkey_sha256 = \"{}\"\n\n[[oidc]]\nissuer = \"{oidc_issuer}\"\naudience = \"{BENCH_AUDIENCE}\"\n\n[[policy]]\nclient = \"bench\"\n\n[[policy]]\nissuer = \"{oidc_issuer}\"\nsubject = \"repo:bench/*\"\n",
            self.dir.path().join("cert.pem").display(),
            self.dir.path().join("key.pem").display(),
            ghapp_protocol::client_key::digest_hex(BENCH_CLIENT_KEY)
        )
    }
}

/// The client key the TLS daemon knows (a throwaway, for this benchmark only).
pub const BENCH_CLIENT_KEY: &str = "ghk_bench-client-key-not-a-secret-0123456789";

/// The audience the TLS daemon's `[[oidc]]` entry accepts (what a workflow would ask for).
pub const BENCH_AUDIENCE: &str = "ghapp-bench";

/// ID tokens of the emulator's issuer for the TLS daemon, minted before any measurement.
pub struct IdTokens {
    /// The token every "cached ID token" request carries (verified once, then cached).
    pub cached: String,
    /// Distinct tokens, each sent once: every request makes the daemon verify a new one.
    pub fresh: Vec<String>,
}

impl IdTokens {
    /// Mints `1 + fresh` GitHub-Actions-shaped ID tokens for `bench/r0` (each has its own random
    /// `jti`, so no two are alike), living an hour so a slow run cannot outlive them.
    pub fn mint(emulator: &EmulatorProcess, fresh: usize) -> Result<IdTokens> {
        let one = || {
            emulator.mint_id_token(serde_json::json!({
                "preset": { "kind": "github_actions", "repository": "bench/r0", "ref": "refs/heads/main" },
                "aud": BENCH_AUDIENCE,
                "lifetime_secs": 3600,
            }))
        };
        let cached = one().context("minting the cached ID token")?;
        let fresh = (0..fresh)
            .map(|_| one())
            .collect::<Result<Vec<_>>>()
            .context("minting first-seen ID tokens")?;
        Ok(IdTokens { cached, fresh })
    }
}

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

fn ms(x: f64) -> String {
    format!("{x:.3} ms")
}

/// A network figure against the same daemon's socket: throughput ratio, optional floor.
fn against_socket(
    what: String,
    network: Summary,
    socket: Summary,
    floor: Option<f64>,
) -> SectionRow {
    let ratio = network.per_sec / socket.per_sec;
    SectionRow {
        what,
        figure: format!(
            "{:.0} req/s, p50 {} p99 {}",
            network.per_sec,
            ms(network.p50_ms),
            ms(network.p99_ms)
        ),
        baseline: format!(
            "Unix socket: {:.0} req/s, p99 {}",
            socket.per_sec,
            ms(socket.p99_ms)
        ),
        ratio: format!("{ratio:.2}× of the socket"),
        target: floor.map_or("–".into(), |t| format!("≥ {t}× the socket")),
        met: floor.map(|t| ratio >= t),
    }
}

/// How a comparison's requests are sent: 16 connections, kept alive or one per request.
#[derive(Clone, Copy)]
struct Load {
    keep_alive: bool,
    requests: u64,
}

/// One request, measured on a daemon's Unix socket (no credential: the socket's peer check
/// admits the bench) and then over the network with `bearers`.
struct Compared<'a> {
    path: &'a str,
    load: Load,
    bearers: Vec<String>,
}

impl Compared<'_> {
    /// The row comparing `network` with `socket`, `floor` its target ratio if any.
    async fn row(
        self,
        socket: Target,
        network: Target,
        what: String,
        floor: Option<f64>,
    ) -> Result<SectionRow> {
        let Load {
            keep_alive,
            requests,
        } = self.load;
        let on_socket = measure(socket, self.path, keep_alive, 16, requests, Vec::new()).await?;
        let over_network =
            measure(network, self.path, keep_alive, 16, requests, self.bearers).await?;
        Ok(against_socket(what, over_network, on_socket, floor))
    }
}

/// One load run's figures; any failed request fails the section, named.
async fn measure(
    target: Target,
    path: &str,
    keep_alive: bool,
    concurrency: usize,
    requests: u64,
    bearers: Vec<String>,
) -> Result<Summary> {
    let mut samples = load::run_with_bearers(
        LoadSpec {
            target: target.clone(),
            paths: vec![path.to_string()],
            concurrency,
            requests,
            keep_alive,
            headers: Vec::new(),
        },
        bearers,
    )
    .await?;
    let summary = samples.summary();
    if summary.errors > 0 {
        bail!(
            "{} of {requests} requests to {path} on {target:?} failed: {:?}",
            summary.errors,
            samples.failures
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
/// TLS, the latter from [`TestTls::network_table`]); each network figure is compared with the
/// same daemon's Unix socket. `token_path` is a `/v1/token` request both may serve (its token
/// is minted once, then cached); `id_tokens` were minted for the TLS daemon's issuer.
pub async fn measure_all(
    plain: &DaemonProcess,
    tls: &DaemonProcess,
    client: &Arc<rustls::ClientConfig>,
    token_path: &str,
    id_tokens: &IdTokens,
    scale: u64,
) -> Result<(Vec<SectionRow>, bool)> {
    let keep_alive_requests = 20_000 / scale;
    let per_connection_requests = 4_000 / scale;
    let tls_address = tls.network_address();
    let resumed = resumes(tls_address, client).await?;
    let resumption = if resumed {
        "sessions resumed"
    } else {
        "NOT resumed: full handshakes"
    };
    let unix = |daemon: &DaemonProcess| Target::Unix(daemon.socket().to_path_buf());
    let over_tls = || Target::Tls(tls_address, client.clone());
    let none = Vec::new;
    let keep_alive = Load {
        keep_alive: true,
        requests: keep_alive_requests,
    };
    let per_connection = Load {
        keep_alive: false,
        requests: per_connection_requests,
    };
    let healthz = |load| Compared {
        path: "/healthz",
        load,
        bearers: none(),
    };
    let mut rows = vec![
        healthz(keep_alive)
            .row(
                unix(plain),
                Target::Tcp(plain.network_address()),
                "`/healthz`, loopback TCP (plain), keep-alive, 16 connections".into(),
                None,
            )
            .await?,
        healthz(keep_alive)
            .row(
                unix(tls),
                over_tls(),
                "`/healthz`, TCP+TLS, keep-alive, 16 connections".into(),
                None,
            )
            .await?,
        healthz(per_connection)
            .row(
                unix(tls),
                over_tls(),
                format!("`/healthz`, TCP+TLS, a new connection per request ({resumption}), 16 connections"),
                None,
            )
            .await?,
    ];

    // The token route, cached: warmed once on the socket, and the ID token verified once.
    measure(unix(tls), token_path, true, 16, 16, none()).await?;
    let cached_id = || vec![id_tokens.cached.clone()];
    measure(over_tls(), token_path, true, 1, 1, cached_id()).await?;
    let token = |load, bearers| Compared {
        path: token_path,
        load,
        bearers,
    };
    rows.push(
        token(keep_alive, cached_id())
            .row(
                unix(tls),
                over_tls(),
                "`/v1/token` (cached), TCP+TLS, keep-alive, a cached ID token, 16 connections"
                    .into(),
                Some(0.5),
            )
            .await?,
    );
    rows.push(
        token(keep_alive, vec![BENCH_CLIENT_KEY.to_string()])
            .row(
                unix(tls),
                over_tls(),
                "`/v1/token` (cached), TCP+TLS, keep-alive, a `[[client]]` key, 16 connections"
                    .into(),
                Some(0.5),
            )
            .await?,
    );
    rows.push(
        token(per_connection, cached_id())
            .row(
                unix(tls),
                over_tls(),
                format!(
                    "`/v1/token` (cached), TCP+TLS, a new connection per request ({resumption}), a cached ID token, 16 connections"
                ),
                None,
            )
            .await?,
    );

    rows.push(first_seen(over_tls(), token_path, id_tokens).await?);
    Ok((rows, resumed))
}

/// The added cost of an ID token the daemon has not seen (signature check, claims, cache
/// insert) over a cached one: one keep-alive TLS connection, so no request queues behind
/// another and a median difference is the daemon's extra work per request. The cached and the
/// first-seen requests alternate in rounds, so a change in the machine's load hits both alike.
async fn first_seen(tls: Target, token_path: &str, id_tokens: &IdTokens) -> Result<SectionRow> {
    const ROUNDS: usize = 4;
    let per_round = id_tokens.fresh.len() / ROUNDS;
    if per_round == 0 {
        bail!(
            "too few first-seen ID tokens ({}) for {ROUNDS} rounds",
            id_tokens.fresh.len()
        );
    }
    let (mut cached, mut fresh) = (Vec::new(), Vec::new());
    for round in id_tokens.fresh.chunks(per_round).take(ROUNDS) {
        let mut samples = load::run_with_bearers(
            LoadSpec {
                target: tls.clone(),
                paths: vec![token_path.to_string()],
                concurrency: 1,
                requests: per_round as u64,
                keep_alive: true,
                headers: Vec::new(),
            },
            vec![id_tokens.cached.clone()],
        )
        .await?;
        if samples.errors > 0 {
            bail!("cached ID token requests failed: {:?}", samples.failures);
        }
        cached.append(&mut samples.micros);
        let mut samples = load::run_with_bearers(
            LoadSpec {
                target: tls.clone(),
                paths: vec![token_path.to_string()],
                concurrency: 1,
                requests: round.len() as u64,
                keep_alive: true,
                headers: Vec::new(),
            },
            round.to_vec(),
        )
        .await?;
        if samples.errors > 0 {
            bail!(
                "first-seen ID token requests failed: {:?}",
                samples.failures
            );
        }
        fresh.append(&mut samples.micros);
    }
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1000.0
    };
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0;
    let (fresh_mean, cached_mean) = (mean(&fresh), mean(&cached));
    let (fresh_p50, cached_p50) = (median(&mut fresh), median(&mut cached));
    let added = fresh_p50 - cached_p50;
    Ok(SectionRow {
        what: format!(
            "`/v1/token` (cached), TCP+TLS, keep-alive, 1 connection, every request a first-seen ID token (RS256; {} tokens)",
            fresh.len()
        ),
        figure: format!("p50 {}, mean {}", ms(fresh_p50), ms(fresh_mean)),
        baseline: format!(
            "one cached ID token: p50 {}, mean {}",
            ms(cached_p50),
            ms(cached_mean)
        ),
        ratio: format!(
            "+{} per request (p50), +{} (mean)",
            ms(added),
            ms(fresh_mean - cached_mean)
        ),
        target: "< 0.5 ms added".into(),
        met: Some(added < 0.5),
    })
}
