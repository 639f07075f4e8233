//! The daemon's life: bind the network listeners (`[network]`, with their TLS certificate and
//! the answer key), bind (or adopt systemd's socket), start the token service, announce
//! readiness, reload on SIGHUP (the config, the TLS certificate, the answer key), and on
//! SIGTERM/SIGINT stop accepting, drain, clean up.

use crate::audit::AuditLog;
use crate::network::tls::ReloadableCertificate;
use crate::network::{Listener, NetworkServer};
use crate::server::Server;
use crate::service::TokenService;
use crate::settings::Settings;
use crate::socket::{self, BoundSocket};
use crate::state::State;
use crate::systemd::SystemdEnvironment;
use anyhow::{Context, anyhow};
use ghapp_broker::Config;
use ghapp_protocol::config::NetworkConfig;
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
    let budgets = if config.network.is_some() { 2 } else { 1 };
    cap_connections(&mut settings, descriptor_limit, budgets, true);
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    // Before the socket: a listener that cannot start leaves nothing behind.
    let network = match &config.network {
        Some(network) => {
            Some(NetworkSetup::bind(network, &config_path).context("cannot serve [network]")?)
        }
        None => None,
    };

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
    let runners = crate::runner_service::RunnerService::open(&config)?;
    let service = start_service(&config).context("cannot start the token broker")?;
    let apps = config.apps.len();
    let max_connections = settings.max_connections;
    let state = Arc::new(State::new(service, settings, audit, &socket_path).with_runners(runners));
    if let Some(runners) = state.runners.clone() {
        crate::runner_service::spawn_sync(state.clone(), |state| &state.service, runners);
    }
    let mut server = Server::start(listener, state.clone()).context("cannot serve the socket")?;
    let mut network_server = None;
    let mut certificate = None;
    if let Some(setup) = network {
        state.answers.set_file(setup.answer_key_file.clone());
        let signer = state
            .answers
            .signer()
            .context("cannot use the answer key ([network] answer_key_file)")?;
        tracing::info!(
            "signing Accept: application/jwt answers with {} (kid {})",
            setup.answer_key_file.display(),
            signer.kid()
        );
        announce_listening(&setup.listeners)?;
        for listener in &setup.listeners {
            tracing::info!(
                "listening on {} ({}; connections apart from the socket's, up to {max_connections})",
                listener.local_addr(),
                if listener.is_tls() {
                    "TLS"
                } else {
                    "plain HTTP, loopback only"
                }
            );
        }
        certificate = setup.certificate;
        let per_address = config
            .network
            .as_ref()
            .and_then(|network| network.max_connections_per_address)
            .unwrap_or_else(|| crate::idle::fair_share(max_connections));
        network_server = Some(NetworkServer::start(
            setup.listeners,
            state.clone(),
            max_connections,
            per_address,
        ));
    }
    let api_proxy = crate::proxy::start(&config, &config_path, state.clone())?;

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
                let reloaded = reload(&state, &config_path, &environment, socket_flag.as_deref(), &socket_path, descriptor_limit);
                if let (Some(config), Some(api_proxy)) = (&reloaded, &api_proxy) {
                    api_proxy.reload(config);
                }
                reload_network(&state, &config_path, certificate.as_deref());
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
    if let Some(network) = &mut network_server {
        network.stop_accepting().await;
    }
    drop(api_proxy);
    socket_file.remove();
    let network_drained = match network_server {
        Some(network) => network.drain(DRAIN_DEADLINE).await,
        None => true,
    };
    if !server.drain(DRAIN_DEADLINE).await || !network_drained {
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
fn cap_connections(settings: &mut Settings, descriptor_limit: u64, budgets: u64, at_start: bool) {
    let cap = crate::hardening::connection_cap_per_budget(
        settings.max_connections,
        descriptor_limit,
        budgets,
    );
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

/// What `[network]` needs before the daemon announces readiness: its bound listeners, the
/// certificate they present, and the answer key's file.
struct NetworkSetup {
    listeners: Vec<Listener>,
    certificate: Option<Arc<ReloadableCertificate>>,
    answer_key_file: std::path::PathBuf,
}

impl NetworkSetup {
    /// Loads the certificate and binds every `listen` address (validated by the config check:
    /// `ADDR:PORT`, plain HTTP only on loopback — and refused again by [`Listener::bind`]).
    fn bind(
        network: &NetworkConfig,
        config_path: &std::path::Path,
    ) -> anyhow::Result<NetworkSetup> {
        let certificate = match (&network.tls_cert_file, &network.tls_key_file) {
            (Some(cert), Some(key)) => Some(
                ReloadableCertificate::load(
                    &relative_to_config(cert, config_path),
                    &relative_to_config(key, config_path),
                )
                .map_err(|e| anyhow!("TLS certificate: {e}"))?,
            ),
            _ => None,
        };
        let acceptor = certificate
            .as_ref()
            .map(|c| c.acceptor())
            .transpose()
            .map_err(|e| anyhow!("TLS: {e}"))?;
        let mut listeners = Vec::with_capacity(network.listen.len());
        for address in &network.listen {
            let address: std::net::SocketAddr = address
                .parse()
                .map_err(|_| anyhow!("[network] listen: {address:?} is not ADDR:PORT"))?;
            listeners.push(Listener::bind(address, acceptor.clone())?);
        }
        let answer_key_file = network
            .answer_key_file
            .as_deref()
            .map(|file| relative_to_config(file, config_path))
            .unwrap_or_else(crate::signed::default_answer_key_file);
        Ok(NetworkSetup {
            listeners,
            certificate,
            answer_key_file,
        })
    }
}

/// A relative path in `[network]` names a file next to the config.
fn relative_to_config(path: &std::path::Path, config_path: &std::path::Path) -> std::path::PathBuf {
    match config_path.parent() {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// SIGHUP for `[network]`: the TLS certificate and the answer key are read again; new
/// connections get the new certificate, open ones keep theirs; a pair or key that does not load
/// leaves the one in force. Addresses change only with a restart.
fn reload_network<S: TokenService>(
    state: &State<S>,
    config_path: &std::path::Path,
    certificate: Option<&ReloadableCertificate>,
) {
    let Ok(config) = Config::load(config_path) else {
        return; // reload() has logged why
    };
    if let Some(certificate) = certificate {
        match config
            .network
            .as_ref()
            .and_then(|n| n.tls_cert_file.as_deref().zip(n.tls_key_file.as_deref()))
        {
            Some((cert, key)) => match certificate.reload(
                &relative_to_config(cert, config_path),
                &relative_to_config(key, config_path),
            ) {
                Ok(()) => tracing::info!("TLS certificate reloaded from {}", cert.display()),
                Err(e) => tracing::error!(
                    "TLS certificate reload failed, still presenting the previous one: {e}"
                ),
            },
            None => tracing::warn!(
                "[network] no longer names a TLS certificate; still serving TLS with the previous one until the daemon restarts"
            ),
        }
    } else if config.network.is_some_and(|n| n.tls_cert_file.is_some()) {
        tracing::warn!("TLS on [network] takes effect when the daemon restarts");
    }
    match state.answers.reload() {
        Some(Ok(true)) => tracing::info!(
            "answer key replaced: signing with kid {}; the previous key stays published until its last answer expires",
            state.answers.signer().map(|s| s.kid()).unwrap_or_default()
        ),
        Some(Ok(false)) | None => {}
        Some(Err(e)) => {
            tracing::error!("answer key reload failed, still signing with the previous key: {e}")
        }
    }
}

/// One `listening <ADDR:PORT> <tls|plain>` line on stdout per network address, before the
/// ready line (tests binding port 0 learn the port from it).
fn announce_listening(listeners: &[Listener]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for listener in listeners {
        writeln!(
            stdout,
            "listening {} {}",
            listener.local_addr(),
            if listener.is_tls() { "tls" } else { "plain" }
        )
        .map_err(|e| anyhow!("cannot write the listening line to stdout: {e}"))?;
    }
    stdout
        .flush()
        .map_err(|e| anyhow!("cannot write the listening line to stdout: {e}"))
}

/// The one line on stdout that tests, the demo and scripts wait for.
fn announce_ready(socket: &std::path::Path) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready {}", socket.display())
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow!("cannot write the ready line to stdout: {e}"))
}

/// SIGHUP: re-read the config; apply it only if it validates and the service accepts it. The
/// config applied, for the parts started beside the service (the API proxy).
fn reload<S: TokenService>(
    state: &State<S>,
    config_path: &std::path::Path,
    environment: &Environment,
    socket_flag: Option<&std::path::Path>,
    socket_path: &std::path::Path,
    descriptor_limit: u64,
) -> Option<Config> {
    tracing::info!("SIGHUP: reloading {}", config_path.display());
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("reload failed, keeping the previous configuration: {e}");
            return None;
        }
    };
    let own_uid = rustix::process::geteuid().as_raw();
    let mut settings = match Settings::from_config(&config, config_path, own_uid) {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!("reload failed, keeping the previous configuration: {e}");
            return None;
        }
    };
    if let Err(e) = state.service.reload(&config) {
        tracing::error!("reload failed, keeping the previous configuration: {e}");
        return None;
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
    let budgets = if config.network.is_some() { 2 } else { 1 };
    cap_connections(&mut settings, descriptor_limit, budgets, false);
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
    Some(config)
}
