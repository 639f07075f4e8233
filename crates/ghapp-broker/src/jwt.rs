//! The App JWT: RS256, `iat = now − 60 s` (GitHub's advice against clock drift),
//! `exp = now + 540 s` (under GitHub's 600 s limit), `iss` = client id when configured, else the
//! App id. One JWT is reused while it has at least a minute of life. When GitHub refuses the
//! client id as issuer (GHES before 3.14) and an App id is configured, the GitHub engine
//! switches the signer to the App id for good ([`JwtSigner::use_app_id_issuer`]).
//!
//! "now" is the local clock shifted by the offset learnt from GitHub's `Date` header when GitHub
//! rejected a JWT for its times (octokit's recovery), so a host with a wrong clock still works.

use crate::clock::unix_now;
use crate::error::BrokerError;
use crate::key::AppKey;
use ghapp_protocol::secret::Token;
use jsonwebtoken::{Algorithm, Header, encode};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// Seconds `iat` is backdated.
pub(crate) const IAT_BACKDATE_SECS: i64 = 60;
/// Seconds from now to `exp` (GitHub refuses more than 600).
pub(crate) const LIFETIME_SECS: i64 = 540;
/// A JWT with less life than this is replaced rather than reused.
pub(crate) const REUSE_MARGIN_SECS: i64 = 60;

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

struct Current {
    jwt: Token,
    exp: i64,
    offset: i64,
}

/// Signs and caches an App's JWTs.
pub(crate) struct JwtSigner {
    key: Arc<AppKey>,
    issuer: Issuer,
    /// The App id, when `issuer` is a client id: what to issue as if GitHub refuses that.
    app_id_fallback: Option<u64>,
    /// The App id replaced the client id as issuer.
    issuing_app_id: AtomicBool,
    offset_secs: AtomicI64,
    current: Mutex<Option<Current>>,
}

impl JwtSigner {
    /// A signer for `key`, issuing as `client_id` when given, else as `app_id`.
    pub(crate) fn new(
        key: Arc<AppKey>,
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
            key,
            issuer,
            app_id_fallback,
            issuing_app_id: AtomicBool::new(false),
            offset_secs: AtomicI64::new(0),
            current: Mutex::new(None),
        })
    }

    /// A JWT with at least [`REUSE_MARGIN_SECS`] of life by GitHub's clock.
    pub(crate) fn jwt(&self) -> Result<Token, BrokerError> {
        let offset = self.offset_secs.load(Ordering::Relaxed);
        let now = unix_now(offset);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = current.as_ref()
            && c.offset == offset
            && c.exp - now >= REUSE_MARGIN_SECS
        {
            return Ok(c.jwt.clone());
        }
        let fallback = self
            .app_id_fallback
            .filter(|_| self.issuing_app_id.load(Ordering::Relaxed))
            .map(Issuer::AppId);
        let claims = Claims {
            iat: now - IAT_BACKDATE_SECS,
            exp: now + LIFETIME_SECS,
            iss: fallback.as_ref().unwrap_or(&self.issuer),
        };
        let jwt = encode(
            &Header::new(Algorithm::RS256),
            &claims,
            self.key.encoding_key(),
        )
        .map_err(|e| {
            BrokerError::internal(format!(
                "cannot sign the App JWT with the key from {}: {e}",
                self.key.source()
            ))
        })?;
        let jwt = Token::new(jwt);
        *current = Some(Current {
            jwt: jwt.clone(),
            exp: claims.exp,
            offset,
        });
        Ok(jwt)
    }

    /// Adopts GitHub's clock: `offset_secs` is GitHub's time minus ours. The next JWT is signed
    /// afresh with the corrected times.
    pub(crate) fn set_clock_offset(&self, offset_secs: i64) {
        self.offset_secs.store(offset_secs, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
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
    use crate::key::tests::TEST_KEY_PEM;
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[derive(serde::Deserialize)]
    struct Decoded {
        iat: i64,
        exp: i64,
        iss: serde_json::Value,
    }

    fn signer(app_id: Option<u64>, client_id: Option<&str>) -> JwtSigner {
        let key = AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "test".into(), "t").unwrap();
        JwtSigner::new(Arc::new(key), app_id, client_id).unwrap()
    }

    fn claims(jwt: &Token) -> Decoded {
        let public = std::process::Command::new("openssl")
            .args(["rsa", "-pubout"])
            .arg("-in")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/test-key.pem"
            ))
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

    #[test]
    fn claims_follow_githubs_rules_and_verify() {
        let s = signer(Some(12345), None);
        let jwt = s.jwt().unwrap();
        let c = claims(&jwt);
        let now = unix_now(0);
        assert!((c.iat - (now - 60)).abs() <= 2);
        assert!((c.exp - (now + 540)).abs() <= 2);
        assert!(c.exp - c.iat <= 600);
        assert_eq!(c.iss, serde_json::json!(12345));
        assert_eq!(s.jwt().unwrap(), jwt, "reused while it has life");
        assert!(!format!("{jwt:?}").contains(jwt.expose()));
    }

    #[test]
    fn client_id_preferred_and_offset_applied() {
        let s = signer(Some(1), Some("Iv23liABC"));
        assert_eq!(
            claims(&s.jwt().unwrap()).iss,
            serde_json::json!("Iv23liABC")
        );
        let before = s.jwt().unwrap();
        s.set_clock_offset(-300);
        let after = s.jwt().unwrap();
        assert_ne!(before, after, "re-signed after a clock correction");
        let c = claims(&after);
        assert!((c.iat - (unix_now(0) - 360)).abs() <= 2);
        assert_eq!(s.clock_offset(), -300);
    }

    #[test]
    fn a_refused_client_id_gives_way_to_the_app_id_once() {
        let s = signer(Some(7), Some("Iv23liABC"));
        assert_eq!(s.issuer_kind(), "client id");
        let before = s.jwt().unwrap();
        assert!(s.use_app_id_issuer());
        assert_eq!(s.issuer_kind(), "App id");
        let after = s.jwt().unwrap();
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
