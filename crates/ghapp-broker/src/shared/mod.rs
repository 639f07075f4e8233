//! The token cache shared by broker replicas (`[cache]`): a token one replica minted is served
//! by every replica, and one replica in the fleet mints a key while the others wait for it.
//!
//! The broker calls [`SharedCache`] from inside a mint's flight (so the local single-flight
//! still holds: one Redis conversation per key per replica) and from an installation look-up's.
//! The store behind it is a [`Store`] — Redis in `redis.rs` — so nothing here knows Redis:
//!
//! 1. a token stored by a peer with enough life (and not yet due for refresh) is taken as is;
//! 2. else this replica claims the key (`SET lock NX PX 10000`), looks once more (the last
//!    holder may have stored it between the two) and mints, stores, releases;
//! 3. a replica that finds the key claimed polls for the peer's token for at most
//!    `[cache] peer_wait` (2 s by default), then mints itself.
//!
//! What is stored is sealed (`seal.rs`): keys are HMACs, values AES-256-GCM with the cache key
//! as associated data, expiring with the token (`PX` = its life left). Installation look-ups
//! ("found" answers) are shared the same way for `installation_cache_ttl`.
//!
//! The store down or slow: every command is bounded by `[cache] timeout` (250 ms by default); the first failure
//! marks the store down, logs it once, and every request from then on goes straight to the
//! local path (this replica's cache and single-flight) until a background probe sees the store
//! answer again, which is logged once too. That standing, the sealing and the store together
//! are a [`SealedStore`] (`sealed.rs`), which the daemon's API proxy uses too.

#[cfg(feature = "redis")]
mod redis;
mod seal;
mod sealed;

use crate::app::Settings;
use crate::cache::{CachedToken, MintPlan, TokenKey, digest, refresh_due_at};
use crate::config::CacheConfig;
use crate::error::BrokerError;
use crate::github::InstallationInfo;
use crate::resolve::{Resolved, Target};
use ghapp_protocol::api::SharedCacheStatus;
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use zeroize::Zeroizing;

pub(crate) use seal::Sealer;
pub use sealed::{SealedStore, StoreUser};

/// How long a claim on a key lasts if its holder never releases it (it died mid-mint).
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(10);

/// How often a waiting replica looks for the peer's token.
const PEER_POLL: Duration = Duration::from_millis(20);

/// How the broker's token cache names itself in the store's two log lines.
const TOKEN_CACHE: StoreUser = StoreUser {
    label: "the shared cache",
    while_down: "this replica serves from its own cache and mints alone until it answers again",
    when_back: "sharing tokens with the other replicas",
};

/// A store failure (its message carries no secret: the store never sees one in clear).
#[derive(Debug, Clone)]
pub(crate) struct StoreError(pub String);

/// A store command in flight.
pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the shared cache needs of its store: opaque values with an expiry, and a claim.
pub(crate) trait Store: Send + Sync {
    /// The value under `key` and its life left, if any.
    fn get(&self, key: String) -> StoreFuture<'_, Option<(Vec<u8>, Duration)>>;
    /// Stores `value` under `key` for `ttl`.
    fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()>;
    /// Sets `key` to `owner` for `ttl` unless it is set; true if this call set it.
    fn claim(&self, key: String, owner: String, ttl: Duration) -> StoreFuture<'_, bool>;
    /// Deletes `key` if it still holds `owner`.
    fn release(&self, key: String, owner: String) -> StoreFuture<'_, ()>;
    /// Deletes `key`.
    fn delete(&self, key: String) -> StoreFuture<'_, ()>;
    /// Answers if the store is up.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Where it is, without credentials (`redis://HOST:PORT`).
    fn describe(&self) -> &str;
}

/// A token as stored (sealed): what a peer needs to serve it. The expiry comes from the store's
/// TTL, not a wall clock, so replicas' clocks need not agree.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    token: Token,
    /// Its life when GitHub minted it, in seconds (for the refresh policy's quarter-life rule).
    lifetime_secs: u64,
    permissions: Permissions,
}

