//! The HTTP layer, limits and access control over a real Unix socket, with the broker faked.

mod common;

use common::{Harness, ONE_APP, curl_as, fake_token, is_root};
use ghapp_protocol::api::{StatusResponse, TokenQuery};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_route_answers_and_refuses_clearly() {
    let h = Harness::start("", ONE_APP, None);

    let ok = h
        .get("/v1/token?owner=acme&repo=widgets&permissions=contents:read")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.headers["content-type"], "application/json");
    assert_eq!(ok.headers["cache-control"], "no-store");
    let json = ok.json().unwrap();
    for key in [
        "token",
        "expires_at",
        "installation_id",
        "app",
        "host",
        "owner",
        "repositories",
        "permissions",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(json["token"], fake_token("acme", "widgets"));
    assert_eq!(json["permissions"]["contents"], "read");

    for (path, status, needle) in [
        ("/v1/token?owner=ac%zzme", 400, "percent-encoding"),
        (
            "/v1/token?owner=acme&bogus=1",
            400,
            "unknown query parameter",
        ),
        ("/v1/token?owner=acme&owner=x", 400, "given twice"),
        ("/v1/token?repo=x", 400, "without owner"),
        (
            "/v1/token?owner=acme&permissions=contents",
            400,
            "NAME:LEVEL",
        ),
        (
            "/v1/token?owner=missing&repo=x",
            404,
            "not installed on missing/x",
        ),
        ("/v1/token?owner=down", 503, "unreachable"),
        ("/v1/token?owner=ceiling", 422, "ceiling"),
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        let error = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(error.contains(needle), "{path}: {error}");
    }
    let long_value = format!("/v1/token?owner={}", "a".repeat(300));
    assert_eq!(h.get(&long_value).await.status, 400);
    let long_query = format!("/v1/token?owner=acme&x={}", "a".repeat(3000));
    let r = h.get(&long_query).await;
    assert_eq!(r.status, 414, "{}", r.body);
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("at most 2048")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_json_errors() {
    let h = Harness::start("", ONE_APP, None);
    let r = h.get("/v2/nothing").await;
    assert_eq!(r.status, 404);
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("no route GET for this path")
    );
    let r = h.request("POST", "/v1/token", Some("{}")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, DELETE");
    assert!(r.json().unwrap()["error"].is_string());
    let r = h.request("GET", "/v1/runner-token", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    let r = h.request("DELETE", "/healthz", None).await;
    assert_eq!((r.status, r.headers["allow"].as_str()), (405, "GET"));
    let r = h.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_runner_status_and_metrics() {
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let h = Harness::start(
        &format!("audit_log = {:?}", audit_path.display().to_string()),
        ONE_APP,
        None,
    );

    let cached = fake_token("acme", "widgets");
    let r = h
        .request(
            "DELETE",
            "/v1/token",
            Some(&format!("{{\"token\":\"{cached}\"}}")),
        )
        .await;
    assert_eq!(
        (r.status, r.json().unwrap()["invalidated"].as_bool()),
        (200, Some(true))
    );
    let r = h
        .request("DELETE", "/v1/token", Some("{\"token\":\"ghs_other\"}"))
        .await;
    assert_eq!(r.json().unwrap()["invalidated"], false);
    // Bodies larger than the 16 KiB head buffer but under the 64 KiB cap are read whole.
    let padded = format!("{{\"token\":\"ghs_other\"{}}}", " ".repeat(30_000));
    let r = h.request("DELETE", "/v1/token", Some(&padded)).await;
    assert_eq!(
        (r.status, r.json().unwrap()["invalidated"].as_bool()),
        (200, Some(false)),
        "{}",
        r.body
    );
    let r = h.request("DELETE", "/v1/token", Some("not json")).await;
    assert_eq!(r.status, 400);
    let huge = format!("{{\"token\":\"{}\"}}", "x".repeat(70_000));
    let r = h.request("DELETE", "/v1/token", Some(&huge)).await;
    assert_eq!(r.status, 413, "{}", r.body);

    let r = h
        .request("POST", "/v1/runner-token", Some("{\"org\":\"acme\"}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json().unwrap();
    assert_eq!(
        (json["kind"].as_str(), json["org"].as_str()),
        (Some("registration"), Some("acme"))
    );
    assert_eq!(
        h.request("POST", "/v1/runner-token", Some("{\"org\":\"a/b\"}"))
            .await
            .status,
        400
    );
    assert_eq!(
        h.request("POST", "/v1/runner-token", Some("{\"org\":\"missing\"}"))
            .await
            .status,
        404
    );
    assert_eq!(
        h.request("POST", "/v1/runner-token", Some("{}"))
            .await
            .status,
        400
    );

    // A token handed out, then status: fingerprints only.
    assert_eq!(h.get("/v1/token?owner=acme&repo=widgets").await.status, 200);
    let r = h.get("/v1/status").await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("ghs_"), "status leaks a token: {}", r.body);
    let status: StatusResponse = serde_json::from_str(&r.body).unwrap();
    assert_eq!(status.version, ghapp_protocol::VERSION);
    assert_eq!(status.socket, h.socket.display().to_string());
    assert_eq!(status.apps[0].rate_limit_remaining, Some(4999));
    assert!(status.counters["requests"] >= 8);
    assert_eq!(status.tokens.len(), 1);

    let r = h.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let samples = ghapp_testkit::daemon::parse_prometheus(&r.body)
        .unwrap_or_else(|e| panic!("{e}\n{}", r.body));
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    };
    assert_eq!(
        value(
            "ghapp_requests_total",
            &[("route", "/v1/token"), ("status", "413")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "ghapp_requests_total",
            &[("route", "/v1/runner-token"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value("ghapp_served_token_remaining_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        value("ghapp_github_rate_limit_remaining", &[("app", "test-app")]),
        Some(4999.0)
    );
    assert!(
        value(
            "ghapp_token_mint_duration_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_some()
    );
    assert!(!r.body.contains("ghs_"));

    let lines = ghapp_testkit::daemon::read_lines(&audit_path);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("ghs_") || l.contains("RUNNERTOKEN")),
        "audit leaks a token: {lines:?}"
    );
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let invalidated = records
        .iter()
        .find(|r| r["outcome"] == "invalidated")
        .expect("an invalidation record");
    assert_eq!(
        invalidated["token_fingerprint"],
        ghapp_protocol::secret::fingerprint(&cached)
    );
    // A failure's record carries what the broker's error says as data.
    let failed = records
        .iter()
        .find(|r| {
            r["outcome"] == "failed" && r["route"] == "/v1/runner-token" && r["status"] == 404
        })
        .expect("a failed runner-token record");
    assert_eq!(
        (
            failed["app"].as_str(),
            failed["installation_id"].as_u64(),
            failed["target"].as_str(),
            failed["github_status"].as_u64(),
            failed["github_route"].as_str(),
            failed["github_message"].as_str(),
        ),
        (
            Some("test-app"),
            Some(100),
            Some("organization missing"),
            Some(404),
            Some("POST /orgs/missing/actions/runners/registration-token"),
            Some("Not Found"),
        ),
        "{failed}"
    );
    let granted = records
        .iter()
        .find(|r| r["outcome"] == "granted" && r["route"] == "/v1/token")
        .unwrap();
    assert_eq!(
        (granted["owner"].as_str(), granted["repo"].as_str()),
        (Some("acme"), Some("widgets"))
    );
    assert_eq!(granted["peer_uid"], rustix::process::geteuid().as_raw());
    assert!(granted["peer_pid"].as_i64().is_some());
    assert!(
        !records.iter().any(|r| r["route"] == "/metrics"),
        "scrapes are not audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_routes_keep_the_seeds_shapes() {
    let h = Harness::start("", ONE_APP, None);
    let r = h.get("/api/acme/widgets").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json().unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "namespace", "repository"]);
    assert_eq!(json["access_token"], fake_token("acme", "widgets"));
    assert_eq!(
        (json["namespace"].as_str(), json["repository"].as_str()),
        (Some("acme"), Some("widgets"))
    );
    let q = h
        .state
        .service
        .queries
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        q,
        TokenQuery {
            host: Some("github.com".into()),
            owner: Some("acme".into()),
            repo: Some("widgets".into()),
            ..Default::default()
        }
    );

    let r = h.get("/api/missing/widgets").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"error":"Failed to retrieve a token: App is not installed on missing/widgets"}"#
    );
    let r = h.get("/api/down/widgets").await;
    assert_eq!(r.status, 503);
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("Failed to retrieve a token: ")
    );
    let r = h.get("/api/a%20b/widgets").await;
    assert_eq!(r.status, 400);

    let r = h.get("/admin/github-installation-token").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json().unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expires_at", "token"]);
    assert!(json["expires_at"].as_str().unwrap().ends_with('Z'));
    let q = h
        .state
        .service
        .queries
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        (q.host.as_deref(), q.owner.as_deref()),
        (Some("github.com"), None),
        "the host's only installation"
    );

    let none = Harness::start("", "", None);
    let r = none.get("/admin/github-installation-token").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, r#"{"error":"no GitHub App configured"}"#)
    );

    let failing = Harness::start("default_owner = \"down\"", ONE_APP, None);
    let r = failing.get("/admin/github-installation-token").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, r#"{"error":"token refresh failed"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_restricts_owner_repo_and_permissions() {
    let me = rustix::process::geteuid().as_raw();
    let policy = format!(
        "[[daemon.policy]]\nuid = {me}\nowners = [\"acme\"]\nrepos = [\"acme/widgets\", \"acme/tools\"]\npermissions = {{ contents = \"read\", metadata = \"read\" }}\n"
    );
    let h = Harness::start(&policy, ONE_APP, None);
    let r = h.get("/v1/token?owner=acme&repo=widgets").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = h
        .state
        .service
        .queries
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        q.permissions.to_list(),
        "contents:read,metadata:read",
        "narrowed to the ceiling"
    );
    let r = h.get("/v1/token?owner=acme&repo=secret").await;
    assert_eq!(r.status, 403);
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("acme/secret")
    );
    assert_eq!(h.get("/v1/token?owner=evil&repo=widgets").await.status, 403);
    let r = h
        .get("/v1/token?owner=acme&repo=tools&permissions=contents:write")
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("contents:write")
    );
    assert_eq!(h.get("/api/acme/secret").await.status, 403);
    assert_eq!(
        h.request("POST", "/v1/runner-token", Some("{\"org\":\"acme\"}"))
            .await
            .status,
        403
    );
    let calls = h.state.service.calls.load(Ordering::SeqCst);
    assert_eq!(calls, 1, "refused requests never reach the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refuses_a_grant_wider_than_its_repos() {
    // An App configured installation_wide answers a request for one repository with a token
    // for all of them; a peer held to one repository must not receive it.
    let me = rustix::process::geteuid().as_raw();
    let policy = format!("[[daemon.policy]]\nuid = {me}\nrepos = [\"wide/widgets\", \"acme/*\"]\n");
    let h = Harness::start(&policy, ONE_APP, None);
    let r = h.get("/v1/token?owner=wide&repo=widgets").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("installation_wide"), "{}", r.body);
    assert!(
        !r.body.contains(&fake_token("wide", "widgets")),
        "{}",
        r.body
    );
    assert_eq!(h.get("/api/wide/widgets").await.status, 403);
    let r = h.get("/v1/token?owner=acme&repo=widgets").await;
    assert_eq!(r.status, 200, "a narrowed grant is served: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_with_keep_alive_and_a_hex_host_header() {
    let h = Harness::start("", ONE_APP, None);
    let mut tasks = Vec::new();
    for i in 0..48 {
        let client = h.client();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let query = TokenQuery {
                    owner: Some(format!("org{i}")),
                    repo: Some(format!("r{j}")),
                    ..Default::default()
                };
                let token = client.token(&query).await.unwrap();
                assert_eq!(
                    token.token.expose(),
                    fake_token(&format!("org{i}"), &format!("r{j}"))
                );
            }
            client.status().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(h.state.service.calls.load(Ordering::SeqCst), 48 * 5);
    let accepted = h.state.metrics.counters(&Default::default())["connections_accepted"];
    assert!(
        accepted < 48 * 6,
        "keep-alive reused connections ({accepted} accepted)"
    );
}

