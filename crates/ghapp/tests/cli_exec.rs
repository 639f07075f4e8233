//! `ghapp exec`: the environment the command gets (gh's variables, GITHUB_TOKEN removed), its
//! exit status and signals passed through, and the token never in any argv.

mod common;
mod stack;

use common::Outcome;
use stack::Stack;
use std::os::unix::process::ExitStatusExt;

/// Runs `ghapp exec --repo acme/widgets -- sh -c SCRIPT` with extra environment.
fn exec_sh(stack: &Stack, script: &str, env: &[(&str, &str)]) -> Outcome {
    let sandbox = stack.sandbox();
    let mut command = sandbox.ghapp();
    command.args(["exec", "--repo", "acme/widgets", "--", "sh", "-c", script]);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("ghapp runs").into()
}

fn env_of(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_command_sees_ghs_variables_and_no_other_token() {
    let stack = Stack::start();
    let out = exec_sh(
        &stack,
        "env",
        &[
            ("GITHUB_TOKEN", "inherited-github-token"),
            ("GITHUB_ENTERPRISE_TOKEN", "inherited-enterprise-token"),
            ("GH_TOKEN", "inherited-gh-token"),
            ("KEEP_ME", "yes"),
        ],
    );
    out.expect_code(0);
    let env = env_of(&out.stdout);
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    // The emulator's host is 127.0.0.1:PORT: an Enterprise Server host to gh.
    let token = get("GH_ENTERPRISE_TOKEN").expect("GH_ENTERPRISE_TOKEN set");
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(get("GH_HOST").as_deref(), Some(stack.host.as_str()));
    assert_eq!(get("GH_REPO"), Some(format!("{}/acme/widgets", stack.host)));
    for gone in ["GITHUB_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "GH_TOKEN"] {
        assert_eq!(get(gone), None, "{gone} must be removed");
    }
    assert_eq!(
        get("KEEP_ME").as_deref(),
        Some("yes"),
        "the rest of the environment is kept"
    );
    assert_eq!(
        stack
            .emulator
            .api("GET", "/", Some(&token), &[], None)
            .unwrap()
            .status,
        200,
        "a live token"
    );
}

#[test]
fn the_token_is_in_the_environment_only_never_in_argv() {
    let stack = Stack::start();
    // The command prints its token's length and its own argv; ghapp replaced itself with sh,
    // so this process's cmdline is everything that ran under this pid.
    let out = exec_sh(
        &stack,
        r#"echo ${#GH_ENTERPRISE_TOKEN}; tr '\0' ' ' < /proc/$$/cmdline; echo"#,
        &[],
    );
    out.expect_code(0);
    let mut lines = out.stdout.lines();
    let length: usize = lines.next().unwrap().parse().unwrap();
    assert!(length >= 40, "{length}");
    let cmdline = lines.next().unwrap();
    assert!(
        cmdline.starts_with("sh -c "),
        "ghapp exec'd the command in place: {cmdline}"
    );
    let token = stack
        .sandbox()
        .run(&["token", "acme/widgets"])
        .stdout
        .trim()
        .to_string();
    assert_eq!(token.len(), length, "same cached token");
    assert!(!cmdline.contains(&token), "token in argv: {cmdline}");
    assert!(!out.stderr.contains(&token));
}

#[test]
fn exit_status_and_signals_pass_through() {
    let stack = Stack::start();
    exec_sh(&stack, "exit 7", &[]).expect_code(7);
    exec_sh(&stack, "exit 0", &[]).expect_code(0);
    let killed = exec_sh(&stack, "kill -TERM $$", &[]);
    assert_eq!(
        killed.status.signal(),
        Some(15),
        "the command's death by signal is ghapp's: {killed:?}"
    );

    let sandbox = stack.sandbox();
    let missing = sandbox.run(&[
        "exec",
        "--repo",
        "acme/widgets",
        "--",
        "/nonexistent/command",
    ]);
    missing.expect_code(127);
    assert!(
        missing.stderr.contains("/nonexistent/command"),
        "{}",
        missing.stderr
    );
    let plain_file = sandbox.home().join("not-executable");
    std::fs::write(&plain_file, "echo should not run\n").unwrap();
    std::fs::set_permissions(
        &plain_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let not_executable = sandbox.run(&[
        "exec",
        "--repo",
        "acme/widgets",
        "--",
        plain_file.to_str().unwrap(),
    ]);
    not_executable.expect_code(126);
    assert!(!not_executable.stdout.contains("should not run"));
}

#[test]
fn failures_before_the_command_runs() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    let marker = sandbox.home().join("ran");
    let touch = format!("touch {}", marker.display());

    let not_installed = sandbox.run(&["exec", "--repo", "ghost/repo", "--", "sh", "-c", &touch]);
    not_installed.expect_code(4);
    assert!(
        not_installed.stderr.contains("not installed"),
        "{}",
        not_installed.stderr
    );
    let no_repo = sandbox.run(&["exec", "--repo", "acme", "--", "sh", "-c", &touch]);
    no_repo.expect_code(2);
    assert!(no_repo.stderr.contains("OWNER/REPO"), "{}", no_repo.stderr);
    let down = sandbox
        .ghapp()
        .env("GHAPP_SOCKET", "/nonexistent/s.sock")
        .args(["exec", "--repo", "acme/widgets", "--", "sh", "-c", &touch])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(3));
    assert!(!marker.exists(), "the command must not run without a token");
}

#[test]
fn github_com_gets_gh_token_and_owner_repo() {
    // The host rules themselves are unit-tested; here, end to end, a github.com App served by
    // the emulator (api_url points at it).
    let stack = Stack::start_with_host(stack::FIXTURE, stack::CEILING, Some("github.com"));
    let out = exec_sh(&stack, "env", &[]);
    out.expect_code(0);
    let env = env_of(&out.stdout);
    let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert!(get("GH_TOKEN").is_some_and(|t| t.starts_with("ghs_")));
    assert_eq!(get("GH_ENTERPRISE_TOKEN"), None);
    assert_eq!(get("GH_HOST").as_deref(), Some("github.com"));
    assert_eq!(get("GH_REPO").as_deref(), Some("acme/widgets"));
}
