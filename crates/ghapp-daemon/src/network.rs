//! The network listener: the API on TCP, with TLS ([`tls`]) on every address unless it is
//! loopback — `[network] listen`. A small API of its own, not welded to the daemon's routes, so
//! other servers (the proxy's `[proxy] listen`) reuse it:
//!
//! ```ignore
//! let certificate = tls::ReloadableCertificate::load(&cert_file, &key_file)?; // reload() on SIGHUP
//! let listener = Listener::bind(address, Some(certificate.acceptor()?))?;   // None: loopback only
//! loop {
//!     let accepted = listener.accept().await?;   // the TCP connection, nothing read yet
//!     let origin = accepted.origin();             // Origin::Network { address, tls }
//!     let stream = accepted.handshake().await?;   // NetworkStream: AsyncRead + AsyncWrite
//! }
//! ```
//!
//! Plain HTTP is refused on a non-loopback address here too (the config check refuses it first):
//! the listener fails closed. [`NetworkServer`] is the daemon's use of it: every address served
//! by [`crate::server::serve_connection`] — the socket's code, limits and deadlines — under a
//! [`ConnectionBudget`] of its own, so a flood from the network never takes the Unix socket's
//! slots. The TLS handshake runs inside the connection's slot, under the client deadline.

pub mod tls;

use crate::identity::Origin;
use crate::server::ConnectionBudget;
use crate::service::TokenService;
use crate::state::State;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Pending connections the kernel queues per address before the daemon accepts them.
pub const LISTEN_BACKLOG: u32 = 1024;

/// One bound address.
pub struct Listener {
    tcp: TcpListener,
    local: SocketAddr,
    tls: Option<TlsAcceptor>,
}

/// Why an address cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Plain HTTP on an address other machines can reach.
    #[error(
        "{address}: plain HTTP is served only on loopback addresses (127.0.0.0/8, ::1); set [network] tls_cert_file and tls_key_file to serve {address} with TLS"
    )]
    PlainNotLoopback {
        /// The address asked for.
        address: SocketAddr,
    },
    /// The socket could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        error: io::Error,
    },
}

impl Listener {
    /// Binds `address` (port 0: any free port, see [`Listener::local_addr`]); with `tls`, every
    /// connection is TLS, without it the address must be loopback.
    pub fn bind(address: SocketAddr, tls: Option<TlsAcceptor>) -> Result<Listener, BindError> {
        if tls.is_none() && !address.ip().is_loopback() {
            return Err(BindError::PlainNotLoopback { address });
        }
        let failed = |error| BindError::Bind { address, error };
        let socket = match address {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(failed)?;
        // A restarted daemon rebinds at once, whatever TIME_WAIT its last connections left.
        socket.set_reuseaddr(true).map_err(failed)?;
        // `[::]:P` means IPv6 only, so `0.0.0.0:P` can be listed beside it (a dual-stack
        // socket would take both and make the second bind fail).
        if address.is_ipv6() {
            rustix::net::sockopt::set_ipv6_v6only(&socket, true).map_err(|e| failed(e.into()))?;
        }
        socket.bind(address).map_err(failed)?;
        let tcp = socket.listen(LISTEN_BACKLOG).map_err(failed)?;
        let local = tcp.local_addr().map_err(failed)?;
        Ok(Listener { tcp, local, tls })
    }

    /// The address bound (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The next connection, before anything is read from it.
    pub async fn accept(&self) -> io::Result<Accepted> {
        let (tcp, peer) = self.tcp.accept().await?;
        // Small answers on kept-alive connections must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        Ok(Accepted {
            tcp,
            // A v4 client of a dual-stack listener shows as ::ffff:a.b.c.d; policies name it
            // as a.b.c.d.
            address: peer.ip().to_canonical(),
            tls: self.tls.clone(),
        })
    }
}

/// A TCP connection just accepted.
pub struct Accepted {
    tcp: TcpStream,
    address: IpAddr,
    tls: Option<TlsAcceptor>,
}

impl Accepted {
    /// Where it comes from, as the socket reports it (a load balancer's address, behind one).
    pub fn origin(&self) -> Origin {
        Origin::Network {
            address: self.address,
            tls: self.tls.is_some(),
        }
    }

