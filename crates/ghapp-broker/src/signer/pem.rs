//! PEM keys as [`Signer`]s: the key loaded at start ([`AppKey`], today's behaviour), and the
//! rotation's next key file ([`NextKeyFile`]), read when it is first needed.

use super::{SignError, Signer};
use crate::key::AppKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

    fn fingerprint(&self) -> String {
        AppKey::fingerprint(self).to_string()
    }

    fn is_inline(&self) -> bool {
        true
    }
}

/// Which version of a file was read: device, inode, size and modification time.
type FileStamp = (u64, u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

/// `next_private_key_file`: a key that may not exist yet when the daemon starts. It is read
/// (with the same file-mode rule as `private_key_file`) when GitHub has rejected the first key
/// and it must sign, and read again whenever the file changes — so an operator can put the new
/// key in place, register it on GitHub and delete the old one there, with no reload.
pub struct NextKeyFile {
    path: PathBuf,
    label: String,
    describe: String,
    loaded: Mutex<Option<(FileStamp, Arc<AppKey>)>>,
}

impl NextKeyFile {
    /// The key file `path` of the App labelled `label`; nothing is read yet.
    pub fn new(path: &Path, label: &str) -> Self {
        NextKeyFile {
            path: path.to_path_buf(),
            label: label.to_string(),
            describe: format!("file {}", path.display()),
            loaded: Mutex::new(None),
        }
    }

    /// The key as the file holds it now: the one read before when the file is unchanged.
    fn key(&self) -> Result<Arc<AppKey>, SignError> {
        let now = stamp(&self.path);
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(now), Some((then, key))) = (now, loaded.as_ref())
            && now == *then
        {
            return Ok(key.clone());
        }
        let key = AppKey::load_file(&self.path, &self.label)
            .map(Arc::new)
            .map_err(|e| SignError::new(self, e.message))?;
        if let Some(now) = now {
            *loaded = Some((now, key.clone()));
        }
        Ok(key)
    }
}

impl Signer for NextKeyFile {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key()?.sign(input)
    }

    fn describe(&self) -> &str {
        &self.describe
    }

    fn fingerprint(&self) -> String {
        match self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some((_, key)) => AppKey::fingerprint(key).to_string(),
            None => "(not read yet)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tests::TEST_KEY_PEM;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_next_key_is_read_when_needed_and_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next.pem");
        let next = NextKeyFile::new(&path, "acme-bot");
        assert_eq!(next.fingerprint(), "(not read yet)");
        let err = next.sign(b"x").unwrap_err();
        assert!(err.detail.contains("cannot open key file"), "{err}");
        assert_eq!(err.signer, format!("file {}", path.display()));

        std::fs::write(&path, TEST_KEY_PEM).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = next.sign(b"x").unwrap_err();
        assert!(err.detail.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pem = AppKey::from_pem(TEST_KEY_PEM.as_bytes(), "t".into(), "t").unwrap();
        assert_eq!(next.sign(b"x").unwrap(), pem.sign(b"x").unwrap());
        assert_eq!(next.fingerprint(), AppKey::fingerprint(&pem));

        let made = std::process::Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(dir.path().join("other.pem"))
            .arg("2048")
            .output()
            .unwrap();
        assert!(made.status.success());
        std::fs::rename(dir.path().join("other.pem"), &path).unwrap();
        assert_ne!(next.sign(b"x").unwrap(), pem.sign(b"x").unwrap(), "re-read");
        assert_ne!(next.fingerprint(), AppKey::fingerprint(&pem));
    }
}
