//! `ghapp demo`: the main job, end to end, on an embedded default — no GitHub App, no network.
//!
//! It starts the GitHub emulator (the separately built `github-emulator` binary, as a child: the
//! key-holding `ghapp` binary links no emulator code) with a freshly generated App key, writes a
//! daemon config for it, runs `ghapp daemon --foreground` as a child (this same executable), configures
//! git in a throwaway HOME with `credential.helper ghapp`, then clones, commits and pushes through
//! the helper and checks that the push landed. Each step is printed; a failing step is named and
//! the command exits 1. The token is never printed: only its fingerprint and remaining life, read
//! from the daemon's status. Everything it started is stopped and its temp directory removed
//! (unless `--keep`), also on failure and on Ctrl-C.

mod child;
mod daemon;
mod emulator;
mod git;
mod progress;

use super::Context;
use crate::cli::DemoArgs;
use anyhow::{Context as _, Result, anyhow, bail};
use daemon::{DaemonChild, log_tail};
use emulator::EmulatorChild;
use ghapp_client::DaemonClient;
use ghapp_protocol::api::{CachedTokenStatus, describe_remaining};
use git::DemoGit;
use progress::{InStep, Progress, StepFailed, line};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository the fixture creates and the demo pushes to.
const OWNER: &str = "acme";
const REPO: &str = "widgets";
/// The App name in the demo's config (shown in the daemon's logs and status).
const APP_NAME: &str = "demo-app";
/// The number of `[n/N]` steps.
const STEPS: usize = 9;

/// Runs the command.
pub fn run(_context: &Context, args: DemoArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the demo's runtime")?;
    runtime.block_on(run_demo(args))
}

async fn run_demo(args: DemoArgs) -> Result<i32> {
    line(
        "ghapp demo: a GitHub App's token, end to end, on this machine (local GitHub emulator, no network)",
    );
    let workdir = tempfile::Builder::new()
        .prefix("ghapp-demo-")
        .tempdir_in(temp_base())
        .context("cannot create the demo's temp directory")?;
    let mut demo = Demo::new(workdir.path())?;

    let outcome = tokio::select! {
        outcome = demo.steps() => outcome,
        _ = interrupted() => Err(StepFailed {
            step: "interrupted",
            error: anyhow!("interrupted by Ctrl-C"),
        }),
    };

    demo.cleanup().await;
    if args.keep {
        let kept = workdir.keep();
        line(&format!(
            "kept {} (--keep): config.toml, daemon.log, the clones, the emulator's state",
            kept.display()
        ));
    } else {
        remove_dir(workdir.keep()).await;
    }

    match outcome {
        Ok(()) => {
            line(
                "ok: cloned, committed and pushed through credential.helper ghapp; the token never appeared in argv, env or output",
            );
            Ok(0)
        }
        Err(failure) => {
            eprintln!("ghapp demo: FAILED at {failure}");
            Ok(1)
        }
    }
}