fn write_partial(socket: &std::path::Path, bytes: &[u8]) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_malformed_clients_are_cut_off_without_hurting_others() {
    let h = Harness::start("client_timeout = \"1s\"", ONE_APP, None);
    let socket = h.socket.clone();
    let started = Instant::now();
    let slow = tokio::task::spawn_blocking(move || {
        let mut stream = write_partial(&socket, b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    });
    // Others are served while the slow client dawdles.
    for _ in 0..5 {
        assert_eq!(h.get("/healthz").await.status, 200);
    }
    let answer = slow.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(15),
        "cut off after {elapsed:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "the unfinished request was not answered as if complete"
    );

    let socket = h.socket.clone();
    let garbage = tokio::task::spawn_blocking(move || {
        ghapp_testkit::daemon::raw_request(&socket, b"NOT-HTTP\r\n\r\n")
    })
    .await
    .unwrap();
    let garbage = garbage.expect("garbage gets an answer");
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    let socket = h.socket.clone();
    let big_head = tokio::task::spawn_blocking(move || {
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(40_000)
        );
        ghapp_testkit::daemon::raw_request(&socket, request.as_bytes())
    })
    .await
    .unwrap();
    // Either 431, or cut off while still writing (the server stops reading at 16 KiB).
    if let Ok(r) = big_head {
        assert_eq!(r.status, 431);
    }
    // An idle keep-alive connection is closed after client_timeout too.
    let socket = h.socket.clone();
    let idle = tokio::task::spawn_blocking(move || {
        let mut stream = write_partial(&socket, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = Instant::now();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        (String::from_utf8_lossy(&all).to_string(), started.elapsed())
    })
    .await
    .unwrap();
    assert!(idle.0.starts_with("HTTP/1.1 200"), "{}", idle.0);
    assert!(
        idle.1 < Duration::from_secs(15),
        "idle connection kept {:?}",
        idle.1
    );
    assert_eq!(h.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_answers_503_quickly_and_recovers() {
    let h = Harness::start(
        "max_connections = 2\nclient_timeout = \"30s\"",
        ONE_APP,
        None,
    );
    // Both slots busy with a request in flight (a body that never finishes); idle connections
    // would instead be closed to make room (see over_capacity_closes_idle_connections_first).
    let hold: Vec<UnixStream> = (0..2)
        .map(|_| {
            write_partial(
                &h.socket,
                b"DELETE /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
            )
        })
        .collect();
    // Let the accept loop take both.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state.active_connections() < 2 {
        assert!(Instant::now() < deadline, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = h.get("/healthz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        started.elapsed() >= ghapp_daemon::server::OVERLOAD_WAIT,
        "answered before waiting for a slot"
    );
    assert!(
        r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("max_connections")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(hold);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if h.get("/healthz").await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "capacity not recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.state.metrics.counters(&Default::default())["connections_rejected"] >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_closes_idle_connections_first() {
    let h = Harness::start(
        "max_connections = 2\nclient_timeout = \"30s\"",
        ONE_APP,
        None,
    );
    // Two connections that never send a byte hold both slots...
    let mut idle: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(&h.socket).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state.active_connections() < 2 {
        assert!(Instant::now() < deadline, "connections not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(ghapp_daemon::idle::MIN_IDLE * 3).await;
    // ...and a client that sends its request is served at once: the oldest idle one is closed.
    let started = Instant::now();
    let r = h.get("/healthz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() < ghapp_daemon::server::OVERLOAD_WAIT);
    let closed = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                matches!(s.read(&mut [0u8; 16]), Ok(0))
            })
            .filter(|closed| *closed)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 1, "exactly one idle connection made room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_waits_for_a_slot_that_frees() {
    let h = Harness::start(
        "max_connections = 1\nclient_timeout = \"30s\"",
        ONE_APP,
        None,
    );
    let hold = UnixStream::connect(&h.socket).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state.active_connections() < 1 {
        assert!(Instant::now() < deadline, "connection not accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Free the slot while the next client is waiting for it: it is served, not refused.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(hold);
    });
    let r = h.get("/healthz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    release.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_request_in_flight() {
    let mut h = Harness::start("", ONE_APP, None);
    let client = h.client();
    let in_flight = tokio::spawn(async move {
        client
            .token(&TokenQuery {
                owner: Some("slow".into()),
                ..Default::default()
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state.service.calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut server = h.server.take().unwrap();
    server.stop_accepting().await;
    h.file.take().unwrap().remove();
    assert!(!h.socket.exists(), "socket removed when accepting stops");
    assert!(server.drain(Duration::from_secs(20)).await, "drained");
    let token = in_flight
        .await
        .unwrap()
        .expect("the request in flight completed");
    assert_eq!(token.owner, "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uids_are_refused_unless_allowed() {
    if !is_root() {
        eprintln!("skipped: acting as other uids needs root");
        return;
    }
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    // Socket group 4242 (mode 0660) so uid 65534 can connect through a supplementary group, which
    // SO_PEERCRED does not report: it is still refused.
    let h = Harness::start(
        &format!(
            "socket_group = \"4242\"\nallow_uids = [4000]\naudit_log = {:?}",
            audit_path.display().to_string()
        ),
        ONE_APP,
        Some(0o711),
    );
    let socket = h.socket.clone();
    let (refused, allowed_gid, allowed_uid) = tokio::task::spawn_blocking(move || {
        (
            curl_as(
                65534,
                65534,
                Some(4242),
                &socket,
                "/v1/token?owner=acme&repo=widgets",
            ),
            curl_as(65534, 4242, None, &socket, "/healthz"),
            curl_as(4000, 65534, Some(4242), &socket, "/healthz"),
        )
    })
    .await
    .unwrap();
    assert_eq!(refused.0, 403, "{}", refused.1);
    let error: serde_json::Value = serde_json::from_str(&refused.1).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("uid 65534"),
        "{error}"
    );
    assert!(!refused.1.contains("ghs_"));
    assert_eq!(
        allowed_gid.0, 200,
        "socket_group's gid is allowed: {}",
        allowed_gid.1
    );
    assert_eq!(allowed_uid.0, 200, "allow_uids: {}", allowed_uid.1);
    assert_eq!(
        h.state.service.calls.load(Ordering::SeqCst),
        0,
        "the refused peer never reached the broker"
    );
    let lines = ghapp_testkit::daemon::read_lines(&audit_path);
    let denied: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["outcome"] == "denied_peer")
        .expect("audit line for the refused peer");
    assert_eq!(
        (denied["peer_uid"].as_u64(), denied["status"].as_u64()),
        (Some(65534), Some(403))
    );
}
