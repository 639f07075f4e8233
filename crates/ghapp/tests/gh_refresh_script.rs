//! scripts/ghapp-gh-refresh.sh with a fake `ghapp` and a fake `gh` on PATH: what gh is given
//! (args, stdin, environment), the lock, and each exit status.

mod common;

use common::{which, write_executable};

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const FAKE_TOKEN: &str = "ghs_FAKEfakeFAKEfakeFAKEfakeFAKEfake0123";

fn script() -> PathBuf {
    common::script("ghapp-gh-refresh.sh")
}

/// A sandbox: a bin dir with only the tools the script needs plus fake ghapp and gh, which
/// record what they were given under `record/`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ghapp-gh-refresh-test-")
            .tempdir()
            .unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(dir.path().join("record")).unwrap();
        for tool in [
            "bash", "date", "flock", "mktemp", "rm", "tr", "id", "sed", "cat", "env", "sleep",
            "mkdir",
        ] {
            std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
        }
        let record = dir.path().join("record");
        write_executable(
            &bin.join("ghapp"),
            &format!(
                r#"#!/bin/bash
printf '%s\n' "$@" > {record}/ghapp.args
if [ -n "${{FAKE_GHAPP_FAIL:-}}" ]; then echo "ghapp: daemon not reachable at /x.sock" >&2; exit 1; fi
printf '%s\n' "{FAKE_TOKEN}"
"#,
                record = record.display()
            ),
        );
        write_executable(
            &bin.join("gh"),
            &format!(
                r#"#!/bin/bash
printf '%s\n' "$@" > {record}/gh.args
cat > {record}/gh.stdin
env > {record}/gh.env
if [ -n "${{FAKE_GH_SLEEP:-}}" ]; then sleep "$FAKE_GH_SLEEP"; fi
if [ -n "${{FAKE_GH_FAIL:-}}" ]; then echo "error validating token: HTTP 401" >&2; exit 1; fi
exit 0
"#,
                record = record.display()
            ),
        );
        Sandbox { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn record(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.path().join("record").join(name)).ok()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin().join("bash"));
        command
            .arg(script())
            .args(args)
            .env_clear()
            .env("PATH", self.bin())
            .env("HOME", self.dir.path())
            .env("TMPDIR", self.dir.path())
            .env(
                "GHAPP_GH_REFRESH_LOCK",
                self.dir.path().join("refresh.lock"),
            )
            // Set on purpose: the script must unset them before calling gh.
            .env("GH_TOKEN", "ghs_fromtheenvironment")
            .env("GITHUB_TOKEN", "ghs_fromtheenvironment")
            .env("GH_ENTERPRISE_TOKEN", "ghs_fromtheenvironment");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn lines(text: &Option<String>) -> Vec<String> {
    text.as_deref()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn pipes_the_token_into_gh_auth_login_with_gh_tokens_unset() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["acme"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(
        lines(&sandbox.record("ghapp.args")),
        ["token", "--host", "github.com", "--min-ttl", "45m", "acme"]
    );
    assert_eq!(
        lines(&sandbox.record("gh.args")),
        ["auth", "login", "--hostname", "github.com", "--with-token"]
    );
    assert_eq!(
        sandbox.record("gh.stdin").as_deref(),
        Some(format!("{FAKE_TOKEN}\n").as_str())
    );
    let env = sandbox.record("gh.env").unwrap();
    for name in [
        "GH_TOKEN=",
        "GITHUB_TOKEN=",
        "GH_ENTERPRISE_TOKEN=",
        "GITHUB_ENTERPRISE_TOKEN=",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(name)),
            "{name} reached gh:\n{env}"
        );
    }
    assert!(
        !env.contains(FAKE_TOKEN),
        "the token was exported to gh's environment"
    );
    assert!(stderr.contains("gh logged in to github.com"), "{stderr}");
    assert!(
        !stderr.contains(FAKE_TOKEN) && out.stdout.is_empty(),
        "the token was printed: {stderr}"
    );
}

