//! A strict emulator of GitHub's App API and git smart HTTP (see docs/emulator.md).
//!
//! STUB: the emulator issue implements this. The public surface below is the contract tests,
//! the demo and the benchmarks build on.

use std::net::SocketAddr;
use std::path::Path;

/// The URLs a started emulator serves, printed by the binary as one JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Urls {
    /// REST API base, github.com style (`http://127.0.0.1:PORT`); GHES style is `{api_url}/api/v3`.
    pub api_url: String,
    /// Git smart-HTTP base: `{git_url}/{owner}/{repo}.git`.
    pub git_url: String,
    /// Admin API base (`/_emulator/...`).
    pub admin_url: String,
}

/// A running emulator; stops when [`Emulator::shutdown`] is called or it is dropped.
pub struct Emulator {
    /// Where it serves.
    pub urls: Urls,
}

impl Emulator {
    /// Starts from a fixture file, writing keys and bare repos under `state_dir`.
    pub async fn start(_fixture: &Path, _state_dir: &Path, _listen: SocketAddr) -> anyhow::Result<Emulator> {
        anyhow::bail!("emulator not implemented yet")
    }

    /// Stops serving.
    pub async fn shutdown(self) {}
}
