//! What the shared cache stores, made unreadable to whoever reads the store: every value sealed
//! with AES-256-GCM (a fresh random 96-bit nonce per value, the cache key as associated data, so
//! a value moved under another key does not open), every store key an HMAC-SHA256 of the cache
//! key (so keys name no owner, repository or App). Both keys are derived from the one
//! `encryption_key_file` every replica shares.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use zeroize::Zeroizing;

/// The length of `encryption_key_file`: 32 random bytes.
pub(crate) const KEY_LEN: usize = 32;

/// Why the encryption key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    /// It could not be opened or read.
    #[error("cannot read the cache encryption key {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others have access to it.
    #[error(
        "the cache encryption key {path} is open to group or others (mode {mode:o}): chmod 600 it"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not 32 bytes.
    #[error(
        "the cache encryption key {path} holds {len} bytes, not {KEY_LEN}: write one with `ghapp cache-key new {path}`"
    )]
    WrongLength {
        /// The file.
        path: String,
        /// How many bytes it holds (up to one more than expected).
        len: usize,
    },
}

/// Seals and opens values, and names keys, for the shared cache. Never prints its keys.
pub(crate) struct Sealer {
    aead: RandomizedNonceKey,
    naming: hmac::Key,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Reads `encryption_key_file` (refused, like an App's key file, if group or others have
    /// any access to it, or if it is not exactly 32 bytes).
    pub(crate) fn load(path: &Path) -> Result<Sealer, KeyFileError> {
        let name = path.display().to_string();
        let unreadable = |source| KeyFileError::Unreadable {
            path: name.clone(),
            source,
        };
        let mut file = fs::File::open(path).map_err(unreadable)?;
        let mode = file.metadata().map_err(unreadable)?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen { path: name, mode });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        file.by_ref()
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        let key: &[u8; KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyFileError::WrongLength {
                    path: name.clone(),
                    len: bytes.len(),
                })?;
        Ok(Sealer::from_key(key))
    }

    /// A sealer from the 32-byte shared key: one subkey encrypts, another names.
    pub(crate) fn from_key(key: &[u8; KEY_LEN]) -> Sealer {
        let root = hmac::Key::new(hmac::HMAC_SHA256, key);
        let aead_key = Zeroizing::new(
            hmac::sign(&root, b"ghapp shared cache: AES-256-GCM")
                .as_ref()
                .to_vec(),
        );
        let naming_key = Zeroizing::new(
            hmac::sign(&root, b"ghapp shared cache: key names")
                .as_ref()
                .to_vec(),
        );
        Sealer {
            // 32 bytes is AES-256's key length: this cannot fail.
            aead: RandomizedNonceKey::new(&AES_256_GCM, &aead_key)
                .expect("an HMAC-SHA256 output is an AES-256 key"),
            naming: hmac::Key::new(hmac::HMAC_SHA256, &naming_key),
        }
    }

    /// The store key for `cache_key` (`prefix` + hex HMAC): the same on every replica, and
    /// telling nothing about what it is for.
    pub(crate) fn name(&self, prefix: &str, cache_key: &str) -> String {
        let tag = hmac::sign(&self.naming, cache_key.as_bytes());
        format!("{prefix}{}", hex::encode(tag.as_ref()))
    }

    /// `plain` encrypted under a fresh nonce, bound to `cache_key`: nonce ‖ ciphertext ‖ tag.
    pub(crate) fn seal(&self, cache_key: &str, plain: &[u8]) -> Option<Vec<u8>> {
        let mut in_out = plain.to_vec();
        let nonce = self
            .aead
            .seal_in_place_append_tag(Aad::from(cache_key.as_bytes()), &mut in_out)
            .ok()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        zeroize::Zeroize::zeroize(&mut in_out);
        Some(sealed)
    }

    /// The plain value of `sealed` if it was sealed by this key for exactly `cache_key`.
    pub(crate) fn open(&self, cache_key: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = Zeroizing::new(body.to_vec());
        let plain_len = self
            .aead
            .open_in_place(nonce, Aad::from(cache_key.as_bytes()), &mut in_out)
            .ok()?
            .len();
        in_out.truncate(plain_len);
        Some(in_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_values_open_only_under_their_key_and_name() {
        let sealer = Sealer::from_key(&[7u8; KEY_LEN]);
        let a = sealer.seal("token|a", b"ghs_secret").unwrap();
        let b = sealer.seal("token|a", b"ghs_secret").unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(10).any(|w| w == b"ghs_secret"));
        assert_eq!(&**sealer.open("token|a", &a).unwrap(), b"ghs_secret");
        assert!(
            sealer.open("token|b", &a).is_none(),
            "moved under another key"
        );
        let other = Sealer::from_key(&[8u8; KEY_LEN]);
        assert!(
            other.open("token|a", &a).is_none(),
            "another encryption key"
        );
        let mut flipped = a.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(sealer.open("token|a", &flipped).is_none());
        assert!(sealer.open("token|a", &a[..5]).is_none());
        let name = sealer.name("ghapp:t:", "token|acme/widgets");
        assert!(
            name.starts_with("ghapp:t:") && name.len() == 8 + 64,
            "{name}"
        );
        assert!(!name.contains("acme"));
        assert_eq!(name, sealer.name("ghapp:t:", "token|acme/widgets"));
        assert_ne!(name, other.name("ghapp:t:", "token|acme/widgets"));
    }

    #[test]
    fn the_key_file_is_32_private_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.key");
        fs::write(&path, [1u8; KEY_LEN]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = Sealer::load(&path).unwrap_err().to_string();
        assert!(e.contains("open to group or others (mode 640)"), "{e}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Sealer::load(&path).is_ok());
        fs::write(&path, [1u8; 31]).unwrap();
        let e = Sealer::load(&path).unwrap_err().to_string();
        assert!(e.contains("holds 31 bytes, not 32"), "{e}");
        let e = Sealer::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the cache encryption key"), "{e}");
    }
}
