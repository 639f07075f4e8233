//! The API proxy end to end (issue 17): `ghapp daemon` with `[proxy]` against the emulator,
//! driven by real clients — a Rust HTTP client, curl and PyGithub — through GitHub's Enterprise
//! layout. 100 clients making the same GET cause one full GitHub answer and at most one
//! rate-limit point; a request outside a client's scopes is refused without a GitHub request;
//! a credential GitHub rate-limits mid-run is rested and the requests continue on another.
//!
//! gh speaks only https to an Enterprise host: its test serves the proxy over TLS (the daemon's
//! network listener, with a certificate made here).

use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CI_KEY: &str = "ci-key-0123456789";
const NARROW_KEY: &str = "narrow-key-0123456789";
const SPARE_ENV: &str = "GHAPP_PROXY_TEST_SPARE";

/// App 1 on `acme` (installation 100, the broker's) and App 2 on `acme` too (installation 300,
/// whose token is the proxy's personal credential "spare": its own rate-limit bucket).
fn fixture() -> String {
    let permissions =
        "permissions = { contents = \"write\", metadata = \"read\", pull_requests = \"read\" }";
    let basic = basic_fixture(3600).replace(
        "permissions = { contents = \"write\", metadata = \"read\" }",
        permissions,
    );
    format!(
        "{basic}\n[rate_limit]\nenforce = true\n\n[[apps]]\nid = 2\nslug = \"ghapp-spare\"\nprivate_key_out = \"app2.pem\"\n\n[[installations]]\nid = 300\napp = 2\naccount = \"acme\"\naccount_type = \"Organization\"\nrepositories = [\"widgets\", \"gadgets\"]\n{permissions}\n"
    )
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The emulator, the daemon with its proxy, and the proxy's base URL.
struct Stack {
    emulator: EmulatorProcess,
    daemon: DaemonProcess,
    /// `http://127.0.0.1:PORT` (`https://` with TLS).
    base: String,
}

/// A CA and a leaf for 127.0.0.1 and localhost, as PEM files (the key 0600).
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ghapp proxy test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "ghapp proxy");
        let key = KeyPair::generate().expect("key");
        let leaf = leaf_params.signed_by(&key, &ca).expect("leaf");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca");
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("cert");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&key_file, key.serialize_pem()).expect("key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        TestPki { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Stack {
    fn start() -> Stack {
        Self::start_with(None)
    }

    /// With `pki`, the proxy listens with TLS.
    fn start_with(pki: Option<&TestPki>) -> Stack {
        let emulator = EmulatorProcess::start(&fixture()).expect("emulator");
        let jwt = emulator.sign_app_jwt(2, "app2.pem").expect("App 2 JWT");
        let minted = emulator
            .api(
                "POST",
                "/app/installations/300/access_tokens",
                Some(&jwt),
                &[("Content-Type", "application/json")],
                Some("{}"),
            )
            .expect("mint the spare token");
        assert_eq!(minted.status, 201);
        let spare = minted.json().expect("json")["token"]
            .as_str()
            .expect("token")
            .to_string();
        let tls = pki.map_or(String::new(), |pki| {
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                pki.file("cert.pem").display().to_string(),
                pki.file("key.pem").display().to_string()
            )
        });
        let config = format!(
            "{}\n[proxy]\n{tls}listen = \"127.0.0.1:0\"\ndefault_installation = \"acme\"\n\n[[proxy.client]]\nname = \"ci\"\nkey_sha256 = \"{}\"\n\n[[proxy.client]]\nname = \"narrow\"\nkey_sha256 = \"{}\"\nscopes = [{{ method = \"GET\", path = \"^/repos/acme/widgets(/.*)?$\" }}]\n\n[[proxy.credential]]\nname = \"spare\"\ntoken_env = \"{SPARE_ENV}\"\n",
            config_for(&emulator, ""),
            digest(CI_KEY),
            digest(NARROW_KEY),
        );
        let daemon = DaemonProcess::start_with(
            &config,
            DaemonStart {
                env: vec![(SPARE_ENV.to_string(), spare)],
                ..DaemonStart::default()
            },
        )
        .expect("daemon");
        let log = daemon.log();
        let address = log
            .lines()
            .find_map(|line| line.split("ghapp proxy listening on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no proxy address in the log:\n{log}"))
            .to_string();
        Stack {
            emulator,
            daemon,
            base: address,
        }
    }

    /// `used` of a rate-limit bucket of the emulator (`installation:100`).
    fn used(&self, bucket: &str) -> u64 {
        self.emulator.rate_limit_used(bucket).expect("admin")
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let response = request(
            &self.emulator.urls.admin_url,
            None,
            method,
            path,
            &[],
            body.as_deref(),
        )
        .expect("admin");
        assert_eq!(response.status, 200, "{method} {path}");
        response.json().expect("json")
    }

    /// Requests the emulator's API served, all routes together.
    fn github_requests(&self) -> u64 {
        let stats = self.emulator.stats().expect("stats");
        stats["requests"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
    }

    fn get(&self, key: Option<&str>, path: &str) -> Answer {
        self.send("GET", key, path, None, &[])
    }

    fn send(
        &self,
        method: &str,
        key: Option<&str>,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let mut request = client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .header("User-Agent", "ghapp-proxy-test");
        if let Some(key) = key {
            request = request.header("Authorization", format!("token {key}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().expect("request through the proxy");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let cache = header("x-ghapp-cache");
        let etag = header("etag");
        let body = response.text().expect("body");
        Answer {
            status,
            cache,
            etag,
            body,
        }
    }
}

#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    cache: Option<String>,
    etag: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

#[test]
fn hundred_clients_one_upstream_request() {
    let stack = Stack::start();
    let path = "/api/v3/repos/acme/widgets";
    let before = stack.used("installation:100");
    stack.emulator.reset_stats().expect("reset");

    let barrier = Arc::new(Barrier::new(100));
    let stack = Arc::new(stack);
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let barrier = barrier.clone();
            let stack = stack.clone();
            std::thread::spawn(move || {
                barrier.wait();
                stack.get(Some(CI_KEY), path)
            })
        })
        .collect();
    let answers: Vec<Answer> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let mut outcomes = std::collections::BTreeMap::new();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.body, answers[0].body,
            "every client got the same answer"
        );
        *outcomes
            .entry(answer.cache.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    eprintln!("100 concurrent clients: {outcomes:?}");
    assert_eq!(outcomes.get("miss"), Some(&1), "{outcomes:?}");
    assert_eq!(
        outcomes.get("hit").unwrap_or(&0) + outcomes.get("revalidated").unwrap_or(&0),
        99,
        "{outcomes:?}"
    );
    let stats = stack.emulator.stats().expect("stats");
    let full = stats["requests"]["GET /repos/{owner}/{repo}"]
        .as_u64()
        .unwrap_or(0);
    assert!(full >= 1, "GitHub saw the request: {stats}");
    let spent = stack.used("installation:100") - before;
    assert!(
        spent <= 1,
        "{spent} rate-limit points for 100 identical GETs"
    );
    assert_eq!(
        stack.used("installation:300"),
        0,
        "the spare credential was not needed"
    );

    // URLs in the answer point back at the proxy, so clients follow them through it.
    let repo = answers[0].json();
    assert_eq!(repo["url"], format!("{}{path}", stack.base));

    // Later requests revalidate (a 304 from GitHub, free) and are served from the cache.
    for _ in 0..10 {
        let answer = stack.get(Some(CI_KEY), path);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.cache.as_deref(), Some("revalidated"));
    }
    assert_eq!(
        stack.used("installation:100") - before,
        spent,
        "304s cost nothing"
    );

    // A change on GitHub is seen on the next request.
    stack.admin(
        "POST",
        "/_emulator/resources",
        Some(json!({"kind": "touch_repository", "owner": "acme", "repo": "widgets"})),
    );
    let changed = stack.get(Some(CI_KEY), path);
    assert_eq!(changed.cache.as_deref(), Some("miss"));
    assert_ne!(changed.etag, answers[0].etag);

    // The client's own conditional request is answered by the proxy.
    let etag = changed.etag.clone().expect("etag");
    let conditional = stack.send("GET", Some(CI_KEY), path, None, &[("If-None-Match", &etag)]);
    assert_eq!(conditional.status, 304);

    // The metrics page counts per client.
    let metrics = stack.get(None, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("ghapp_proxy_cache_total{client=\"ci\",outcome=\"miss\"} 2"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("ghapp_proxy_rate_limit_points_total{client=\"ci\"} 2")
    );
    assert!(
        !stack.daemon.log().contains(CI_KEY),
        "a client key reached the log"
    );
}

#[test]
fn keys_and_scopes_are_checked_before_github() {
    let stack = Stack::start();
    // Warm the broker so the counts below are the proxy's alone.
    assert_eq!(
        stack.get(Some(CI_KEY), "/api/v3/repos/acme/widgets").status,
        200
    );
    let before = stack.github_requests();

    let outside = stack.get(Some(NARROW_KEY), "/api/v3/repos/acme/gadgets");
    assert_eq!(outside.status, 403, "{}", outside.body);
    assert_eq!(outside.cache.as_deref(), Some("bypass"));
    let write = stack.send(
        "POST",
        Some(NARROW_KEY),
        "/api/graphql",
        Some("{\"query\":\"{viewer{login}}\"}"),
        &[],
    );
    assert_eq!(write.status, 403);
    // A cached answer is not served to a client whose scopes do not cover it either.
    let cached_elsewhere = stack.get(Some(NARROW_KEY), "/api/v3/repos/acme/gadgets");
    assert_eq!(cached_elsewhere.status, 403);
    assert_eq!(
        stack
            .get(Some("not-a-key"), "/api/v3/repos/acme/widgets")
            .status,
        401
    );
    assert_eq!(stack.get(None, "/api/v3/repos/acme/widgets").status, 401);
    let traversal = stack.get(Some(NARROW_KEY), "/api/v3/repos/acme/widgets/../../gadgets");
    assert!(matches!(traversal.status, 400 | 403 | 404), "{traversal:?}");
    assert_eq!(
        stack.github_requests(),
        before,
        "refused requests never reached GitHub"
    );

    // Within its scope the narrow client is served (from the cache the ci client filled).
    let inside = stack.get(Some(NARROW_KEY), "/api/v3/repos/acme/widgets");
    assert_eq!(inside.status, 200);
    assert_eq!(inside.cache.as_deref(), Some("revalidated"));

    // GraphQL passes through uncached.
    let graphql = stack.send(
        "POST",
        Some(CI_KEY),
        "/api/graphql",
        Some("{\"query\":\"{ viewer { login } }\"}"),
        &[],
    );
    assert_eq!(graphql.status, 200, "{}", graphql.body);
    assert_eq!(graphql.cache.as_deref(), Some("bypass"));
    assert_eq!(graphql.json()["data"]["viewer"]["login"], "ghapp-test[bot]");
}

#[test]
fn rate_limited_credential_rests_and_requests_continue() {
    let stack = Stack::start();
    let path = "/api/v3/repos/acme/widgets/pulls";
    let first = stack.get(Some(CI_KEY), path);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        stack.get(Some(CI_KEY), path).cache.as_deref(),
        Some("revalidated")
    );
    assert_eq!(stack.used("installation:300"), 0);

    // GitHub rate-limits the installation's token mid-run.
    stack.admin(
        "POST",
        "/_emulator/rate_limit",
        Some(json!({"key": "installation:100", "remaining": 0})),
    );
    let started = Instant::now();
    for round in 0..20 {
        let answer = stack.get(Some(CI_KEY), path);
        assert_eq!(answer.status, 200, "round {round}: {}", answer.body);
        assert_eq!(answer.json(), first.json());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The spare credential took over: one full answer, then free revalidations.
    assert_eq!(stack.used("installation:300"), 1);
    let metrics = stack.get(None, "/metrics").body;
    assert!(
        metrics.contains("ghapp_proxy_credential_rests_total{credential=\"installation:acme\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "ghapp_proxy_credential_remaining{credential=\"installation:acme\",resource=\"core\"} 0"
    ));

    // Every credential limited: GitHub's rate-limit answer comes back.
    stack.admin(
        "POST",
        "/_emulator/rate_limit",
        Some(json!({"key": "installation:300", "remaining": 0})),
    );
    stack.admin(
        "POST",
        "/_emulator/resources",
        Some(json!({"kind": "add_pull", "owner": "acme", "repo": "widgets", "title": "x"})),
    );
    let limited = stack.get(Some(CI_KEY), path);
    assert_eq!(limited.status, 403, "{}", limited.body);
}

fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

fn curl() -> Option<PathBuf> {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        loud("SKIPPED curl through the proxy: curl is not installed");
    }
    found.then(|| PathBuf::from("curl"))
}

#[test]
fn curl_through_the_proxy() {
    let Some(curl) = curl() else { return };
    let stack = Stack::start();
    let run = |args: &[&str]| -> String {
        let out = Command::new(&curl)
            .args(["-sS", "-i", "--noproxy", "*", "-H"])
            .arg(format!("Authorization: token {CI_KEY}"))
            .args(args)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let url = format!(
        "{}/api/v3/repos/acme/widgets/contents/README.md",
        stack.base
    );
    let first = run(&[&url]);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("x-ghapp-cache: miss"),
        "{first}"
    );
    let etag = first
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .expect("etag")
        .trim()
        .to_string();
    let second = run(&["-H", &format!("If-None-Match: {etag}"), &url]);
    assert!(second.starts_with("HTTP/1.1 304"), "{second}");
    let graphql = run(&[
        "-X",
        "POST",
        "-d",
        "{\"query\":\"{ viewer { login } }\"}",
        &format!("{}/api/graphql", stack.base),
    ]);
    assert!(graphql.contains("x-ghapp-cache: bypass"), "{graphql}");
    assert!(graphql.contains("ghapp-test[bot]"), "{graphql}");
}

fn python_with_pygithub() -> Option<PathBuf> {
    let python = std::env::var_os("GHAPP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../github-emulator/tests/clients/.venv/bin/python")
        });
    let works = Command::new(&python)
        .args(["-c", "import github"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        let message = "SKIPPED PyGithub through the proxy: PyGithub is not installed in crates/github-emulator/tests/clients/.venv (.ci/run installs it) — the test did NOT run";
        assert!(
            std::env::var_os("GHAPP_TEST_REQUIRE_PYGITHUB").is_none(),
            "{message} and GHAPP_TEST_REQUIRE_PYGITHUB is set"
        );
        loud(message);
    }
    works.then_some(python)
}