/// A "found" installation look-up as stored (sealed).
#[derive(Serialize, Deserialize)]
struct StoredInstallation {
    app_identity: String,
    app_name: String,
    id: u64,
    account: String,
    permissions: Permissions,
    enterprise: bool,
    repository_id: Option<u64>,
}

/// The shared cache of one broker replica.
pub(crate) struct SharedCache {
    /// The store, its sealer and standing.
    sealed: Arc<SealedStore>,
    /// This replica's claim value: random, so a claim is released only by its holder.
    replica: String,
    /// `[cache] peer_wait`: how long to wait for the peer holding a claim.
    peer_wait: Duration,
    /// Installations a mint found gone, and when: a peer's stored look-up naming one is not
    /// believed until the installation cache's TTL has passed (it is looked up again).
    distrusted: Mutex<HashMap<u64, Instant>>,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("store", &self.sealed.describe())
            .finish()
    }
}

/// Why `[cache]` could not be put to use.
fn cache_error(message: String) -> BrokerError {
    BrokerError::internal(format!("[cache]: {message}"))
}

impl SharedCache {
    /// The shared cache `config` describes, with its probe running (a tokio runtime is needed).
    pub(crate) fn start(config: &CacheConfig) -> Result<Arc<SharedCache>, BrokerError> {
        let sealed = SealedStore::start(config, TOKEN_CACHE).map_err(cache_error)?;
        tracing::info!(store = %sealed.describe(), "sharing tokens with the other replicas through the shared cache");
        Ok(SharedCache::with_sealed(sealed, config.peer_wait))
    }

    /// A shared cache over `store` (tests bring their own).
    #[cfg(test)]
    pub(crate) fn with_store(
        store: Arc<dyn Store>,
        sealer: Sealer,
        deadline: Duration,
        peer_wait: Duration,
    ) -> Arc<SharedCache> {
        let sealed = SealedStore::with_store(store, sealer, deadline, TOKEN_CACHE);
        SharedCache::with_sealed(sealed, peer_wait)
    }

    fn with_sealed(sealed: Arc<SealedStore>, peer_wait: Duration) -> Arc<SharedCache> {
        // A replica id only needs to differ from its peers'; the clock is the fallback.
        let mut id = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        let _ = aws_lc_rs::rand::fill(&mut id);
        Arc::new(SharedCache {
            sealed,
            replica: hex::encode(id),
            peer_wait,
            distrusted: Mutex::new(HashMap::new()),
        })
    }

    /// Where the store is and whether it answers, for `/v1/status`.
    pub(crate) fn status(&self) -> SharedCacheStatus {
        self.sealed.status()
    }

    fn is_down(&self) -> bool {
        self.sealed.is_down()
    }

    /// One store command within `[cache] timeout` ([`SealedStore::ask`]).
    async fn ask<T>(&self, command: StoreFuture<'_, T>) -> Option<T> {
        self.sealed.ask(command).await
    }

    fn store(&self) -> &dyn Store {
        &*self.sealed.store
    }

    fn sealer(&self) -> &Sealer {
        &self.sealed.sealer
    }

    /// The token of `plan`: a peer's (stored with enough life), or from `mint` — run by this
    /// replica when it holds the key's claim, when the peer holding it did not deliver within
    /// `[cache] peer_wait`, or when the store is down. A token this replica mints is stored for the
    /// others.
    pub(crate) async fn mint_once<E, F, Fut>(
        &self,
        plan: &Arc<MintPlan>,
        settings: &Settings,
        mint: F,
    ) -> Result<Arc<CachedToken>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<CachedToken>, E>>,
    {
        let cache_key = token_cache_key(&plan.key);
        let name = self.sealer().name("ghapp:token:", &cache_key);
        if let Some(token) = self.fetch_token(&name, &cache_key, plan, settings).await {
            return Ok(token);
        }
        let claim = self.sealer().name("ghapp:claim:", &cache_key);
        let claimed = self
            .ask(
                self.store()
                    .claim(claim.clone(), self.replica.clone(), CLAIM_TTL),
            )
            .await;
        match claimed {
            Some(true) => {
                // The last holder may have stored the token between the look and the claim.
                let result = match self.fetch_token(&name, &cache_key, plan, settings).await {
                    Some(token) => Ok(token),
                    None => self.mint_and_store(&name, &cache_key, mint).await,
                };
                self.ask(self.store().release(claim, self.replica.clone()))
                    .await;
                result
            }
            Some(false) => {
                let deadline = Instant::now() + self.peer_wait;
                while Instant::now() < deadline && !self.is_down() {
                    tokio::time::sleep(PEER_POLL).await;
                    if let Some(token) = self.fetch_token(&name, &cache_key, plan, settings).await {
                        return Ok(token);
                    }
                }
                tracing::info!(target = %plan.target, waited_ms = self.peer_wait.as_millis() as u64, "the replica holding the claim did not deliver in time: minting here");
                self.mint_and_store(&name, &cache_key, mint).await
            }
            None => mint().await,
        }
    }

