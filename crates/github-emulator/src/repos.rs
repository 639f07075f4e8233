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

/// A repository to create: `owner/name` and its default branch.
#[derive(Debug, Clone)]
pub struct RepoSpec {
    /// Owner login.
    pub owner: String,
    /// Bare name.
    pub name: String,
    /// Default branch.
    pub branch: String,
}

/// How many missing repositories are created before the emulator reports itself started; the
/// rest are created in the background and on first use, so a fixture with hundreds of
/// repositories still starts fast (file creation is slow on a busy disk).
pub const EAGER_REPOSITORIES: usize = 32;

/// Creates bare repositories from per-branch templates. Git builds one template per default
/// branch (`init --bare` + `fast-import` of a README commit: two processes); each repository is
/// then a plain file copy of its template. Existing repositories are left alone (restarts keep
/// pushed commits).
pub struct RepoMaker {
    root: PathBuf,
    templates: PathBuf,
    specs: Vec<RepoSpec>,
    creating: tokio::sync::Mutex<()>,
}

impl RepoMaker {
    /// Builds the templates the missing repositories need.
    pub async fn new(root: &Path, specs: Vec<RepoSpec>, home: &Path) -> anyhow::Result<RepoMaker> {
        let templates = home.join("repo-templates");
        let mut branches: Vec<String> = specs
            .iter()
            .filter(|s| !repo_path(root, &s.owner, &s.name).join("HEAD").is_file())
            .map(|s| s.branch.clone())
            .collect();
        branches.sort();
        branches.dedup();
        let mut tasks = tokio::task::JoinSet::new();
        for branch in branches {
            let template = templates.join(format!("{branch}.git"));
            let home = home.to_path_buf();
            tasks.spawn(async move { ensure_template(&template, &branch, &home).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.context("template task")??;
        }
        Ok(RepoMaker {
            root: root.to_path_buf(),
            templates,
            specs,
            creating: tokio::sync::Mutex::new(()),
        })
    }

    /// The repositories not on disk yet.
    pub fn missing(&self) -> Vec<RepoSpec> {
        self.specs
            .iter()
            .filter(|s| {
                !repo_path(&self.root, &s.owner, &s.name)
                    .join("HEAD")
                    .is_file()
            })
            .cloned()
            .collect()
    }

    /// Makes sure `spec` exists on disk.
    pub async fn ensure(&self, spec: &RepoSpec) -> anyhow::Result<()> {
        let path = repo_path(&self.root, &spec.owner, &spec.name);
        if path.join("HEAD").is_file() {
            return Ok(());
        }
        let _creating = self.creating.lock().await;
        if path.join("HEAD").is_file() {
            return Ok(());
        }
        let template = self.templates.join(format!("{}.git", spec.branch));
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let parent = path.parent().context("repository path has a parent")?;
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            let tmp = parent.join(format!(".{}.git.tmp{}", spec.name, std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            copy_dir(&template, &tmp).with_context(|| {
                format!("copying the template into {}/{}", spec.owner, spec.name)
            })?;
            std::fs::rename(&tmp, &path).with_context(|| format!("creating {}", path.display()))?;
            Ok(())
        })
        .await
        .context("repository copy task")?
    }

    /// Makes sure `owner/name` exists on disk if the fixture has it (case-insensitive).
    pub async fn ensure_named(&self, owner: &str, name: &str) -> anyhow::Result<()> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.owner.eq_ignore_ascii_case(owner) && s.name.eq_ignore_ascii_case(name))
            .cloned();
        match spec {
            Some(spec) => self.ensure(&spec).await,
            None => Ok(()),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Builds the template of `branch`: a bare repository (no hooks or samples) with one commit.
async fn ensure_template(path: &Path, branch: &str, home: &Path) -> anyhow::Result<()> {
    if path.join("HEAD").is_file() && path.join("packed-refs").is_file() {
        return Ok(());
    }
    let _ = tokio::fs::remove_dir_all(path).await;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut init = git(home);
    init.arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg("--template=")
        .arg("--initial-branch")
        .arg(branch)
        .arg(path);
    run(init, "init").await?;

    let readme = "# Emulated repository\n\nServed by ghapp's GitHub emulator.\n";
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
        .arg("-c")
        .arg("fastimport.unpackLimit=0")
        .arg("fast-import")
        .arg("--quiet")
        .stdin(Stdio::piped());
    let mut child = import.spawn().context("running git fast-import")?;
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
            "git fast-import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Fewest files and directories per copy (directory creation dominates on a busy disk): the
    // commit stays in one pack, the branch in packed-refs, and empty directories go (git needs
    // only HEAD, objects/ and refs/).
    let mut pack_refs = git(home);
    pack_refs
        .arg("--git-dir")
        .arg(path)
        .arg("pack-refs")
        .arg("--all");
    run(pack_refs, "pack-refs").await?;
    for empty in [
        "objects/info",
        "refs/tags",
        "refs/heads",
        "branches",
        "info",
        "hooks",
    ] {
        let _ = tokio::fs::remove_dir(path.join(empty)).await;
    }
    Ok(())
}
