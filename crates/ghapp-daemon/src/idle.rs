//! Every admitted connection, by who holds it, so a full daemon can make room fairly.
//!
//! **Closing idle connections.** When all `max_connections` slots are taken and a connection
//! with a request to send needs one, an idle connection — one served with no request in flight:
//! waiting for a request head, sending it byte by byte, or kept alive between requests — is
//! closed and its slot goes to the newcomer. It is taken from whoever holds the most connections
//! (the oldest idle one of theirs), so a peer hoarding connections loses its own before anyone
//! else loses one. Without this, anyone who can reach the socket could hold every slot with
//! connections that never send a byte (or reopen them as fast as `client_timeout` closes them)
//! and starve every well-behaved client; with it, such connections only ever displace each other,
//! and a client that sends its request at once is served. A connection with a request in flight
//! is never closed this way.
//!
//! **The fair share.** One "who" (a uid on the Unix socket; the registry is generic so a network
//! address can be one later) may hold at most [`fair_share`] connections, served and waiting
//! together, when the accept loop asks for it ([`IdleConnections::register_within`]): a single
//! hoarder then never holds more than half of the slots, and the other half is always there for
//! everyone else (the second attacker's pass, docs/security.md).
//!
//! **Quiet places.** Connections waiting for a slot that have sent nothing yet hold at most a
//! fixed number of waiting places ([`QuietPlaces`]); when they are all taken, the oldest such
//! connection gives its place to the newcomer and is closed (it has sent nothing, so closing it
//! loses nothing). Peers that only connect then displace each other, never a client with a
//! request — nor one whose request is a moment behind its `connect`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A connection must have been idle this long to be closed: a response handed to hyper a
/// moment ago may still be on its way out, and a connection just given its slot may not have
/// been read yet.
pub const MIN_IDLE: Duration = Duration::from_millis(20);

/// The most connections, served and waiting together, one who may hold when the daemon serves
/// `max_connections`: half, and at least one. Far above any real burst of one user's git
/// processes at the default `max_connections` (4096).
pub fn fair_share(max_connections: usize) -> usize {
    (max_connections / 2).max(1)
}

/// One live connection as the registry sees it.
#[derive(Debug)]
pub struct Connection {
    serving: AtomicBool,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    chosen: AtomicBool,
    close: Notify,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            serving: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            chosen: AtomicBool::new(false),
            close: Notify::new(),
        }
    }
}

impl Connection {
    /// Marks the connection as holding a slot: from now on (and after [`MIN_IDLE`]) it may be
    /// closed to make room while idle. A connection still waiting for a slot has none to give.
    pub fn start_serving(&self) {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.serving.store(true, Ordering::SeqCst);
    }

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