    async fn mint_and_store<E, F, Fut>(
        &self,
        name: &str,
        cache_key: &str,
        mint: F,
    ) -> Result<Arc<CachedToken>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<CachedToken>, E>>,
    {
        let result = mint().await;
        if let Ok(token) = &result {
            self.store_token(name, cache_key, token).await;
        }
        result
    }

    /// A peer's token for `plan` that is fit to serve: it has `min_ttl` left and is not yet due
    /// for refresh (else the refresher would come straight back for it).
    async fn fetch_token(
        &self,
        name: &str,
        cache_key: &str,
        plan: &Arc<MintPlan>,
        settings: &Settings,
    ) -> Option<Arc<CachedToken>> {
        let (sealed, remaining) = self.ask(self.store().get(name.to_string())).await??;
        let plain = self.sealer().open(cache_key, &sealed)?;
        let stored: StoredToken = serde_json::from_slice(&plain).ok()?;
        let now = Instant::now();
        let lifetime = Duration::from_secs(stored.lifetime_secs).max(remaining);
        let token = CachedToken::new(
            stored.token,
            now + remaining,
            now.checked_sub(lifetime - remaining).unwrap_or(now),
            Timestamp::from(SystemTime::now() + remaining),
            plan,
            stored.permissions,
        );
        if remaining < settings.min_ttl || refresh_due_at(&token, settings) <= now {
            return None;
        }
        tracing::debug!(target = %plan.target, token = %token.token.fingerprint(), remaining_secs = remaining.as_secs(), "took a token another replica minted");
        Some(Arc::new(token))
    }

    async fn store_token(&self, name: &str, cache_key: &str, token: &CachedToken) {
        let remaining = token.remaining(Instant::now());
        if remaining < Duration::from_secs(1) {
            return;
        }
        let stored = StoredToken {
            token: token.token.clone(),
            lifetime_secs: token.lifetime().as_secs(),
            permissions: token.permissions.clone(),
        };
        let Ok(plain) = serde_json::to_vec(&stored).map(Zeroizing::new) else {
            return;
        };
        let Some(sealed) = self.sealer().seal(cache_key, &plain) else {
            return;
        };
        self.ask(self.store().put(name.to_string(), sealed, remaining))
            .await;
    }

    /// Drops the stored token of `key` if it is still the one with `token_digest` (git was
    /// refused it: revoked), so no replica takes it again; a newer one stays.
    pub(crate) async fn forget_token(&self, key: &TokenKey, token_digest: [u8; 32]) {
        let cache_key = token_cache_key(key);
        let name = self.sealer().name("ghapp:token:", &cache_key);
        let Some(Some((sealed, _))) = self.ask(self.store().get(name.clone())).await else {
            return;
        };
        let same = self
            .sealer()
            .open(&cache_key, &sealed)
            .and_then(|plain| serde_json::from_slice::<StoredToken>(&plain).ok())
            .is_some_and(|stored| digest(stored.token.expose()) == token_digest);
        if same {
            self.ask(self.store().delete(name)).await;
        }
    }

