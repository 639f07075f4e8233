//! `ghapp doctor` on broken setups: every FAIL it can print, each with its fix, and exit
//! status 1; plus a healthy setup that passes. Setups that need GitHub use the emulator
//! (tests/stack); the rest need only files and git config in a throwaway HOME.

mod common;
mod stack;

use common::{Outcome, Sandbox};
use stack::Stack;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A temp directory for configs and keys.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// Runs doctor with `config`, a socket nobody listens on (unless given) and `--host`.
fn doctor(sandbox: &Sandbox, config: &Path, socket: &Path, host: Option<&str>) -> Outcome {
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
        "doctor",
    ];
    if let Some(host) = host {
        args.extend(["--host", host]);
    }
    sandbox.run(&args)
}

fn assert_finding(out: &Outcome, level: &str, needle: &str, fix_needle: &str) {
    let Some((line, fix)) = out.finding(level, needle) else {
        panic!("no {level} line containing {needle:?}:\n{}", out.stdout);
    };
    assert!(
        fix.contains(fix_needle),
        "fix for {line:?} is {fix:?}, expected {fix_needle:?}\n{}",
        out.stdout
    );
}

#[test]
fn missing_config_and_daemon_down() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let out = doctor(
        &sandbox,
        &files.path("nope.toml"),
        &files.path("d.sock"),
        None,
    );
    out.expect_code(1);
    assert_finding(&out, "FAIL", "config file", "configuration.md");
    assert!(out.stdout.contains("nope.toml"), "{}", out.stdout);
    assert_finding(&out, "FAIL", "daemon not reachable", "ghapp daemon");
    // The socket's source is named, so the user knows which setting to change.
    let (line, _) = out.finding("FAIL", "daemon not reachable").unwrap();
    assert!(
        line.contains("d.sock") && line.contains("--socket"),
        "{line}"
    );
}

#[test]
fn invalid_config_names_the_line_and_key() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let config = files.write(
        "config.toml",
        "[daemon]\nmin_ttl = \"30m\"\nsocket_mode = 1\n",
        0o600,
    );
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    out.expect_code(1);
    assert_finding(&out, "FAIL", "config file is not valid", "config.toml");
    assert!(out.stdout.contains("line 3"), "{}", out.stdout);
    assert!(out.stdout.contains("socket_mode"), "{}", out.stdout);
}

fn config_with_key(files: &Files, key: &Path, api_url: &str, host: &str) -> PathBuf {
    files.write(
        "config.toml",
        &format!(
            "[[app]]\nname = \"test-app\"\nhost = {host:?}\napi_url = {api_url:?}\napp_id = 1\n\
             private_key_file = {:?}\ninsecure_http = true\n",
            key.display().to_string()
        ),
        0o600,
    )
}

#[test]
fn key_problems() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let stack = Stack::start();
    let pem = fs::read_to_string(&stack.key).unwrap();

    // Readable by others: the daemon refuses it.
    let loose = files.write("loose.pem", &pem, 0o644);
    let config = config_with_key(&files, &loose, &stack.emulator.urls.api_url, &stack.host);
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    out.expect_code(1);
    assert_finding(
        &out,
        "FAIL",
        "mode 0644",
        &format!("chmod 600 {}", loose.display()),
    );

    // Missing.
    let config = config_with_key(
        &files,
        &files.path("missing.pem"),
        &stack.emulator.urls.api_url,
        &stack.host,
    );
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "FAIL", "does not exist", "private_key_file");

    // Not a key.
    let garbage = files.write(
        "garbage.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        0o600,
    );
    let config = config_with_key(&files, &garbage, &stack.emulator.urls.api_url, &stack.host);
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "FAIL", "is not an RSA private key", "PEM");

    // A key command the daemon would give up on: the daemon's 10 s limit, not one of doctor's own.
    let config = files.write(
        "config.toml",
        &format!(
            "[[app]]\nname = \"test-app\"\nhost = {:?}\napi_url = {:?}\napp_id = 1\n\
             private_key_command = [\"sleep\", \"30\"]\ninsecure_http = true\n",
            stack.host, stack.emulator.urls.api_url
        ),
        0o600,
    );
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "FAIL", "did not finish within 10s", "by hand");

    // A real RSA key, but not this App's: GitHub refuses the JWT.
    let other = Stack::other_key(files.dir.path());
    let wrong = files.write("wrong.pem", &fs::read_to_string(&other).unwrap(), 0o600);
    let config = config_with_key(&files, &wrong, &stack.emulator.urls.api_url, &stack.host);
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "OK", "is an RSA key that signs", "");
    assert_finding(&out, "FAIL", "GitHub refused the App JWT", "Private keys");
}

