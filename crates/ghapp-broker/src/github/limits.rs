//! GitHub's rate limits as one App's client knows them, keyed by what GitHub limits: the
//! bucket a request draws on — the App's own (every call made with the App JWT: look-ups and
//! mints) or one installation's (calls made with that installation's token) — and the resource
//! GitHub names in `x-ratelimit-resource` (`core`, `graphql`, …). A limit on one key never
//! holds a request for another: an installation that ran out does not stop the App's mints,
//! nor another installation's calls.
//!
//! Which resource a request will draw on is learnt from GitHub's answers per kind of call
//! (method and last path segment: `POST …/registration-token`), `core` until GitHub said
//! otherwise. Repeated secondary limits of one key wait exponentially longer
//! ([`secondary_wait`]); a success on the key ends the streak.

use crate::retry::{RateLimited, secondary_wait};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;
use tokio::time::Instant;

/// The resource GitHub charges when it does not say.
pub(crate) const DEFAULT_RESOURCE: &str = "core";

/// The rate-limit bucket a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    /// The App's: every request made with the App JWT.
    App,
    /// One installation's: requests made with its installation tokens.
    Installation(u64),
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bucket::App => write!(f, "the App's JWT requests"),
            Bucket::Installation(id) => write!(f, "installation {id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    bucket: Bucket,
    resource: String,
}

/// One key's state.
#[derive(Debug, Default)]
struct Limit {
    /// No request before this (monotonic) …
    until: Option<Instant>,
    /// … which is this on the local wall clock (for messages).
    until_wall: Option<SystemTime>,
    /// Secondary limits in a row.
    secondary_streak: u32,
}

#[derive(Default)]
struct State {
    limits: HashMap<Key, Limit>,
    /// Kind of call (`POST registration-token`) → the resource GitHub last named for it.
    resources: HashMap<String, String>,
    /// GitHub's last `x-ratelimit-remaining` for the App's bucket.
    app_remaining: Option<u64>,
}

/// A limit in force: no request of its key before `until`.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    /// When it ends (monotonic).
    pub until: Instant,
    /// When it ends, on the local wall clock.
    pub until_wall: SystemTime,
    /// The bucket.
    pub bucket: Bucket,
    /// GitHub's resource.
    pub resource: String,
}

/// One App's rate-limit state.
#[derive(Default)]
pub(crate) struct RateLimits(Mutex<State>);

impl RateLimits {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The resource a call on `route` (`POST /orgs/acme/actions/runners/registration-token`)
    /// draws on, as far as GitHub has told.
    pub(crate) fn resource_of(&self, route: &str) -> String {
        self.lock()
            .resources
            .get(&kind_of(route))
            .cloned()
            .unwrap_or_else(|| DEFAULT_RESOURCE.to_string())
    }

    /// The limit holding a call on `route` in `bucket`, if one is in force.
    pub(crate) fn held(&self, bucket: Bucket, route: &str) -> Option<Hold> {
        let resource = self.resource_of(route);
        let state = self.lock();
        let limit = state.limits.get(&Key {
            bucket,
            resource: resource.clone(),
        })?;
        match (limit.until, limit.until_wall) {
            (Some(until), Some(until_wall)) if until > Instant::now() => Some(Hold {
                until,
                until_wall,
                bucket,
                resource,
            }),
            _ => None,
        }
    }

