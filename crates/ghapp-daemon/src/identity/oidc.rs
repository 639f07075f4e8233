//! OIDC ID tokens: each `[[oidc]]` issuer's keys (its JWKS, from `jwks_url` or the issuer's
//! discovery document), and the verification of a presented token against them.
//!
//! - The token's *unverified* `iss` only picks which issuer's keys to try; the signature, `iss`,
//!   `aud`, `exp`, `nbf` and `iat` are then checked against that issuer (60 s leeway). A kid of
//!   one issuer on another issuer's token is simply an unknown kid there.
//! - The algorithm is the key's (the JWK's `alg`, else its type: RSA → RS256, P-256 → ES256),
//!   and only RS256 and ES256 are accepted; the token header's `alg` must equal it, so
//!   `alg: none` and HS256-signed-with-the-public-key tokens fail. jsonwebtoken does the
//!   crypto (`DecodingKey::from_jwk`).
//! - Keys are cached; an unknown kid refreshes them (so keys rotate without a restart), at most
//!   once per issuer per [`MIN_REFRESH_INTERVAL`], one fetch at a time (callers join it). The
//!   fetch runs in its own task with no lock held; a caller giving up does not cancel it.
//! - A verified token is remembered by its SHA-256 until it expires (at most
//!   [`VERIFIED_CACHE_CAPACITY`] of them), so a caller repeating its token costs a hash and a
//!   map look-up, not a signature check.
//!
//! Failures name the issuer, the kid or the claim at fault — never the token.
//!
//! Every key-set fetch is counted by issuer and outcome ([`jwks_fetch_counters`], on
//! `/metrics` as `ghapp_oidc_jwks_fetches_total`), so a fetch storm — or an issuer that stopped
//! answering — shows on a dashboard.

use super::{AuthFailure, VerifiedIdToken};
use ghapp_protocol::config::OidcConfig;
use ghapp_protocol::time::Timestamp;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// At most one JWKS fetch per issuer in this interval: a stream of tokens with unknown kids
/// cannot turn into a stream of fetches.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
/// Verified tokens remembered at most (each a few hundred bytes of claims).
pub const VERIFIED_CACHE_CAPACITY: usize = 10_000;
/// Verified tokens dropped at once (those expiring soonest) when the cache is full of live ones.
pub const EVICTED_WHEN_FULL: usize = VERIFIED_CACHE_CAPACITY / 10;
/// The largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a request waits for a key fetch another request started: the discovery
/// document and the JWKS, each bounded by [`FETCH_TIMEOUT`], plus slack. A waiter never
/// hangs on a fetch that cannot land; it then fails closed as an unknown key.
const FLIGHT_WAIT: Duration = Duration::from_secs(2 * FETCH_TIMEOUT.as_secs() + 5);

/// The labels of `ghapp_oidc_jwks_fetches_total`: the configured issuer (from the config file,
/// never from a token) and how the fetch ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct JwksFetchLabels {
    /// The `[[oidc]] issuer` whose keys were fetched.
    pub issuer: String,
    /// `ok`, `unreachable` (no answer: connect, TLS or timeout), `http_error` (a non-2xx
    /// status) or `invalid` (not a JWKS / discovery document, too large, no usable `jwks_uri`).
    pub outcome: &'static str,
}

/// Key-set fetches of this process, by issuer and outcome. One family for the whole process
/// rather than one per verifier: a reload rebuilds the verifier, and a Prometheus counter must
/// not go back to zero because the config was reloaded.
static JWKS_FETCHES: LazyLock<Family<JwksFetchLabels, Counter>> = LazyLock::new(Family::default);

/// The key-set fetch counters (a shared handle: register it on a metrics page).
pub fn jwks_fetch_counters() -> Family<JwksFetchLabels, Counter> {
    JWKS_FETCHES.clone()
}

/// Why a key-set fetch failed: its `outcome` label and a message naming the URL.
#[derive(Debug)]
struct FetchFailure {
    outcome: &'static str,
    message: String,
}

impl FetchFailure {
    fn unreachable(message: String) -> FetchFailure {
        FetchFailure {
            outcome: "unreachable",
            message,
        }
    }

    fn invalid(message: String) -> FetchFailure {
        FetchFailure {
            outcome: "invalid",
            message,
        }
    }
}

/// One issuer's usable keys, by kid.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
}

