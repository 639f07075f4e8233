//! The token cache: cached tokens and the mints in flight, under one std mutex that is never
//! held across an `.await`.
//!
//! A key is (host, App, installation, sorted repositories, requested permissions). Looking a
//! key up and joining or starting its mint happen under the same lock, so N concurrent callers
//! for one key cause exactly one mint; the mint's task stores its result and removes the flight
//! under the lock too, so a caller always finds either the new token or the flight.
//!
//! The cache owns the whole refresh policy: what the background refresher should re-mint
//! (tokens served within `refresh_window` whose life falls below `min_ttl + refresh_ahead`, see
//! [`refresh_at`]) and when a failed re-mint is tried again (1 s doubling to
//! [`REFRESH_RETRY_CAP`], jittered, never inside a rate-limit wait). The refresher only wakes
//! and asks.

use crate::app::Settings;
use crate::clock::ServerTime;
use crate::error::BrokerError;
use crate::flight::{Flight, FlightSender, flight};
use crate::github::TokenRequestBody;
use crate::retry::{jittered_backoff, resume_spread};
use ghapp_protocol::api::TokenResponse;
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use sha2::{Digest, Sha256};
use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Tokens stored since memory was last handed back that make a burst worth a trim
/// ([`release_freed_memory`]).
const TRIM_AFTER_STORED: u32 = 256;

/// Longest wait between background attempts to re-mint a token whose refresh keeps failing.
pub(crate) const REFRESH_RETRY_CAP: Duration = Duration::from_secs(30);

/// What a mint yields to every waiter.
pub(crate) type MintResult = Result<Arc<CachedToken>, BrokerError>;

/// What a cached token is for. Two requests share a token exactly when their keys are equal:
/// same host, App, installation, repositories and permissions (the rest of the scope —
/// names, the narrowing — describes the token and is not compared).
///
/// The scope is shared: the cache interns it ([`TokenCache::acquire`]), so the thousands of
/// keys that differ only by their permissions hold one copy of its strings.
#[derive(Debug, Clone)]
pub(crate) struct TokenKey {
    /// Everything but the permissions.
    pub scope: Arc<Scope>,
    /// Permissions asked of GitHub; `None`: everything the installation has.
    pub permissions: Option<Permissions>,
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.permissions == other.permissions
            && (Arc::ptr_eq(&self.scope, &other.scope) || self.scope.same_key(&other.scope))
    }
}

impl Eq for TokenKey {}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let scope = &*self.scope;
        scope.host.hash(state);
        scope.app_identity.hash(state);
        scope.installation_id.hash(state);
        scope.repositories.hash(state);
        self.permissions.hash(state);
    }
}

impl std::ops::Deref for TokenKey {
    type Target = Scope;

    fn deref(&self) -> &Scope {
        &self.scope
    }
}

/// What a plan is for apart from its permissions: the key's host, App, installation and
/// repositories, and how the token is described and narrowed. Equal scopes (every field) are
/// one allocation in the cache.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Scope {
    /// The git host.
    pub host: Arc<str>,
    /// The App's identity (see `app.rs`).
    pub app_identity: Arc<str>,
    /// The installation.
    pub installation_id: u64,
    /// Repository names, lower-cased and sorted; empty: installation-wide.
    pub repositories: Vec<String>,
    /// The App's configured name.
    pub app_name: Arc<str>,
    /// `acme-bot (id 12345)`.
    pub app_label: Arc<str>,
    /// The installation's account login.
    pub account: Box<str>,
    /// What the token is for, in messages: `acme/widgets`, `account acme`.
    pub target: Box<str>,
    /// How the token is narrowed to a repository; the access_tokens body is built from it and
    /// the key's permissions when a mint is sent ([`MintPlan::body`]).
    pub narrowing: Narrowing,
    /// What the installation was granted, as its look-up said: what a token minted without
    /// narrowed permissions has when GitHub's answer does not list them.
    pub installation_permissions: Permissions,
}

impl Scope {
    /// Equal as far as a [`TokenKey`] compares.
    fn same_key(&self, other: &Scope) -> bool {
        self.installation_id == other.installation_id
            && self.host == other.host
            && self.app_identity == other.app_identity
            && self.repositories == other.repositories
    }
}

/// Everything needed to mint (and re-mint) the token of one key: its key, whose scope says
/// what the token is for (reached through `Deref`: `plan.target`, `plan.account`, …).
/// One per cached token, so it is kept to the key: a pointer and the permissions.
#[derive(Debug)]
pub(crate) struct MintPlan {
    /// The cache key.
    pub key: TokenKey,
}

impl std::ops::Deref for MintPlan {
    type Target = Scope;

