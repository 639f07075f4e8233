//! A two-minute GitHub outage (every API route answers 503) with a warm cache causes zero failed
//! requests while the cached token keeps its margin. Tokens live 150 s here, so the outage
//! covers the point where the cached token falls below `min_ttl` (60 s) and is served on the
//! degraded margin (10 s) instead. This test takes about 2¼ minutes of wall time.

mod support;

use ghapp_broker::Broker;
use github_emulator::admin::{Fault, FaultServer};
use std::time::{Duration, Instant};
use support::{Env, secs_until};

/// How long a caller waits, as the git credential helper does by default.
const CALLER_DEADLINE: Duration = Duration::from_secs(2);
const OUTAGE: Duration = Duration::from_secs(120);
const MIN_TTL_SECS: i64 = 60;
const DEGRADED_MIN_TTL_SECS: i64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_outage_with_a_warm_cache_fails_no_request() {
    let env = Env::start(&support::basic_fixture(150)).await;
    let daemon = format!(
        "min_ttl = \"{MIN_TTL_SECS}s\"\nrefresh_ahead = \"10s\"\ndegraded_min_ttl = \"{DEGRADED_MIN_TTL_SECS}s\"\nretry_budget = \"5s\"\nrequest_timeout = \"2s\""
    );
    let broker: Broker = env.broker(&daemon);
    let query = env.query("acme", Some("widgets"));
    let warm = broker.token(&query).await.unwrap();

    env.fault(Fault::Status {
        route: None,
        status: 503,
        retry_after: None,
        times: None,
        message: None,
        server: FaultServer::Api,
    });
    let outage_started = Instant::now();
    let mut failures = Vec::new();
    let mut served = 0u32;
    let mut below_min_ttl = 0u32;
    let mut least_left = i64::MAX;
    let mut saw_degraded = false;
    while outage_started.elapsed() < OUTAGE {
        match tokio::time::timeout(CALLER_DEADLINE, broker.token(&query)).await {
            Ok(Ok(token)) => {
                served += 1;
                assert_eq!(
                    token.token, warm.token,
                    "nothing new can be minted during the outage"
                );
                let left = secs_until(&token.expires_at);
                least_left = least_left.min(left);
                if left < MIN_TTL_SECS - 1 {
                    below_min_ttl += 1;
                }
                assert!(
                    left >= DEGRADED_MIN_TTL_SECS - 1,
                    "served with {left}s left"
                );
            }
            Ok(Err(e)) => failures.push(format!("{:?}: {}", outage_started.elapsed(), e.message)),
            Err(_) => failures.push(format!(
                "{:?}: no answer within {CALLER_DEADLINE:?}",
                outage_started.elapsed()
            )),
        }
        saw_degraded |= broker.status().degraded;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the outage: {failures:#?}",
        failures.len(),
        served as usize + failures.len()
    );
    assert!(served > 300, "{served} requests served");
    assert!(
        below_min_ttl > 0,
        "the outage reached the degraded margin (least left {least_left}s)"
    );
    assert!(saw_degraded, "status reported degraded");
    let metrics = broker.metrics();
    assert!(
        metrics.degraded_serves > 0 && metrics.refresh_failures > 0,
        "{metrics:?}"
    );

    // GitHub is back: callers keep being served, and soon with a fresh token.
    env.fault(Fault::Clear);
    let recovery = Instant::now();
    loop {
        let token = tokio::time::timeout(CALLER_DEADLINE, broker.token(&query))
            .await
            .expect("answered in time")
            .expect("served after the outage");
        if token.token != warm.token {
            assert!(secs_until(&token.expires_at) >= MIN_TTL_SECS - 1);
            break;
        }
        assert!(
            recovery.elapsed() < Duration::from_secs(40),
            "no fresh token 40 s after the outage ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!broker.status().degraded, "healthy again");
    assert_eq!(
        env.stats().mints_total,
        2,
        "one mint before, one after: none leaked through"
    );
}
