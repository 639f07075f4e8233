//! Bare repositories on disk: `{state_dir}/repos/{owner}/{name}.git`, each created with one
//! commit (a README) on its default branch, using git itself so what `git http-backend` serves is
//! exactly what a real server would. An existing repository is left as it is (restarts keep
//! pushed commits).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// The path of `owner/name`'s bare repository under `root` (owner and name as in the fixture).
pub fn repo_path(root: &Path, owner: &str, name: &str) -> PathBuf {
    root.join(owner).join(format!("{name}.git"))
}

/// A git command with a clean, predictable environment (no user or system config).
pub fn git(home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", home)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running git ({what})"))?;
    if !out.status.success() {
        bail!(
            "git {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates `path` as a bare repository with one commit on `branch`, unless it already exists.
/// Two git processes: `init --bare` and `fast-import` of the initial commit.
pub async fn ensure_bare_repo(
    path: &Path,
    full_name: &str,
    branch: &str,
    home: &Path,
) -> anyhow::Result<()> {
    if path.join("HEAD").is_file() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut init = git(home);
    init.arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg("--initial-branch")
        .arg(branch)
        .arg(path);
    run(init, &format!("init {full_name}")).await?;

    let readme = format!("# {full_name}\n\nA repository served by ghapp's GitHub emulator.\n");
    let message = "Initial commit\n";
    let stream = format!(
        "commit refs/heads/{branch}\n\
         author GitHub Emulator <emulator@example.invalid> 1700000000 +0000\n\
         committer GitHub Emulator <emulator@example.invalid> 1700000000 +0000\n\
         data {}\n{message}\
         M 100644 inline README.md\n\
         data {}\n{readme}\n",
        message.len(),
        readme.len()
    );
    let mut import = git(home);
    import
        .arg("--git-dir")
        .arg(path)
        .arg("fast-import")
        .arg("--quiet")
        .stdin(Stdio::piped());
    let mut child = import
        .spawn()
        .with_context(|| format!("running git fast-import for {full_name}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(stream.as_bytes())
            .await
            .context("writing to git fast-import")?;
        stdin.shutdown().await.ok();
    }
    let out = child
        .wait_with_output()
        .await
        .context("waiting for git fast-import")?;
    if !out.status.success() {
        bail!(
            "git fast-import for {full_name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