    /// The stream to speak HTTP on: the TCP stream itself, or its TLS session once the
    /// handshake completes (no deadline here: the caller sets one).
    pub async fn handshake(self) -> io::Result<NetworkStream> {
        match self.tls {
            None => Ok(NetworkStream::Plain(self.tcp)),
            Some(acceptor) => Ok(NetworkStream::Tls(Box::new(
                acceptor.accept(self.tcp).await?,
            ))),
        }
    }
}

/// A served network connection: plain TCP (loopback) or TLS.
pub enum NetworkStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for NetworkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetworkStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetworkStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetworkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetworkStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetworkStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetworkStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NetworkStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            NetworkStream::Plain(s) => s.is_write_vectored(),
            NetworkStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetworkStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetworkStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetworkStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetworkStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The daemon's API on its network listeners, with a connection budget of its own.
pub struct NetworkServer {
    shutdown: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
    budget: Arc<ConnectionBudget>,
}

impl NetworkServer {
    /// Serves every listener, at most `max_connections` network connections at once (apart
    /// from the Unix socket's) and `per_address` from one source address (`0`: no such limit).
    /// Must be called inside a tokio runtime.
    pub fn start<S: TokenService>(
        listeners: Vec<Listener>,
        state: Arc<State<S>>,
        max_connections: usize,
        per_address: usize,
    ) -> NetworkServer {
        let (shutdown, stop) = watch::channel(false);
        let budget =
            Arc::new(ConnectionBudget::new(max_connections).with_address_share(per_address));
        let accept_loops = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    listener,
                    state.clone(),
                    budget.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        NetworkServer {
            shutdown,
            accept_loops,
            budget,
        }
    }

    /// Network connections being served now.
    pub fn active_connections(&self) -> usize {
        self.budget.active()
    }

    /// Stops accepting (the listeners are closed when this returns) and tells every connection
    /// to close once its request in flight is answered.
    pub async fn stop_accepting(&mut self) {
        let _ = self.shutdown.send(true);
        for task in self.accept_loops.drain(..) {
            let _ = task.await;
        }
    }

    /// Waits until every network connection has closed, at most `deadline`.
    pub async fn drain(mut self, deadline: Duration) -> bool {
        self.stop_accepting().await;
        self.budget.drain(deadline).await
    }
}

async fn accept_loop<S: TokenService>(
    listener: Listener,
    state: Arc<State<S>>,
    budget: Arc<ConnectionBudget>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                let origin = accepted.origin();
                budget.admit(accepted.handshake(), origin, &state, &stop);
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning.
                tracing::warn!("accept on {} failed: {e}", listener.local_addr());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::debug!("network accept loop on {} stopped", listener.local_addr());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_http_only_on_loopback() {
        let refused = Listener::bind("0.0.0.0:0".parse().unwrap(), None)
            .err()
            .unwrap();
        assert!(
            refused
                .to_string()
                .contains("plain HTTP is served only on loopback"),
            "{refused}"
        );
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        assert_ne!(listener.local_addr().port(), 0);
        assert!(!listener.is_tls());
    }

    #[tokio::test]
    async fn the_v4_and_v6_wildcards_bind_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let acceptor = tls::ReloadableCertificate::load(&cert_file, &key_file)
            .unwrap()
            .acceptor()
            .unwrap();
        let v4 = Listener::bind("0.0.0.0:0".parse().unwrap(), Some(acceptor.clone())).unwrap();
        assert!(v4.is_tls());
        let v6: SocketAddr = format!("[::]:{}", v4.local_addr().port()).parse().unwrap();
        match Listener::bind(v6, Some(acceptor)) {
            Ok(listener) => assert_eq!(listener.local_addr().port(), v4.local_addr().port()),
            Err(BindError::Bind { error, .. })
                if error.kind() == io::ErrorKind::AddrNotAvailable
                    || error.raw_os_error() == Some(97) =>
            {
                eprintln!("SKIPPED: no IPv6 on this machine ({error})");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
