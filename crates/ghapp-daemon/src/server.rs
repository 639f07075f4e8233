//! The accept loop and the connections: hyper's HTTP/1.1 on tokio's `UnixListener`, one task per
//! connection, SO_PEERCRED read once per connection. [`serve_connection`] and
//! [`ConnectionBudget`] are generic over the stream, so the network listener
//! ([`crate::network`]) serves TCP and TLS connections with the same code, limits and deadlines,
//! under a budget of its own.
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
//! slow-header connections cannot starve clients that send their request at once. On the Unix
//! socket ([`ConnectionBudget::admit_local`]) a waiting connection competes for a slot only once
//! it has sent something, and connections that have sent nothing hold at most half of the
//! waiting places, so peers that only connect cannot take the places of clients with a request
//! either; no uid but root and the daemon's own holds more than its fair share (half of
//! `max_connections`) of slots and waiting places together; and a connection that finds no place
//! is answered `503`, never reset.
//!
//! Shutdown: [`Server::stop_accepting`] closes the listener and asks every connection to finish
//! its request in flight and close; [`Server::drain`] waits for them, up to a deadline.

use crate::access::Peer;
use crate::audit::{AuditEvent, Outcome};
use crate::identity::Origin;
use crate::idle::{IdleConnections, QuietPlace, QuietPlaces, Registration};
use crate::routes;
use crate::service::TokenService;
use crate::state::State;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let budget =
        ConnectionBudget::with_slots(state.connection_slots().clone(), state.max_connections());
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
        budget.admit_local(stream, peer, &state, &stop);
    }
    tracing::debug!("accept loop stopped");
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

/// One pool of connection slots: at most `max` connections served at once, at most
/// [`MAX_WAITING`] (and no more than `max`) waiting up to [`OVERLOAD_WAIT`] for a slot, the
/// connection idle the longest closed to make room ([`crate::idle`]), and the rest answered
/// `503`. The Unix socket has one; the network listener has its own, so a flood from the network
/// can never take the slots local git needs.
pub struct ConnectionBudget {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: Arc<Semaphore>,
    /// The waiting places connections that have sent nothing yet may hold (the Unix socket's).
    quiet: QuietPlaces,
    rejections: Arc<Semaphore>,
    idle: Arc<IdleConnections<Who>>,
    /// The most one uid holds (served and waiting) on the Unix socket: [`crate::idle::fair_share`].
    share: usize,
    /// The daemon's own uid, which (like root) has no share.
    own_uid: u32,
    /// The most one network source address holds (served and waiting); `usize::MAX` for none.
    address_share: usize,
}

/// Whose connection it is, for the fair share and for choosing which idle connection closes
/// ([`crate::idle`]): a uid on the Unix socket, a source address on the network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    /// A local peer, by uid.
    Uid(u32),
    /// A network caller, by source address.
    Address(std::net::IpAddr),
}

impl Who {
    fn of(origin: &Origin) -> Who {
        match origin {
            Origin::Local(peer) => Who::Uid(peer.uid),
            Origin::Network { address, .. } => Who::Address(*address),
        }
    }
}

impl ConnectionBudget {
    /// A budget of `max` connections with its own slots.
    pub fn new(max: usize) -> ConnectionBudget {
        ConnectionBudget::with_slots(Arc::new(Semaphore::new(max)), max)
    }

    /// A budget over existing `slots` (the daemon state's, which its gauges read).
    pub fn with_slots(slots: Arc<Semaphore>, max: usize) -> ConnectionBudget {
        ConnectionBudget {
            slots,
            max,
            // Waiting connections hold descriptors too: no more of them than slots (the
            // open-files limit was sized for twice the slots, see crate::hardening).
            waiting: Arc::new(Semaphore::new(MAX_WAITING.min(max))),
            // Connections that have sent nothing yet wait in at most half of those places, so
            // peers that only connect never fill the places of clients that send at once.
            quiet: QuietPlaces::new(MAX_WAITING.min(max) / 2),
            rejections: Arc::new(Semaphore::new(MAX_REJECTIONS_IN_FLIGHT)),
            idle: Arc::new(IdleConnections::default()),
            share: crate::idle::fair_share(max),
            own_uid: rustix::process::geteuid().as_raw(),
            address_share: usize::MAX,
        }
    }

