//! The accept loop and the connections: hyper's HTTP/1.1 on tokio's `UnixListener`, one task per
//! connection, SO_PEERCRED read once per connection.
//!
//! A peer that is not admitted (SO_PEERCRED read at accept) is answered `403` and closed at once,
//! without its request being parsed: refused peers hold no slot, no waiting place, and at most
//! [`MAX_REFUSALS_IN_FLIGHT`] descriptors for at most [`REFUSAL_GRACE`].
//!
//! Limits: at most `max_connections` connections are served at once (a semaphore). A connection
//! over the limit waits up to [`OVERLOAD_WAIT`] for a slot — a burst of git processes is absorbed
//! instead of failing them — and only then is answered `503` and closed; at most
//! [`MAX_WAITING`] connections wait, so waiting costs bounded memory; a request head must arrive within
//! `client_timeout` of the connection becoming ready for it — which also closes idle keep-alive
//! connections — and its body within `client_timeout`; heads are capped at [`MAX_HEAD_BYTES`]
//! (hyper answers 431), query strings and bodies by the routes. When every slot is taken, an
//! idle connection of whoever holds the most is closed to make room ([`crate::idle`]), so idle or
//! slow-header connections cannot starve clients that send their request at once. A waiting
//! connection competes for a slot only once it has sent something, and connections that have
//! sent nothing hold at most half of the waiting places, so peers that only connect cannot take
//! the places of clients with a request either. No uid but root and the daemon's own holds more
//! than its fair share (half of `max_connections`) of slots and waiting places together. A
//! connection that finds no place is answered `503`, never reset.
//!
//! Shutdown: [`Server::stop_accepting`] closes the listener and asks every connection to finish
//! its request in flight and close; [`Server::drain`] waits for them, up to a deadline.

use crate::access::Peer;
use crate::audit::{AuditEvent, Outcome};
use crate::idle::{IdleConnections, QuietPlace, QuietPlaces, Registration};
use crate::routes;
use crate::service::TokenService;
use crate::state::State;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// The largest request head (request line and headers) read; hyper answers 431 beyond it.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Connections over the limit being answered 503 at once; beyond that they are just closed.
const MAX_REJECTIONS_IN_FLIGHT: usize = 64;
/// How long a connection over `max_connections` waits for a slot before it gets a 503. Shorter
/// than the credential helper's 2 s deadline, so a helper hears "busy" rather than timing out.
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(1);
/// Connections that may wait for a slot at once; each holds only its socket while waiting.
pub const MAX_WAITING: usize = 4096;

/// A running server.
pub struct Server {
    shutdown: watch::Sender<bool>,
    accept_loop: Option<JoinHandle<()>>,
    slots: Arc<Semaphore>,
    max_connections: usize,
}

impl Server {
    /// Starts serving `listener` (a std listener in blocking or non-blocking mode, e.g. from
    /// [`crate::socket::bind`] or systemd). Must be called inside a tokio runtime.
    pub fn start<S: TokenService>(
        listener: std::os::unix::net::UnixListener,
        state: Arc<State<S>>,
    ) -> std::io::Result<Server> {
        // tokio requires non-blocking mode; an inherited (socket-activated) fd may not be.
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let (shutdown, stop) = watch::channel(false);
        let slots = state.connection_slots().clone();
        let max_connections = state.max_connections();
        let accept_loop = tokio::spawn(accept_loop(listener, state, stop));
        Ok(Server {
            shutdown,
            accept_loop: Some(accept_loop),
            slots,
            max_connections,
        })
    }

    /// Stops accepting (the listener is closed when this returns) and tells every connection to
    /// close once its request in flight is answered.
    pub async fn stop_accepting(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.accept_loop.take() {
            let _ = task.await;
        }
    }

