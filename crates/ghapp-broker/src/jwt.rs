//! The App JWT: RS256, `iat = now − 60 s` (GitHub's advice against clock drift),
//! `exp = now + 540 s` (under GitHub's 600 s limit), `iss` = client id when configured, else the
//! App id. One JWT is reused while it has at least a minute of life, so signing stays off the
//! hot path: a signer is asked about once every eight minutes per App. When GitHub refuses the
//! client id as issuer (GHES before 3.14) and an App id is configured, the GitHub engine
//! switches the signer to the App id for good ([`JwtSigner::use_app_id_issuer`]).
//!
//! The signature comes from the App's [`Signer`]s (`signer/`): the PEM key in memory signs
//! inline; any other signer (a command, a PKCS#11 token) blocks, so it runs on tokio's blocking
//! pool as one flight that every caller needing a JWT meanwhile waits on — no lock is held
//! while it signs, and a caller that gives up cancels nothing.
//!
//! Rotation: an App may have a second signer (`next_*`). The first signs until GitHub rejects
//! a JWT it signed; then the next one signs ([`JwtSigner::rejected`] says the request is worth
//! sending again), with no restart and no failed request.
//!
//! "now" is the local clock shifted by the offset learnt from GitHub's `Date` header when GitHub
//! rejected a JWT for its times (octokit's recovery), so a host with a wrong clock still works.

use crate::clock::unix_now;
use crate::error::BrokerError;
use crate::flight::{Flight, flight, spawn_flight};
use crate::signer::{SignError, Signer};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ghapp_protocol::secret::Token;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Seconds `iat` is backdated.
pub(crate) const IAT_BACKDATE_SECS: i64 = 60;
/// Seconds from now to `exp` (GitHub refuses more than 600).
pub(crate) const LIFETIME_SECS: i64 = 540;
/// A JWT with less life than this is replaced rather than reused.
pub(crate) const REUSE_MARGIN_SECS: i64 = 60;
/// How many recently signed JWTs are remembered with the signer that made them.
const ISSUED_REMEMBERED: usize = 4;
/// `{"alg":"RS256","typ":"JWT"}`, base64url.
const HEADER_B64: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9";

/// The `iss` claim: a number for an App id, a string for a client id.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Issuer {
    AppId(u64),
    ClientId(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a Issuer,
}

/// A signed JWT and what it was signed with.
#[derive(Clone)]
struct Current {
    jwt: Token,
    exp: i64,
    offset: i64,
    /// Index of the signer in [`JwtSigner::signers`].
    key: usize,
}

/// The signing in progress: its id (so a superseded flight does not clear a newer one).
type SigningFlight = (u64, Flight<Result<Current, SignError>>);

#[derive(Default)]
struct State {
    /// The signer in use.
    active: usize,
    current: Option<Current>,
    signing: Option<SigningFlight>,
    next_flight: u64,
    /// Recent JWTs and their signers, to tell which key GitHub rejected.
    issued: VecDeque<(Token, usize)>,
}

impl State {
    fn remember(&mut self, current: &Current) {
        self.current = Some(current.clone());
        if self.issued.len() == ISSUED_REMEMBERED {
            self.issued.pop_front();
        }
        self.issued.push_back((current.jwt.clone(), current.key));
    }
}

/// Signs and caches an App's JWTs.
pub(crate) struct JwtSigner {
    signers: Vec<Arc<dyn Signer>>,
    issuer: Issuer,
    /// The App id, when `issuer` is a client id: what to issue as if GitHub refuses that.
    app_id_fallback: Option<u64>,
    /// The App id replaced the client id as issuer.
    issuing_app_id: AtomicBool,
    offset_secs: AtomicI64,
    state: Arc<Mutex<State>>,
}

