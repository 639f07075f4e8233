//! Minting: what to ask GitHub for (narrowing and ceilings), the mint itself in its own task,
//! and checking that GitHub granted what was asked.
//!
//! - A repository named → the token is narrowed to it, unless the App is `installation_wide`.
//! - Permissions asked must be within the App's ceiling (`permissions`), else 422 naming the
//!   first one beyond it. None asked → the ceiling (limited to what the installation has), or,
//!   without a ceiling, nothing (GitHub then grants everything the installation has).
//! - GitHub's answer must not grant more than asked, and must be narrowed as asked; otherwise
//!   the token is not served.

use crate::app::AppRuntime;
use crate::broker::Inner;
use crate::cache::{CachedToken, MintPlan, MintResult, Origin, TokenKey, digest};
use crate::error::BrokerError;
use crate::flight::FlightSender;
use crate::github::{ApiError, MintedToken, TokenRequestBody};
use crate::metrics::bump;
use crate::resolve::Resolved;
use ghapp_protocol::permissions::{Level, Permissions};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait between background attempts to re-mint a token whose refresh keeps failing.
pub(crate) const REFRESH_RETRY_CAP: Duration = Duration::from_secs(30);

/// What to mint for a request.
pub(crate) fn plan(
    app: &AppRuntime,
    host: &str,
    resolved: &Resolved,
    repo: Option<&str>,
    asked: &Permissions,
    target: String,
) -> Result<MintPlan, BrokerError> {
    let ceiling = app.config.permissions.as_ref();
    let permissions = if !asked.is_empty() {
        if let Some(ceiling) = ceiling
            && let Some((name, level)) = asked.first_beyond(ceiling)
        {
            return Err(BrokerError::unprocessable(format!(
                "permission {name}={level} exceeds the ceiling for {} (allowed: {})",
                app.name(),
                ceiling.to_list()
            )));
        }
        Some(asked.clone())
    } else {
        ceiling.map(|c| within_installation(c, &resolved.installation.permissions))
    };
    let repositories: Vec<String> = match repo {
        Some(repo) if !app.config.installation_wide => vec![repo.to_string()],
        _ => Vec::new(),
    };
    let mut key_repositories: Vec<String> = repositories
        .iter()
        .map(|r| r.to_ascii_lowercase())
        .collect();
    key_repositories.sort();
    key_repositories.dedup();
    // The App's own strings, shared (the request's host is the App's, as candidates are picked).
    let names = &app.names;
    let host = if *names.host == *host {
        names.host.clone()
    } else {
        host.into()
    };
    Ok(MintPlan {
        key: TokenKey {
            host,
            app_identity: names.identity.clone(),
            installation_id: resolved.installation.id,
            repositories: key_repositories,
            permissions: permissions.clone(),
        },
        app_name: names.name.clone(),
        app_label: names.label.clone(),
        account: resolved.installation.account.clone(),
        target,
        body: TokenRequestBody {
            repositories,
            permissions,
        },
    })
}

/// The ceiling limited to what the installation was granted (lower level wins), so a ceiling
/// wider than one installation still yields a token there. When GitHub did not report the
/// installation's permissions, or nothing is left, the ceiling is asked as is and GitHub's
/// answer decides.
fn within_installation(ceiling: &Permissions, installation: &Permissions) -> Permissions {
    if installation.is_empty() {
        return ceiling.clone();
    }
    let limited: Permissions = ceiling
        .iter()
        .filter_map(|(name, level)| {
            installation
                .get(name)
                .map(|granted| (name.to_string(), level.min(granted)))
        })
        .collect();
    if limited.is_empty() {
        ceiling.clone()
    } else {
        limited
    }
}