    fn deref(&self) -> &Scope {
        &self.key.scope
    }
}

/// How a plan narrows its token to repositories.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Narrowing {
    /// Not narrowed: installation-wide.
    None,
    /// To one repository by name, as asked (GitHub compares names case-insensitively).
    Name(Box<str>),
    /// To one repository by id (a renamed repository, found through a redirect).
    Id(u64),
}

impl MintPlan {
    /// The plan of `scope` with `permissions`.
    pub(crate) fn new(scope: Scope, permissions: Option<Permissions>) -> MintPlan {
        MintPlan {
            key: TokenKey {
                scope: Arc::new(scope),
                permissions,
            },
        }
    }

    /// The access_tokens request body.
    pub(crate) fn body(&self) -> TokenRequestBody {
        let (repositories, repository_ids) = match &self.narrowing {
            Narrowing::None => (Vec::new(), Vec::new()),
            Narrowing::Name(name) => (vec![name.to_string()], Vec::new()),
            Narrowing::Id(id) => (Vec::new(), vec![*id]),
        };
        TokenRequestBody {
            repositories,
            repository_ids,
            permissions: self.key.permissions.clone(),
        }
    }
}

/// A minted token and what it is good for. Only the `token` field is secret.
///
/// What it is for (App, host, account, repositories) is its key's scope, shared rather than
/// copied. The daemon may hold tens of thousands of these, each one allocation of 136 bytes
/// (a 144-byte chunk) besides the token's text: the key is kept here rather than as a plan of
/// its own (a second allocation), no digest of the token is kept (it is compared directly, in
/// constant time, by [`TokenCache::find`]), and the wall-clock expiry and the life are packed
/// in 32 bits each.
#[derive(Debug)]
pub(crate) struct CachedToken {
    pub token: Token,
    /// When GitHub stops accepting it, on the monotonic clock (anchored at GitHub's `Date`).
    pub expires: Instant,
    /// What it was minted for: its plan's key (the cache's key for it).
    pub key: TokenKey,
    /// What GitHub granted.
    pub permissions: Permissions,
    /// Expiry on the local wall clock, in seconds since 1970 (a `u32` lasts to 2106; a token
    /// expires within hours of the clock that computed this).
    expires_at_unix: u32,
    /// Its life when it arrived (`expires - minted_at`), in milliseconds, saturating at 49 days
    /// (GitHub's tokens live an hour).
    lifetime_ms: u32,
}

impl CachedToken {
    /// A token GitHub (or an upstream broker) just answered, to expire at its `expires_at`, read
    /// on the answer's own clock `server` (its `Date` header).
    pub(crate) fn arrived(
        token: Token,
        expires_at: Timestamp,
        server: &ServerTime,
        plan: &MintPlan,
        permissions: Permissions,
    ) -> CachedToken {
        CachedToken::new(
            token,
            server.instant_of(expires_at),
            server.received,
            server.local_time_of(expires_at),
            plan,
            permissions,
        )
    }

    /// A token that arrived at `minted_at`, to expire at `expires` (monotonic) and `expires_at`
    /// (local wall clock).
    pub(crate) fn new(
        token: Token,
        expires: Instant,
        minted_at: Instant,
        expires_at: Timestamp,
        plan: &MintPlan,
        permissions: Permissions,
    ) -> CachedToken {
        let lifetime = expires.saturating_duration_since(minted_at);
        CachedToken {
            token,
            expires,
            key: plan.key.clone(),
            permissions,
            expires_at_unix: u32::try_from(expires_at.unix_seconds().max(0)).unwrap_or(u32::MAX),
            lifetime_ms: u32::try_from(lifetime.as_millis()).unwrap_or(u32::MAX),
        }
    }