impl JwtSigner {
    /// A JWT signer using `signer`, issuing as `client_id` when given, else as `app_id`.
    pub(crate) fn new(
        signer: Arc<dyn Signer>,
        app_id: Option<u64>,
        client_id: Option<&str>,
    ) -> Result<Self, BrokerError> {
        let issuer = match (client_id, app_id) {
            (Some(client_id), _) => Issuer::ClientId(client_id.to_string()),
            (None, Some(app_id)) => Issuer::AppId(app_id),
            (None, None) => return Err(BrokerError::internal("an App needs app_id or client_id")),
        };
        let app_id_fallback = match issuer {
            Issuer::ClientId(_) => app_id,
            Issuer::AppId(_) => None,
        };
        Ok(JwtSigner {
            signers: vec![signer],
            issuer,
            app_id_fallback,
            issuing_app_id: AtomicBool::new(false),
            offset_secs: AtomicI64::new(0),
            state: Arc::default(),
        })
    }

    /// Adds the signer used when GitHub rejects the ones before it (key rotation).
    pub(crate) fn with_next(mut self, next: Arc<dyn Signer>) -> Self {
        self.signers.push(next);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A JWT with at least [`REUSE_MARGIN_SECS`] of life by GitHub's clock: the one in hand,
    /// or a new one from the active signer.
    pub(crate) async fn jwt(&self) -> Result<Token, SignError> {
        let offset = self.offset_secs.load(Ordering::Relaxed);
        let now = unix_now(offset);
        let flight = {
            let mut state = self.lock();
            if let Some(c) = state.current.as_ref()
                && c.offset == offset
                && c.key == state.active
                && c.exp - now >= REUSE_MARGIN_SECS
            {
                return Ok(c.jwt.clone());
            }
            let key = state.active;
            let fallback = self
                .app_id_fallback
                .filter(|_| self.issuing_app_id.load(Ordering::Relaxed))
                .map(Issuer::AppId);
            let signer = self.signers[key].clone();
            let claims = Claims {
                iat: now - IAT_BACKDATE_SECS,
                exp: now + LIFETIME_SECS,
                iss: fallback.as_ref().unwrap_or(&self.issuer),
            };
            let claims_json = serde_json::to_vec(&claims).map_err(|e| {
                SignError::new(signer.as_ref(), format!("cannot encode the claims: {e}"))
            })?;
            let input = format!("{HEADER_B64}.{}", URL_SAFE_NO_PAD.encode(claims_json));
            let unsigned = Current {
                jwt: Token::new(String::new()),
                exp: claims.exp,
                offset,
                key,
            };
            if signer.is_inline() {
                // A key in memory: as fast as a lock, so signed right here.
                let current = finish(unsigned, &input, signer.sign(input.as_bytes()))?;
                state.remember(&current);
                return Ok(current.jwt);
            }
            match &state.signing {
                Some((_, flight)) => flight.clone(),
                None => self.start_signing(&mut state, signer, input, unsigned),
            }
        };
        match flight.wait().await {
            Some(result) => result.map(|current| current.jwt),
            None => Err(SignError {
                signer: self.active_signer().describe().to_string(),
                detail: "the signing task ended without a signature".into(),
            }),
        }
    }

    /// Starts signing `input` on the blocking pool as the flight every caller waits on.
    fn start_signing(
        &self,
        state: &mut State,
        signer: Arc<dyn Signer>,
        input: String,
        unsigned: Current,
    ) -> Flight<Result<Current, SignError>> {
        let (tx, waiter) = flight();
        let id = state.next_flight;
        state.next_flight += 1;
        state.signing = Some((id, waiter.clone()));
        let shared = self.state.clone();
        let described = signer.describe().to_string();
        let died = described.clone();
        let limit = signer.wait_limit();
        let work = async move {
            let blocking = tokio::task::spawn_blocking(move || {
                let signature = signer.sign(input.as_bytes());
                (input, signature)
            });
            let signed = match limit {
                // A call that cannot be interrupted (a C library) is left to finish on its
                // thread; the callers waiting on it are released at the limit.
                Some(limit) => {
                    tokio::time::timeout(limit, blocking)
                        .await
                        .map_err(|_| SignError {
                            signer: described.clone(),
                            detail: format!(
                                "did not answer within sign_timeout ({:.1}s)",
                                limit.as_secs_f64()
                            ),
                        })?
                }
                None => blocking.await,
            };
            match signed {
                Ok((input, signature)) => finish(unsigned, &input, signature),
                Err(e) => Err(SignError {
                    signer: described,
                    detail: format!("the signer failed: {e}"),
                }),
            }
        };
        let settle = move |output: Option<Result<Current, SignError>>| {
            let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
            if state.signing.as_ref().is_some_and(|(i, _)| *i == id) {
                state.signing = None;
            }
            let result = output.unwrap_or_else(|| {
                Err(SignError {
                    signer: died,
                    detail: "the signing task ended without a signature".into(),
                })
            });
            match &result {
                Ok(current) => state.remember(current),
                Err(e) => tracing::warn!("cannot sign the App JWT: {e}"),
            }
            result
        };
        spawn_flight(tx, work, settle);
        waiter
    }

    /// GitHub rejected `jwt` for a reason other than its times: the JWT is dropped, and when
    /// the App has another signer, the one that signed `jwt` is replaced by the next. True
    /// when the request is worth sending again with a JWT from another signer.
    pub(crate) fn rejected(&self, jwt: &Token) -> bool {
        let mut state = self.lock();
        state.current = None;
        state.signing = None;
        if self.signers.len() < 2 {
            return false;
        }
        let Some(&(_, key)) = state.issued.iter().find(|(issued, _)| issued == jwt) else {
            return false;
        };
        if key == state.active {
            let next = (key + 1) % self.signers.len();
            tracing::warn!(
                rejected = %self.signers[key].fingerprint(),
                rejected_signer = %self.signers[key].describe(),
                next = %self.signers[next].fingerprint(),
                next_signer = %self.signers[next].describe(),
                "GitHub rejected the App JWT; signing with the next key from now on"
            );
            state.active = next;
        }
        true
    }

    /// The signer in use.
    pub(crate) fn active_signer(&self) -> Arc<dyn Signer> {
        self.signers[self.lock().active].clone()
    }

    /// Adopts GitHub's clock: `offset_secs` is GitHub's time minus ours. The next JWT is signed
    /// afresh with the corrected times.
    pub(crate) fn set_clock_offset(&self, offset_secs: i64) {
        self.offset_secs.store(offset_secs, Ordering::Relaxed);
        let mut state = self.lock();
        state.current = None;
        state.signing = None;
    }

    /// The clock offset in use (GitHub minus local, seconds).
    pub(crate) fn clock_offset(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }

    /// Issues as the App id from now on instead of the client id; false when there is nothing
    /// to switch to (no App id configured, the issuer already an App id, or switched before).
    pub(crate) fn use_app_id_issuer(&self) -> bool {
        if self.app_id_fallback.is_none() || self.issuing_app_id.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.forget();
        true
    }

    /// The issuer in use: `client id` or `App id`.
    pub(crate) fn issuer_kind(&self) -> &'static str {
        match self.issuer {
            Issuer::ClientId(_) if !self.issuing_app_id.load(Ordering::Relaxed) => "client id",
            _ => "App id",
        }
    }