/// Checks GitHub's answer against the request.
pub(crate) fn check_minted(plan: &MintPlan, minted: &MintedToken) -> Result<(), BrokerError> {
    let refuse = |what: String| {
        BrokerError::internal(format!(
            "GitHub App {}: the token GitHub minted for {} {what}; it was not used",
            plan.app_label, plan.target
        ))
    };
    if let Some(asked) = &plan.body.permissions {
        // GitHub adds `metadata: read` to every scoped token (repositories need it).
        let mut allowed = asked.clone();
        if allowed.get("metadata").is_none() {
            let _ = allowed.insert("metadata", Level::Read);
        }
        if let Some((name, level)) = minted.permissions.first_beyond(&allowed) {
            return Err(refuse(format!(
                "grants {name}:{level}, more than asked ({})",
                asked.to_list()
            )));
        }
        if let Some(odd) = minted.unrecognised_permissions.first() {
            return Err(refuse(format!("grants {odd}, which was not asked for")));
        }
    }
    if !plan.body.repositories.is_empty() {
        let Some(granted) = &minted.repositories else {
            return Err(refuse(format!(
                "is not narrowed to {} as asked",
                plan.body.repositories.join(", ")
            )));
        };
        let mut granted: Vec<String> = granted.iter().map(|r| r.to_ascii_lowercase()).collect();
        granted.sort();
        granted.dedup();
        if granted != plan.key.repositories {
            return Err(refuse(format!(
                "covers repositories [{}] instead of [{}]",
                granted.join(", "),
                plan.key.repositories.join(", ")
            )));
        }
    }
    Ok(())
}

/// The next background attempt after `failures` consecutive failures: 1 s doubling to 30 s,
/// jittered, and not before a rate limit ends.
pub(crate) fn refresh_retry_at(failures: u32, app: &AppRuntime) -> Instant {
    let base =
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(REFRESH_RETRY_CAP);
    let jittered = base.mul_f64(0.5 + fastrand::f64() * 0.5);
    let at = Instant::now() + jittered;
    match app.client.rate_limited_until() {
        Some((until, _)) => at.max(until),
        None => at,
    }
}

impl Inner {
    /// Spawns the mint of `plan`; the result goes to `tx` after the cache is updated.
    pub(crate) fn spawn_mint(
        self: &Arc<Self>,
        plan: Arc<MintPlan>,
        tx: FlightSender<MintResult>,
        origin: Origin,
    ) {
        let inner = self.clone();
        let mut guard = DeadMintGuard {
            inner: self.clone(),
            plan: plan.clone(),
            tx: Some(tx),
        };
        tokio::spawn(async move {
            let outcome = inner.mint(&plan).await;
            let (result, drop_entry, app) = match outcome {
                Ok(token) => (Ok(token), false, None),
                Err((error, drop_entry, app)) => (Err(error), drop_entry, app),
            };
            match (&result, origin) {
                (Ok(_), Origin::Refresh) => bump(&inner.metrics.refreshes),
                (Err(_), Origin::Refresh) => bump(&inner.metrics.refresh_failures),
                _ => {}
            }
            let retry_at = match (&result, &app) {
                (Err(_), Some(app)) => {
                    Some(refresh_retry_at(inner.tokens.failures(&plan.key) + 1, app))
                }
                _ => None,
            };
            inner.tokens.finish(&plan, &result, retry_at, drop_entry);
            if let Some(tx) = guard.tx.take() {
                tx.complete(result);
            }
        });
    }

    /// Mints one token. On failure: the error, whether the cached token of the key must go
    /// (installation gone or suspended), and the App (for retry scheduling).
    async fn mint(
        &self,
        plan: &Arc<MintPlan>,
    ) -> Result<Arc<CachedToken>, (BrokerError, bool, Option<Arc<AppRuntime>>)> {
        let runtime = self.runtime();
        let Some(app) = runtime.app(&plan.key.app_identity).cloned() else {
            return Err((
                BrokerError::internal(format!(
                    "GitHub App {} is no longer configured",
                    plan.app_name
                )),
                true,
                None,
            ));
        };
        let installation_id = plan.key.installation_id;
        let started = Instant::now();
        let minted = match app.client.create_token(installation_id, &plan.body).await {
            Ok(minted) => minted,
            Err(error) => {
                bump(&self.metrics.mint_failures);
                let (error, drop_entry) = self.mint_failure(&app, plan, error);
                return Err((error, drop_entry, Some(app)));
            }
        };
        app.health.ok();
        if let Err(error) = check_minted(plan, &minted) {
            bump(&self.metrics.mint_failures);
            tracing::error!(app = %app.name(), installation = installation_id, "{}", error.message);
            return Err((error, false, Some(app)));
        }
        let st = minted.server_time;
        let lifetime = st.remaining_until(minted.expires_at);
        let token = CachedToken {
            digest: digest(minted.token.expose()),
            expires: st.instant_of(minted.expires_at),
            lifetime,
            minted_at: st.received,
            expires_at: st.local_time_of(minted.expires_at),
            plan: plan.clone(),
            permissions: minted.permissions.clone(),
            token: minted.token,
        };
        self.metrics.record_mint(app.name(), started.elapsed());
        tracing::info!(
            app = %app.name(),
            installation = installation_id,
            target = %plan.target,
            token = %token.token.fingerprint(),
            expires_in_secs = lifetime.as_secs(),
            clock_offset_secs = app.client.clock_offset(),
            "minted an installation token"
        );
        Ok(Arc::new(token))
    }

