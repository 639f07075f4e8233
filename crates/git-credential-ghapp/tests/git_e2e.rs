//! End to end with real git: each installed git (/usr/bin/git 2.39, /usr/local/bin/git 2.47,
//! where present) in a throwaway HOME with `credential.helper ghapp` and
//! `credential.useHttpPath true`, against the emulator's smart HTTP and a real `ghapp daemon`.
//! Prompts are off (GIT_TERMINAL_PROMPT=0), so any missing credential fails the command.
//!
//! Tokens live seconds here, not an hour: expiry and refresh are exercised by waiting a few
//! seconds rather than by faking time in processes we do not control.

use anyhow::{Context, Result, bail, ensure};
use ghapp_protocol::api::StatusResponse;
use ghapp_protocol::secret::Token;
use ghapp_testkit::daemon::{DaemonProcess, config_for_emulator};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::git::{GitBinary, GitHome};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The emulator plus a daemon configured for it.
struct Stack {
    emulator: EmulatorProcess,
    daemon: DaemonProcess,
}

impl Stack {
    /// Tokens live `token_ttl_secs`; the daemon serves them while at least `min_ttl_secs` is left.
    fn start(token_ttl_secs: u64, min_ttl_secs: u64) -> Result<Stack> {
        // basic_fixture: App 1; installation 100 on the organisation `acme` (widgets, gadgets),
        // installation 200 on the user `octo` (tools).
        let emulator = EmulatorProcess::start(&basic_fixture(token_ttl_secs))?;
        let config = config_for_emulator(
            &emulator.urls.api_url,
            &emulator.urls.git_url,
            &emulator.key_path("app1.pem"),
            // Short-lived tokens need the daemon's other margins scaled down with min_ttl.
            &format!(
                "min_ttl = \"{min_ttl_secs}s\"\ndegraded_min_ttl = \"1s\"\nrefresh_ahead = \"1s\""
            ),
        );
        let daemon = DaemonProcess::start(&config)?;
        Ok(Stack { emulator, daemon })
    }

    fn url(&self, full_name: &str) -> String {
        format!(
            "{}/{full_name}.git",
            self.emulator.urls.git_url.trim_end_matches('/')
        )
    }

    /// A token minted straight from the emulator, for a fallback helper to hold.
    fn mint(&self, installation: u64) -> Result<Token> {
        let body = self
            .emulator
            .mint_token(installation, serde_json::json!({}))?;
        Ok(Token::new(body["token"].as_str().context("minted token")?))
    }

    /// A throwaway HOME for `git` whose helpers reach this daemon.
    fn home(&self, git: &GitBinary) -> Result<GitHome> {
        Ok(GitHome::new(git)?.with_env("GHAPP_SOCKET", self.daemon.socket()))
    }

    fn status(&self) -> Result<StatusResponse> {
        let (code, body) = self.daemon.get("/v1/status")?;
        ensure!(code == 200, "status answered {code}: {body}");
        serde_json::from_str(&body).context("status JSON")
    }

    /// Fingerprints of the tokens the daemon holds.
    fn cached_fingerprints(&self) -> Result<Vec<String>> {
        Ok(self
            .status()?
            .tokens
            .into_iter()
            .map(|t| t.fingerprint)
            .collect())
    }

    fn mints(&self, installation: u64) -> Result<u64> {
        let stats = self.emulator.stats()?;
        Ok(stats["mints"][installation.to_string()]
            .as_u64()
            .unwrap_or(0))
    }

    fn logs(&self) -> String {
        format!("--- daemon log ---\n{}", self.daemon.log())
    }
}

