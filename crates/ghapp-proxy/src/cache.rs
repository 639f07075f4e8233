//! The response cache: GitHub's answers to GET requests, keyed by method, URL, `Accept` and the
//! credential class that fetched them (GitHub's answers vary on `Accept` and `Authorization`),
//! kept with their validators (`ETag`, `Last-Modified`) for revalidation. [`Cache`] is two
//! layers: this daemon's LRU bounded by a byte budget ([`MemoryCache`]) in front of an optional
//! store shared with other daemons ([`crate::shared::SharedStore`]: Redis, sealed, wired by the
//! daemon), which is asked only when the local entry is missing or due for revalidation.

use crate::shared::{SharedStore, decode, encode};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lru::LruCache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest answer (as [`Entry::weight`] counts it) kept in the shared store: the `[cache]`
/// Redis also holds the broker's tokens, and `cache_bytes` bounds only this daemon's memory,
/// so large answers (a big file's contents under ever new query strings) stay local.
pub const SHARED_ANSWER_MAX_BYTES: usize = 1024 * 1024;

/// The cache key: `METHOD CLASS ACCEPT URL` in one string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// The key of `method url` fetched with credential class `class` for `accept`.
    pub fn new(method: &str, class: &str, accept: &str, url: &str) -> CacheKey {
        CacheKey(format!("{method} {class} {accept} {url}"))
    }
}

/// One cached answer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// GitHub's status (200).
    pub status: StatusCode,
    /// GitHub's headers (hop-by-hop ones removed).
    pub headers: HeaderMap,
    /// The body as GitHub sent it (upstream URLs not yet rewritten).
    pub body: Bytes,
    /// `ETag`, if any.
    pub etag: Option<String>,
    /// `Last-Modified`, if any.
    pub last_modified: Option<String>,
    /// When GitHub last confirmed it (fetched or answered 304).
    pub validated: Instant,
}

impl Entry {
    /// Bytes it holds (body, headers, validators), for the budget.
    pub fn weight(&self, key: &CacheKey) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        key.0.len()
            + self.body.len()
            + headers
            + self.etag.as_ref().map_or(0, String::len)
            + self.last_modified.as_ref().map_or(0, String::len)
            + 128
    }
}

/// The two layers: the local LRU, and the shared store when the daemon has one.
pub struct Cache {
    local: MemoryCache,
    shared: Option<Arc<dyn SharedStore>>,
}

impl Cache {
    /// A cache of this daemon's own: answers kept for `ttl` within `budget` bytes.
    pub fn new(ttl: Duration, budget: usize) -> Cache {
        Cache {
            local: MemoryCache::new(ttl, budget),
            shared: None,
        }
    }

    /// The same with a store shared by every daemon using it.
    pub fn with_shared(mut self, shared: Arc<dyn SharedStore>) -> Cache {
        self.shared = Some(shared);
        self
    }

    /// Whether a shared store is configured.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The entry to serve or revalidate for `key`: the local one while GitHub confirmed it
    /// within `fresh_for`; otherwise whichever of the local and the shared entry GitHub
    /// confirmed last (a shared one is kept locally from then on). The shared store down or
    /// slow only means the local answer.
    pub async fn get(&self, key: &CacheKey, fresh_for: Duration) -> Option<Arc<Entry>> {
        let local = self.local.get(key);
        if local
            .as_ref()
            .is_some_and(|entry| entry.validated.elapsed() < fresh_for)
        {
            return local;
        }
        let Some(shared) = &self.shared else {
            return local;
        };
        let Some((bytes, remaining)) = shared.load(&key.0).await else {
            return local;
        };
        let age = self.local.ttl.saturating_sub(remaining);
        let validated = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        let Some(found) = decode(&bytes, validated) else {
            return local;
        };
        match local {
            Some(local) if local.validated >= found.validated => Some(local),
            _ => {
                let found = Arc::new(found);
                self.local.put(key.clone(), found.clone());
                Some(found)
            }
        }
    }

