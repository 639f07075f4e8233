//! The broker against the emulator behaving as GitHub really does (issue 13): rate limits
//! enforced per installation, spec-minimal answers, a GHES before 3.14 that refuses client-id
//! issuers, Enterprise installations, renamed repositories (301) and repository runner tokens.

mod support;

use ghapp_broker::{Broker, ErrorKind};
use ghapp_protocol::api::TokenQuery;
use std::time::{Duration, Instant};
use support::{Env, assert_error, perms};

const ORG_RUNNER_ROUTE: &str = "POST /orgs/{org}/actions/runners/registration-token";
const REPO_RUNNER_ROUTE: &str = "POST /repos/{owner}/{repo}/actions/runners/registration-token";

/// Two organizations whose installations may manage runners; `acme`'s installation may make
/// two requests an hour, and the emulator enforces it.
fn limited_fixture() -> String {
    r#"token_ttl_secs = 3600

[rate_limit]
enforce = true

[[apps]]
id = 1
client_id = "Iv1.0123456789abcdef"
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
permissions = { contents = "write", metadata = "read", organization_self_hosted_runners = "write" }
rate_limit = 2

[[installations]]
id = 300
app = 1
account = "beta"
account_type = "Organization"
permissions = { contents = "read", metadata = "read", organization_self_hosted_runners = "write" }

[[repositories]]
full_name = "acme/widgets"

[[repositories]]
full_name = "beta/tools"
"#
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_on_one_installation_never_holds_another_or_the_apps_mints() {
    let env = Env::start(&limited_fixture()).await;
    let broker = env.broker("retry_budget = \"10s\"");
    let host = env.git_host();
    for _ in 0..2 {
        broker.runner_token(&host, "acme", false).await.unwrap();
    }
    // acme's installation has spent its two requests: GitHub answers its primary limit
    // (403, x-ratelimit-remaining 0, reset in up to an hour) — far beyond the budget.
    let started = Instant::now();
    let e = broker.runner_token(&host, "acme", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{}", e.message);
    assert!(
        e.message.contains("rate limited by GitHub until")
            && e.message.contains("installation 100"),
        "{}",
        e.message
    );
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast");
    assert_eq!(env.requests(ORG_RUNNER_ROUTE), 3);

    // At once: another installation's runner token, and the App's own calls (look-ups and
    // mints draw on the App's bucket), including a mint for acme itself.
    let started = Instant::now();
    let beta = broker.runner_token(&host, "beta", false).await.unwrap();
    assert_eq!(beta.org, "beta");
    broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    broker
        .token(&env.query("beta", Some("tools")))
        .await
        .unwrap();
    let served_in = started.elapsed();
    assert!(
        served_in < Duration::from_secs(3),
        "served at once: {served_in:?}"
    );
    assert_eq!(env.requests(ORG_RUNNER_ROUTE), 4);
    assert!(
        !broker.status().degraded,
        "one installation's limit does not make the App degraded: {:?}",
        broker.status().degraded_reason
    );

    // acme stays held until GitHub's reset: nothing more is sent for it.
    let e = broker.runner_token(&host, "acme", false).await.unwrap_err();
    assert!(e.message.contains("rate limited"), "{}", e.message);
    assert_eq!(env.requests(ORG_RUNNER_ROUTE), 4, "held, not sent");
    eprintln!("other installation and the App's mints served in {served_in:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_minimal_answers_are_accepted_and_what_they_carry_is_checked() {
    let fixture = format!("minimal = true\n{}", support::runner_fixture(3600));
    let env = Env::start(&fixture).await;
    let broker = env.broker("");
    // Narrowed to a repository: GitHub's minimal answer has no `repositories` to compare.
    let token = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(token.repositories, vec!["widgets".to_string()]);
    assert!(
        support::secs_until(&token.expires_at) > 3000,
        "{}",
        token.expires_at
    );
    // Without `permissions` in the answer: what the installation has (none was asked).
    assert_eq!(
        token.permissions,
        perms("contents:write,metadata:read,organization_self_hosted_runners:write")
    );
    let asked = TokenQuery {
        permissions: perms("contents:read"),
        ..env.query("acme", Some("widgets"))
    };
    let narrowed = broker.token(&asked).await.unwrap();
    assert_eq!(narrowed.permissions, perms("contents:read"), "as asked");
    // The token works where it should (GET /repos/{owner}/{repo} with it).
    let response = reqwest::Client::new()
        .get(format!("{}/repos/acme/widgets", env.emulator.urls.api_url))
        .header("user-agent", "ghapp-test")
        .bearer_auth(narrowed.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Owner-less (GET /app/installations in its minimal form) and runner tokens too.
    broker
        .runner_token(&env.git_host(), "acme", false)
        .await
        .unwrap();
    broker.token(&env.query("beta", None)).await.unwrap();
    assert_eq!(env.stats().mints_total, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_refused_by_old_ghes_gives_way_to_the_app_id_once_and_for_all() {
    let fixture = format!("ghes_version = \"3.13\"\n{}", support::basic_fixture(3600));
    let env = Env::start(&fixture).await;
    let broker = Broker::start(&env.config(
        "",
        &env.app_toml("test-app", "client_id = \"Iv1.0123456789abcdef\""),
    ))
    .unwrap();
    assert_eq!(
        broker.status().apps[0].jwt_issuer.as_deref(),
        Some("client id")
    );
    for repo in ["widgets", "gadgets"] {
        broker.token(&env.query("acme", Some(repo))).await.unwrap();
    }
    broker.token(&env.query("octo", None)).await.unwrap();
    let stats = env.stats();
    assert_eq!(
        stats.jwt_rejections.get("bad_iss"),
        Some(&1),
        "refused once, then the App id was used: {:?}",
        stats.jwt_rejections
    );
    assert_eq!(stats.mints_total, 3);
    assert_eq!(
        broker.status().apps[0].jwt_issuer.as_deref(),
        Some("App id")
    );
    assert!(!broker.status().degraded);

    // Without an App id there is nothing to fall back to: a bad key, said plainly.
    let client_only = format!(
        "[[app]]\nname = \"client-only\"\nhost = {host:?}\napi_url = {api:?}\nclient_id = \"Iv1.0123456789abcdef\"\nprivate_key_file = {key:?}\ninsecure_http = true\n",
        host = env.git_host(),
        api = env.emulator.urls.api_url,
        key = env.key_path().display().to_string(),
    );
    let broker = Broker::start(&env.config("", &client_only)).unwrap();
    let e = assert_error(
        broker.token(&env.query("acme", Some("widgets"))).await,
        ErrorKind::Internal,
        "'Issuer' claim ('iss')",
    );
    assert!(
        e.message.contains("check app_id/client_id"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_installations_never_make_an_owner_less_request_ambiguous() {
    let fixture = r#"token_ttl_secs = 3600

[[apps]]
id = 1
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
repositories = ["widgets"]
permissions = { contents = "write", metadata = "read" }

[[installations]]
id = 900
app = 1
account = "big-corp"
account_type = "Enterprise"
permissions = { enterprise_organization_installations = "write" }

[[repositories]]
full_name = "acme/widgets"
"#;
    let env = Env::start(fixture).await;
    let broker = env.broker("");
    let token = broker
        .token(&TokenQuery {
            owner: None,
            ..env.query("", None)
        })
        .await
        .unwrap();
    assert_eq!(
        token.installation_id, 100,
        "the only installation serving repositories"
    );
    let status = broker.status();
    let listed: Vec<(u64, bool, &str)> = status
        .installations
        .iter()
        .map(|i| (i.installation_id, i.enterprise, i.owner.as_str()))
        .collect();
    assert!(listed.contains(&(100, false, "acme")), "{listed:?}");
    assert!(
        listed.contains(&(900, true, "big-corp")),
        "listed as Enterprise: {listed:?}"
    );
    // Naming the enterprise as an owner finds nothing (it has no /orgs or /users installation).
    assert_error(
        broker.token(&env.query("big-corp", None)).await,
        ErrorKind::NotFound,
        "is not installed on account big-corp",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_repository_is_followed_on_the_apps_api_and_narrowed_by_its_id() {
    let fixture = support::basic_fixture(3600).replace(
        "[[repositories]]\nfull_name = \"acme/widgets\"\n",
        "[[repositories]]\nfull_name = \"acme/widgets\"\nprevious_names = [\"acme/old-widgets\"]\n",
    );
    assert!(fixture.contains("previous_names"), "fixture edited");
    let env = Env::start(&fixture).await;
    let broker = env.broker("");
    let token = broker
        .token(&env.query("acme", Some("old-widgets")))
        .await
        .unwrap();
    assert_eq!(token.installation_id, 100);
    assert_eq!(token.repositories, vec!["old-widgets".to_string()]);
    assert_eq!(env.requests("GET /repos/{owner}/{repo}/installation"), 1);
    assert_eq!(
        env.requests("GET /repositories/{repository_id}/installation"),
        1,
        "the 301 was followed, with the JWT (the route requires it)"
    );
    // Narrowed to exactly the renamed repository: it reaches widgets, not gadgets.
    let client = reqwest::Client::new();
    let get = |repo: &str| {
        client
            .get(format!("{}/repos/acme/{repo}", env.emulator.urls.api_url))
            .header("user-agent", "ghapp-test")
            .bearer_auth(token.token.expose())
            .send()
    };
    assert_eq!(get("widgets").await.unwrap().status(), 200);
    assert_eq!(get("gadgets").await.unwrap().status(), 404);
    assert_eq!(env.stats().mints_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_runner_tokens_use_the_repository_endpoints() {
    let fixture = r#"token_ttl_secs = 3600

[[apps]]
id = 1
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 200
app = 1
account = "octo"
account_type = "User"
repositories = ["tools", "notes"]
permissions = { contents = "write", metadata = "read", administration = "write" }

[[repositories]]
full_name = "octo/tools"

[[repositories]]
full_name = "octo/notes"
"#;
    let env = Env::start(fixture).await;
    let broker = env.broker("");
    let host = env.git_host();
    let runner = broker
        .repository_runner_token(&host, "octo", "tools", false)
        .await
        .unwrap();
    assert_eq!(runner.kind, "registration");
    assert_eq!(runner.org, "octo");
    assert_eq!(runner.url, format!("http://{host}/octo/tools"));
    assert!(!runner.token.expose().is_empty());
    assert_eq!(env.requests(REPO_RUNNER_ROUTE), 1);
    let removal = broker
        .repository_runner_token(&host, "octo", "tools", true)
        .await
        .unwrap();
    assert_eq!(removal.kind, "remove");
    assert_eq!(
        env.requests("POST /repos/{owner}/{repo}/actions/runners/remove-token"),
        1
    );
    assert_eq!(
        env.stats().mints_total,
        1,
        "one installation token, narrowed to tools with administration: write"
    );
    // A user account has no organization runners: the error says what to ask for instead.
    let e = broker.runner_token(&host, "octo", false).await.unwrap_err();
    assert!(
        e.message.contains("ghapp runner-token OWNER/REPO"),
        "{}",
        e.message
    );
}