    /// Life left at `now`.
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.expires.saturating_duration_since(now)
    }

    /// Expiry on the local wall clock.
    pub(crate) fn expires_at(&self) -> Timestamp {
        Timestamp::from_unix_seconds(i64::from(self.expires_at_unix)).unwrap_or_default()
    }

    /// When it arrived (to the millisecond).
    pub(crate) fn minted_at(&self) -> Instant {
        self.expires
            .checked_sub(self.lifetime())
            .unwrap_or(self.expires)
    }

    /// The socket API's answer.
    pub(crate) fn response(&self) -> TokenResponse {
        TokenResponse {
            token: self.token.clone(),
            expires_at: self.expires_at(),
            installation_id: self.installation_id(),
            // `String::from`, not `to_string()`: that goes through `Display` and the
            // formatter's padding, on every request.
            app: String::from(&*self.key.app_name),
            host: String::from(&*self.key.host),
            owner: String::from(&*self.key.account),
            repositories: self.repositories(),
            permissions: self.permissions.clone(),
        }
    }

    /// The installation it belongs to.
    pub(crate) fn installation_id(&self) -> u64 {
        self.key.installation_id
    }

    /// Its life when it arrived.
    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_millis(u64::from(self.lifetime_ms))
    }

    /// Repositories it is narrowed to (as asked); empty: installation-wide.
    pub(crate) fn repositories(&self) -> Vec<String> {
        match &self.key.narrowing {
            Narrowing::Name(name) => vec![name.to_string()],
            // Narrowed by id (a renamed repository) or not at all: the names asked for.
            Narrowing::Id(_) | Narrowing::None => self.key.repositories.clone(),
        }
    }

    /// A plan to mint it again.
    pub(crate) fn plan(&self) -> Arc<MintPlan> {
        Arc::new(MintPlan {
            key: self.key.clone(),
        })
    }

    /// Whether it is exactly `token`, compared in constant time for equal lengths.
    fn is(&self, token: &str) -> bool {
        self.token
            .expose()
            .as_bytes()
            .ct_eq(token.as_bytes())
            .into()
    }
}

/// SHA-256 of a token: what the shared cache compares to forget exactly that token.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Who started a mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A caller found nothing fresh enough.
    Caller,
    /// The background refresher.
    Refresh,
}

/// What a failed mint does to the key's cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// It keeps serving; the refresher tries again with backoff, not before `not_before`
    /// (the end of a rate-limit wait).
    Retry { not_before: Option<Instant> },
    /// It keeps serving; no retry is scheduled beyond the usual (the App is gone, or the mint's
    /// task died).
    Keep,
    /// It goes (the installation is gone or suspended).
    Drop,
}

/// The outcome of [`TokenCache::acquire`].
pub(crate) enum Acquire {
    /// Cached with at least the required life.
    Fresh(Arc<CachedToken>),
    /// GitHub is failing; cached with at least the degraded margin.
    Degraded(Arc<CachedToken>),
    /// Wait for this mint.
    Wait(Flight<MintResult>),
}

/// A map key that is the plan itself, hashed and compared by its [`TokenKey`]: one allocation
/// serves as key, refresh plan and the token's description.
#[derive(Clone)]
struct PlanKey(Arc<MintPlan>);

impl PartialEq for PlanKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for PlanKey {}

impl Hash for PlanKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl Borrow<TokenKey> for PlanKey {
    fn borrow(&self) -> &TokenKey {
        &self.0.key
    }
}

/// A cached token as a map key: hashed and compared by its [`TokenKey`], the key it was minted
/// for. The token is its own key, so a cached token costs its map 16 bytes (this and
/// when it was last served, [`Served`]), not a key, the token and the time.
#[derive(Clone)]
struct Cached(Arc<CachedToken>);

impl Cached {
    fn key(&self) -> &TokenKey {
        &self.0.key
    }
}

impl PartialEq for Cached {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Cached {}

impl Hash for Cached {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl Borrow<TokenKey> for Cached {
    fn borrow(&self) -> &TokenKey {
        self.key()
    }
}

/// When a cached token was last served: whole seconds after the cache's epoch ([`State::epoch`]),
/// plus one; 0: never. Four bytes where an `Option<Instant>` takes sixteen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Served(u32);

impl Served {
    const NEVER: Served = Served(0);

    /// `now`, to the second (rounded down) after `epoch`.
    fn at(now: Instant, epoch: Instant) -> Served {
        let seconds = now.saturating_duration_since(epoch).as_secs();
        Served(u32::try_from(seconds).unwrap_or(u32::MAX - 1) + 1)
    }

