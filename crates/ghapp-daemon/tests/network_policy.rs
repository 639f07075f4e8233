//! The one policy model for network callers and credentials, through `routes::handle` on real
//! TCP connections: each test listener plays one source address (what the network listener
//! passes as `Origin::Network`), so address policies are tested without real 10.x peers. The
//! Unix socket tests run through the real in-process server. Covers: no entry → 403 (with a
//! credential) or 401 + `WWW-Authenticate: Bearer` (without); an invalid credential → 401
//! `error="invalid_token"` and an audit line without the credential; a GitHub-Actions-shaped ID
//! token allowed acme/widgets read and refused acme/gadgets; the workspace endpoint needs a
//! credential on the network; `/metrics` by `metrics = true` or loopback; a credential on the
//! socket only narrows; the per-identity mint limit answers 429 with `retry-after`.

#[allow(unused_imports)]
mod common;
mod oidc_issuer;

use common::{Fake, Harness, ONE_APP};
use ghapp_broker::{BrokerError, BrokerMetrics, BrokerStatus, Config};
use ghapp_daemon::audit::AuditLog;
use ghapp_daemon::identity::Origin;
use ghapp_daemon::service::TokenService;
use ghapp_daemon::settings::Settings;
use ghapp_daemon::state::State;
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery, TokenResponse};
use jsonwebtoken::Algorithm;
use oidc_issuer::{Issuers, SigningKey, claims};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

const CLIENT_KEY: &str = "ghk_network-policy-test-key-0123456789abcdef";
const OTHER_KEY: &str = "ghk_another-client-key-0123456789abcdefghij";

fn clients() -> String {
    format!(
        "[[client]]\nname = \"ci-bot\"\nkey_sha256 = \"{}\"\n[[client]]\nname = \"scraper\"\nkey_sha256 = \"{}\"\n",
        ghapp_protocol::client_key::digest_hex(CLIENT_KEY),
        ghapp_protocol::client_key::digest_hex(OTHER_KEY)
    )
}

