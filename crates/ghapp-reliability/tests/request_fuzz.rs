//! The daemon's request path fuzzed in-process with proptest: hyper's parser, the routes, the
//! query and body handling of the real `ghapp_daemon::server` on a real socket, behind a fake
//! token service. Random bytes and mutated near-valid requests must each get at most one clear
//! answer that is never a 5xx (or be cut off), and the server must keep answering. (cargo-fuzz
//! covers the protocol parsers with a sanitizer: crates/ghapp-protocol/fuzz; building the whole
//! daemon — rustls, aws-lc — under a sanitizer is not worth it for this layer.)

use ghapp_broker::{BrokerError, BrokerMetrics, BrokerStatus, Config};
use ghapp_daemon::audit::AuditLog;
use ghapp_daemon::server::Server;
use ghapp_daemon::service::TokenService;
use ghapp_daemon::settings::Settings;
use ghapp_daemon::state::State;
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery, TokenResponse};
use ghapp_protocol::secret::Token;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Hands out one fixed token for anything well-formed.
struct FixedToken;

impl TokenService for FixedToken {
    async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        Ok(TokenResponse {
            token: Token::new("ghs_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz0000"),
            expires_at: "2099-01-01T00:00:00Z".parse().unwrap(),
            installation_id: 1,
            app: "fuzz".into(),
            host: query.host_or_default().to_string(),
            owner: query.owner.clone().unwrap_or_else(|| "acme".into()),
            repositories: query.repo.iter().cloned().collect(),
            permissions: query.permissions.clone(),
        })
    }
    fn invalidate(&self, _token: &str) -> bool {
        false
    }
    async fn runner_token(
        &self,
        host: &str,
        org: &str,
        _remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        Ok(RunnerTokenResponse {
            token: Token::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            expires_at: "2099-01-01T00:00:00.000+00:00".parse().unwrap(),
            kind: "registration".into(),
            org: org.into(),
            url: format!("https://{host}/{org}"),
        })
    }
    fn reload(&self, _config: &Config) -> Result<(), BrokerError> {
        Ok(())
    }
    fn status(&self) -> BrokerStatus {
        BrokerStatus::default()
    }
    fn metrics(&self) -> BrokerMetrics {
        BrokerMetrics::default()
    }
    fn shutdown(&self) {}
}

/// One server for every case: its runtime, temp dir and socket live as long as the process.
fn socket() -> &'static Path {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| {
        let dir = ghapp_testkit::daemon::short_temp_dir().expect("temp dir");
        let path = dir.path().join("f.sock");
        let config_path = dir.path().join("config.toml");
        let config = Config::parse(
            "[daemon]\nclient_timeout = \"1s\"\nmax_connections = 64\n",
            &config_path,
        )
        .expect("config");
        let uid = rustix::process::geteuid().as_raw();
        let settings = Settings::from_config(&config, &config_path, uid).expect("settings");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let bound = ghapp_daemon::socket::bind(&path, None).expect("bind");
        let state = Arc::new(State::new(
            FixedToken,
            settings,
            AuditLog::open(None).expect("audit"),
            &path,
        ));
        let server = runtime
            .block_on(async { Server::start(bound.listener, state) })
            .expect("server");
        // Keep everything alive for the rest of the test process.
        std::mem::forget((dir, bound.file, server, runtime));
        path
    })
}

/// Sends `bytes` and returns every status answered. With `half_close` the write side is shut
/// after sending, so an unfinished head ends at once instead of at `client_timeout` — hyper
/// then closes without answering a request still in progress, which counts as cut off.
fn answers(bytes: &[u8], half_close: bool) -> Vec<u16> {
    let mut stream = UnixStream::connect(socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let mut statuses = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("HTTP/1.") {
        if let Some(code) = rest[at..].get(9..12).and_then(|c| c.parse().ok()) {
            statuses.push(code);
        }
        rest = &rest[at + 7..];
    }
    statuses
}

/// Near-valid requests: a method, a target from the API with noise, headers, maybe a body.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("DELETE".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}"
    ];
    let path = prop_oneof![
        Just("/v1/token".to_string()),
        Just("/v1/status".to_string()),
        Just("/v1/runner-token".to_string()),
        Just("/metrics".to_string()),
        Just("/healthz".to_string()),
        Just("/admin/github-installation-token".to_string()),
        "/api/[a-z%0-9./]{0,12}/[a-z%0-9./]{0,12}",
        "/[ -~]{0,40}"
    ];
    let query = prop_oneof![
        Just(String::new()),
        "\\?(owner|repo|host|permissions|min_ttl|protocol|x)=[ -~&=%+]{0,60}",
    ];
    let headers: proptest::collection::VecStrategy<&str> =
        proptest::collection::vec("[A-Za-z-]{1,16}: [ -~]{0,40}", 0..6);
    let body = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200));
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        "HTTP/[0-9]\\.[0-9]"
    ];
    (method, path, query, version, headers, body).prop_map(
        |(method, path, query, version, headers, body)| {
            let mut text = format!("{method} {path}{query} {version}\r\nHost: x\r\n");
            for header in headers {
                text.push_str(&header);
                text.push_str("\r\n");
            }
            let mut bytes = text.into_bytes();
            if let Some(body) = body {
                bytes.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                bytes.extend_from_slice(&body);
            } else {
                bytes.extend_from_slice(b"\r\n");
            }
            bytes
        },
    )
}

fn check(statuses: &[u16]) -> Result<(), TestCaseError> {
    prop_assert!(
        statuses.iter().all(|s| *s < 500),
        "a 5xx for hostile input: {statuses:?}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_get_no_5xx(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&answers(&bytes, true))?;
    }

    #[test]
    fn near_valid_requests_get_no_5xx_and_the_server_keeps_answering(request in near_valid()) {
        let statuses = answers(&request, true);
        check(&statuses)?;
        prop_assert!(statuses.len() <= 1, "one request, {} answers", statuses.len());
        let health = answers(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
        prop_assert!(health == [200], "the server answered {:?} to /healthz after {:?}", health, String::from_utf8_lossy(&request));
    }
}