    /// The instant it stands for, if served.
    fn instant(self, epoch: Instant) -> Option<Instant> {
        let seconds = self.0.checked_sub(1)?;
        Some(epoch + Duration::from_secs(u64::from(seconds)))
    }
}

/// Failed background re-mints of an entry since its last successful one.
struct Failed {
    /// How many, in a row.
    failures: u32,
    /// Not to be tried again before this.
    retry_at: Option<Instant>,
}

struct State {
    /// What [`Served`] counts from: when the cache was made.
    epoch: Instant,
    /// The cached tokens, each under its own key, and when each was last served (a `Cell`,
    /// so that a cache hit updates it within its one look-up, `get_key_value`).
    entries: HashMap<Cached, Cell<Served>>,
    /// The cached tokens whose last background re-mint failed (rarely any), until one succeeds
    /// or the token goes.
    failed: HashMap<PlanKey, Failed>,
    flights: HashMap<PlanKey, Flight<MintResult>>,
    /// The scopes of the plans in flight and cached, one allocation per distinct scope
    /// ([`State::interned`]); unused ones go with [`State::forget_unused`].
    scopes: HashSet<Arc<Scope>>,
    /// Tokens stored since freed memory was last handed back to the system.
    stored_since_trim: u32,
}

impl Default for State {
    fn default() -> State {
        State {
            epoch: Instant::now(),
            entries: HashMap::new(),
            failed: HashMap::new(),
            flights: HashMap::new(),
            scopes: HashSet::new(),
            stored_since_trim: 0,
        }
    }
}

/// Cached tokens and mints in flight.
#[derive(Default)]
pub(crate) struct TokenCache {
    state: Mutex<State>,
    /// Woken when the refresher's schedule may have changed.
    pub wake: Arc<Notify>,
}

impl State {
    /// `plan`, or an equal plan whose scope is the one the cache already holds: the plan a
    /// flight mints and the cache keeps.
    fn interned(&mut self, plan: &Arc<MintPlan>) -> Arc<MintPlan> {
        match self.scopes.get(&*plan.key.scope) {
            Some(shared) if !Arc::ptr_eq(shared, &plan.key.scope) => Arc::new(MintPlan {
                key: TokenKey {
                    scope: shared.clone(),
                    permissions: plan.key.permissions.clone(),
                },
            }),
            Some(_) => plan.clone(),
            None => {
                self.scopes.insert(plan.key.scope.clone());
                plan.clone()
            }
        }
    }

    /// After entries went: drops their failure records, then the scopes no plan uses any more.
    fn forget_unused(&mut self) {
        if !self.failed.is_empty() {
            let entries = &self.entries;
            self.failed
                .retain(|key, _| entries.contains_key(&key.0.key));
        }
        self.scopes.retain(|scope| Arc::strong_count(scope) > 1);
    }

    /// Consecutive failed background re-mints of `key`.
    fn failures(&self, key: &TokenKey) -> u32 {
        self.failed.get(key).map_or(0, |f| f.failures)
    }
}

impl TokenCache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached token with at least `required` life (marked served); else, when
    /// `degraded_floor` is given (GitHub is failing) a cached token with at least that much;
    /// else the mint in flight for the key, started through `start` if there is none, with the
    /// plan to mint (equal to `plan`, its scope shared with the cache's). `start` runs under the
    /// lock and must only spawn.
    pub(crate) fn acquire(
        &self,
        plan: &Arc<MintPlan>,
        required: Duration,
        degraded_floor: Option<Duration>,
        start: impl FnOnce(Arc<MintPlan>, FlightSender<MintResult>),
    ) -> Acquire {
        let now = Instant::now();
        let mut state = self.lock();
        let served = Served::at(now, state.epoch);
        if let Some((cached, last_served)) = state.entries.get_key_value(&plan.key) {
            let remaining = cached.0.remaining(now);
            if remaining >= required {
                let first_use = last_served.replace(served) == Served::NEVER;
                let token = cached.0.clone();
                drop(state);
                if first_use {
                    self.wake.notify_one();
                }
                return Acquire::Fresh(token);
            }
            if let Some(floor) = degraded_floor
                && remaining >= floor
                && !remaining.is_zero()
            {
                last_served.set(served);
                return Acquire::Degraded(cached.0.clone());
            }
        }
        if let Some(flight) = state.flights.get(&plan.key) {
            return Acquire::Wait(flight.clone());
        }
        let (tx, rx) = flight();
        let plan = state.interned(plan);
        state.flights.insert(PlanKey(plan.clone()), rx.clone());
        start(plan, tx);
        Acquire::Wait(rx)
    }

    /// Starts a mint for `plan` unless one is in flight; true if started. As with
    /// [`Self::acquire`], `start` is given the plan to mint.
    pub(crate) fn start_refresh(
        &self,
        plan: &Arc<MintPlan>,
        start: impl FnOnce(Arc<MintPlan>, FlightSender<MintResult>),
    ) -> bool {
        let mut state = self.lock();
        if state.flights.contains_key(&plan.key) {
            return false;
        }
        let (tx, rx) = flight();
        let plan = state.interned(plan);
        state.flights.insert(PlanKey(plan.clone()), rx);
        start(plan, tx);
        true
    }

