//! `ghapp runner-token` against the emulator: registration and removal tokens for an org whose
//! installation has `organization_self_hosted_runners: write`, the runner's config.sh line,
//! JSON with the expiry, and the refusal for an org without the permission.

mod common;
mod stack;

use stack::Stack;

#[test]
fn registration_and_removal_tokens() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();

    let out = sandbox.run(&["runner-token", "--org", "acme"]);
    out.expect_code(0);
    let token = out.stdout.strip_suffix('\n').expect("one line");
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{token:?}"
    );

    let line = sandbox.run(&["runner-token", "--org", "acme", "--print-config-command"]);
    line.expect_code(0);
    // The test App is insecure_http (the emulator serves plain http), so its URL is http.
    let expected_url = format!("http://{}/acme", stack.host);
    let words: Vec<&str> = line.stdout.split_whitespace().collect();
    assert_eq!(
        words[..3],
        ["./config.sh", "--url", expected_url.as_str()],
        "{}",
        line.stdout
    );
    assert_eq!(words[3], "--token");
    assert_eq!(words.len(), 5);

    let json = sandbox.run(&["runner-token", "--org", "acme", "--json"]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["kind"], "registration");
    assert_eq!(value["org"], "acme");
    assert_eq!(value["url"], expected_url.as_str());
    let remaining = value["remaining_secs"].as_u64().expect("remaining_secs");
    assert!(
        (3000..=3600).contains(&remaining),
        "expires in about an hour: {remaining}"
    );

    let remove = sandbox.run(&["runner-token", "--org", "acme", "--remove", "--json"]);
    remove.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&remove.stdout).unwrap();
    assert_eq!(value["kind"], "remove");
    let remove_line = sandbox.run(&[
        "runner-token",
        "--org",
        "acme",
        "--remove",
        "--print-config-command",
    ]);
    remove_line.expect_code(0);
    assert!(
        remove_line
            .stdout
            .starts_with("./config.sh remove --token "),
        "{}",
        remove_line.stdout
    );
}

#[test]
fn refused_without_the_permission_or_installation() {
    let stack = Stack::start();
    let sandbox = stack.sandbox();
    let out = sandbox.run(&["runner-token", "--org", "tools-org"]);
    out.expect_code(4);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("organization_self_hosted_runners"),
        "{}",
        out.stderr
    );

    let ghost = sandbox.run(&["runner-token", "--org", "ghost"]);
    ghost.expect_code(4);
    assert!(ghost.stderr.contains("ghost"), "{}", ghost.stderr);

    let bad = sandbox.run(&["runner-token", "--org", "not/an/org"]);
    bad.expect_code(2);
}
