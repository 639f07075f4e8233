//! `$GHAPP_ID_TOKEN_FILE` for the CLI: an unreadable or empty file is a clear error naming the
//! file and the variable, nothing is sent, and the token's content never appears; and
//! `ghapp client-key new` prints a key and the matching `[[client]]` digest.

mod common;

use common::Sandbox;

#[test]
fn an_unreadable_id_token_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    // The socket does not exist either: the token file is read first, so its error wins.
    let sandbox = Sandbox::new()
        .env("GHAPP_SOCKET", dir.path().join("none.sock"))
        .env("GHAPP_ID_TOKEN_FILE", &missing);
    for command in [
        &["token", "acme/widgets"][..],
        &["exec", "--repo", "acme/widgets", "--", "true"],
    ] {
        let out = sandbox.run(command);
        out.expect_code(2);
        assert!(out.stdout.is_empty());
        for needle in [
            missing.to_str().unwrap(),
            "GHAPP_ID_TOKEN_FILE",
            "nothing was sent",
        ] {
            assert!(
                out.stderr.contains(needle),
                "{command:?}: missing {needle:?} in {}",
                out.stderr
            );
        }
    }
    let spaced = dir.path().join("two-tokens");
    std::fs::write(&spaced, "secret-one secret-two").unwrap();
    let out = Sandbox::new()
        .env("GHAPP_SOCKET", dir.path().join("none.sock"))
        .env("GHAPP_ID_TOKEN_FILE", &spaced)
        .run(&["token", "acme"]);
    out.expect_code(2);
    assert!(!out.stderr.contains("secret-one"), "{}", out.stderr);
}

#[test]
fn client_key_new_prints_a_key_and_its_digest() {
    let out = Sandbox::new().run(&["client-key", "new", "ci-bot"]);
    out.expect_code(0);
    let key = out
        .stdout
        .lines()
        .find(|line| line.starts_with("ghk_"))
        .expect("a key line");
    assert_eq!(key.len(), 4 + 43, "ghk_ and 32 bytes of base64url");
    let digest = ghapp_protocol::client_key::digest_hex(key);
    assert!(
        out.stdout.contains(&format!("key_sha256 = \"{digest}\"")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("name = \"ci-bot\""));
    let again = Sandbox::new().run(&["client-key", "new", "ci-bot"]);
    assert!(!again.stdout.contains(key), "a fresh key every time");
    Sandbox::new()
        .run(&["client-key", "new", "two words"])
        .expect_code(2);
}
