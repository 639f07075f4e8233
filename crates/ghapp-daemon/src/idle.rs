//! Which connections are idle, so a full daemon can make room: when all `max_connections`
//! slots are taken and a new connection arrives, the connection idle the longest — one with no
//! request in flight: waiting for a request head, sending it byte by byte, or kept alive between
//! requests — is closed and its slot goes to the newcomer. Without this, anyone who can reach the
//! socket could hold every slot with connections that never send a byte (or reopen them as fast
//! as `client_timeout` closes them) and starve every well-behaved client; with it, such
//! connections only ever displace each other, and a client that sends its request at once is
//! served. A connection with a request in flight is never closed this way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A connection must have been idle this long to be closed: a response handed to hyper a
/// moment ago may still be on its way out.
pub const MIN_IDLE: Duration = Duration::from_millis(20);

/// One live connection as the registry sees it.
#[derive(Debug)]
pub struct Connection {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    chosen: AtomicBool,
    close: Notify,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            chosen: AtomicBool::new(false),
            close: Notify::new(),
        }
    }
}

impl Connection {
    /// Marks a request in flight until the guard drops (the response is written or abandoned).
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    /// Resolves when the connection was chosen to make room; the caller then closes it if it is
    /// still idle (see [`Connection::still_idle`]).
    pub async fn chosen(&self) {
        self.close.notified().await;
    }

    /// True if no request is in flight; otherwise the choice is withdrawn (it may be chosen again
    /// once idle).
    pub fn still_idle(&self) -> bool {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            return true;
        }
        self.chosen.store(false, Ordering::SeqCst);
        false
    }
}

/// Holds a connection busy (see [`Connection::busy`]).
pub struct BusyGuard(Arc<Connection>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    fn closable(&self, now: Instant) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && now.duration_since(*self.idle_since.lock().unwrap_or_else(|p| p.into_inner()))
                >= MIN_IDLE
    }
}

/// Every live connection, oldest first.
#[derive(Debug, Default)]
pub struct IdleConnections {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

impl IdleConnections {
    /// Registers a new connection; it is forgotten when the returned registration drops.
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::default());
        self.lock().insert(id, connection.clone());
        Registration {
            registry: self.clone(),
            id,
            connection,
        }
    }

    /// Asks the oldest connection idle for at least [`MIN_IDLE`] to close; false when there is
    /// none.
    pub fn close_oldest_idle(&self) -> bool {
        let now = Instant::now();
        let live = self.lock();
        let victim = live
            .values()
            .find(|c| c.closable(now) && !c.chosen.swap(true, Ordering::SeqCst));
        match victim {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's place in the registry; dropping it forgets the connection.
pub struct Registration {
    registry: Arc<IdleConnections>,
    id: u64,
    connection: Arc<Connection>,
}

impl Registration {
    /// The connection's shared state.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_is_chosen_never_a_busy_one() {
        let registry = Arc::new(IdleConnections::default());
        let first = registry.register();
        let second = registry.register();
        let third = registry.register();
        let _busy = first.connection().busy();
        assert!(
            !registry.close_oldest_idle(),
            "nobody idle for MIN_IDLE yet"
        );
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_oldest_idle());
        // The second (oldest idle) was chosen, not the busy first one.
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            second.connection().chosen(),
        )
        .await
        .expect("the second connection was asked to close");
        assert!(second.connection().still_idle());
        drop(second);
        assert!(registry.close_oldest_idle(), "the third is next");
        assert!(third.connection().still_idle());
        drop(third);
        assert!(
            !registry.close_oldest_idle(),
            "only a busy connection is left"
        );
        assert_eq!(registry.len(), 1);
        drop(first);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_choice_is_withdrawn_when_a_request_started_meanwhile() {
        let registry = Arc::new(IdleConnections::default());
        let only = registry.register();
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_oldest_idle());
        let guard = only.connection().busy();
        assert!(!only.connection().still_idle());
        drop(guard);
        assert!(
            !registry.close_oldest_idle(),
            "just answered: not idle long enough"
        );
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_oldest_idle(), "chosen again once idle");
    }
}