#[test]
fn clock_skew_against_github() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let stack = Stack::start();
    let config = config_with_key(
        &files,
        &stack.key,
        &stack.emulator.urls.api_url,
        &stack.host,
    );

    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "OK", "clock is within", "");
    assert_finding(&out, "OK", "GitHub accepted the key", "");
    assert_finding(&out, "OK", "installed on acme", "");

    stack
        .emulator
        .fault(serde_json::json!({"kind": "clock_offset", "secs": -600}))
        .unwrap();
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    out.expect_code(1);
    assert_finding(&out, "FAIL", "clock is 600s", "timedatectl");
    // The key itself is still reported as accepted: a bad clock is not a bad key.
    assert_finding(&out, "OK", "GitHub accepted the key", "");

    stack
        .emulator
        .fault(serde_json::json!({"kind": "clock_offset", "secs": 120}))
        .unwrap();
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "WARN", "clock is 120s", "timedatectl");
}

#[test]
fn github_unreachable() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let stack = Stack::start();
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = config_with_key(
        &files,
        &stack.key,
        &format!("http://127.0.0.1:{port}"),
        &stack.host,
    );
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    out.expect_code(1);
    assert_finding(&out, "FAIL", "is unreachable", "network");
}

#[test]
fn git_configuration_problems() {
    let files = Files::new();
    let config = files.write("config.toml", "", 0o600);
    let socket = files.path("d.sock");

    // Nothing configured for github.com.
    let sandbox = Sandbox::new();
    let out = doctor(&sandbox, &config, &socket, Some("github.com"));
    out.expect_code(1);
    assert_finding(&out, "FAIL", "git does not ask ghapp", "ghapp configure");

    // ghapp configured, but useHttpPath missing and `store` in front of it.
    let sandbox = Sandbox::new();
    sandbox
        .git
        .add_config("credential.helper", "store")
        .unwrap();
    sandbox
        .git
        .add_config("credential.helper", "ghapp")
        .unwrap();
    let out = doctor(&sandbox, &config, &socket, Some("github.com"));
    out.expect_code(1);
    assert_finding(&out, "FAIL", "`store`", "ghapp configure");
    assert_finding(&out, "FAIL", "useHttpPath is not set", "useHttpPath true");

    // A stale installation token saved by store: reported by fingerprint, never its bytes.
    let secret = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
    fs::write(
        sandbox.home().join(".git-credentials"),
        format!("https://x-access-token:{secret}@github.com\n"),
    )
    .unwrap();
    let out = doctor(&sandbox, &config, &socket, Some("github.com"));
    assert_finding(
        &out,
        "FAIL",
        "holds a saved GitHub App token",
        ".git-credentials",
    );
    assert!(
        out.stdout
            .contains(&ghapp_protocol::secret::fingerprint(secret)),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(secret) && !out.stderr.contains(secret),
        "token bytes printed"
    );

    // `ghapp configure` fixes the git side: no git FAIL left.
    sandbox.run(&["configure"]).expect_code(0);
    fs::remove_file(sandbox.home().join(".git-credentials")).unwrap();
    let out = doctor(&sandbox, &config, &socket, Some("github.com"));
    assert_finding(&out, "OK", "git asks ghapp for https://github.com", "");
    assert_finding(&out, "OK", "useHttpPath is true", "");
    assert!(
        !out.stdout.contains("`store`"),
        "store is reset for github.com by configure:\n{}",
        out.stdout
    );

    // credential-cache in front: fine with an expiry-aware git, FAIL with git 2.39.
    for git in ghapp_testkit::git::GitBinary::all() {
        let sandbox = Sandbox::with_git(&git);
        sandbox
            .git
            .add_config("credential.helper", "cache --timeout 900")
            .unwrap();
        sandbox
            .git
            .add_config("credential.helper", "ghapp")
            .unwrap();
        sandbox
            .git
            .set_config("credential.useHttpPath", "true")
            .unwrap();
        let out = doctor(&sandbox, &config, &socket, Some("github.com"));
        if git.honours_password_expiry() {
            assert_finding(&out, "OK", "`cache --timeout 900`", "");
        } else {
            assert_finding(&out, "FAIL", "`cache --timeout 900`", "2.41");
        }
    }
}