/// Removes the demo's directory, retrying briefly: after a Ctrl-C a git child killed on drop may
/// still be exiting.
async fn remove_dir(path: PathBuf) {
    let mut last = None;
    for _ in 0..20 {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => return,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(error) = last {
        line(&format!(
            "warning: could not remove {}: {error}",
            path.display()
        ));
    }
}

/// Resolves on Ctrl-C (SIGINT); never, if the handler cannot be installed.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The temp dir, unless the socket path under it would be too long for a Unix socket
/// (`$TMPDIR` can be deep), then `/tmp`.
fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    let socket = base
        .join("ghapp-demo-XXXXXX")
        .join("run")
        .join("ghapp.sock");
    if ghapp_protocol::paths::check_socket_path_length(&socket).is_ok() {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// What the demo has started, so cleanup can stop it whatever happened.
struct Demo {
    root: PathBuf,
    exe: PathBuf,
    emulator: Option<EmulatorChild>,
    daemon: Option<DaemonChild>,
}

impl Demo {
    fn new(root: &Path) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find this ghapp executable")?;
        Ok(Demo {
            root: root.to_path_buf(),
            exe,
            emulator: None,
            daemon: None,
        })
    }

    async fn steps(&mut self) -> Result<(), StepFailed> {
        let mut progress = Progress::new(STEPS);

        // 1. The emulator.
        let step = progress.step(
            "emulator",
            "Start the GitHub emulator (github-emulator; it generates a fresh RSA key for App 1)",
        );
        let state_dir = self.root.join("emulator");
        let fixture = self.root.join("fixture.toml");
        let exe_dir = self.exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let (program, emulator) = async {
            let program = emulator::find(&exe_dir)?;
            std::fs::create_dir_all(&state_dir)
                .context("cannot create the emulator's state dir")?;
            std::fs::write(&fixture, emulator::fixture()).context("cannot write the fixture")?;
            let log = self.root.join("emulator.log");
            let child = EmulatorChild::spawn(&program, &fixture, &state_dir, &log)?;
            Ok::<_, anyhow::Error>((program, child))
        }
        .await
        .in_step(step)?;
        let urls = self.emulator.insert(emulator).ready().await.in_step(step)?;
        let git_host = authority(&urls.git_url).in_step(step)?;
        progress.detail(&format!(
            "{} (pid {})",
            program.display(),
            self.emulator
                .as_ref()
                .and_then(|e| e.pid())
                .map_or_else(|| "?".to_string(), |p| p.to_string())
        ));
        progress.detail(&format!("REST API {}   git {}", urls.api_url, urls.git_url));
        progress.detail(&format!(
            "installation 100 of App 1 on {OWNER}, repository {OWNER}/{REPO} (contents: write)"
        ));

        // 2. The daemon's config.
        let step = progress.step("config", "Write the daemon's config");
        let config = self.root.join("config.toml");
        let socket = self.root.join("run").join("ghapp.sock");
        let key = state_dir.join("app1.pem");
        async {
            ghapp_protocol::paths::check_socket_path_length(&socket).map_err(|e| anyhow!(e))?;
            if !key.is_file() {
                bail!("the emulator did not write the App key {}", key.display());
            }
            let text = demo_config(&socket, &git_host, &urls.api_url, &key);
            write_private(&config, &text)
        }
        .await
        .in_step(step)?;
        progress.detail(&format!(
            "{}: App \"{APP_NAME}\" (id 1) for git host {git_host}",
            config.display()
        ));
        progress.detail(&format!(
            "private key {} (mode 0600; it never leaves the daemon)",
            key.display()
        ));

        // 3. The daemon.
        let step = progress.step("daemon", "Start the daemon: ghapp daemon --foreground");
        let log = self.root.join("daemon.log");
        let daemon = DaemonChild::spawn(&self.exe, &config, &socket, &log).in_step(step)?;
        let daemon = self.daemon.insert(daemon);
        let socket = daemon.ready().await.in_step(step)?;
        progress.detail(&format!(
            "ready on {} (pid {}; logs in {})",
            socket.display(),
            daemon
                .pid()
                .map_or_else(|| "?".to_string(), |p| p.to_string()),
            log.display()
        ));

        // 4. git.
        let step = progress.step(
            "git-config",
            "Configure git in a throwaway HOME: credential.helper ghapp, useHttpPath",
        );
        let home = self.root.join("home");
        let (git, version, helper, configured) = async {
            let helper = git::find_program("git-credential-ghapp", &exe_dir).ok_or_else(|| {
                anyhow!(
                    "git-credential-ghapp is neither next to {} nor on PATH: build it \
                     (cargo build -p git-credential-ghapp) or install both with ./install.sh",
                    self.exe.display()
                )
            })?;
            if git::find_program("git", Path::new("/nonexistent")).is_none() {
                bail!("git is not installed (or not on PATH): apt-get install git");
            }
            std::fs::create_dir_all(&home).context("cannot create the throwaway HOME")?;
            let git = DemoGit::new(&home, &exe_dir, &socket)?;
            let version = git.run(&home, &["--version"]).await?;
            let configured = configure_git(&git, &self.exe, &git_host).await?;
            Ok::<_, anyhow::Error>((git, version, helper, configured))
        }
        .await
        .in_step(step)?;
        progress.detail(&format!("{version}, HOME={}", git.home().display()));
        progress.detail(&format!(
            "ghapp configure --global --host http://{git_host}"
        ));
        progress.detail(&format!("  {configured}"));
        progress.detail(&format!("git-credential-ghapp: {}", helper.display()));

        // 5. Clone.
        let step = progress.step(
            "clone",
            &format!("Clone {OWNER}/{REPO} through credential.helper ghapp"),
        );
        let remote = format!("{}/{OWNER}/{REPO}.git", urls.git_url.trim_end_matches('/'));
        let work = self.root.join("work");
        let branch = async {
            git.run(&self.root, &["clone", "--quiet", &remote, path_str(&work)?])
                .await?;
            let branch = git.run(&work, &["symbolic-ref", "--short", "HEAD"]).await?;
            let commits = git.run(&work, &["rev-list", "--count", "HEAD"]).await?;
            Ok::<_, anyhow::Error>((branch, commits))
        }
        .await
        .in_step(step)?;
        let (branch, commits) = branch;
        progress.detail(&format!(
            "git clone {remote}: branch {branch}, {commits} commit(s)"
        ));

        // 6. Commit and push.
        let step = progress.step("push", "Commit and push");
        let pushed = async {
            let stamp = ghapp_protocol::time::Timestamp::now();
            std::fs::write(
                work.join("HELLO-FROM-GHAPP.md"),
                format!(
                    "Pushed by `ghapp demo` at {stamp} with a GitHub App installation token.\n"
                ),
            )
            .context("cannot write the demo file")?;
            git.run(&work, &["add", "HELLO-FROM-GHAPP.md"]).await?;
            git.run(&work, &["commit", "--quiet", "-m", "Hello from ghapp demo"])
                .await?;
            let refspec = format!("HEAD:refs/heads/{branch}");
            git.run(&work, &["push", "--quiet", "origin", &refspec])
                .await?;
            git.run(&work, &["rev-parse", "HEAD"]).await
        }
        .await
        .in_step(step)?;
        progress.detail(&format!(
            "git push origin {branch}: {} \"Hello from ghapp demo\"",
            short(&pushed)
        ));

        // 7. Verify.
        let step = progress.step(
            "verify",
            "Verify the push landed: a fresh clone through the helper",
        );
        let verify = self.root.join("verify");
        async {
            git.run(
                &self.root,
                &["clone", "--quiet", &remote, path_str(&verify)?],
            )
            .await?;
            let head = git.run(&verify, &["rev-parse", "HEAD"]).await?;
            if head != pushed {
                bail!(
                    "the fresh clone's HEAD is {}, not the pushed {}",
                    short(&head),
                    short(&pushed)
                );
            }
            if !verify.join("HELLO-FROM-GHAPP.md").is_file() {
                bail!("the fresh clone lacks HELLO-FROM-GHAPP.md");
            }
            Ok(())
        }
        .await
        .in_step(step)?;
        progress.detail(&format!(
            "fresh clone: HEAD {} on {branch}, HELLO-FROM-GHAPP.md present",
            short(&pushed)
        ));

        // 8. What the daemon holds.
        let step = progress.step(
            "token",
            "Ask the daemon what git was given (GET /v1/status; fingerprint only)",
        );
        let held = async {
            let client = DaemonClient::new(&socket, Duration::from_secs(5));
            let status = client.status().await.context("GET /v1/status")?;
            status
                .tokens
                .into_iter()
                .find(|t| t.owner.eq_ignore_ascii_case(OWNER) && covers_repo(t))
                .ok_or_else(|| anyhow!("the daemon holds no token for {OWNER}/{REPO}: git did not get its credential from ghapp"))
        }
        .await
        .in_step(step)?;
        progress.detail(&describe_token(&held));
        if let Some(emulator) = &self.emulator {
            match emulator.stats().await {
                Ok(stats) => progress.detail(&describe_stats(&stats)),
                Err(error) => {
                    progress.detail(&format!("(emulator statistics unavailable: {error:#})"))
                }
            }
        }

        // 9. Stop.
        let step = progress.step("stop", "Stop the daemon (SIGTERM) and the emulator");
        if let Some(mut daemon) = self.daemon.take() {
            let status = daemon.stop().await;
            match status {
                Some(status) if status.success() => {}
                Some(status) => {
                    return Err(anyhow!(
                        "the daemon exited with {status} on SIGTERM\n{}",
                        log_tail(&daemon.log)
                    ))
                    .in_step(step);
                }
                None => {
                    return Err(anyhow!(
                        "the daemon did not exit within 10 s of SIGTERM (killed)"
                    ))
                    .in_step(step);
                }
            }
            if socket.exists() {
                return Err(anyhow!(
                    "the daemon left its socket {} behind",
                    socket.display()
                ))
                .in_step(step);
            }
            progress.detail("daemon exited 0 and removed its socket");
        }
        if let Some(mut emulator) = self.emulator.take() {
            emulator.stop().await;
            progress.detail("emulator stopped");
        }
        Ok(())
    }

    /// Stops whatever is still running (after a failure or Ctrl-C).
    async fn cleanup(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop().await;
        }
        if let Some(mut emulator) = self.emulator.take() {
            emulator.stop().await;
        }
    }
}

