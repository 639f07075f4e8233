//! A strict emulator of GitHub's App API and git smart HTTP (see docs/emulator.md).
//!
//! GitHub cannot be reached from ghapp's machines, so every test, the demo and the benchmarks
//! run against this: App JWTs verified with GitHub's rules and exact messages, installation
//! lookups, token minting with narrowing and both token formats, git over smart HTTP through
//! `git http-backend`, and an admin API for counters and fault injection.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let state = tempfile::tempdir()?;
//! let emulator = github_emulator::Emulator::start_str(
//!     "[[apps]]\nid = 1\nslug = \"demo\"\nprivate_key_out = \"app1.pem\"",
//!     state.path(),
//! )
//! .await?;
//! println!("{}", emulator.urls.api_url);
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
// GitHub's repository object is large: `serde_json::json!` needs the deeper macro recursion.
#![recursion_limit = "256"]

pub mod admin;
mod admin_api;
pub mod admin_resources;
mod api;
pub mod clock;
mod conditional;
mod core;
mod faults;
pub mod fixture;
mod git;
mod http;
mod id_token;
mod issuer;
pub mod jwt;
mod keys;
mod model;
pub mod oidc;
mod oidc_http;
mod repos;
mod router;
pub mod runners;
pub mod schema;
mod server;
mod tls;
mod tokens;

use crate::core::{Bases, Core};
use anyhow::Context;
use fixture::Fixture;
use server::Surface;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The URLs a started emulator serves, printed by the binary as one JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Urls {
    /// REST API base, github.com style (`http://127.0.0.1:PORT`); GHES style is `{api_url}/api/v3`.
    pub api_url: String,
    /// Git smart-HTTP base: `{git_url}/{owner}/{repo}.git`.
    pub git_url: String,
    /// Admin API base (`/_emulator/...`).
    pub admin_url: String,
    /// With `--tls`: the CA certificate (PEM) clients must trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The default OIDC issuer (`iss` of its ID tokens): `api_url` exactly, discovery at
    /// `{oidc_issuer}/.well-known/openid-configuration` (see [`oidc`]).
    #[serde(default)]
    pub oidc_issuer: String,
}

/// How to serve (beyond the fixture and state dir).
#[derive(Debug, Clone)]
pub struct Options {
    /// API (and admin) listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Git listen address; default: the API's IP with a free port.
    pub git_listen: Option<SocketAddr>,
    /// Serve https with a generated CA.
    pub tls: bool,
    /// Extra names the TLS certificate covers (beyond localhost and 127.0.0.1).
    pub tls_hostnames: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            git_listen: None,
            tls: false,
            tls_hostnames: Vec::new(),
        }
    }
}

/// A running emulator; stops when [`Emulator::shutdown`] is called or it is dropped.
pub struct Emulator {
    /// Where it serves.
    pub urls: Urls,
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    background: JoinHandle<()>,
}

impl Emulator {
    /// Starts from a fixture file, writing keys and bare repos under `state_dir`.
    pub async fn start(
        fixture: &Path,
        state_dir: &Path,
        listen: SocketAddr,
    ) -> anyhow::Result<Emulator> {
        let text = tokio::fs::read_to_string(fixture)
            .await
            .with_context(|| format!("reading fixture {}", fixture.display()))?;
        let fixture_dir = fixture.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::start_with(
            &text,
            &fixture_dir,
            state_dir,
            Options {
                listen,
                ..Options::default()
            },
        )
        .await
    }

    /// Starts from fixture text on 127.0.0.1 with free ports (relative `public_key_file`s are
    /// resolved against `state_dir`).
    pub async fn start_str(fixture: &str, state_dir: &Path) -> anyhow::Result<Emulator> {
        Self::start_with(fixture, state_dir, state_dir, Options::default()).await
    }