    /// Records a mint's outcome and ends its flight (before the result is published, so a new
    /// caller finds the token). `after_failure` says what a failure does to the cached token.
    pub(crate) fn finish(
        &self,
        plan: &Arc<MintPlan>,
        result: &MintResult,
        after_failure: AfterFailure,
    ) {
        let mut state = self.lock();
        state.flights.remove(&plan.key);
        if let Ok(token) = result {
            debug_assert!(
                token.key == plan.key,
                "a token is cached under its plan's key"
            );
        }
        match (result, after_failure) {
            (Ok(token), _) => {
                state.stored_since_trim = state.stored_since_trim.saturating_add(1);
                // Removed first: an insert over an equal key keeps the old key, which is the
                // old token.
                let last_served = state
                    .entries
                    .remove(&plan.key)
                    .unwrap_or(Cell::new(Served::NEVER));
                if !state.failed.is_empty() {
                    state.failed.remove(&plan.key);
                }
                state.entries.insert(Cached(token.clone()), last_served);
            }
            (Err(_), AfterFailure::Drop) => {
                state.entries.remove(&plan.key);
                state.forget_unused();
            }
            (Err(_), after) => {
                if state.entries.contains_key(&plan.key) {
                    let failures = state.failures(&plan.key) + 1;
                    let retry_at = match after {
                        AfterFailure::Retry { not_before } => Some(retry_at(failures, not_before)),
                        _ => None,
                    };
                    state
                        .failed
                        .insert(PlanKey(plan.clone()), Failed { failures, retry_at });
                }
            }
        }
        // The last mint of a burst (callers' or a refresh round's) has landed: what its requests
        // and answers used between the long-lived tokens is free now, hand it back.
        let trim = state.flights.is_empty() && state.stored_since_trim >= TRIM_AFTER_STORED;
        if trim {
            state.stored_since_trim = 0;
        }
        drop(state);
        self.wake.notify_one();
        if trim {
            release_freed_memory();
        }
    }

    /// Consecutive failed mints for a key.
    #[cfg(test)]
    pub(crate) fn failures(&self, key: &TokenKey) -> u32 {
        self.lock().failures(key)
    }

    /// The cached token of a key, if any (whatever its life).
    pub(crate) fn cached(&self, key: &TokenKey) -> Option<Arc<CachedToken>> {
        self.lock()
            .entries
            .get_key_value(key)
            .map(|(cached, _)| cached.0.clone())
    }

    /// Records that the token of `key` was handed out.
    pub(crate) fn mark_served(&self, key: &TokenKey) {
        let first_use = {
            let state = self.lock();
            let served = Served::at(Instant::now(), state.epoch);
            state
                .entries
                .get(key)
                .is_some_and(|last_served| last_served.replace(served) == Served::NEVER)
        };
        if first_use {
            self.wake.notify_one();
        }
    }

    /// The cached token that is exactly `token`, if any.
    pub(crate) fn find(&self, token: &str) -> Option<Arc<CachedToken>> {
        self.lock()
            .entries
            .keys()
            .find(|cached| cached.0.is(token))
            .map(|cached| cached.0.clone())
    }

    /// Drops exactly `token` from the cache; the dropped token, if it was there.
    pub(crate) fn invalidate(&self, token: &str) -> Option<Arc<CachedToken>> {
        let mut state = self.lock();
        let found = state
            .entries
            .keys()
            .find(|cached| cached.0.is(token))
            .cloned()?;
        state.entries.remove(found.key());
        state.forget_unused();
        Some(found.0)
    }

    /// Drops every token of an App (its JWT was rejected); returns how many.
    pub(crate) fn drop_app(&self, identity: &str) -> usize {
        let mut state = self.lock();
        let before = state.entries.len();
        state
            .entries
            .retain(|cached, _| *cached.key().app_identity != *identity);
        state.forget_unused();
        before - state.entries.len()
    }

    /// Keeps only tokens of these Apps (reload).
    pub(crate) fn retain_apps(&self, identities: &HashSet<String>) {
        let mut state = self.lock();
        state
            .entries
            .retain(|cached, _| identities.contains(&*cached.key().app_identity));
        state.forget_unused();
    }

    /// Removes expired tokens (and the scopes no plan uses any more).
    pub(crate) fn evict_expired(&self, now: Instant) {
        let mut state = self.lock();
        state.entries.retain(|cached, _| cached.0.expires > now);
        state.forget_unused();
    }

    /// Every cached token.
    pub(crate) fn snapshot(&self) -> Vec<Arc<CachedToken>> {
        self.lock()
            .entries
            .keys()
            .map(|cached| cached.0.clone())
            .collect()
    }