    /// A peer's "found" look-up for `target` among the Apps `apps` (identities), if stored and
    /// not naming an installation a mint here found gone.
    pub(crate) async fn fetch_installation(
        &self,
        target: &Target,
        apps: &[String],
    ) -> Option<Resolved> {
        let cache_key = installation_cache_key(target, apps);
        let name = self.sealer().name("ghapp:installation:", &cache_key);
        let (sealed, _) = self.ask(self.store().get(name)).await??;
        let plain = self.sealer().open(&cache_key, &sealed)?;
        let stored: StoredInstallation = serde_json::from_slice(&plain).ok()?;
        if self.is_distrusted(stored.id) {
            return None;
        }
        Some(Resolved {
            app_identity: stored.app_identity,
            app_name: stored.app_name,
            installation: InstallationInfo {
                id: stored.id,
                account: stored.account,
                permissions: stored.permissions,
                suspended: false,
                enterprise: stored.enterprise,
                repository_id: stored.repository_id,
            },
        })
    }

    /// Stores a "found", not suspended look-up for the other replicas, for `ttl`.
    pub(crate) async fn store_installation(
        &self,
        target: &Target,
        apps: &[String],
        resolved: &Resolved,
        ttl: Duration,
    ) {
        if resolved.installation.suspended || ttl.is_zero() {
            return;
        }
        let cache_key = installation_cache_key(target, apps);
        let stored = StoredInstallation {
            app_identity: resolved.app_identity.clone(),
            app_name: resolved.app_name.clone(),
            id: resolved.installation.id,
            account: resolved.installation.account.clone(),
            permissions: resolved.installation.permissions.clone(),
            enterprise: resolved.installation.enterprise,
            repository_id: resolved.installation.repository_id,
        };
        let Ok(plain) = serde_json::to_vec(&stored) else {
            return;
        };
        let Some(sealed) = self.sealer().seal(&cache_key, &plain) else {
            return;
        };
        let name = self.sealer().name("ghapp:installation:", &cache_key);
        self.ask(self.store().put(name, sealed, ttl)).await;
    }

    /// A mint found `installation_id` gone: peers' stored look-ups naming it are ignored for
    /// `ttl` (the fresh look-up then replaces them).
    pub(crate) fn distrust_installation(&self, installation_id: u64, ttl: Duration) {
        let now = Instant::now();
        let mut distrusted = self.distrusted.lock().unwrap_or_else(|p| p.into_inner());
        distrusted.retain(|_, until| *until > now);
        distrusted.insert(installation_id, now + ttl);
    }

    fn is_distrusted(&self, installation_id: u64) -> bool {
        self.distrusted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&installation_id)
            .is_some_and(|until| *until > Instant::now())
    }
}

/// The store behind `config`.
fn connect(config: &CacheConfig) -> Result<Arc<dyn Store>, String> {
    #[cfg(feature = "redis")]
    {
        Ok(Arc::new(redis::RedisStore::connect(config)?))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = config;
        Err("this ghapp was built without the `redis` feature: it cannot use redis_url".into())
    }
}

/// A token's cache key as the shared cache names and binds it: every field of [`TokenKey`].
fn token_cache_key(key: &TokenKey) -> String {
    format!(
        "token\n{}\n{}\n{}\n{}\n{}",
        key.host,
        key.app_identity,
        key.installation_id,
        key.repositories.join(","),
        key.permissions
            .as_ref()
            .map_or_else(|| "*".to_string(), Permissions::to_list)
    )
}