const PYGITHUB_SCRIPT: &str = r#"
import json, sys
from github import Auth, Github
base, key = sys.argv[1], sys.argv[2]
gh = Github(base_url=base, auth=Auth.Token(key), retry=None)
repo = gh.get_repo("acme/widgets")
pulls = [p.title for p in repo.get_pulls()]
readme = repo.get_contents("README.md").decoded_content.decode()
again = gh.get_repo("acme/widgets").full_name
print(json.dumps({"full_name": repo.full_name, "pulls": pulls, "readme": readme, "again": again}))
"#;

#[test]
fn pygithub_through_the_proxy() {
    let Some(python) = python_with_pygithub() else {
        return;
    };
    let stack = Stack::start();
    stack.admin(
        "POST",
        "/_emulator/resources",
        Some(json!({"kind": "add_pull", "owner": "acme", "repo": "widgets", "title": "Add proxy"})),
    );
    let out = Command::new(&python)
        .args(["-c", PYGITHUB_SCRIPT])
        .arg(format!("{}/api/v3", stack.base))
        .arg(CI_KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "PyGithub failed:\n{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.daemon.log()
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(line.trim()).expect("json line");
    assert_eq!(result["full_name"], "acme/widgets");
    assert_eq!(result["again"], "acme/widgets");
    assert_eq!(result["pulls"], json!(["Add proxy"]));
    assert_eq!(result["readme"], "# widgets\n");
}

fn gh_or_skip() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("gh"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = "SKIPPED gh through the proxy: gh is not installed (apt-get install gh; .ci/run does this) — the test did NOT run";
        assert!(
            std::env::var_os("GHAPP_TEST_REQUIRE_GH").is_none(),
            "{message} and GHAPP_TEST_REQUIRE_GH is set"
        );
        loud(message);
    }
    found
}