#[test]
fn host_repo_min_ttl_and_permissions_are_passed_on() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&[
        "--host",
        "ghe.example.com",
        "--min-ttl=50m",
        "--permission",
        "contents=read",
        "-p",
        "issues=write",
        "acme/widgets",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&sandbox.record("ghapp.args")),
        [
            "token",
            "--host",
            "ghe.example.com",
            "--min-ttl",
            "50m",
            "--permission",
            "contents=read",
            "--permission",
            "issues=write",
            "acme/widgets"
        ]
    );
    assert_eq!(
        lines(&sandbox.record("gh.args")),
        [
            "auth",
            "login",
            "--hostname",
            "ghe.example.com",
            "--with-token"
        ]
    );
}

#[test]
fn ghapp_failure_exits_3_without_calling_gh() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .command(&["acme"])
        .env("FAKE_GHAPP_FAIL", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("daemon not reachable"),
        "ghapp's reason is logged: {stderr}"
    );
    assert!(sandbox.record("gh.args").is_none(), "gh must not be called");
}

#[test]
fn gh_refusal_exits_4() {
    let sandbox = Sandbox::new();
    let out = sandbox
        .command(&["acme"])
        .env("FAKE_GH_FAIL", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(
        stderr.contains("error validating token"),
        "gh's reason is logged: {stderr}"
    );
    assert!(!stderr.contains(FAKE_TOKEN), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_missing_tools_69() {
    let sandbox = Sandbox::new();
    assert_eq!(sandbox.run(&[]).status.code(), Some(2));
    assert_eq!(sandbox.run(&["--bogus", "acme"]).status.code(), Some(2));
    assert_eq!(sandbox.run(&["acme", "other"]).status.code(), Some(2));
    assert_eq!(sandbox.run(&["--host"]).status.code(), Some(2));
    assert_eq!(sandbox.run(&["--help"]).status.code(), Some(0));
    let out = sandbox.run(&["--gh", "/nonexistent/gh", "acme"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gh not found"));
}

#[test]
fn overlapping_runs_wait_for_the_lock_then_give_up_with_75() {
    let sandbox = Sandbox::new();
    // A first run that sits inside `gh auth login` for a while, holding the lock.
    // Its own process group, so the fake gh's `sleep` (which inherits the lock) dies with it.
    let mut first = {
        use std::os::unix::process::CommandExt;
        sandbox
            .command(&["acme"])
            .env("FAKE_GH_SLEEP", "30")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let gh_started = sandbox.dir.path().join("record/gh.args");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gh_started.exists() {
        assert!(Instant::now() < deadline, "the first run never reached gh");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = sandbox
        .command(&["acme"])
        .env("GHAPP_GH_REFRESH_LOCK_WAIT", "1")
        .output()
        .unwrap();
    if let Some(group) = rustix::process::Pid::from_raw(first.id() as i32) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "stderr: {stderr}");
    assert!(stderr.contains("giving up this round"), "{stderr}");
}

#[test]
fn a_lock_held_in_the_temp_dir_does_not_stop_the_refresh() {
    // The attack: someone creates and holds the lock file the script used to take in a shared
    // temp dir. The script must lock in the user's own state dir and run regardless.
    let sandbox = Sandbox::new();
    let shared_tmp = sandbox.dir.path().join("shared-tmp");
    fs::create_dir_all(&shared_tmp).unwrap();
    let uid = rustix::process::geteuid().as_raw();
    let squatted = shared_tmp.join(format!("ghapp-gh-refresh-{uid}.lock"));
    fs::write(&squatted, "").unwrap();
    let mut holder = Command::new(which("flock"))
        .arg(&squatted)
        .args([which("sleep").to_str().unwrap(), "30"])
        .spawn()
        .unwrap();
    // Wait until the holder really holds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = Command::new(which("flock"))
            .args(["-n", squatted.to_str().unwrap(), "true"])
            .status()
            .unwrap();
        if !probe.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sandbox
        .command(&["acme"])
        .env_remove("GHAPP_GH_REFRESH_LOCK")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &shared_tmp)
        .env("GHAPP_GH_REFRESH_LOCK_WAIT", "1")
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let state_dir = sandbox.dir.path().join(".local/state/ghapp");
    assert!(state_dir.join("gh-refresh.lock").exists(), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}
