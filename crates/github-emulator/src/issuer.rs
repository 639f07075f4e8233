//! The OIDC issuers' key store: per issuer, the keys its JWKS publishes (RS256 and ES256, each
//! with a `kid` = its RFC 7638 thumbprint), which of them signs now, rotation, and the fetch
//! counters of the public documents. Keys are made on first use (an RSA key costs ~0.1 s), off
//! the async threads and outside the lock.

use crate::oidc::{Alg, IssuerFetches, IssuerInfo, OidcStats, Rotated};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Why an issuer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The name is not `""` or 1–32 of `a-z0-9-`.
    #[error("invalid issuer name {name:?}: use 1-32 of a-z, 0-9 and -")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A named issuer that was never created.
    #[error("no OIDC issuer named {name:?}")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// Key generation failed.
    #[error("generating an {alg} key for issuer {name:?}: {reason}")]
    KeyGeneration {
        /// The issuer.
        name: String,
        /// The algorithm.
        alg: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// One issuer key: the private half (for signing) and its public JWK.
#[derive(Clone)]
pub struct IssuerKey {
    /// Its `kid`.
    pub kid: String,
    /// Its algorithm.
    pub alg: Alg,
    /// The private key, for jsonwebtoken.
    pub encoding: EncodingKey,
    /// The public JWK (`kty`, `alg`, `use`, `kid`, and `n`/`e` or `crv`/`x`/`y`).
    pub jwk: Value,
    /// The public key as SubjectPublicKeyInfo DER (for the HS256 confusion token).
    pub spki_der: Vec<u8>,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// Generates a fresh key (CPU-bound: call it off the async threads).
    pub fn generate(alg: Alg) -> anyhow::Result<IssuerKey> {
        let (encoding, spki_der, jwt_alg) = match alg {
            Alg::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
                let pkcs8 = pair
                    .as_der()
                    .map_err(|_| anyhow::anyhow!("encoding the RSA key failed"))?;
                let info = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_ref())
                    .map_err(|e| anyhow::anyhow!("re-reading the PKCS#8 RSA key: {e}"))?;
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| anyhow::anyhow!("encoding the RSA public key failed"))?;
                (
                    EncodingKey::from_rsa_der(info.private_key),
                    spki.as_ref().to_vec(),
                    jsonwebtoken::Algorithm::RS256,
                )
            }
            Alg::ES256 => {
                let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )
                .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| anyhow::anyhow!("encoding the P-256 key failed"))?;
                let spki = pair
                    .public_key()
                    .as_der()
                    .map_err(|_| anyhow::anyhow!("encoding the P-256 public key failed"))?;
                (
                    EncodingKey::from_ec_der(pkcs8.as_ref()),
                    spki.as_ref().to_vec(),
                    jsonwebtoken::Algorithm::ES256,
                )
            }
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, jwt_alg)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(IssuerKey {
            kid,
            alg,
            encoding,
            jwk: serde_json::to_value(&jwk)?,
            spki_der,
        })
    }
}

/// One issuer's keys.
#[derive(Debug, Clone)]
struct IssuerState {
    /// Published keys, in publication order.
    keys: Vec<IssuerKey>,
    /// The `kid` signing each algorithm now.
    signing: BTreeMap<Alg, String>,
}