/// An installation look-up's cache key: the target and the candidate Apps asked.
fn installation_cache_key(target: &Target, apps: &[String]) -> String {
    format!(
        "installation\n{}\n{}\n{}\n{}",
        target.host,
        target.owner.as_deref().unwrap_or_default(),
        target.repo.as_deref().unwrap_or_default(),
        apps.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::sealed::PROBE_INTERVAL;
    use super::*;
    use crate::cache::test_support::scope;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// `[cache] timeout` and `peer_wait` by default.
    const COMMAND_DEADLINE: Duration = Duration::from_millis(250);
    const PEER_WAIT: Duration = Duration::from_secs(2);

    /// An in-memory store that can be down or slow, counting the commands it saw.
    #[derive(Default)]
    struct MemoryStore {
        values: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
        down: AtomicBool,
        slow: AtomicBool,
        commands: AtomicUsize,
    }

    impl MemoryStore {
        async fn enter(&self) -> Result<(), StoreError> {
            self.commands.fetch_add(1, Ordering::SeqCst);
            if self.slow.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError("connection refused".into()));
            }
            Ok(())
        }

        fn live(&self, key: &str) -> Option<(Vec<u8>, Duration)> {
            let values = self.values.lock().unwrap();
            let (value, until) = values.get(key)?;
            let left = until.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| (value.clone(), left))
        }
    }

    impl Store for MemoryStore {
        fn get(&self, key: String) -> StoreFuture<'_, Option<(Vec<u8>, Duration)>> {
            Box::pin(async move {
                self.enter().await?;
                Ok(self.live(&key))
            })
        }
        fn put(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<'_, ()> {
            Box::pin(async move {
                self.enter().await?;
                self.values
                    .lock()
                    .unwrap()
                    .insert(key, (value, Instant::now() + ttl));
                Ok(())
            })
        }
        fn claim(&self, key: String, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
            Box::pin(async move {
                self.enter().await?;
                if self.live(&key).is_some() {
                    return Ok(false);
                }
                self.values
                    .lock()
                    .unwrap()
                    .insert(key, (owner.into_bytes(), Instant::now() + ttl));
                Ok(true)
            })
        }
        fn release(&self, key: String, owner: String) -> StoreFuture<'_, ()> {
            Box::pin(async move {
                self.enter().await?;
                let mut values = self.values.lock().unwrap();
                if values
                    .get(&key)
                    .is_some_and(|(v, _)| *v == owner.as_bytes())
                {
                    values.remove(&key);
                }
                Ok(())
            })
        }
        fn delete(&self, key: String) -> StoreFuture<'_, ()> {
            Box::pin(async move {
                self.enter().await?;
                self.values.lock().unwrap().remove(&key);
                Ok(())
            })
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            Box::pin(self.enter())
        }
        fn describe(&self) -> &str {
            "memory://test"
        }
    }

    fn settings() -> Settings {
        Settings {
            min_ttl: Duration::from_secs(600),
            degraded_min_ttl: Duration::from_secs(60),
            refresh_ahead: Duration::from_secs(300),
            refresh_window: Duration::from_secs(3600),
            negative_cache_ttl: Duration::from_secs(60),
            installation_cache_ttl: Duration::from_secs(3600),
        }
    }

    fn plan(repo: &str) -> Arc<MintPlan> {
        Arc::new(MintPlan::new(scope(repo), None))
    }

    /// A mint that takes 300 ms and counts itself.
    async fn mint(plan: Arc<MintPlan>, mints: &AtomicUsize) -> Result<Arc<CachedToken>, ()> {
        let n = mints.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let secret = format!("ghs_minted{n}");
        let now = Instant::now();
        Ok(Arc::new(CachedToken::new(
            Token::new(secret),
            now + Duration::from_secs(3600),
            now,
            Timestamp::from(SystemTime::now() + Duration::from_secs(3600)),
            &plan,
            Permissions::new(),
        )))
    }

    fn fleet(store: &Arc<MemoryStore>, n: usize) -> Vec<Arc<SharedCache>> {
        (0..n)
            .map(|_| {
                SharedCache::with_store(
                    store.clone(),
                    Sealer::from_key(&[9u8; 32]),
                    COMMAND_DEADLINE,
                    PEER_WAIT,
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn one_replica_mints_while_the_others_wait_for_its_token_sealed_in_the_store() {
        let store = Arc::new(MemoryStore::default());
        let replicas = fleet(&store, 3);
        let mints = AtomicUsize::new(0);
        let p = plan("widgets");
        let s = settings();
        let (a, b, c) = tokio::join!(
            replicas[0].mint_once(&p, &s, || mint(p.clone(), &mints)),
            replicas[1].mint_once(&p, &s, || mint(p.clone(), &mints)),
            replicas[2].mint_once(&p, &s, || mint(p.clone(), &mints)),
        );
        assert_eq!(mints.load(Ordering::SeqCst), 1, "one mint in the fleet");
        let tokens: std::collections::HashSet<String> = [a, b, c]
            .into_iter()
            .map(|t| t.unwrap().token.expose().to_string())
            .collect();
        assert_eq!(tokens.len(), 1);
        for (key, (value, _)) in store.values.lock().unwrap().iter() {
            assert!(!key.contains("widgets") && !key.contains("acme"), "{key}");
            assert!(!value.windows(10).any(|w| w == b"ghs_minted"), "sealed");
        }
        // Later callers take the stored token without minting.
        let stored = replicas[1]
            .mint_once(&p, &s, || mint(p.clone(), &mints))
            .await
            .unwrap();
        assert_eq!(mints.load(Ordering::SeqCst), 1);
        // Refused by GitHub (invalidated): gone from the store, so the next miss mints anew;
        // a digest that is not the stored token's deletes nothing.
        replicas[2].forget_token(&p.key, [0u8; 32]).await;
        replicas[2]
            .mint_once(&p, &s, || mint(p.clone(), &mints))
            .await
            .unwrap();
        assert_eq!(mints.load(Ordering::SeqCst), 1, "another digest: kept");
        replicas[2]
            .forget_token(&p.key, digest(stored.token.expose()))
            .await;
        replicas[0]
            .mint_once(&p, &s, || mint(p.clone(), &mints))
            .await
            .unwrap();
        assert_eq!(mints.load(Ordering::SeqCst), 2, "forgotten: minted again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_holder_that_never_delivers_is_waited_for_at_most_peer_wait() {
        let store = Arc::new(MemoryStore::default());
        let replicas = fleet(&store, 1);
        let p = plan("widgets");
        let claim = replicas[0]
            .sealer()
            .name("ghapp:claim:", &token_cache_key(&p.key));
        assert!(
            store
                .claim(claim, "a dead replica".into(), CLAIM_TTL)
                .await
                .unwrap()
        );
        let mints = AtomicUsize::new(0);
        let started = Instant::now();
        replicas[0]
            .mint_once(&p, &settings(), || mint(p.clone(), &mints))
            .await
            .unwrap();
        let waited = started.elapsed() - Duration::from_millis(300);
        assert!(
            waited >= PEER_WAIT && waited < PEER_WAIT + PEER_POLL * 3,
            "{waited:?}"
        );
        assert_eq!(mints.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_down_or_slow_means_alone_at_once_and_rejoining_by_itself() {
        let store = Arc::new(MemoryStore::default());
        let replicas = fleet(&store, 1);
        let shared = &replicas[0];
        let mints = AtomicUsize::new(0);
        let s = settings();
        store.slow.store(true, Ordering::SeqCst);
        let started = Instant::now();
        shared
            .mint_once(&plan("a"), &s, || mint(plan("a"), &mints))
            .await
            .unwrap();
        assert!(
            started.elapsed() <= COMMAND_DEADLINE + Duration::from_millis(300),
            "a slow store costs one deadline: {:?}",
            started.elapsed()
        );
        let status = shared.status();
        assert!(!status.healthy && status.problem.unwrap().contains("no answer within 250 ms"));
        // Down: no command is sent at all, no wait.
        store.slow.store(false, Ordering::SeqCst);
        store.down.store(true, Ordering::SeqCst);
        let before = store.commands.load(Ordering::SeqCst);
        let started = Instant::now();
        for repo in ["b", "c", "d"] {
            shared
                .mint_once(&plan(repo), &s, || mint(plan(repo), &mints))
                .await
                .unwrap();
        }
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(900),
            "three mints, no waiting"
        );
        let probes = store.commands.load(Ordering::SeqCst) - before;
        assert!(
            probes <= 3,
            "only the probe touches a store marked down: {probes}"
        );
        // Back: the probe sees it within its interval and sharing resumes.
        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(PROBE_INTERVAL * 2).await;
        assert!(shared.status().healthy);
        assert_eq!(mints.load(Ordering::SeqCst), 4);
        shared
            .mint_once(&plan("e"), &s, || mint(plan("e"), &mints))
            .await
            .unwrap();
        assert!(
            store.values.lock().unwrap().len() == 1,
            "the new token is shared again"
        );
    }
}
