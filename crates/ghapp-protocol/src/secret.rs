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

#[cfg(test)]
mod tests {
    use super::*;

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
