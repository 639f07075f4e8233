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
use ghapp_protocol::time::Timestamp;
use std::time::Duration;

/// How long before `expires_at` git is told to stop using a token. 60 s is far more than the
/// gap between the requests of one git command, and the daemon never serves a token with less
/// than its `min_ttl` (30 min by default) left, so without a cache in front git never sees it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why a token from the daemon is not passed on (the daemon broke its contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// The token has already expired by this host's clock.
    Expired {
        /// The daemon's `expires_at`.
        expires_at: Timestamp,
        /// This host's clock.
        now: Timestamp,
    },
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Expired { expires_at, now } => write!(
                f,
                "the daemon served a token that expired at {expires_at} (now {now})"
            ),
        }
    }
}

/// The expiry git is told: `expires_at` minus [`EXPIRY_MARGIN`], but never less than half the
/// life left, so a short-lived token (tests use TTLs of seconds) is not discarded by git the
/// moment it arrives.
pub fn advertised_expiry(expires_at: Timestamp, now: Timestamp) -> Result<Timestamp, AnswerError> {
    let remaining = expires_at.remaining(now);
    if remaining.is_zero() {
        return Err(AnswerError::Expired { expires_at, now });
    }
    Ok(expires_at.saturating_sub(EXPIRY_MARGIN.min(remaining / 2)))
}

/// git's answer for a token the daemon served; `password_expiry_utc` is in Unix seconds.
pub fn credential_for(
    token: &TokenResponse,
    now: Timestamp,
) -> Result<CredentialResponse, AnswerError> {
    let expiry = advertised_expiry(token.expires_at, now)?;
    Ok(CredentialResponse {
        username: TOKEN_USERNAME.to_string(),
        password: token.token.clone(),
        password_expiry_utc: Some(expiry.unix_seconds()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::permissions::Permissions;
    use ghapp_protocol::secret::Token;

    fn at(unix: i64) -> Timestamp {
        Timestamp::from_unix_seconds(unix).unwrap()
    }

    fn response(expires_at: Timestamp) -> TokenResponse {
        TokenResponse {
            token: Token::new("ghs_example"),
            expires_at,
            installation_id: 100,
            app: "test-app".into(),
            host: "github.com".into(),
            owner: "acme".into(),
            repositories: vec!["widgets".into()],
            permissions: Permissions::new(),
        }
    }

    #[test]
    fn margin_is_sixty_seconds_or_half_the_life_left() {
        let advertised = |remaining: i64| {
            advertised_expiry(at(10_000), at(10_000 - remaining)).map(Timestamp::unix_seconds)
        };
        assert_eq!(advertised(3600), Ok(10_000 - 60));
        assert_eq!(advertised(121), Ok(10_000 - 60));
        assert_eq!(advertised(20), Ok(10_000 - 10));
        assert_eq!(advertised(21), Ok(10_000 - 10));
        assert_eq!(advertised(1), Ok(10_000));
        assert!(matches!(advertised(0), Err(AnswerError::Expired { .. })));
        assert!(matches!(advertised(-1), Err(AnswerError::Expired { .. })));
        for remaining in 1..500 {
            let advertised = advertised(remaining).unwrap();
            assert!(
                advertised > 10_000 - remaining,
                "git must not drop a fresh token"
            );
            assert!(advertised <= 10_000, "never past the real expiry");
        }
    }

    #[test]
    fn answer_lines() {
        let expires_at: Timestamp = "2023-11-14T22:13:20Z".parse().unwrap();
        let now = at(1_700_000_000 - 3600);
        let answer = credential_for(&response(expires_at), now).unwrap();
        assert_eq!(
            answer.encode().unwrap(),
            b"username=x-access-token\npassword=ghs_example\npassword_expiry_utc=1699999940\n"
        );
        let err = credential_for(&response(expires_at), at(1_700_000_001)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the daemon served a token that expired at 2023-11-14T22:13:20Z (now 2023-11-14T22:13:21Z)"
        );
    }
}
