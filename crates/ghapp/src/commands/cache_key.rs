//! `ghapp cache-key new FILE`: the shared cache's encryption key — 32 bytes from the kernel's
//! random source, written to a new file with mode 0600 (never over an existing one: a new key
//! makes every token the replicas share unreadable to those holding the old one).

use crate::cli::CacheKeyCommand;
use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// The key's length: AES-256's.
const KEY_LEN: usize = 32;

/// Runs `ghapp cache-key …`.
pub fn run(command: CacheKeyCommand) -> Result<i32> {
    match command {
        CacheKeyCommand::New { file } => {
            write_new_key(&file)?;
            eprintln!(
                "wrote a new cache encryption key to {} (32 bytes, mode 0600): give every replica the same file as [cache] encryption_key_file",
                file.display()
            );
            Ok(0)
        }
    }
}

/// Writes 32 random bytes to a new file `path`, 0600, not following a symlink.
fn write_new_key(path: &Path) -> Result<()> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    let mut filled = 0;
    while filled < KEY_LEN {
        filled +=
            rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())
                .context("the kernel's random source failed")?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                path.display()
            )
        })?;
    file.write_all(&*key)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_32_private_random_bytes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.key");
        write_new_key(&path).unwrap();
        let first = std::fs::read(&path).unwrap();
        assert_eq!(first.len(), 32);
        assert_ne!(first, vec![0u8; 32]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = format!("{:#}", write_new_key(&path).unwrap_err());
        assert!(e.contains("never overwritten"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), first, "left as it was");
        let other = dir.path().join("other.key");
        write_new_key(&other).unwrap();
        assert_ne!(std::fs::read(&other).unwrap(), first);
    }
}
