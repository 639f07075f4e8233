//! The proxy beyond one daemon and one registry (issue 17): two daemons whose proxies share the
//! `[cache]` Redis (sealed: Redis holds no body, token, key or name), which keep serving when
//! Redis dies and rejoin it when it is back; callers admitted by the daemon's identity model
//! (`[[client]]` keys and ID tokens of the emulator's OIDC issuer, judged by `[[policy]]
//! proxy_scopes`), refused before GitHub and the cache otherwise; and `[[proxy.client]]`s
//! reloaded on SIGHUP.

use ghapp_testkit::daemon::{DaemonProcess, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::redis::Redis;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

const CI_KEY: &str = "ci-key-shared-0123456789";
const DEPLOYER_KEY: &str = "ghk_deployer-0123456789";
const NOPROXY_KEY: &str = "ghk_noproxy-0123456789";
const LATE_KEY: &str = "late-key-0123456789";

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The basic fixture with `pull_requests: read` (for `/pulls`) and rate limits enforced.
fn fixture() -> String {
    let basic = basic_fixture(3600).replace(
        "permissions = { contents = \"write\", metadata = \"read\" }",
        "permissions = { contents = \"write\", metadata = \"read\", pull_requests = \"read\" }",
    );
    format!("{basic}\n[rate_limit]\nenforce = true\n")
}

/// `[proxy]` on a free loopback port with the client `ci` (every scope).
fn proxy_table() -> String {
    format!(
        "\n[proxy]\nlisten = \"127.0.0.1:0\"\ndefault_installation = \"acme\"\n\n[[proxy.client]]\nname = \"ci\"\nkey_sha256 = \"{}\"\n",
        digest(CI_KEY)
    )
}

/// The proxy's base URL, from the daemon's log.
fn proxy_base(daemon: &DaemonProcess) -> String {
    let log = daemon.log();
    log.lines()
        .find_map(|line| line.split("ghapp proxy listening on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no proxy address in the log:\n{log}"))
        .to_string()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    cache: Option<String>,
    body: String,
}

/// `method base+path` with `Authorization: authorization`.
fn send(base: &str, method: &str, path: &str, authorization: Option<&str>) -> Answer {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut request = client
        .request(method.parse().expect("method"), format!("{base}{path}"))
        .header("User-Agent", "ghapp-proxy-test");
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    if method == "POST" {
        request = request.body("{\"query\":\"{ viewer { login } }\"}");
    }
    let response = request.send().expect("request through the proxy");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("x-ghapp-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Answer {
        status,
        cache,
        body: response.text().expect("body"),
    }
}

fn used(emulator: &EmulatorProcess, bucket: &str) -> u64 {
    emulator.rate_limit_used(bucket).expect("admin")
}

/// Requests the emulator's API served, every route together.
fn github_requests(emulator: &EmulatorProcess) -> u64 {
    let stats = emulator.stats().expect("stats");
    stats["requests"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// 32 bytes from the kernel, 0600, as `ghapp cache-key new` writes them.
fn write_cache_key(path: &Path) {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("random");
    std::fs::write(path, key).expect("key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn two_daemons_share_sealed_answers_through_redis_and_survive_its_death() {
    if !Redis::available() {
        return;
    }
    let mut redis = Redis::start().expect("redis");
    let emulator = EmulatorProcess::start(&fixture()).expect("emulator");
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("cache.key");
    write_cache_key(&key_file);
    let config = format!(
        "{}\n[cache]\nredis_url = {:?}\nencryption_key_file = {:?}\n{}",
        config_for(&emulator, ""),
        redis.url(),
        key_file.display().to_string(),
        proxy_table()
    );
    let a = DaemonProcess::start(&config).expect("daemon A");
    let b = DaemonProcess::start(&config).expect("daemon B");
    let (base_a, base_b) = (proxy_base(&a), proxy_base(&b));
    assert!(
        a.log().contains("answers shared through redis://"),
        "{}",
        a.log()
    );
    let auth = format!("token {CI_KEY}");
    let path = "/api/v3/repos/acme/widgets";

    let before = used(&emulator, "installation:100");
    let first = send(&base_a, "GET", path, Some(&auth));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.cache.as_deref(), Some("miss"));
    let second = send(&base_b, "GET", path, Some(&auth));
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        matches!(second.cache.as_deref(), Some("hit" | "revalidated")),
        "B served A's answer from Redis: {:?}",
        second.cache
    );
    let body_a: Value = serde_json::from_str(&first.body).expect("json");
    let body_b: Value = serde_json::from_str(&second.body).expect("json");
    assert_eq!(body_a["full_name"], body_b["full_name"]);
    assert_eq!(
        used(&emulator, "installation:100") - before,
        1,
        "one full GitHub answer for both daemons (B's revalidation was a free 304)"
    );

    // Redis holds sealed values under names that say nothing.
    let dump = redis.dump().expect("dump");
    let answers: Vec<_> = dump
        .iter()
        .filter(|(name, _)| name.starts_with("ghapp:proxy:"))
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "one answer stored: {:?}",
        dump.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let secrets = [
        CI_KEY,
        "acme",
        "widgets",
        "full_name",
        "repos/",
        "ghs_",
        "api/v3",
        "127.0.0.1",
    ];
    for (name, value) in &dump {
        for needle in secrets {
            assert!(!name.contains(needle), "the name {name} holds {needle}");
            assert!(
                !value.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the value of {name} holds {needle}"
            );
        }
    }

    // Redis killed: both daemons go on at once, each from its own cache and alone.
    redis.kill();
    for round in 0..5 {
        for base in [&base_a, &base_b] {
            let answer = send(base, "GET", path, Some(&auth));
            assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
            assert_eq!(answer.cache.as_deref(), Some("revalidated"));
        }
        let pulls = send(
            &base_b,
            "GET",
            "/api/v3/repos/acme/widgets/pulls",
            Some(&auth),
        );
        assert_eq!(pulls.status, 200, "round {round}: {}", pulls.body);
    }
    for daemon in [&a, &b] {
        let log = daemon.log();
        assert_eq!(
            log.matches("the API proxy's shared cache is unreachable")
                .count(),
            1,
            "logged once:\n{log}"
        );
    }

    // Redis back (empty): the proxies rejoin by themselves and share again.
    redis.spawn().expect("redis again");
    a.wait_for_log(
        "the API proxy's shared cache answers again",
        Duration::from_secs(10),
    )
    .expect("A rejoins");
    let readme = "/api/v3/repos/acme/widgets/contents/README.md";
    assert_eq!(
        send(&base_a, "GET", readme, Some(&auth)).cache.as_deref(),
        Some("miss")
    );
    b.wait_for_log(
        "the API proxy's shared cache answers again",
        Duration::from_secs(10),
    )
    .expect("B rejoins");
    let shared = send(&base_b, "GET", readme, Some(&auth));
    assert_eq!(shared.status, 200);
    assert_eq!(
        shared.cache.as_deref(),
        Some("revalidated"),
        "B took A's stored answer"
    );
    for daemon in [&a, &b] {
        assert!(
            !daemon.log().contains(CI_KEY),
            "a client key reached the log"
        );
    }
}

/// Two `[[client]]`s (one with proxy scopes, one without), the emulator's OIDC issuer, and
/// `[[policy]]` entries granting the proxy.
fn policy_config(emulator: &EmulatorProcess) -> String {
    let issuer = emulator.oidc_issuer();
    format!(
        "{base}\n[[client]]\nname = \"deployer\"\nkey_sha256 = \"{deployer}\"\n\n[[client]]\nname = \"noproxy\"\nkey_sha256 = \"{noproxy}\"\n\n[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[policy]]\nclient = \"deployer\"\nowners = [\"acme\"]\nproxy_scopes = [{{ method = \"GET\", path = \"^/repos/\" }}]\n\n[[policy]]\nclient = \"noproxy\"\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"repo:acme/widgets:*\"\nrepos = [\"acme/widgets\"]\nproxy_scopes = [{{ method = \"*\", path = \"^/\" }}]\n{proxy}",
        base = config_for(emulator, ""),
        deployer = digest(DEPLOYER_KEY),
        noproxy = digest(NOPROXY_KEY),
        proxy = proxy_table(),
    )
}

#[test]
fn policy_identities_use_the_proxy_within_their_grant() {
    let emulator = EmulatorProcess::start(&fixture()).expect("emulator");
    let config = policy_config(&emulator);
    let daemon = DaemonProcess::start(&config).expect("daemon");
    let base = proxy_base(&daemon);
    let deployer = format!("token {DEPLOYER_KEY}");
    let id_token = emulator
        .github_actions_id_token("acme/widgets", "refs/heads/main", "ghapp")
        .expect("ID token");
    let bearer = format!("Bearer {id_token}");

    // Granted: a [[client]] key, and an ID token (as Bearer, and as `token` as PyGithub and gh
    // send every token).
    let granted = send(&base, "GET", "/api/v3/repos/acme/widgets", Some(&deployer));
    assert_eq!(granted.status, 200, "{}", granted.body);
    let by_token = send(&base, "GET", "/api/v3/repos/acme/widgets", Some(&bearer));
    assert_eq!(by_token.status, 200, "{}", by_token.body);
    assert_eq!(by_token.cache.as_deref(), Some("revalidated"));
    let as_token = send(
        &base,
        "GET",
        "/api/v3/repos/acme/widgets/pulls",
        Some(&format!("token {id_token}")),
    );
    assert_eq!(as_token.status, 200, "{}", as_token.body);
    // The ci client fills the cache with what the others may not see.
    let ci = format!("token {CI_KEY}");
    assert_eq!(
        send(&base, "GET", "/api/v3/repos/acme/gadgets", Some(&ci)).status,
        200
    );
    assert_eq!(
        send(&base, "GET", "/api/v3/rate_limit", Some(&ci)).status,
        200
    );

    // Refused before GitHub and the cache.
    let before = github_requests(&emulator);
    let hostile = emulator
        .hostile_id_token(
            json!({"preset": {"kind": "github_actions", "repository": "acme/widgets"}, "aud": "ghapp"}),
            "expired",
        )
        .expect("expired token");
    let other_repo = emulator
        .github_actions_id_token("acme/gadgets", "refs/heads/main", "ghapp")
        .expect("ID token");
    let cases: Vec<(&str, &str, String, u16)> = vec![
        // Outside the entry's repos, though cached.
        ("GET", "/api/v3/repos/acme/gadgets", bearer.clone(), 403),
        // Names no account, and the entry is limited to repos.
        ("GET", "/api/v3/rate_limit", bearer.clone(), 403),
        ("POST", "/api/graphql", bearer.clone(), 403),
        // Outside the client's proxy_scopes (GET ^/repos/) and owners.
        ("POST", "/api/graphql", deployer.clone(), 403),
        ("GET", "/api/v3/orgs/acme", deployer.clone(), 403),
        ("GET", "/api/v3/repos/other/thing", deployer.clone(), 403),
        // An entry without proxy_scopes grants no proxy use.
        (
            "GET",
            "/api/v3/repos/acme/widgets",
            format!("token {NOPROXY_KEY}"),
            403,
        ),
        // No entry selects this token's subject.
        (
            "GET",
            "/api/v3/repos/acme/gadgets",
            format!("Bearer {other_repo}"),
            403,
        ),
        // Invalid credentials.
        (
            "GET",
            "/api/v3/repos/acme/widgets",
            format!("Bearer {hostile}"),
            401,
        ),
        (
            "GET",
            "/api/v3/repos/acme/widgets",
            "token ghk_unknown".to_string(),
            401,
        ),
    ];
    for (method, path, authorization, status) in &cases {
        let answer = send(&base, method, path, Some(authorization));
        assert_eq!(answer.status, *status, "{method} {path}: {}", answer.body);
        assert_eq!(answer.cache.as_deref(), Some("bypass"));
        assert!(!answer.body.contains("\"full_name\""), "{}", answer.body);
    }
    assert_eq!(
        github_requests(&emulator),
        before,
        "refused requests never reached GitHub"
    );

    let metrics = send(&base, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("ghapp_proxy_requests_total{client=\"client:deployer\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ghapp_proxy_requests_total{client=\"policy:3\",status=\"200\"} 2"),
        "{metrics}"
    );
    // The two invalid credentials were refused as /v1/token refuses them: logged with the
    // reason (never the credential) and counted.
    let log = daemon.log();
    assert_eq!(
        log.matches("proxy: refused an invalid credential").count(),
        2,
        "{log}"
    );
    let (status, daemon_metrics) = daemon
        .get(ghapp_protocol::api::METRICS_PATH)
        .expect("daemon metrics");
    assert_eq!(status, 200, "{daemon_metrics}");
    assert!(
        daemon_metrics.lines().any(
            |line| line.starts_with("ghapp_credentials_refused_total ") && line.ends_with(" 2")
        ),
        "{daemon_metrics}"
    );
    for secret in [
        DEPLOYER_KEY,
        NOPROXY_KEY,
        id_token.as_str(),
        hostile.as_str(),
        "ghk_unknown",
    ] {
        assert!(!log.contains(secret), "a credential reached the log");
    }
}

#[test]
fn proxy_clients_are_reloaded_on_sighup() {
    let emulator = EmulatorProcess::start(&fixture()).expect("emulator");
    let config = format!("{}{}", config_for(&emulator, ""), proxy_table());
    let daemon = DaemonProcess::start(&config).expect("daemon");
    let base = proxy_base(&daemon);
    let late = format!("token {LATE_KEY}");
    let path = "/api/v3/repos/acme/widgets";
    assert_eq!(send(&base, "GET", path, Some(&late)).status, 401);

    // A bad scope: the registry in force stays.
    daemon
        .write_config(&format!(
            "{config}\n[[proxy.client]]\nname = \"late\"\nkey_sha256 = \"{}\"\nscopes = [{{ method = \"GET\", path = \"(\" }}]\n",
            digest(LATE_KEY)
        ))
        .expect("config");
    daemon.reload().expect("SIGHUP");
    daemon
        .wait_for_log(
            "keeping the previous [[proxy.client]] entries",
            Duration::from_secs(10),
        )
        .expect("refused reload");
    assert_eq!(send(&base, "GET", path, Some(&late)).status, 401);
    assert_eq!(
        send(&base, "GET", path, Some(&format!("token {CI_KEY}"))).status,
        200
    );

    daemon
        .write_config(&format!(
            "{config}\n[[proxy.client]]\nname = \"late\"\nkey_sha256 = \"{}\"\nscopes = [{{ method = \"GET\", path = \"^/repos/acme/widgets$\" }}]\n",
            digest(LATE_KEY)
        ))
        .expect("config");
    daemon.reload().expect("SIGHUP");
    daemon
        .wait_for_log(
            "proxy: 2 [[proxy.client]] entries in force",
            Duration::from_secs(10),
        )
        .expect("reloaded");
    let answer = send(&base, "GET", path, Some(&late));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        send(&base, "GET", "/api/v3/repos/acme/gadgets", Some(&late)).status,
        403
    );
}

/// Two daemons share one `[cache]` Redis but serve different Apps: App 1's installation on
/// acme covers acme/gadgets, App 2's does not. B must not serve A's sealed answer, even as a
/// `hit` within `cache_fresh_for`.
#[test]
fn daemons_of_different_apps_do_not_share_answers() {
    if !Redis::available() {
        return;
    }
    let redis = Redis::start().expect("redis");
    let second_app = "\n[[apps]]\nid = 2\nclient_id = \"Iv1.fedcba9876543210\"\nslug = \"ghapp-other\"\nprivate_key_out = \"app2.pem\"\n\n[[installations]]\nid = 300\napp = 2\naccount = \"acme\"\naccount_type = \"Organization\"\nrepositories = [\"widgets\"]\npermissions = { contents = \"read\", metadata = \"read\" }\n";
    let emulator =
        EmulatorProcess::start(&format!("{}{second_app}", basic_fixture(3600))).expect("emulator");
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("cache.key");
    write_cache_key(&key_file);
    let cache = format!(
        "\n[cache]\nredis_url = {:?}\nencryption_key_file = {:?}\n",
        redis.url(),
        key_file.display().to_string()
    );
    let proxy = proxy_table().replace(
        "default_installation = \"acme\"\n",
        "default_installation = \"acme\"\ncache_fresh_for = \"60s\"\n",
    );
    let config_a = format!("{}{cache}{proxy}", config_for(&emulator, ""));
    let app_2 = ghapp_testkit::daemon::config_for_emulator(
        &emulator.urls.api_url,
        &emulator.urls.git_url,
        &emulator.key_path("app2.pem"),
        "",
    )
    .replace("app_id = 1\n", "app_id = 2\n");
    assert!(app_2.contains("app_id = 2\n"), "{app_2}");
    let config_b = format!("{app_2}{cache}{proxy}");
    let a = DaemonProcess::start(&config_a).expect("daemon A");
    let b = DaemonProcess::start(&config_b).expect("daemon B");
    let auth = format!("token {CI_KEY}");
    let path = "/api/v3/repos/acme/gadgets";

    let by_a = send(&proxy_base(&a), "GET", path, Some(&auth));
    assert_eq!(by_a.status, 200, "{}", by_a.body);
    assert_eq!(by_a.cache.as_deref(), Some("miss"));
    let by_b = send(&proxy_base(&b), "GET", path, Some(&auth));
    assert_eq!(
        by_b.cache.as_deref(),
        Some("miss"),
        "B asked GitHub with its own App: {} {}",
        by_b.status,
        by_b.body
    );
    assert_ne!(
        by_b.status, 200,
        "App 2 cannot see acme/gadgets: {}",
        by_b.body
    );
    assert!(!by_b.body.contains("\"full_name\""), "{}", by_b.body);
    // The same App still shares: A's answer on a widgets path is B's after B fetched its own.
    let widgets = "/api/v3/repos/acme/widgets";
    assert_eq!(
        send(&proxy_base(&a), "GET", widgets, Some(&auth)).status,
        200
    );
    let b_widgets = send(&proxy_base(&b), "GET", widgets, Some(&auth));
    assert_eq!(b_widgets.status, 200, "{}", b_widgets.body);
    assert_eq!(b_widgets.cache.as_deref(), Some("miss"), "not A's answer");
}
