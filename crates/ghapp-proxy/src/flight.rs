//! Single flight: identical concurrent cache misses share one upstream request. The first
//! caller of a key runs the fetch; the others wait for its outcome. If the leader is cancelled
//! (its client went away), a waiter takes over.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Fetches in flight, by key.
pub struct Flights<K, V> {
    running: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            running: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Flights<K, V> {
    /// Runs `fetch` unless a fetch of `key` is running, in which case its outcome is shared.
    /// Returns the outcome and whether this caller ran the fetch.
    pub async fn run<F, Fut>(&self, key: &K, fetch: F) -> (V, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .entry(key.clone())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let mut led = false;
        let value = cell
            .get_or_init(|| {
                led = true;
                fetch()
            })
            .await
            .clone();
        if led {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                running.remove(key);
            }
        }
        (value, led)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let flights: Arc<Flights<String, u32>> = Arc::new(Flights::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let flights = flights.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                flights
                    .run(&"k".to_string(), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        7
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (value, led) = task.await.expect("task");
            assert_eq!(value, 7);
            leaders += usize::from(led);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        // Finished flights are forgotten: the next caller fetches again.
        let (_, led) = flights.run(&"k".to_string(), || async { 8 }).await;
        assert!(led);
    }
}