    /// Records an answer's rate-limit headers (`header` looks one up by lower-case name):
    /// the resource this kind of call draws on, the App's remaining requests, and — for a
    /// success — the end of the key's secondary streak. Returns the answer's resource.
    pub(crate) fn answered(
        &self,
        bucket: Bucket,
        route: &str,
        success: bool,
        header: impl Fn(&str) -> Option<String>,
    ) -> String {
        let named = header("x-ratelimit-resource")
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty() && r.len() <= 64);
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.trim().parse().ok());
        let mut state = self.lock();
        let resource = match named {
            Some(resource) => {
                state.resources.insert(kind_of(route), resource.clone());
                resource
            }
            None => state
                .resources
                .get(&kind_of(route))
                .cloned()
                .unwrap_or_else(|| DEFAULT_RESOURCE.to_string()),
        };
        if bucket == Bucket::App && remaining.is_some() {
            state.app_remaining = remaining;
        }
        if success {
            let key = Key {
                bucket,
                resource: resource.clone(),
            };
            let now = Instant::now();
            // A success ends the streak; a key with nothing left to remember is dropped, so
            // the map holds only installations that were limited lately.
            if state
                .limits
                .get(&key)
                .is_some_and(|l| l.until.is_none_or(|until| until <= now))
            {
                state.limits.remove(&key);
            }
        }
        resource
    }

    /// Records a rate-limit answer for `bucket`/`resource` received at `received`
    /// (`received_wall` on the local wall clock): a primary limit holds the key for GitHub's
    /// wait, a secondary one for [`secondary_wait`] of the key's streak.
    pub(crate) fn limited(
        &self,
        bucket: Bucket,
        resource: String,
        limit: &RateLimited,
        received: Instant,
        received_wall: SystemTime,
    ) -> Hold {
        let mut state = self.lock();
        let entry = state
            .limits
            .entry(Key {
                bucket,
                resource: resource.clone(),
            })
            .or_default();
        let wait = if limit.secondary {
            entry.secondary_streak = entry.secondary_streak.saturating_add(1);
            secondary_wait(limit.wait, entry.secondary_streak)
        } else {
            limit.wait
        };
        let until = received + wait;
        let until_wall = received_wall + wait;
        // Never shorten a longer hold already in force.
        if entry.until.is_none_or(|current| current < until) {
            entry.until = Some(until);
            entry.until_wall = Some(until_wall);
        }
        Hold {
            until: entry.until.unwrap_or(until),
            until_wall: entry.until_wall.unwrap_or(until_wall),
            bucket,
            resource,
        }
    }

    /// Secondary limits in a row on a key.
    #[cfg(test)]
    pub(crate) fn secondary_streak(&self, bucket: Bucket, resource: &str) -> u32 {
        self.lock()
            .limits
            .get(&Key {
                bucket,
                resource: resource.to_string(),
            })
            .map_or(0, |l| l.secondary_streak)
    }

    /// GitHub's last `x-ratelimit-remaining` for the App's own bucket.
    pub(crate) fn app_remaining(&self) -> Option<u64> {
        self.lock().app_remaining
    }
}

/// The kind of a call, for learning its resource: its method and last path segment
/// (`GET /repos/acme/widgets/installation` → `GET installation`), so the map stays as small
/// as the set of endpoints.
fn kind_of(route: &str) -> String {
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let last = if last.bytes().all(|b| b.is_ascii_digit()) {
        "{id}"
    } else {
        last
    };
    format!("{method} {last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn primary(secs: u64) -> RateLimited {
        RateLimited {
            wait: Duration::from_secs(secs),
            secondary: false,
        }
    }

    #[test]
    fn kinds_are_as_few_as_the_endpoints() {
        assert_eq!(
            kind_of("GET /repos/acme/widgets/installation"),
            "GET installation"
        );
        assert_eq!(
            kind_of("POST /app/installations/100/access_tokens"),
            "POST access_tokens"
        );
        assert_eq!(kind_of("GET /app/installations/7"), "GET {id}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_holds_only_its_bucket_and_resource() {
        let limits = RateLimits::default();
        let runner = "POST /orgs/acme/actions/runners/registration-token";
        let resource = limits.answered(
            Bucket::Installation(100),
            runner,
            false,
            headers(&[("x-ratelimit-resource", "actions_runner_registration")]),
        );
        assert_eq!(resource, "actions_runner_registration");
        limits.limited(
            Bucket::Installation(100),
            resource,
            &primary(600),
            Instant::now(),
            SystemTime::now(),
        );
        assert!(limits.held(Bucket::Installation(100), runner).is_some());
        assert!(limits.held(Bucket::Installation(300), runner).is_none());
        assert!(limits.held(Bucket::App, runner).is_none());
        assert!(
            limits
                .held(Bucket::Installation(100), "GET /installation/repositories")
                .is_none(),
            "another resource of the same installation"
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(limits.held(Bucket::Installation(100), runner).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn secondary_limits_in_a_row_grow_until_a_success() {
        let limits = RateLimits::default();
        let secondary = RateLimited {
            wait: Duration::from_secs(60),
            secondary: true,
        };
        let mut waits = Vec::new();
        for _ in 0..3 {
            let now = Instant::now();
            let hold = limits.limited(
                Bucket::App,
                "core".into(),
                &secondary,
                now,
                SystemTime::now(),
            );
            waits.push((hold.until - now).as_secs());
            tokio::time::advance(hold.until - now).await;
        }
        assert_eq!(waits, vec![60, 120, 240]);
        limits.answered(Bucket::App, "GET /app/installations", true, headers(&[]));
        assert_eq!(limits.secondary_streak(Bucket::App, "core"), 0);
    }
}
