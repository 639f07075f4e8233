//! Driving system tools from tests: a command fed its standard input, a tool looked up on PATH,
//! a fake tool written to disk, and throwaway users (as root) for tests that need a second uid.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `command` with `input` on its standard input and its stdout and stderr captured, and
/// waits for it: what `git credential`, the helper and `man -l -` are fed.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .unwrap_or_else(|error| panic!("cannot write the input of {command:?}: {error}"));
    child
        .wait_with_output()
        .unwrap_or_else(|error| panic!("cannot wait for {command:?}: {error}"))
}

/// Where `name` is on this process's PATH (what `command -v` would find), if it is anywhere:
/// tests that need an optional tool (man, bash, systemd-socket-activate) skip loudly without it.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Writes `text` to `path` and makes it executable (mode 0755): fake tools for scripts under test.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
}

/// Whether this test runs as root (and so may create throwaway users).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `setpriv --reuid=UID --regid=GID --clear-groups -- PROGRAM`: a command that runs `program`
/// as another user (the caller adds its arguments and environment). Needs root.
pub fn as_user(uid: u32, gid: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    command
}

/// A system user created for one test with `useradd` and removed (`userdel`) on drop.
#[derive(Debug)]
pub struct ThrowawayUser {
    /// The login name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl ThrowawayUser {
    /// Creates the user `name` with `useradd OPTIONS… NAME` (a leftover of the same name from an
    /// earlier, killed run is removed first). Needs root; the error is useradd's own message.
    pub fn create(name: &str, options: &[&str]) -> Result<ThrowawayUser, String> {
        let _ = Command::new("userdel").arg(name).output();
        let output = Command::new("useradd")
            .args(options)
            .arg(name)
            .output()
            .map_err(|error| format!("cannot run useradd: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "useradd {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        // Removed on drop from here on, even if `id` fails below.
        let mut user = ThrowawayUser {
            name: name.to_string(),
            uid: 0,
            gid: 0,
        };
        user.uid = id(name, "-u")?;
        user.gid = id(name, "-g")?;
        Ok(user)
    }
}

/// `id FLAG NAME` as a number.
fn id(name: &str, flag: &str) -> Result<u32, String> {
    let output = Command::new("id")
        .args([flag, name])
        .output()
        .map_err(|error| format!("cannot run id: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("id {flag} {name} answered {text:?}"))
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