/// The refresh bookkeeping of one issuer (behind a std mutex never held across an await).
#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    in_flight: Option<broadcast::Sender<()>>,
    /// `jwks_uri` from the discovery document, once read.
    discovered: Option<String>,
}

/// Held by the key-fetch task: lands the issuer's flight when dropped, however the task ends.
struct FlightLanding(Arc<Issuer>);

impl Drop for FlightLanding {
    fn drop(&mut self) {
        self.0.land();
    }
}

/// One `[[oidc]]` issuer.
struct Issuer {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    refresh: Mutex<RefreshState>,
    fetches: AtomicU64,
}

/// Every configured issuer, and the verified-token cache.
pub struct OidcVerifier {
    issuers: HashMap<String, Arc<Issuer>>,
    min_refresh: Duration,
    verified: Mutex<HashMap<[u8; 32], Arc<VerifiedIdToken>>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OidcVerifier {
    /// Builds the HTTP client of each issuer (its `ca_file` added to the platform's roots).
    /// Nothing is fetched yet: keys are fetched when the first token of an issuer arrives.
    pub fn new(configs: &[OidcConfig]) -> Result<OidcVerifier, String> {
        let mut issuers = HashMap::new();
        for config in configs {
            let mut builder = reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::limited(3));
            if let Some(ca_file) = &config.ca_file {
                let pem = std::fs::read(ca_file).map_err(|e| {
                    format!(
                        "[[oidc]] {}: cannot read ca_file {}: {e}",
                        config.issuer,
                        ca_file.display()
                    )
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|certs| !certs.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "[[oidc]] {}: ca_file {} holds no PEM certificate",
                            config.issuer,
                            ca_file.display()
                        )
                    })?;
                builder = builder.tls_certs_merge(certs);
            }
            let http = builder.build().map_err(|e| {
                format!(
                    "[[oidc]] {}: cannot build the HTTP client: {e}",
                    config.issuer
                )
            })?;
            issuers.insert(
                config.issuer.clone(),
                Arc::new(Issuer {
                    config: config.clone(),
                    http,
                    keys: RwLock::new(Arc::new(KeySet::default())),
                    refresh: Mutex::new(RefreshState::default()),
                    fetches: AtomicU64::new(0),
                }),
            );
        }
        Ok(OidcVerifier {
            issuers,
            min_refresh: MIN_REFRESH_INTERVAL,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Changes the least time between two fetches of one issuer's keys (tests shorten it to
    /// see a rotation without waiting [`MIN_REFRESH_INTERVAL`]).
    pub fn set_min_refresh_interval(&mut self, interval: Duration) {
        self.min_refresh = interval;
    }

    /// True when no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// JWKS (and discovery) fetches made for `issuer` so far (for tests and metrics).
    pub fn fetches(&self, issuer: &str) -> u64 {
        self.issuers
            .get(issuer)
            .map_or(0, |i| i.fetches.load(Ordering::Relaxed))
    }

    /// Verifies an ID token; a repeated token is answered from the cache until it expires.
    pub async fn verify(&self, token: &str) -> Result<Arc<VerifiedIdToken>, AuthFailure> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Timestamp::now();
        if let Some(known) = self.cached(&hash, now) {
            return Ok(known);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthFailure::new("the ID token's header is not a JWS header with an RS256 or ES256 alg")
        })?;
        let kid = header
            .kid
            .ok_or_else(|| AuthFailure::new("the ID token names no key (kid)"))?;
        let unverified: serde_json::Map<String, serde_json::Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token)
                .map_err(|_| AuthFailure::new("the ID token's claims are not a JSON object"))?;
        let claimed_issuer = unverified
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| AuthFailure::new("the ID token has no iss claim"))?;
        let issuer = self.issuers.get(claimed_issuer).ok_or_else(|| {
            AuthFailure::new(format!(
                "ID tokens of issuer {} are not accepted: no [[oidc]] names it",
                printable(claimed_issuer)
            ))
        })?;
        let (key, algorithm) = issuer.key(&kid, self.min_refresh).await?;
        let verified = issuer.check(token, &kid, &key, algorithm)?;
        let verified = Arc::new(verified);
        self.remember(hash, verified.clone(), now);
        Ok(verified)
    }

    fn cached(&self, hash: &[u8; 32], now: Timestamp) -> Option<Arc<VerifiedIdToken>> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|known| known.expires_at > now)
            .cloned()
    }

    /// Remembers a verified token. When full, drops the expired ones and, if that is not
    /// enough, the [`EVICTED_WHEN_FULL`] that expire soonest at once: one scan of the cache per
    /// that many new tokens rather than per token, so a stream of first-seen tokens at capacity
    /// does not cost each of them a pass over 10,000 entries.
    fn remember(&self, hash: [u8; 32], verified: Arc<VerifiedIdToken>, now: Timestamp) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE_CAPACITY {
            cache.retain(|_, known| known.expires_at > now);
        }
        if cache.len() >= VERIFIED_CACHE_CAPACITY {
            let mut by_expiry: Vec<(Timestamp, [u8; 32])> = cache
                .iter()
                .map(|(hash, known)| (known.expires_at, *hash))
                .collect();
            let evicted = EVICTED_WHEN_FULL.min(by_expiry.len());
            if evicted > 0 {
                by_expiry.select_nth_unstable(evicted - 1);
                for (_, hash) in &by_expiry[..evicted] {
                    cache.remove(hash);
                }
            }
        }
        cache.insert(hash, verified);
    }

    /// Verified tokens remembered now.
    pub fn cached_tokens(&self) -> usize {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Issuer {
    /// The key `kid`, refreshing the key set once (rate-bounded) when it is not known.
    async fn key(
        self: &Arc<Self>,
        kid: &str,
        min_refresh: Duration,
    ) -> Result<(DecodingKey, Algorithm), AuthFailure> {
        if let Some(found) = self.lookup(kid) {
            return Ok(found);
        }
        self.refresh(min_refresh).await;
        self.lookup(kid).ok_or_else(|| {
            AuthFailure::new(format!(
                "the ID token's key {} is not among the RS256/ES256 keys of issuer {}",
                printable(kid),
                self.config.issuer
            ))
        })
    }

    fn lookup(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        keys.keys.get(kid).cloned()
    }

    /// Fetches the key set again unless one was fetched less than `min_refresh` ago; joins a
    /// fetch already under way.
    async fn refresh(self: &Arc<Self>, min_refresh: Duration) {
        let mut done = {
            let mut state = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(flight) = &state.in_flight {
                flight.subscribe()
            } else if state
                .last_attempt
                .is_some_and(|at| at.elapsed() < min_refresh)
            {
                return;
            } else {
                state.last_attempt = Some(Instant::now());
                let (tx, rx) = broadcast::channel(1);
                state.in_flight = Some(tx);
                let issuer = self.clone();
                tokio::spawn(async move {
                    // Clears the flight and wakes its waiters even if this task panics or
                    // is aborted (the runtime shutting down), so no later request waits on
                    // a fetch that will never land.
                    let _landing = FlightLanding(issuer.clone());
                    let fetched = issuer.fetch().await;
                    let outcome = match fetched {
                        Ok(set) => {
                            tracing::info!(issuer = %issuer.config.issuer, keys = set.keys.len(), "fetched the issuer's signing keys");
                            *issuer.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                            "ok"
                        }
                        Err(failure) => {
                            tracing::warn!(issuer = %issuer.config.issuer, outcome = failure.outcome, "cannot fetch the issuer's signing keys: {}", failure.message);
                            failure.outcome
                        }
                    };
                    JWKS_FETCHES
                        .get_or_create(&JwksFetchLabels {
                            issuer: issuer.config.issuer.clone(),
                            outcome,
                        })
                        .inc();
                });
                rx
            }
        };
        let _ = tokio::time::timeout(FLIGHT_WAIT, done.recv()).await;
    }

    /// Ends the flight under way: clears it and wakes every request waiting on it.
    fn land(&self) {
        let flight = self
            .refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .in_flight
            .take();
        if let Some(flight) = flight {
            let _ = flight.send(());
        }
    }

    /// Reads the JWKS (through the discovery document when no `jwks_url` is configured).
    async fn fetch(&self) -> Result<KeySet, FetchFailure> {
        let url = match &self.config.jwks_url {
            Some(url) => url.clone(),
            None => self.jwks_uri().await?,
        };
        let set: JwkSet = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| FetchFailure::invalid(format!("{url} is not a JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let Some(algorithm) = algorithm_of(jwk) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), (key, algorithm));
            }
        }
        Ok(KeySet { keys })
    }

    /// `jwks_uri` from `ISSUER/.well-known/openid-configuration` (read once, then remembered).
    async fn jwks_uri(&self) -> Result<String, FetchFailure> {
        if let Some(known) = self
            .refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .discovered
            .clone()
        {
            return Ok(known);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let document: serde_json::Value = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| FetchFailure::invalid(format!("{url} is not JSON: {e}")))?;
        let uri = document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| FetchFailure::invalid(format!("{url} has no jwks_uri")))?
            .to_string();
        // Keys over plain http only when the issuer itself is (a loopback test issuer).
        if !(uri.starts_with("https://")
            || (uri.starts_with("http://") && self.config.issuer.starts_with("http://")))
        {
            return Err(FetchFailure::invalid(format!(
                "{url} names a jwks_uri that is not https"
            )));
        }
        self.refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .discovered = Some(uri.clone());
        Ok(uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchFailure> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchFailure::unreachable(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(FetchFailure {
                outcome: "http_error",
                message: format!("GET {url}: HTTP {}", response.status()),
            });
        }
        let too_large =
            || FetchFailure::invalid(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| FetchFailure::unreachable(format!("GET {url}: {e}")))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        Ok(body.to_vec())
    }

    /// Checks the signature and claims with the key's own algorithm.
    fn check(
        &self,
        token: &str,
        kid: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<VerifiedIdToken, AuthFailure> {
        let issuer = &self.config.issuer;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[&self.config.audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            AuthFailure::new(match e.kind() {
                K::InvalidAlgorithm => format!(
                    "the ID token's alg is not {algorithm:?}, the algorithm of issuer {issuer}'s key {}",
                    printable(kid)
                ),
                K::InvalidSignature => {
                    format!("the ID token's signature does not verify with issuer {issuer}'s key {}", printable(kid))
                }
                K::ExpiredSignature => format!("the ID token of issuer {issuer} has expired"),
                K::ImmatureSignature => {
                    format!("the ID token of issuer {issuer} is not valid yet (nbf)")
                }
                K::InvalidAudience => format!(
                    "the ID token of issuer {issuer} is not for audience {}",
                    self.config.audience
                ),
                K::InvalidIssuer => format!("the ID token's iss is not {issuer}"),
                K::MissingRequiredClaim(claim) => {
                    format!("the ID token of issuer {issuer} has no {claim} claim")
                }
                _ => format!("the ID token of issuer {issuer} is malformed"),
            })
        })?;
        let claims = data.claims;
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(iat) = claims.get("iat") {
            match iat.as_u64() {
                Some(iat) if iat <= now + LEEWAY_SECS => {}
                Some(_) => {
                    return Err(AuthFailure::new(format!(
                        "the ID token of issuer {issuer} was issued in the future (iat)"
                    )));
                }
                None => {
                    return Err(AuthFailure::new(format!(
                        "the ID token of issuer {issuer} has an iat that is not a number"
                    )));
                }
            }
        }
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| AuthFailure::new(format!("the ID token of issuer {issuer} has no sub")))?
            .to_string();
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|exp| Timestamp::from_unix_seconds(exp).ok())
            .ok_or_else(|| {
                AuthFailure::new(format!("the ID token of issuer {issuer} has a bad exp"))
            })?;
        Ok(VerifiedIdToken {
            issuer: Arc::from(issuer.as_str()),
            subject,
            claims,
            expires_at,
        })
    }
}