    /// Limits each network source address to `share` connections, served and waiting (`0`: no
    /// limit); a connection beyond it is answered `503` at once.
    pub fn with_address_share(mut self, share: usize) -> ConnectionBudget {
        self.address_share = if share == 0 { usize::MAX } else { share };
        self
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    /// Waits until every connection of this budget has closed, at most `deadline`.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(deadline, self.slots.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }

    /// Serves an accepted connection in a task of its own when a slot is free or frees up
    /// within [`OVERLOAD_WAIT`]; answers `503` otherwise. `connect` yields the stream to serve:
    /// the accepted socket itself, or its TLS handshake — which then runs inside the slot,
    /// under the client deadline, and counts as idle (a stalled handshake makes room first).
    pub fn admit<S, F, IO>(
        &self,
        connect: F,
        origin: Origin,
        state: &Arc<State<S>>,
        stop: &watch::Receiver<bool>,
    ) where
        S: TokenService,
        F: Future<Output = std::io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let who = Who::of(&origin);
        let limit = match who {
            Who::Address(_) => self.address_share,
            Who::Uid(_) => usize::MAX,
        };
        let Some(registration) = self.idle.register_within(who, limit) else {
            // One address holding its share already: refused before its handshake or request.
            reject(connect, state, &self.rejections);
            return;
        };
        let slots = self.slots.clone();
        let (state, stop) = (state.clone(), stop.clone());
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                state.metrics.connection_accepted();
                tokio::spawn(async move {
                    registration.connection().start_serving();
                    serve_connection(connect, origin, state, stop, registration).await;
                    drop(slot);
                });
            }
            // Full: an idle connection of whoever holds the most closes and frees its slot for
            // this one, which waits for it below like any connection over the limit.
            Err(_) => match self.waiting.clone().try_acquire_owned().inspect(|_| {
                self.idle.close_idle();
            }) {
                Ok(waiter) => {
                    let rejections = self.rejections.clone();
                    tokio::spawn(async move {
                        let slot = tokio::time::timeout(OVERLOAD_WAIT, slots.acquire_owned()).await;
                        drop(waiter);
                        match slot {
                            Ok(Ok(slot)) => {
                                state.metrics.connection_accepted();
                                registration.connection().start_serving();
                                serve_connection(connect, origin, state, stop, registration).await;
                                drop(slot);
                            }
                            _ => reject(connect, &state, &rejections),
                        }
                    });
                }
                Err(_) => reject(connect, &state, &self.rejections),
            },
        }
    }

    /// [`ConnectionBudget::admit`] for a Unix-socket peer, with the fair share: a uid other than
    /// root and the daemon's own holding its share already is answered `503` at once; when every
    /// slot is taken, the connection waits in a place for clients that have sent something or
    /// (at most half of the places; the oldest gives way to a newcomer) for those that have not
    /// yet, and competes for a slot only once it has sent something.
    pub fn admit_local<S: TokenService>(
        &self,
        stream: UnixStream,
        peer: Peer,
        state: &Arc<State<S>>,
        stop: &watch::Receiver<bool>,
    ) {
        let limit = if peer.uid == 0 || peer.uid == self.own_uid {
            usize::MAX
        } else {
            self.share
        };
        let Some(registration) = self.idle.register_within(Who::Uid(peer.uid), limit) else {
            reject_local(stream, state, &self.rejections);
            return;
        };
        let slots = self.slots.clone();
        let (state, stop) = (state.clone(), stop.clone());
        let origin = Origin::Local(peer);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                state.metrics.connection_accepted();
                tokio::spawn(async move {
                    registration.connection().start_serving();
                    let connect = std::future::ready(Ok(stream));
                    serve_connection(connect, origin, state, stop, registration).await;
                    drop(slot);
                });
            }
            Err(_) => {
                let place = if has_sent(&stream) {
                    self.waiting
                        .clone()
                        .try_acquire_owned()
                        .ok()
                        .map(Place::Spoken)
                } else {
                    self.quiet.take(&self.waiting).map(Place::Quiet)
                };
                let Some(place) = place else {
                    reject_local(stream, &state, &self.rejections);
                    return;
                };
                let waiter = Waiter {
                    stream,
                    peer,
                    registration,
                    place,
                };
                let (idle, rejections) = (self.idle.clone(), self.rejections.clone());
                tokio::spawn(async move {
                    match waiter.wait_for_slot(&slots, &idle).await {
                        Ok((stream, registration, slot)) => {
                            state.metrics.connection_accepted();
                            registration.connection().start_serving();
                            let connect = std::future::ready(Ok(stream));
                            serve_connection(connect, origin, state, stop, registration).await;
                            drop(slot);
                        }
                        Err(stream) => reject_local(stream, &state, &rejections),
                    }
                });
            }
        }
    }
}

