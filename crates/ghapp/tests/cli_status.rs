//! `ghapp status`: the table shows what the daemon holds by fingerprint — the minted tokens'
//! bytes never appear — and `--json` is the daemon's own JSON.

mod common;
mod stack;

use common::Sandbox;
use ghapp_protocol::secret::fingerprint;
use stack::Stack;

#[test]
fn table_shows_fingerprints_scopes_and_ttl_never_tokens() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    let widgets = sandbox
        .run(&["token", "acme/widgets"])
        .stdout
        .trim()
        .to_string();
    let gadgets = sandbox
        .run(&["token", "acme/gadgets", "-p", "contents=read"])
        .stdout
        .trim()
        .to_string();
    assert!(widgets.starts_with("ghs_") && gadgets.starts_with("ghs_"));

    let out = sandbox.run(&["status"]);
    out.expect_code(0);
    let text = &out.stdout;
    for token in [&widgets, &gadgets] {
        assert!(
            !text.contains(token.as_str()),
            "token bytes in status:\n{text}"
        );
        assert!(
            text.contains(&fingerprint(token)),
            "fingerprint of a served token missing:\n{text}"
        );
    }
    for expected in [
        "state: healthy",
        "test-app",
        stack.host.as_str(),
        "acme/widgets",
        "acme/gadgets",
        "contents:read",
        "Counters",
        "59m",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    assert!(text.contains("100"), "installation id:\n{text}");

    let json = sandbox.run(&["status", "--json"]);
    json.expect_code(0);
    for token in [&widgets, &gadgets] {
        assert!(!json.stdout.contains(token.as_str()));
    }
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let tokens = value["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 2, "{}", json.stdout);
    assert!(
        tokens
            .iter()
            .any(|t| t["fingerprint"] == fingerprint(&widgets))
    );
    assert_eq!(value["apps"][0]["name"], "test-app");
}

#[test]
fn degraded_state_is_shown() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    sandbox.run(&["token", "acme/widgets"]).expect_code(0);
    // GitHub fails every mint: a request needing a new token fails, and the daemon says so.
    stack
        .emulator
        .fault(serde_json::json!({"kind": "status", "route": "POST *", "status": 503}))
        .unwrap();
    let failed = sandbox.run(&["token", "acme/gadgets"]);
    failed.expect_code(5);
    let out = sandbox.run(&["status"]);
    out.expect_code(0);
    assert!(out.stdout.contains("DEGRADED"), "{}", out.stdout);
}

#[test]
fn daemon_not_running() {
    let sandbox = Sandbox::new().env("GHAPP_SOCKET", "/nonexistent/ghapp.sock");
    for args in [vec!["status"], vec!["status", "--json"]] {
        let out = sandbox.run(&args);
        out.expect_code(3);
        assert!(out.stdout.is_empty());
        assert!(
            out.stderr.contains("/nonexistent/ghapp.sock"),
            "{}",
            out.stderr
        );
    }
}