/// The config file the demo's daemon runs with.
fn demo_config(socket: &Path, git_host: &str, api_url: &str, key: &Path) -> String {
    format!(
        "# Written by `ghapp demo`: one GitHub App, served by the local emulator.\n\
         [daemon]\n\
         socket = {socket}\n\
         \n\
         [[app]]\n\
         name = {name}\n\
         host = {host}\n\
         api_url = {api}\n\
         app_id = 1\n\
         private_key_file = {key}\n\
         # The emulator's git server speaks plain http on 127.0.0.1; never set this for a real host.\n\
         insecure_http = true\n",
        socket = toml_string(&socket.to_string_lossy()),
        name = toml_string(APP_NAME),
        host = toml_string(git_host),
        api = toml_string(api_url),
        key = toml_string(&key.to_string_lossy()),
    )
}

/// A TOML basic string: JSON's string escapes are a subset of TOML's.
fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_string())
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Points git at ghapp for the emulator's git host with `ghapp configure --global`, scoped to
/// `http://` because the emulator's git server is plain http; returns what configure printed.
async fn configure_git(git: &DemoGit, exe: &Path, git_host: &str) -> Result<String> {
    let home = git.home().to_path_buf();
    let settings = [
        ("user.name", "ghapp demo"),
        ("user.email", "demo@ghapp.invalid"),
        ("init.defaultBranch", "main"),
    ];
    for (key, value) in settings {
        git.run(&home, &["config", "--global", key, value]).await?;
    }
    let url = format!("http://{git_host}");
    git.run_program(exe, &home, &["configure", "--global", "--host", &url])
        .await
}

