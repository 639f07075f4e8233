//! A configured App at run time — its key, its API client, its health — and the set of Apps
//! plus `[daemon]` settings in force, swapped whole on reload.
//!
//! An App's *identity* is a fingerprint of its host, API URL, ids and its first signer's
//! public key (or, for a signer that does not show it, the signer's configuration). Cached tokens
//! and installation mappings are keyed by it, so a reload that keeps an App's identity keeps
//! its tokens, and one that changes its key drops them.

use crate::config::{AppConfig, Config, DaemonConfig};
use crate::error::BrokerError;
use crate::github::GitHubClient;
use crate::jwt::JwtSigner;
use crate::retry::RetryPolicy;
use crate::signer::signers_for;
use crate::transport::{HttpTransport, ReqwestTransport};
use ghapp_protocol::secret::fingerprint;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What is wrong with an App's access to GitHub right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// GitHub failing or rate limiting, or the App's signer failing: cached tokens are served
    /// on their margin.
    Unreachable,
    /// GitHub rejects the App's JWT.
    BadKey,
}

#[derive(Debug, Clone)]
struct Problem {
    trouble: Trouble,
    reason: String,
    since: SystemTime,
}

/// An App's last known state with GitHub: healthy, or failing since when and why.
#[derive(Default)]
pub(crate) struct Health(Mutex<Option<Problem>>);

impl Health {
    /// A call to GitHub worked.
    pub(crate) fn ok(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(problem) = state.take() {
            tracing::info!(previous = %problem.reason, "GitHub reachable again");
        }
    }

    /// A call failed with `trouble`.
    pub(crate) fn fail(&self, trouble: Trouble, reason: String) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let since = match state.as_ref() {
            Some(p) if p.trouble == trouble => p.since,
            _ => SystemTime::now(),
        };
        *state = Some(Problem {
            trouble,
            reason,
            since,
        });
    }

    /// The current trouble, if any.
    pub(crate) fn trouble(&self) -> Option<Trouble> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p.trouble.clone())
    }

    /// "since 2026-…Z: why", if failing.
    pub(crate) fn describe(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| {
                format!(
                    "{} (since {})",
                    p.reason,
                    ghapp_protocol::time::Timestamp::from(p.since)
                )
            })
    }
}

/// An App's strings that every token plan names, allocated once per App and shared by the
/// plans (the daemon may cache tens of thousands).
#[derive(Debug, Clone)]
pub(crate) struct SharedNames {
    /// Its host.
    pub host: Arc<str>,
    /// Its identity.
    pub identity: Arc<str>,
    /// Its configured name.
    pub name: Arc<str>,
    /// `acme-bot (id 12345)`.
    pub label: Arc<str>,
}

/// One configured App, ready to talk to GitHub.
pub(crate) struct AppRuntime {
    /// Its config entry (host lower-cased by validation).
    pub config: AppConfig,
    /// Fingerprint of host, API URL, ids and public key.
    pub identity: String,
    /// Fingerprint of the first signer's public key (see [`crate::signer::Signer::fingerprint`]).
    pub key_fingerprint: String,
    /// The REST base URL.
    pub api_base: String,
    /// Its API client.
    pub client: GitHubClient,
    /// Its standing with GitHub.
    pub health: Health,
    /// Its names for token plans.
    pub names: SharedNames,
}

impl AppRuntime {
    /// Loads the key and builds the client for one `[[app]]`.
    pub(crate) fn build(
        config: &AppConfig,
        daemon: &DaemonConfig,
        transport: Option<&Arc<dyn HttpTransport>>,
    ) -> Result<AppRuntime, BrokerError> {
        let mut signers = signers_for(config)?.into_iter();
        let first = signers
            .next()
            .ok_or_else(|| BrokerError::internal("an App needs a signer"))?;
        let api_base = config.api_base();
        let transport: Arc<dyn HttpTransport> = match transport {
            Some(t) => t.clone(),
            None => Arc::new(ReqwestTransport::new(daemon, config)?),
        };
        let mut signer = JwtSigner::new(first.clone(), config.app_id, config.client_id.as_deref())?;
        for next in signers {
            tracing::info!(app = %config.name, signer = %next.describe(), "next key configured: it signs once GitHub rejects the first");
            signer = signer.with_next(next);
        }
        let client = GitHubClient::new(
            api_base.clone(),
            signer,
            transport,
            RetryPolicy::from_config(daemon),
            config.token_format,
        );
        let key_fingerprint = first.fingerprint();
        let identity = fingerprint(&format!(
            "{}|{}|{:?}|{:?}|{}",
            config.host, api_base, config.app_id, config.client_id, key_fingerprint
        ));
        tracing::info!(app = %config.name, host = %config.host, api = %api_base, key = %key_fingerprint, signer = %first.describe(), "GitHub App loaded");
        let names = SharedNames {
            host: config.host.as_str().into(),
            identity: identity.as_str().into(),
            name: config.name.as_str().into(),
            label: config.describe().into(),
        };
        Ok(AppRuntime {
            names,
            config: config.clone(),
            identity,
            key_fingerprint,
            api_base,
            client,
            health: Health::default(),
        })
    }

    /// The configured name.
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// `acme-bot (id 12345)`.
    pub(crate) fn describe(&self) -> String {
        self.config.describe()
    }
}

/// The `[daemon]` values the broker uses.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub min_ttl: Duration,
    pub degraded_min_ttl: Duration,
    pub refresh_ahead: Duration,
    pub refresh_window: Duration,
    pub negative_cache_ttl: Duration,
    pub installation_cache_ttl: Duration,
}

impl Settings {
    fn from_config(daemon: &DaemonConfig) -> Self {
        Settings {
            min_ttl: daemon.min_ttl,
            degraded_min_ttl: daemon.degraded_min_ttl,
            refresh_ahead: daemon.refresh_ahead,
            refresh_window: daemon.refresh_window,
            negative_cache_ttl: daemon.negative_cache_ttl,
            installation_cache_ttl: daemon.installation_cache_ttl,
        }
    }
}

/// Everything a config defines at run time.
pub(crate) struct Runtime {
    /// The Apps, in file order.
    pub apps: Vec<Arc<AppRuntime>>,
    /// The `[daemon]` values.
    pub settings: Settings,
}

impl Runtime {
    /// Builds every App of `config`; fails on the first App that cannot be loaded.
    pub(crate) fn build(
        config: &Config,
        transport: Option<&Arc<dyn HttpTransport>>,
    ) -> Result<Runtime, BrokerError> {
        let mut apps = Vec::with_capacity(config.apps.len());
        for app in &config.apps {
            apps.push(Arc::new(AppRuntime::build(app, &config.daemon, transport)?));
        }
        Ok(Runtime {
            apps,
            settings: Settings::from_config(&config.daemon),
        })
    }

    /// The App with this identity.
    pub(crate) fn app(&self, identity: &str) -> Option<&Arc<AppRuntime>> {
        self.apps.iter().find(|a| a.identity == identity)
    }
}