    /// The plans due for a background refresh at `now`, and when the next one falls due.
    pub(crate) fn refresh_due(
        &self,
        now: Instant,
        settings: &Settings,
    ) -> (Vec<Arc<MintPlan>>, Option<Instant>) {
        let state = self.lock();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (cached, last_served) in &state.entries {
            let Some(last_served) = last_served.get().instant(state.epoch) else {
                continue;
            };
            let key = cached.key();
            if state.flights.contains_key(key) {
                continue;
            }
            let retry_at = state.failed.get(key).and_then(|f| f.retry_at);
            let Some(at) = refresh_at(&cached.0, last_served, retry_at, settings) else {
                continue;
            };
            if at <= now {
                due.push(cached.0.plan());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (due, next)
    }
}

/// Hands freed heap memory back to the system. A burst of mints leaves the allocator's arenas
/// full of holes (each mint's HTTP exchange and JSON freed between long-lived tokens) that it
/// keeps resident; glibc's `malloc_trim` returns every whole free page (measured: 2.4 MB of
/// 26.5 MB after 15,000 mints, docs/benchmarks.md). A millisecond or so, once per burst.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes the allocator's own
    // locks and touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// When a served token should be re-minted in the background, or `None` when it should not be
/// (not served within `refresh_window` of that time).
///
/// Due when life falls below `min_ttl + refresh_ahead`, but never before a quarter of the
/// token's life has passed (so a token that is short-lived by nature — a test fixture, or a
/// `min_ttl` close to GitHub's hour — cannot cause a mint loop), and not before the retry time
/// set by the last failure.
fn refresh_at(
    token: &CachedToken,
    last_served: Instant,
    retry_at: Option<Instant>,
    settings: &Settings,
) -> Option<Instant> {
    let mut at = refresh_due_at(token, settings);
    if let Some(retry_at) = retry_at {
        at = at.max(retry_at);
    }
    if at >= token.expires || at > last_served + settings.refresh_window {
        return None;
    }
    Some(at)
}

/// When `token` falls due for a refresh by its life alone: below `min_ttl + refresh_ahead`, but
/// not before a quarter of its life has passed (see [`refresh_at`]). A token taken from a peer
/// replica must not be due yet, or the refresher would come straight back for it.
pub(crate) fn refresh_due_at(token: &CachedToken, settings: &Settings) -> Instant {
    let threshold = settings.min_ttl + settings.refresh_ahead;
    let minted_at = token.minted_at();
    let by_ttl = token.expires.checked_sub(threshold).unwrap_or(minted_at);
    by_ttl.max(minted_at + token.lifetime() / 4)
}

/// The next background attempt after `failures` consecutive failures: 1 s doubling to
/// [`REFRESH_RETRY_CAP`], jittered, and not before `not_before` (a rate limit's end) — then
/// spread after it, so the keys one limit held are not refreshed at one instant.
fn retry_at(failures: u32, not_before: Option<Instant>) -> Instant {
    let now = Instant::now();
    let wait = jittered_backoff(
        Duration::from_secs(1),
        failures.saturating_sub(1),
        REFRESH_RETRY_CAP,
    );
    let at = now + wait;
    not_before.map_or(at, |until| {
        at.max(until + resume_spread(until.saturating_duration_since(now)))
    })
}

/// Settings and scopes for the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// GitHub's hour-long defaults.
    pub(crate) fn settings() -> Settings {
        Settings {
            min_ttl: Duration::from_secs(1800),
            degraded_min_ttl: Duration::from_secs(300),
            refresh_ahead: Duration::from_secs(300),
            refresh_window: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(300),
            installation_cache_ttl: Duration::from_secs(3600),
        }
    }

    /// acme/`repo` in installation 100 of App `acme-bot`, not narrowed.
    pub(crate) fn scope(repo: &str) -> Scope {
        Scope {
            host: "github.com".into(),
            app_identity: "app".into(),
            installation_id: 100,
            repositories: vec![repo.into()],
            app_name: "acme-bot".into(),
            app_label: "acme-bot (id 1)".into(),
            account: "acme".into(),
            target: format!("acme/{repo}").into(),
            narrowing: Narrowing::None,
            installation_permissions: Permissions::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{scope, settings};
    use super::*;

    fn plan(repo: &str) -> Arc<MintPlan> {
        Arc::new(MintPlan::new(scope(repo), None))
    }

    fn token(plan: &Arc<MintPlan>, secret: &str, life: Duration) -> Arc<CachedToken> {
        let now = Instant::now();
        Arc::new(CachedToken::new(
            Token::new(secret),
            now + life,
            now,
            "2026-01-01T00:00:00Z".parse().unwrap(),
            plan,
            Permissions::new(),
        ))
    }

    /// Caches a token `secret` of `life` for `plan` through a mint, as the broker does.
    fn store(cache: &TokenCache, plan: &Arc<MintPlan>, secret: &str, life: Duration) {
        let mut minting = None;
        let Acquire::Wait(_) =
            cache.acquire(plan, Duration::ZERO, None, |plan, _| minting = Some(plan))
        else {
            panic!("empty cache")
        };
        let plan = minting.expect("a mint started");
        cache.finish(&plan, &Ok(token(&plan, secret, life)), AfterFailure::Keep);
    }

    /// The daemon holds one of each per cached token (docs/benchmarks-findings.md): a token
    /// block of 136 bytes with its `Arc` counts (glibc: a 144-byte chunk) and a 16-byte table
    /// slot. Growing them costs every cached token; this says so before a benchmark does.
    #[test]
    fn per_token_blocks_stay_small() {
        assert_eq!(std::mem::size_of::<CachedToken>(), 120);
        assert_eq!(std::mem::size_of::<(Cached, Cell<Served>)>(), 16);
    }

    #[tokio::test(start_paused = true)]
    async fn last_served_counts_whole_seconds_from_the_epoch() {
        let epoch = Instant::now();
        assert_eq!(Served::NEVER.instant(epoch), None);
        let later = epoch + Duration::from_millis(2_700);
        assert_eq!(
            Served::at(later, epoch).instant(epoch),
            Some(epoch + Duration::from_secs(2))
        );
        assert_ne!(
            Served::at(epoch, epoch),
            Served::NEVER,
            "served at the epoch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_keeps_its_expiry_and_life() {
        let t = token(&plan("widgets"), "ghs_one", Duration::from_secs(3600));
        assert_eq!(t.lifetime(), Duration::from_secs(3600));
        assert_eq!(t.minted_at(), Instant::now());
        assert_eq!(t.expires_at().to_string(), "2026-01-01T00:00:00Z");
        assert!(t.is("ghs_one") && !t.is("ghs_two") && !t.is("ghs_on"));
    }

    #[tokio::test(start_paused = true)]
    async fn serves_only_with_enough_life() {
        let cache = TokenCache::default();
        let p = plan("widgets");
        store(&cache, &p, "ghs_one", Duration::from_secs(3600));
        assert!(matches!(
            cache.acquire(&p, Duration::from_secs(1800), None, |_, _| panic!()),
            Acquire::Fresh(_)
        ));
        tokio::time::advance(Duration::from_secs(1801)).await;
        let mut started = false;
        assert!(matches!(
            cache.acquire(&p, Duration::from_secs(1800), None, |_, _| started = true),
            Acquire::Wait(_)
        ));
        assert!(started);
        // A second caller joins the same flight instead of starting another.
        assert!(matches!(
            cache.acquire(&p, Duration::from_secs(1800), None, |_, _| panic!(
                "second mint"
            )),
            Acquire::Wait(_)
        ));
        // While GitHub fails, the degraded margin applies; never an expired token.
        assert!(matches!(
            cache.acquire(
                &p,
                Duration::from_secs(1800),
                Some(Duration::from_secs(300)),
                |_, _| panic!()
            ),
            Acquire::Degraded(_)
        ));
        tokio::time::advance(Duration::from_secs(1799)).await;
        assert!(matches!(
            cache.acquire(
                &p,
                Duration::from_secs(1800),
                Some(Duration::ZERO),
                |_, _| {}
            ),
            Acquire::Wait(_)
        ));
    }

    #[test]
    fn the_request_body_is_built_from_the_narrowing_and_the_key() {
        let narrowed = |narrowing: Narrowing, permissions: Option<&str>| {
            MintPlan::new(
                Scope {
                    narrowing,
                    ..scope("widgets")
                },
                permissions.map(|list| Permissions::parse_list(list).unwrap()),
            )
        };
        let by_name = narrowed(Narrowing::Name("Widgets".into()), Some("contents:read"));
        assert_eq!(
            serde_json::to_string(&by_name.body()).unwrap(),
            r#"{"repositories":["Widgets"],"permissions":{"contents":"read"}}"#
        );
        let by_id = narrowed(Narrowing::Id(42), Some("contents:read"));
        assert_eq!(
            serde_json::to_string(&by_id.body()).unwrap(),
            r#"{"repository_ids":[42],"permissions":{"contents":"read"}}"#
        );
        let wide = narrowed(Narrowing::None, None);
        assert_eq!(serde_json::to_string(&wide.body()).unwrap(), "{}");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_differing_only_by_permissions_share_one_scope() {
        let cache = TokenCache::default();
        let with = |list: &str| {
            Arc::new(MintPlan::new(
                scope("widgets"),
                Some(Permissions::parse_list(list).unwrap()),
            ))
        };
        let mut minted = Vec::new();
        for list in ["contents:read", "issues:write"] {
            let asked = with(list);
            cache.acquire(&asked, Duration::ZERO, None, |plan, _| minted.push(plan));
        }
        assert_eq!(minted.len(), 2);
        assert!(Arc::ptr_eq(&minted[0].key.scope, &minted[1].key.scope));
        assert_eq!(minted[1].key, with("issues:write").key);
        assert_eq!(cache.lock().scopes.len(), 1);
        // Equal keys, different narrowing: a scope of its own (the mint must send the id).
        let renamed = Arc::new(MintPlan::new(
            Scope {
                narrowing: Narrowing::Id(7),
                ..scope("widgets")
            },
            Some(Permissions::parse_list("pages:read").unwrap()),
        ));
        cache.acquire(&renamed, Duration::ZERO, None, |plan, _| minted.push(plan));
        assert_eq!(minted[2].narrowing, Narrowing::Id(7));
        assert_eq!(cache.lock().scopes.len(), 2);
        // Nothing cached and nothing in flight any more: the scopes go.
        for plan in &minted {
            cache.finish(
                plan,
                &Err(BrokerError::unavailable("down")),
                AfterFailure::Keep,
            );
        }
        drop((minted, renamed));
        cache.evict_expired(Instant::now());
        assert!(cache.lock().scopes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_drops_exactly_that_token() {
        let cache = TokenCache::default();
        let (a, b) = (plan("a"), plan("b"));
        store(&cache, &a, "ghs_aaa", Duration::from_secs(3600));
        store(&cache, &b, "ghs_bbb", Duration::from_secs(3600));
        assert!(cache.invalidate("ghs_zzz").is_none());
        assert!(cache.invalidate("ghs_aaa").is_some());
        assert!(cache.cached(&a.key).is_none());
        assert!(cache.cached(&b.key).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_schedule() {
        let cache = TokenCache::default();
        let s = settings();
        let p = plan("widgets");
        store(&cache, &p, "ghs_one", Duration::from_secs(3600));
        let (due, next) = cache.refresh_due(Instant::now(), &s);
        assert!(
            due.is_empty() && next.is_none(),
            "never served: not refreshed"
        );
        cache.mark_served(&p.key);
        let (due, next) = cache.refresh_due(Instant::now(), &s);
        assert!(due.is_empty());
        assert_eq!(
            next.unwrap() - Instant::now(),
            Duration::from_secs(3600 - 2100)
        );
        tokio::time::advance(Duration::from_secs(1500)).await;
        assert_eq!(cache.refresh_due(Instant::now(), &s).0.len(), 1);
        // A failure defers the next attempt: by the backoff, and past a rate limit's end.
        let rate_limited_until = Instant::now() + Duration::from_secs(10);
        let down = || Err(BrokerError::unavailable("down"));
        cache.finish(
            &p,
            &down(),
            AfterFailure::Retry {
                not_before: Some(rate_limited_until),
            },
        );
        assert_eq!(cache.failures(&p.key), 1);
        let next = cache.refresh_due(Instant::now(), &s).1.unwrap();
        assert!(
            next >= rate_limited_until && next <= rate_limited_until + Duration::from_millis(2500),
            "after the limit, spread by at most a quarter of its 10 s: {:?}",
            next - rate_limited_until
        );
        cache.finish(&p, &down(), AfterFailure::Retry { not_before: None });
        let (due, next) = cache.refresh_due(Instant::now(), &s);
        let wait = next.unwrap() - Instant::now();
        assert!(due.is_empty());
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2),
            "second failure: 2 s, half jittered: {wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tokens_are_not_refreshed_and_short_tokens_do_not_loop() {
        let cache = TokenCache::default();
        let s = settings();
        let p = plan("widgets");
        store(&cache, &p, "ghs_one", Duration::from_secs(3600));
        cache.mark_served(&p.key);
        tokio::time::advance(Duration::from_secs(3500)).await;
        let mut s2 = s.clone();
        s2.refresh_window = Duration::from_secs(600);
        assert!(
            cache.refresh_due(Instant::now(), &s2).0.is_empty(),
            "last served an hour ago"
        );
        // A 60 s token with min_ttl 30m: refreshed no earlier than a quarter of its life.
        let q = plan("short");
        store(&cache, &q, "ghs_short", Duration::from_secs(60));
        cache.mark_served(&q.key);
        let (due, next) = cache.refresh_due(Instant::now(), &s);
        assert!(!due.iter().any(|d| d.key == q.key));
        assert_eq!(next.unwrap() - Instant::now(), Duration::from_secs(15));
        tokio::time::advance(Duration::from_secs(61)).await;
        cache.evict_expired(Instant::now());
        assert!(cache.cached(&q.key).is_none());
    }
}