    /// Waits until every connection has closed, at most `deadline`; false if some were still
    /// open then (they are dropped with the runtime).
    pub async fn drain(mut self, deadline: Duration) -> bool {
        self.stop_accepting().await;
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(deadline, self.slots.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }
}

async fn accept_loop<S: TokenService>(
    listener: UnixListener,
    state: Arc<State<S>>,
    mut stop: watch::Receiver<bool>,
) {
    let rejections = Arc::new(Semaphore::new(MAX_REJECTIONS_IN_FLIGHT));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    // Waiting connections hold descriptors too: no more of them than slots (the open-files
    // limit was sized for twice max_connections, see crate::hardening).
    let places = MAX_WAITING.min(state.max_connections());
    let waiting = Arc::new(Semaphore::new(places));
    // Connections that have sent nothing yet wait in at most half of those places, so peers
    // that only connect never fill the places of clients that send their request at once.
    let quiet_places = QuietPlaces::new(places / 2);
    let idle = Arc::new(IdleConnections::default());
    let share = crate::idle::fair_share(state.max_connections());
    let own_uid = rustix::process::geteuid().as_raw();
    let mut refusal_lines = RefusalLines::default();
    loop {
        let accepted = tokio::select! {
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!("accept on the socket failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            },
            Err(e) => {
                tracing::warn!("cannot read the peer's credentials (SO_PEERCRED), closing: {e}");
                continue;
            }
        };
        // A refused peer holds nothing: no slot, no waiting, no descriptor past this line.
        if !state.settings().access.admits(&peer) {
            refuse_peer(stream, peer, &state, &refusals, &mut refusal_lines);
            continue;
        }
        // Every other uid holds at most its fair share of slots and waiting places together
        // (root and the daemon's own uid could stop the daemon anyway: no share for them).
        let limit = if peer.uid == 0 || peer.uid == own_uid {
            usize::MAX
        } else {
            share
        };
        let Some(registration) = idle.register_within(peer.uid, limit) else {
            reject(stream, &state, &rejections);
            continue;
        };
        let slots = state.connection_slots().clone();
        let (state, stop) = (state.clone(), stop.clone());
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                state.metrics.connection_accepted();
                tokio::spawn(async move {
                    registration.connection().start_serving();
                    serve_connection(stream, peer, state, stop, registration).await;
                    drop(slot);
                });
            }
            // Full: wait for a slot, in a place for clients that sent something or (at most
            // half of the places) for those that have not yet.
            Err(_) => {
                let place = if has_sent(&stream) {
                    waiting.clone().try_acquire_owned().ok().map(Place::Spoken)
                } else {
                    quiet_places.take(&waiting).map(Place::Quiet)
                };
                let Some(place) = place else {
                    reject(stream, &state, &rejections);
                    continue;
                };
                let waiter = Waiter {
                    stream,
                    peer,
                    registration,
                    place,
                };
                let (idle, rejections) = (idle.clone(), rejections.clone());
                tokio::spawn(async move {
                    match waiter.wait_for_slot(&slots, &idle).await {
                        Ok((stream, registration, slot)) => {
                            state.metrics.connection_accepted();
                            registration.connection().start_serving();
                            serve_connection(stream, peer, state, stop, registration).await;
                            drop(slot);
                        }
                        Err(stream) => reject(stream, &state, &rejections),
                    }
                });
            }
        }
    }
    tracing::debug!("accept loop stopped");
}

/// How often a connection waiting for a slot asks again for an idle connection to close while
/// none was idle long enough (connections given a slot a moment ago, under a flood).
const ROOM_RETRY: Duration = Duration::from_millis(50);

/// A connection over the limit, holding its waiting place.
struct Waiter {
    stream: UnixStream,
    peer: Peer,
    registration: Registration,
    place: Place,
}

/// Where a connection waits.
enum Place {
    /// It has sent something: a waiting place.
    Spoken(OwnedSemaphorePermit),
    /// It has sent nothing yet: a quiet place, with its waiting place.
    Quiet(Arc<QuietPlace>),
}