#[test]
fn gh_through_the_proxy_over_tls() {
    let Some(gh) = gh_or_skip() else { return };
    let pki = TestPki::new();
    let stack = Stack::start_with(Some(&pki));
    let host = stack
        .base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("the proxy is not on https: {}", stack.base))
        .to_string();
    let home = tempfile::tempdir().expect("home");
    let gh_run = |args: &[&str]| {
        let mut command = Command::new(&gh);
        for name in [
            "GH_TOKEN",
            "GITHUB_TOKEN",
            "GITHUB_ENTERPRISE_TOKEN",
            "GH_REPO",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            command.env_remove(name);
        }
        let out = command
            .args(args)
            .env("HOME", home.path())
            .env("GH_CONFIG_DIR", home.path().join("gh"))
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_STATE_HOME", home.path().join("state"))
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env("SSL_CERT_FILE", pki.file("ca.pem"))
            .env("GH_HOST", &host)
            .env("GH_ENTERPRISE_TOKEN", CI_KEY)
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .env("NO_COLOR", "1")
            .output()
            .expect("gh");
        assert!(
            out.status.success(),
            "gh {args:?} failed:\n{}\n{}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            stack.daemon.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        gh_run(&["api", "/repos/acme/widgets", "--jq", ".full_name"]),
        "acme/widgets"
    );
    // The URL in the answer points at the proxy over https, and gh can follow it.
    let url = gh_run(&["api", "/repos/acme/widgets", "--jq", ".url"]);
    assert_eq!(url, format!("{}/api/v3/repos/acme/widgets", stack.base));
    assert_eq!(
        gh_run(&[
            "api",
            "graphql",
            "-f",
            "query={ viewer { login } }",
            "--jq",
            ".data.viewer.login"
        ]),
        "ghapp-test[bot]"
    );
    let out = Command::new("curl")
        .args(["-sS", "-i", "--noproxy", "*", "--cacert"])
        .arg(pki.file("ca.pem"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {CI_KEY}"))
        .arg(format!("{}/api/v3/repos/acme/widgets", stack.base))
        .output();
    if let Ok(out) = out {
        let text = String::from_utf8_lossy(&out.stdout);
        // curl's `Accept: */*` is another cache key than gh's media type: a miss of its own.
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("x-ghapp-cache: miss"), "{text}");
    }
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator");
    let config = format!(
        "{}\n[proxy]\nlisten = \"0.0.0.0:0\"\n",
        config_for(&emulator, "")
    );
    let error = match DaemonProcess::start(&config) {
        Ok(_) => panic!("the daemon started a plain-HTTP proxy on 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("not a loopback address"), "{error}");
}
