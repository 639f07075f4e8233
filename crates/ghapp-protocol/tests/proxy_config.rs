//! `[proxy]` in the config file: what is accepted, and the errors (with the key's line) for
//! what is not.

use ghapp_protocol::config::Config;
use std::path::Path;

const APP: &str =
    "[[app]]\nname = \"a\"\nhost = \"github.com\"\napp_id = 1\nprivate_key_file = \"/k.pem\"\n";
const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn parse(proxy: &str) -> Result<Config, String> {
    Config::parse(&format!("{APP}\n{proxy}"), Path::new("test.toml")).map_err(|e| e.to_string())
}

#[test]
fn a_full_proxy_table_is_accepted() {
    let config = parse(&format!(
        "[proxy]\nlisten = \"127.0.0.1:8081\"\ndefault_installation = \"acme\"\ncache_ttl = \"30m\"\ncache_fresh_for = \"5s\"\ncache_bytes = 1048576\n\n[[proxy.client]]\nname = \"ci\"\nkey_sha256 = \"{DIGEST}\"\nscopes = [{{ method = \"GET\", path = \"^/repos/acme/\" }}]\n\n[[proxy.credential]]\ntoken_env = \"GITHUB_PAT_CI\"\n"
    ))
    .expect("valid");
    let proxy = config.proxy.expect("proxy");
    assert_eq!(proxy.clients[0].scopes[0].method, "GET");
    assert_eq!(proxy.cache_bytes, 1_048_576);
    assert_eq!(proxy.cache_fresh_for.as_secs(), 5);
    assert_eq!(proxy.credentials[0].token_env, "GITHUB_PAT_CI");
}

#[test]
fn mistakes_are_refused_with_their_key() {
    for (proxy, expected) in [
        ("listen = \"0.0.0.0:8081\"", "not a loopback address"),
        ("listen = \"nowhere\"", "is not ADDR:PORT"),
        (
            "listen = \"127.0.0.1:1\"\ntls_cert_file = \"c.pem\"",
            "set both tls_cert_file and tls_key_file",
        ),
        (
            "listen = \"127.0.0.1:1\"\nupstream_host = \"ghe.example\"",
            "is not the host of any [[app]]",
        ),
        (
            "listen = \"127.0.0.1:1\"\ncache_ttl = \"0s\"",
            "proxy.cache_ttl",
        ),
        (
            "listen = \"127.0.0.1:1\"\ncache_bytes = 0",
            "proxy.cache_bytes",
        ),
        (
            "listen = \"127.0.0.1:1\"\ncache_fresh_for = \"2h\"",
            "must not exceed cache_ttl",
        ),
        (
            "listen = \"127.0.0.1:1\"\n[[proxy.client]]\nname = \"x\"\nkey_sha256 = \"secret-key\"",
            "64 hex digits",
        ),
        (
            "listen = \"127.0.0.1:1\"\n[[proxy.client]]\nname = \"x\"\nkey_sha256 = \"DIGEST\"\nscopes = [{ method = \"G T\", path = \"x\" }]",
            "is not an HTTP method",
        ),
        (
            "listen = \"127.0.0.1:1\"\n[[proxy.client]]\nname = \"x\"\nkey_sha256 = \"DIGEST\"\n[[proxy.client]]\nname = \"x\"\nkey_sha256 = \"DIGEST\"",
            "used by an earlier [[proxy.client]]",
        ),
        ("listen = \"127.0.0.1:1\"\nunknown = 1", "unknown"),
    ] {
        let text = format!("[proxy]\n{}", proxy.replace("DIGEST", DIGEST));
        let error = parse(&text).expect_err(&text);
        assert!(error.contains(expected), "{text}\n→ {error}");
    }
    // TLS lifts the loopback rule.
    parse(
        "[proxy]\nlisten = \"0.0.0.0:8443\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"",
    )
    .expect("TLS on any address");
}

#[test]
fn policy_proxy_scopes_are_for_credential_entries() {
    let client = format!("[[client]]\nname = \"deployer\"\nkey_sha256 = \"{DIGEST}\"\n\n");
    let config = parse(&format!(
        "{client}[[policy]]\nclient = \"deployer\"\nowners = [\"acme\"]\nproxy_scopes = [{{ method = \"GET\", path = \"^/repos/\" }}]\n"
    ))
    .expect("valid");
    let scopes = config.policies().1[0].proxy_scopes.clone().expect("scopes");
    assert_eq!(scopes[0].path, "^/repos/");
    for (entry, expected) in [
        (
            "[[policy]]\nuid = 1000\nproxy_scopes = [{ method = \"GET\", path = \"^/\" }]",
            "proxy_scopes applies to client and issuer entries",
        ),
        (
            "[[policy]]\nclient = \"deployer\"\nproxy_scopes = []",
            "proxy_scopes is empty",
        ),
        (
            "[[policy]]\nclient = \"deployer\"\nproxy_scopes = [{ method = \"G T\", path = \"^/\" }]",
            "is not an HTTP method",
        ),
    ] {
        let error = parse(&format!("{client}{entry}\n")).expect_err(entry);
        assert!(error.contains(expected), "{entry}: {error}");
        assert!(error.contains("proxy_scopes"), "{error}");
    }
}
