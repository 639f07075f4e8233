//! The daemon's life: bind (or adopt systemd's socket), start the token service, announce
//! readiness, reload on SIGHUP, and on SIGTERM/SIGINT stop accepting, drain, clean up.

use crate::audit::AuditLog;
use crate::server::Server;
use crate::service::TokenService;
use crate::settings::Settings;
use crate::socket::{self, BoundSocket};
use crate::state::State;
use crate::systemd::SystemdEnvironment;
use anyhow::{Context, anyhow};
use ghapp_broker::Config;
use ghapp_protocol::paths::Environment;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long requests in flight may take to finish after SIGTERM before the daemon exits anyway.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Everything decided before the runtime starts.
pub struct Launch {
    /// `--socket`.
    pub socket_flag: Option<PathBuf>,
    /// The process environment (socket resolution).
    pub environment: Environment,
    /// The config file (re-read on SIGHUP).
    pub config_path: PathBuf,
    /// The config as loaded.
    pub config: Config,
    /// The daemon settings derived from it.
    pub settings: Settings,
    /// What systemd handed over.
    pub systemd: SystemdEnvironment,
    /// The open-files limit in force ([`crate::hardening::raise_descriptor_limit`]);
    /// `max_connections` is capped to fit it.
    pub descriptor_limit: u64,
}

/// Runs the daemon until SIGTERM/SIGINT. `start_service` builds the token service from the
/// config once the socket is secured (the broker in production, a fake in tests).
pub async fn serve<S, F>(launch: Launch, start_service: F) -> anyhow::Result<()>
where
    S: TokenService,
    F: FnOnce(&Config) -> anyhow::Result<S>,
{
    let Launch {
        socket_flag,
        environment,
        config_path,
        config,
        mut settings,
        systemd,
        descriptor_limit,
    } = launch;
    cap_connections(&mut settings, descriptor_limit, true);
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let bound = match systemd.listener {
        Some(listener) => {
            let bound = BoundSocket::activated(listener)?;
            tracing::info!(
                "using the socket systemd passed: {}",
                bound.file.path.display()
            );
            bound
        }
        None => {
            let resolved = environment
                .daemon_socket(socket_flag.as_deref(), settings.config_socket.as_deref());
            tracing::debug!(
                "socket {} (from the {})",
                resolved.path.display(),
                resolved.source
            );
            socket::bind(&resolved.path, settings.socket_gid)?
        }
    };
    let BoundSocket {
        listener,
        file: mut socket_file,
    } = bound;
    let socket_path = socket_file.path.clone();

    let audit = AuditLog::open(settings.audit_log.as_deref())?;
    let service = start_service(&config).context("cannot start the token broker")?;
    let apps = config.apps.len();
    let state = Arc::new(State::new(service, settings, audit, &socket_path));
    let mut server = Server::start(listener, state.clone()).context("cannot serve the socket")?;
    let api_proxy = crate::proxy::start(&config, state.clone()).await?;

    announce_ready(&socket_path)?;
    systemd.notifier.notify(&format!(
        "READY=1\nSTATUS=serving on {}\nMAINPID={}",
        socket_path.display(),
        std::process::id()
    ));
    tracing::info!(
        "ghapp daemon {} serving on {} ({apps} App{}, config {})",
        ghapp_protocol::VERSION,
        socket_path.display(),
        if apps == 1 { "" } else { "s" },
        config_path.display()
    );

    let reason = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                reload(&state, &config_path, &environment, socket_flag.as_deref(), &socket_path, descriptor_limit);
                systemd.notifier.notify(&format!("STATUS=serving on {} (reloaded)", socket_path.display()));
            }
        }
    };

    systemd.notifier.notify("STOPPING=1");
    tracing::info!(
        "{reason}: no longer accepting; draining {} connection(s)",
        state.active_connections()
    );
    server.stop_accepting().await;
    drop(api_proxy);
    socket_file.remove();
    if !server.drain(DRAIN_DEADLINE).await {
        tracing::warn!(
            "connections still open after {}s; exiting anyway",
            DRAIN_DEADLINE.as_secs()
        );
    }
    state.service.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// Caps `max_connections` so that it, as many waiting connections and a reserve fit in the
/// open-files limit; says so at start when it had to.
fn cap_connections(settings: &mut Settings, descriptor_limit: u64, at_start: bool) {
    let cap = crate::hardening::connection_cap(settings.max_connections, descriptor_limit);
    if cap < settings.max_connections && at_start {
        tracing::warn!(
            "max_connections {} capped to {cap}: the open-files limit is {descriptor_limit} (raise LimitNOFILE= / ulimit -Hn to serve more)",
            settings.max_connections
        );
    } else if at_start {
        tracing::info!(
            "serving up to {} connections (open-files limit {descriptor_limit})",
            settings.max_connections
        );
    }
    settings.max_connections = cap;
}

/// The one line on stdout that tests, the demo and scripts wait for.
fn announce_ready(socket: &std::path::Path) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready {}", socket.display())
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow!("cannot write the ready line to stdout: {e}"))
}

/// SIGHUP: re-read the config; apply it only if it validates and the service accepts it.
fn reload<S: TokenService>(
    state: &State<S>,
    config_path: &std::path::Path,
    environment: &Environment,
    socket_flag: Option<&std::path::Path>,
    socket_path: &std::path::Path,
    descriptor_limit: u64,
) {
    tracing::info!("SIGHUP: reloading {}", config_path.display());
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("reload failed, keeping the previous configuration: {e}");
            return;
        }
    };
    let own_uid = rustix::process::geteuid().as_raw();
    let mut settings = match Settings::from_config(&config, config_path, own_uid) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!("reload failed, keeping the previous configuration: {e}");
            return;
        }
    };
    if let Err(e) = state.service.reload(&config) {
        tracing::error!("reload failed, keeping the previous configuration: {e}");
        return;
    }
    let wanted = environment
        .daemon_socket(socket_flag, settings.config_socket.as_deref())
        .path;
    if wanted != socket_path && settings.config_socket.is_some() {
        tracing::warn!(
            "the socket changed to {} in the config; still serving {} until the daemon restarts",
            wanted.display(),
            socket_path.display()
        );
    }
    cap_connections(&mut settings, descriptor_limit, false);
    if settings.max_connections != state.max_connections() {
        tracing::warn!("max_connections changes take effect when the daemon restarts");
    }
    let previous = state.settings();
    if previous.socket_gid != settings.socket_gid {
        tracing::warn!("socket_group changes take effect when the daemon restarts");
    }
    if let Err(e) = state.audit.reopen(settings.audit_log.as_deref()) {
        tracing::error!("{e}; still writing the audit log to the previous destination");
    }
    let apps = config.apps.len();
    state.replace_settings(settings);
    tracing::info!(
        "configuration reloaded: {apps} App(s); cached tokens that remain valid were kept"
    );
}
