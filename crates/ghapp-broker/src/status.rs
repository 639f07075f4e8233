//! What the broker holds and how it stands with GitHub, for `/v1/status` and `/metrics`.
//! Tokens appear as fingerprints only.

use crate::broker::Inner;
use crate::{BrokerMetrics, BrokerStatus};
use ghapp_protocol::api::{AppStatus, CachedTokenStatus, InstallationStatus};
use ghapp_protocol::secret::fingerprint;
use std::collections::BTreeMap;
use tokio::time::Instant;

impl Inner {
    /// Apps, installations, cached tokens, and whether GitHub is failing.
    pub(crate) fn status(&self) -> BrokerStatus {
        let runtime = self.runtime();
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
            })
            .collect();
        let reasons: Vec<String> = runtime
            .apps
            .iter()
            .filter_map(|app| app.health.describe())
            .collect();
        let installations = self
            .resolutions
            .installations()
            .into_iter()
            .map(|(app, host, owner, installation_id)| InstallationStatus {
                app,
                host,
                owner,
                installation_id,
            })
            .collect();
        let mut tokens: Vec<CachedTokenStatus> = self
            .tokens
            .snapshot()
            .into_iter()
            .filter(|t| t.expires > now)
            .map(|t| CachedTokenStatus {
                fingerprint: fingerprint(t.token.expose()),
                app: t.plan.app_name.to_string(),
                host: t.plan.key.host.to_string(),
                owner: t.plan.account.clone(),
                installation_id: t.installation_id(),
                repositories: t.repositories().to_vec(),
                permissions: t.permissions.clone(),
                expires_at: t.expires_at,
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
        }
    }

    /// Counter snapshot.
    pub(crate) fn metrics_snapshot(&self) -> BrokerMetrics {
        let rate_limits: BTreeMap<String, u64> = self
            .runtime()
            .apps
            .iter()
            .filter_map(|app| Some((app.name().to_string(), app.client.rate_limit_remaining()?)))
            .collect();
        self.metrics.snapshot(rate_limits)
    }
}
