//! Upstream mode (`[upstream]`): a broker with no `[[app]]` gets its tokens from a central
//! broker's `/v1/token` — here a fake one (a hyper server answering like the daemon and checking
//! `Authorization: Bearer`), since the real broker's network identity checks are not merged yet.
//!
//! - tokens come from the upstream with this host's credential, re-read from its file on every
//!   request; concurrent requests for one key make one upstream request; cached ones none;
//! - the upstream's refusals keep their kind and message;
//! - the upstream stopped: cached tokens keep serving, down to `degraded_min_ttl` (never below
//!   the daemon's margin otherwise), and status names the upstream as failing.

use bytes::Bytes;
use ghapp_broker::{Broker, Config, ErrorKind};
use ghapp_protocol::api::{ErrorBody, TokenQuery, TokenResponse};
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What the fake upstream saw and how it behaves.
#[derive(Default)]
struct Upstream {
    /// The bearer it accepts.
    accepted: Mutex<String>,
    /// Token requests answered with a token.
    served: AtomicUsize,
    /// Bearers presented, in order.
    bearers: Mutex<Vec<String>>,
    /// Answer 503 to everything.
    failing: AtomicBool,
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    upstream: Arc<Upstream>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("date", httpdate::fmt_http_date(SystemTime::now()))
            .body(Full::new(Bytes::from(body)))
            .expect("a response"))
    };
    let error = |status, message: &str| {
        reply(
            status,
            serde_json::to_string(&ErrorBody {
                error: message.into(),
            })
            .unwrap(),
        )
    };
    if upstream.failing.load(Ordering::SeqCst) {
        return error(503, "the broker is shutting down");
    }
    if request.uri().path() != "/v1/token" {
        return error(404, "no such route");
    }
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    upstream.bearers.lock().unwrap().push(bearer.clone());
    if bearer != *upstream.accepted.lock().unwrap() {
        return error(401, "unknown identity");
    }
    let query = TokenQuery::parse(request.uri().query().unwrap_or_default()).unwrap();
    let repo = query.repo.clone().unwrap_or_default();
    if repo == "secret" {
        return error(403, "the policy for host-a does not cover acme/secret");
    }
    // Let the fetch be in flight a moment, so concurrent callers would overlap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = upstream.served.fetch_add(1, Ordering::SeqCst);
    // "short" tokens live 20 minutes: under the daemon's 30m min_ttl, over its 5m margin.
    let life = if repo == "short" { 20 * 60 } else { 3600 };
    let response = TokenResponse {
        token: Token::new(format!("ghs_upstream{n:04}{repo}")),
        expires_at: Timestamp::from(SystemTime::now() + Duration::from_secs(life)),
        installation_id: 100,
        app: "acme-bot".into(),
        host: query.host.clone().unwrap_or_default(),
        owner: query.owner.clone().unwrap_or_default(),
        repositories: vec![repo],
        permissions: Permissions::parse_list("contents:read").unwrap(),
    };
    reply(200, serde_json::to_string(&response).unwrap())
}