/// RS256 or ES256, from the JWK alone: its `alg` when given (any other is refused), else its
/// key type (RSA → RS256, EC P-256 → ES256). Symmetric keys are never used.
fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(_) => None,
    }
}

/// A caller-supplied value fit for a message: printable ASCII, at most 80 characters.
fn printable(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(80)
        .collect();
    format!("{clean:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(expires_at: i64) -> Arc<VerifiedIdToken> {
        Arc::new(VerifiedIdToken {
            issuer: "https://issuer.example".into(),
            subject: "s".into(),
            claims: serde_json::Map::new(),
            expires_at: Timestamp::from_unix_seconds(expires_at).unwrap(),
        })
    }

    #[test]
    fn a_full_cache_drops_the_soonest_to_expire_in_one_batch() {
        let verifier = OidcVerifier::new(&[]).unwrap();
        let now = Timestamp::from_unix_seconds(1_000_000).unwrap();
        let key = |n: usize| -> [u8; 32] { Sha256::digest(n.to_le_bytes()).into() };
        for n in 0..VERIFIED_CACHE_CAPACITY {
            verifier.remember(key(n), verified(2_000_000 + n as i64), now);
        }
        assert_eq!(verifier.cached_tokens(), VERIFIED_CACHE_CAPACITY);
        verifier.remember(key(usize::MAX), verified(3_000_000), now);
        assert_eq!(
            verifier.cached_tokens(),
            VERIFIED_CACHE_CAPACITY - EVICTED_WHEN_FULL + 1
        );
        // The soonest to expire went; the latest and the new one stayed.
        assert!(verifier.cached(&key(0), now).is_none());
        assert!(verifier.cached(&key(EVICTED_WHEN_FULL - 1), now).is_none());
        assert!(verifier.cached(&key(EVICTED_WHEN_FULL), now).is_some());
        assert!(verifier.cached(&key(usize::MAX), now).is_some());
        // The next new tokens need no eviction until the cache is full again.
        verifier.remember(key(usize::MAX - 1), verified(3_000_000), now);
        assert_eq!(
            verifier.cached_tokens(),
            VERIFIED_CACHE_CAPACITY - EVICTED_WHEN_FULL + 2
        );
    }

    fn issuer() -> Arc<Issuer> {
        let config = OidcConfig {
            issuer: "https://issuer.example".into(),
            audience: "ghapp".into(),
            jwks_url: Some("https://issuer.example/jwks".into()),
            ca_file: None,
        };
        let verifier = OidcVerifier::new(&[config]).unwrap();
        verifier.issuers.values().next().unwrap().clone()
    }

    #[tokio::test]
    async fn an_aborted_fetch_task_still_lands_its_flight() {
        let issuer = issuer();
        let (tx, mut waiter) = broadcast::channel(1);
        issuer.refresh.lock().unwrap().in_flight = Some(tx);
        let task = tokio::spawn({
            let issuer = issuer.clone();
            async move {
                let _landing = FlightLanding(issuer);
                std::future::pending::<()>().await;
            }
        });
        tokio::task::yield_now().await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(issuer.refresh.lock().unwrap().in_flight.is_none());
        // The waiter is woken, not left hanging.
        assert!(waiter.recv().await.is_ok());
    }

    #[tokio::test]
    async fn a_panicking_fetch_task_still_lands_its_flight() {
        let issuer = issuer();
        let (tx, mut waiter) = broadcast::channel(1);
        issuer.refresh.lock().unwrap().in_flight = Some(tx);
        let task = tokio::spawn({
            let issuer = issuer.clone();
            async move {
                let _landing = FlightLanding(issuer);
                panic!("simulated failure inside the key fetch");
            }
        });
        assert!(task.await.unwrap_err().is_panic());
        assert!(issuer.refresh.lock().unwrap().in_flight.is_none());
        assert!(waiter.recv().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_on_a_flight_that_never_lands() {
        let issuer = issuer();
        // A flight whose sender nobody ever fires or drops.
        let (stuck, _) = broadcast::channel(1);
        issuer.refresh.lock().unwrap().in_flight = Some(stuck.clone());
        let started = tokio::time::Instant::now();
        tokio::time::timeout(2 * FLIGHT_WAIT, issuer.refresh(Duration::ZERO))
            .await
            .expect("the waiter gives up on its own");
        assert_eq!(started.elapsed(), FLIGHT_WAIT);
        assert!(issuer.lookup("unknown").is_none());
        drop(stuck);
    }

    #[test]
    fn expired_tokens_go_first() {
        let verifier = OidcVerifier::new(&[]).unwrap();
        let now = Timestamp::from_unix_seconds(1_000_000).unwrap();
        let key = |n: usize| -> [u8; 32] { Sha256::digest(n.to_le_bytes()).into() };
        for n in 0..VERIFIED_CACHE_CAPACITY {
            // Every other one has expired.
            let expires = if n % 2 == 0 { 999_000 } else { 2_000_000 };
            verifier.remember(key(n), verified(expires), now);
        }
        verifier.remember(key(usize::MAX), verified(3_000_000), now);
        assert_eq!(verifier.cached_tokens(), VERIFIED_CACHE_CAPACITY / 2 + 1);
    }
}
