//! `ghapp configure` / `ghapp unconfigure` on a throwaway git config (HOME in a temp dir, no
//! system config): what is written, idempotence, byte-identical round trips, other helpers
//! left alone, and real git running ghapp first for the configured host.

mod common;

use common::Sandbox;
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// A user's global config with things configure must not touch: an identity, aliases, a
/// comment, a global storage helper, and another host's helper.
const USER_CONFIG: &str = "\
# my settings
[user]
\tname = Ada
\temail = ada@example.com
[alias]
\tco = checkout
[credential]
\thelper = store
[credential \"https://gitlab.example.com\"]
\thelper = cache --timeout 900
";

fn sandbox_with_user_config() -> Sandbox {
    let sandbox = Sandbox::new();
    fs::write(sandbox.gitconfig(), USER_CONFIG).unwrap();
    sandbox
}

#[test]
fn configure_writes_the_reset_the_helper_and_use_http_path() {
    let sandbox = sandbox_with_user_config();
    let out = sandbox.run(&["configure"]);
    out.expect_code(0);
    assert!(out.stdout.contains("https://github.com"), "{}", out.stdout);
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["", "ghapp"]
    );
    assert_eq!(
        sandbox.git_values("credential.https://github.com.useHttpPath"),
        ["true"]
    );
    // Nothing else changed: the user's keys are all still there, in order, before ours.
    let text = fs::read_to_string(sandbox.gitconfig()).unwrap();
    assert!(
        text.starts_with(USER_CONFIG),
        "user config rewritten:\n{text}"
    );
}

#[test]
fn configure_twice_changes_nothing_and_unconfigure_restores_every_byte() {
    // Every installed git (2.39 and 2.47 here): ghapp drives whichever `git` is on PATH.
    for git in ghapp_testkit::git::GitBinary::all() {
        round_trip(Sandbox::with_git(&git));
    }
}

fn round_trip(sandbox: Sandbox) {
    fs::write(sandbox.gitconfig(), USER_CONFIG).unwrap();
    let original = fs::read(sandbox.gitconfig()).unwrap();

    sandbox.run(&["configure", "--global"]).expect_code(0);
    let configured = fs::read(sandbox.gitconfig()).unwrap();
    assert_ne!(configured, original);

    let again = sandbox.run(&["configure", "--global"]);
    again.expect_code(0);
    assert!(again.stdout.contains("nothing changed"), "{}", again.stdout);
    assert_eq!(
        fs::read(sandbox.gitconfig()).unwrap(),
        configured,
        "second configure rewrote the file"
    );

    let out = sandbox.run(&["unconfigure", "--global"]);
    out.expect_code(0);
    assert!(out.stdout.contains("removed"), "{}", out.stdout);
    assert_eq!(
        String::from_utf8(fs::read(sandbox.gitconfig()).unwrap()).unwrap(),
        String::from_utf8(original).unwrap(),
        "unconfigure must leave the file exactly as before configure"
    );

    let nothing = sandbox.run(&["unconfigure"]);
    nothing.expect_code(0);
    assert!(
        nothing.stdout.contains("nothing changed"),
        "{}",
        nothing.stdout
    );
}

#[test]
fn a_users_own_helper_for_the_host_is_kept_after_ghapp_and_survives_unconfigure() {
    let sandbox = Sandbox::new();
    sandbox
        .git
        .add_config("credential.https://github.com.helper", "cache --timeout 60")
        .unwrap();
    sandbox.run(&["configure"]).expect_code(0);
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["", "ghapp", "cache --timeout 60"],
        "the user's helper stays, after ghapp"
    );
    sandbox.run(&["unconfigure"]).expect_code(0);
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["cache --timeout 60"]
    );
    assert!(
        sandbox
            .git_values("credential.https://github.com.useHttpPath")
            .is_empty()
    );
}

/// git's own `credential fill` for `url`, traced: the helpers it runs, in order (no daemon:
/// ghapp falls through silently).
fn helpers_git_runs(sandbox: &Sandbox, url: &str) -> Vec<String> {
    let trace = sandbox.home().join(format!("trace-{}", url.len()));
    ghapp_testkit::system::run_with_input(
        sandbox
            .git
            .command()
            .args(["credential", "fill"])
            .env("GIT_TRACE", &trace)
            .env("GHAPP_SOCKET", "/nonexistent/ghapp.sock"),
        format!("url={url}\n\n").as_bytes(),
    );
    let helpers =
        ghapp_testkit::git::helpers_in_trace(&fs::read_to_string(&trace).unwrap_or_default());
    let _ = fs::remove_file(&trace);
    helpers
}

