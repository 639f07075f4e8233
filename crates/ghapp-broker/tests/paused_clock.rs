//! The broker's time-dependent logic against a scripted GitHub on tokio's paused clock: hours of
//! token life pass in milliseconds, and every expiry, refresh, backoff and rate-limit wait is
//! exact. (The emulator tests cover the same paths against a real HTTP GitHub.)

mod support;

use ghapp_broker::{Broker, Config, ErrorKind};
use ghapp_protocol::api::TokenQuery;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::fake::{FakeGitHub, Script};
use support::{assert_error, perms};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);
const MIN: Duration = Duration::from_secs(60);

struct Setup {
    broker: Broker,
    github: FakeGitHub,
    _dir: tempfile::TempDir,
}

fn setup(daemon: &str, app_extra: &str, token_ttl: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, include_str!("data/test-key.pem")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[daemon]\n{daemon}\n[[app]]\nname = \"acme-bot\"\napp_id = 12345\nprivate_key_file = {:?}\n{app_extra}\n",
        key.display().to_string()
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let github = FakeGitHub::new(token_ttl);
    let broker =
        Broker::start_with_transport(&config, std::sync::Arc::new(github.clone())).unwrap();
    Setup {
        broker,
        github,
        _dir: dir,
    }
}

fn widgets() -> TokenQuery {
    TokenQuery {
        owner: Some("acme".into()),
        repo: Some("widgets".into()),
        ..TokenQuery::default()
    }
}

