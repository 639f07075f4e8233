//! The network listener (`[network]`, issue 14) as real processes: plain HTTP on loopback, TLS
//! with a certificate made here (curl with `--cacert`, reqwest and rustls trusting its CA),
//! the refusals at start (plain HTTP off loopback, a TLS key others can read), the certificate
//! reloaded on SIGHUP while an open connection keeps working, session resumption, the
//! slow-client cut-off, the network's own connection budget, and the fail-closed 401 before
//! network callers can be identified.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp`. curl is used where present;
//! without it that part says SKIPPED (or fails with `GHAPP_TEST_REQUIRE_CURL=1`).

use ghapp_testkit::daemon::{DaemonProcess, DaemonStart};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA and a leaf for 127.0.0.1 and localhost, written as PEM files in a directory.
struct TestPki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL takes a leaf whose issuer is its own subject for self-signed.
        params
            .distinguished_name
            .push(DnType::CommonName, "ghapp network test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = TestPki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Issues a new leaf, writes it and its key (0600), and returns the leaf's DER.
    fn issue_leaf(&self) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ghapp daemon");
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.cert_file(), leaf.pem()).unwrap();
        let temp = self.dir.path().join("key.pem.new");
        std::fs::write(&temp, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&temp, self.key_file()).unwrap();
        leaf.der().clone()
    }

    fn network_config(&self, extra_daemon: &str) -> String {
        format!(
            "[daemon]\n{extra_daemon}\n\n[network]\nlisten = [\"127.0.0.1:0\"]\ntls_cert_file = {:?}\ntls_key_file = {:?}\nanswer_key_file = \"answer-key.pem\"\n",
            self.cert_file().display().to_string(),
            self.key_file().display().to_string()
        )
    }

    /// A rustls client trusting this CA, with its default session cache (for resumption).
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

const PLAIN_CONFIG: &str =
    "[daemon]\n\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n";

/// [`PLAIN_CONFIG`] without the per-address share: every test connection comes from 127.0.0.1.
const UNSHARED_PLAIN_CONFIG: &str = "[daemon]\n\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\nmax_connections_per_address = 0\n";

/// A TLS connection kept open across requests.
type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(config: &Arc<rustls::ClientConfig>, address: SocketAddr) -> TlsClient {
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

fn served_leaf(stream: &TlsClient) -> CertificateDer<'static> {
    stream.conn.peer_certificates().unwrap()[0].clone()
}