#[test]
fn git_asks_ghapp_first_for_the_host_and_other_hosts_keep_their_helpers() {
    let sandbox = sandbox_with_user_config()
        // No daemon: ghapp falls through silently; what matters is which helpers git runs.
        .env("GHAPP_SOCKET", "/nonexistent/ghapp.sock");
    sandbox.run(&["configure"]).expect_code(0);
    let traced = |url: &str| helpers_git_runs(&sandbox, url);
    let github = traced("https://github.com/acme/widgets.git");
    assert_eq!(
        github.first().map(String::as_str),
        Some("git credential-ghapp get"),
        "{github:?}"
    );
    assert!(
        !github.iter().any(|h| h.contains("credential-store")),
        "store is reset for github.com: {github:?}"
    );
    let gitlab = traced("https://gitlab.example.com/team/app.git");
    assert!(
        gitlab.iter().any(|h| h.contains("credential-store")),
        "{gitlab:?}"
    );
    assert!(
        !gitlab.iter().any(|h| h.contains("credential-ghapp")),
        "{gitlab:?}"
    );
}

#[test]
fn http_test_hosts_and_the_socket_flag() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&[
            "--socket",
            "/tmp/ghapp test/s.sock",
            "configure",
            "--host",
            "http://127.0.0.1:8080",
        ])
        .expect_code(0);
    assert_eq!(
        sandbox.git_values("credential.http://127.0.0.1:8080.helper"),
        ["", "ghapp --socket '/tmp/ghapp test/s.sock'"]
    );
    assert_eq!(
        sandbox.git_values("credential.http://127.0.0.1:8080.useHttpPath"),
        ["true"]
    );
    assert!(
        sandbox
            .git_values("credential.https://github.com.helper")
            .is_empty()
    );

    sandbox
        .run(&["configure", "--host", "ghe.example.com"])
        .expect_code(0);
    // Without --host, unconfigure removes ghapp from every URL in the file.
    let out = sandbox.run(&["unconfigure"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("http://127.0.0.1:8080")
            && out.stdout.contains("https://ghe.example.com"),
        "{}",
        out.stdout
    );
    let left = fs::read_to_string(sandbox.gitconfig()).unwrap();
    assert!(!left.contains("credential"), "{left}");
}

#[test]
fn default_hosts_come_from_the_config_file() {
    let sandbox = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    fs::write(&key, "not checked by configure").unwrap();
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[[app]]\nname = \"corp\"\nhost = \"ghe.corp.example\"\napp_id = 7\nprivate_key_file = {key:?}\n\n\
             [[app]]\nname = \"emu\"\nhost = \"127.0.0.1:9999\"\napi_url = \"http://127.0.0.1:9998\"\napp_id = 8\n\
             private_key_file = {key:?}\ninsecure_http = true\n"
        ),
    )
    .unwrap();
    let out = sandbox.run(&["--config", config.to_str().unwrap(), "configure"]);
    out.expect_code(0);
    for url in [
        "https://ghe.corp.example",
        "https://127.0.0.1:9999",
        "http://127.0.0.1:9999",
    ] {
        assert_eq!(
            sandbox.git_values(&format!("credential.{url}.helper")),
            ["", "ghapp"],
            "{url}\n{}",
            out.stdout
        );
    }
    assert!(
        sandbox
            .git_values("credential.https://github.com.helper")
            .is_empty()
    );

    // A broken config is an error that says so, not a silent github.com.
    fs::write(&config, "[[app]]\nname = 1\n").unwrap();
    let broken = sandbox.run(&["--config", config.to_str().unwrap(), "configure"]);
    assert_ne!(broken.code, Some(0));
    assert!(broken.stderr.contains("--host"), "{}", broken.stderr);
}

