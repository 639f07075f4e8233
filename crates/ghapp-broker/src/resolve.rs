//! Which installation serves a request: (host, owner, repo) → (App, installation).
//!
//! - repo named: `GET /repos/{o}/{r}/installation`;
//! - owner only: `GET /orgs/{o}/installation`, then `GET /users/{o}/installation` on 404;
//! - neither (git without `credential.useHttpPath`): the host's only installation, from
//!   `GET /app/installations` — several is an `Ambiguous` error telling the user what to set.
//!
//! Every App configured for the host (and allowing the owner) is tried in file order; the first
//! installed wins. Answers are cached: found for `installation_cache_ttl`, "not installed" for
//! `negative_cache_ttl`. Look-ups are single-flight per target. An aged "found" answer is used
//! at once while it is looked up again in the background (and kept for up to a day), so neither
//! callers nor an outage wait on a mapping that merely aged; a 404 from access_tokens drops it.

use crate::app::{AppRuntime, Runtime, Trouble};
use crate::broker::Inner;
use crate::error::BrokerError;
use crate::flight::{Flight, flight, spawn_flight};
use crate::github::{ApiError, InstallationInfo, jwt_rejected_error};
use crate::metrics::bump;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How long a "found" answer past its TTL is kept as a fallback for outages.
pub(crate) const STALE_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// What a request names. Owner and repo are lower-cased (GitHub names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub host: String,
    pub owner: Option<String>,
    pub repo: Option<String>,
}

impl Target {
    /// `acme/widgets`, `account acme`, or `host github.com`.
    pub(crate) fn label(&self) -> String {
        match (&self.owner, &self.repo) {
            (Some(owner), Some(repo)) => format!("{owner}/{repo}"),
            (Some(owner), None) => format!("account {owner}"),
            _ => format!("host {}", self.host),
        }
    }
}

/// An installation and the App it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub app_identity: String,
    pub app_name: String,
    pub installation: InstallationInfo,
}

#[derive(Debug, Clone)]
enum Answer {
    Found(Resolved),
    /// Not installed; the message says on what and which Apps were asked.
    NotInstalled(String),
    /// Owner-less request and several installations.
    Several(Vec<Resolved>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    target: Target,
    /// The candidate Apps' identities: a different set (reload, `owners`, protocol) is a
    /// different question.
    apps: Vec<String>,
}

struct Entry {
    answer: Answer,
    fresh_until: Instant,
    keep_until: Instant,
}

type LookupResult = Result<Answer, BrokerError>;

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    flights: HashMap<Key, Flight<LookupResult>>,
}

/// Cached answers and look-ups in flight.
#[derive(Default)]
pub(crate) struct ResolutionCache {
    state: Mutex<State>,
}

impl ResolutionCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every mapping to an installation (GitHub said it no longer exists).
    pub(crate) fn forget_installation(&self, installation_id: u64) {
        self.lock().entries.retain(
            |_, e| !matches!(&e.answer, Answer::Found(r) if r.installation.id == installation_id),
        );
    }

    /// Records that an installation is suspended, for `ttl` (then it is looked up again).
    pub(crate) fn mark_suspended(&self, installation_id: u64, ttl: Duration) {
        let until = Instant::now() + ttl;
        for entry in self.lock().entries.values_mut() {
            if let Answer::Found(r) = &mut entry.answer
                && r.installation.id == installation_id
            {
                r.installation.suspended = true;
                entry.fresh_until = until;
            }
        }
    }

    /// Drops answers of Apps no longer configured, and every negative answer (reload).
    pub(crate) fn retain_apps(&self, identities: &HashSet<String>) {
        self.lock().entries.retain(|key, e| {
            matches!(e.answer, Answer::Found(_))
                && key.apps.iter().all(|id| identities.contains(id))
        });
    }

    /// Removes answers past their keep time.
    pub(crate) fn evict(&self, now: Instant) {
        self.lock().entries.retain(|_, e| e.keep_until > now);
    }

    /// Known installations: (App name, host, account, id), deduplicated.
    pub(crate) fn installations(&self) -> Vec<(String, String, String, u64)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (key, entry) in &self.lock().entries {
            let found: Vec<&Resolved> = match &entry.answer {
                Answer::Found(r) => vec![r],
                Answer::Several(list) => list.iter().collect(),
                Answer::NotInstalled(_) => vec![],
            };
            for r in found {
                if seen.insert((r.app_identity.clone(), r.installation.id)) {
                    out.push((
                        r.app_name.clone(),
                        key.target.host.clone(),
                        r.installation.account.clone(),
                        r.installation.id,
                    ));
                }
            }
        }
        out.sort();
        out
    }
}

