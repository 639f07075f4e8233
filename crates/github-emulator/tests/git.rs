//! Real git over the emulator's smart HTTP: clone and push with a good token; refusals with an
//! expired, narrowed or read-only token, the wrong user, or none; lazily created repositories.

mod common;

use common::*;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

/// Runs git in `dir` with an isolated config whose only credential helper answers
/// `x-access-token` / `$EMU_TEST_TOKEN` (so the token never appears in argv or URLs).
fn git(dir: &Path, home: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid");
    if let Some(token) = token {
        cmd.env("EMU_TEST_TOKEN", token)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "credential.helper")
            .env(
                "GIT_CONFIG_VALUE_0",
                "!f() { test \"$1\" = get && echo username=x-access-token && echo \"password=$EMU_TEST_TOKEN\"; }; f",
            );
    }
    cmd.output().expect("running git")
}

fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn fixture(ttl: u64) -> String {
    format!(
        "{}\n[[repositories]]\nfull_name = \"acme/open\"\nprivate = false\n",
        basic_fixture(ttl)
    )
}

#[test]
fn clone_and_push_with_a_good_token() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let work = tempfile::tempdir().expect("tmp");
    let token = mint(&emu, 100, json!({"repositories": ["widgets"]}));
    ok(
        &git(
            work.path(),
            work.path(),
            Some(&token),
            &["clone", "-q", &emu.repo_url("acme", "widgets"), "w"],
        ),
        "clone",
    );
    let repo = work.path().join("w");
    assert_eq!(
        std::fs::read_to_string(repo.join("README.md"))
            .expect("README")
            .lines()
            .next(),
        Some("# Emulated repository")
    );
    std::fs::write(repo.join("pushed.txt"), "pushed\n").expect("write");
    ok(
        &git(&repo, work.path(), Some(&token), &["add", "pushed.txt"]),
        "add",
    );
    ok(
        &git(
            &repo,
            work.path(),
            Some(&token),
            &["commit", "-qm", "pushed through the emulator"],
        ),
        "commit",
    );
    ok(
        &git(
            &repo,
            work.path(),
            Some(&token),
            &["push", "-q", "origin", "HEAD:main"],
        ),
        "push",
    );

    let log = Command::new("git")
        .args([
            "--git-dir",
            &emu.repo_path("acme", "widgets").display().to_string(),
            "log",
            "--format=%s",
            "main",
        ])
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&log.stdout),
        "pushed through the emulator\nInitial commit\n"
    );

    // A second clone sees the pushed commit; fetch with protocol v2 and v0.
    for version in ["2", "0"] {
        let dir = format!("again{version}");
        ok(
            &git(
                work.path(),
                work.path(),
                Some(&token),
                &[
                    "-c",
                    &format!("protocol.version={version}"),
                    "clone",
                    "-q",
                    &emu.repo_url("acme", "widgets"),
                    &dir,
                ],
            ),
            "second clone",
        );
        assert!(work.path().join(&dir).join("pushed.txt").is_file());
    }
    let stats = emu.stats().expect("stats");
    assert!(
        stats["git_requests"]["401"].as_u64().unwrap_or(0) >= 1,
        "git was challenged first: {stats}"
    );
    assert!(
        stats["git_requests"]["200"].as_u64().unwrap_or(0) >= 4,
        "{stats}"
    );
    assert!(
        stats["git_services"]["receive-pack"].as_u64().unwrap_or(0) >= 2,
        "{stats}"
    );
}

