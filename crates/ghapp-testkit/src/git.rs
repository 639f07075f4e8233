//! Real git for tests: the git binaries installed here, a throwaway HOME with its own global
//! config, and commands wired to it — so a test configures `credential.helper ghapp` exactly as a
//! user would, without touching the machine's or the user's git config.
//!
//! ```no_run
//! use ghapp_testkit::git::{GitBinary, GitHome};
//! for git in GitBinary::all() {
//!     let home = GitHome::new(&git).unwrap().with_env("GHAPP_SOCKET", "/tmp/x/ghapp.sock");
//!     home.use_ghapp_helper("ghapp").unwrap();
//!     let repo = home.clone_repo("http://127.0.0.1:1234/acme/widgets.git", "widgets").unwrap();
//!     home.commit_file(&repo, "README", "hello\n", "first").unwrap();
//!     home.run(Some(&repo), &["push", "origin", "HEAD"]).unwrap();
//! }
//! ```

use anyhow::{Context, Result, bail};
use ghapp_protocol::secret::Token;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where git may be installed on the machines we test on: Debian's (2.39) and a newer build in
/// /usr/local (2.47). Tests run against each one present.
pub const GIT_CANDIDATES: &[&str] = &["/usr/bin/git", "/usr/local/bin/git"];

/// Overrides [`GIT_CANDIDATES`]: a `:`-separated list of git binaries to test with.
pub const GIT_BINARIES_ENV: &str = "GHAPP_TEST_GIT";

/// One installed git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitBinary {
    /// The executable.
    pub path: PathBuf,
    /// `(major, minor, patch)` from `git --version`.
    pub version: (u32, u32, u32),
}

impl GitBinary {
    /// The git at `path`, with its version.
    pub fn at(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let output = Command::new(&path)
            .arg("--version")
            .env_clear()
            .output()
            .with_context(|| format!("running {} --version", path.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = parse_version(&text)
            .with_context(|| format!("{} --version printed {text:?}", path.display()))?;
        Ok(GitBinary { path, version })
    }

    /// Every git to test with: `$GHAPP_TEST_GIT` if set, else each of [`GIT_CANDIDATES`] that
    /// exists, one per version.
    pub fn all() -> Vec<GitBinary> {
        let candidates: Vec<PathBuf> = match std::env::var_os(GIT_BINARIES_ENV) {
            Some(list) if !list.is_empty() => std::env::split_paths(&list).collect(),
            _ => GIT_CANDIDATES.iter().map(PathBuf::from).collect(),
        };
        let mut found: Vec<GitBinary> = Vec::new();
        for path in candidates.into_iter().filter(|p| p.is_file()) {
            if let Ok(git) = GitBinary::at(&path)
                && !found.iter().any(|f| f.version == git.version)
            {
                found.push(git);
            }
        }
        found
    }

    /// The newest git present, if any.
    pub fn newest() -> Option<GitBinary> {
        GitBinary::all().into_iter().max_by_key(|g| g.version)
    }

    /// Whether this git is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.version.0, self.version.1) >= (major, minor)
    }

    /// git 2.41 added `password_expiry_utc`: it drops expired passwords read from helpers and
    /// credential-cache stores and returns the expiry.
    pub fn honours_password_expiry(&self) -> bool {
        self.at_least(2, 41)
    }

    /// `git 2.47.3 (/usr/local/bin/git)`, for test messages.
    pub fn label(&self) -> String {
        let (a, b, c) = self.version;
        format!("git {a}.{b}.{c} ({})", self.path.display())
    }
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().nth(2)?;
    let mut parts = word.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// What `git credential fill` produced.
#[derive(Debug, Clone)]
pub struct Credential {
    /// `username`.
    pub username: Option<String>,
    /// `password` (prints as its fingerprint).
    pub password: Option<Token>,
    /// `password_expiry_utc`, when a helper gave one (git 2.41+ passes it through).
    pub password_expiry_utc: Option<i64>,
}

/// A throwaway HOME for git: its own `~/.gitconfig`, XDG dirs, credential-cache socket and
/// repositories, deleted (and any credential-cache daemon stopped) on drop.
pub struct GitHome {
    dir: tempfile::TempDir,
    git: GitBinary,
    path_dirs: Vec<PathBuf>,
    env: Vec<(OsString, OsString)>,
}

impl GitHome {
    /// A fresh HOME for `git`, with an identity, `main` as the default branch, and the
    /// workspace's binaries (`git-credential-ghapp`, `ghapp`) first on PATH, so
    /// `credential.helper ghapp` resolves to the binary under test.
    pub fn new(git: &GitBinary) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ghapp-git-")
            .tempdir()
            .context("creating a temp HOME")?;
        for sub in ["home", "home/.config", "home/.cache", "work"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .with_context(|| format!("creating {sub}"))?;
        }
        let home = GitHome {
            dir,
            git: git.clone(),
            path_dirs: vec![crate::bin_dir()],
            env: Vec::new(),
        };
        for (key, value) in [
            ("user.name", "ghapp test"),
            ("user.email", "test@ghapp.invalid"),
            ("init.defaultBranch", "main"),
            ("advice.detachedHead", "false"),
            ("protocol.file.allow", "always"),
        ] {
            home.set_config(key, value)?;
        }
        Ok(home)
    }

    /// Puts `dir` first on PATH for every command (a different helper build, a fake `gh`).
    pub fn with_path_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_dirs.insert(0, dir.into());
        self
    }