    /// Forgets the cached JWT (after GitHub rejected it).
    pub(crate) fn forget(&self) {
        let mut state = self.lock();
        state.current = None;
        state.signing = None;
    }
}

/// The JWT `input.signature`, or the signer's error.
fn finish(
    unsigned: Current,
    input: &str,
    signature: Result<Vec<u8>, SignError>,
) -> Result<Current, SignError> {
    let signature = signature?;
    Ok(Current {
        jwt: Token::new(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))),
        ..unsigned
    })
}

/// True for GitHub's 401 messages that mean "your clock and mine disagree" (the two octokit
/// recovers from): `'Expiration time' claim ('exp') …` and `'Issued at' claim ('iat') …`.
pub(crate) fn is_clock_skew_message(message: &str) -> bool {
    message.contains("'Expiration time' claim ('exp')")
        || message.contains("'Issued at' claim ('iat')")
}

/// True for GitHub's 401 refusing the JWT's issuer: `'Issuer' claim ('iss') must be an
/// Integer` (what GHES before 3.14 answers a client id).
pub(crate) fn is_issuer_message(message: &str) -> bool {
    message.contains("'Issuer' claim ('iss')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::AppKey;
    use crate::key::tests::TEST_KEY_PEM;
    use crate::signer::CommandSigner;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    struct Decoded {
        iat: i64,
        exp: i64,
        iss: serde_json::Value,
    }

    const KEY_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-key.pem");

    fn pem() -> Arc<AppKey> {
        Arc::new(AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "test".into(), "t").unwrap())
    }

    fn signer(app_id: Option<u64>, client_id: Option<&str>) -> JwtSigner {
        JwtSigner::new(pem(), app_id, client_id).unwrap()
    }

    fn command(script: &str) -> Arc<CommandSigner> {
        Arc::new(
            CommandSigner::new(
                &["sh".into(), "-c".into(), script.into()],
                Duration::from_secs(10),
            )
            .unwrap(),
        )
    }

    fn claims(jwt: &Token) -> Decoded {
        let public = std::process::Command::new("openssl")
            .args(["rsa", "-pubout", "-in", KEY_FILE])
            .output()
            .unwrap()
            .stdout;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        decode::<Decoded>(
            jwt.expose(),
            &DecodingKey::from_rsa_pem(&public).unwrap(),
            &validation,
        )
        .unwrap()
        .claims
    }

    #[tokio::test]
    async fn claims_follow_githubs_rules_and_verify() {
        let s = signer(Some(12345), None);
        let jwt = s.jwt().await.unwrap();
        let c = claims(&jwt);
        let now = unix_now(0);
        assert!((c.iat - (now - 60)).abs() <= 2);
        assert!((c.exp - (now + 540)).abs() <= 2);
        assert!(c.exp - c.iat <= 600);
        assert_eq!(c.iss, serde_json::json!(12345));
        assert_eq!(s.jwt().await.unwrap(), jwt, "reused while it has life");
        assert!(!format!("{jwt:?}").contains(jwt.expose()));
    }

    #[tokio::test]
    async fn client_id_preferred_and_offset_applied() {
        let s = signer(Some(1), Some("Iv23liABC"));
        assert_eq!(
            claims(&s.jwt().await.unwrap()).iss,
            serde_json::json!("Iv23liABC")
        );
        let before = s.jwt().await.unwrap();
        s.set_clock_offset(-300);
        let after = s.jwt().await.unwrap();
        assert_ne!(before, after, "re-signed after a clock correction");
        let c = claims(&after);
        assert!((c.iat - (unix_now(0) - 360)).abs() <= 2);
        assert_eq!(s.clock_offset(), -300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_signs_once_for_every_caller_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = format!(
            "echo x >> {count}; sleep 0.3; exec openssl dgst -sha256 -sign {KEY_FILE}",
            count = count.display()
        );
        let s = Arc::new(JwtSigner::new(command(&script), Some(7), None).unwrap());
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.jwt().await.unwrap() })
            })
            .collect();
        let mut jwts = Vec::new();
        for caller in callers {
            jwts.push(caller.await.unwrap());
        }
        assert!(jwts.iter().all(|j| *j == jwts[0]), "one JWT for all");
        assert_eq!(claims(&jwts[0]).iss, serde_json::json!(7));
        assert_eq!(s.jwt().await.unwrap(), jwts[0], "reused: no second run");
        let runs = std::fs::read_to_string(&count).unwrap().lines().count();
        assert_eq!(runs, 1, "the command ran once for 9 callers");
    }

    #[tokio::test]
    async fn a_failing_signer_is_named_and_tried_again_next_time() {
        let s = JwtSigner::new(command("echo 'HSM offline' >&2; exit 1"), Some(7), None).unwrap();
        let err = s.jwt().await.unwrap_err();
        assert_eq!(err.signer, "command sh");
        assert_eq!(err.detail, "failed (exit status: 1): HSM offline");
        assert!(s.jwt().await.is_err(), "a failure is not cached as a JWT");
    }

    /// A signer stuck in a call it cannot leave, like a hung token.
    struct Stuck;

    impl Signer for Stuck {
        fn sign(&self, _input: &[u8]) -> Result<Vec<u8>, SignError> {
            std::thread::sleep(Duration::from_secs(3));
            Err(SignError::new(self, "woke up"))
        }
        fn describe(&self) -> &str {
            "stuck token"
        }
        fn fingerprint(&self) -> String {
            "sha256:stuck".into()
        }
        fn wait_limit(&self) -> Option<Duration> {
            Some(Duration::from_millis(200))
        }
    }

    #[tokio::test]
    async fn callers_stop_waiting_for_a_stuck_signer_at_its_limit() {
        let s = JwtSigner::new(Arc::new(Stuck), Some(7), None).unwrap();
        let started = std::time::Instant::now();
        let err = s.jwt().await.unwrap_err();
        assert_eq!(err.signer, "stuck token");
        assert_eq!(err.detail, "did not answer within sign_timeout (0.2s)");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_rejected_key_hands_over_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let next_key = dir.path().join("next.pem");
        let made = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&next_key)
            .arg("2048")
            .output()
            .unwrap();
        assert!(made.status.success());
        let next = command(&format!(
            "exec openssl dgst -sha256 -sign {}",
            next_key.display()
        ));
        let s = signer(Some(7), None).with_next(next.clone());
        let first = s.jwt().await.unwrap();
        assert_eq!(s.active_signer().describe(), "test");
        assert!(s.rejected(&first), "worth retrying with the next key");
        assert_eq!(s.active_signer().describe(), "command sh");
        let second = s.jwt().await.unwrap();
        assert_ne!(first, second, "signed by the next key");
        // A late rejection of the first key's JWT changes nothing more.
        assert!(s.rejected(&first));
        assert_eq!(s.active_signer().describe(), "command sh");
        // The next key rejected too: back to the first (it may have been re-registered).
        let third = s.jwt().await.unwrap();
        assert!(s.rejected(&third));
        assert_eq!(s.active_signer().describe(), "test");
        // One signer only: nothing to switch to.
        let single = signer(Some(7), None);
        let jwt = single.jwt().await.unwrap();
        assert!(!single.rejected(&jwt));
    }

    #[tokio::test]
    async fn a_refused_client_id_gives_way_to_the_app_id_once() {
        let s = signer(Some(7), Some("Iv23liABC"));
        assert_eq!(s.issuer_kind(), "client id");
        let before = s.jwt().await.unwrap();
        assert!(s.use_app_id_issuer());
        assert_eq!(s.issuer_kind(), "App id");
        let after = s.jwt().await.unwrap();
        assert_ne!(before, after, "re-signed");
        assert_eq!(claims(&after).iss, serde_json::json!(7));
        assert!(!s.use_app_id_issuer(), "once");
        assert!(
            !signer(None, Some("Iv23liABC")).use_app_id_issuer(),
            "no App id"
        );
        assert!(
            !signer(Some(7), None).use_app_id_issuer(),
            "already the App id"
        );
        assert!(is_issuer_message(
            "'Issuer' claim ('iss') must be an Integer"
        ));
    }

    #[test]
    fn skew_messages() {
        assert!(is_clock_skew_message(
            "'Expiration time' claim ('exp') is too far in the future"
        ));
        assert!(is_clock_skew_message(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
        ));
        assert!(!is_clock_skew_message(
            "A JSON web token could not be decoded"
        ));
    }
}