impl Inner {
    /// The installation serving `target` among `apps` (non-empty, all for `target.host`).
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        runtime: &Arc<Runtime>,
        apps: &[Arc<AppRuntime>],
        target: &Target,
    ) -> Result<Resolved, BrokerError> {
        let key = Key {
            target: target.clone(),
            apps: apps.iter().map(|a| a.identity.clone()).collect(),
        };
        let waiting = {
            let mut state = self.resolutions.lock();
            let now = Instant::now();
            let mut stale = None;
            if let Some(entry) = state.entries.get(&key) {
                if entry.fresh_until > now {
                    return answer_to_result(entry.answer.clone(), apps);
                }
                // Stale while revalidating: an aged "found" answer is used at once while it is
                // looked up again in the background, so callers do not wait on GitHub for it.
                if let Answer::Found(resolved) = &entry.answer
                    && !resolved.installation.suspended
                    && entry.keep_until > now
                {
                    stale = Some(resolved.clone());
                }
            }
            let flight = match state.flights.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let (tx, rx) = flight();
                    state.flights.insert(key.clone(), rx.clone());
                    let (inner, settler) = (self.clone(), self.clone());
                    let runtime = runtime.clone();
                    let apps = apps.to_vec();
                    let asked = key.target.clone();
                    spawn_flight(
                        tx,
                        async move { inner.look_up(&apps, &asked).await },
                        move |result| {
                            let result = result.unwrap_or_else(|| {
                                Err(BrokerError::internal(format!(
                                    "the installation look-up for {} failed unexpectedly (see the daemon's log); the next request tries again",
                                    key.target.label()
                                )))
                            });
                            settler.record_answer(&runtime, key, result)
                        },
                    );
                    rx
                }
            };
            if let Some(resolved) = stale {
                return Ok(resolved);
            }
            flight
        };
        let answer = waiting.wait().await.unwrap_or_else(|| {
            Err(BrokerError::internal(
                "the installation look-up task failed",
            ))
        })?;
        answer_to_result(answer, apps)
    }

    /// Caches a look-up's answer (or falls back to a stale one when GitHub is failing) and
    /// ends the flight.
    fn record_answer(&self, runtime: &Runtime, key: Key, result: LookupResult) -> LookupResult {
        let now = Instant::now();
        let settings = &runtime.settings;
        let mut state = self.resolutions.lock();
        state.flights.remove(&key);
        match result {
            Ok(answer) => {
                let (ttl, keep) = match &answer {
                    Answer::Found(r) if r.installation.suspended => {
                        (settings.negative_cache_ttl, STALE_KEEP)
                    }
                    Answer::Found(_) => (settings.installation_cache_ttl, STALE_KEEP),
                    Answer::Several(_) => (settings.installation_cache_ttl, Duration::ZERO),
                    Answer::NotInstalled(_) => (settings.negative_cache_ttl, Duration::ZERO),
                };
                let fresh_until = now + ttl;
                state.entries.insert(
                    key,
                    Entry {
                        answer: answer.clone(),
                        fresh_until,
                        keep_until: fresh_until + keep,
                    },
                );
                Ok(answer)
            }
            Err(error) if error.kind == crate::ErrorKind::Unavailable => {
                match state.entries.get(&key) {
                    Some(entry)
                        if matches!(entry.answer, Answer::Found(_)) && entry.keep_until > now =>
                    {
                        tracing::warn!(target = %key.target.label(), "{}; using the last known installation", error.message);
                        Ok(entry.answer.clone())
                    }
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Asks GitHub, App by App.
    async fn look_up(&self, apps: &[Arc<AppRuntime>], target: &Target) -> LookupResult {
        let mut transient: Option<BrokerError> = None;
        let mut other: Option<BrokerError> = None;
        let mut listed: Vec<Resolved> = Vec::new();
        for app in apps {
            bump(&self.metrics.installation_lookups);
            let found = match (&target.owner, &target.repo) {
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
                        .collect::<Vec<_>>()
                }),
            };
            match found {
                Ok(installations) => {
                    app.health.ok();
                    let resolved = installations.into_iter().map(|installation| Resolved {
                        app_identity: app.identity.clone(),
                        app_name: app.name().to_string(),
                        installation,
                    });
                    if target.owner.is_some() {
                        if let Some(first) = resolved.into_iter().next() {
                            return Ok(Answer::Found(first));
                        }
                    } else {
                        listed.extend(resolved);
                    }
                }
                Err(error) => {
                    let error = self.api_failure(
                        app,
                        error,
                        &format!("looking up the installation for {}", target.label()),
                    );
                    if error.kind == crate::ErrorKind::Unavailable {
                        transient.get_or_insert(error);
                    } else {
                        other.get_or_insert(error);
                    }
                }
            }
        }
        if target.owner.is_none() {
            if transient.is_some() || other.is_some() {
                // Half a list is no basis for "the only installation".
                return Err(transient
                    .or(other)
                    .unwrap_or_else(|| BrokerError::internal("look-up failed")));
            }
            return Ok(match listed.len() {
                0 => Answer::NotInstalled(format!("{} has no installations", describe_apps(apps))),
                1 => Answer::Found(listed.remove(0)),
                _ => {
                    let active: Vec<&Resolved> = listed
                        .iter()
                        .filter(|r| !r.installation.suspended)
                        .collect();
                    if active.len() == 1 {
                        Answer::Found(active[0].clone())
                    } else {
                        Answer::Several(listed)
                    }
                }
            });
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

    /// Maps a failed GitHub call of `app`, recording its health; a rejected JWT also drops the
    /// App's cached tokens. `doing` says what was being done, for the message.
    pub(crate) fn api_failure(
        &self,
        app: &AppRuntime,
        error: ApiError,
        doing: &str,
    ) -> BrokerError {
        match &error {
            e if e.is_transient() => {
                let detail = e.detail();
                app.health.fail(
                    Trouble::Unreachable,
                    format!("App {}: GitHub unreachable ({detail})", app.name()),
                );
                tracing::warn!(app = %app.name(), "GitHub unreachable while {doing}: {detail}");
                BrokerError::unavailable(format!("GitHub unreachable ({detail})"))
            }
            ApiError::JwtRejected { .. } => {
                let error = jwt_rejected_error(&app.describe(), &error.detail());
                app.health.fail(
                    Trouble::BadKey,
                    format!("App {}: {}", app.name(), error.message),
                );
                let dropped = self.tokens.drop_app(&app.identity);
                tracing::error!(app = %app.name(), dropped_tokens = dropped, "{}", error.message);
                error
            }
            _ => error.into_broker_error(&app.describe()),
        }
    }
}

fn describe_apps(apps: &[Arc<AppRuntime>]) -> String {
    match apps {
        [one] => format!("GitHub App {}", one.describe()),
        many => format!(
            "the GitHub Apps for {} ({})",
            many.first()
                .map(|a| a.config.host.as_str())
                .unwrap_or_default(),
            many.iter()
                .map(|a| a.describe())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn not_installed_prefix(apps: &[Arc<AppRuntime>]) -> String {
    match apps {
        [one] => format!("GitHub App {} is not", one.describe()),
        many => format!("none of {} is", describe_apps(many)),
    }
}

fn answer_to_result(answer: Answer, apps: &[Arc<AppRuntime>]) -> Result<Resolved, BrokerError> {
    match answer {
        Answer::Found(resolved) => Ok(resolved),
        Answer::NotInstalled(message) => Err(BrokerError::not_found(message)),
        Answer::Several(list) => {
            let mut accounts: Vec<String> = list
                .iter()
                .map(|r| r.installation.account.clone())
                .collect();
            accounts.sort();
            accounts.dedup();
            Err(BrokerError::ambiguous(format!(
                "git did not say which repository it wants, and {} {} {} installations ({}): run `git config --global credential.useHttpPath true` so git sends the repository path, or name the owner",
                describe_apps(apps),
                if apps.len() == 1 { "has" } else { "have" },
                list.len(),
                accounts.join(", "),
            )))
        }
    }
}
