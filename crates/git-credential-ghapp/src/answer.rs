//! The daemon's token turned into git's answer, with an expiry git and any cache in front of
//! ghapp will honour.
//!
//! `password_expiry_utc` is the token's `expires_at` minus a margin: git (2.41+) drops a
//! password whose expiry has passed, and `git credential-cache` hands the expiry back with the
//! password, so a cache in front of ghapp stops serving a token *before* GitHub stops accepting
//! it. The margin covers the rest of the git command that starts just before the expiry (a
//! fetch or push makes several HTTP requests, each authenticated anew) and a little clock skew
//! between this host and GitHub.

use ghapp_protocol::api::TokenResponse;
use ghapp_protocol::credential::{CredentialResponse, TOKEN_USERNAME};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before `expires_at` git is told to stop using a token. 60 s is far more than the
/// gap between the requests of one git command, and the daemon never serves a token with less
/// than its `min_ttl` (30 min by default) left, so without a cache in front git never sees it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why a token from the daemon is not passed on (the daemon broke its contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// `expires_at` is not RFC 3339: without an expiry a cache could serve the token stale.
    BadExpiry(String),
    /// The token has already expired by this host's clock.
    Expired,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::BadExpiry(value) => write!(
                f,
                "the daemon's expires_at {value:?} is not an RFC 3339 time"
            ),
            AnswerError::Expired => {
                f.write_str("the daemon served a token that has already expired")
            }
        }
    }
}

/// Unix seconds of an RFC 3339 time (`2026-11-22T05:00:00Z`, fractions and offsets allowed by
/// `humantime`'s weak parser for `Z`-less forms).
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(rfc3339)
        .or_else(|_| humantime::parse_rfc3339_weak(rfc3339))
        .ok()?;
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// The expiry git is told: `expires_at` minus [`EXPIRY_MARGIN`], but never less than half the
/// life left, so a short-lived token (tests use TTLs of seconds) is not discarded by git the
/// moment it arrives.
pub fn advertised_expiry(expires_at: i64, now: i64) -> Result<i64, AnswerError> {
    let remaining = expires_at - now;
    if remaining <= 0 {
        return Err(AnswerError::Expired);
    }
    let margin = (EXPIRY_MARGIN.as_secs() as i64).min(remaining / 2);
    Ok(expires_at - margin)
}

/// git's answer for a token the daemon served.
pub fn credential_for(
    token: &TokenResponse,
    now: SystemTime,
) -> Result<CredentialResponse, AnswerError> {
    let expires_at = unix_seconds(&token.expires_at)
        .ok_or_else(|| AnswerError::BadExpiry(token.expires_at.clone()))?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(CredentialResponse {
        username: TOKEN_USERNAME.to_string(),
        password: token.token.clone(),
        password_expiry_utc: Some(advertised_expiry(expires_at, now)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::permissions::Permissions;
    use ghapp_protocol::secret::Token;

    fn response(expires_at: &str) -> TokenResponse {
        TokenResponse {
            token: Token::new("ghs_example"),
            expires_at: expires_at.into(),
            installation_id: 100,
            app: "test-app".into(),
            host: "github.com".into(),
            owner: "acme".into(),
            repositories: vec!["widgets".into()],
            permissions: Permissions::new(),
        }
    }

    #[test]
    fn parses_githubs_form() {
        assert_eq!(unix_seconds("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            unix_seconds("2023-11-14T22:13:20.250Z"),
            Some(1_700_000_000)
        );
        assert_eq!(unix_seconds("tomorrow"), None);
        assert_eq!(unix_seconds(""), None);
    }

    #[test]
    fn margin_is_sixty_seconds_or_half_the_life_left() {
        assert_eq!(advertised_expiry(10_000, 10_000 - 3600), Ok(10_000 - 60));
        assert_eq!(advertised_expiry(10_000, 10_000 - 121), Ok(10_000 - 60));
        assert_eq!(advertised_expiry(10_000, 10_000 - 20), Ok(10_000 - 10));
        assert_eq!(advertised_expiry(10_000, 10_000 - 1), Ok(10_000));
        assert_eq!(advertised_expiry(10_000, 10_000), Err(AnswerError::Expired));
        assert_eq!(advertised_expiry(10_000, 10_001), Err(AnswerError::Expired));
        for remaining in 1..500 {
            let advertised = advertised_expiry(10_000, 10_000 - remaining).unwrap();
            assert!(
                advertised > 10_000 - remaining,
                "git must not drop a fresh token"
            );
            assert!(advertised <= 10_000, "never past the real expiry");
        }
    }

    #[test]
    fn answer_lines() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 3600);
        let answer = credential_for(&response("2023-11-14T22:13:20Z"), now).unwrap();
        assert_eq!(
            answer.encode().unwrap(),
            b"username=x-access-token\npassword=ghs_example\npassword_expiry_utc=1699999940\n"
        );
        assert!(matches!(
            credential_for(&response("soon"), now),
            Err(AnswerError::BadExpiry(_))
        ));
        let later = UNIX_EPOCH + Duration::from_secs(1_700_000_001);
        assert_eq!(
            credential_for(&response("2023-11-14T22:13:20Z"), later).unwrap_err(),
            AnswerError::Expired
        );
    }
}