/// An answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One keep-alive request on `stream`; reads exactly one answer (Content-Length body).
fn exchange(stream: &mut impl ReadWrite, path: &str, extra: &str) -> std::io::Result<Answer> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: ghapp\r\n{extra}\r\n")?;
    stream.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn plain_connect(address: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

fn start_refused(config: &str) -> String {
    let tmp = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let path = tmp.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(ghapp_testkit::binary("ghapp"));
    ghapp_testkit::daemon::foreground_daemon(&mut command, &path, &tmp.path().join("d.sock"));
    let output = command.current_dir(tmp.path()).output().unwrap();
    assert!(
        !output.status.success(),
        "the daemon started: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("ready"),
        "no ready line"
    );
    assert!(!tmp.path().join("d.sock").exists(), "no socket left behind");
    String::from_utf8_lossy(&output.stderr).to_string()
}

#[test]
fn plain_listener_on_loopback_serves_probes_and_refuses_tokens_without_a_credential() {
    let daemon = DaemonProcess::start(PLAIN_CONFIG).unwrap();
    let listening = daemon.listening();
    assert_eq!(listening.len(), 1);
    assert!(!listening[0].tls);
    let address = daemon.network_address();
    assert!(address.ip().is_loopback() && address.port() != 0);
    assert!(
        daemon.log().contains(&format!("listening on {address}")),
        "{}",
        daemon.log()
    );

    let mut stream = plain_connect(address);
    let health = exchange(&mut stream, "/healthz", "").unwrap();
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    let tokman = exchange(&mut stream, "/api/health", "").unwrap();
    assert_eq!(
        (tokman.status, tokman.body.as_str()),
        (200, r#"{"message":"ok"}"#)
    );
    let jwks = exchange(&mut stream, "/.well-known/jwks.json", "").unwrap();
    assert_eq!(jwks.status, 200);
    let keys: serde_json::Value = serde_json::from_str(&jwks.body).unwrap();
    assert_eq!(keys["keys"][0]["kty"], "EC");
    assert_eq!(keys["keys"][0]["crv"], "P-256");
    for path in ["/v1/token?owner=acme&repo=widgets", "/v1/status"] {
        let refused = exchange(&mut stream, path, "").unwrap();
        assert_eq!(refused.status, 401, "{path}: {refused:?}");
        assert_eq!(
            refused.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer"),
            "{path}"
        );
    }
    // /metrics is served to loopback callers (docs/policy.md).
    let metrics = exchange(&mut stream, "/metrics", "").unwrap();
    assert_eq!(metrics.status, 200, "{metrics:?}");
    // The same probe on the Unix socket, and the socket's answer unchanged.
    let (status, body) = daemon.get("/api/health").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"message":"ok"}"#));
    let answer_key = daemon.dir().join("answer-key.pem");
    assert_eq!(
        std::fs::metadata(&answer_key).unwrap().permissions().mode() & 0o777,
        0o600,
        "the answer key is generated private"
    );
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let stderr = start_refused("[network]\nlisten = [\"0.0.0.0:0\"]\n");
    assert!(
        stderr.contains("network.listen[0]: 0.0.0.0:0 is not a loopback address, and plain HTTP is served only on loopback"),
        "{stderr}"
    );
}

#[test]
fn a_tls_key_others_can_read_is_refused_at_start() {
    let pki = TestPki::new();
    pki.issue_leaf();
    std::fs::set_permissions(pki.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = start_refused(&pki.network_config(""));
    assert!(
        stderr.contains("is readable or writable by group/others (mode 0644): run chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
}

#[test]
fn tls_with_curl_reqwest_and_session_resumption() {
    let pki = TestPki::new();
    pki.issue_leaf();
    let daemon = DaemonProcess::start(&pki.network_config("")).unwrap();
    assert!(daemon.listening()[0].tls);
    let address = daemon.network_address();

    match ghapp_testkit::system::on_path("curl") {
        Some(curl) => {
            let output = Command::new(curl)
                .args(["--silent", "--show-error", "--cacert"])
                .arg(pki.ca_file())
                .arg("--write-out")
                .arg("\n%{http_code}")
                .arg(format!("https://127.0.0.1:{}/api/health", address.port()))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(stdout, "{\"message\":\"ok\"}\n200");
        }
        None => {
            eprintln!("SKIPPED: curl is not installed; the curl part of the TLS test did not run");
            assert!(
                std::env::var("GHAPP_TEST_REQUIRE_CURL").as_deref() != Ok("1"),
                "GHAPP_TEST_REQUIRE_CURL=1 but curl is missing"
            );
        }
    }

    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(pki.ca_file()).unwrap()).unwrap(),
        ])
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", address.port());
    let health = client.get(format!("{base}/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let refused = client
        .get(format!("{base}/v1/token?owner=acme&repo=widgets"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    // A client that does not trust the CA gets no answer at all.
    let untrusting = reqwest::blocking::Client::builder().build().unwrap();
    assert!(untrusting.get(format!("{base}/healthz")).send().is_err());

    // A new connection per request resumes the session instead of a full handshake.
    let config = pki.client_config();
    let mut first = tls_connect(&config, address);
    assert_eq!(
        exchange(&mut first, "/healthz", "Connection: close\r\n")
            .unwrap()
            .status,
        200
    );
    drop(first);
    let mut second = tls_connect(&config, address);
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the second connection resumed its session"
    );
    assert_eq!(exchange(&mut second, "/healthz", "").unwrap().status, 200);
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let pki = TestPki::new();
    let old_leaf = pki.issue_leaf();
    let daemon = DaemonProcess::start(&pki.network_config("client_timeout = \"30s\"")).unwrap();
    let address = daemon.network_address();
    let config = pki.client_config();
    let mut open = tls_connect(&config, address);
    assert_eq!(served_leaf(&open), old_leaf);
    assert_eq!(exchange(&mut open, "/healthz", "").unwrap().status, 200);

    // A broken pair on reload: logged, the old certificate stays.
    std::fs::write(pki.cert_file(), "not a certificate").unwrap();
    daemon.reload().unwrap();
    daemon
        .wait_for_log(
            "TLS certificate reload failed, still presenting the previous one",
            Duration::from_secs(10),
        )
        .unwrap();
    let fresh = tls_connect(&pki.client_config(), address);
    assert_eq!(served_leaf(&fresh), old_leaf);

    let new_leaf = pki.issue_leaf();
    assert_ne!(new_leaf, old_leaf);
    daemon.reload().unwrap();
    daemon
        .wait_for_log("TLS certificate reloaded", Duration::from_secs(10))
        .unwrap();
    // A fresh client config: no session to resume, so the certificate is presented again.
    let mut fresh = tls_connect(&pki.client_config(), address);
    assert_eq!(
        served_leaf(&fresh),
        new_leaf,
        "new connections get the new certificate"
    );
    assert_eq!(exchange(&mut fresh, "/api/health", "").unwrap().status, 200);
    // The connection opened before the reload still works, on its old session.
    assert_eq!(exchange(&mut open, "/healthz", "").unwrap().status, 200);
    assert_eq!(served_leaf(&open), old_leaf);
}

#[test]
fn slow_clients_are_cut_off_on_tcp_and_in_the_tls_handshake() {
    let pki = TestPki::new();
    pki.issue_leaf();
    // A plain and a TLS daemon, both with a 1 s client deadline.
    let tls_daemon = DaemonProcess::start(&pki.network_config("client_timeout = \"1s\"")).unwrap();
    let plain_daemon = DaemonProcess::start(
        &PLAIN_CONFIG.replace("[daemon]\n", "[daemon]\nclient_timeout = \"1s\"\n"),
    )
    .unwrap();

    for (what, address) in [
        ("a head sent byte by byte", plain_daemon.network_address()),
        (
            "a TLS handshake never started",
            tls_daemon.network_address(),
        ),
    ] {
        let mut stream = plain_connect(address);
        let started = Instant::now();
        let closed = if what.starts_with("a head") {
            // One byte every 300 ms: never a whole head within the 1 s deadline.
            let mut closed = false;
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
                if stream.write_all(&[*byte]).is_err() {
                    closed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
                if started.elapsed() > Duration::from_secs(8) {
                    break;
                }
            }
            closed || {
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).is_ok()
            }
        } else {
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).is_ok()
        };
        assert!(closed, "{what}: still open");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{what}: cut off only after {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_network_flood_never_takes_the_unix_sockets_connections() {
    // Four connections per budget; keep-alive connections stay open for 30 s.
    let daemon = DaemonProcess::start_with(
        &UNSHARED_PLAIN_CONFIG.replace(
            "[daemon]\n",
            "[daemon]\nmax_connections = 4\nclient_timeout = \"30s\"\n",
        ),
        DaemonStart::default(),
    )
    .unwrap();
    let address = daemon.network_address();
    // The network's four slots, each connection having been served once (then idle).
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = plain_connect(address);
            assert_eq!(exchange(&mut stream, "/healthz", "").unwrap().status, 200);
            stream
        })
        .collect();
    // A flood of further network connections: each either evicts an idle network connection or
    // is refused — never a slot of the socket.
    let flood: Vec<TcpStream> = (0..40).map(|_| plain_connect(address)).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The socket serves at once, every time.
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = daemon.get("/healthz").unwrap();
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the socket waited {:?} for a slot",
            started.elapsed()
        );
    }
    drop(flood);
    drop(held);
    // And socket traffic never evicts network connections either: with one budget shared,
    // the socket's connections would have closed these idle ones to make room.
    let quiet = DaemonProcess::start(&UNSHARED_PLAIN_CONFIG.replace(
        "[daemon]\n",
        "[daemon]\nmax_connections = 4\nclient_timeout = \"30s\"\n",
    ))
    .unwrap();
    let address = quiet.network_address();
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = plain_connect(address);
            assert_eq!(exchange(&mut stream, "/healthz", "").unwrap().status, 200);
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..20 {
        assert_eq!(quiet.get("/healthz").unwrap().0, 200);
    }
    for stream in &mut held {
        assert_eq!(
            exchange(stream, "/healthz", "").unwrap().status,
            200,
            "a network connection was closed by the socket's traffic"
        );
    }
}

/// A TCP connection to `address` from the loopback address `from` (127.0.0.0/8 is all local).
fn connect_from(from: std::net::Ipv4Addr, address: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::new(from.into(), 0))?;
    connect(&fd, &address)?;
    let tcp = TcpStream::from(fd);
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(tcp)
}

