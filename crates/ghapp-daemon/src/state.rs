//! Everything a request handler needs, shared by all connections: the token service, the
//! settings in force (swapped whole on reload), metrics, the audit log.

use crate::audit::AuditLog;
use crate::metrics::DaemonMetrics;
use crate::mint_limit::MintLimiter;
use crate::runner_service::RunnerService;
use crate::service::TokenService;
use crate::settings::Settings;
use crate::signed::AnswerKeys;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Shared daemon state.
pub struct State<S> {
    /// The broker (or a fake in tests).
    pub service: S,
    /// Daemon-side counters.
    pub metrics: DaemonMetrics,
    /// The audit log.
    pub audit: AuditLog,
    /// Per-identity mint buckets (kept across reloads).
    pub mint_limits: MintLimiter,
    /// The runner service, when `[runners]` is configured.
    pub runners: Option<Arc<RunnerService>>,
    /// The key that signs `Accept: application/jwt` answers, and the keys published for them.
    pub answers: AnswerKeys,
    settings: RwLock<Arc<Settings>>,
    socket: PathBuf,
    started: Instant,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl<S: TokenService> State<S> {
    /// State for a daemon listening on `socket`. The connection limit is fixed here (a reload
    /// cannot change it).
    pub fn new(service: S, settings: Settings, audit: AuditLog, socket: &Path) -> State<S> {
        let max_connections = settings.max_connections;
        State {
            service,
            metrics: DaemonMetrics::default(),
            audit,
            mint_limits: MintLimiter::default(),
            runners: None,
            answers: AnswerKeys::new(crate::signed::default_answer_key_file()),
            settings: RwLock::new(Arc::new(settings)),
            socket: socket.to_path_buf(),
            started: Instant::now(),
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        }
    }

    /// The same state with the runner service.
    pub fn with_runners(mut self, runners: Option<RunnerService>) -> State<S> {
        self.runners = runners.map(Arc::new);
        self
    }

    /// The settings in force (a cheap snapshot; never held across I/O).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts reloaded settings in force.
    pub fn replace_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    /// The socket path served.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Time since start.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// One permit per connection being served.
    pub fn connection_slots(&self) -> &Arc<Semaphore> {
        &self.connections
    }

    /// The connection limit.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.max_connections
            .saturating_sub(self.connections.available_permits())
    }
}