impl IssuerState {
    fn signing_key(&self, alg: Alg) -> Option<&IssuerKey> {
        let kid = self.signing.get(&alg)?;
        self.keys.iter().find(|k| &k.kid == kid)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Issuers by name; a named one is present (possibly without keys yet) once created.
    issuers: BTreeMap<String, Option<IssuerState>>,
    stats: OidcStats,
}

/// Every issuer of this emulator.
#[derive(Debug, Default)]
pub struct Issuers {
    state: Mutex<State>,
}

/// Whether `name` may name an issuer (`""` is the default one).
pub fn valid_name(name: &str) -> bool {
    name.is_empty()
        || (name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

/// The issuer URL of `name` on an emulator whose API base is `api_base`: the base itself for the
/// default issuer, `{api_base}/oidc/{name}` for the others.
pub fn issuer_url(api_base: &str, name: &str) -> String {
    if name.is_empty() {
        api_base.to_string()
    } else {
        format!("{api_base}/oidc/{name}")
    }
}

impl Issuers {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an issuer is served (the default always is; others once created).
    pub fn exists(&self, name: &str) -> bool {
        name.is_empty() || self.lock().issuers.contains_key(name)
    }

    /// Creates the issuer if needed and makes sure it has keys (generated outside the lock; a
    /// concurrent caller's keys win, so an issuer never changes keys by accident).
    pub async fn ensure(&self, name: &str) -> Result<(), IssuerError> {
        if !valid_name(name) {
            return Err(IssuerError::InvalidName {
                name: name.to_string(),
            });
        }
        if matches!(self.lock().issuers.get(name), Some(Some(_))) {
            return Ok(());
        }
        let generated = tokio::task::spawn_blocking(|| {
            let rs = IssuerKey::generate(Alg::RS256).map_err(|e| (Alg::RS256, e))?;
            let es = IssuerKey::generate(Alg::ES256).map_err(|e| (Alg::ES256, e))?;
            Ok::<_, (Alg, anyhow::Error)>((rs, es))
        })
        .await
        .map_err(|e| (Alg::RS256, anyhow::anyhow!("key task: {e}")))
        .and_then(|r| r);
        let (rs, es) = generated.map_err(|(alg, e)| IssuerError::KeyGeneration {
            name: name.to_string(),
            alg: alg.as_str(),
            reason: format!("{e:#}"),
        })?;
        let mut state = self.lock();
        let slot = state.issuers.entry(name.to_string()).or_insert(None);
        if slot.is_none() {
            *slot = Some(IssuerState {
                signing: BTreeMap::from([
                    (Alg::RS256, rs.kid.clone()),
                    (Alg::ES256, es.kid.clone()),
                ]),
                keys: vec![rs, es],
            });
        }
        Ok(())
    }

    /// The key that signs `alg` tokens of `name` now (after [`Issuers::ensure`]).
    pub fn signing_key(&self, name: &str, alg: Alg) -> Result<IssuerKey, IssuerError> {
        let state = self.lock();
        state
            .issuers
            .get(name)
            .and_then(Option::as_ref)
            .and_then(|issuer| issuer.signing_key(alg))
            .cloned()
            .ok_or_else(|| IssuerError::Unknown {
                name: name.to_string(),
            })
    }

    /// The JWKS document of `name`, counted as a fetch; `None` if it has no keys yet.
    pub fn fetch_jwks(&self, name: &str) -> Option<Value> {
        let mut state = self.lock();
        let keys: Vec<Value> = state
            .issuers
            .get(name)?
            .as_ref()?
            .keys
            .iter()
            .map(|k| k.jwk.clone())
            .collect();
        state.stats.jwks_fetches += 1;
        state
            .stats
            .issuers
            .entry(name.to_string())
            .or_default()
            .jwks_fetches += 1;
        Some(json!({ "keys": keys }))
    }

    /// Counts a discovery fetch of `name`; false if it has no keys yet.
    pub fn count_discovery(&self, name: &str) -> bool {
        let mut state = self.lock();
        if !matches!(state.issuers.get(name), Some(Some(_))) {
            return false;
        }
        state.stats.discovery_fetches += 1;
        let entry: &mut IssuerFetches = state.stats.issuers.entry(name.to_string()).or_default();
        entry.discovery_fetches += 1;
        true
    }

    /// Where `name` is and what it publishes (after [`Issuers::ensure`]).
    pub fn info(&self, name: &str, api_base: &str) -> Result<IssuerInfo, IssuerError> {
        let state = self.lock();
        let issuer = state
            .issuers
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| IssuerError::Unknown {
                name: name.to_string(),
            })?;
        let url = issuer_url(api_base, name);
        let kid_of = |alg| issuer.signing.get(&alg).cloned().unwrap_or_default();
        Ok(IssuerInfo {
            discovery_url: format!("{url}/.well-known/openid-configuration"),
            jwks_uri: format!("{url}/.well-known/jwks"),
            issuer: url,
            kids: issuer.keys.iter().map(|k| k.kid.clone()).collect(),
            rs256_kid: kid_of(Alg::RS256),
            es256_kid: kid_of(Alg::ES256),
        })
    }

    /// Makes `new_key` the signing key for its algorithm; the key it replaces stays published
    /// when `keep_old`, else leaves the JWKS (after [`Issuers::ensure`]).
    pub fn rotate(
        &self,
        name: &str,
        new_key: IssuerKey,
        keep_old: bool,
    ) -> Result<Rotated, IssuerError> {
        let mut state = self.lock();
        let issuer = state
            .issuers
            .get_mut(name)
            .and_then(Option::as_mut)
            .ok_or_else(|| IssuerError::Unknown {
                name: name.to_string(),
            })?;
        let alg = new_key.alg;
        let kid = new_key.kid.clone();
        let previous_kid = issuer.signing.insert(alg, kid.clone()).unwrap_or_default();
        if !keep_old {
            issuer.keys.retain(|k| k.kid != previous_kid);
        }
        issuer.keys.push(new_key);
        Ok(Rotated {
            kid,
            previous_kid,
            kids: issuer.keys.iter().map(|k| k.kid.clone()).collect(),
        })
    }

    /// The fetch counters.
    pub fn stats(&self) -> OidcStats {
        self.lock().stats.clone()
    }

    /// Resets the fetch counters.
    pub fn reset_stats(&self) {
        self.lock().stats = OidcStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert!(valid_name(""));
        assert!(valid_name("k8s-2"));
        assert!(!valid_name("K8s"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(33)));
        assert_eq!(issuer_url("http://h:1", ""), "http://h:1");
        assert_eq!(issuer_url("http://h:1", "k8s"), "http://h:1/oidc/k8s");
    }

    #[test]
    fn generated_keys_publish_their_algorithm_and_kid() {
        for alg in [Alg::RS256, Alg::ES256] {
            let key = IssuerKey::generate(alg).expect("generate");
            assert_eq!(key.jwk["alg"], alg.as_str());
            assert_eq!(key.jwk["use"], "sig");
            assert_eq!(key.jwk["kid"], key.kid.as_str());
            assert!(!format!("{key:?}").contains("encoding"));
        }
    }
}
