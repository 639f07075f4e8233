//! Shared support for the `ghapp` CLI tests: a throwaway HOME (git's, via the testkit), the
//! `ghapp` binary run with a clean environment in it (the emulator + daemon stack is in
//! `tests/stack/`).
#![allow(dead_code)] // each test binary uses a different part of this module

use ghapp_testkit::git::{GitBinary, GitHome};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// What a finished `ghapp` run said.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
    /// The raw status.
    pub status: std::process::ExitStatus,
}

impl From<Output> for Outcome {
    fn from(output: Output) -> Self {
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status,
        }
    }
}

impl Outcome {
    /// Panics with everything printed unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `FAIL` lines of doctor's output.
    pub fn fails(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect()
    }

    /// The line starting with `level` that contains `needle`, and the `fix:` line after it.
    pub fn finding(&self, level: &str, needle: &str) -> Option<(String, String)> {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let index = lines
            .iter()
            .position(|l| l.starts_with(level) && l.contains(needle))?;
        let fix = lines[index + 1..]
            .iter()
            .take_while(|l| l.starts_with("     "))
            .find(|l| l.trim_start().starts_with("fix:"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default();
        Some((lines[index].to_string(), fix))
    }
}

/// A throwaway HOME with its own git config, where `ghapp` runs with a clean environment.
pub struct Sandbox {
    /// The git side (HOME, ~/.gitconfig, PATH with the workspace's binaries first).
    pub git: GitHome,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// A fresh HOME for the newest git installed.
    pub fn new() -> Sandbox {
        let git = GitBinary::newest().expect("git is installed");
        Sandbox::with_git(&git)
    }

    /// A fresh HOME for `git`.
    pub fn with_git(git: &GitBinary) -> Sandbox {
        Sandbox {
            git: GitHome::new(git).expect("a throwaway HOME"),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable for every `ghapp` run.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((
            key.to_string(),
            value.as_ref().to_string_lossy().into_owned(),
        ));
        self
    }

    /// `$HOME`.
    pub fn home(&self) -> PathBuf {
        self.git.home()
    }

    /// `~/.gitconfig`.
    pub fn gitconfig(&self) -> PathBuf {
        self.home().join(".gitconfig")
    }

    /// A `ghapp` command with git's clean environment (no system config, HOME in the sandbox,
    /// the workspace's binaries first on PATH) and no inherited GHAPP_* variables.
    pub fn ghapp(&self) -> Command {
        let template = self.git.command();
        let mut command = Command::new(ghapp_testkit::binary("ghapp"));
        command.env_clear();
        for (key, value) in template.get_envs() {
            if let Some(value) = value {
                command.env(key, value);
            }
        }
        command
            .current_dir(self.git.work_dir())
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `ghapp args…` to completion.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.ghapp().args(args).output().expect("ghapp runs").into()
    }

    /// `git config --global --get-all key` in the sandbox.
    pub fn git_values(&self, key: &str) -> Vec<String> {
        let output = self
            .git
            .output(None, &["config", "--global", "-z", "--get-all", key])
            .expect("git runs");
        let mut values: Vec<String> = output
            .stdout
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        values.pop();
        values
    }
}

/// A script under the repository's scripts/ directory.
pub fn script(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// A system tool by absolute path, so a test's restricted PATH can hold exactly what a script
/// may use.
pub fn which(tool: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not found in /usr/local/bin, /usr/bin or /bin"))
}

/// Writes a file and makes it executable (fake tools for scripts under test).
#[allow(unused_imports)] // each test binary uses a different part of this module
pub use ghapp_testkit::system::write_executable;