/// The attacker's pass on the listener (docs/security.md, finding 6): one host opening
/// connections that never finish their request head held every network slot and waiting place,
/// so every other host got 503. Each source address now holds at most its share (half the
/// budget by default): beyond it, its connections are refused, and the rest stays for others.
#[test]
fn one_address_cannot_take_every_network_connection() {
    let daemon = DaemonProcess::start(&PLAIN_CONFIG.replace(
        "[daemon]\n",
        // 16 slots: the attacker's share is 8, and the other host's connections of earlier rounds
        // (closed by it, perhaps not yet by a loaded daemon) stay well within its own share.
        "[daemon]\nmax_connections = 16\nclient_timeout = \"30s\"\n",
    ))
    .unwrap();
    let address = daemon.network_address();
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    // 60 partial request heads from one host, then more while the others ask.
    let mut flood: Vec<TcpStream> = (0..60)
        .filter_map(|_| connect_from(attacker, address).ok())
        .map(|mut stream| {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for round in 0..10 {
        if let Ok(mut stream) = connect_from(attacker, address) {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n");
            flood.push(stream);
        }
        let mut stream = plain_connect(address);
        let answer = exchange(&mut stream, "/healthz", "")
            .unwrap_or_else(|e| panic!("round {round}: another host was not served: {e}"));
        assert_eq!(answer.status, 200, "round {round}: {answer:?}");
    }
    drop(flood);
}
