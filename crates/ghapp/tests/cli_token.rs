//! `ghapp token` against the daemon and the emulator: the bare token and `--json`, narrowing,
//! the daemon's refusals with their exit codes, and a daemon that is not there.

mod common;
mod stack;

use common::Sandbox;
use stack::Stack;

/// True when the emulator accepts `token` (GitHub's API root answers 200 for a live token).
fn token_works(stack: &Stack, token: &str) -> bool {
    stack
        .emulator
        .api("GET", "/", Some(token), &[], None)
        .expect("the emulator answers")
        .status
        == 200
}

#[test]
fn bare_token_and_json() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();

    let out = sandbox.run(&["token", "--host", &stack.host, "acme/widgets"]);
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 1, "exactly one line: {:?}", out.stdout);
    let token = lines[0].strip_suffix('\n').expect("ends with a newline");
    assert!(token.starts_with("ghs_"), "{token}");
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(token_works(&stack, token));
    assert!(
        !token_works(&stack, "ghs_not_a_token"),
        "the check itself can fail"
    );

    let json = sandbox.run(&["token", "--host", &stack.host, "acme/widgets", "--json"]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["token"], token, "the cached token is served again");
    assert_eq!(value["installation_id"], 100);
    assert_eq!(value["app"], "test-app");
    assert_eq!(value["host"], stack.host.as_str());
    assert_eq!(value["owner"], "acme");
    assert_eq!(value["repositories"], serde_json::json!(["widgets"]));
    assert_eq!(value["permissions"]["contents"], "write");
    let remaining = value["remaining_secs"].as_u64().expect("remaining_secs");
    assert!((3000..=3600).contains(&remaining), "{remaining}");
    assert!(
        value["expires_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
}

#[test]
fn narrowing_and_the_default_host() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    // No --host: the config's only App host is used.
    let out = sandbox.run(&[
        "token",
        "acme/gadgets",
        "-p",
        "contents=read",
        "--permission",
        "metadata:read",
        "--json",
    ]);
    out.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(value["repositories"], serde_json::json!(["gadgets"]));
    assert_eq!(
        value["permissions"],
        serde_json::json!({"contents": "read", "metadata": "read"})
    );
    assert!(token_works(&stack, value["token"].as_str().unwrap()));

    // Owner only: an installation-wide token.
    let out = sandbox.run(&["token", "acme", "--json"]);
    out.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        value["repositories"],
        serde_json::json!([]),
        "{}",
        out.stdout
    );
}

#[test]
fn refusals_have_their_exit_code_and_the_daemons_message() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();

    let beyond = sandbox.run(&["token", "acme/widgets", "-p", "issues=write"]);
    beyond.expect_code(4);
    assert!(beyond.stdout.is_empty());
    assert!(beyond.stderr.contains("issues"), "{}", beyond.stderr);
    assert!(beyond.stderr.contains("422"), "{}", beyond.stderr);

    let not_installed = sandbox.run(&["token", "ghost/repo"]);
    not_installed.expect_code(4);
    assert!(
        not_installed.stderr.contains("not installed"),
        "{}",
        not_installed.stderr
    );
    assert!(
        not_installed.stderr.contains("ghost"),
        "{}",
        not_installed.stderr
    );

    let no_app = sandbox.run(&["token", "--host", "github.com", "acme"]);
    no_app.expect_code(4);
    assert!(no_app.stderr.contains("github.com"), "{}", no_app.stderr);

    // GitHub failing with nothing cached: 503 → exit 5 ("try again later").
    stack
        .emulator
        .fault(serde_json::json!({"kind": "status", "route": "POST *", "status": 503}))
        .unwrap();
    let down = sandbox.run(&["token", "acme/gadgets", "-p", "issues=read"]);
    down.expect_code(5);
    assert!(down.stderr.contains("503"), "{}", down.stderr);
}

#[test]
fn daemon_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let sandbox = Sandbox::new().env("GHAPP_SOCKET", &socket);
    let out = sandbox.run(&["token", "acme/widgets"]);
    out.expect_code(3);
    assert!(out.stdout.is_empty());
    for needle in [
        socket.to_str().unwrap(),
        "not reachable",
        "environment",
        "ghapp daemon",
        "ghapp doctor",
    ] {
        assert!(
            out.stderr.contains(needle),
            "missing {needle:?} in {}",
            out.stderr
        );
    }
    // The flag beats the environment, and the message says which rule chose the socket.
    let flag = sandbox.run(&["--socket", "/nonexistent/flag.sock", "token", "acme"]);
    flag.expect_code(3);
    assert!(
        flag.stderr.contains("/nonexistent/flag.sock") && flag.stderr.contains("flag"),
        "{}",
        flag.stderr
    );
}

#[test]
fn usage_errors_are_caught_before_asking_the_daemon() {
    // A dead socket: reaching the daemon would be exit 3, so exit 2 proves nothing was asked.
    let sandbox = Sandbox::new().env("GHAPP_SOCKET", "/nonexistent/ghapp.sock");
    for (args, needle) in [
        (vec!["token", "acme/widgets/extra"], "repository"),
        (vec!["token", "ac me"], "owner"),
        (
            vec!["token", "acme", "-p", "contents=owner"],
            "--permission",
        ),
        (vec!["token", "acme", "-p", "contents"], "--permission"),
        (vec!["token", "acme", "--min-ttl", "soon"], "--min-ttl"),
        (
            vec!["token", "acme", "--host", "https://github.com/acme"],
            "--host",
        ),
        (vec!["token"], "OWNER"),
    ] {
        let out = sandbox.run(&args);
        out.expect_code(2);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}
