//! Secrets that cannot leak by accident, and the fingerprints logged in their place.
//!
//! A [`Token`] prints as its fingerprint in `Debug` and `Display`, so a token inside an error,
//! a log field or a `{:?}` of a larger struct never shows its bytes. Its buffer is zeroized on
//! drop. Code that must send the token (HTTP bodies, git's protocol) asks for it explicitly with
//! [`Token::expose`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroize;

/// How many hex digits of SHA-256 a fingerprint keeps: enough to tell tokens apart in logs,
/// far too few to help anyone guess one.
const FINGERPRINT_HEX_DIGITS: usize = 12;

/// A short, stable, non-reversible name for a secret: `sha256:` and the first 12 hex digits of
/// its SHA-256. Logged, audited and shown in status instead of the secret itself.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(FINGERPRINT_HEX_DIGITS);
    format!("sha256:{hex}")
}

/// A GitHub token (installation, runner registration, …) treated as opaque: classic 40-character
/// and 2026 stateless ~520-character tokens alike, never length-checked.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token received from GitHub or the daemon.
    pub fn new(token: impl Into<String>) -> Self {
        Token(token.into())
    }

    /// The token's bytes, for the few places that must send them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The fingerprint to log in place of the token.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

/// The longest password taken for an installation token: GitHub's stateless tokens are "about
/// 520 characters and will vary"; anything far beyond is someone else's secret.
const MAX_TOKEN_LEN: usize = 4096;

/// Whether `password` has the shape of a GitHub App installation token, so `erase` sends the
/// daemon nothing else (a GitLab token, a password from another helper): the classic form
/// `ghs_` + 36 alphanumerics, or the stateless form `ghs_<APPID>_<JWT>` (three base64url
/// segments joined by two dots).
pub fn is_installation_token(password: &str) -> bool {
    let Some(rest) = password.strip_prefix("ghs_") else {
        return false;
    };
    if password.len() > MAX_TOKEN_LEN {
        return false;
    }
    if rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return true;
    }
    let Some((app_id, jwt)) = rest.split_once('_') else {
        return false;
    };
    let segments: Vec<&str> = jwt.split('.').collect();
    !app_id.is_empty()
        && app_id.bytes().all(|b| b.is_ascii_digit())
        && segments.len() == 3
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `value` has the shape of a classic GitHub token of any kind — `ghp_` (personal),
/// `gho_` (OAuth), `ghu_` (user-to-server), `ghs_` (installation), `ghr_` (refresh) followed by
/// 36 alphanumerics — or of an installation token: a value never to be echoed or logged as a
/// name (a token pasted where an owner or repository belongs).
pub fn looks_like_github_token(value: &str) -> bool {
    let classic = value.len() == 40
        && ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]
            .iter()
            .any(|prefix| value.starts_with(prefix))
        && value[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    classic || is_installation_token(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_token_shapes() {
        assert!(is_installation_token(
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
        ));
        assert!(is_installation_token(
            "ghs_12345_eyJhbGciOi.eyJzdWIi-_x.c2lnbmF0dXJl"
        ));
        for other in [
            "",
            "hunter2",
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghs_short",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a1",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4!",
            "ghs_x1_a.b.c",
            "ghs_1_a.b",
            "ghs_1_a..c",
            "ghs_1_a.b.c.d",
            "ghs_1_a b.c.d",
        ] {
            assert!(!is_installation_token(other), "{other}");
        }
        let huge = format!("ghs_1_{}.b.c", "a".repeat(MAX_TOKEN_LEN));
        assert!(!is_installation_token(&huge));
    }

    #[test]
    fn github_token_shapes_of_every_kind() {
        for token in [
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
            "ghs_12345_eyJhbGciOi.eyJzdWIi-_x.c2lnbmF0dXJl",
        ] {
            assert!(looks_like_github_token(token), "{token}");
        }
        for name in [
            "widgets",
            "ghp_tools",
            "gh-pages",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a1",
        ] {
            assert!(!looks_like_github_token(name), "{name}");
        }
        assert!(
            crate::api::check_name("repo", "ghs_16C7e42F292c6912E7710c838347Ae178B4a").is_err()
        );
    }

    #[test]
    fn fingerprint_is_short_stable_and_prefixed() {
        let fp = fingerprint("ghs_16C7e42F292c6912E7710c838347Ae178B4a");
        assert!(fp.starts_with("sha256:"));
        assert_eq!(fp.len(), "sha256:".len() + FINGERPRINT_HEX_DIGITS);
        assert_eq!(fp, fingerprint("ghs_16C7e42F292c6912E7710c838347Ae178B4a"));
        assert_ne!(fp, fingerprint("ghs_other"));
    }

    #[test]
    fn token_never_prints_itself() {
        let raw = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
        let token = Token::new(raw);
        assert!(!format!("{token:?}").contains(raw));
        assert!(!format!("{token}").contains(raw));
        assert_eq!(token.expose(), raw);
        assert_eq!(serde_json::to_string(&token).unwrap(), format!("\"{raw}\""));
    }
}
