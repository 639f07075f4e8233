//! The client registry: who may use the proxy (`[[proxy.client]]`), recognised by the SHA-256
//! of the key they send (compared in constant time), and what each may ask for ([`Scopes`]: a
//! method and a regular expression over the REST path — the same type a `[[policy]]` entry's
//! `proxy_scopes` compile to).

use ghapp_protocol::config::{ProxyClientConfig, ProxyScopeConfig};
use regex::Regex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A registered client.
#[derive(Debug)]
pub struct Client {
    /// Its configured name (metrics, logs).
    pub name: String,
    /// SHA-256 of its key.
    digest: [u8; 32],
    /// What it may ask for; empty: everything.
    scopes: Scopes,
}

/// One scope: a method (`None` = any) and a path expression.
#[derive(Debug, Clone)]
struct Scope {
    method: Option<String>,
    path: Regex,
}

/// Compiled scopes: `{method, path}` pairs, a request is in them when one pair matches.
#[derive(Debug, Clone, Default)]
pub struct Scopes(Vec<Scope>);

/// A scope's path that is not a regular expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope path {pattern:?} is not a regular expression: {reason}")]
pub struct ScopeError {
    /// The expression as written.
    pub pattern: String,
    /// The compiler's message.
    pub reason: String,
}

impl Scopes {
    /// Compiles the scopes of a config entry (`method` `*` is any method).
    pub fn compile(configs: &[ProxyScopeConfig]) -> Result<Scopes, ScopeError> {
        configs
            .iter()
            .map(|scope| {
                let path = Regex::new(&scope.path).map_err(|e| ScopeError {
                    pattern: scope.path.clone(),
                    reason: e.to_string(),
                })?;
                let method = (scope.method != "*").then(|| scope.method.to_ascii_uppercase());
                Ok(Scope { method, path })
            })
            .collect::<Result<_, _>>()
            .map(Scopes)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one scope matches `method path` (path without `/api/v3` and without the query).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.0.iter().any(|scope| {
            scope
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && scope.path.is_match(path)
        })
    }
}

/// Equal when written the same (compiled expressions do not compare).
impl PartialEq for Scopes {
    fn eq(&self, other: &Scopes) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.method == b.method && a.path.as_str() == b.path.as_str())
    }
}

impl Eq for Scopes {}

impl Client {
    /// Whether `method path` (path without `/api/v3` and without the query) is in its scopes
    /// (no scopes: everything).
    pub fn allows(&self, method: &str, path: &str) -> bool {
        self.scopes.is_empty() || self.scopes.matches(method, path)
    }
}

/// Why a `[[proxy.client]]` entry cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The key digest is not 64 hex digits.
    #[error("[[proxy.client]] {client}: key_sha256 is not 64 hex digits")]
    BadDigest {
        /// The client's name.
        client: String,
    },
    /// A scope's path expression does not compile.
    #[error(
        "[[proxy.client]] {client}: scope path {pattern:?} is not a regular expression: {reason}"
    )]
    BadScope {
        /// The client's name.
        client: String,
        /// The expression as written.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
}

/// Why a request was not recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not `token KEY` / `Bearer KEY`.
    Missing,
    /// A key no client has.
    Unknown,
}

/// Every registered client.
#[derive(Debug, Default)]
pub struct Registry {
    clients: Vec<Client>,
}

impl Registry {
    /// Builds the registry, compiling every scope.
    pub fn new(configs: &[ProxyClientConfig]) -> Result<Registry, RegistryError> {
        let mut clients = Vec::with_capacity(configs.len());
        for config in configs {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(config.key_sha256.to_ascii_lowercase(), &mut digest).map_err(
                |_| RegistryError::BadDigest {
                    client: config.name.clone(),
                },
            )?;
            let scopes = Scopes::compile(&config.scopes).map_err(|e| RegistryError::BadScope {
                client: config.name.clone(),
                pattern: e.pattern,
                reason: e.reason,
            })?;
            clients.push(Client {
                name: config.name.clone(),
                digest,
                scopes,
            });
        }
        Ok(Registry { clients })
    }

    /// How many clients are registered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered (the proxy then refuses everyone).
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The client whose key the `Authorization` header value carries (`token KEY`,
    /// `Bearer KEY`, any case). Every digest is compared, in constant time, so the answer's
    /// timing does not tell which client (if any) came close.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&Client, AuthFailure> {
        let key = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(client_key)
            .ok_or(AuthFailure::Missing)?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for client in &self.clients {
            if bool::from(client.digest.ct_eq(&digest)) {
                found = Some(client);
            }
        }
        found.ok_or(AuthFailure::Unknown)
    }
}

/// The key of `token KEY` or `Bearer KEY` (scheme in any case).
fn client_key(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let key = rest.trim();
    let known = scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    (known && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::config::ProxyScopeConfig;

    fn registry() -> Registry {
        let digest = hex::encode(Sha256::digest(b"k1"));
        Registry::new(&[
            ProxyClientConfig {
                name: "ci".into(),
                key_sha256: digest,
                scopes: vec![ProxyScopeConfig {
                    method: "get".into(),
                    path: "^/repos/acme/".into(),
                }],
            },
            ProxyClientConfig {
                name: "all".into(),
                key_sha256: hex::encode(Sha256::digest(b"k2")),
                scopes: Vec::new(),
            },
        ])
        .expect("registry")
    }

    #[test]
    fn keys_and_scopes() {
        let registry = registry();
        let ci = registry.authenticate(Some(b"token k1")).expect("ci");
        assert_eq!(ci.name, "ci");
        assert_eq!(
            registry.authenticate(Some(b"Bearer k2")).expect("all").name,
            "all"
        );
        assert_eq!(
            registry.authenticate(Some(b"token nope")).err(),
            Some(AuthFailure::Unknown)
        );
        assert_eq!(
            registry.authenticate(Some(b"Basic eDp5")).err(),
            Some(AuthFailure::Missing)
        );
        assert_eq!(
            registry.authenticate(None).err(),
            Some(AuthFailure::Missing)
        );
        assert!(ci.allows("GET", "/repos/acme/widgets"));
        assert!(!ci.allows("POST", "/repos/acme/widgets"));
        assert!(!ci.allows("GET", "/repos/other/x"));
    }
}