    fn closable(&self, now: Instant) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.in_flight.load(Ordering::SeqCst) == 0
            && now.duration_since(*self.idle_since.lock().unwrap_or_else(|p| p.into_inner()))
                >= MIN_IDLE
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

/// Every live connection, by who holds it, each who's oldest first.
#[derive(Debug)]
pub struct IdleConnections<W = u32> {
    next: AtomicU64,
    live: Mutex<HashMap<W, BTreeMap<u64, Arc<Connection>>>>,
}

impl<W> Default for IdleConnections<W> {
    fn default() -> Self {
        IdleConnections {
            next: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl<W: Eq + Hash + Clone> IdleConnections<W> {
    /// Registers a new connection of `who`; it is forgotten when the returned registration
    /// drops.
    pub fn register(self: &Arc<Self>, who: W) -> Registration<W> {
        self.register_within(who, usize::MAX)
            .expect("no limit to exceed")
    }

    /// Registers a new connection of `who` unless `who` already holds `limit` connections
    /// (see [`fair_share`]); `None` then.
    pub fn register_within(self: &Arc<Self>, who: W, limit: usize) -> Option<Registration<W>> {
        let mut live = self.lock();
        let held = live.entry(who.clone()).or_default();
        if held.len() >= limit {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::default());
        held.insert(id, connection.clone());
        Some(Registration {
            registry: self.clone(),
            who,
            id,
            connection,
        })
    }

    /// Asks an idle connection (no request in flight for at least [`MIN_IDLE`]) to close: the
    /// oldest one of the who holding the most connections, or of the next one when that who has
    /// none idle. False when no connection is idle.
    pub fn close_idle(&self) -> bool {
        let now = Instant::now();
        let live = self.lock();
        let mut holders: Vec<&BTreeMap<u64, Arc<Connection>>> = live.values().collect();
        holders.sort_by_key(|held| std::cmp::Reverse(held.len()));
        let victim = holders.into_iter().find_map(|held| {
            held.values()
                .find(|c| c.closable(now) && !c.chosen.swap(true, Ordering::SeqCst))
        });
        match victim {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections `who` holds now (served and waiting).
    pub fn held_by(&self, who: &W) -> usize {
        self.lock().get(who).map_or(0, BTreeMap::len)
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.lock().values().map(BTreeMap::len).sum()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<W, BTreeMap<u64, Arc<Connection>>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection's place in the registry; dropping it forgets the connection.
pub struct Registration<W: Eq + Hash + Clone = u32> {
    registry: Arc<IdleConnections<W>>,
    who: W,
    id: u64,
    connection: Arc<Connection>,
}

impl<W: Eq + Hash + Clone> Registration<W> {
    /// The connection's shared state.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl<W: Eq + Hash + Clone> Drop for Registration<W> {
    fn drop(&mut self) {
        let mut live = self.registry.lock();
        if let Some(held) = live.get_mut(&self.who) {
            held.remove(&self.id);
            if held.is_empty() {
                live.remove(&self.who);
            }
        }
    }
}

/// Connections given a quiet place of another and not closed yet; beyond this many, a newcomer
/// finds no quiet place (it bounds the descriptors of connections on their way out).
pub const MAX_DISPLACED_OPEN: usize = 64;

/// The waiting places of connections that have sent nothing yet (see the module doc).
#[derive(Debug)]
pub struct QuietPlaces {
    capacity: usize,
    free: Arc<Semaphore>,
    holders: Mutex<VecDeque<Weak<QuietPlace>>>,
    displaced_open: Arc<Semaphore>,
}

/// A quiet place held, with the waiting place that goes with it.
#[derive(Debug)]
pub struct QuietPlace {
    held: Mutex<Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>>,
    displaced: Notify,
    leaving: Mutex<Option<OwnedSemaphorePermit>>,
}

impl QuietPlaces {
    /// At most `capacity` quiet places (at least one).
    pub fn new(capacity: usize) -> QuietPlaces {
        QuietPlaces {
            capacity: capacity.max(1),
            free: Arc::new(Semaphore::new(capacity.max(1))),
            holders: Mutex::new(VecDeque::new()),
            displaced_open: Arc::new(Semaphore::new(MAX_DISPLACED_OPEN)),
        }
    }

    /// A quiet place and a place from `waiting`: free ones, or those of the oldest connection
    /// still holding a quiet place, which is asked to close ([`QuietPlace::displaced`]). `None`
    /// when neither is to be had.
    pub fn take(&self, waiting: &Arc<Semaphore>) -> Option<Arc<QuietPlace>> {
        let mut holders = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        let held = match self.free.clone().try_acquire_owned() {
            Ok(quiet) => Some((quiet, waiting.clone().try_acquire_owned().ok()?)),
            Err(_) => {
                let leaving = self.displaced_open.clone().try_acquire_owned().ok()?;
                let mut taken = None;
                while let Some(oldest) = holders.pop_front() {
                    let Some(oldest) = oldest.upgrade() else {
                        continue;
                    };
                    let held = oldest.held.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(held) = held {
                        *oldest.leaving.lock().unwrap_or_else(|p| p.into_inner()) = Some(leaving);
                        oldest.displaced.notify_one();
                        taken = Some(held);
                        break;
                    }
                }
                taken
            }
        }?;
        let place = Arc::new(QuietPlace {
            held: Mutex::new(Some(held)),
            displaced: Notify::new(),
            leaving: Mutex::new(None),
        });
        holders.push_back(Arc::downgrade(&place));
        // Holders that left on their own stay queued until they reach the front: keep the queue
        // within twice the places.
        if holders.len() > 2 * self.capacity {
            holders.retain(|h| h.upgrade().is_some_and(|h| h.still_quiet()));
        }
        Some(place)
    }
}

impl QuietPlace {
    /// Resolves when the place was given to a newcomer: close the connection unless it has sent
    /// something meanwhile.
    pub async fn displaced(&self) {
        self.displaced.notified().await;
    }

    /// The connection sent something: it gives up its quiet place and keeps its waiting place
    /// (`None` if the quiet place went to a newcomer a moment ago).
    pub fn spoke(&self) -> Option<OwnedSemaphorePermit> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        held.map(|(_quiet, waiting)| waiting)
    }

    fn still_quiet(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(registry: &Arc<IdleConnections>, who: u32) -> Registration {
        let registration = registry.register(who);
        registration.connection().start_serving();
        registration
    }

    #[tokio::test]
    async fn the_oldest_idle_connection_is_chosen_never_a_busy_one() {
        let registry = Arc::new(IdleConnections::default());
        let first = serving(&registry, 1000);
        let second = serving(&registry, 1000);
        let third = serving(&registry, 1000);
        let _busy = first.connection().busy();
        assert!(!registry.close_idle(), "nobody idle for MIN_IDLE yet");
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_idle());
        // The second (oldest idle) was chosen, not the busy first one.
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            second.connection().chosen(),
        )
        .await
        .expect("the second connection was asked to close");
        assert!(second.connection().still_idle());
        drop(second);
        assert!(registry.close_idle(), "the third is next");
        assert!(third.connection().still_idle());
        drop(third);
        assert!(!registry.close_idle(), "only a busy connection is left");
        assert_eq!(registry.len(), 1);
        drop(first);
        assert!(registry.is_empty());
    }

    #[test]
    fn a_choice_is_withdrawn_when_a_request_started_meanwhile() {
        let registry = Arc::new(IdleConnections::default());
        let only = serving(&registry, 1000);
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_idle());
        let guard = only.connection().busy();
        assert!(!only.connection().still_idle());
        drop(guard);
        assert!(
            !registry.close_idle(),
            "just answered: not idle long enough"
        );
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_idle(), "chosen again once idle");
    }

    #[tokio::test]
    async fn the_who_holding_the_most_loses_an_idle_connection_first() {
        let registry = Arc::new(IdleConnections::default());
        // The well-behaved uid's connection is the oldest; the hoarder's are newer but more.
        let own = serving(&registry, 1000);
        let hoard: Vec<_> = (0..3).map(|_| serving(&registry, 65534)).collect();
        std::thread::sleep(MIN_IDLE);
        for _ in 0..3 {
            assert!(registry.close_idle());
        }
        for connection in &hoard {
            tokio::time::timeout(Duration::from_secs(1), connection.connection().chosen())
                .await
                .expect("each of the hoarder's connections was chosen before anyone else's");
        }
        assert!(
            !own.connection().chosen.load(Ordering::SeqCst),
            "the other uid keeps its connection"
        );
        drop(hoard);
        assert!(
            registry.close_idle(),
            "then the other uid's, when nothing else is idle"
        );
        assert!(own.connection().chosen.load(Ordering::SeqCst));
    }

    #[test]
    fn a_connection_waiting_for_a_slot_is_never_closed_to_make_room() {
        let registry = Arc::new(IdleConnections::default());
        let waiting = registry.register(1000);
        std::thread::sleep(MIN_IDLE);
        assert!(!registry.close_idle(), "it holds no slot to give");
        waiting.connection().start_serving();
        assert!(!registry.close_idle(), "just given its slot");
        std::thread::sleep(MIN_IDLE);
        assert!(registry.close_idle());
    }

    #[test]
    fn a_who_holds_at_most_its_share_and_gets_it_back_on_close() {
        let registry = Arc::new(IdleConnections::default());
        let share = fair_share(4);
        assert_eq!(share, 2);
        let a1 = registry.register_within(1000, share).unwrap();
        let _a2 = registry.register_within(1000, share).unwrap();
        assert!(
            registry.register_within(1000, share).is_none(),
            "over its share"
        );
        let _b = registry
            .register_within(1001, share)
            .expect("another uid has its own share");
        assert_eq!(registry.held_by(&1000), 2);
        drop(a1);
        assert!(
            registry.register_within(1000, share).is_some(),
            "a closed connection frees its place"
        );
        assert_eq!(fair_share(1), 1, "never zero");
    }

    #[tokio::test]
    async fn a_newcomer_takes_the_quiet_place_of_the_oldest_silent_connection() {
        let waiting = Arc::new(Semaphore::new(3));
        let places = QuietPlaces::new(2);
        let first = places.take(&waiting).unwrap();
        let second = places.take(&waiting).unwrap();
        assert_eq!(waiting.available_permits(), 1);
        // The first spoke: it keeps its waiting place, and its quiet place is free again.
        let first_waits = first.spoke().expect("its waiting place");
        let third = places.take(&waiting).unwrap();
        assert_eq!(waiting.available_permits(), 0);
        // Full: the oldest still quiet (the second) gives its places to the newcomer.
        let fourth = places.take(&waiting).unwrap();
        tokio::time::timeout(Duration::from_secs(1), second.displaced())
            .await
            .expect("the second is asked to close");
        assert!(second.spoke().is_none(), "its places went to the newcomer");
        assert_eq!(waiting.available_permits(), 0, "no place counted twice");
        drop((first_waits, third, fourth));
        assert_eq!(waiting.available_permits(), 3);
    }
}