/// How often a connection waiting for a slot asks again for an idle connection to close while
/// none was idle long enough (connections given a slot a moment ago, under a flood).
const ROOM_RETRY: Duration = Duration::from_millis(50);

/// A connection over the limit, holding its waiting place.
struct Waiter {
    stream: UnixStream,
    peer: Peer,
    registration: Registration<Who>,
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
        idle: &IdleConnections<Who>,
    ) -> Result<(UnixStream, Registration<Who>, OwnedSemaphorePermit), UnixStream> {
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

/// Serves one connection from `origin` until it closes, the daemon stops, or it is chosen to
/// make room while idle: the stream `connect` yields (within `client_timeout`), hyper's HTTP/1.1
/// with the head cap and the header deadline, every request answered by [`routes::handle`].
pub async fn serve_connection<S, F, IO>(
    connect: F,
    origin: Origin,
    state: Arc<State<S>>,
    mut stop: watch::Receiver<bool>,
    registration: Registration<Who>,
) where
    S: TokenService,
    F: Future<Output = std::io::Result<IO>> + Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_timeout = state.settings().client_timeout;
    let this = registration.connection().clone();
    // A TLS handshake is a slow client's first chance to hold a slot: same deadline as a head,
    // and idle (closable to make room) while it lasts.
    let stream = tokio::select! {
        stream = tokio::time::timeout(client_timeout, connect) => match stream {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(origin = %origin, "connection failed before its first request: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(origin = %origin, "no TLS handshake within {}s; closed", client_timeout.as_secs_f64());
                return;
            }
        },
        _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => return,
        _ = this.chosen() => return,
    };
    let refused_heads = state.clone();
    let service = service_fn(move |request| {
        let state = state.clone();
        let busy = this.busy();
        async move {
            let response = routes::handle(&state, origin, request).await;
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
                    tracing::debug!(origin = %origin, "closed an idle connection to make room for a new one");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        if e.is_parse_too_large() {
            // hyper answered 431 itself; no route ran, so the refusal is audited here (no
            // header byte recorded: the oversized head may be a credential).
            let mut audit = AuditEvent::for_origin(&origin, "-", "-");
            (audit.status, audit.outcome) = (431, Outcome::Failed);
            audit.error = Some(format!(
                "request head too large (over {MAX_HEAD_BYTES} bytes)"
            ));
            refused_heads.audit.record(&audit);
            refused_heads.metrics.request("-", 431);
        }
        tracing::debug!(origin = %origin, "connection ended: {e}");
    }
}

/// Counts and answers a connection that found no slot; beyond [`MAX_REJECTIONS_IN_FLIGHT`]
/// answers under way it is simply closed.
fn reject<S, F, IO>(connect: F, state: &State<S>, rejections: &Arc<Semaphore>)
where
    S: TokenService,
    F: Future<Output = std::io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    state.metrics.connection_rejected();
    if let Ok(permit) = rejections.clone().try_acquire_owned() {
        tokio::spawn(async move {
            // A TLS client hears the 503 only after its handshake, which gets a short deadline.
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                reject_overloaded(stream).await;
            }
            drop(permit);
        });
    }
}

/// [`reject`] for a Unix-socket connection that found no place (or is over its uid's share):
/// beyond
/// [`MAX_REJECTIONS_IN_FLIGHT`] answers under way it is answered at once, with what it sent so
/// far read off first, so the client hears the 503 rather than a reset.
fn reject_local<S: TokenService>(
    stream: UnixStream,
    state: &State<S>,
    rejections: &Arc<Semaphore>,
) {
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
async fn reject_overloaded<IO: AsyncRead + AsyncWrite + Unpin>(mut stream: IO) {
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