/// Serves the fake upstream on a free loopback port until the returned set is dropped or
/// aborted (which also closes kept-alive connections).
async fn start_upstream(upstream: Arc<Upstream>) -> (String, JoinSet<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            connections.spawn(async move {
                let service = service_fn(move |r| answer(r, upstream.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, tasks)
}

fn query(repo: &str) -> TokenQuery {
    TokenQuery {
        owner: Some("acme".into()),
        repo: Some(repo.into()),
        ..TokenQuery::default()
    }
}

fn config(url: &str, key_file: &Path) -> Config {
    let text = format!(
        "[daemon]\nmin_ttl = \"30m\"\ndegraded_min_ttl = \"5m\"\n\n[upstream]\nurl = {url:?}\nclient_key_file = {:?}\n",
        key_file.display().to_string()
    );
    Config::parse(&text, Path::new("/etc/ghapp/config.toml")).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_less_broker_gets_tokens_from_the_upstream_with_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, "ck_first\n").unwrap();
    let upstream = Arc::new(Upstream::default());
    *upstream.accepted.lock().unwrap() = "ck_first".into();
    let (url, _server) = start_upstream(upstream.clone()).await;
    let broker = Broker::start(&config(&url, &key_file)).expect("a key-less broker starts");

    // 50 concurrent requests for one repository: one upstream request.
    let mut callers = JoinSet::new();
    for _ in 0..50 {
        let broker = broker.clone();
        callers.spawn(async move { broker.token(&query("widgets")).await });
    }
    let mut tokens = std::collections::BTreeSet::new();
    while let Some(done) = callers.join_next().await {
        let answer = done.unwrap().expect("a token from the upstream");
        assert_eq!(answer.owner, "acme");
        assert_eq!(answer.repositories, ["widgets"]);
        tokens.insert(answer.token.expose().to_string());
    }
    assert_eq!(tokens.len(), 1, "one token for the key");
    assert_eq!(upstream.served.load(Ordering::SeqCst), 1, "single flight");
    broker.token(&query("widgets")).await.unwrap();
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        1,
        "served from the cache"
    );
    assert_eq!(*upstream.bearers.lock().unwrap(), ["ck_first"]);

    // The credential file is read on every request: a rotated one is sent at once.
    std::fs::write(&key_file, "ck_second").unwrap();
    *upstream.accepted.lock().unwrap() = "ck_second".into();
    broker
        .token(&query("gadgets"))
        .await
        .expect("the rotated credential is used");
    assert_eq!(
        upstream.bearers.lock().unwrap().last().unwrap(),
        "ck_second"
    );

    // The upstream's refusals keep their kind and say who refused.
    let refused = broker.token(&query("secret")).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden, "{refused}");
    assert!(
        refused.message.contains("does not cover acme/secret") && refused.message.contains(&url),
        "{}",
        refused.message
    );
    *upstream.accepted.lock().unwrap() = "someone-else".into();
    let unknown = broker.token(&query("tools")).await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::Forbidden, "{unknown}");

    let status = broker.status();
    let shown = status.upstream.clone().expect("status names the upstream");
    assert_eq!(shown.url, url);
    assert!(
        shown.healthy,
        "refusals are answers, not an outage: {shown:?}"
    );
    assert!(status.apps.is_empty(), "no App, no key");
    let text = format!("{status:?}");
    assert!(!text.contains("ck_first") && !text.contains("ck_second"));
    broker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_stopped_cached_tokens_keep_serving_to_the_degraded_margin() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("client.key");
    std::fs::write(&key_file, "ck").unwrap();
    let upstream = Arc::new(Upstream::default());
    *upstream.accepted.lock().unwrap() = "ck".into();
    let (url, mut server) = start_upstream(upstream.clone()).await;
    let broker = Broker::start(&config(&url, &key_file)).unwrap();

    let warm = broker.token(&query("widgets")).await.unwrap();
    // A 20-minute token is below the daemon's 30m min_ttl: refused while the upstream is up…
    let short = broker.token(&query("short")).await.unwrap_err();
    assert!(
        short.message.contains("less than the 30m required"),
        "{}",
        short.message
    );
    // The upstream broker chose that token, not GitHub: the 422 says so.
    assert_eq!(short.kind, ErrorKind::Unprocessable, "{short}");
    assert!(
        short
            .message
            .starts_with("the upstream broker answered for acme/short with a token with "),
        "{}",
        short.message
    );
    assert!(!short.message.contains("GitHub"), "{}", short.message);
    assert_eq!(upstream.served.load(Ordering::SeqCst), 2);

    // … the upstream fails (503), then is gone altogether.
    upstream.failing.store(true, Ordering::SeqCst);
    let again = broker.token(&query("widgets")).await.unwrap();
    assert_eq!(
        again.token.expose(),
        warm.token.expose(),
        "the cached token serves"
    );
    let degraded = broker
        .token(&query("short"))
        .await
        .expect("served on its margin while the upstream fails");
    assert!(degraded.token.expose().ends_with("short"));
    server.abort_all();
    while server.join_next().await.is_some() {}
    let degraded = broker
        .token(&query("short"))
        .await
        .expect("and with the upstream gone");
    assert!(degraded.token.expose().ends_with("short"));
    let cold = broker.token(&query("gadgets")).await.unwrap_err();
    assert_eq!(cold.kind, ErrorKind::Unavailable, "{cold}");
    assert!(
        cold.message
            .contains("no cached token with enough life left"),
        "{}",
        cold.message
    );
    let status = broker.status();
    assert!(status.degraded, "{status:?}");
    let shown = status.upstream.unwrap();
    assert!(!shown.healthy);
    assert!(
        status.degraded_reason.unwrap().contains(&url),
        "the reason names the upstream"
    );
    broker.shutdown();
}
