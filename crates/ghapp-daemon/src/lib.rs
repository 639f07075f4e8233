//! The ghapp daemon: serves the broker's installation tokens over a Unix socket (HTTP/1.1 +
//! JSON, docs/socket-api.md), checking every peer's uid/gid (SO_PEERCRED).
//!
//! - [`socket`]: where the socket lives and how it is created, replaced and removed.
//! - [`systemd`]: socket activation and readiness notification.
//! - [`server`]: the accept loop, connections and their limits; [`idle`]: which connections may
//!   be closed to make room when every slot is taken.
//! - [`routes`]: the API, with [`reply`] for answers; [`runner_routes`]: the runner service's
//!   routes, [`runner_service`]: its database, GitHub calls and background sync.
//! - [`identity`]: who is calling (Unix peer or network address, and a verified credential);
//!   [`access`]: allow-lists and per-peer policies; [`settings`]: the validated `[daemon]` table.
//! - [`service`]: the broker behind a trait, so tests can fake it.
//! - [`metrics`]: `/metrics` (via `prometheus-client`); [`audit`]: the JSON-lines audit log.
//! - [`proxy`]: the API proxy's listener (`[proxy]`), with the broker as its token source.
//! - [`lifecycle`]: start, reload on SIGHUP, drain on SIGTERM/SIGINT; [`hardening`]: no core
//!   dumps, the open-files limit and the connection cap that fits it.
//!
//! - [`network`]: the TCP listener (TLS unless loopback, [`network::tls`]), reusable by other
//!   servers; [`signed`]: `Accept: application/jwt` answers and the JWKS that verifies them.
//!
//! Contract with the tests, the demo and scripts: once the socket accepts connections the daemon
//! prints exactly one line, `ready <socket path>`, on stdout (and sends `READY=1` to systemd when
//! `NOTIFY_SOCKET` is set); with `[network]`, it first prints one line per bound address,
//! `listening <ADDR:PORT> <tls|plain>` (the port the kernel chose for port 0), and logs them on
//! stderr too; everything else goes to stderr.

pub mod access;
pub mod audit;
pub mod hardening;
pub mod identity;
pub mod idle;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod mint_limit;
pub mod network;
pub mod proxy;
pub mod reply;
pub mod routes;
pub mod runner_routes;
pub mod runner_service;
pub mod server;
pub mod service;
pub mod settings;
pub mod signed;
pub mod socket;
pub mod state;
pub mod systemd;

use anyhow::anyhow;
use ghapp_broker::{Broker, Config};
use ghapp_protocol::paths::Environment;
use std::path::PathBuf;
use std::time::Duration;

/// How `ghapp daemon` was invoked.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--foreground` (the daemon never forks itself; this keeps logs on stderr and is what
    /// systemd and tests use).
    pub foreground: bool,
    /// `--log-format json` instead of human-readable logs.
    pub json_logs: bool,
}

/// Runs the daemon until SIGTERM/SIGINT; `Ok` after a clean shutdown (socket removed).
///
/// Must be called before the process starts other threads: it reads and unsets systemd's
/// environment variables (`LISTEN_FDS`, `NOTIFY_SOCKET`, …) so children never inherit them.
pub fn run(options: DaemonOptions) -> anyhow::Result<()> {
    logging::init(options.json_logs);
    // Before any secret is read: no core dumps, no same-uid ptrace/gcore of the daemon.
    hardening::forbid_core_dumps()
        .map_err(|e| anyhow!("cannot protect the daemon's memory: {e}"))?;
    let descriptor_limit = hardening::raise_descriptor_limit();
    let systemd = systemd::take_environment()?;
    let environment = Environment::current();
    let config_path = environment
        .config_file(options.config.as_deref(), |p| p.is_file())
        .path;
    if !config_path.exists() {
        return Err(anyhow!(
            "config file {} does not exist: create it (see docs/configuration.md) or name another with --config or $GHAPP_CONFIG",
            config_path.display()
        ));
    }
    let config = Config::load(&config_path).map_err(|e| anyhow!("{e}"))?;
    let own_uid = rustix::process::geteuid().as_raw();
    let settings = settings::Settings::from_config(&config, &config_path, own_uid)
        .map_err(|e| anyhow!("{e}"))?;
    let launch = lifecycle::Launch {
        socket_flag: options.socket,
        environment,
        config_path,
        config,
        settings,
        systemd,
        descriptor_limit,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ghapp-daemon")
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(lifecycle::serve(launch, |config| {
        Broker::start(config).map_err(|e| anyhow!("{e}"))
    }));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
