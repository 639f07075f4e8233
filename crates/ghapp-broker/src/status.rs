//! What the broker holds and how it stands with GitHub, for `/v1/status`: the Apps, the
//! installations known, the cached tokens (as fingerprints only) and whether GitHub is failing.

use crate::app::Runtime;
use crate::cache::CachedToken;
use crate::resolve::KnownInstallation;
use ghapp_protocol::api::{
    AppStatus, CachedTokenStatus, InstallationStatus, SharedCacheStatus, UpstreamStatus,
};
use ghapp_protocol::secret::fingerprint;
use std::sync::Arc;
use tokio::time::Instant;

/// What the broker holds, for `/v1/status` (fingerprints only).
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus {
    /// GitHub failing, cached tokens being served on their margin.
    pub degraded: bool,
    /// Why.
    pub degraded_reason: Option<String>,
    /// Configured Apps.
    pub apps: Vec<AppStatus>,
    /// Installations known.
    pub installations: Vec<InstallationStatus>,
    /// Tokens cached.
    pub tokens: Vec<CachedTokenStatus>,
    /// The cache shared with other replicas, when `[cache]` configures one.
    pub shared_cache: Option<SharedCacheStatus>,
    /// The upstream broker, when `[upstream]` configures one.
    pub upstream: Option<UpstreamStatus>,
}

/// The status of `runtime`'s Apps, with `installations` from the resolver and `tokens` from
/// the token cache.
pub(crate) fn status(
    runtime: &Runtime,
    installations: Vec<KnownInstallation>,
    tokens: Vec<Arc<CachedToken>>,
) -> BrokerStatus {
    let now = Instant::now();
    let apps = runtime
        .apps
        .iter()
        .map(|app| AppStatus {
            name: app.name().to_string(),
            host: app.config.host.clone(),
            api_url: app.api_base.clone(),
            app_id: app.config.app_id,
            client_id: app.config.client_id.clone(),
            key_fingerprint: app.key_fingerprint.clone(),
            rate_limit_remaining: app.client.rate_limit_remaining(),
            jwt_issuer: Some(app.client.jwt_issuer().to_string()),
        })
        .collect();
    let reasons: Vec<String> = runtime
        .apps
        .iter()
        .filter_map(|app| app.health.describe())
        .collect();
    let installations = installations
        .into_iter()
        .map(|known| InstallationStatus {
            app: known.app,
            host: known.host,
            owner: known.account,
            installation_id: known.id,
            enterprise: known.enterprise,
        })
        .collect();
    let mut tokens: Vec<CachedTokenStatus> = tokens
        .into_iter()
        .filter(|t| t.expires > now)
        .map(|t| CachedTokenStatus {
            fingerprint: fingerprint(t.token.expose()),
            app: t.key.app_name.to_string(),
            host: t.key.host.to_string(),
            owner: t.key.account.to_string(),
            installation_id: t.installation_id(),
            repositories: t.repositories(),
            permissions: t.permissions.clone(),
            expires_at: t.expires_at(),
            remaining_secs: t.remaining(now).as_secs(),
        })
        .collect();
    tokens.sort_by(|a, b| {
        (&a.owner, &a.repositories, a.remaining_secs).cmp(&(
            &b.owner,
            &b.repositories,
            b.remaining_secs,
        ))
    });
    BrokerStatus {
        degraded: !reasons.is_empty(),
        degraded_reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        apps,
        installations,
        tokens,
        shared_cache: None,
        upstream: None,
    }
}
