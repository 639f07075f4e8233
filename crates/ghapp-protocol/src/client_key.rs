//! Client keys (`[[client]]`): the shape `ghapp client-key new` prints and the digest the
//! config holds instead of the key, computed the same way by the CLI that prints it and the
//! daemon that checks it.

use sha2::{Digest, Sha256};

/// What every client key starts with, so a leaked one is recognisable (and scannable).
pub const PREFIX: &str = "ghk_";

/// The hex SHA-256 of a key, as `[[client]] key_sha256` holds it (lower case).
pub fn digest_hex(key: &str) -> String {
    hex::encode(digest(key))
}

/// The raw SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses a `key_sha256` value (64 hex characters, either case) into its bytes.
pub fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip() {
        let hex = digest_hex("ghk_example");
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_digest(&hex), Some(digest("ghk_example")));
        assert_eq!(
            parse_digest(&hex.to_uppercase()),
            Some(digest("ghk_example"))
        );
        assert_eq!(parse_digest("nope"), None);
    }
}
