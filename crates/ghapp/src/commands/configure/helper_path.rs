//! Which `credential.helper` value configure writes: `!exec` and the absolute path of
//! `git-credential-ghapp` when it sits where upgrades keep it, else the short name `ghapp`.
//!
//! git runs a short name `ghapp` as `git credential-ghapp`: one more process (git itself, which
//! then execs the helper) on every credential lookup — 1.3–1.4× the time of git's own
//! credential-cache. An absolute path is run directly — through `sh -c "PATH get"`, as git runs
//! every helper (it appends the operation, and a command with a space goes through the shell),
//! and dash forks once more for that last command and waits; `!exec PATH` has the shell replace
//! itself with the helper instead (docs/benchmarks-findings.md). The path is only worth writing
//! when it stays true across upgrades, so configure writes the path git would reach through the short name
//! today (`git --exec-path`, then PATH), as found — symlinks not resolved, because a stable
//! symlink (`~/.nix-profile/bin`, `/opt/homebrew/bin`) is what survives an upgrade:
//!
//! - install.sh replaces `PREFIX/bin/git-credential-ghapp` in place (a rename): stable;
//! - a distro package owns `/usr/bin/git-credential-ghapp` and upgrades it in place: stable;
//! - `cargo install` replaces `~/.cargo/bin/git-credential-ghapp` in place: stable;
//! - a cargo build directory (`target/debug`; cargo marks its root with `CACHEDIR.TAG`) is
//!   emptied by `cargo clean` and differs per checkout: not stable;
//! - the Nix store (`/nix/store/<hash>-…`) gets a new path with every version: not stable.
//!
//! Otherwise — and when the path would need shell quoting, which git's "absolute path" rule
//! does not see through — the short name is written, which follows PATH wherever it leads.
//! `ghapp doctor` warns when a written path has gone stale.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The short helper name: git runs `git credential-ghapp`.
pub const SHORT_NAME: &str = "ghapp";
/// What goes before an absolute path: git runs a `!` value as a shell snippet, and `exec` makes
/// the shell become the helper rather than fork it and wait.
pub const EXEC_PREFIX: &str = "!exec ";
/// The helper program.
pub const PROGRAM: &str = "git-credential-ghapp";

/// The helper configure writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperChoice {
    /// The absolute path of the helper, which the shell git starts execs.
    Absolute(PathBuf),
    /// The short name, and why not a path.
    ShortName {
        /// Why the path was not written.
        reason: String,
    },
}

impl HelperChoice {
    /// The first word of the helper value.
    pub fn command(&self) -> String {
        match self {
            HelperChoice::Absolute(path) => format!("{EXEC_PREFIX}{}", path.to_string_lossy()),
            HelperChoice::ShortName { .. } => SHORT_NAME.to_string(),
        }
    }
}

/// Chooses the helper value's command for this machine.
pub fn choose() -> HelperChoice {
    match locate() {
        Some(found) => match unstable_because(&found) {
            None => HelperChoice::Absolute(found),
            Some(reason) => HelperChoice::ShortName {
                reason: format!("{} {reason}", found.display()),
            },
        },
        None => HelperChoice::ShortName {
            reason: format!("{PROGRAM} is neither in git's exec path nor on PATH"),
        },
    }
}

/// True for a helper command (the value's first word) configure may have written.
pub fn is_helper_command(word: &str) -> bool {
    word == SHORT_NAME || (word.starts_with('/') && word.ends_with(&format!("/{PROGRAM}")))
}

/// A helper value without its `!exec ` prefix, when it has one and an absolute path follows
/// (what configure writes; the form without it, written by earlier versions, is ghapp's too).
pub fn without_exec(value: &str) -> &str {
    match value.strip_prefix(EXEC_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest,
        _ => value,
    }
}

/// The helper git would run for `git credential-ghapp`: `$(git --exec-path)/git-credential-ghapp`,
/// else the first on PATH.
pub fn locate() -> Option<PathBuf> {
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    exec_path
        .into_iter()
        .chain(path_dirs)
        .map(|dir| dir.join(PROGRAM))
        .find(|candidate| is_executable(candidate))
}

/// True when `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why `path` would not survive an upgrade or a move (as "is in …"), or `None` when it would.
fn unstable_because(path: &Path) -> Option<&'static str> {
    if !path.is_absolute() {
        return Some("was found through a relative PATH entry");
    }
    let text = path.to_string_lossy();
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'+' | b','))
    {
        return Some("has characters git's shell would split or expand");
    }
    if path.starts_with("/nix/store") {
        return Some("is in the Nix store, which has a new path for every version");
    }
    if path
        .ancestors()
        .skip(1)
        .any(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        return Some(
            "is in a cargo build directory, which `cargo clean` or another checkout moves",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_locations_are_stable_build_and_store_paths_are_not() {
        for stable in [
            "/usr/bin/git-credential-ghapp",
            "/usr/local/bin/git-credential-ghapp",
            "/home/u/.local/bin/git-credential-ghapp",
            "/home/u/.cargo/bin/git-credential-ghapp",
        ] {
            assert_eq!(unstable_because(Path::new(stable)), None, "{stable}");
        }
        assert!(unstable_because(Path::new("bin/git-credential-ghapp")).is_some());
        assert!(unstable_because(Path::new("/home/u/my bin/git-credential-ghapp")).is_some());
        assert!(
            unstable_because(Path::new(
                "/nix/store/abc-ghapp-1.0/bin/git-credential-ghapp"
            ))
            .is_some()
        );
        let target = tempfile::tempdir().unwrap();
        std::fs::write(
            target.path().join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        let built = target.path().join("debug").join(PROGRAM);
        assert!(
            unstable_because(&built)
                .unwrap()
                .contains("cargo build directory")
        );
    }

    #[test]
    fn recognises_helper_commands() {
        assert!(is_helper_command("ghapp"));
        assert!(is_helper_command("/usr/bin/git-credential-ghapp"));
        assert!(!is_helper_command("git-credential-ghapp"));
        assert!(!is_helper_command("/usr/bin/git-credential-ghappx"));
        assert!(!is_helper_command("ghappish"));
        assert_eq!(
            without_exec("!exec /usr/bin/git-credential-ghapp --socket /s"),
            "/usr/bin/git-credential-ghapp --socket /s"
        );
        assert_eq!(without_exec("!exec ghapp"), "!exec ghapp");
        assert_eq!(without_exec("ghapp"), "ghapp");
    }
}
