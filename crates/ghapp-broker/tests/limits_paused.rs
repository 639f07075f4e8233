//! GitHub as it really is, on tokio's paused clock against a scripted GitHub: held work resumes
//! spread out after a rate limit, repeated secondary limits wait exponentially longer, and a
//! redirected installation look-up is followed only on the App's own API.

mod support;

use ghapp_broker::{Broker, Config, ErrorKind};
use ghapp_protocol::api::TokenQuery;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::fake::{FakeGitHub, Script};
use support::{assert_error, perms};
use tokio::time::Instant;

const MIN: Duration = Duration::from_secs(60);
const MINT: &str = "POST /app/installations/100/access_tokens";

struct Setup {
    broker: Broker,
    github: FakeGitHub,
    _dir: tempfile::TempDir,
}

fn setup(daemon: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, include_str!("data/test-key.pem")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[daemon]\n{daemon}\n[[app]]\nname = \"acme-bot\"\napp_id = 12345\nprivate_key_file = {:?}\n",
        key.display().to_string()
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let github = FakeGitHub::new(Duration::from_secs(3600));
    let broker =
        Broker::start_with_transport(&config, std::sync::Arc::new(github.clone())).unwrap();
    Setup {
        broker,
        github,
        _dir: dir,
    }
}

fn query(repo: &str, permissions: &str) -> TokenQuery {
    TokenQuery {
        owner: Some("acme".into()),
        repo: Some(repo.into()),
        permissions: if permissions.is_empty() {
            Default::default()
        } else {
            perms(permissions)
        },
        ..TokenQuery::default()
    }
}

fn secondary(times: u64) -> (Script, Option<u64>) {
    (
        Script::Status {
            status: 403,
            headers: vec![],
            message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.".into(),
        },
        Some(times),
    )
}

