//! The PEM key held in memory ([`AppKey`]) as a [`Signer`]: today's behaviour.

use super::{SignError, Signer};
use crate::key::AppKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

impl Signer for AppKey {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let signature = jsonwebtoken::crypto::sign(input, self.encoding_key(), Algorithm::RS256)
            .map_err(|e| SignError::new(self, format!("RS256 signing failed: {e}")))?;
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| SignError::new(self, format!("RS256 signature not base64url: {e}")))
    }

    fn describe(&self) -> &str {
        self.source()
    }

    fn fingerprint(&self) -> &str {
        AppKey::fingerprint(self)
    }

    fn is_inline(&self) -> bool {
        true
    }
}
