//! Who is calling: what the transport itself tells ([`Origin`]: the Unix peer's uid/gid from
//! SO_PEERCRED, or the TCP source address) and what the request presents ([`Credential`]: a
//! client key, or a verified OIDC ID token) — together a [`Caller`], which the one policy model
//! ([`crate::access`]) judges. Never holds the credential itself: a client is known by its
//! configured name, an ID token by its verified claims.

pub mod client_keys;
pub mod oidc;

use ghapp_protocol::config::Config;
use ghapp_protocol::time::Timestamp;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The credentials of a connected client, as the kernel recorded them at `connect(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective (primary) gid; supplementary groups are not visible through SO_PEERCRED.
    pub gid: u32,
    /// Process id, when the platform reports it (for the audit log; it may be reused).
    pub pid: Option<i32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

/// Where a connection comes from, as the transport reports it (nothing the caller sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A process on this host, on the Unix socket.
    Local(Peer),
    /// A TCP connection from this address.
    Network {
        /// The peer's address (as the socket reports it: a load balancer's, behind one).
        address: IpAddr,
        /// Whether the connection is TLS.
        tls: bool,
    },
}

impl Origin {
    /// The Unix peer, for a local caller.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Origin::Local(peer) => Some(peer),
            Origin::Network { .. } => None,
        }
    }

    /// The source address, for a network caller.
    pub fn address(&self) -> Option<IpAddr> {
        match self {
            Origin::Local(_) => None,
            Origin::Network { address, .. } => Some(*address),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local(peer) => peer.fmt(f),
            Origin::Network { address, .. } => write!(f, "address {address}"),
        }
    }
}

/// An OIDC ID token whose signature, issuer, audience and times were checked. Holds the claims,
/// never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdToken {
    /// `iss`, as configured in `[[oidc]]` (shared: every request of the token names it in
    /// metrics).
    pub issuer: Arc<str>,
    /// `sub`.
    pub subject: String,
    /// Every claim, for `[[policy]] claims` globs.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// `exp`.
    pub expires_at: Timestamp,
}

/// What a request presented in `Authorization: Bearer …`, once verified.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// The key of this `[[client]]` (its name).
    Client(Arc<str>),
    /// A verified ID token.
    IdToken(Arc<VerifiedIdToken>),
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Client(name) => write!(f, "client {name}"),
            Credential::IdToken(token) => write!(f, "{} {}", token.issuer, token.subject),
        }
    }
}

/// A caller: where it connects from and what it proved.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The transport's facts.
    pub origin: Origin,
    /// The verified credential, if the request presented one.
    pub credential: Option<Credential>,
}

impl Caller {
    /// A caller that presented nothing.
    pub fn anonymous(origin: Origin) -> Caller {
        Caller {
            origin,
            credential: None,
        }
    }
}

impl Caller {
    /// A stable key naming who this caller is, for ownership of what it creates (runners) and
    /// per-identity limits: `uid:1000`, `address:10.0.0.7`, `client:ci-bot`,
    /// `oidc:ISSUER#SUBJECT`. A credential, when presented, names the caller; the transport only
    /// when there is none.
    pub fn identity_key(&self) -> String {
        match (&self.credential, &self.origin) {
            (Some(Credential::Client(name)), _) => format!("client:{name}"),
            (Some(Credential::IdToken(token)), _) => {
                format!("oidc:{}#{}", token.issuer, token.subject)
            }
            (None, Origin::Local(peer)) => format!("uid:{}", peer.uid),
            (None, Origin::Network { address, .. }) => format!("address:{address}"),
        }
    }
}

/// Who made a request, as a metrics label: only what the configuration and the host's accounts
/// bound — a uid, a `[[client]]` name, an `[[oidc]]` issuer. Source addresses and ID-token
/// subjects are unbounded (every branch of every repository is a subject), so a label would
/// grow without end: the audit log names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MetricIdentity {
    /// A local caller's uid.
    Uid(u32),
    /// A `[[client]]` key's name.
    Client(Arc<str>),
    /// The issuer of a verified ID token.
    Issuer(Arc<str>),
    /// A network caller that presented nothing.
    Address,
}

impl Caller {
    /// This caller as a metrics label ([`MetricIdentity`]).
    pub fn metric_identity(&self) -> MetricIdentity {
        match (&self.credential, &self.origin) {
            (Some(Credential::Client(name)), _) => MetricIdentity::Client(name.clone()),
            (Some(Credential::IdToken(token)), _) => MetricIdentity::Issuer(token.issuer.clone()),
            (None, Origin::Local(peer)) => MetricIdentity::Uid(peer.uid),
            (None, Origin::Network { .. }) => MetricIdentity::Address,
        }
    }