    /// Turns a failed access_tokens call into the caller's error, updating health and the
    /// installation cache. The flag says whether the key's cached token must be dropped.
    fn mint_failure(
        &self,
        app: &AppRuntime,
        plan: &MintPlan,
        error: ApiError,
    ) -> (BrokerError, bool) {
        let installation = format!(
            "installation {} ({})",
            plan.key.installation_id, plan.account
        );
        match &error {
            ApiError::Status {
                status: 403,
                message,
                ..
            } if message.to_ascii_lowercase().contains("suspended") => {
                let ttl = self.runtime().settings.negative_cache_ttl;
                self.resolutions
                    .mark_suspended(plan.key.installation_id, ttl);
                let e = suspended_error(&app.describe(), plan.key.installation_id, &plan.account);
                (e, true)
            }
            ApiError::Status { status: 404, .. } => {
                self.resolutions
                    .forget_installation(plan.key.installation_id);
                (
                    BrokerError::not_found(format!(
                        "GitHub App {} {installation} no longer exists (uninstalled or reinstalled): {}",
                        app.describe(),
                        error.detail()
                    )),
                    true,
                )
            }
            ApiError::Status { status: 422, .. } => (
                BrokerError::unprocessable(format!(
                    "GitHub refused a token for {} from App {} ({installation}; asked {}): {}",
                    plan.target,
                    app.describe(),
                    describe_request(&plan.body),
                    error.detail()
                )),
                false,
            ),
            ApiError::Status { status: 403, .. } => (
                BrokerError::forbidden(format!(
                    "GitHub refused a token for {} from App {} ({installation}): {}",
                    plan.target,
                    app.describe(),
                    error.detail()
                )),
                false,
            ),
            _ => (
                self.api_failure(app, error, &format!("minting a token for {}", plan.target)),
                false,
            ),
        }
    }
}

/// Ends the flight of a mint task that dies before finishing (a panic under it, or the runtime
/// shutting down): without it the key would stay joined to a flight nobody completes, and every
/// later request for the key would fail at once and the refresher would skip it, until restart.
struct DeadMintGuard {
    inner: Arc<Inner>,
    plan: Arc<MintPlan>,
    tx: Option<FlightSender<MintResult>>,
}

impl Drop for DeadMintGuard {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let result: MintResult = Err(BrokerError::internal(format!(
            "the token mint for {} failed unexpectedly (see the daemon's log); the next request tries again",
            self.plan.target
        )));
        self.inner.tokens.finish(&self.plan, &result, None, false);
        tx.complete(result);
    }
}

/// "GitHub App acme-bot (id 12345) installation 100 (acme) is suspended".
pub(crate) fn suspended_error(app: &str, installation_id: u64, account: &str) -> BrokerError {
    BrokerError::forbidden(format!(
        "GitHub App {app} installation {installation_id} ({account}) is suspended: an owner of {account} must unsuspend it in the account's installed GitHub Apps settings"
    ))
}

fn describe_request(body: &TokenRequestBody) -> String {
    let repos = if body.repositories.is_empty() {
        "all repositories".to_string()
    } else {
        body.repositories.join(", ")
    };
    let perms = body
        .permissions
        .as_ref()
        .map_or("all granted permissions".to_string(), |p| p.to_list());
    format!("{repos}; {perms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_is_limited_to_the_installation() {
        let ceiling =
            Permissions::parse_list("contents:write,issues:write,pull_requests:read").unwrap();
        let installation =
            Permissions::parse_list("contents:read,issues:write,metadata:read").unwrap();
        assert_eq!(
            within_installation(&ceiling, &installation).to_list(),
            "contents:read,issues:write"
        );
        assert_eq!(within_installation(&ceiling, &Permissions::new()), ceiling);
        let disjoint = Permissions::parse_list("checks:read").unwrap();
        assert_eq!(within_installation(&ceiling, &disjoint), ceiling);
    }
}
