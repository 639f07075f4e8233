//! An emulator and a `ghapp daemon` configured for it, with token lifetimes of seconds so a
//! fault, its margin, its error and the recovery all happen within one short test.

use anyhow::Context;
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::sync::Arc;
use std::time::Duration;

/// Token lifetime at the emulator and the daemon's margins, all scaled down from hours to
/// seconds in the same proportions as production (1 h tokens, 30 m `min_ttl`, 5 m
/// `refresh_ahead` and `degraded_min_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Emulator `token_ttl_secs`.
    pub token_ttl: Duration,
    /// `[daemon] min_ttl`.
    pub min_ttl: Duration,
    /// `[daemon] refresh_ahead`.
    pub refresh_ahead: Duration,
    /// `[daemon] degraded_min_ttl`.
    pub degraded_min_ttl: Duration,
    /// `[daemon] retry_budget`.
    pub retry_budget: Duration,
    /// `[daemon] request_timeout` (and `connect_timeout`).
    pub request_timeout: Duration,
}

impl Timing {
    /// 24-second tokens: served fresh while 10 s are left, refreshed from 14 s left, served on
    /// the degraded margin down to 3 s; a GitHub call gives up after 2 s, an operation after 4 s.
    pub fn fast() -> Timing {
        Timing {
            token_ttl: Duration::from_secs(24),
            min_ttl: Duration::from_secs(10),
            refresh_ahead: Duration::from_secs(4),
            degraded_min_ttl: Duration::from_secs(3),
            retry_budget: Duration::from_secs(4),
            request_timeout: Duration::from_secs(2),
        }
    }

    /// The `[daemon]` lines for these margins. The installation caches are scaled like the
    /// token lifetime (1 h → [`Timing::token_ttl`]): "not installed" and "suspended" are
    /// remembered for 5 min / 150, mappings trusted for 1 h / 150.
    pub fn daemon_lines(&self) -> String {
        let ms = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let scaled = |production_secs: u64| {
            ms(Duration::from_millis(
                production_secs * self.token_ttl.as_millis() as u64 / 3600,
            ))
        };
        format!(
            "min_ttl = {}\nrefresh_ahead = {}\ndegraded_min_ttl = {}\nretry_budget = {}\nrequest_timeout = {}\nconnect_timeout = {}\nnegative_cache_ttl = {}\ninstallation_cache_ttl = {}\n",
            ms(self.min_ttl),
            ms(self.refresh_ahead),
            ms(self.degraded_min_ttl),
            ms(self.retry_budget),
            ms(self.request_timeout),
            ms(self.request_timeout),
            scaled(300),
            scaled(3600),
        )
    }
}

/// [`basic_fixture`] with the runner permission added to installation 100 (`acme`), so runner
/// registration tokens can be asked for too.
pub fn fixture_with_runners(token_ttl_secs: u64) -> String {
    let base = basic_fixture(token_ttl_secs);
    base.replacen(
        "permissions = { contents = \"write\", metadata = \"read\" }",
        "permissions = { contents = \"write\", metadata = \"read\", organization_self_hosted_runners = \"write\" }",
        1,
    )
}

/// An emulator and a daemon for it, both killed on drop.
pub struct Stack {
    /// The emulator (fixture: [`fixture_with_runners`]), shared with samplers.
    pub emulator: Arc<EmulatorProcess>,
    /// The daemon (one App, `test-app`, for the emulator's git host).
    pub daemon: DaemonProcess,
    /// The margins in force.
    pub timing: Timing,
}

impl Stack {
    /// Starts both with `timing`; `extra_daemon` adds `[daemon]` lines (audit log, limits…).
    pub fn start(
        timing: Timing,
        extra_daemon: &str,
        options: DaemonStart,
    ) -> anyhow::Result<Stack> {
        let emulator = EmulatorProcess::start(&fixture_with_runners(timing.token_ttl.as_secs()))
            .context("starting the emulator")?;
        Stack::start_on(emulator, timing, extra_daemon, options)
    }

    /// Starts a daemon for an emulator already running (e.g. with a fault set before the
    /// daemon's first request).
    pub fn start_on(
        emulator: EmulatorProcess,
        timing: Timing,
        extra_daemon: &str,
        options: DaemonStart,
    ) -> anyhow::Result<Stack> {
        let config = config_for(
            &emulator,
            &format!("{}{extra_daemon}", timing.daemon_lines()),
        );
        let daemon = DaemonProcess::start_with(&config, options).context("starting the daemon")?;
        Ok(Stack {
            emulator: Arc::new(emulator),
            daemon,
            timing,
        })
    }

    /// `GET /v1/token` paths for three cache keys over both installations: acme/widgets,
    /// acme/gadgets, octo/tools.
    pub fn three_keys(&self) -> Vec<String> {
        vec![
            self.token_path("acme", "widgets"),
            self.token_path("acme", "gadgets"),
            self.token_path("octo", "tools"),
        ]
    }

    /// The socket path of `GET /v1/token` for `owner/repo` on the emulator's git host.
    pub fn token_path(&self, owner: &str, repo: &str) -> String {
        format!(
            "/v1/token?host={}&owner={owner}&repo={repo}",
            self.emulator.git_host()
        )
    }
}
