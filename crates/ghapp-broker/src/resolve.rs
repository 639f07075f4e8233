//! The [`Resolver`]: which installation serves a request, (host, owner, repo) → (App,
//! installation), from its cache of answers or from the one look-up in flight per target.
//! How GitHub is asked is `lookup.rs`'s job; what the answers mean for callers is here.
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
//! callers nor an outage wait on a mapping that merely aged; a 404 from access_tokens drops it
//! (the broker calls [`Resolver::forget_installation`]).

use crate::app::{AppRuntime, Settings};
use crate::error::{BrokerError, ErrorKind};
use crate::flight::{Flight, flight, spawn_flight};
use crate::github::InstallationInfo;
use std::collections::{HashMap, HashSet};
use std::future::Future;
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
/// What GitHub said about a target.
pub(crate) enum Answer {
    /// Installed (shared: a cache hit hands out a pointer, not a copy).
    Found(Arc<Resolved>),
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

/// A look-up's outcome, shared by everyone waiting on it.
pub(crate) type LookupResult = Result<Answer, BrokerError>;

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    flights: HashMap<Key, Flight<LookupResult>>,
    /// Enterprise installations seen while listing, by (App identity, id): never a candidate,
    /// kept to be listed in status as such.
    enterprise: HashMap<(String, u64), KnownInstallation>,
}

/// An installation the resolver knows of, for status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KnownInstallation {
    /// The App's configured name.
    pub app: String,
    /// The host.
    pub host: String,
    /// The account (an enterprise's slug for an Enterprise installation).
    pub account: String,
    /// The installation id.
    pub id: u64,
    /// An Enterprise installation, skipped for owner and repository resolution.
    pub enterprise: bool,
}

/// Cached answers and the look-ups in flight, one per (target, candidate Apps).
#[derive(Default)]
pub(crate) struct Resolver {
    state: Arc<Mutex<State>>,
}

