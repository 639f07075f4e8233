//! git as the demo runs it: the user's git binary in a throwaway HOME, with none of the user's
//! own git configuration, prompts disabled (a missing credential fails instead of waiting), and
//! the directory of this ghapp first on PATH so `credential.helper ghapp` finds the
//! `git-credential-ghapp` installed next to it.

use anyhow::{Context as _, Result, anyhow, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// The longest a single git command may run in the demo.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variables that would let the user's setup leak into the demo's git.
const CLEARED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_TRACE",
    "GIT_CURL_VERBOSE",
    "GIT_TRACE_CURL",
    "GIT_TRACE_PACKET",
    "GHAPP_CONFIG",
];

/// Proxy settings: the demo talks to 127.0.0.1 only, and a proxy (which curl and reqwest would
/// use for loopback addresses too, unless NO_PROXY says otherwise) could only get in the way.
pub const PROXY_VARIABLES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// How to run git for the demo.
#[derive(Debug, Clone)]
pub struct DemoGit {
    home: PathBuf,
    path: OsString,
    socket: PathBuf,
}

impl DemoGit {
    /// git with HOME at `home`, `helper_dir` first on PATH, and `GHAPP_SOCKET=socket`.
    pub fn new(home: &Path, helper_dir: &Path, socket: &Path) -> Result<Self> {
        let mut dirs = vec![helper_dir.to_path_buf()];
        if let Some(existing) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&existing));
        }
        let path = std::env::join_paths(dirs).context("PATH cannot hold the ghapp directory")?;
        Ok(DemoGit {
            home: home.to_path_buf(),
            path,
            socket: socket.to_path_buf(),
        })
    }

    /// The throwaway HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `program` (git, or ghapp itself) in `dir` with the demo's environment.
    fn command(&self, program: &Path, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).current_dir(dir);
        for name in CLEARED.iter().chain(PROXY_VARIABLES) {
            command.env_remove(name);
        }
        command
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("LC_ALL", "C")
            .env("PATH", &self.path)
            .env("GHAPP_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs git and returns its trimmed stdout; a failure carries the command and git's stderr.
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<String> {
        self.run_program(Path::new("git"), dir, args).await
    }

    /// Runs `program` (e.g. `ghapp configure`) with git's environment: same HOME, same PATH.
    pub async fn run_program(&self, program: &Path, dir: &Path, args: &[&str]) -> Result<String> {
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let shown = format!("{name} {}", args.join(" "));
        let child = self
            .command(program, dir, args)
            .spawn()
            .with_context(|| format!("cannot run {shown}"))?;
        let output = tokio::time::timeout(GIT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("{shown} did not finish within {GIT_TIMEOUT:?}"))?
            .with_context(|| format!("waiting for {shown}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let mut message = format!("{shown} failed ({})", output.status);
            for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                message.push_str("\n  | ");
                message.push_str(line);
            }
            bail!(message);
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }
}

/// Looks for `name` in `dir` first, then on PATH.
pub fn find_program(name: &str, dir: &Path) -> Option<PathBuf> {
    let beside = dir.join(name);
    if is_executable(&beside) {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
