//! The shared store as its users see it: sealed values under HMAC-derived names (`seal.rs`),
//! every command bounded by `[cache] timeout`, and the store's standing — the first failure
//! marks it down and logs once, every later command is skipped (the caller's local path serves)
//! until a background probe sees the store answer again, which is logged once too.
//!
//! The broker's token cache ([`super::SharedCache`]) and the API proxy's answer cache (through
//! the daemon) both use it, so there is one Redis client and one sealing code in the workspace.

use super::{Sealer, Store, StoreError, StoreFuture, connect};
use crate::config::CacheConfig;
use ghapp_protocol::api::SharedCacheStatus;
use ghapp_protocol::time::Timestamp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use zeroize::Zeroizing;

/// How often a store marked down is tried again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Who uses a store, for its two log lines (down, back).
#[derive(Debug, Clone, Copy)]
pub struct StoreUser {
    /// What the logs call the store (`the shared cache`).
    pub label: &'static str,
    /// What happens while it is down (`this replica serves from its own cache …`).
    pub while_down: &'static str,
    /// What resumes when it is back (`sharing tokens with the other replicas`).
    pub when_back: &'static str,
}

/// Whether the store answers, and since when it does not.
#[derive(Default)]
struct Standing {
    down: AtomicBool,
    problem: Mutex<Option<(String, SystemTime)>>,
}

/// A shared store with its sealer and standing. Values put here are sealed with the cache key
/// as associated data under a name derived from it, and expire with the TTL given.
pub struct SealedStore {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sealer: Sealer,
    user: StoreUser,
    standing: Standing,
    /// Wakes the probe when the store goes down.
    went_down: Arc<Notify>,
    /// `[cache] timeout`: one store command's deadline.
    pub(crate) deadline: Duration,
}

impl std::fmt::Debug for SealedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedStore")
            .field("store", &self.store.describe())
            .field("user", &self.user.label)
            .finish()
    }
}

impl SealedStore {
    /// The store `[cache]` names, sealed with its `encryption_key_file`, with its probe running
    /// (a tokio runtime is needed). Connects lazily: a store down at start only means its users
    /// start on their own. The error names the file or URL at fault, never a secret.
    pub fn start(config: &CacheConfig, user: StoreUser) -> Result<Arc<SealedStore>, String> {
        let sealer = Sealer::load(&config.encryption_key_file).map_err(|e| e.to_string())?;
        let store = connect(config)?;
        Ok(SealedStore::with_store(store, sealer, config.timeout, user))
    }

    /// A sealed store over `store` (tests bring their own).
    pub(crate) fn with_store(
        store: Arc<dyn Store>,
        sealer: Sealer,
        deadline: Duration,
        user: StoreUser,
    ) -> Arc<SealedStore> {
        let sealed = Arc::new(SealedStore {
            store,
            sealer,
            user,
            standing: Standing::default(),
            went_down: Arc::new(Notify::new()),
            deadline,
        });
        tokio::spawn(probe(Arc::downgrade(&sealed)));
        sealed
    }

    /// Where the store is (`redis://HOST:PORT`, no credentials).
    pub fn describe(&self) -> &str {
        self.store.describe()
    }

    /// Where the store is and whether it answers.
    pub fn status(&self) -> SharedCacheStatus {
        let problem = self
            .standing
            .problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(why, since)| format!("{why} (since {})", Timestamp::from(*since)));
        SharedCacheStatus {
            backend: self.store.describe().to_string(),
            healthy: !self.is_down(),
            problem,
        }
    }

    /// True while the store is counted down (its users serve alone).
    pub fn is_down(&self) -> bool {
        self.standing.down.load(Ordering::Acquire)
    }

    /// The value sealed under `cache_key` (store name `prefix` + its HMAC) and its life left;
    /// `None` when there is none, it does not open under this key and name, or the store is
    /// down or does not answer within the deadline.
    pub async fn get(
        &self,
        prefix: &str,
        cache_key: &str,
    ) -> Option<(Zeroizing<Vec<u8>>, Duration)> {
        let name = self.sealer.name(prefix, cache_key);
        let (sealed, remaining) = self.ask(self.store.get(name)).await??;
        let plain = self.sealer.open(cache_key, &sealed)?;
        Some((plain, remaining))
    }

    /// Seals `plain` for `cache_key` and stores it for `ttl` (skipped while the store is down;
    /// a failure marks it down).
    pub async fn put(&self, prefix: &str, cache_key: &str, plain: &[u8], ttl: Duration) {
        let Some(sealed) = self.sealer.seal(cache_key, plain) else {
            return;
        };
        let name = self.sealer.name(prefix, cache_key);
        self.ask(self.store.put(name, sealed, ttl)).await;
    }

    /// Runs one store command within the deadline; `None` when the store is down (or goes
    /// down with this command: then it is marked so, and logged once).
    pub(crate) async fn ask<T>(&self, command: StoreFuture<'_, T>) -> Option<T> {
        if self.is_down() {
            return None;
        }
        let why = match tokio::time::timeout(self.deadline, command).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(StoreError(why))) => why,
            Err(_) => format!("no answer within {} ms", self.deadline.as_millis()),
        };
        self.mark_down(why);
        None
    }

    fn mark_down(&self, why: String) {
        if self.standing.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            store = %self.store.describe(),
            reason = %why,
            "{} is unreachable: {}",
            self.user.label,
            self.user.while_down
        );
        *self
            .standing
            .problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((why, SystemTime::now()));
        self.went_down.notify_one();
    }

    fn mark_up(&self) {
        *self
            .standing
            .problem
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if self.standing.down.swap(false, Ordering::AcqRel) {
            tracing::info!(
                store = %self.store.describe(),
                "{} answers again: {}",
                self.user.label,
                self.user.when_back
            );
        }
    }
}

/// Tries a store marked down every [`PROBE_INTERVAL`] until it answers; ends with the store.
async fn probe(sealed: Weak<SealedStore>) {
    loop {
        let Some(store) = sealed.upgrade() else {
            return;
        };
        if !store.is_down() {
            let went_down = store.went_down.clone();
            drop(store);
            // Re-checked now and then, so a dropped store ends the task.
            let _ = tokio::time::timeout(PROBE_INTERVAL * 10, went_down.notified()).await;
            continue;
        }
        drop(store);
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(store) = sealed.upgrade() else {
            return;
        };
        let answered = tokio::time::timeout(store.deadline, store.store.ping()).await;
        if let Ok(Ok(())) = answered {
            store.mark_up();
        }
    }
}
