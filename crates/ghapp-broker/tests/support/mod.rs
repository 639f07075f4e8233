//! Shared helpers for the broker's integration tests: an in-process emulator with its state in a
//! temp dir, config text for it, and a scripted fake GitHub for tests on tokio's paused clock.

#![allow(dead_code)]

pub mod fake;

use ghapp_broker::{Broker, BrokerError, Config, ErrorKind};
use ghapp_protocol::api::{TokenQuery, TokenResponse};
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::time::Timestamp;
use github_emulator::Emulator;
use github_emulator::admin::{Fault, Stats};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The emulator's `basic_fixture` (see ghapp-testkit) with a token lifetime.
pub fn basic_fixture(token_ttl_secs: u64) -> String {
    ghapp_testkit::emulator::basic_fixture(token_ttl_secs)
}

/// A fixture whose installation 100 (org `acme`) may manage self-hosted runners, plus a second
/// organization `beta` (installation 300) so owner-less requests are ambiguous.
pub fn runner_fixture(token_ttl_secs: u64) -> String {
    format!(
        r#"token_ttl_secs = {token_ttl_secs}

[[apps]]
id = 1
client_id = "Iv1.0123456789abcdef"
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
permissions = {{ contents = "write", metadata = "read", organization_self_hosted_runners = "write" }}

[[installations]]
id = 300
app = 1
account = "beta"
account_type = "Organization"
permissions = {{ contents = "read", metadata = "read" }}

[[repositories]]
full_name = "acme/widgets"

[[repositories]]
full_name = "beta/tools"
"#
    )
}

/// An emulator serving from a temp state dir, stopped on drop.
pub struct Env {
    pub emulator: Emulator,
    pub state: tempfile::TempDir,
}

impl Env {
    /// Starts the emulator from `fixture`.
    pub async fn start(fixture: &str) -> Env {
        let state = tempfile::Builder::new()
            .prefix("ghapp-broker-")
            .tempdir()
            .expect("temp dir");
        let emulator = Emulator::start_str(fixture, state.path())
            .await
            .expect("emulator starts");
        Env { emulator, state }
    }

    /// The git host (`127.0.0.1:G`), which Apps serve.
    pub fn git_host(&self) -> String {
        host_of(&self.emulator.urls.git_url)
    }

    /// The API's `host:port`.
    pub fn api_host(&self) -> String {
        host_of(&self.emulator.urls.api_url)
    }

    /// App 1's private key, written by the emulator (mode 0600).
    pub fn key_path(&self) -> PathBuf {
        self.emulator.state_dir().join("app1.pem")
    }

    /// One `[[app]]` for the emulator's App 1 serving the git host; `extra` adds keys.
    pub fn app_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "[[app]]\nname = {name:?}\nhost = {host:?}\napi_url = {api:?}\napp_id = 1\nprivate_key_file = {key:?}\ninsecure_http = true\n{extra}\n",
            host = self.git_host(),
            api = self.emulator.urls.api_url,
            key = self.key_path().display().to_string(),
        )
    }

    /// A config: `[daemon]` keys plus App tables.
    pub fn config(&self, daemon: &str, apps: &str) -> Config {
        let text = format!("[daemon]\n{daemon}\n\n{apps}");
        Config::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
    }

    /// A broker with one App called `test-app` and the given `[daemon]` keys.
    pub fn broker(&self, daemon: &str) -> Broker {
        Broker::start(&self.config(daemon, &self.app_toml("test-app", ""))).expect("broker starts")
    }

    /// A query for `owner/repo` on the git host.
    pub fn query(&self, owner: &str, repo: Option<&str>) -> TokenQuery {
        TokenQuery {
            host: Some(self.git_host()),
            owner: Some(owner.to_string()),
            repo: repo.map(str::to_string),
            protocol: Some("http".to_string()),
            ..TokenQuery::default()
        }
    }

    /// The emulator's counters.
    pub fn stats(&self) -> Stats {
        self.emulator.stats()
    }

    /// Injects a fault.
    pub fn fault(&self, fault: Fault) {
        self.emulator.fault(fault).expect("fault accepted");
    }

    /// How many API requests matched `route` (`"POST /app/installations/{installation_id}/access_tokens"`).
    pub fn requests(&self, route: &str) -> u64 {
        self.stats().requests.get(route).copied().unwrap_or(0)
    }
}

/// The mint route as the emulator counts it.
pub const MINT_ROUTE: &str = "POST /app/installations/{installation_id}/access_tokens";

/// `host:port` of a URL.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Permissions from `contents:read,issues:write`.
pub fn perms(list: &str) -> Permissions {
    Permissions::parse_list(list).expect("permissions")
}

/// Asserts an error's kind and that its message contains `needle`.
pub fn assert_error(
    result: Result<TokenResponse, BrokerError>,
    kind: ErrorKind,
    needle: &str,
) -> BrokerError {
    match result {
        Ok(token) => panic!(
            "expected {kind:?} containing {needle:?}, got a token for {:?}",
            token.repositories
        ),
        Err(e) => {
            assert_eq!(e.kind, kind, "{}", e.message);
            assert!(
                e.message.contains(needle),
                "message {:?} lacks {needle:?}",
                e.message
            );
            e
        }
    }
}

/// Seconds from now until `at` (negative when past).
pub fn secs_until(at: &Timestamp) -> i64 {
    at.unix_seconds() - Timestamp::now().unix_seconds()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