/// `host:port` of an `http://host:port` URL: what git sends as the credential's `host`.
fn authority(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| anyhow!("the emulator's git URL {url:?} is not http(s)://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("the emulator's git URL {url:?} has no host");
    }
    Ok(host.to_string())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("the temp path {} is not UTF-8", path.display()))
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

/// True when a cached token is installation-wide or narrowed to the demo's repository
/// (GitHub lists narrowed repositories by name; accept `owner/name` too).
fn covers_repo(token: &CachedTokenStatus) -> bool {
    token.repositories.is_empty()
        || token.repositories.iter().any(|r| {
            r.eq_ignore_ascii_case(REPO) || r.eq_ignore_ascii_case(&format!("{OWNER}/{REPO}"))
        })
}

/// One token, as the demo prints it: fingerprint, scope, remaining life.
fn describe_token(token: &CachedTokenStatus) -> String {
    let scope = if token.repositories.is_empty() {
        format!("all of {}", token.owner)
    } else {
        token.repositories.join(", ")
    };
    format!(
        "token {} (installation {}, {scope}; {})\n\
         expires {}: {} left (the daemon refreshes it before it runs low)",
        token.fingerprint,
        token.installation_id,
        token.permissions,
        token.expires_at,
        describe_remaining(token.remaining_secs),
    )
}

