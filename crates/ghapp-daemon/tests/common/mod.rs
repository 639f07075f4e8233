//! A fake token service and an in-process server on a real socket, for tests of the HTTP layer,
//! limits and access control that need no GitHub.

#![allow(dead_code)]

use ghapp_broker::{BrokerError, BrokerMetrics, BrokerStatus, Config, ErrorKind, Histogram};
use ghapp_daemon::audit::AuditLog;
use ghapp_daemon::server::Server;
use ghapp_daemon::service::TokenService;
use ghapp_daemon::settings::Settings;
use ghapp_daemon::socket::{self, SocketFile};
use ghapp_daemon::state::State;
use ghapp_protocol::api::{
    AppStatus, CachedTokenStatus, RunnerTokenResponse, TokenQuery, TokenResponse,
};
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The token the fake hands out for owner/repo.
pub fn fake_token(owner: &str, repo: &str) -> String {
    format!("ghs_FAKEsecret{owner}{repo}0123456789")
}

/// Behaviour by owner: `missing` → 404, `down` → 503, `slow` → 1 s then a token, `ceiling` →
/// 422, anything else → a token. No owner → the "only installation", owner `acme`.
#[derive(Default)]
pub struct Fake {
    pub queries: Mutex<Vec<TokenQuery>>,
    pub calls: AtomicUsize,
    pub reloads: AtomicUsize,
}

fn expires_in_an_hour() -> Timestamp {
    Timestamp::now().saturating_add(Duration::from_secs(3600))
}

impl TokenService for Fake {
    async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.queries.lock().unwrap().push(query.clone());
            let owner = query.owner.clone().unwrap_or_else(|| "acme".to_string());
            let repo = query.repo.clone().unwrap_or_default();
            match owner.as_str() {
                "missing" => {
                    return Err(BrokerError::new(
                        ErrorKind::NotFound,
                        format!("GitHub App test-app is not installed on {owner}/{repo}"),
                    ));
                }
                "down" => {
                    return Err(BrokerError::new(
                        ErrorKind::Unavailable,
                        "GitHub unreachable: connection refused",
                    ));
                }
                "ceiling" => {
                    return Err(BrokerError::new(
                        ErrorKind::Unprocessable,
                        "beyond the App's ceiling",
                    ));
                }
                "slow" => tokio::time::sleep(Duration::from_secs(1)).await,
                _ => {}
            }
            Ok(TokenResponse {
                token: Token::new(fake_token(&owner, &repo)),
                expires_at: expires_in_an_hour(),
                installation_id: 100,
                app: "test-app".into(),
                host: query.host_or_default().to_string(),
                owner: owner.clone(),
                // "wide" plays an App configured installation_wide: never narrowed.
                repositories: if owner == "wide" {
                    Vec::new()
                } else {
                    query.repo.iter().cloned().collect()
                },
                permissions: query.permissions.clone(),
            })
        }
    }

    fn invalidate(&self, token: &str) -> bool {
        token == fake_token("acme", "widgets")
    }

    async fn runner_token(
        &self,
        host: &str,
        org: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        {
            if org == "missing" {
                return Err(BrokerError::new(
                    ErrorKind::NotFound,
                    format!("not installed on {org}"),
                )
                .with_app("test-app")
                .with_installation(100)
                .with_target(format!("organization {org}"))
                .with_github(
                    Some(404),
                    Some(format!(
                        "POST /orgs/{org}/actions/runners/registration-token"
                    )),
                    "Not Found",
                ));
            }
            Ok(RunnerTokenResponse {
                token: Token::new("AAAARUNNERTOKENSECRET"),
                expires_at: expires_in_an_hour(),
                kind: if remove {
                    "remove".into()
                } else {
                    "registration".into()
                },
                org: org.to_string(),
                url: format!("https://{host}/{org}"),
            })
        }
    }

    fn reload(&self, _config: &Config) -> Result<(), BrokerError> {
        self.reloads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn status(&self) -> BrokerStatus {
        BrokerStatus {
            degraded: false,
            degraded_reason: None,
            shared_cache: None,
            upstream: None,
            apps: vec![AppStatus {
                name: "test-app".into(),
                host: "github.com".into(),
                api_url: "https://api.github.com".into(),
                app_id: Some(1),
                key_fingerprint: "sha256:abc".into(),
                ..Default::default()
            }],
            installations: vec![],
            tokens: vec![CachedTokenStatus {
                fingerprint: Token::new(fake_token("acme", "widgets")).fingerprint(),
                app: "test-app".into(),
                remaining_secs: 3000,
                ..Default::default()
            }],
        }
    }

    fn metrics(&self) -> BrokerMetrics {
        BrokerMetrics {
            cache_hits: 1,
            cache_misses: self.calls.load(Ordering::SeqCst) as u64,
            mints: BTreeMap::from([("test-app".to_string(), 1)]),
            mint_latency: Histogram {
                buckets: vec![(0.1, 1), (1.0, 1), (f64::INFINITY, 1)],
                sum: 0.05,
                count: 1,
            },
            rate_limit_remaining: BTreeMap::from([("test-app".to_string(), 4999)]),
            ..Default::default()
        }
    }

    fn shutdown(&self) {}
}