    /// Sets an environment variable for every command (e.g. `GHAPP_SOCKET`).
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The git binary these commands run.
    pub fn git(&self) -> &GitBinary {
        &self.git
    }

    /// `$HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory beside HOME for clones and files.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The PATH every command gets: our dirs, git's own dir (so `git credential-X` in a helper
    /// runs this git), then the system's.
    pub fn path_env(&self) -> OsString {
        let mut dirs = self.path_dirs.clone();
        if let Some(git_dir) = self.git.path.parent() {
            dirs.push(git_dir.to_path_buf());
        }
        dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        std::env::join_paths(dirs).unwrap_or_default()
    }

    /// A `git` command in this HOME: a clean environment (no user or system config, no
    /// prompts, no askpass, C locale) plus whatever [`with_env`](Self::with_env) added.
    pub fn command(&self) -> Command {
        let home = self.home();
        let mut command = Command::new(&self.git.path);
        command
            .env_clear()
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("PATH", self.path_env())
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GCM_INTERACTIVE", "never")
            .stdin(Stdio::null());
        if let Some(tmp) = std::env::var_os("TMPDIR") {
            command.env("TMPDIR", tmp);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs git with `args` in `cwd` (default: the work dir) and returns its output, whatever
    /// its exit status.
    pub fn output(&self, cwd: Option<&Path>, args: &[&str]) -> Result<Output> {
        let cwd = cwd
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.work_dir());
        self.command()
            .args(args)
            .current_dir(&cwd)
            .output()
            .with_context(|| format!("running {} {}", self.git.label(), args.join(" ")))
    }

    /// Runs git and requires success; returns stdout. The error carries git's stderr.
    pub fn run(&self, cwd: Option<&Path>, args: &[&str]) -> Result<String> {
        let output = self.output(cwd, args)?;
        if !output.status.success() {
            bail!(
                "{} {} failed ({}):\n{}",
                self.git.label(),
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `git config --global key value` (replaces).
    pub fn set_config(&self, key: &str, value: &str) -> Result<()> {
        self.run(None, &["config", "--global", "--replace-all", key, value])
            .map(drop)
    }

    /// `git config --global --add key value` (multi-valued keys such as `credential.helper`).
    pub fn add_config(&self, key: &str, value: &str) -> Result<()> {
        self.run(None, &["config", "--global", "--add", key, value])
            .map(drop)
    }

    /// Configures git as docs/git.md recommends: `credential.helper <helper>` (e.g. `ghapp` or
    /// `ghapp --require`) added to the helper list, and `credential.useHttpPath true`.
    pub fn use_ghapp_helper(&self, helper: &str) -> Result<()> {
        self.add_config("credential.helper", helper)?;
        self.set_config("credential.useHttpPath", "true")
    }

    /// `git credential fill` for `url` through the configured helpers; `None` when no helper
    /// supplied a credential (git then fails, since prompts are off).
    pub fn credential_fill(&self, url: &str) -> Result<Option<Credential>> {
        let mut child = self
            .command()
            .args(["credential", "fill"])
            .current_dir(self.work_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting git credential fill")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("url={url}\n\n").as_bytes())
                .context("writing to git credential fill")?;
        }
        let output = child
            .wait_with_output()
            .context("waiting for git credential fill")?;
        if !output.status.success() {
            return Ok(None);
        }
        let mut credential = Credential {
            username: None,
            password: None,
            password_expiry_utc: None,
        };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            match line.split_once('=') {
                Some(("username", v)) => credential.username = Some(v.to_string()),
                Some(("password", v)) => credential.password = Some(Token::new(v)),
                Some(("password_expiry_utc", v)) => credential.password_expiry_utc = v.parse().ok(),
                _ => {}
            }
        }
        Ok(Some(credential))
    }

    /// Clones `url` into the work dir as `name`; returns the clone's path.
    pub fn clone_repo(&self, url: &str, name: &str) -> Result<PathBuf> {
        self.run(None, &["clone", "--quiet", url, name])?;
        Ok(self.work_dir().join(name))
    }

    /// Writes `file` in `repo`, stages and commits it; returns the new commit id.
    pub fn commit_file(
        &self,
        repo: &Path,
        file: &str,
        contents: &str,
        message: &str,
    ) -> Result<String> {
        let path = repo.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        self.run(Some(repo), &["add", "--", file])?;
        self.run(Some(repo), &["commit", "--quiet", "-m", message])?;
        Ok(self
            .run(Some(repo), &["rev-parse", "HEAD"])?
            .trim()
            .to_string())
    }

    /// `git push origin HEAD` in `repo`.
    pub fn push(&self, repo: &Path) -> Result<()> {
        self.run(Some(repo), &["push", "--quiet", "origin", "HEAD"])
            .map(drop)
    }

    /// `git fetch origin` in `repo`.
    pub fn fetch(&self, repo: &Path) -> Result<()> {
        self.run(Some(repo), &["fetch", "--quiet", "origin"])
            .map(drop)
    }

    /// The commit id `origin/<branch>` points at after a fetch.
    pub fn remote_head(&self, repo: &Path, branch: &str) -> Result<String> {
        Ok(self
            .run(Some(repo), &["rev-parse", &format!("origin/{branch}")])?
            .trim()
            .to_string())
    }

    /// Runs git with `GIT_TRACE` on and returns its output and the credential helpers it ran,
    /// in order (`git credential-ghapp get`, `git credential-cache store`, …).
    pub fn output_traced(
        &self,
        cwd: Option<&Path>,
        args: &[&str],
    ) -> Result<(Output, Vec<String>)> {
        let trace =
            tempfile::NamedTempFile::new_in(self.dir.path()).context("creating a trace file")?;
        let cwd = cwd
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.work_dir());
        let output = self
            .command()
            .args(args)
            .current_dir(&cwd)
            .env("GIT_TRACE", trace.path())
            .output()
            .with_context(|| format!("running {} {}", self.git.label(), args.join(" ")))?;
        let text = std::fs::read_to_string(trace.path()).unwrap_or_default();
        Ok((output, helpers_in_trace(&text)))
    }
}

/// The credential helpers a `GIT_TRACE` log shows git running, in order, as the shell command
/// from the helper list (`git credential-ghapp get`, `git credential-store --file x get`).
/// For a helper that is not built into git, the `git` wrapper then execs the dashed
/// `git-credential-ghapp get` and traces that too; those repeats are left out.
pub fn helpers_in_trace(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|line| line.split_once("run_command: ").map(|(_, command)| command))
        .map(|command| command.trim().trim_matches('\'').to_string())
        .filter(|command| {
            command.contains("credential-") && !command.starts_with("git-credential-")
        })
        .collect()
}

impl Drop for GitHome {
    fn drop(&mut self) {
        // A `credential-cache` helper leaves a daemon behind; stop it before deleting its socket.
        let home = self.home();
        for socket in [
            home.join(".cache/git/credential/socket"),
            home.join(".git-credential-cache/socket"),
        ] {
            if socket.exists() {
                let _ = self
                    .command()
                    .args(["credential-cache", "--socket"])
                    .arg(&socket)
                    .arg("exit")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("git version 2.39.5\n"), Some((2, 39, 5)));
        assert_eq!(
            parse_version("git version 2.47.3.windows.1"),
            Some((2, 47, 3))
        );
        assert_eq!(parse_version("git version 2.50.0-rc1"), Some((2, 50, 0)));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn trace_lines_name_the_helpers() {
        let trace = "12:00:00.000001 run-command.c:659 trace: run_command: 'git credential-cache get'\n\
                     12:00:00.000002 git.c:463 trace: built-in: git fetch\n\
                     12:00:00.000003 run-command.c:659 trace: run_command: 'git credential-ghapp --require get'\n\
                     12:00:00.000004 run-command.c:659 trace: run_command: git-credential-ghapp --require get\n\
                     12:00:00.000004 run-command.c:659 trace: run_command: GIT_DIR=.git git remote-http origin\n";
        assert_eq!(
            helpers_in_trace(trace),
            vec![
                "git credential-cache get",
                "git credential-ghapp --require get"
            ]
        );
    }

    #[test]
    fn a_home_is_isolated_and_configurable() {
        let Some(git) = GitBinary::newest() else {
            return;
        };
        let home = GitHome::new(&git)
            .unwrap()
            .with_env("GHAPP_SOCKET", "/nonexistent/ghapp.sock");
        home.use_ghapp_helper("ghapp").unwrap();
        let config = std::fs::read_to_string(home.home().join(".gitconfig")).unwrap();
        assert!(
            config.contains("helper = ghapp") && config.contains("useHttpPath = true"),
            "{config}"
        );
        // No daemon: the helper falls through, and with prompts off git finds no credential.
        assert!(
            home.credential_fill("https://github.com/acme/widgets.git")
                .unwrap()
                .is_none()
        );
        // A second helper supplies one; the first (ghapp) stayed silent.
        let store = home.home().join("creds");
        std::fs::write(&store, "https://x-access-token:ghs_fromstore@github.com\n").unwrap();
        home.add_config(
            "credential.helper",
            &format!("store --file {}", store.display()),
        )
        .unwrap();
        home.set_config("credential.useHttpPath", "false").unwrap();
        let filled = home
            .credential_fill("https://github.com/acme/widgets.git")
            .unwrap()
            .unwrap();
        assert_eq!(
            filled.password.as_ref().map(Token::expose),
            Some("ghs_fromstore")
        );
    }
}