#[test]
fn local_scope_needs_a_repository() {
    let sandbox = Sandbox::new();
    let outside = sandbox.run(&["configure", "--local"]);
    assert_ne!(outside.code, Some(0), "{}", outside.stdout);
    assert!(outside.stderr.contains("git config"), "{}", outside.stderr);

    sandbox.git.run(None, &["init", "--quiet", "repo"]).unwrap();
    let repo = sandbox.git.work_dir().join("repo");
    let out = sandbox
        .ghapp()
        .args(["configure", "--local"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = fs::read_to_string(repo.join(".git/config")).unwrap();
    assert!(
        local.contains("[credential \"https://github.com\"]") && local.contains("helper = ghapp"),
        "{local}"
    );
    assert!(
        !fs::read_to_string(sandbox.gitconfig())
            .unwrap_or_default()
            .contains("credential"),
        "global config untouched"
    );
}

#[test]
fn bad_hosts_are_usage_errors() {
    let sandbox = Sandbox::new();
    for host in ["ssh://github.com", "https://github.com/acme", "git hub.com"] {
        let out = sandbox.run(&["configure", "--host", host]);
        out.expect_code(2);
        assert!(out.stderr.contains("--host"), "{}", out.stderr);
    }
    assert!(
        !sandbox.gitconfig().exists()
            || !fs::read_to_string(sandbox.gitconfig())
                .unwrap()
                .contains("credential")
    );
}

/// A sandbox whose PATH finds `git-credential-ghapp` first in `bin` (an install prefix's bin
/// directory, as install.sh, a package or `cargo install` leave it).
fn sandbox_with_helper_in(bin: &std::path::Path) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.git = sandbox.git.with_path_dir(bin);
    sandbox
}

fn install_helper(bin: &std::path::Path) -> std::path::PathBuf {
    fs::create_dir_all(bin).unwrap();
    let helper = bin.join("git-credential-ghapp");
    fs::copy(ghapp_testkit::binary("git-credential-ghapp"), &helper).unwrap();
    helper
}

/// Runs doctor for github.com only, with an empty config and no daemon.
fn doctor_git(sandbox: &Sandbox, dir: &std::path::Path) -> common::Outcome {
    let config = dir.join("config.toml");
    fs::write(&config, "").unwrap();
    sandbox.run(&[
        "--config",
        config.to_str().unwrap(),
        "--socket",
        dir.join("d.sock").to_str().unwrap(),
        "doctor",
        "--host",
        "github.com",
    ])
}

#[test]
fn an_installed_helper_is_written_by_path_and_a_stale_path_is_reported_and_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let first = install_helper(&dir.path().join("prefix/bin"));
    let sandbox = sandbox_with_helper_in(first.parent().unwrap());
    sandbox.run(&["configure"]).expect_code(0);
    let exec = |path: &std::path::Path| format!("!exec {}", path.display());
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["", exec(&first).as_str()],
        "an installed helper is written by absolute path: git runs it without a `git` in between, \
         and the shell git starts execs it rather than fork and wait"
    );
    // git runs that value: the helper answers (here: falls through silently, no daemon) through
    // `sh -c "exec PATH get"`, and the shell is gone, not waiting.
    let mut fill = sandbox
        .git
        .command()
        .args(["credential", "fill"])
        .env("GIT_TRACE", "1")
        .env("GHAPP_SOCKET", dir.path().join("absent.sock"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut fill.stdin.take().unwrap(),
        b"protocol=https\nhost=github.com\npath=acme/widgets.git\n\n",
    )
    .unwrap();
    let fill = fill.wait_with_output().unwrap();
    let trace = String::from_utf8_lossy(&fill.stderr);
    assert!(
        trace.contains(&format!("exec {} get", first.display())),
        "git runs the written value: {trace}"
    );
    let out = doctor_git(&sandbox, dir.path());
    assert!(
        out.finding("OK", "git asks ghapp for https://github.com")
            .is_some(),
        "{}",
        out.stdout
    );

    // The binary moves (reinstalled under another prefix): doctor says the path is stale and
    // how to fix it; configure then writes the new path in place of the old one.
    fs::remove_file(&first).unwrap();
    let out = doctor_git(&sandbox, dir.path());
    let Some((line, fix)) = out.finding("WARN", "does not exist") else {
        panic!("no stale-path warning:\n{}", out.stdout);
    };
    assert!(line.contains(first.to_str().unwrap()), "{line}");
    assert!(fix.contains("ghapp configure"), "{fix}");

    let second = install_helper(&dir.path().join("elsewhere/bin"));
    let mut sandbox = sandbox;
    sandbox.git = sandbox.git.with_path_dir(second.parent().unwrap());
    sandbox.run(&["configure"]).expect_code(0);
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["", exec(&second).as_str()],
        "the stale path is replaced, not kept beside the new one"
    );
    let out = doctor_git(&sandbox, dir.path());
    assert!(
        out.finding("WARN", "does not exist").is_none(),
        "{}",
        out.stdout
    );

    // The bare path earlier versions wrote is ghapp's too: configure rewrites it in place.
    let key = "credential.https://github.com.helper";
    sandbox
        .git
        .output(
            None,
            &[
                "config",
                "--global",
                "--replace-all",
                key,
                second.to_str().unwrap(),
                "^!exec ",
            ],
        )
        .unwrap();
    assert_eq!(sandbox.git_values(key), ["", second.to_str().unwrap()]);
    sandbox.run(&["configure"]).expect_code(0);
    assert_eq!(sandbox.git_values(key), ["", exec(&second).as_str()]);

    // Not executable: stale too.
    fs::set_permissions(&second, fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor_git(&sandbox, dir.path());
    assert!(
        out.finding("WARN", "is not an executable file").is_some(),
        "{}",
        out.stdout
    );

    // unconfigure recognises the path form as ghapp's and takes it out.
    sandbox.run(&["unconfigure"]).expect_code(0);
    assert!(
        sandbox
            .git_values("credential.https://github.com.helper")
            .is_empty()
    );
}

#[test]
fn a_helper_in_a_cargo_build_directory_is_written_by_short_name() {
    // The sandbox's PATH finds the workspace's own build of the helper (target/debug).
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["configure"]);
    out.expect_code(0);
    assert_eq!(
        sandbox.git_values("credential.https://github.com.helper"),
        ["", "ghapp"]
    );
    assert!(
        out.stdout.contains("short name, not a path")
            && out.stdout.contains("cargo build directory"),
        "{}",
        out.stdout
    );
}