/// One App, so the seed routes have a default host.
pub const ONE_APP: &str = "[[app]]\nname = \"test-app\"\nhost = \"github.com\"\napp_id = 1\nprivate_key_env = \"GHAPP_TEST_UNUSED_KEY\"\n";

/// A server with the fake on `<short temp dir>/d.sock`.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: Arc<State<Fake>>,
    pub server: Option<Server>,
    pub file: Option<SocketFile>,
}

impl Harness {
    /// `daemon_toml` goes under `[daemon]`; `apps_toml` after it.
    pub fn start(daemon_toml: &str, apps_toml: &str, dir_mode: Option<u32>) -> Harness {
        let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
        if let Some(mode) = dir_mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let config_path = dir.path().join("config.toml");
        let text = format!("[daemon]\n{daemon_toml}\n\n{apps_toml}");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::parse(&text, &config_path).unwrap();
        let settings =
            Settings::from_config(&config, &config_path, rustix::process::geteuid().as_raw())
                .unwrap();
        let socket = dir.path().join("d.sock");
        let bound = socket::bind(&socket, settings.socket_gid).unwrap();
        let audit = AuditLog::open(settings.audit_log.as_deref()).unwrap();
        let state = Arc::new(State::new(Fake::default(), settings, audit, &socket));
        let server = Server::start(bound.listener, state.clone()).unwrap();
        Harness {
            dir,
            socket,
            state,
            server: Some(server),
            file: Some(bound.file),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One blocking request, run off the async threads.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> ghapp_testkit::daemon::HttpResponse {
        let socket = self.socket.clone();
        let (method, path, body) = (
            method.to_string(),
            path.to_string(),
            body.map(str::to_string),
        );
        tokio::task::spawn_blocking(move || {
            ghapp_testkit::daemon::http_request(&socket, &method, &path, body.as_deref())
        })
        .await
        .unwrap()
        .unwrap()
    }

    pub async fn get(&self, path: &str) -> ghapp_testkit::daemon::HttpResponse {
        self.request("GET", path, None).await
    }

    pub fn client(&self) -> ghapp_client::DaemonClient {
        ghapp_client::DaemonClient::new(&self.socket, Duration::from_secs(20))
    }
}

/// True when the tests run as root (needed to act as other uids).
pub use ghapp_testkit::system::is_root;

/// Runs `curl --unix-socket` as another uid/gid (and supplementary groups) via setpriv;
/// returns (status, body).
pub fn curl_as(
    uid: u32,
    gid: u32,
    groups: Option<u32>,
    socket: &Path,
    path: &str,
) -> (u16, String) {
    let mut command = std::process::Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    match groups {
        Some(group) => command.arg(format!("--groups={group}")),
        None => command.arg("--clear-groups"),
    };
    let output = command
        .args([
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://x{path}"))
        .output()
        .expect("setpriv and curl are installed");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