    /// The kind of identity, for metrics labels (bounded): `uid`, `address`, `client`, `oidc`.
    pub fn kind(&self) -> &'static str {
        match (&self.credential, &self.origin) {
            (Some(Credential::Client(_)), _) => "client",
            (Some(Credential::IdToken(_)), _) => "oidc",
            (None, Origin::Local(_)) => "uid",
            (None, Origin::Network { .. }) => "address",
        }
    }
}

impl fmt::Display for Caller {
    /// How logs and refusals name the caller: `uid 1000 gid 100 pid 7`, `client ci-bot from
    /// address 10.0.0.7`, `https://issuer repo:acme/widgets:ref:refs/heads/main from …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.credential {
            None => self.origin.fmt(f),
            Some(credential) => write!(f, "{credential} from {}", self.origin),
        }
    }
}

/// The largest `Authorization` value accepted; longer ones are refused before any parsing
/// (ID tokens are 1–2 KB; GitHub Actions' about 1.5 KB).
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// A credential was presented but is not valid (401). The reason names the issuer, kid or
/// claim at fault; never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// What is wrong, for the answer and the audit log.
    pub reason: String,
}

impl AuthFailure {
    /// A failure for this reason.
    pub fn new(reason: impl Into<String>) -> AuthFailure {
        AuthFailure {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Turns `Authorization: Bearer …` (or `token …`, as the seed proxy's clients send a client
/// key) into a verified [`Credential`]: a `[[client]]` key or an `[[oidc]]` ID token.
#[derive(Debug)]
pub struct Authenticator {
    clients: client_keys::ClientKeys,
    oidc: oidc::OidcVerifier,
}

impl Authenticator {
    /// From the config's `[[client]]` and `[[oidc]]` tables. Keys are fetched later, on first
    /// use; a `ca_file` that cannot be read is an error now.
    pub fn from_config(config: &Config) -> Result<Authenticator, String> {
        Ok(Authenticator {
            clients: client_keys::ClientKeys::from_config(&config.clients)?,
            oidc: oidc::OidcVerifier::new(&config.oidc)?,
        })
    }

    /// An authenticator that knows no client and no issuer: every credential is refused.
    pub fn none() -> Authenticator {
        Authenticator {
            clients: client_keys::ClientKeys::default(),
            oidc: oidc::OidcVerifier::new(&[]).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The ID token verifier (for its counters).
    pub fn oidc(&self) -> &oidc::OidcVerifier {
        &self.oidc
    }

    /// The ID token verifier, to adjust (tests shorten its refresh interval).
    pub fn oidc_mut(&mut self) -> &mut oidc::OidcVerifier {
        &mut self.oidc
    }

    /// `Ok(None)` without an `Authorization` header; the credential when it is valid; an
    /// [`AuthFailure`] when one is presented but is not (several headers, another scheme, too
    /// long, an unknown key, a token that does not verify).
    pub async fn authenticate(
        &self,
        headers: &hyper::HeaderMap,
    ) -> Result<Option<Credential>, AuthFailure> {
        let mut values = headers.get_all(hyper::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthFailure::new(
                "more than one Authorization header: send one",
            ));
        }
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(AuthFailure::new(format!(
                "the credential is {} bytes; at most {MAX_CREDENTIAL_BYTES} are accepted",
                value.len()
            )));
        }
        let value = value
            .to_str()
            .map_err(|_| AuthFailure::new("the Authorization header is not ASCII"))?;
        let (scheme, secret) = value
            .split_once(' ')
            .map(|(scheme, secret)| (scheme, secret.trim()))
            .ok_or_else(|| {
                AuthFailure::new("the Authorization header is not `Bearer CREDENTIAL`")
            })?;
        let token_scheme = scheme.eq_ignore_ascii_case("token");
        if !(scheme.eq_ignore_ascii_case("bearer") || token_scheme) || secret.is_empty() {
            return Err(AuthFailure::new(
                "the Authorization header is not `Bearer CREDENTIAL` (client keys may also use `token KEY`)",
            ));
        }
        if !token_scheme && looks_like_jwt(secret) {
            return self
                .oidc
                .verify(secret)
                .await
                .map(|token| Some(Credential::IdToken(token)));
        }
        match self.clients.identify(secret) {
            Some(name) => Ok(Some(Credential::Client(name))),
            None => Err(AuthFailure::new(
                "the credential is neither a configured client key nor an ID token",
            )),
        }
    }
}

/// Three dot-separated parts, the first a base64url JSON object (`eyJ`): a JWS, not a key.
fn looks_like_jwt(secret: &str) -> bool {
    secret.starts_with("eyJ") && secret.split('.').count() == 3
}