/// The emulator's view: how many tokens were minted and how git's requests were answered.
fn describe_stats(stats: &serde_json::Value) -> String {
    let mints = stats
        .get("mints_total")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let git = stats
        .get("git_requests")
        .and_then(serde_json::Value::as_object)
        .map(|by_status| {
            by_status
                .iter()
                .map(|(status, count)| {
                    format!("{count}×{status}", count = count.as_u64().unwrap_or(0))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let git = if git.is_empty() {
        "none".to_string()
    } else {
        git
    };
    format!(
        "GitHub emulator: {mints} token(s) minted; git requests answered {git} \
         (each 401 is git asking for a credential, which the helper then supplied)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::permissions::Permissions;

    #[test]
    fn config_is_valid_for_the_broker() {
        let text = demo_config(
            Path::new("/tmp/ghapp-demo-x/run/ghapp.sock"),
            "127.0.0.1:4242",
            "http://127.0.0.1:4141",
            Path::new("/tmp/ghapp-demo-\"q\"/app1.pem"),
        );
        let config = ghapp_broker::config::Config::parse(&text, Path::new("demo.toml")).unwrap();
        assert_eq!(config.apps.len(), 1);
        let app = &config.apps[0];
        assert_eq!(app.host, "127.0.0.1:4242");
        assert_eq!(app.app_id, Some(1));
        assert!(app.insecure_http);
        assert_eq!(
            app.private_key_file.as_deref(),
            Some(Path::new("/tmp/ghapp-demo-\"q\"/app1.pem"))
        );
        assert_eq!(
            config.daemon.socket.as_deref(),
            Some(Path::new("/tmp/ghapp-demo-x/run/ghapp.sock"))
        );
    }

    #[test]
    fn authority_of_git_url() {
        assert_eq!(
            authority("http://127.0.0.1:4242").unwrap(),
            "127.0.0.1:4242"
        );
        assert_eq!(
            authority("http://127.0.0.1:4242/").unwrap(),
            "127.0.0.1:4242"
        );
        assert!(authority("ftp://x").is_err());
        assert!(authority("http://").is_err());
    }

    #[test]
    fn token_description_has_no_secret_and_says_life() {
        let token = CachedTokenStatus {
            fingerprint: "sha256:0123456789ab".into(),
            app: APP_NAME.into(),
            host: "127.0.0.1:1".into(),
            owner: OWNER.into(),
            installation_id: 100,
            repositories: vec![REPO.into()],
            permissions: Permissions::parse_list("contents:write,metadata:read").unwrap(),
            expires_at: "2030-01-01T00:00:00Z".parse().unwrap(),
            remaining_secs: 3590,
        };
        assert!(covers_repo(&token));
        let text = describe_token(&token);
        assert!(text.contains("sha256:0123456789ab"), "{text}");
        assert!(text.contains("59m"), "{text}");
        let other = CachedTokenStatus {
            repositories: vec!["gadgets".into()],
            ..token
        };
        assert!(!covers_repo(&other));
    }

    #[test]
    fn stats_description() {
        let stats = serde_json::json!({"mints_total": 1, "git_requests": {"200": 6, "401": 2}});
        let text = describe_stats(&stats);
        assert!(text.contains("1 token(s) minted"), "{text}");
        assert!(text.contains("6×200") && text.contains("2×401"), "{text}");
    }
}
