//! The response cache: GitHub's answers to GET requests, keyed by method, URL, `Accept` and the
//! credential class that fetched them (GitHub's answers vary on `Accept` and `Authorization`),
//! kept with their validators (`ETag`, `Last-Modified`) for revalidation, in an LRU bounded by
//! a byte budget. [`CacheStore`] is the seam for another backend (Redis is not built: see
//! docs/proxy.md).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use lru::LruCache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A cache backend: the in-memory LRU here; a shared one (Redis, encrypted as the token cache
/// is) would implement the same three operations.
pub trait CacheStore: Send + Sync + 'static {
    /// The entry under `key` if it is younger than the TTL.
    fn get(&self, key: &CacheKey) -> Option<Arc<Entry>>;
    /// Stores (or replaces) the entry under `key`.
    fn put(&self, key: CacheKey, entry: Arc<Entry>);
    /// Entries and bytes held.
    fn usage(&self) -> (usize, usize);
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
}

impl CacheStore for MemoryCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut inner = self.lock();
        let (entry, weight) = inner.lru.get(key).cloned()?;
        if entry.validated.elapsed() >= self.ttl {
            inner.lru.pop(key);
            inner.bytes -= weight;
            return None;
        }
        Some(entry)
    }

    fn put(&self, key: CacheKey, entry: Arc<Entry>) {
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

    fn usage(&self) -> (usize, usize) {
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

    #[test]
    fn ttl_expires() {
        let cache = MemoryCache::new(Duration::ZERO, 10_000);
        cache.put(CacheKey("a".into()), entry(10));
        assert!(cache.get(&CacheKey("a".into())).is_none());
        assert_eq!(cache.usage(), (0, 0));
    }
}
