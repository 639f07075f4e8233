//! Whether a config file may be believed. The file decides which programs the daemon runs
//! (`private_key_command`), which keys it signs with and which socket clients talk to, so it
//! must be writable by nobody but its reader and root — as ssh (`StrictModes`) and git
//! (`safe.directory`) judge their own files:
//!
//! - the file is a regular file owned by the reading process's uid or root, and not writable
//!   by group or others;
//! - every directory above it, up to `/`, both as written and after resolving symlinks, is
//!   owned by that uid or root and not writable by group or others — unless it has the sticky
//!   bit (`/tmp`), where others cannot rename or replace entries they do not own.
//!
//! The file's own checks are made on the open file, so the file checked is the file read.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The most bytes read from a config file; real ones are a few KB.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Permission bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: in such a directory only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// True when a file owned by `uid` is as trustworthy as the process itself: it is this
/// process's effective uid, or root (who can read this process's memory anyway).
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Why the daemon must not use `path` (with metadata `meta`) as a private key — a TLS key, the
/// answer key: owned by a user other than this process's and root (who could swap it), or
/// readable or writable by group or others. `None` when it may.
pub fn private_key_file_problem(path: &Path, meta: &Metadata) -> Option<String> {
    if !trusted_owner(meta.uid()) {
        return Some(format!(
            "is owned by uid {}, neither this process's uid nor root: that user could swap the key; chown it to the daemon's user",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    (mode & 0o066 != 0).then(|| {
        format!(
            "is readable or writable by group/others (mode {mode:04o}): run chmod 600 {}",
            path.display()
        )
    })
}

/// Reads the config file at `path` if it can be trusted; the error says what is wrong and
/// what to run (the caller adds the file name).
pub(super) fn read_trusted(path: &Path) -> Result<String, String> {
    let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    check_owner_and_mode(&meta, "it", path)?;
    check_directories(path)?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "is larger than {MAX_CONFIG_BYTES} bytes: not a ghapp config"
        ));
    }
    Ok(text)
}

/// Owner and write bits of the file (`what` = "it") or of a directory above it.
fn check_owner_and_mode(meta: &Metadata, what: &str, path: &Path) -> Result<(), String> {
    let owner = meta.uid();
    if !trusted_owner(owner) {
        let me = rustix::process::geteuid().as_raw();
        return Err(format!(
            "{what} is owned by uid {owner}, neither this process's uid {me} nor root: that user could change what ghapp runs and which socket it uses; run chown {me} {} (or chown root)",
            path.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    let is_dir = meta.is_dir();
    if mode & GROUP_OTHER_WRITE != 0 && !(is_dir && mode & STICKY != 0) {
        return Err(format!(
            "{what} is writable by group/others (mode {mode:04o}): they could change what ghapp runs (private_key_command) and which socket it uses; run chmod go-w {}",
            path.display()
        ));
    }
    Ok(())
}

/// Every directory above `path`, as written and resolved, each checked once.
fn check_directories(path: &Path) -> Result<(), String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot find the current directory: {e}"))?
            .join(path)
    };
    let resolved =
        std::fs::canonicalize(&absolute).map_err(|e| format!("cannot resolve its path: {e}"))?;
    let mut seen = HashSet::new();
    for dir in parents(&absolute).chain(parents(&resolved)) {
        let meta = std::fs::metadata(&dir)
            .map_err(|e| format!("cannot stat its directory {}: {e}", dir.display()))?;
        if seen.insert((meta.dev(), meta.ino())) {
            let what = format!("its directory {}", dir.display());
            check_owner_and_mode(&meta, &what, &dir)?;
        }
    }
    Ok(())
}

fn parents(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    path.ancestors()
        .skip(1)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn group_or_other_writable_files_and_dirs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, "[daemon]\n").unwrap();
        chmod(&file, 0o600);
        assert_eq!(read_trusted(&file).unwrap(), "[daemon]\n");
        chmod(&file, 0o664);
        let err = read_trusted(&file).unwrap_err();
        assert!(
            err.contains("writable by group/others (mode 0664)"),
            "{err}"
        );
        assert!(err.contains("chmod go-w"), "{err}");
        chmod(&file, 0o644);
        assert!(read_trusted(&file).is_ok(), "world-readable is fine");

        let sub = dir.path().join("shared");
        std::fs::create_dir(&sub).unwrap();
        let inner = sub.join("config.toml");
        std::fs::write(&inner, "").unwrap();
        chmod(&sub, 0o777);
        let err = read_trusted(&inner).unwrap_err();
        assert!(
            err.contains(&format!("its directory {} is writable", sub.display())),
            "{err}"
        );
        chmod(&sub, 0o1777);
        assert!(read_trusted(&inner).is_ok(), "sticky dirs are like /tmp");
    }

    #[test]
    fn a_symlinked_path_is_judged_by_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let real = open.join("config.toml");
        std::fs::write(&real, "").unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_trusted(&link).is_ok());
        chmod(&open, 0o777);
        let err = read_trusted(&link).unwrap_err();
        assert!(err.contains("is writable"), "the target's directory: {err}");
    }

    #[test]
    fn directories_are_not_config_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            read_trusted(dir.path())
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            read_trusted(&dir.path().join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