/// Serves `state` on a fresh TCP port; every connection is judged as coming from `address`.
async fn serve_as<S: TokenService>(state: Arc<State<S>>, address: &str) -> SocketAddr {
    let address: IpAddr = address.parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let state = state.clone();
                    async move {
                        let origin = Origin::Network {
                            address,
                            tls: false,
                        };
                        Ok::<_, std::convert::Infallible>(
                            ghapp_daemon::routes::handle(&state, origin, request).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    local
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn get(at: SocketAddr, path: &str, bearer: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(format!("http://{at}{path}"));
    if let Some(credential) = bearer {
        request = request.header("authorization", format!("Bearer {credential}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        body: response.text().await.unwrap(),
    }
}

fn audit_lines(h: &Harness) -> String {
    std::fs::read_to_string(h.path("audit.jsonl")).unwrap_or_default()
}

const WIDGETS: &str = "/v1/token?owner=acme&repo=widgets";
const GADGETS: &str = "/v1/token?owner=acme&repo=gadgets";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_entries_the_network_gets_nothing_and_the_socket_everything() {
    let h = Harness::start(
        "audit_log = \"audit.jsonl\"",
        &format!("{ONE_APP}{}", clients()),
        None,
    );
    let net = serve_as(h.state.clone(), "10.9.9.9").await;
    let anonymous = get(net, WIDGETS, None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    assert!(
        anonymous
            .body
            .contains("address 10.9.9.9 presented no credential"),
        "{}",
        anonymous.body
    );
    let keyed = get(net, WIDGETS, Some(CLIENT_KEY)).await;
    assert_eq!(keyed.status, 403, "{}", keyed.body);
    assert!(
        keyed
            .body
            .contains("no [[policy]] entry selects client ci-bot from address 10.9.9.9"),
        "{}",
        keyed.body
    );
    let health = get(net, "/healthz", Some("not-even-a-key")).await;
    assert_eq!(health.status, 200, "probes need no credential");

    let forged = "ghk_forged-key-that-nobody-issued-000000000";
    let invalid = get(net, WIDGETS, Some(forged)).await;
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.header("www-authenticate"),
        r#"Bearer error="invalid_token""#
    );
    assert!(!invalid.body.contains(forged));

    // The socket, same config: no entries at all keeps every admitted peer unrestricted.
    assert_eq!(h.get(GADGETS).await.status, 200);

    let audit = audit_lines(&h);
    assert!(
        !audit.contains(forged) && !audit.contains(CLIENT_KEY),
        "{audit}"
    );
    let refused: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["outcome"] == "denied_credential")
        .expect("an audit line for the invalid credential");
    assert_eq!(refused["address"], "10.9.9.9");
    assert_eq!(refused["status"], 401);
    assert!(refused.get("peer_uid").is_none());
    assert!(
        audit.contains(r#""client":"ci-bot""#),
        "the client's name is audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_and_client_entries() {
    let policies = "[[policy]]\naddress = \"10.0.0.0/8\"\nrepos = [\"acme/widgets\"]\n\n[[policy]]\nclient = \"ci-bot\"\nowners = [\"acme\"]\n\n[[policy]]\nclient = \"scraper\"\nowners = [\"nobody\"]\nmetrics = true\n";
    let h = Harness::start(
        "audit_log = \"audit.jsonl\"\ndefault_owner = \"acme\"",
        &format!("{ONE_APP}{}{policies}", clients()),
        None,
    );
    let inside = serve_as(h.state.clone(), "10.1.2.3").await;
    let outside = serve_as(h.state.clone(), "192.168.0.1").await;
    let mapped = serve_as(h.state.clone(), "::ffff:10.4.4.4").await;
    let loopback = serve_as(h.state.clone(), "127.0.0.1").await;

    assert_eq!(get(inside, WIDGETS, None).await.status, 200);
    assert_eq!(
        get(mapped, WIDGETS, None).await.status,
        200,
        "IPv4-mapped IPv6"
    );
    let gadgets = get(inside, GADGETS, None).await;
    assert_eq!(gadgets.status, 403, "{}", gadgets.body);
    assert!(
        gadgets.body.contains(
            "repository acme/gadgets is not allowed for addresses 10.0.0.0/8 by [[policy]] entry 1"
        ),
        "{}",
        gadgets.body
    );
    let outside_answer = get(outside, WIDGETS, None).await;
    assert_eq!(outside_answer.status, 401);
    assert_eq!(outside_answer.header("www-authenticate"), "Bearer");
    // A credential is judged by its own entry, not the address's.
    assert_eq!(get(outside, GADGETS, Some(CLIENT_KEY)).await.status, 200);
    assert_eq!(get(inside, GADGETS, Some(OTHER_KEY)).await.status, 403);
    // tokman's route follows the same entries.
    let tokman = get(inside, "/api/acme/widgets", None).await;
    assert_eq!(tokman.status, 200, "{}", tokman.body);
    assert_eq!(
        tokman.json()["access_token"],
        common::fake_token("acme", "widgets")
    );

    // The workspace endpoint needs a credential on the network (the seed's AdminAuth).
    let workspace = get(inside, "/admin/github-installation-token", None).await;
    assert_eq!(workspace.status, 401, "{}", workspace.body);
    assert_eq!(workspace.header("www-authenticate"), "Bearer");
    let workspace = get(
        outside,
        "/admin/github-installation-token",
        Some(CLIENT_KEY),
    )
    .await;
    assert_eq!(workspace.status, 200, "{}", workspace.body);
    assert!(
        workspace.json()["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ghs_"))
    );

    // /metrics: an entry with metrics = true, or loopback; nobody else.
    assert_eq!(get(outside, "/metrics", Some(OTHER_KEY)).await.status, 200);
    assert_eq!(get(outside, "/metrics", Some(CLIENT_KEY)).await.status, 403);
    assert_eq!(get(inside, "/metrics", None).await.status, 403);
    assert_eq!(get(outside, "/metrics", None).await.status, 401);
    assert_eq!(get(loopback, "/metrics", None).await.status, 200);
    // Status: filtered, and an unknown anonymous caller is asked to authenticate.
    assert_eq!(get(outside, "/v1/status", None).await.status, 401);
    let status = get(inside, "/v1/status", None).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["counters"], serde_json::json!({}));

    let audit = audit_lines(&h);
    assert!(audit.contains(r#""address":"10.1.2.3""#), "{audit}");
    assert!(!audit.contains(CLIENT_KEY) && !audit.contains(OTHER_KEY));
    let page = get(loopback, "/metrics", None).await.body;
    assert!(
        page.contains(
            "ghapp_requests_by_identity_total{kind=\"client\",identity=\"client:ci-bot\",status=\"200\"}"
        ),
        "{page}"
    );
    assert!(
        page.contains("kind=\"address\",identity=\"address\""),
        "{page}"
    );
    assert!(!page.contains(CLIENT_KEY) && !page.contains(OTHER_KEY));
}

/// An issuer shaped like GitHub Actions' (its claims), on 127.0.0.1.
async fn actions_issuer() -> (Issuers, SigningKey) {
    let issuers = Issuers::start().await;
    let key = SigningKey::new("actions-1", Algorithm::RS256);
    issuers.publish("actions", &[&key]);
    (issuers, key)
}

fn actions_claims(issuer: &str, owner: &str, repo: &str) -> serde_json::Value {
    let mut c = claims(
        issuer,
        "ghapp",
        &format!("repo:{owner}/{repo}:ref:refs/heads/main"),
    );
    c["repository"] = format!("{owner}/{repo}").into();
    c["repository_owner"] = owner.into();
    c["job_workflow_ref"] =
        format!("{owner}/{repo}/.github/workflows/ci.yml@refs/heads/main").into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_actions_token_gets_its_repository_read_only() {
    let (issuers, key) = actions_issuer().await;
    let issuer = issuers.issuer("actions");
    let config = format!(
        "[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"repo:acme/widgets:ref:refs/heads/*\"\nclaims = {{ repository_owner = \"acme\", job_workflow_ref = \"acme/widgets/.github/workflows/*\" }}\nrepos = [\"acme/widgets\"]\npermissions = {{ contents = \"read\" }}\n"
    );
    let h = Harness::start(
        "audit_log = \"audit.jsonl\"",
        &format!("{ONE_APP}{config}"),
        None,
    );
    let runner = serve_as(h.state.clone(), "203.0.113.7").await;
    let token = key.sign(&actions_claims(&issuer, "acme", "widgets"));

    let widgets = get(runner, WIDGETS, Some(&token)).await;
    assert_eq!(widgets.status, 200, "{}", widgets.body);
    assert_eq!(
        widgets.json()["permissions"],
        serde_json::json!({"contents": "read"})
    );
    let gadgets = get(runner, GADGETS, Some(&token)).await;
    assert_eq!(gadgets.status, 403, "{}", gadgets.body);
    let write = get(
        runner,
        &format!("{WIDGETS}&permissions=contents:write"),
        Some(&token),
    )
    .await;
    assert_eq!(write.status, 422, "{}", write.body);
    // Another repository's workflow: its token matches no entry.
    let other = key.sign(&actions_claims(&issuer, "acme", "gadgets"));
    let refused = get(runner, GADGETS, Some(&other)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains(&format!("no [[policy]] entry selects {issuer} repo:acme/gadgets:ref:refs/heads/main from address 203.0.113.7")), "{}", refused.body);
    // A wrong-audience token: 401, invalid_token.
    let mut wrong = actions_claims(&issuer, "acme", "widgets");
    wrong["aud"] = "someone-else".into();
    let wrong = get(runner, WIDGETS, Some(&key.sign(&wrong))).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").contains("invalid_token"));

    let audit = audit_lines(&h);
    assert!(
        !audit.contains(&token) && !audit.contains(&other),
        "no ID token in the audit log"
    );
    let granted: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["outcome"] == "granted")
        .unwrap();
    assert_eq!(granted["issuer"], issuer.as_str());
    assert_eq!(granted["subject"], "repo:acme/widgets:ref:refs/heads/main");
    assert_eq!(granted["address"], "203.0.113.7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_socket_an_id_token_only_narrows_the_uid() {
    let (issuers, key) = actions_issuer().await;
    let issuer = issuers.issuer("actions");
    let me = rustix::process::geteuid().as_raw();
    let config = format!(
        "[[oidc]]\nissuer = \"{issuer}\"\naudience = \"ghapp\"\n\n[[policy]]\nuid = {me}\nowners = [\"acme\"]\n\n[[policy]]\nissuer = \"{issuer}\"\nsubject = \"system:serviceaccount:ci:builder\"\nrepos = [\"acme/widgets\"]\npermissions = {{ contents = \"read\" }}\n"
    );
    let h = Harness::start(
        "audit_log = \"audit.jsonl\"",
        &format!("{ONE_APP}{config}"),
        None,
    );
    let pod = claims(&issuer, "ghapp", "system:serviceaccount:ci:builder");
    let token_file = h.path("token");
    std::fs::write(&token_file, key.sign(&pod)).unwrap();
    let client = h.client().with_id_token_file(Some(token_file.clone()));
    let query = |repo: &str| TokenQuery {
        owner: Some("acme".into()),
        repo: Some(repo.into()),
        ..Default::default()
    };
    let granted = client.token(&query("widgets")).await.unwrap();
    assert_eq!(
        granted.permissions.to_list(),
        "contents:read",
        "narrowed to the token's entry"
    );
    let refused = client.token(&query("gadgets")).await.unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
    // The uid alone may have it: the token narrowed, it never widened.
    assert!(h.client().token(&query("gadgets")).await.is_ok());
    let other_owner = TokenQuery {
        owner: Some("other".into()),
        repo: Some("widgets".into()),
        ..Default::default()
    };
    assert_eq!(
        h.client().token(&other_owner).await.unwrap_err().status(),
        Some(403)
    );

    // The credential helper's blocking client sends the same file.
    let (socket, file) = (h.socket.clone(), token_file.clone());
    let blocking = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let client = ghapp_client::blocking::BlockingClient::new(socket, deadline)
            .with_id_token_file(Some(file));
        let ask = |repo: &str| {
            client.token(&TokenQuery {
                owner: Some("acme".into()),
                repo: Some(repo.into()),
                ..Default::default()
            })
        };
        (
            ask("widgets").map(|t| t.permissions.to_list()),
            ask("gadgets").map_err(|e| e.status()),
        )
    })
    .await
    .unwrap();
    assert_eq!(blocking.0.unwrap(), "contents:read");
    assert_eq!(blocking.1.unwrap_err(), Some(403));

    // A token no entry selects: 403; a broken one: 401; an unreadable file: nothing sent.
    std::fs::write(
        &token_file,
        key.sign(&claims(&issuer, "ghapp", "system:serviceaccount:ci:other")),
    )
    .unwrap();
    assert_eq!(
        client.token(&query("widgets")).await.unwrap_err().status(),
        Some(403)
    );
    std::fs::write(&token_file, "eyJhbGciOiJub25lIn0.e30.").unwrap();
    assert_eq!(
        client.token(&query("widgets")).await.unwrap_err().status(),
        Some(401)
    );
    std::fs::remove_file(&token_file).unwrap();
    let unreadable = client.token(&query("widgets")).await.unwrap_err();
    assert!(
        matches!(unreadable, ghapp_client::ClientError::IdToken { .. }),
        "{unreadable}"
    );

    let audit = audit_lines(&h);
    let narrowed: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["outcome"] == "granted")
        .unwrap();
    assert_eq!(narrowed["peer_uid"], me);
    assert_eq!(narrowed["subject"], "system:serviceaccount:ci:builder");
    assert_eq!(narrowed["issuer"], issuer.as_str());
}

/// The fake, reporting every answer as minted (the broker's cache misses).
#[derive(Default)]
struct Minting(Fake);

impl TokenService for Minting {
    async fn token(&self, query: &TokenQuery) -> Result<TokenResponse, BrokerError> {
        self.0.token(query).await
    }
    async fn token_served(&self, query: &TokenQuery) -> Result<(TokenResponse, bool), BrokerError> {
        // "cached" plays a cached answer: never charged.
        let minted = query.repo.as_deref() != Some("cached");
        self.0.token(query).await.map(|t| (t, minted))
    }
    fn invalidate(&self, token: &str) -> bool {
        self.0.invalidate(token)
    }
    async fn runner_token(
        &self,
        host: &str,
        org: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        self.0.runner_token(host, org, remove).await
    }
    fn reload(&self, config: &Config) -> Result<(), BrokerError> {
        self.0.reload(config)
    }
    fn status(&self) -> BrokerStatus {
        self.0.status()
    }
    fn metrics(&self) -> BrokerMetrics {
        self.0.metrics()
    }
    fn shutdown(&self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_are_limited_per_identity_and_cached_answers_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = format!(
        "[network]\nlisten = [\"127.0.0.1:0\"]\nmint_rate = 6\nmint_burst = 2\n\n{ONE_APP}{}[[policy]]\nclient = \"ci-bot\"\n[[policy]]\nclient = \"scraper\"\n",
        clients()
    );
    let config = Config::parse(&text, &path).unwrap();
    let settings =
        Settings::from_config(&config, &path, rustix::process::geteuid().as_raw()).unwrap();
    let state = Arc::new(State::new(
        Minting::default(),
        settings,
        AuditLog::open(None).unwrap(),
        &dir.path().join("s"),
    ));
    let at = serve_as(state.clone(), "10.0.0.1").await;
    for repo in ["a", "b"] {
        assert_eq!(
            get(
                at,
                &format!("/v1/token?owner=acme&repo={repo}"),
                Some(CLIENT_KEY)
            )
            .await
            .status,
            200
        );
    }
    let limited = get(at, "/v1/token?owner=acme&repo=c", Some(CLIENT_KEY)).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(
        limited.header("retry-after"),
        "10",
        "one mint per 10 s at 6/min"
    );
    assert!(
        limited.body.contains("client ci-bot from address 10.0.0.1"),
        "{}",
        limited.body
    );
    assert!(!limited.body.contains(CLIENT_KEY));
    // Another identity has its own bucket; cached answers never cost a mint.
    for _ in 0..5 {
        assert_eq!(
            get(at, "/v1/token?owner=acme&repo=cached", Some(OTHER_KEY))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        get(at, "/v1/token?owner=acme&repo=x", Some(OTHER_KEY))
            .await
            .status,
        200
    );
    assert_eq!(
        state.metrics.counters(&Default::default())["mints_limited"],
        1
    );
}