#[test]
fn helper_missing_from_path() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let config = files.write("config.toml", "", 0o600);
    // Only git's own directory on PATH: no git-credential-ghapp.
    let out: Outcome = sandbox
        .ghapp()
        .env("PATH", "/usr/bin:/bin")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--socket",
            files.path("d.sock").to_str().unwrap(),
            "doctor",
        ])
        .output()
        .unwrap()
        .into();
    out.expect_code(1);
    assert_finding(
        &out,
        "FAIL",
        "git-credential-ghapp is not on PATH",
        "install.sh",
    );

    let found = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&found, "OK", "git-credential-ghapp found", "");
}

#[test]
fn socket_directory_open_to_everyone() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let config = files.write("config.toml", "", 0o600);
    let dir = files.path("open");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(dir.join("d.sock")).unwrap();
    let out = doctor(&sandbox, &config, &dir.join("d.sock"), None);
    out.expect_code(1);
    assert_finding(&out, "FAIL", "writable by every user", "chmod 700");
}

#[test]
fn a_healthy_setup_passes() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    sandbox.run(&["configure"]).expect_code(0);
    let out = sandbox.run(&["doctor"]);
    assert!(out.fails().is_empty(), "unexpected FAIL:\n{}", out.stdout);
    out.expect_code(0);
    for ok in [
        "config file",
        "is an RSA key that signs",
        "GitHub accepted the key",
        "daemon answers",
        "git asks ghapp",
    ] {
        assert_finding(&out, "OK", ok, "");
    }
}

#[test]
fn daemon_running_another_key_or_config() {
    let stack = Stack::start();
    let sandbox = Sandbox::new();
    let files = Files::new();
    let other = Stack::other_key(files.dir.path());
    let rotated = files.write("rotated.pem", &fs::read_to_string(&other).unwrap(), 0o600);
    let config = config_with_key(&files, &rotated, &stack.emulator.urls.api_url, &stack.host);
    let out = doctor(&sandbox, &config, stack.daemon.socket(), None);
    assert_finding(&out, "OK", "daemon answers", "");
    assert_finding(
        &out,
        "WARN",
        "the daemon signs for App test-app with key",
        "reload",
    );

    let renamed = files.write(
        "renamed.toml",
        &fs::read_to_string(&config)
            .unwrap()
            .replace("name = \"test-app\"", "name = \"other-app\""),
        0o600,
    );
    let out = doctor(&sandbox, &renamed, stack.daemon.socket(), None);
    assert_finding(&out, "WARN", "does not serve App other-app", "reload");
}

/// A config for `stack`'s App 1 (`app_id = 1`) with `extra` keys, written as `name`.
fn app_config(files: &Files, name: &str, stack: &Stack, extra: &str) -> PathBuf {
    files.write(
        name,
        &format!(
            "[[app]]\nname = \"test-app\"\nhost = {host:?}\napi_url = {api:?}\napp_id = 1\n\
             {extra}\nprivate_key_file = {key:?}\ninsecure_http = true\n",
            host = stack.host,
            api = stack.emulator.urls.api_url,
            key = stack.key.display().to_string(),
        ),
        0o600,
    )
}

#[test]
fn doctor_says_which_jwt_issuer_github_accepts() {
    let sandbox = Sandbox::new();
    let files = Files::new();
    let client_id = "client_id = \"Iv1.0123456789abcdef\"";
    // GHES 3.13: a client id is refused as the issuer, the App id accepted.
    let ghes = Stack::start_with(&format!("ghes_version = \"3.13\"\n{}", stack::FIXTURE), "");
    let config = app_config(&files, "ghes.toml", &ghes, client_id);
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(
        &out,
        "OK",
        "JWT issuer: App id; GitHub refused the client id",
        "",
    );
    assert!(
        !out.stdout.contains("GitHub refused the App JWT"),
        "{}",
        out.stdout
    );
    let config = app_config(&files, "app-id.toml", &ghes, "");
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "OK", "JWT issuer: App id)", "");

    // github.com's layout, no GHES version: the client id is accepted as it is.
    let dotcom = Stack::start();
    let config = app_config(&files, "dotcom.toml", &dotcom, client_id);
    let out = doctor(&sandbox, &config, &files.path("d.sock"), None);
    assert_finding(&out, "OK", "JWT issuer: client id", "");
}