#[tokio::test(start_paused = true)]
async fn work_held_by_a_rate_limit_resumes_spread_out_not_at_one_instant() {
    let s = setup("retry_budget = \"20m\"");
    let reset = (s.github.now_wall() + 10 * MIN)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    s.github.script(
        MINT,
        Script::Status {
            status: 403,
            headers: vec![
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset.to_string()),
                ("x-ratelimit-resource".into(), "core".into()),
            ],
            message: "API rate limit exceeded for app ID 12345.".into(),
        },
        Some(1),
    );
    let started = Instant::now();
    let first = {
        let broker = s.broker.clone();
        tokio::spawn(async move { broker.token(&query("widgets", "contents:read")).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        s.github.arrivals(MINT).len(),
        1,
        "the first mint was limited"
    );
    // Seven more keys of the App, all held by the App's (JWT) limit.
    let mut held = vec![first];
    for (repo, permissions) in [
        ("widgets", "contents:write"),
        ("widgets", "metadata:read"),
        ("widgets", ""),
        ("gadgets", "contents:read"),
        ("gadgets", "contents:write"),
        ("gadgets", "metadata:read"),
        ("gadgets", ""),
    ] {
        let broker = s.broker.clone();
        held.push(tokio::spawn(async move {
            broker.token(&query(repo, permissions)).await
        }));
    }
    for task in held {
        task.await.unwrap().expect("served once the limit ended");
    }
    let arrivals = s.github.arrivals(MINT);
    assert_eq!(arrivals.len(), 9, "one limited mint, then eight");
    let resumed: Vec<Duration> = arrivals[1..].iter().map(|at| *at - started).collect();
    let earliest = *resumed.iter().min().unwrap();
    let latest = *resumed.iter().max().unwrap();
    assert!(
        earliest >= 10 * MIN - Duration::from_secs(1),
        "nothing before the reset: {resumed:?}"
    );
    assert!(
        latest <= 10 * MIN + Duration::from_secs(31),
        "resumed within the spread: {resumed:?}"
    );
    let distinct: std::collections::HashSet<Duration> = resumed.iter().copied().collect();
    assert!(
        distinct.len() >= 4 && latest - earliest >= Duration::from_secs(1),
        "spread out, not at one instant: {resumed:?}"
    );
    eprintln!(
        "held mints resumed over {:.1}s after the reset",
        (latest - earliest).as_secs_f64()
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_secondary_limits_wait_exponentially_longer_within_the_budget() {
    let s = setup("retry_budget = \"30m\"");
    let (script, times) = secondary(3);
    s.github.script(MINT, script, times);
    let started = Instant::now();
    s.broker.token(&query("widgets", "")).await.unwrap();
    let arrivals = s.github.arrivals(MINT);
    assert_eq!(arrivals.len(), 4, "three secondary limits, then the mint");
    let gaps: Vec<u64> = arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    // 60 s, 120 s, 240 s (GitHub: at least a minute, then exponentially longer), each plus a
    // spread of at most a quarter of the wait.
    assert!((60..=75).contains(&gaps[0]), "{gaps:?}");
    assert!((120..=150).contains(&gaps[1]), "{gaps:?}");
    assert!((240..=271).contains(&gaps[2]), "{gaps:?}");
    eprintln!(
        "secondary waits {gaps:?} s, served after {:?}",
        started.elapsed()
    );

    // A success ended the streak: the next secondary limit waits a minute again.
    let (script, times) = secondary(1);
    s.github.script(MINT, script, times);
    s.broker.token(&query("gadgets", "")).await.unwrap();
    let arrivals = s.github.arrivals(MINT);
    let gap = (arrivals[5] - arrivals[4]).as_secs();
    assert!((60..=75).contains(&gap), "streak reset: {gap}");

    // The budget bounds the backoff: a secondary limit whose wait outlasts what is left fails
    // at once (cached tokens keep serving), it is not slept.
    let short = setup("retry_budget = \"90s\"");
    let (script, times) = secondary(2);
    short.github.script(MINT, script, times);
    let started = Instant::now();
    assert_error(
        short.broker.token(&query("widgets", "")).await,
        ErrorKind::Unavailable,
        "rate limited by GitHub until",
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        short.github.arrivals(MINT).len(),
        2,
        "60 s fit, 120 s did not"
    );
}

#[tokio::test(start_paused = true)]
async fn a_moved_installation_look_up_is_followed_only_on_the_apps_api_with_the_jwt() {
    let s = setup("");
    let moved = |location: &str| Script::Status {
        status: 301,
        headers: vec![("location".into(), location.into())],
        message: "Moved Permanently".into(),
    };
    // Another host, or the same host over plain http: never followed, the JWT stays home.
    for (repo, location) in [
        (
            "old-widgets",
            "https://evil.example/repositories/1100/installation",
        ),
        (
            "older-widgets",
            "http://api.github.com/repositories/1100/installation",
        ),
    ] {
        s.github.script(
            &format!("GET /repos/acme/{repo}/installation"),
            moved(location),
            Some(1),
        );
        let e = assert_error(
            s.broker.token(&query(repo, "")).await,
            ErrorKind::Internal,
            "which was not followed",
        );
        assert!(e.message.contains(location), "{}", e.message);
        assert_eq!(
            s.github.requests("GET /repositories/1100/installation"),
            0,
            "not sent anywhere"
        );
    }
    // On the App's API (a relative Location): followed with the App JWT, and the token is
    // narrowed by the repository's id, as the old name no longer resolves.
    s.github.script(
        "GET /repos/acme/renamed/installation",
        moved("/repositories/1100/installation"),
        Some(1),
    );
    let token = s.broker.token(&query("renamed", "")).await.unwrap();
    assert_eq!(token.installation_id, 100);
    assert_eq!(token.repositories, vec!["renamed".to_string()]);
    assert_eq!(s.github.requests("GET /repositories/1100/installation"), 1);
    let seen = s.github.headers_seen();
    let followed = &seen[seen.len() - 2];
    let authorization = followed
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .unwrap();
    let jwt = authorization.strip_prefix("Bearer ").expect("Bearer");
    assert_eq!(jwt.split('.').count(), 3, "the App JWT");
}
