//! Asking GitHub which installation serves a target — the look-up the [`Resolver`] runs once
//! per target in flight:
//!
//! - repo named: `GET /repos/{o}/{r}/installation`;
//! - owner only: `GET /orgs/{o}/installation`, then `GET /users/{o}/installation` on 404;
//! - neither (git without `credential.useHttpPath`): the host's only installation, from
//!   `GET /app/installations` — several is an `Ambiguous` answer telling the user what to set.
//!   Enterprise installations (`target_type: "Enterprise"`) cover no repository: they are never
//!   a candidate, only reported (the resolver lists them in status as such).
//!
//! [`Resolver`]: crate::resolve::Resolver

use crate::app::AppRuntime;
use crate::error::{BrokerError, ErrorKind};
use crate::failure::{self, Consequence};
use crate::github::{ApiError, InstallationInfo};
use crate::metrics::{Metrics, bump};
use crate::resolve::{Answer, LookupResult, Resolved, Target, describe_apps, not_installed_prefix};
use std::sync::Arc;

/// A look-up's answer, and what its failures mean for the caches (per App).
pub(crate) struct LookupOutcome {
    /// What GitHub said, or the failure callers see.
    pub answer: LookupResult,
    /// Consequences of the Apps' failures, even when another App answered.
    pub consequences: Vec<(Arc<AppRuntime>, Consequence)>,
    /// Enterprise installations seen (and skipped) while listing.
    pub enterprise: Vec<Resolved>,
}

/// Asks GitHub, App by App in file order, which installation serves `target`: the first
/// installed wins; owner-less, the host's only (active) installation. Each App's failure is
/// mapped (`failure.rs`); their consequences are returned for the broker to apply.
pub(crate) async fn look_up(
    apps: &[Arc<AppRuntime>],
    target: &Target,
    metrics: &Metrics,
) -> LookupOutcome {
    let mut consequences = Vec::new();
    let mut enterprise = Vec::new();
    let answer = ask_each_app(apps, target, metrics, &mut consequences, &mut enterprise).await;
    LookupOutcome {
        answer,
        consequences,
        enterprise,
    }
}

async fn ask_each_app(
    apps: &[Arc<AppRuntime>],
    target: &Target,
    metrics: &Metrics,
    consequences: &mut Vec<(Arc<AppRuntime>, Consequence)>,
    enterprise: &mut Vec<Resolved>,
) -> LookupResult {
    let mut transient: Option<BrokerError> = None;
    let mut other: Option<BrokerError> = None;
    let mut listed: Vec<Resolved> = Vec::new();
    for app in apps {
        bump(&metrics.installation_lookups);
        let found = ask_app(app, target).await;
        match found {
            Ok(installations) => {
                app.health.ok();
                let (skipped, serving): (Vec<_>, Vec<_>) = installations
                    .into_iter()
                    .map(|installation| Resolved {
                        app_identity: app.identity.clone(),
                        app_name: app.name().to_string(),
                        installation,
                    })
                    .partition(|r| r.installation.enterprise);
                enterprise.extend(skipped);
                let resolved = serving;
                if target.owner.is_some() {
                    if let Some(first) = resolved.into_iter().next() {
                        return Ok(Answer::Found(Arc::new(first)));
                    }
                } else {
                    listed.extend(resolved);
                }
            }
            Err(error) => {
                let failure = failure::api_failure(
                    app,
                    error,
                    &format!("looking up the installation for {}", target.label()),
                );
                consequences.extend(failure.consequence.map(|c| (app.clone(), c)));
                let error = failure.error.with_target(target.label());
                metrics.record_github_failure(&error);
                if error.kind == ErrorKind::Unavailable {
                    transient.get_or_insert(error);
                } else {
                    other.get_or_insert(error);
                }
            }
        }
    }
    if target.owner.is_none() {
        // Half a list is no basis for "the only installation".
        return match transient.or(other) {
            Some(error) => Err(error),
            None => Ok(only_installation(listed, apps)),
        };
    }
    if let Some(error) = transient.or(other) {
        return Err(error);
    }
    Ok(Answer::NotInstalled(format!(
        "{} installed on {}",
        not_installed_prefix(apps),
        target.label()
    )))
}

/// The installations of `app` serving `target`: at most one for an owner (or repository),
/// every installation the App's `owners` allow for an owner-less target.
async fn ask_app(app: &AppRuntime, target: &Target) -> Result<Vec<InstallationInfo>, ApiError> {
    match (&target.owner, &target.repo) {
        (Some(owner), Some(repo)) => app
            .client
            .repo_installation(owner, repo)
            .await
            .map(|i| i.into_iter().collect()),
        (Some(owner), None) => app
            .client
            .owner_installation(owner)
            .await
            .map(|i| i.into_iter().collect()),
        _ => app.client.installations().await.map(|all| {
            all.into_iter()
                .filter(|i| app.config.allows_owner(&i.account))
                .collect()
        }),
    }
}

/// An owner-less request's answer from every installation listed: the only one, or the only
/// active one; else none or several.
fn only_installation(mut listed: Vec<Resolved>, apps: &[Arc<AppRuntime>]) -> Answer {
    match listed.len() {
        0 => Answer::NotInstalled(format!("{} has no installations", describe_apps(apps))),
        1 => Answer::Found(Arc::new(listed.remove(0))),
        _ => {
            let active: Vec<&Resolved> = listed
                .iter()
                .filter(|r| !r.installation.suspended)
                .collect();
            if active.len() == 1 {
                Answer::Found(Arc::new(active[0].clone()))
            } else {
                Answer::Several(listed)
            }
        }
    }
}