impl Waiter {
    /// Waits up to [`OVERLOAD_WAIT`] for a slot: first for the client to send something (a
    /// connection with nothing to say never takes a slot from one with a request), then for a
    /// slot, asking the idle connection of whoever holds the most to make room. The stream back
    /// when no slot came in time.
    async fn wait_for_slot(
        self,
        slots: &Arc<Semaphore>,
        idle: &IdleConnections,
    ) -> Result<(UnixStream, Registration, OwnedSemaphorePermit), UnixStream> {
        let Waiter {
            stream,
            peer,
            registration,
            place,
        } = self;
        let deadline = tokio::time::Instant::now() + OVERLOAD_WAIT;
        let place = match place {
            Place::Spoken(place) => Some(place),
            Place::Quiet(quiet) => {
                tokio::select! {
                    sent = tokio::time::timeout_at(deadline, sent_something(&stream)) => match sent {
                        Ok(Ok(())) => quiet.spoke(),
                        _ => return Err(stream),
                    },
                    // Its place went to a newcomer: it closes, unless it spoke meanwhile (it
                    // then waits on without a place; rare, and bounded by the newcomers).
                    _ = quiet.displaced() => {
                        if !has_sent(&stream) {
                            return Err(stream);
                        }
                        None
                    }
                }
            }
        };
        let acquire = slots.clone().acquire_owned();
        let mut acquire = std::pin::pin!(acquire);
        let mut retry = tokio::time::interval(ROOM_RETRY);
        let mut asked = false;
        let slot = loop {
            tokio::select! {
                slot = acquire.as_mut() => break slot.ok(),
                _ = retry.tick(), if !asked => {
                    asked = idle.close_idle();
                    if !asked {
                        tracing::trace!(peer = %peer, "no idle connection to close yet");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        drop(place);
        match slot {
            Some(slot) => Ok((stream, registration, slot)),
            None => Err(stream),
        }
    }
}

/// Whether the client has sent something already (without taking it off the socket).
fn has_sent(stream: &UnixStream) -> bool {
    matches!(peek(stream), Ok(n) if n > 0)
}

/// Resolves once the client has sent something or hung up. `readable` alone may wake without
/// data (tokio says so; measured: most idle attackers' connections did, under a flood).
async fn sent_something(stream: &UnixStream) -> std::io::Result<()> {
    loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || peek(stream)) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Bytes waiting on the socket (up to one), without taking them off it; 0 when the client hung
/// up, `WouldBlock` when it has sent nothing yet.
fn peek(stream: &UnixStream) -> std::io::Result<usize> {
    let mut byte = [0u8; 1];
    rustix::net::recv(
        stream,
        &mut byte,
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    )
    .map(|(n, _)| n)
    .map_err(std::io::Error::from)
}

/// Answers a peer that is not admitted with a `403` written at once (nothing of its request is
/// parsed), records it in the audit log and closes the connection: after at most
/// [`REFUSAL_GRACE`] while fewer than [`MAX_REFUSALS_IN_FLIGHT`] refusals are closing (a client
/// that has not sent its request yet — curl checks its connection first — still reads the
/// answer rather than a hang-up), else at once. Refused peers hold no slot, no waiting place,
/// and at most that many descriptors.
fn refuse_peer<S: TokenService>(
    stream: UnixStream,
    peer: Peer,
    state: &State<S>,
    refusals: &Arc<Semaphore>,
    lines: &mut RefusalLines,
) {
    let settings = state.settings();
    state.metrics.peer_refused();
    state.metrics.request(REFUSED_ROUTE, 403);
    let config = settings.config_path.display().to_string();
    let message = settings.access.refusal_message(&peer, &config);
    if let Some(unlogged) = lines.admit(std::time::Instant::now()) {
        let mut logged = message.clone();
        if unlogged > 0 {
            logged.push_str(&format!(
                " ({unlogged} more refused connections before this one were not logged one by one)"
            ));
        }
        tracing::warn!(peer = %peer, unlogged, "refused a peer that is not in allow_uids/allow_gids");
        let mut audit = AuditEvent::new(&peer, "-", REFUSED_ROUTE);
        audit.status = 403;
        audit.outcome = Outcome::DeniedPeer;
        audit.error = Some(logged);
        state.audit.record(&audit);
    }
    let body = serde_json::to_string(&ghapp_protocol::api::ErrorBody { error: message })
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A fresh socket's send buffer takes this small answer whole; if not, the peer gets less.
    let _ = stream.try_write(response.as_bytes());
    if let Ok(permit) = refusals.clone().try_acquire_owned() {
        tokio::spawn(async move {
            // Discard the request head as it arrives, unparsed, so the close is an end of file
            // for the peer rather than a reset.
            let mut discard = [0u8; 4096];
            let mut stream = stream;
            let _ = tokio::time::timeout(REFUSAL_GRACE, async {
                while matches!(stream.read(&mut discard).await, Ok(n) if n > 0) {}
            })
            .await;
            drop(permit);
        });
    }
}

/// Refusals written to the audit log and the daemon's log per second; beyond, they are counted
/// (and in the metrics) and the next line written says how many were not. A refused peer
/// connecting in a loop made ~23,000 audit lines (7 MB) and as many log lines a second.
pub const MAX_REFUSAL_LINES_PER_SECOND: u32 = 20;

/// The accept loop's budget of refusal lines (see [`MAX_REFUSAL_LINES_PER_SECOND`]).
#[derive(Debug, Default)]
struct RefusalLines {
    window: Option<std::time::Instant>,
    written: u32,
    unlogged: u64,
}

impl RefusalLines {
    /// `Some(refusals not logged since the last line)` when this refusal gets its lines.
    fn admit(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .window
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.written = 0;
        }
        if self.written >= MAX_REFUSAL_LINES_PER_SECOND {
            self.unlogged += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Refused connections given [`REFUSAL_GRACE`] at once (see [`refuse_peer`]); beyond that, a
/// refused connection is closed right after its answer is written.
pub const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused connection stays open for its request to arrive and be discarded.
pub const REFUSAL_GRACE: Duration = Duration::from_millis(200);

/// The route label of a connection refused before its request was read.
pub const REFUSED_ROUTE: &str = "(refused peer)";

async fn serve_connection<S: TokenService>(
    stream: UnixStream,
    peer: Peer,
    state: Arc<State<S>>,
    mut stop: watch::Receiver<bool>,
    registration: Registration,
) {
    let client_timeout = state.settings().client_timeout;
    let this = registration.connection().clone();
    let service = service_fn(move |request| {
        let state = state.clone();
        let busy = this.busy();
        async move {
            let response =
                routes::handle(&state, crate::identity::Origin::Local(peer), request).await;
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let this = registration.connection().clone();
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
                connection.as_mut().graceful_shutdown();
                break connection.await;
            }
            _ = this.chosen() => {
                if this.still_idle() {
                    tracing::debug!(peer = %peer, "closed an idle connection to make room for a new one");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, "connection ended: {e}");
    }
}

/// Counts and answers a connection that found no slot (or is over its uid's share); beyond
/// [`MAX_REJECTIONS_IN_FLIGHT`] answers under way it is answered at once, with what it sent so
/// far read off first, so the client hears the 503 rather than a reset.
fn reject<S: TokenService>(stream: UnixStream, state: &State<S>, rejections: &Arc<Semaphore>) {
    state.metrics.connection_rejected();
    match rejections.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                reject_overloaded(stream).await;
                drop(permit);
            });
        }
        Err(_) => {
            // Closing a Unix socket with unread data resets the peer: read what has arrived
            // (a request head is at most MAX_HEAD_BYTES), answer, close.
            let mut discard = [0u8; 4096];
            let mut read = 0;
            while read <= MAX_HEAD_BYTES {
                match stream.try_read(&mut discard) {
                    Ok(n) if n > 0 => read += n,
                    _ => break,
                }
            }
            let _ = stream.try_write(OVERLOADED.as_bytes());
        }
    }
}

/// The answer to a connection over the limit.
const OVERLOADED: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 86\r\n",
    "retry-after: 1\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
    r#"{"error":"the ghapp daemon is serving its max_connections connections; retry shortly"}"#
);

/// Answers a connection over the limit with a 503 without parsing it, quickly and boundedly.
async fn reject_overloaded(mut stream: UnixStream) {
    // Read what the client sent so far, so closing does not reset the connection under it.
    let mut discard = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut discard)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(OVERLOADED.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overload_answer_states_its_length() {
        let (head, body) = OVERLOADED.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn refusal_lines_are_capped_per_second_and_the_next_line_counts_the_rest() {
        let mut lines = RefusalLines::default();
        let start = std::time::Instant::now();
        for _ in 0..MAX_REFUSAL_LINES_PER_SECOND {
            assert_eq!(lines.admit(start), Some(0));
        }
        for _ in 0..500 {
            assert_eq!(lines.admit(start + Duration::from_millis(900)), None);
        }
        assert_eq!(lines.admit(start + Duration::from_secs(1)), Some(500));
        assert_eq!(lines.admit(start + Duration::from_secs(1)), Some(0));
    }
}