    /// Starts from fixture text with explicit options; `fixture_dir` resolves relative
    /// `public_key_file`s.
    pub async fn start_with(
        fixture_text: &str,
        fixture_dir: &Path,
        state_dir: &Path,
        options: Options,
    ) -> anyhow::Result<Emulator> {
        let began = std::time::Instant::now();
        let fixture = Fixture::parse(fixture_text)?;
        tokio::fs::create_dir_all(state_dir)
            .await
            .with_context(|| format!("creating state dir {}", state_dir.display()))?;
        let state_dir = state_dir
            .canonicalize()
            .with_context(|| format!("resolving state dir {}", state_dir.display()))?;

        // Keys (CPU) and repositories (git processes) are made concurrently.
        let mut key_tasks = Vec::new();
        for app in &fixture.apps {
            let (id, out, public) = (
                app.id,
                app.private_key_out.clone(),
                app.public_key_file.clone(),
            );
            let state_dir = state_dir.clone();
            let fixture_dir = fixture_dir.to_path_buf();
            key_tasks.push(tokio::task::spawn_blocking(
                move || -> anyhow::Result<(u64, Vec<u8>)> {
                    let der = match (out, public) {
                        (Some(out), _) => keys::ensure_private_key(&state_dir.join(out))
                            .with_context(|| format!("app {id}: private key"))?,
                        (None, Some(public)) => keys::load_public_key(&fixture_dir.join(public))
                            .with_context(|| format!("app {id}: public key"))?,
                        (None, None) => anyhow::bail!("app {id}: no key"),
                    };
                    Ok((id, der))
                },
            ));
        }
        let repos_root = state_dir.join("repos");
        let maker_task = {
            let (root, home) = (repos_root.clone(), state_dir.clone());
            let specs = repositories_to_create(&fixture);
            tokio::spawn(async move { repos::RepoMaker::new(&root, specs, &home).await })
        };
        let mut public_keys = BTreeMap::new();
        for task in key_tasks {
            let (id, der) = task.await.context("key generation task")??;
            public_keys.insert(id, der);
        }
        tracing::debug!("keys ready after {:?}", began.elapsed());
        let maker = Arc::new(maker_task.await.context("repository template task")??);
        let missing = maker.missing();
        let (now, later) = missing.split_at(missing.len().min(repos::EAGER_REPOSITORIES));
        for spec in now {
            maker.ensure(spec).await?;
        }
        let later = later.to_vec();
        tracing::debug!(
            "repositories ready after {:?} ({} left for later)",
            began.elapsed(),
            later.len()
        );

        let core = Core::new(&fixture, &state_dir, public_keys, maker.clone())?;
        tracing::debug!("model built after {:?}", began.elapsed());
        let api_listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("binding the API listener on {}", options.listen))?;
        let git_addr = options
            .git_listen
            .unwrap_or_else(|| SocketAddr::new(options.listen.ip(), 0));
        let git_listener = TcpListener::bind(git_addr)
            .await
            .with_context(|| format!("binding the git listener on {git_addr}"))?;
        let (tls, ca_file) = if options.tls {
            let (acceptor, path) = tls::setup(&state_dir, &options.tls_hostnames)?;
            (Some(acceptor), Some(path.display().to_string()))
        } else {
            (None, None)
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let admin_listener = match tls {
            Some(_) => Some(
                TcpListener::bind(SocketAddr::new(options.listen.ip(), 0))
                    .await
                    .context("binding the admin listener")?,
            ),
            None => None,
        };
        let api_url = format!("{scheme}://{}", api_listener.local_addr()?);
        let git_url = format!("{scheme}://{}", git_listener.local_addr()?);
        let _ = core.bases.set(Bases {
            api: api_url.clone(),
            git: git_url.clone(),
            scheme,
        });
        let core = Arc::new(core);

        let (stop, stopped) = watch::channel(false);
        let admin_stopped = stopped.clone();
        let background = tokio::spawn(async move {
            for spec in later {
                if let Err(e) = maker.ensure(&spec).await {
                    tracing::warn!("creating {}/{}: {e:#}", spec.owner, spec.name);
                }
            }
        });
        let mut tasks = vec![
            tokio::spawn(server::serve(
                api_listener,
                tls.clone(),
                core.clone(),
                Surface::Api,
                stopped.clone(),
            )),
            tokio::spawn(server::serve(
                git_listener,
                tls,
                core.clone(),
                Surface::Git,
                stopped,
            )),
        ];
        // Over TLS the admin API also gets a plain-http port, so test tooling can reach it
        // without trusting the CA.
        let admin_url = match admin_listener {
            Some(listener) => {
                let url = format!("http://{}", listener.local_addr()?);
                tasks.push(tokio::spawn(server::serve(
                    listener,
                    None,
                    core.clone(),
                    Surface::Admin,
                    admin_stopped,
                )));
                url
            }
            None => api_url.clone(),
        };
        Ok(Emulator {
            urls: Urls {
                admin_url,
                oidc_issuer: api_url.clone(),
                api_url,
                git_url,
                ca_file,
            },
            core,
            stop,
            tasks,
            background,
        })
    }

    /// The state directory (canonical).
    pub fn state_dir(&self) -> &Path {
        &self.core.state_dir
    }

    /// The bare repository of `owner/repo` on disk.
    pub fn repo_path(&self, owner: &str, repo: &str) -> PathBuf {
        repos::repo_path(&self.core.repos_root, owner, repo)
    }

    /// The counters (same as `GET /_emulator/stats`).
    pub fn stats(&self) -> admin::Stats {
        self.core.lock().stats.clone()
    }

    /// Applies a fault (same as `POST /_emulator/faults`).
    pub fn fault(&self, fault: admin::Fault) -> anyhow::Result<()> {
        admin_api::apply(&self.core, fault)
            .map_err(|(status, message)| anyhow::anyhow!("{status}: {message}"))
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.background.abort();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.background.abort();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Every repository the fixture implies, with its default branch.
fn repositories_to_create(fixture: &Fixture) -> Vec<repos::RepoSpec> {
    // Owners are spelled as the model spells accounts: the first spelling seen, installations
    // first (the same order `Core::new` uses), so the path on disk is the one git is served from.
    let mut spellings: BTreeMap<String, String> = BTreeMap::new();
    for inst in &fixture.installations {
        spellings
            .entry(inst.account.to_ascii_lowercase())
            .or_insert_with(|| inst.account.clone());
    }
    for repo in &fixture.repositories {
        if let Some((owner, _)) = repo.full_name.split_once('/') {
            spellings
                .entry(owner.to_ascii_lowercase())
                .or_insert_with(|| owner.to_string());
        }
    }
    let mut out: Vec<repos::RepoSpec> = Vec::new();
    let mut push = |owner: &str, name: &str, branch: Option<&str>| {
        let owner = spellings
            .get(&owner.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or(owner);
        let seen = out
            .iter()
            .any(|s| s.owner.eq_ignore_ascii_case(owner) && s.name.eq_ignore_ascii_case(name));
        if !seen {
            out.push(repos::RepoSpec {
                owner: owner.to_string(),
                name: name.to_string(),
                branch: branch.unwrap_or("main").to_string(),
            });
        }
    };
    for repo in &fixture.repositories {
        if let Some((owner, name)) = repo.full_name.split_once('/') {
            push(owner, name, repo.default_branch.as_deref());
        }
    }
    for inst in &fixture.installations {
        for name in inst.repositories.iter().flatten() {
            push(&inst.account, name, None);
        }
    }
    out
}