impl Resolver {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The installation serving `target` among `apps` (non-empty, all for `target.host`):
    /// cached, or from the look-up in flight, or from a new one — `look_up()`, run in its own
    /// task — whose answer is cached by `settings`' TTLs.
    pub(crate) async fn resolve<F, Fut>(
        &self,
        settings: &Settings,
        apps: &[Arc<AppRuntime>],
        target: &Target,
        look_up: F,
    ) -> Result<Arc<Resolved>, BrokerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = LookupResult> + Send + 'static,
    {
        let key = Key {
            target: target.clone(),
            apps: apps.iter().map(|a| a.identity.clone()).collect(),
        };
        let waiting = {
            let mut state = self.lock();
            let now = Instant::now();
            let mut stale = None;
            if let Some(entry) = state.entries.get(&key) {
                if entry.fresh_until > now {
                    return answer_to_result(&entry.answer, apps);
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
                    let shared = self.state.clone();
                    let settings = settings.clone();
                    spawn_flight(tx, look_up(), move |result| {
                        let result = result.unwrap_or_else(|| {
                            Err(BrokerError::internal(format!(
                                "the installation look-up for {} failed unexpectedly (see the daemon's log); the next request tries again",
                                key.target.label()
                            )))
                        });
                        record_answer(&shared, &settings, key, result)
                    });
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
        answer_to_result(&answer, apps)
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
                Arc::make_mut(r).installation.suspended = true;
                entry.fresh_until = until;
            }
        }
    }

    /// Drops answers of Apps no longer configured, and every negative answer (reload).
    pub(crate) fn retain_apps(&self, identities: &HashSet<String>) {
        let mut state = self.lock();
        state.entries.retain(|key, e| {
            matches!(e.answer, Answer::Found(_))
                && key.apps.iter().all(|id| identities.contains(id))
        });
        state
            .enterprise
            .retain(|(identity, _), _| identities.contains(identity));
    }

    /// Remembers Enterprise installations a listing on `host` skipped, for status.
    pub(crate) fn note_enterprise(&self, host: &str, skipped: &[Resolved]) {
        if skipped.is_empty() {
            return;
        }
        let mut state = self.lock();
        for r in skipped {
            state.enterprise.insert(
                (r.app_identity.clone(), r.installation.id),
                KnownInstallation {
                    app: r.app_name.clone(),
                    host: host.to_string(),
                    account: r.installation.account.clone(),
                    id: r.installation.id,
                    enterprise: true,
                },
            );
        }
    }

    /// Removes answers past their keep time.
    pub(crate) fn evict(&self, now: Instant) {
        self.lock().entries.retain(|_, e| e.keep_until > now);
    }

    /// Known installations, deduplicated; Enterprise ones marked.
    pub(crate) fn installations(&self) -> Vec<KnownInstallation> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let state = self.lock();
        for (key, entry) in &state.entries {
            let found: Vec<&Resolved> = match &entry.answer {
                Answer::Found(r) => vec![&**r],
                Answer::Several(list) => list.iter().collect(),
                Answer::NotInstalled(_) => vec![],
            };
            for r in found {
                if seen.insert((r.app_identity.clone(), r.installation.id)) {
                    out.push(KnownInstallation {
                        app: r.app_name.clone(),
                        host: key.target.host.clone(),
                        account: r.installation.account.clone(),
                        id: r.installation.id,
                        enterprise: r.installation.enterprise,
                    });
                }
            }
        }
        for ((identity, id), known) in &state.enterprise {
            if seen.insert((identity.clone(), *id)) {
                out.push(known.clone());
            }
        }
        out.sort();
        out
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Caches a look-up's answer (or falls back to a stale one when GitHub is failing) and
/// ends the flight.
fn record_answer(
    shared: &Mutex<State>,
    settings: &Settings,
    key: Key,
    result: LookupResult,
) -> LookupResult {
    let now = Instant::now();
    let mut state = lock(shared);
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
        Err(error) if error.kind == ErrorKind::Unavailable => match state.entries.get(&key) {
            Some(entry) if matches!(entry.answer, Answer::Found(_)) && entry.keep_until > now => {
                tracing::warn!(target = %key.target.label(), "{}; using the last known installation", error.message);
                Ok(entry.answer.clone())
            }
            _ => Err(error),
        },
        Err(error) => Err(error),
    }
}

/// "GitHub App acme-bot (id 1)" or "the GitHub Apps for github.com (…)".
pub(crate) fn describe_apps(apps: &[Arc<AppRuntime>]) -> String {
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

/// "GitHub App acme-bot (id 1) is not" or "none of … is".
pub(crate) fn not_installed_prefix(apps: &[Arc<AppRuntime>]) -> String {
    match apps {
        [one] => format!("GitHub App {} is not", one.describe()),
        many => format!("none of {} is", describe_apps(many)),
    }
}

/// What an answer means for a caller.
fn answer_to_result(
    answer: &Answer,
    apps: &[Arc<AppRuntime>],
) -> Result<Arc<Resolved>, BrokerError> {
    match answer {
        Answer::Found(resolved) => Ok(resolved.clone()),
        Answer::NotInstalled(message) => {
            Err(about_the_app(BrokerError::not_found(message.clone()), apps))
        }
        Answer::Several(list) => {
            let mut accounts: Vec<String> = list
                .iter()
                .map(|r| r.installation.account.clone())
                .collect();
            accounts.sort();
            accounts.dedup();
            Err(about_the_app(
                BrokerError::ambiguous(format!(
                    "git did not say which repository it wants, and {} {} {} installations ({}): run `git config --global credential.useHttpPath true` so git sends the repository path, or name the owner",
                    describe_apps(apps),
                    if apps.len() == 1 { "has" } else { "have" },
                    list.len(),
                    accounts.join(", "),
                )),
                apps,
            ))
        }
    }
}

/// `error` naming the App when exactly one was asked.
fn about_the_app(error: BrokerError, apps: &[Arc<AppRuntime>]) -> BrokerError {
    match apps {
        [one] => error.with_app(one.name()),
        _ => error,
    }
}