    /// The local entry alone (the one [`Cache::get`] just chose).
    pub fn get_local(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.local.get(key)
    }

    /// Stores (or replaces) the entry under `key` locally and in the shared store, which keeps
    /// it for the TTL from GitHub's confirmation. An answer larger than the budget is stored
    /// nowhere; one larger than [`SHARED_ANSWER_MAX_BYTES`] only locally.
    pub async fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        let fits = entry.weight(&key) <= self.local.budget.min(SHARED_ANSWER_MAX_BYTES);
        self.local.put(key.clone(), entry.clone());
        let Some(shared) = &self.shared else {
            return;
        };
        let life = self.local.ttl.saturating_sub(entry.validated.elapsed());
        if !fits || life.is_zero() {
            return;
        }
        shared.store(&key.0, encode(&entry), life).await;
    }

    /// Entries and bytes held locally.
    pub fn usage(&self) -> (usize, usize) {
        self.local.usage()
    }
}

/// The in-memory LRU with a byte budget.
pub struct MemoryCache {
    ttl: Duration,
    budget: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    lru: LruCache<CacheKey, (Arc<Entry>, usize)>,
    bytes: usize,
}

impl MemoryCache {
    /// A cache keeping answers for `ttl` within `budget` bytes.
    pub fn new(ttl: Duration, budget: usize) -> MemoryCache {
        MemoryCache {
            ttl,
            budget,
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry under `key` if it is younger than the TTL.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let (entry, weight) = inner.lru.get(key).cloned()?;
        if entry.validated.elapsed() >= self.ttl {
            inner.lru.pop(key);
            inner.bytes -= weight;
            return None;
        }
        Some(entry)
    }

    /// Stores (or replaces) the entry under `key`, evicting the least recently used beyond the
    /// budget.
    pub fn put(&self, key: CacheKey, entry: Arc<Entry>) {
        let weight = entry.weight(&key);
        let mut inner = self.lock();
        if let Some((_, old)) = inner.lru.pop(&key) {
            inner.bytes -= old;
        }
        if weight > self.budget {
            return;
        }
        inner.bytes += weight;
        inner.lru.put(key, (entry, weight));
        while inner.bytes > self.budget {
            match inner.lru.pop_lru() {
                Some((_, (_, w))) => inner.bytes -= w,
                None => break,
            }
        }
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.lru.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize) -> Arc<Entry> {
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; size]),
            etag: None,
            last_modified: None,
            validated: Instant::now(),
        })
    }

    #[test]
    fn byte_budget_evicts_least_recently_used() {
        let cache = MemoryCache::new(Duration::from_secs(60), 3000);
        let (a, b, c) = (
            CacheKey("a".into()),
            CacheKey("b".into()),
            CacheKey("c".into()),
        );
        cache.put(a.clone(), entry(1000));
        cache.put(b.clone(), entry(1000));
        assert!(cache.get(&a).is_some());
        cache.put(c.clone(), entry(1000));
        assert!(cache.get(&b).is_none(), "b was least recently used");
        assert!(cache.get(&a).is_some() && cache.get(&c).is_some());
        assert!(cache.usage().1 <= 3000);
        cache.put(CacheKey("huge".into()), entry(5000));
        assert!(cache.get(&CacheKey("huge".into())).is_none());
    }

    /// A shared store in memory, counting loads.
    #[derive(Default)]
    struct FakeShared {
        values: Mutex<std::collections::HashMap<String, (Vec<u8>, Duration)>>,
        loads: std::sync::atomic::AtomicUsize,
    }

    impl SharedStore for FakeShared {
        fn load<'a>(&'a self, key: &'a str) -> crate::BoxFuture<'a, Option<(Vec<u8>, Duration)>> {
            self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let found = self.values.lock().unwrap().get(key).cloned();
            Box::pin(async move { found })
        }
        fn store<'a>(
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            ttl: Duration,
        ) -> crate::BoxFuture<'a, ()> {
            self.values
                .lock()
                .unwrap()
                .insert(key.to_string(), (value, ttl));
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn the_shared_layer_is_asked_only_when_the_local_entry_is_missing_or_due() {
        let shared = Arc::new(FakeShared::default());
        let ttl = Duration::from_secs(3600);
        let a = Cache::new(ttl, 10_000).with_shared(shared.clone());
        let b = Cache::new(ttl, 10_000).with_shared(shared.clone());
        let key = CacheKey("GET k".into());
        // Confirmed a second ago, so A's later answer is newer beyond the sealed time's
        // millisecond resolution.
        let first = Arc::new(Entry {
            validated: Instant::now() - Duration::from_secs(1),
            ..(*entry(100)).clone()
        });
        a.put(key.clone(), first).await;
        let stored_ttl = shared.values.lock().unwrap()[&key.0].1;
        assert!(
            stored_ttl <= ttl - Duration::from_secs(1) && stored_ttl > ttl - Duration::from_secs(5)
        );
        // B has nothing locally: it takes A's entry from the shared store, then keeps it.
        let fresh_for = Duration::from_secs(60);
        assert_eq!(
            b.get(&key, fresh_for).await.expect("shared").body.len(),
            100
        );
        assert_eq!(shared.loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(b.get(&key, fresh_for).await.is_some());
        assert_eq!(
            shared.loads.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "fresh locally: not asked again"
        );
        // Due for revalidation: the shared store is asked, the newer entry wins.
        a.put(key.clone(), entry(200)).await;
        let due = b.get(&key, Duration::ZERO).await.expect("entry");
        assert_eq!(due.body.len(), 200, "A's newer answer");
        assert_eq!(b.get_local(&key).expect("kept").body.len(), 200);
        // Nothing shared: the local entry.
        shared.values.lock().unwrap().clear();
        assert_eq!(
            b.get(&key, Duration::ZERO).await.expect("local").body.len(),
            200
        );
        // Larger than the budget: stored nowhere.
        a.put(CacheKey("GET big".into()), entry(20_000)).await;
        assert!(shared.values.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn answers_above_the_shared_cap_stay_local() {
        let shared = Arc::new(FakeShared::default());
        let a = Cache::new(Duration::from_secs(3600), 64 * 1024 * 1024).with_shared(shared.clone());
        let big = CacheKey("GET big.bin?x=1".into());
        a.put(big.clone(), entry(SHARED_ANSWER_MAX_BYTES)).await;
        assert!(a.get_local(&big).is_some(), "kept locally");
        assert!(
            shared.values.lock().unwrap().is_empty(),
            "not in the shared store"
        );
        let small = CacheKey("GET small".into());
        a.put(small.clone(), entry(SHARED_ANSWER_MAX_BYTES / 2))
            .await;
        assert!(shared.values.lock().unwrap().contains_key(&small.0));
    }

    #[tokio::test]
    async fn a_replayed_value_is_as_old_as_its_sealed_confirmation() {
        let shared = Arc::new(FakeShared::default());
        let ttl = Duration::from_secs(3600);
        let a = Cache::new(ttl, 10_000).with_shared(shared.clone());
        let b = Cache::new(ttl, 10_000).with_shared(shared.clone());
        let key = CacheKey("GET k".into());
        let old = Arc::new(Entry {
            validated: Instant::now() - Duration::from_secs(600),
            ..(*entry(100)).clone()
        });
        a.put(key.clone(), old).await;
        // A Redis writer sets the value again under its name: a full TTL left.
        shared.values.lock().unwrap().get_mut(&key.0).unwrap().1 = ttl;
        let found = b.get(&key, Duration::from_secs(60)).await.expect("shared");
        assert!(
            found.validated.elapsed() >= Duration::from_secs(590),
            "served as confirmed {:?} ago",
            found.validated.elapsed()
        );
    }

    #[test]
    fn ttl_expires() {
        let cache = MemoryCache::new(Duration::ZERO, 10_000);
        cache.put(CacheKey("a".into()), entry(10));
        assert!(cache.get(&CacheKey("a".into())).is_none());
        assert_eq!(cache.usage(), (0, 0));
    }
}
