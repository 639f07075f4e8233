//! The broker against the GitHub emulator (in-process, real HTTP on 127.0.0.1): resolution,
//! narrowing, ceilings, both token formats, GHES layout, single-flight, every error kind, clock
//! skew, rate limits, replication delay, reinstalls, invalidation and reload. Each test starts
//! its own emulator; all of them are fast (the long outage test lives in outage.rs).

mod support;

use ghapp_broker::{Broker, ErrorKind};
use ghapp_protocol::api::TokenQuery;
use github_emulator::admin::{Fault, FaultServer};
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use support::{Env, MINT_ROUTE, assert_error, basic_fixture, perms, runner_fixture, secs_until};

/// Longer than GitHub's replication delay (5 s): `Broker::invalidate` keeps younger tokens.
const PAST_REPLICATION_DELAY: Duration = Duration::from_millis(5100);

fn status_fault(
    route: Option<&str>,
    status: u16,
    retry_after: Option<u64>,
    times: Option<u64>,
) -> Fault {
    Fault::Status {
        route: route.map(str::to_string),
        status,
        retry_after,
        times,
        message: None,
        server: FaultServer::Api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_one_repo_mint_exactly_once() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    let query = env.query("acme", Some("widgets"));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (broker, query) = (broker.clone(), query.clone());
            tokio::spawn(async move { broker.token(&query).await })
        })
        .collect();
    let mut tokens = HashSet::new();
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        tokens.insert(token.token.expose().to_string());
    }
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    // Read through the admin API itself, as any client of the emulator would.
    let stats: github_emulator::admin::Stats =
        reqwest::get(format!("{}/_emulator/stats", env.emulator.urls.admin_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(stats.mints_total, 1, "{stats:?}");
    assert_eq!(stats.mints.get("100"), Some(&1));
    assert_eq!(
        env.requests("GET /repos/{owner}/{repo}/installation"),
        1,
        "one look-up too"
    );
    let metrics = broker.metrics();
    assert_eq!(metrics.cache_hits + metrics.cache_misses, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_narrowed_to_the_repo_and_served_from_cache() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("min_ttl = \"30m\"");
    let first = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(first.repositories, vec!["widgets".to_string()]);
    assert_eq!(first.installation_id, 100);
    assert_eq!(
        (first.owner.as_str(), first.app.as_str()),
        ("acme", "test-app")
    );
    assert_eq!(first.host, env.git_host());
    assert!(first.token.expose().starts_with("ghs_"));
    let left = secs_until(&first.expires_at);
    assert!(
        (1790..=3600).contains(&left),
        "expires_at {} is {left}s away",
        first.expires_at
    );
    let again = broker
        .token(&env.query("ACME", Some("Widgets")))
        .await
        .unwrap();
    assert_eq!(
        again.token, first.token,
        "owner/repo compare case-insensitively"
    );
    let other = broker
        .token(&env.query("acme", Some("gadgets")))
        .await
        .unwrap();
    assert_ne!(
        other.token, first.token,
        "another repository is another token"
    );
    assert_eq!(env.stats().mints_total, 2);

    let wide =
        Broker::start(&env.config("", &env.app_toml("wide", "installation_wide = true"))).unwrap();
    let token = wide
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert!(
        token.repositories.is_empty(),
        "installation_wide: not narrowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_stay_within_the_ceiling() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = Broker::start(&env.config(
        "",
        &env.app_toml(
            "test-app",
            "permissions = { contents = \"read\", issues = \"write\" }",
        ),
    ))
    .unwrap();
    // Nothing asked: the ceiling, limited to what the installation has.
    let token = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(token.permissions, perms("contents:read,metadata:read"));
    let over = TokenQuery {
        permissions: perms("contents:write"),
        ..env.query("acme", Some("widgets"))
    };
    assert_error(
        broker.token(&over).await,
        ErrorKind::Unprocessable,
        "permission contents=write exceeds the ceiling for test-app",
    );
    // Within the ceiling, but the installation was never granted it: GitHub says no (422).
    let ungranted = TokenQuery {
        permissions: perms("issues:read"),
        ..env.query("acme", Some("widgets"))
    };
    let e = assert_error(
        broker.token(&ungranted).await,
        ErrorKind::Unprocessable,
        "not granted to this installation",
    );
    // The error carries what it is about as data, not only in its message.
    assert_eq!(
        (e.app(), e.installation_id(), e.target(), e.github_status()),
        (Some("test-app"), Some(100), Some("acme/widgets"), Some(422)),
        "{e:?}"
    );
    assert_eq!(
        e.github_route(),
        Some("POST /app/installations/100/access_tokens")
    );
    assert_eq!(
        broker
            .metrics()
            .github_failures
            .get(&("test-app".to_string(), 422)),
        Some(&1),
        "metrics count the failure by App and GitHub's status"
    );
    assert!(
        e.github_message()
            .is_some_and(|m| m.contains("not granted to this installation")),
        "{e:?}"
    );
    assert!(
        e.message.contains("test-app (id 1)") && e.message.contains("acme/widgets"),
        "{}",
        e.message
    );
    assert_eq!(
        env.requests(MINT_ROUTE),
        2,
        "the ceiling check costs no request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_resolve_through_orgs_then_users() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    let acme = broker.token(&env.query("acme", None)).await.unwrap();
    assert_eq!(acme.installation_id, 100);
    assert!(acme.repositories.is_empty());
    let octo = broker.token(&env.query("octo", None)).await.unwrap();
    assert_eq!(octo.installation_id, 200);
    assert_eq!(env.requests("GET /orgs/{org}/installation"), 2);
    assert_eq!(
        env.requests("GET /users/{username}/installation"),
        1,
        "only after the org 404"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_installed_is_cached_negatively() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("negative_cache_ttl = \"1s\"");
    for _ in 0..5 {
        assert_error(
            broker.token(&env.query("acme", Some("private"))).await,
            ErrorKind::NotFound,
            "GitHub App test-app (id 1) is not installed on acme/private",
        );
    }
    assert_eq!(env.requests("GET /repos/{owner}/{repo}/installation"), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_error(
        broker.token(&env.query("acme", Some("private"))).await,
        ErrorKind::NotFound,
        "not installed",
    );
    assert_eq!(
        env.requests("GET /repos/{owner}/{repo}/installation"),
        2,
        "asked again after negative_cache_ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghes_layout_from_the_host() {
    let env = Env::start(&basic_fixture(3600)).await;
    // A GHES host: no api_url, so http://HOST/api/v3 is derived (insecure_http for the emulator).
    let app = format!(
        "[[app]]\nname = \"ghes\"\nhost = {:?}\napp_id = 1\nprivate_key_file = {:?}\ninsecure_http = true\n",
        env.api_host(),
        env.key_path().display().to_string()
    );
    let broker = Broker::start(&env.config("", &app)).unwrap();
    assert_eq!(
        broker.status().apps[0].api_url,
        format!("http://{}/api/v3", env.api_host())
    );
    let query = TokenQuery {
        host: Some(env.api_host()),
        ..env.query("acme", Some("widgets"))
    };
    let token = broker.token(&query).await.unwrap();
    assert_eq!(token.repositories, vec!["widgets".to_string()]);
    assert_eq!(env.stats().mints_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_token_formats_are_opaque() {
    let env = Env::start(&basic_fixture(3600)).await;
    let stateless =
        Broker::start(&env.config("", &env.app_toml("s", "token_format = \"stateless\""))).unwrap();
    let long = stateless
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    let long = long.token.expose();
    assert!(
        long.starts_with("ghs_1_") && long.len() > 200 && long.matches('.').count() == 2,
        "{}",
        long.len()
    );
    let classic =
        Broker::start(&env.config("", &env.app_toml("c", "token_format = \"classic\""))).unwrap();
    let short = classic
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(short.token.expose().len(), 40);
    // Both are cached and invalidated alike (once older than GitHub's replication delay: a
    // younger token is kept, see Broker::invalidate).
    tokio::time::sleep(PAST_REPLICATION_DELAY).await;
    assert!(stateless.invalidate(long));
    assert!(!stateless.invalidate(long));
    assert!(classic.invalidate(short.token.expose()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_kinds_are_typed_and_actionable() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    let unknown_host = TokenQuery {
        host: Some("ghe.example.com".into()),
        ..env.query("acme", Some("widgets"))
    };
    assert_error(
        broker.token(&unknown_host).await,
        ErrorKind::NotFound,
        "no GitHub App is configured for host ghe.example.com",
    );
    assert_error(
        broker.token(&env.query("nobody", Some("x"))).await,
        ErrorKind::NotFound,
        "GitHub App test-app (id 1) is not installed on nobody/x",
    );
    let owner_less = TokenQuery {
        owner: None,
        repo: None,
        ..env.query("acme", None)
    };
    assert_error(
        broker.token(&owner_less).await,
        ErrorKind::Ambiguous,
        "credential.useHttpPath true",
    );
    let too_long = TokenQuery {
        min_ttl: Some(Duration::from_secs(7200)),
        ..env.query("acme", Some("widgets"))
    };
    assert_error(
        broker.token(&too_long).await,
        ErrorKind::BadRequest,
        "installation tokens live one hour",
    );
    let bad_name = TokenQuery {
        owner: Some("ac/me".into()),
        ..env.query("acme", None)
    };
    assert_error(
        broker.token(&bad_name).await,
        ErrorKind::BadRequest,
        "invalid owner",
    );

    let only_acme =
        Broker::start(&env.config("", &env.app_toml("acme-only", "owners = [\"acme\"]"))).unwrap();
    assert_error(
        only_acme.token(&env.query("octo", Some("tools"))).await,
        ErrorKind::Forbidden,
        "account octo is not in the owners of any GitHub App",
    );
    // With owners = ["acme"], the host's only reachable installation serves owner-less requests.
    let token = only_acme.token(&owner_less).await.unwrap();
    assert_eq!(token.installation_id, 100);

    env.fault(Fault::Suspend { installation: 100 });
    let e = assert_error(
        broker.token(&env.query("acme", Some("gadgets"))).await,
        ErrorKind::Forbidden,
        "is suspended",
    );
    assert!(
        e.message
            .starts_with("GitHub App test-app (id 1) installation 100 (acme) is suspended"),
        "{}",
        e.message
    );
    env.fault(Fault::Unsuspend { installation: 100 });

    env.fault(status_fault(None, 503, None, None));
    let e = assert_error(
        broker.token(&env.query("octo", Some("tools"))).await,
        ErrorKind::Unavailable,
        "GitHub unreachable (",
    );
    assert!(
        e.message
            .ends_with("no cached token with enough life left for octo/tools"),
        "{}",
        e.message
    );
    assert_eq!(
        (e.app(), e.target(), e.github_status()),
        (Some("test-app"), Some("octo/tools"), None),
        "no answer from GitHub, so no status: {e:?}"
    );
    env.fault(Fault::Clear);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_found_at_mint_time_is_remembered_for_the_negative_ttl() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("negative_cache_ttl = \"1s\"");
    broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    env.fault(Fault::Suspend { installation: 100 });
    // The mapping is cached (not suspended); the mint says suspended.
    let read_only = TokenQuery {
        permissions: perms("contents:read"),
        ..env.query("acme", Some("widgets"))
    };
    assert_error(
        broker.token(&read_only).await,
        ErrorKind::Forbidden,
        "installation 100 (acme) is suspended",
    );
    let mints_asked = env.requests(MINT_ROUTE);
    assert_error(
        broker.token(&read_only).await,
        ErrorKind::Forbidden,
        "is suspended",
    );
    assert_eq!(
        env.requests(MINT_ROUTE),
        mints_asked,
        "remembered: no second mint attempt"
    );
    env.fault(Fault::Unsuspend { installation: 100 });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    broker.token(&read_only).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_reported_as_a_bad_key() {
    let env = Env::start(&basic_fixture(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, include_str!("data/other-key.pem")).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = env.app_toml("test-app", "").replace(
        &env.key_path().display().to_string(),
        &wrong.display().to_string(),
    );
    let broker = Broker::start(&env.config("", &app)).unwrap();
    let e = assert_error(
        broker.token(&env.query("acme", Some("widgets"))).await,
        ErrorKind::Internal,
        "GitHub rejected the JWT of App test-app (id 1)",
    );
    assert!(
        e.message.contains("A JSON web token could not be decoded"),
        "{}",
        e.message
    );
    let status = broker.status();
    assert!(status.degraded);
    assert!(status.degraded_reason.unwrap().contains("rejected the JWT"));
    assert_eq!(env.stats().jwt_rejections.get("undecodable"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_corrected_from_githubs_date_with_one_retry() {
    for offset in [-300i64, 300, 700] {
        let env = Env::start(&basic_fixture(3600)).await;
        env.fault(Fault::ClockOffset { secs: offset });
        let broker = env.broker("");
        let token = broker
            .token(&env.query("acme", Some("widgets")))
            .await
            .unwrap();
        assert!(!token.token.expose().is_empty());
        let rejected: u64 = env.stats().jwt_rejections.values().sum();
        assert!(
            rejected <= 1,
            "offset {offset}: {rejected} rejections: one retry at most"
        );
        if offset != 300 {
            assert_eq!(rejected, 1, "offset {offset}: GitHub refused the first JWT");
        }
        // The correction sticks: later calls are not rejected again.
        broker
            .token(&env.query("acme", Some("gadgets")))
            .await
            .unwrap();
        broker.token(&env.query("octo", None)).await.unwrap();
        assert_eq!(
            env.stats().jwt_rejections.values().sum::<u64>(),
            rejected,
            "offset {offset}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_within_the_budget_and_fail_fast_beyond_it() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("retry_budget = \"10s\"");
    let mint_glob = "POST /app/installations/*/access_tokens";
    env.fault(status_fault(Some(mint_glob), 429, Some(1), Some(1)));
    let started = Instant::now();
    broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for retry-after: {:?}",
        started.elapsed()
    );
    assert_eq!(env.requests(MINT_ROUTE), 2);

    env.fault(status_fault(Some(mint_glob), 403, Some(120), Some(1)));
    let started = Instant::now();
    let e = assert_error(
        broker.token(&env.query("acme", Some("gadgets"))).await,
        ErrorKind::Unavailable,
        "rate limited by GitHub until",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast: {:?}",
        started.elapsed()
    );
    assert!(
        e.message
            .contains("no cached token with enough life left for acme/gadgets"),
        "{}",
        e.message
    );
    let asked = env.stats().requests.values().sum::<u64>();
    assert_error(
        broker.token(&env.query("acme", Some("gadgets"))).await,
        ErrorKind::Unavailable,
        "rate limited",
    );
    assert_eq!(
        env.stats().requests.values().sum::<u64>(),
        asked,
        "nothing sent inside the wait"
    );
    // Cached tokens keep serving meanwhile.
    broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert!(broker.status().degraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_rate_limit_without_retry_after_fails_fast() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("retry_budget = \"10s\"");
    env.fault(status_fault(
        Some("POST /app/installations/*/access_tokens"),
        403,
        None,
        Some(1),
    ));
    let started = Instant::now();
    assert_error(
        broker.token(&env.query("acme", Some("widgets"))).await,
        ErrorKind::Unavailable,
        "rate limited by GitHub until",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    env.fault(status_fault(
        Some("POST /app/installations/*/access_tokens"),
        502,
        None,
        Some(1),
    ));
    env.fault(Fault::Drop {
        route: Some("POST /app/installations/*/access_tokens".into()),
        times: Some(1),
        server: FaultServer::Api,
    });
    broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(env.stats().mints_total, 1);
    assert!(env.requests(MINT_ROUTE) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_tokens_survive_replication_delay() {
    let env = Env::start(&runner_fixture(3600)).await;
    let broker = env.broker("");
    env.fault(Fault::ReplicationDelay { secs: 2 });
    let runner = broker
        .runner_token(&env.git_host(), "acme", false)
        .await
        .unwrap();
    assert_eq!(runner.kind, "registration");
    assert_eq!(runner.org, "acme");
    assert_eq!(runner.url, format!("http://{}/acme", env.git_host()));
    assert!(!runner.token.expose().is_empty());
    let route = "POST /orgs/{org}/actions/runners/registration-token";
    assert!(
        env.requests(route) >= 2,
        "the fresh token was refused at first ({})",
        env.requests(route)
    );
    let removal = broker
        .runner_token(&env.git_host(), "acme", true)
        .await
        .unwrap();
    assert_eq!(removal.kind, "remove");
    assert_eq!(
        env.stats().mints_total,
        1,
        "one installation token, narrowed to runner administration"
    );
    // An organization whose installation lacks the permission: GitHub refuses the narrowing.
    let e = broker
        .runner_token(&env.git_host(), "beta", false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unprocessable, "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinstalled_app_is_resolved_again() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    let before = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    env.fault(Fault::Reinstall {
        installation: 100,
        new_id: Some(101),
    });
    tokio::time::sleep(PAST_REPLICATION_DELAY).await;
    assert!(
        broker.invalidate(before.token.expose()),
        "git reported the old token rejected"
    );
    let after = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_eq!(after.installation_id, 101);
    assert_eq!(env.requests("GET /repos/{owner}/{repo}/installation"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_drops_exactly_one_cached_token() {
    let env = Env::start(&basic_fixture(3600)).await;
    let broker = env.broker("");
    let widgets = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    let gadgets = broker
        .token(&env.query("acme", Some("gadgets")))
        .await
        .unwrap();
    assert!(!broker.invalidate("ghs_not_a_cached_token_at_all_0000000000"));
    // Younger than GitHub's replication delay: a 401 for it is not a revocation, so it stays.
    assert!(!broker.invalidate(widgets.token.expose()));
    tokio::time::sleep(PAST_REPLICATION_DELAY).await;
    assert!(broker.invalidate(widgets.token.expose()));
    let new_widgets = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    assert_ne!(new_widgets.token, widgets.token);
    assert_eq!(
        broker
            .token(&env.query("acme", Some("gadgets")))
            .await
            .unwrap()
            .token,
        gadgets.token
    );
    assert_eq!(env.stats().mints_total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_tokens_of_unchanged_apps_only() {
    let env = Env::start(&basic_fixture(3600)).await;
    let config = env.config("", &env.app_toml("test-app", ""));
    let broker = Broker::start(&config).unwrap();
    let token = broker
        .token(&env.query("acme", Some("widgets")))
        .await
        .unwrap();
    broker
        .reload(&env.config("negative_cache_ttl = \"1m\"", &env.app_toml("renamed", "")))
        .unwrap();
    assert_eq!(
        broker
            .token(&env.query("acme", Some("widgets")))
            .await
            .unwrap()
            .token,
        token.token
    );
    assert_eq!(
        env.stats().mints_total,
        1,
        "same App identity and key: tokens kept"
    );
    // A broken config is refused and the old one stays.
    let broken = env.app_toml("test-app", "").replace(
        &env.key_path().display().to_string(),
        "/nonexistent/key.pem",
    );
    let e = broker.reload(&env.config("", &broken)).unwrap_err();
    assert!(e.message.contains("/nonexistent/key.pem"), "{}", e.message);
    assert_eq!(
        broker
            .token(&env.query("acme", Some("widgets")))
            .await
            .unwrap()
            .token,
        token.token
    );
    // Another key: another identity, tokens dropped.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, include_str!("data/other-key.pem")).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rotated = env.app_toml("test-app", "").replace(
        &env.key_path().display().to_string(),
        &other.display().to_string(),
    );
    broker.reload(&env.config("", &rotated)).unwrap();
    assert!(broker.status().tokens.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_refreshed_and_never_served_below_min_ttl() {
    // Tokens live 10 s; min_ttl 5 s; refreshed when below 7 s. Over 6 s of steady requests no
    // caller sees less than min_ttl, and the refresher, not the callers, mints.
    let env = Env::start(&basic_fixture(10)).await;
    let broker = env.broker("min_ttl = \"5s\"\nrefresh_ahead = \"2s\"\ndegraded_min_ttl = \"1s\"");
    let query = env.query("acme", Some("widgets"));
    let started = Instant::now();
    let mut seen = HashSet::new();
    while started.elapsed() < Duration::from_secs(6) {
        let token = broker.token(&query).await.unwrap();
        let left = secs_until(&token.expires_at);
        assert!(
            left >= 4,
            "served {} with {left}s left (min_ttl 5s; expires_at has whole seconds)",
            token.token
        );
        seen.insert(token.token.expose().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = broker.metrics();
    assert!(seen.len() >= 2, "tokens were replaced ({})", seen.len());
    assert!(metrics.refreshes >= 1, "{metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_trusted_through_ca_file() {
    let state = tempfile::tempdir().unwrap();
    let options = github_emulator::Options {
        tls: true,
        ..github_emulator::Options::default()
    };
    let emulator = github_emulator::Emulator::start_with(
        &basic_fixture(3600),
        state.path(),
        state.path(),
        options,
    )
    .await
    .unwrap();
    let ca_file = emulator.urls.ca_file.clone().expect("a CA with --tls");
    assert!(emulator.urls.api_url.starts_with("https://"));
    let app = |extra: &str| {
        format!(
            "[[app]]\nname = \"tls\"\nhost = \"ghe.test\"\napi_url = {:?}\napp_id = 1\nprivate_key_file = {:?}\n{extra}\n",
            emulator.urls.api_url,
            emulator.state_dir().join("app1.pem").display().to_string()
        )
    };
    let query = TokenQuery {
        host: Some("ghe.test".into()),
        owner: Some("acme".into()),
        repo: Some("widgets".into()),
        ..TokenQuery::default()
    };
    let parse = |text: String| {
        ghapp_broker::Config::parse(
            &format!("[daemon]\nretry_budget = \"3s\"\n{text}"),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    };
    let trusted = Broker::start(&parse(app(&format!("ca_file = {ca_file:?}")))).unwrap();
    assert_eq!(
        trusted.token(&query).await.unwrap().repositories,
        vec!["widgets".to_string()]
    );
    let untrusted = Broker::start(&parse(app(""))).unwrap();
    let e = untrusted.token(&query).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(
        e.message.contains("certificate") && e.message.contains("ca_file"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_less_requests_page_through_every_installation() {
    // 120 installations: GET /app/installations needs two pages of 100.
    let mut fixture = String::from(
        "token_ttl_secs = 3600\n[[apps]]\nid = 1\nslug = \"ghapp-test\"\nprivate_key_out = \"app1.pem\"\n",
    );
    for i in 0..120 {
        fixture.push_str(&format!(
            "[[installations]]\nid = {}\napp = 1\naccount = \"org{i}\"\naccount_type = \"Organization\"\npermissions = {{ contents = \"read\" }}\n",
            1000 + i
        ));
    }
    let env = Env::start(&fixture).await;
    let owner_less = TokenQuery {
        owner: None,
        repo: None,
        ..env.query("x", None)
    };
    let all = env.broker("");
    assert_error(
        all.token(&owner_less).await,
        ErrorKind::Ambiguous,
        "120 installations",
    );
    let one =
        Broker::start(&env.config("", &env.app_toml("one", "owners = [\"org115\"]"))).unwrap();
    let token = one.token(&owner_less).await.unwrap();
    assert_eq!(
        (token.installation_id, token.owner.as_str()),
        (1115, "org115"),
        "found on the second page"
    );
    assert_eq!(
        env.requests("GET /app/installations"),
        4,
        "two pages per broker"
    );
}
