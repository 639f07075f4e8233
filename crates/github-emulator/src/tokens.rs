//! Installation tokens: minting both of GitHub's formats and remembering what each grants.
//!
//! - classic: `ghs_` + 36 alphanumerics (40 characters, no dots);
//! - stateless (GitHub's 2026 format): `ghs_<appid>_<jwt>`, an HS256 JWT signed with a secret
//!   only this emulator process knows, padded with claims to about 520 characters. Clients must
//!   treat it as opaque; the emulator looks every token up in its store either way.
//!
//! A token is valid while it is in the store, unexpired by the emulator's clock, older than the
//! replication delay, and its installation still exists.

use crate::model::PermissionSet;
use base64::Engine as _;
use std::collections::HashMap;

/// What a token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The installation it was minted for.
    pub installation_id: u64,
    /// The App that minted it.
    pub app_id: u64,
    /// Repository ids it is narrowed to, or `None` for all of the installation's.
    pub repository_ids: Option<Vec<u64>>,
    /// Its permissions.
    pub permissions: PermissionSet,
    /// Minting time (Unix seconds, emulator clock).
    pub created_at: i64,
    /// Expiry (Unix seconds, emulator clock).
    pub expires_at: i64,
}

/// Every minted, unrevoked token.
#[derive(Default)]
pub struct TokenStore {
    tokens: HashMap<String, Grant>,
    sweep_at: usize,
}

impl TokenStore {
    /// Stores a freshly minted token. Expired tokens are swept now and then so a long benchmark
    /// does not grow the store without bound.
    pub fn insert(&mut self, token: String, grant: Grant, now: i64) {
        if self.tokens.len() >= self.sweep_at.max(1024) {
            self.tokens.retain(|_, g| g.expires_at > now);
            self.sweep_at = self.tokens.len() * 2;
        }
        self.tokens.insert(token, grant);
    }

    /// The grant of a stored token (expiry not checked here).
    pub fn get(&self, token: &str) -> Option<&Grant> {
        self.tokens.get(token)
    }

    /// Revokes one token; returns whether it was present.
    pub fn revoke(&mut self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    /// Revokes every token of an installation, or every token at all; returns how many.
    pub fn revoke_all(&mut self, installation: Option<u64>) -> usize {
        let before = self.tokens.len();
        match installation {
            Some(id) => self.tokens.retain(|_, g| g.installation_id != id),
            None => self.tokens.clear(),
        }
        before - self.tokens.len()
    }

    /// Number of stored tokens.
    pub fn count(&self) -> usize {
        self.tokens.len()
    }
}

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_alphanumeric(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // aws-lc's CSPRNG: tokens are credentials even in an emulator.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes
        .iter()
        .map(|b| ALPHANUMERIC[usize::from(*b) % ALPHANUMERIC.len()] as char)
        .collect()
}

/// A classic token: `ghs_` + 36 alphanumerics.
pub fn classic_token() -> String {
    format!("ghs_{}", random_alphanumeric(36))
}

/// A stateless token: `ghs_<appid>_<HS256 JWT>` of about 520 characters with two dots.
pub fn stateless_token(secret: &[u8], grant: &Grant) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let repos = match &grant.repository_ids {
        Some(ids) => ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        None => "all".to_string(),
    };
    let perms: Vec<String> = grant
        .permissions
        .iter()
        .map(|(k, v)| format!("{k}:{}", v.as_str()))
        .collect();
    let claims = serde_json::json!({
        "iss": "github-emulator",
        "sub": format!("installation:{}", grant.installation_id),
        "aud": format!("app:{}", grant.app_id),
        "iat": grant.created_at,
        "exp": grant.expires_at,
        "jti": random_alphanumeric(32),
        "rep": repos,
        "per": perms.join(","),
    });
    let claims_text = claims.to_string();
    // Pad the claims so the whole token lands near GitHub's "~520 characters".
    let base_len = 4 + grant.app_id.to_string().len() + 1 + header.len() + 1 + 43 + 1;
    let target_payload_b64 = 520usize.saturating_sub(base_len);
    let target_json = target_payload_b64 * 3 / 4;
    let pad_len = target_json.saturating_sub(claims_text.len() + 10).max(8);
    let mut claims = claims;
    claims["pad"] = serde_json::Value::from(random_alphanumeric(pad_len));
    let payload = engine.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!(
        "ghs_{}_{signing_input}.{}",
        grant.app_id,
        engine.encode(tag.as_ref())
    )
}

/// A self-hosted runner registration or remove token: 29 uppercase alphanumerics, GitHub's shape.
pub fn runner_token() -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 29];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes
        .iter()
        .map(|b| UPPER[usize::from(*b) % UPPER.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn grant() -> Grant {
        Grant {
            installation_id: 100,
            app_id: 1,
            repository_ids: Some(vec![1, 2]),
            permissions: [("contents".to_string(), Level::Write)]
                .into_iter()
                .collect(),
            created_at: 1_700_000_000,
            expires_at: 1_700_003_600,
        }
    }

    #[test]
    fn classic_tokens_are_40_chars_without_dots() {
        let token = classic_token();
        assert_eq!(token.len(), 40);
        assert!(token.starts_with("ghs_"));
        assert!(token[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(token, classic_token());
    }

    #[test]
    fn stateless_tokens_are_about_520_chars_with_two_dots() {
        let token = stateless_token(b"secret", &grant());
        assert!(token.starts_with("ghs_1_ey"), "{token}");
        assert_eq!(token.matches('.').count(), 2);
        assert!((500..=540).contains(&token.len()), "len {}", token.len());
    }

    #[test]
    fn store_revokes_by_installation() {
        let mut store = TokenStore::default();
        store.insert("a".into(), grant(), 0);
        let mut other = grant();
        other.installation_id = 200;
        store.insert("b".into(), other, 0);
        assert_eq!(store.revoke_all(Some(100)), 1);
        assert!(store.get("a").is_none() && store.get("b").is_some());
        assert!(store.revoke("b"));
        assert!(!store.revoke("b"));
    }
}
