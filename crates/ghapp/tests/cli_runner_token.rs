//! `ghapp runner-token` against the emulator: registration and removal tokens for an org whose
//! installation has `organization_self_hosted_runners: write`, the runner's config.sh line,
//! JSON with the expiry, and the refusal for an org without the permission; registration and
//! removal tokens for one repository of a user account (`ghapp runner-token OWNER/REPO`).

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

/// A user account whose installation may administer its repositories: runners per repository.
const USER_FIXTURE: &str = r#"
token_ttl_secs = 3600

[[apps]]
id = 1
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 200
app = 1
account = "octo"
account_type = "User"
repositories = ["tools"]
permissions = { contents = "write", metadata = "read", administration = "write" }

[[repositories]]
full_name = "octo/tools"
"#;

#[test]
fn repository_runner_tokens_for_a_user_account() {
    let stack = Stack::start_with(USER_FIXTURE, "");
    let sandbox = stack.sandbox();

    let line = sandbox.run(&["runner-token", "octo/tools", "--print-config-command"]);
    if line.code != Some(0) {
        eprintln!("{:#}", stack.emulator.stats().unwrap());
        eprintln!("{}", stack.daemon.log());
    }
    line.expect_code(0);
    let expected_url = format!("http://{}/octo/tools", stack.host);
    let words: Vec<&str> = line.stdout.split_whitespace().collect();
    assert_eq!(
        words[..3],
        ["./config.sh", "--url", expected_url.as_str()],
        "{}",
        line.stdout
    );

    let json = sandbox.run(&["runner-token", "octo/tools", "--remove", "--json"]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["kind"], "remove");
    assert_eq!(value["org"], "octo");
    assert_eq!(value["url"], expected_url.as_str());
    let stats = stack.emulator.stats().expect("emulator stats");
    assert_eq!(
        stats["requests"]["POST /repos/{owner}/{repo}/actions/runners/registration-token"], 1,
        "{stats}"
    );

    // The organization form for a user account: GitHub has no org runners there.
    let org = sandbox.run(&["runner-token", "--org", "octo"]);
    assert_ne!(org.code, Some(0));
    assert!(org.stderr.contains("OWNER/REPO"), "{}", org.stderr);

    // One target, well formed.
    sandbox.run(&["runner-token"]).expect_code(2);
    sandbox
        .run(&["runner-token", "octo/tools", "--org", "octo"])
        .expect_code(2);
    let bare = sandbox.run(&["runner-token", "octo"]);
    bare.expect_code(2);
    assert!(bare.stderr.contains("--org"), "{}", bare.stderr);
}