fn gits() -> Vec<GitBinary> {
    let gits = GitBinary::all();
    if gits.is_empty() {
        eprintln!(
            "no git installed at {:?}: skipping real-git tests",
            ghapp_testkit::git::GIT_CANDIDATES
        );
    }
    gits
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A token git got through its helpers for `url`, as the daemon's fingerprint would name it.
fn filled_fingerprint(home: &GitHome, url: &str) -> Result<String> {
    let credential = home
        .credential_fill(url)?
        .context("no helper supplied a credential")?;
    ensure!(
        credential.username.as_deref() == Some("x-access-token"),
        "{credential:?}"
    );
    Ok(credential.password.context("no password")?.fingerprint())
}

/// Writes a `git credential-store` file holding `token` for `full_name` on the emulator. With
/// useHttpPath on, git-credential-store matches the path too, so the entry names the repository.
fn store_file(
    home: &GitHome,
    stack: &Stack,
    token: &Token,
    full_name: &str,
) -> Result<std::path::PathBuf> {
    let path = home.home().join("fallback-credentials");
    let host = stack.emulator.git_host();
    std::fs::write(
        &path,
        format!(
            "http://x-access-token:{}@{host}/{full_name}.git\n",
            token.expose()
        ),
    )?;
    Ok(path)
}

#[test]
fn clone_fetch_push_across_two_installations() -> Result<()> {
    let stack = Stack::start(3600, 60)?;
    for git in gits() {
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp")?;
        let widgets = home
            .clone_repo(&stack.url("acme/widgets"), "widgets")
            .with_context(|| stack.logs())?;
        let tools = home
            .clone_repo(&stack.url("octo/tools"), "tools")
            .with_context(|| stack.logs())?;
        for (repo, branch_file) in [(&widgets, "widgets.txt"), (&tools, "tools.txt")] {
            let label = git.label();
            let commit =
                home.commit_file(repo, branch_file, &format!("pushed by {label}\n"), "e2e")?;
            home.push(repo).with_context(|| stack.logs())?;
            home.fetch(repo)?;
            // What the server has now is what was pushed: read it back through a fresh clone too.
            let check = home.clone_repo(
                &stack.url(&repo_name(&stack, repo)?),
                &format!("{branch_file}-check"),
            )?;
            let head = home.run(Some(&check), &["rev-parse", "HEAD"])?;
            ensure!(
                head.trim() == commit,
                "{label}: pushed {commit}, server has {head}"
            );
        }
    }
    if !gits().is_empty() {
        ensure!(
            stack.mints(100)? >= 1 && stack.mints(200)? >= 1,
            "both installations minted"
        );
        // Without useHttpPath git sends no path; two installations serve the host, so ghapp
        // answers nothing, and says why when asked.
        for git in gits() {
            let home = stack.home(&git)?.with_env("GHAPP_DEBUG", "1");
            home.add_config("credential.helper", "ghapp")?;
            let mut child = home
                .command()
                .args(["credential", "fill"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            let request = format!("url={}\n\n", stack.url("acme/widgets"));
            std::io::Write::write_all(
                &mut child.stdin.take().context("stdin")?,
                request.as_bytes(),
            )?;
            let output = child.wait_with_output()?;
            let stderr = stderr_of(&output);
            ensure!(
                !output.status.success(),
                "{}: no credential without a path",
                git.label()
            );
            ensure!(
                !String::from_utf8_lossy(&output.stdout).contains("password"),
                "{}",
                git.label()
            );
            ensure!(
                stderr.contains("credential.useHttpPath true"),
                "{}: explained: {stderr}",
                git.label()
            );
        }
        let owners: Vec<String> = stack
            .status()?
            .tokens
            .into_iter()
            .map(|t| t.owner)
            .collect();
        ensure!(
            owners.iter().any(|o| o == "acme") && owners.iter().any(|o| o == "octo"),
            "{owners:?}"
        );
    }
    Ok(())
}

/// `owner/repo` of a clone, from its origin URL.
fn repo_name(stack: &Stack, repo: &Path) -> Result<String> {
    let config = std::fs::read_to_string(repo.join(".git/config"))?;
    let base = stack.emulator.urls.git_url.trim_end_matches('/');
    let url = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("url = "))
        .context("no origin url")?;
    Ok(url
        .trim_start_matches(base)
        .trim_start_matches('/')
        .trim_end_matches(".git")
        .to_string())
}

#[test]
fn short_lived_tokens_keep_fetches_working() -> Result<()> {
    // Tokens live 8 s and are served while 4 s are left: every git command below starts with
    // a token that outlives it, and after the sleep the first token is dead.
    let stack = Stack::start(8, 4)?;
    let mut clones = Vec::new();
    for git in gits() {
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp")?;
        let repo = home
            .clone_repo(&stack.url("acme/widgets"), "widgets")
            .with_context(|| stack.logs())?;
        let first = filled_fingerprint(&home, &stack.url("acme/widgets"))?;
        clones.push((home, repo, first));
    }
    if clones.is_empty() {
        return Ok(());
    }
    std::thread::sleep(Duration::from_secs(9));
    for (home, repo, first) in &clones {
        for round in 0..2 {
            home.fetch(repo).with_context(|| {
                format!(
                    "{} fetch {round} after expiry\n{}",
                    home.git().label(),
                    stack.logs()
                )
            })?;
        }
        let now = filled_fingerprint(home, &stack.url("acme/widgets"))?;
        ensure!(
            &now != first,
            "{}: the expired token was replaced",
            home.git().label()
        );
    }
    ensure!(
        stack.mints(100)? >= 2,
        "a fresh token was minted after expiry"
    );
    Ok(())
}

#[test]
fn daemon_down_falls_through_to_the_next_helper_then_serves_again() -> Result<()> {
    let mut stack = Stack::start(3600, 60)?;
    let fallback = stack.mint(100)?;
    let mut homes = Vec::new();
    for git in gits() {
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp")?;
        let repo = home
            .clone_repo(&stack.url("acme/widgets"), "widgets")
            .with_context(|| stack.logs())?;
        // The fallback helper comes after the clone: git `store`s every working credential in
        // every helper, so a store configured earlier would hold ghapp's token instead.
        let store = store_file(&home, &stack, &fallback, "acme/widgets")?;
        home.add_config(
            "credential.helper",
            &format!("store --file {}", store.display()),
        )?;
        ensure!(
            filled_fingerprint(&home, &stack.url("acme/widgets"))? != fallback.fingerprint(),
            "ghapp answers first"
        );
        homes.push((home, repo));
    }

    // Clean stop (socket removed: ENOENT), then a crash (socket left behind: ECONNREFUSED).
    for crash in [false, true] {
        if crash {
            stack.daemon.restart()?;
            stack.daemon.kill();
        } else {
            stack.daemon.stop()?;
        }
        for (home, repo) in &homes {
            let started = Instant::now();
            let (output, helpers) = home.output_traced(Some(repo), &["fetch", "origin"])?;
            ensure!(
                output.status.success(),
                "{} fetch with the daemon down (crash={crash}): {}",
                home.git().label(),
                stderr_of(&output)
            );
            ensure!(
                helpers
                    .iter()
                    .any(|h| h.contains("credential-ghapp") && h.ends_with(" get"))
                    && helpers
                        .iter()
                        .any(|h| h.contains("credential-store") && h.ends_with(" get")),
                "ghapp was asked, then store: {helpers:?}"
            );
            ensure!(
                started.elapsed() < Duration::from_secs(20),
                "fall-through is fast"
            );
            let filled = filled_fingerprint(home, &stack.url("acme/widgets"))?;
            ensure!(
                filled == fallback.fingerprint(),
                "{}: store supplied {filled}, expected {}",
                home.git().label(),
                fallback.fingerprint()
            );
        }
    }

    stack.daemon.restart()?;
    for (home, repo) in &homes {
        let (output, helpers) = home.output_traced(Some(repo), &["fetch", "origin"])?;
        ensure!(
            output.status.success(),
            "{}: {}",
            home.git().label(),
            stderr_of(&output)
        );
        ensure!(
            !helpers
                .iter()
                .any(|h| h.contains("credential-store") && h.ends_with(" get")),
            "ghapp answered again, store was not asked: {helpers:?}"
        );
        let served = filled_fingerprint(home, &stack.url("acme/widgets"))?;
        ensure!(
            stack.cached_fingerprints()?.contains(&served),
            "the token came from the restarted daemon"
        );
    }
    Ok(())
}

#[test]
fn revoked_token_is_erased_and_replaced() -> Result<()> {
    let stack = Stack::start(3600, 60)?;
    for git in gits() {
        let label = git.label();
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp")?;
        let url = stack.url("acme/gadgets");
        let repo = home
            .clone_repo(&url, "gadgets")
            .with_context(|| stack.logs())?;
        let revoked = filled_fingerprint(&home, &url)?;
        ensure!(
            stack.cached_fingerprints()?.contains(&revoked),
            "{label}: the daemon holds the token git used"
        );

        // The daemon keeps a token younger than GitHub's replication delay (5 s) on erase: a
        // 401 then is most likely that delay, not a revocation. Revoke an older one.
        std::thread::sleep(std::time::Duration::from_millis(5100));
        stack
            .emulator
            .fault(serde_json::json!({"kind": "revoke_tokens"}))?;
        let (output, helpers) = home.output_traced(Some(&repo), &["fetch", "origin"])?;
        ensure!(
            !output.status.success(),
            "{label}: a revoked token must fail the fetch"
        );
        ensure!(
            helpers
                .iter()
                .any(|h| h.contains("credential-ghapp") && h.ends_with(" erase")),
            "{label}: git sent erase to ghapp: {helpers:?}"
        );
        ensure!(
            !stack.cached_fingerprints()?.contains(&revoked),
            "{label}: erase reached the daemon and it dropped the revoked token\n{}",
            stack.logs()
        );

        home.fetch(&repo)
            .with_context(|| format!("{label}: the retry gets a fresh token\n{}", stack.logs()))?;
        let fresh = filled_fingerprint(&home, &url)?;
        ensure!(fresh != revoked, "{label}: a new token was minted");
    }
    Ok(())
}

#[test]
fn require_with_the_daemon_down_fails_at_once_without_prompting() -> Result<()> {
    let mut stack = Stack::start(3600, 60)?;
    let fallback = stack.mint(100)?;
    let mut homes = Vec::new();
    for git in gits() {
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp --require")?;
        let store = store_file(&home, &stack, &fallback, "acme/widgets")?;
        home.add_config(
            "credential.helper",
            &format!("store --file {}", store.display()),
        )?;
        let repo = home
            .clone_repo(&stack.url("acme/widgets"), "widgets")
            .with_context(|| stack.logs())?;
        homes.push((home, repo));
    }
    stack.daemon.stop()?;
    for (home, repo) in &homes {
        let label = home.git().label();
        let started = Instant::now();
        let (output, helpers) = home.output_traced(Some(repo), &["fetch", "origin"])?;
        let stderr = stderr_of(&output);
        ensure!(!output.status.success(), "{label}: fail closed");
        ensure!(stderr.contains("told us to quit"), "{label}: {stderr}");
        ensure!(
            !stderr.contains("terminal prompts disabled") && !stderr.contains("could not read"),
            "{label}: no prompt attempted: {stderr}"
        );
        ensure!(
            !helpers
                .iter()
                .any(|h| h.contains("credential-store") && h.ends_with(" get")),
            "{label}: no helper after quit: {helpers:?}"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "{label}: at once, not after a timeout"
        );
    }
    Ok(())
}

#[test]
fn credential_cache_in_front_never_serves_an_expired_token() -> Result<()> {
    let gits: Vec<GitBinary> = gits()
        .into_iter()
        .filter(GitBinary::honours_password_expiry)
        .collect();
    if gits.is_empty() {
        eprintln!("no git >= 2.41 (password_expiry_utc): skipping the credential-cache test");
        return Ok(());
    }
    // Tokens live 16 s; ghapp tells git they expire 8 s early (half the life left), and the
    // cache would keep them for 5 minutes if git let it.
    let stack = Stack::start(16, 3)?;
    for git in gits {
        let label = git.label();
        let home = stack.home(&git)?;
        home.add_config("credential.helper", "cache --timeout 300")?;
        home.use_ghapp_helper("ghapp")?;
        let url = stack.url("octo/tools");
        let repo = home
            .clone_repo(&url, "tools")
            .with_context(|| stack.logs())?;

        // The cache now holds the token with its expiry (git >= 2.41 returns both from it).
        let filled = home
            .credential_fill(&url)?
            .context("cache or ghapp answers")?;
        let expiry = filled
            .password_expiry_utc
            .context("password_expiry_utc passed through")?;
        let cached = filled.password.context("password")?;
        // While the token is live git takes it from the cache alone. (On a machine so loaded
        // that this point comes after the advertised expiry, there is nothing to check here.)
        if now_unix() < expiry - 1 {
            let (output, helpers) = home.output_traced(Some(&repo), &["fetch", "origin"])?;
            ensure!(output.status.success(), "{label}: {}", stderr_of(&output));
            ensure!(
                helpers
                    .iter()
                    .any(|h| h.contains("credential-cache") && h.ends_with(" get"))
                    && !helpers
                        .iter()
                        .any(|h| h.contains("credential-ghapp") && h.ends_with(" get")),
                "{label}: a live cached token is served by the cache alone: {helpers:?}"
            );
        } else {
            eprintln!("{label}: too slow to observe the cache hit before the advertised expiry");
        }

        // Past the real expiry (at most 8 s after the advertised one): the cache still holds the
        // token, git must drop it and ask ghapp.
        let wait = (expiry + 8 + 1 - now_unix()).max(0) as u64;
        std::thread::sleep(Duration::from_secs(wait));
        let (output, helpers) = home.output_traced(Some(&repo), &["fetch", "origin"])?;
        ensure!(
            output.status.success(),
            "{label}: fetch after expiry: {}\n{}",
            stderr_of(&output),
            stack.logs()
        );
        let gets: Vec<&String> = helpers.iter().filter(|h| h.ends_with(" get")).collect();
        ensure!(
            gets.len() == 2
                && gets[0].contains("credential-cache")
                && gets[1].contains("credential-ghapp"),
            "{label}: the cache's expired answer was dropped and ghapp asked: {helpers:?}"
        );
        ensure!(
            !helpers.iter().any(|h| h.ends_with(" erase")),
            "{label}: no rejected credential: {helpers:?}"
        );
        let fresh = home
            .credential_fill(&url)?
            .and_then(|c| c.password)
            .context("a fresh token")?;
        ensure!(
            fresh != cached,
            "{label}: a fresh token replaced the expired one"
        );

        // Control: through a plain store helper, the fresh token works and the expired one is
        // refused — so the success above was ghapp's fresh token, not a lenient server.
        for (token, should_work) in [(&fresh, true), (&cached, false)] {
            let control = GitHome::new(&git)?;
            let store = store_file(&control, &stack, token, "octo/tools")?;
            control.add_config(
                "credential.helper",
                &format!("store --file {}", store.display()),
            )?;
            let output = control.output(None, &["ls-remote", &url])?;
            if output.status.success() != should_work {
                bail!(
                    "{label}: token {token} should work: {should_work}; git said {}",
                    stderr_of(&output)
                );
            }
        }
    }
    Ok(())
}

#[test]
fn submodules_across_installations_through_rewritten_ssh_urls() -> Result<()> {
    let stack = Stack::start(3600, 60)?;
    let ssh_base = "git@github.example:";
    for git in gits() {
        let label = git.label();
        let home = stack.home(&git)?;
        home.use_ghapp_helper("ghapp")?;
        // docs/git.md's SSH recipe, with the emulator standing in for https://github.com/.
        let https_base = format!("{}/", stack.emulator.urls.git_url.trim_end_matches('/'));
        home.set_config(&format!("url.{https_base}.insteadOf"), ssh_base)?;

        // The submodule lives in the other installation (the user `octo`); give it a commit.
        let tools = home.clone_repo(&format!("{ssh_base}octo/tools.git"), "tools")?;
        home.commit_file(&tools, "tool.txt", &format!("from {label}\n"), "tool")?;
        home.push(&tools).with_context(|| stack.logs())?;

        // The superproject (organisation `acme`) records the submodule by its SSH URL.
        let superproject = home.clone_repo(&format!("{ssh_base}acme/gadgets.git"), "gadgets")?;
        let path = format!("tools-{}-{}", git.version.0, git.version.1);
        home.run(
            Some(&superproject),
            &[
                "submodule",
                "add",
                "--quiet",
                &format!("{ssh_base}octo/tools.git"),
                &path,
            ],
        )
        .with_context(|| stack.logs())?;
        home.run(
            Some(&superproject),
            &["commit", "--quiet", "-m", "add tools"],
        )?;
        home.push(&superproject).with_context(|| stack.logs())?;

        let check = format!("gadgets-check-{}", git.version.1);
        home.run(
            None,
            &[
                "clone",
                "--quiet",
                "--recurse-submodules",
                &format!("{ssh_base}acme/gadgets.git"),
                &check,
            ],
        )
        .with_context(|| {
            format!(
                "{label}: recursive clone across installations\n{}",
                stack.logs()
            )
        })?;
        let tool = home.work_dir().join(&check).join(&path).join("tool.txt");
        ensure!(
            tool.is_file(),
            "{label}: the submodule was checked out: {}",
            tool.display()
        );
    }
    if !gits().is_empty() {
        ensure!(
            stack.mints(100)? >= 1 && stack.mints(200)? >= 1,
            "one token per installation"
        );
    }
    Ok(())
}
