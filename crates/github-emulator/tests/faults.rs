//! Fault injection through the admin API: fixed statuses (incl. rate limits), latency, dropped
//! connections, route globs, counts, clearing; and the stats the faulted requests still produce.

mod common;

use common::*;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture, request};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn status_faults_by_route_and_count() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);
    let mint_path = "/app/installations/100/access_tokens";

    emu.fault(json!({"kind": "status", "route": "POST /app/installations/*/access_tokens", "status": 503, "times": 2}))
        .expect("fault");
    assert_error(
        &api(&emu, "POST", mint_path, Some(&jwt), Some("{}")),
        503,
        "Service Unavailable",
    );
    assert_eq!(
        api(&emu, "GET", "/app", Some(&jwt), None).status,
        200,
        "other routes unaffected"
    );
    assert_error(
        &api(
            &emu,
            "POST",
            &format!("/api/v3{mint_path}"),
            Some(&jwt),
            Some("{}"),
        ),
        503,
        "Service Unavailable",
    );
    assert_eq!(
        api(&emu, "POST", mint_path, Some(&jwt), Some("{}")).status,
        201,
        "times exhausted"
    );

    // The route pattern matches too; no `times` = until cleared.
    emu.fault(
        json!({"kind": "status", "route": "GET /repos/{owner}/{repo}/installation", "status": 502}),
    )
    .expect("fault");
    for _ in 0..3 {
        assert_error(
            &api(
                &emu,
                "GET",
                "/repos/acme/widgets/installation",
                Some(&jwt),
                None,
            ),
            502,
            "Server Error",
        );
    }
    emu.clear_faults().expect("clear");
    assert_eq!(
        api(
            &emu,
            "GET",
            "/repos/acme/widgets/installation",
            Some(&jwt),
            None
        )
        .status,
        200
    );

    // Rate limits: secondary with retry-after, primary with x-ratelimit-remaining: 0.
    emu.fault(json!({"kind": "status", "status": 429, "retry_after": 60, "times": 1}))
        .expect("fault");
    let secondary = api(&emu, "GET", "/app", Some(&jwt), None);
    assert_eq!(secondary.status, 429);
    assert_eq!(secondary.header("retry-after"), Some("60"));
    assert!(
        secondary.json().expect("json")["message"]
            .as_str()
            .expect("message")
            .contains("secondary rate limit")
    );
    emu.fault(json!({"kind": "status", "status": 403, "times": 1}))
        .expect("fault");
    let primary = api(&emu, "GET", "/app", Some(&jwt), None);
    assert_eq!(primary.status, 403);
    assert_eq!(primary.header("x-ratelimit-remaining"), Some("0"));
    assert!(primary.header("x-ratelimit-reset").is_some());
    emu.fault(json!({"kind": "status", "status": 500, "times": 1, "message": "custom"}))
        .expect("fault");
    assert_error(&api(&emu, "GET", "/", None, None), 500, "custom");

    // Faulted requests are counted.
    let stats = emu.stats().expect("stats");
    assert_eq!(
        stats["requests"]["POST /app/installations/{installation_id}/access_tokens"], 3,
        "{stats}"
    );
    assert_eq!(stats["mints_total"], 1);
    assert_eq!(stats["mints"]["100"], 1);

    // Bad faults are refused.
    for bad in [
        json!({"kind": "nope"}),
        json!({"kind": "status"}),
        json!({"kind": "status", "status": 42}),
    ] {
        assert!(emu.fault(bad.clone()).is_err(), "{bad}");
    }
    // Counters reset.
    emu.reset_stats().expect("reset");
    assert_eq!(emu.stats().expect("stats")["mints_total"], 0);
}

#[test]
fn latency_and_dropped_connections() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    let jwt = good_jwt(&emu);

    emu.fault(json!({"kind": "latency", "route": "GET /app", "ms": 300, "times": 1}))
        .expect("fault");
    let started = Instant::now();
    assert_eq!(api(&emu, "GET", "/app", Some(&jwt), None).status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    emu.fault(json!({"kind": "drop", "route": "GET /app", "times": 1}))
        .expect("fault");
    let dropped = request(&emu.urls.api_url, Some(&jwt), "GET", "/app", &[], None);
    assert!(
        dropped.is_err(),
        "the connection is closed without an answer: {dropped:?}"
    );
    assert_eq!(api(&emu, "GET", "/app", Some(&jwt), None).status, 200);

    // The admin API is never faulted.
    emu.fault(json!({"kind": "drop"})).expect("fault");
    assert!(request(&emu.urls.api_url, None, "GET", "/", &[], None).is_err());
    assert!(emu.stats().is_ok());
    emu.clear_faults().expect("clear");
    assert_eq!(api(&emu, "GET", "/", None, None).status, 200);
}
