//! The ghapp daemon. STUB: the daemon issue implements this.

use std::path::PathBuf;

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

/// Runs the daemon until SIGTERM/SIGINT.
pub fn run(_options: DaemonOptions) -> anyhow::Result<()> {
    anyhow::bail!("daemon not implemented yet")
}