#[test]
fn refusals() {
    let emu = EmulatorProcess::start(&fixture(3600)).expect("start");
    let work = tempfile::tempdir().expect("tmp");
    let url = emu.repo_url("acme", "widgets");

    // No credentials: 401 with GitHub's challenge.
    let raw = request(
        &emu.urls.git_url,
        None,
        "GET",
        "/acme/widgets.git/info/refs?service=git-upload-pack",
        &[],
        None,
    )
    .expect("raw");
    assert_eq!(raw.status, 401);
    assert_eq!(
        raw.header("www-authenticate"),
        Some("Basic realm=\"GitHub\"")
    );
    assert!(raw.header("date").is_some());
    let failed = git(
        work.path(),
        work.path(),
        None,
        &["clone", "-q", &url, "none"],
    );
    assert!(!failed.status.success());

    // The wrong user name with a good token; a garbage token.
    use base64::Engine as _;
    let token = mint(&emu, 100, json!({}));
    for credentials in [
        format!("someone:{token}"),
        "x-access-token:ghs_nope".to_string(),
    ] {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let raw = request(
            &emu.urls.git_url,
            None,
            "GET",
            "/acme/widgets.git/info/refs?service=git-upload-pack",
            &[("Authorization", &basic)],
            None,
        )
        .expect("raw");
        assert_eq!(raw.status, 401);
        assert_eq!(
            raw.header("www-authenticate"),
            Some("Basic realm=\"GitHub\"")
        );
    }

    // A token narrowed to another repository: 403.
    let gadgets_only = mint(&emu, 100, json!({"repositories": ["gadgets"]}));
    let failed = git(
        work.path(),
        work.path(),
        Some(&gadgets_only),
        &["clone", "-q", &url, "narrowed"],
    );
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    // A token of another installation: 403; an unknown repository with a good token: 404.
    let octo = mint(&emu, 200, json!({}));
    assert!(
        !git(
            work.path(),
            work.path(),
            Some(&octo),
            &["clone", "-q", &url, "other"]
        )
        .status
        .success()
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    let missing = request(
        &emu.urls.git_url,
        None,
        "GET",
        "/acme/nope.git/info/refs?service=git-upload-pack",
        &[("Authorization", &basic)],
        None,
    )
    .expect("raw");
    assert_eq!(missing.status, 404);

    // Read-only token: clone works, push gets 403.
    let read_only = mint(&emu, 100, json!({"permissions": {"contents": "read"}}));
    ok(
        &git(
            work.path(),
            work.path(),
            Some(&read_only),
            &["clone", "-q", &url, "ro"],
        ),
        "read-only clone",
    );
    let repo = work.path().join("ro");
    std::fs::write(repo.join("x.txt"), "x\n").expect("write");
    ok(&git(&repo, work.path(), None, &["add", "x.txt"]), "add");
    ok(
        &git(&repo, work.path(), None, &["commit", "-qm", "x"]),
        "commit",
    );
    let push = git(
        &repo,
        work.path(),
        Some(&read_only),
        &["push", "-q", "origin", "HEAD:main"],
    );
    assert!(!push.status.success());
    assert!(
        String::from_utf8_lossy(&push.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );

    // Public repositories: anonymous fetch, but push still needs a token.
    ok(
        &git(
            work.path(),
            work.path(),
            None,
            &["clone", "-q", &emu.repo_url("acme", "open"), "open"],
        ),
        "anonymous clone of a public repo",
    );

    // A git-server fault.
    emu.fault(json!({"kind": "status", "status": 503, "server": "git", "times": 1}))
        .expect("fault");
    let faulted = request(
        &emu.urls.git_url,
        None,
        "GET",
        "/acme/open.git/info/refs?service=git-upload-pack",
        &[],
        None,
    )
    .expect("raw");
    assert_eq!(faulted.status, 503);
    let after = request(
        &emu.urls.git_url,
        None,
        "GET",
        "/acme/open.git/info/refs?service=git-upload-pack",
        &[],
        None,
    )
    .expect("raw");
    assert_eq!(after.status, 200);
    let stats = emu.stats().expect("stats");
    assert!(
        stats["git_requests"]["403"].as_u64().unwrap_or(0) >= 3,
        "{stats}"
    );
    assert_eq!(stats["git_requests"]["404"], 1, "{stats}");
}

#[test]
fn expired_token_is_refused() {
    let emu = EmulatorProcess::start(&fixture(2)).expect("start");
    let work = tempfile::tempdir().expect("tmp");
    let url = emu.repo_url("acme", "widgets");
    let token = mint(&emu, 100, json!({}));
    ok(
        &git(
            work.path(),
            work.path(),
            Some(&token),
            &["clone", "-q", &url, "fresh"],
        ),
        "clone while valid",
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    let before = emu.stats().expect("stats")["git_requests"]["401"]
        .as_u64()
        .unwrap_or(0);
    let failed = git(
        work.path(),
        work.path(),
        Some(&token),
        &["clone", "-q", &url, "stale"],
    );
    assert!(!failed.status.success(), "an expired token must not clone");
    let after = emu.stats().expect("stats")["git_requests"]["401"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after >= before + 2,
        "challenged, then refused with the token: {before} → {after}"
    );
}

#[test]
fn repositories_beyond_the_eager_batch_are_created_on_demand() {
    let mut text = basic_fixture(3600);
    for i in 0..40 {
        text.push_str(&format!("\n[[repositories]]\nfull_name = \"acme/r{i}\"\n"));
    }
    text = text.replacen("repositories = [\"widgets\", \"gadgets\"]\n", "", 1);
    let emu = EmulatorProcess::start(&text).expect("start");
    let work = tempfile::tempdir().expect("tmp");
    let token = mint(&emu, 100, json!({"repositories": ["r39"]}));
    ok(
        &git(
            work.path(),
            work.path(),
            Some(&token),
            &["clone", "-q", &emu.repo_url("acme", "r39"), "r39"],
        ),
        "clone r39",
    );
    assert!(work.path().join("r39/README.md").is_file());
    // The background creation finishes soon.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(0..40).all(|i| {
        emu.repo_path("acme", &format!("r{i}"))
            .join("HEAD")
            .is_file()
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "background repository creation did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