#[tokio::test(start_paused = true)]
async fn no_token_is_served_with_less_than_min_ttl_left() {
    let s = setup("min_ttl = \"30m\"", "", HOUR);
    let long_job = TokenQuery {
        min_ttl: Some(50 * MIN),
        ..widgets()
    };
    // Three hours in 37-second steps, with and without a caller-supplied min_ttl.
    for step in 0..(3 * 3600 / 37) {
        let token = s.broker.token(&widgets()).await.unwrap();
        let left = s.github.remaining(token.token.expose());
        assert!(left >= 30 * MIN, "step {step}: served with {left:?} left");
        if step % 5 == 0 {
            let token = s.broker.token(&long_job).await.unwrap();
            let left = s.github.remaining(token.token.expose());
            assert!(
                left >= 50 * MIN,
                "step {step}: long job served with {left:?} left"
            );
        }
        tokio::time::sleep(Duration::from_secs(37)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn recently_used_tokens_are_refreshed_in_the_background_so_callers_never_wait() {
    let s = setup("min_ttl = \"30m\"\nrefresh_ahead = \"5m\"", "", HOUR);
    s.broker.token(&widgets()).await.unwrap();
    // Mints now take 10 s: any caller that waits on one would see it.
    s.github.set_latency(Duration::from_secs(10));
    for minute in 0..180 {
        tokio::time::sleep(MIN).await;
        let started = Instant::now();
        let token = s.broker.token(&widgets()).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "minute {minute}: the caller waited {:?}",
            started.elapsed()
        );
        assert!(s.github.remaining(token.token.expose()) >= 30 * MIN);
    }
    let m = s.broker.metrics();
    assert_eq!(m.cache_misses, 1, "only the first request waited");
    // Refreshed when below 35 minutes: every ~25 minutes over three hours.
    assert!(
        (6..=8).contains(&s.github.mints()),
        "{} mints",
        s.github.mints()
    );
    assert!(m.refreshes >= 6, "{m:?}");
    assert_eq!(m.refresh_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn idle_tokens_stop_being_refreshed_and_are_evicted() {
    let s = setup("min_ttl = \"30m\"\nrefresh_window = \"1h\"", "", HOUR);
    s.broker.token(&widgets()).await.unwrap();
    tokio::time::sleep(4 * HOUR).await;
    // Served once at t=0: refreshed at most twice within the following hour, then left alone.
    assert!(s.github.mints() <= 3, "{} mints", s.github.mints());
    assert!(
        s.broker.status().tokens.is_empty(),
        "expired tokens are evicted"
    );
}

#[tokio::test(start_paused = true)]
async fn github_outage_serves_cached_tokens_on_their_margin_and_never_an_expired_one() {
    let s = setup("min_ttl = \"30m\"\ndegraded_min_ttl = \"5m\"", "", HOUR);
    let first = s.broker.token(&widgets()).await.unwrap();
    s.github.fail_all(503);
    // Below min_ttl (30m) but above the degraded margin (5m): served, and status says why.
    tokio::time::sleep(40 * MIN).await;
    let token = s.broker.token(&widgets()).await.unwrap();
    assert_eq!(token.token, first.token);
    let left = s.github.remaining(token.token.expose());
    assert!(left < 30 * MIN && left >= 5 * MIN, "{left:?}");
    let status = s.broker.status();
    assert!(status.degraded);
    let reason = status.degraded_reason.unwrap();
    assert!(
        reason.contains("acme-bot") && reason.contains("503"),
        "{reason}"
    );
    assert!(s.broker.metrics().degraded_serves >= 1);
    // A caller's own min_ttl is never relaxed.
    let strict = TokenQuery {
        min_ttl: Some(25 * MIN),
        ..widgets()
    };
    assert_error(
        s.broker.token(&strict).await,
        ErrorKind::Unavailable,
        "no cached token with enough life left for acme/widgets",
    );
    // Below the margin: a clear 503, never the nearly expired token.
    tokio::time::sleep(16 * MIN).await;
    let e = assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unavailable,
        "GitHub unreachable (",
    );
    assert!(
        e.message
            .ends_with("no cached token with enough life left for acme/widgets"),
        "{}",
        e.message
    );
    // GitHub back: a fresh token once the App's hold-off after the failures ends (at most
    // 10 s), and no longer degraded.
    s.github.clear();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let token = s.broker.token(&widgets()).await.unwrap();
    assert_ne!(token.token, first.token);
    assert!(s.github.remaining(token.token.expose()) >= 30 * MIN);
    assert!(!s.broker.status().degraded);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_requests_cause_one_look_up_and_one_mint() {
    let s = setup("", "", HOUR);
    s.github.set_latency(Duration::from_millis(300));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let broker = s.broker.clone();
            tokio::spawn(async move { broker.token(&widgets()).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        tokens.insert(task.await.unwrap().unwrap().token);
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(s.github.mints(), 1);
    assert_eq!(s.github.requests("GET /repos/acme/widgets/installation"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_cancel_the_mint() {
    let s = setup("", "", HOUR);
    s.github.set_latency(Duration::from_secs(5));
    let broker = s.broker.clone();
    let impatient = tokio::spawn(async move { broker.token(&widgets()).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    impatient.abort();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(s.github.mints(), 1, "the mint went on");
    s.github.set_latency(Duration::ZERO);
    let started = Instant::now();
    s.broker.token(&widgets()).await.unwrap();
    assert_eq!(s.github.mints(), 1, "and its token is served from cache");
    assert!(started.elapsed() < Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn primary_rate_limit_fails_fast_and_holds_requests_until_reset() {
    let s = setup("retry_budget = \"30s\"", "", HOUR);
    let reset = s.github.now_wall() + 10 * MIN;
    let reset = reset
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    s.github.script(
        "POST /app/installations/100/access_tokens",
        Script::Status {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset),
            ],
            message: "API rate limit exceeded".into(),
        },
        Some(1),
    );
    let started = Instant::now();
    let e = assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unavailable,
        "rate limited by GitHub until ",
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "failed fast, did not sleep {:?}",
        started.elapsed()
    );
    assert!(
        e.message.contains("no cached token with enough life left"),
        "{}",
        e.message
    );
    let before = s.github.total_requests();
    assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unavailable,
        "rate limited",
    );
    assert_eq!(
        s.github.total_requests(),
        before,
        "nothing sent to GitHub before the reset"
    );
    tokio::time::sleep(10 * MIN).await;
    s.broker.token(&widgets()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_after_within_the_budget_is_waited_out() {
    let s = setup("retry_budget = \"30s\"", "", HOUR);
    s.github.script(
        "POST /app/installations/100/access_tokens",
        Script::Status {
            status: 429,
            headers: vec![("retry-after".into(), "3".into())],
            message: "You have exceeded a secondary rate limit".into(),
        },
        Some(1),
    );
    let started = Instant::now();
    s.broker.token(&widgets()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        s.github
            .requests("POST /app/installations/100/access_tokens"),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_and_dropped_connections_are_retried_with_backoff_then_given_up() {
    let s = setup("", "", HOUR);
    let route = "POST /app/installations/100/access_tokens";
    s.github.script(
        route,
        Script::Status {
            status: 502,
            headers: vec![],
            message: "Server Error".into(),
        },
        Some(1),
    );
    s.github.script(route, Script::Drop, Some(1));
    s.broker.token(&widgets()).await.unwrap();
    assert_eq!(s.github.requests(route), 3);

    let gadgets = TokenQuery {
        repo: Some("gadgets".into()),
        ..widgets()
    };
    s.github.script(
        route,
        Script::Status {
            status: 503,
            headers: vec![],
            message: "Service Unavailable".into(),
        },
        None,
    );
    let e = assert_error(
        s.broker.token(&gadgets).await,
        ErrorKind::Unavailable,
        "HTTP 503",
    );
    assert!(e.message.contains("after 4 attempts"), "{}", e.message);
    assert_eq!(s.github.requests(route), 7, "four attempts, then no more");
}

#[tokio::test(start_paused = true)]
async fn a_hung_github_times_out_within_the_budget() {
    let s = setup("request_timeout = \"5s\"\nretry_budget = \"12s\"", "", HOUR);
    s.github.script("", Script::Hang, None);
    let started = Instant::now();
    assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unavailable,
        "timed out",
    );
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(14), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn client_errors_404_and_422_are_never_retried() {
    let s = setup("", "", HOUR);
    let route = "POST /app/installations/100/access_tokens";
    s.github.script(
        route,
        Script::Status {
            status: 422,
            headers: vec![],
            message: "The permissions requested are not granted to this installation.".into(),
        },
        Some(1),
    );
    assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unprocessable,
        "not granted to this installation",
    );
    assert_eq!(s.github.requests(route), 1);
    let nobody = TokenQuery {
        owner: Some("nobody".into()),
        repo: Some("x".into()),
        ..widgets()
    };
    assert_error(
        s.broker.token(&nobody).await,
        ErrorKind::NotFound,
        "GitHub App acme-bot (id 12345) is not installed on nobody/x",
    );
    assert_eq!(s.github.requests("GET /repos/nobody/x/installation"), 1);
}

#[tokio::test(start_paused = true)]
async fn expiry_follows_githubs_date_not_the_local_clock() {
    // GitHub's clock is 3 hours behind ours: by the local clock every token "expired" long ago.
    let s = setup("min_ttl = \"30m\"", "", HOUR);
    s.github.set_clock_offset(-3 * 3600);
    let first = s.broker.token(&widgets()).await.unwrap();
    tokio::time::sleep(20 * MIN).await;
    let again = s.broker.token(&widgets()).await.unwrap();
    assert_eq!(
        first.token, again.token,
        "still 40 minutes of life by GitHub's clock"
    );
    assert_eq!(s.github.mints(), 1);
}

#[tokio::test(start_paused = true)]
async fn negative_answers_are_cached_for_negative_cache_ttl() {
    let s = setup("negative_cache_ttl = \"5m\"", "", HOUR);
    let nobody = TokenQuery {
        owner: Some("nobody".into()),
        ..TokenQuery::default()
    };
    for _ in 0..10 {
        assert_error(
            s.broker.token(&nobody).await,
            ErrorKind::NotFound,
            "is not installed on account nobody",
        );
    }
    assert_eq!(s.github.requests("GET /orgs/nobody/installation"), 1);
    assert_eq!(s.github.requests("GET /users/nobody/installation"), 1);
    tokio::time::sleep(5 * MIN + Duration::from_secs(1)).await;
    assert_error(
        s.broker.token(&nobody).await,
        ErrorKind::NotFound,
        "not installed",
    );
    assert_eq!(s.github.requests("GET /orgs/nobody/installation"), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_installation_mapping_is_used_while_github_is_down() {
    let s = setup(
        "installation_cache_ttl = \"10m\"\nmin_ttl = \"30m\"",
        "",
        HOUR,
    );
    s.broker.token(&widgets()).await.unwrap();
    s.github.fail_all(503);
    tokio::time::sleep(20 * MIN).await;
    // The mapping expired 10 minutes ago and GitHub is down, but the token still has 40 minutes.
    s.broker.token(&widgets()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn sends_githubs_headers_and_narrows_to_the_repo() {
    let s = setup("", "permissions = { contents = \"read\" }", HOUR);
    let token = s.broker.token(&widgets()).await.unwrap();
    assert_eq!(token.repositories, vec!["widgets".to_string()]);
    assert_eq!(token.permissions, perms("contents:read"));
    let headers = s.github.headers_seen();
    for request in &headers {
        let get = |name: &str| {
            request
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("user-agent"),
            Some(concat!("ghapp/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(get("accept"), Some("application/vnd.github+json"));
        assert_eq!(get("x-github-api-version"), Some("2022-11-28"));
        assert!(get("authorization").is_some_and(|v| v.starts_with("Bearer ey")));
    }
}

#[tokio::test(start_paused = true)]
async fn user_accounts_resolve_through_users_after_orgs_404() {
    let s = setup("", "", HOUR);
    let octo = TokenQuery {
        owner: Some("octo".into()),
        ..TokenQuery::default()
    };
    let token = s.broker.token(&octo).await.unwrap();
    assert_eq!(token.installation_id, 200);
    assert!(
        token.repositories.is_empty(),
        "owner only: installation-wide"
    );
    assert_eq!(s.github.requests("GET /orgs/octo/installation"), 1);
    assert_eq!(s.github.requests("GET /users/octo/installation"), 1);
}

#[tokio::test(start_paused = true)]
async fn status_and_metrics_hold_no_secret() {
    let s = setup("", "", HOUR);
    let token = s.broker.token(&widgets()).await.unwrap();
    let status = s.broker.status();
    let text = format!(
        "{status:?} {:?} {token:?} {:?}",
        s.broker.metrics(),
        s.broker
    );
    assert!(!text.contains(token.token.expose()), "{text}");
    assert_eq!(status.tokens.len(), 1);
    assert_eq!(status.tokens[0].fingerprint, token.token.fingerprint());
    assert!(status.tokens[0].remaining_secs > 3500);
    assert_eq!(status.installations.len(), 1);
    assert!(status.apps[0].key_fingerprint.starts_with("sha256:"));
    assert_eq!(status.apps[0].api_url, "https://api.github.com");
    assert_eq!(status.apps[0].rate_limit_remaining, Some(4999));
    let m = s.broker.metrics();
    assert_eq!(
        (
            m.cache_misses,
            m.cache_hits,
            m.mints.get("acme-bot").copied()
        ),
        (1, 0, Some(1))
    );
    assert_eq!(m.mint_latency.count, 1);
    assert_eq!(m.installation_lookups, 1);
}

#[tokio::test(start_paused = true)]
async fn runner_tokens_use_a_narrowed_installation_token() {
    let s = setup("", "", HOUR);
    let runner = s
        .broker
        .runner_token("github.com", "acme", false)
        .await
        .unwrap();
    assert_eq!(runner.kind, "registration");
    assert_eq!(runner.url, "https://github.com/acme");
    assert_eq!(
        s.github
            .requests("POST /orgs/acme/actions/runners/registration-token"),
        1
    );
    let removal = s
        .broker
        .runner_token("github.com", "acme", true)
        .await
        .unwrap();
    assert_eq!(removal.kind, "remove");
    assert_eq!(
        s.github.mints(),
        1,
        "the runner-scoped installation token is cached"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_background_refresh() {
    let s = setup("min_ttl = \"30m\"", "", HOUR);
    s.broker.token(&widgets()).await.unwrap();
    s.broker.shutdown();
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(s.github.mints(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_jwt_drops_the_apps_cached_tokens() {
    let s = setup("", "", HOUR);
    s.broker.token(&widgets()).await.unwrap();
    assert_eq!(s.broker.status().tokens.len(), 1);
    s.github.script(
        "",
        Script::Status {
            status: 401,
            headers: vec![],
            message: "A JSON web token could not be decoded".into(),
        },
        None,
    );
    let gadgets = TokenQuery {
        repo: Some("gadgets".into()),
        ..widgets()
    };
    let e = assert_error(
        s.broker.token(&gadgets).await,
        ErrorKind::Internal,
        "GitHub rejected the JWT of App acme-bot (id 12345)",
    );
    assert!(
        e.message.contains("check app_id/client_id"),
        "{}",
        e.message
    );
    assert!(
        s.broker.status().tokens.is_empty(),
        "the App's cached tokens were dropped"
    );
    assert!(
        s.broker
            .status()
            .degraded_reason
            .unwrap()
            .contains("rejected the JWT")
    );
    assert_eq!(
        s.github.requests("GET /repos/acme/gadgets/installation"),
        1,
        "a 401 is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn plain_http_is_served_only_by_insecure_http_apps() {
    let s = setup("", "", HOUR);
    let http = TokenQuery {
        protocol: Some("http".into()),
        ..widgets()
    };
    assert_error(
        s.broker.token(&http).await,
        ErrorKind::NotFound,
        "served over https only",
    );
    assert_eq!(s.github.total_requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn owner_less_requests_use_the_only_installation_or_say_what_to_set() {
    let s = setup("", "", HOUR);
    let owner_less = TokenQuery::default();
    let e = assert_error(
        s.broker.token(&owner_less).await,
        ErrorKind::Ambiguous,
        "2 installations (acme, octo)",
    );
    assert!(
        e.message
            .contains("git config --global credential.useHttpPath true"),
        "{}",
        e.message
    );
    let only_acme = setup("", "owners = [\"acme\"]", HOUR);
    let token = only_acme.broker.token(&owner_less).await.unwrap();
    assert_eq!((token.installation_id, token.owner.as_str()), (100, "acme"));
    assert!(token.repositories.is_empty());
    only_acme.broker.token(&owner_less).await.unwrap();
    assert_eq!(
        only_acme.github.requests("GET /app/installations"),
        1,
        "the listing is cached"
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_minted_with_less_than_min_ttl_is_refused() {
    // GitHub minting 10-minute tokens while min_ttl is 30m: a clear error, not a short token.
    let s = setup("min_ttl = \"30m\"", "", 10 * MIN);
    assert_error(
        s.broker.token(&widgets()).await,
        ErrorKind::Unprocessable,
        "less than the 30m required (min_ttl)",
    );
}
