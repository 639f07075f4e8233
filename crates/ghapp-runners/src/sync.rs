//! The lifecycle sync: reconciles the live records with GitHub's runner lists, one list per
//! organization or repository (all pages), and moves each runner along
//! pending → active (online) → offline → deleted:
//!
//! - listed and online: `active`;
//! - listed and offline: `active` becomes `offline`; `offline` longer than the offline limit is
//!   deleted on GitHub and marked `deleted`; `pending` (never online) longer than the pending
//!   limit likewise;
//! - not listed although GitHub had registered it (it has an id, or was seen): `deleted` — an
//!   ephemeral runner that finished its job and was removed by GitHub, or one removed by hand;
//! - never registered (a registration token not used) for longer than the pending limit:
//!   `deleted`.
//!
//! A list that fails changes nothing for that scope: a GitHub outage never deletes a record.
//! Every transition is an audit row (actor `ghapp:sync`).

use crate::audit::Actor;
use crate::github::{GitHubRunner, RunnerApi, Target};
use crate::lifecycle::target_of;
use crate::store::{Observed, Store};
use ghapp_protocol::duration::format_duration;
use ghapp_protocol::runners::{ProvisionMode, RunnerRecord, RunnerState, SyncReport, Transition};
use ghapp_protocol::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a runner may stay offline, or pending, before the sync deletes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Offline longer than this: deleted on GitHub and marked.
    pub offline_after: Duration,
    /// Pending (never online, or never registered) longer than this: deleted.
    pub pending_after: Duration,
}

/// One reconciliation round at `now`.
pub async fn reconcile<A: RunnerApi>(
    store: &Store,
    api: &A,
    now: Timestamp,
    limits: Limits,
) -> SyncReport {
    let mut report = SyncReport::default();
    let live = match store.list(None, false) {
        Ok(live) => live,
        Err(e) => {
            report.failures.push(e.to_string());
            return report;
        }
    };
    let mut by_target: BTreeMap<Target, Vec<RunnerRecord>> = BTreeMap::new();
    for record in live {
        by_target
            .entry(target_of(&record))
            .or_default()
            .push(record);
    }
    for (target, records) in by_target {
        // No database lock is held across this call.
        let listed = match api.list(&target).await {
            Ok(listed) => listed,
            Err(failure) => {
                tracing::warn!(target = %target, "runner sync: cannot list runners: {}", failure.message);
                report
                    .failures
                    .push(format!("{target}: {}", failure.message));
                continue;
            }
        };
        for record in records {
            let found = listed.iter().find(|r| match record.github_id {
                Some(id) => r.id == id,
                None => r.name == record.name,
            });
            step(
                store,
                api,
                &target,
                &record,
                found,
                now,
                limits,
                &mut report,
            )
            .await;
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn step<A: RunnerApi>(
    store: &Store,
    api: &A,
    target: &Target,
    record: &RunnerRecord,
    found: Option<&GitHubRunner>,
    now: Timestamp,
    limits: Limits,
    report: &mut SyncReport,
) {
    let older_than = |since: Option<Timestamp>, limit: Duration| {
        since.is_some_and(|since| since.saturating_add(limit) <= now)
    };
    let mut move_to = |to: RunnerState, observed: Observed, reason: String| match store.transition(
        &record.name,
        record.state,
        to,
        observed,
        &Actor::sync(),
        now,
        &reason,
    ) {
        Ok(true) => {
            tracing::info!(runner = %record.name, from = %record.state, to = %to, "{reason}");
            report.transitions.push(Transition {
                runner_name: record.name.clone(),
                from: record.state,
                to,
                reason,
            });
        }
        Ok(false) => {}
        Err(e) => report.failures.push(e.to_string()),
    };
    let Some(github) = found else {
        let registered = record.github_id.is_some() || record.last_online_at.is_some();
        if registered {
            // A JIT runner takes one job too, whatever `ephemeral` said.
            let one_job = record.ephemeral || record.mode == ProvisionMode::Jit;
            let reason = if one_job {
                "ephemeral runner finished its job; GitHub removed it"
            } else {
                "no longer registered at GitHub"
            };
            move_to(
                RunnerState::Deleted,
                Observed::default(),
                reason.to_string(),
            );
        } else if older_than(Some(record.created_at), limits.pending_after) {
            move_to(
                RunnerState::Deleted,
                Observed::default(),
                format!(
                    "never registered within {}",
                    format_duration(limits.pending_after)
                ),
            );
        }
        return;
    };
    let observed = Observed {
        github_id: Some(github.id),
        busy: github.busy,
    };
    if github.online {
        if record.state == RunnerState::Active {
            if let Err(e) = store.observe(&record.name, observed, true, now) {
                report.failures.push(e.to_string());
            }
        } else {
            move_to(
                RunnerState::Active,
                observed,
                "online at GitHub".to_string(),
            );
        }
        return;
    }
    let stale = match record.state {
        RunnerState::Active => {
            move_to(
                RunnerState::Offline,
                observed,
                "offline at GitHub".to_string(),
            );
            return;
        }
        RunnerState::Offline if older_than(record.offline_since, limits.offline_after) => format!(
            "offline longer than {}",
            format_duration(limits.offline_after)
        ),
        RunnerState::Pending if older_than(Some(record.created_at), limits.pending_after) => {
            format!(
                "never online within {}",
                format_duration(limits.pending_after)
            )
        }
        _ => {
            if let Err(e) = store.observe(&record.name, observed, false, now) {
                report.failures.push(e.to_string());
            }
            return;
        }
    };
    match api.delete(target, github.id).await {
        Ok(_) => move_to(
            RunnerState::Deleted,
            observed,
            format!("{stale}; deleted on GitHub"),
        ),
        Err(failure) => report.failures.push(format!(
            "{target}: cannot delete runner {} ({stale}): {}",
            record.name, failure.message
        )),
    }
}
