//! A key-less host (`[upstream]`, no `[[app]]`): a real `ghapp daemon` with no App key on its
//! disk, git cloning and pushing through the credential helper, its tokens fetched from an
//! upstream broker. The upstream here is a fake one — a hyper server in the test answering
//! `/v1/token` like the daemon, minting at the emulator with the App's key, and checking this
//! host's `Authorization: Bearer` — because the broker's network identity checks are not merged
//! yet; the same flow against a real broker (and its audit naming the host) is left to that
//! merge.
//!
//! - clone and push through the helper, the key only at the upstream;
//! - the upstream stopped with a warm cache: the clone still works; a repository never asked
//!   for gets nothing, and git falls through (no credential, so the clone fails cleanly);
//! - a repository the upstream's policy does not cover (403): git falls through.

use bytes::Bytes;
use ghapp_protocol::api::{ErrorBody, TokenQuery, TokenResponse};
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_testkit::daemon::DaemonProcess;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::git::{GitBinary, GitHome};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const CLIENT_KEY: &str = "ck_host_a_0123456789";

/// The fake upstream's state: the emulator it mints at, and how many tokens it handed out.
struct Upstream {
    emulator: Arc<EmulatorProcess>,
    served: AtomicUsize,
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    upstream: Arc<Upstream>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: String| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a response"))
    };
    let refuse = |status, error: &str| {
        reply(
            status,
            serde_json::to_string(&ErrorBody {
                error: error.into(),
            })
            .unwrap(),
        )
    };
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if request.uri().path() != "/v1/token" || bearer != Some(CLIENT_KEY) {
        return refuse(401, "unknown identity");
    }
    let query = TokenQuery::parse(request.uri().query().unwrap_or_default()).unwrap();
    let (owner, repo) = (query.owner.clone().unwrap(), query.repo.clone().unwrap());
    if repo == "gadgets" {
        return refuse(
            403,
            "the policy for client host-a does not cover acme/gadgets",
        );
    }
    let emulator = upstream.emulator.clone();
    let (o, r) = (owner.clone(), repo.clone());
    let minted = tokio::task::spawn_blocking(move || emulator.resolve_and_mint(&o, &r))
        .await
        .unwrap();
    let Ok(minted) = minted else {
        return refuse(503, "GitHub unreachable");
    };
    upstream.served.fetch_add(1, Ordering::SeqCst);
    let response = TokenResponse {
        token: Token::new(minted["token"].as_str().unwrap()),
        expires_at: minted["expires_at"].as_str().unwrap().parse().unwrap(),
        installation_id: 100,
        app: "test-app".into(),
        host: query.host.clone().unwrap_or_default(),
        owner,
        repositories: vec![repo],
        permissions: Permissions::parse_list("contents:write,metadata:read").unwrap(),
    };
    reply(200, serde_json::to_string(&response).unwrap())
}

#[test]
fn key_less_host_clones_and_pushes_through_the_upstream_and_survives_its_outage() {
    let Some(git) = GitBinary::newest() else {
        eprintln!("\n*** SKIPPED: no git binary: the key-less host's clone is not tested ***\n");
        return;
    };
    let emulator = Arc::new(EmulatorProcess::start(&basic_fixture(3600)).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let upstream = Arc::new(Upstream {
        emulator: emulator.clone(),
        served: AtomicUsize::new(0),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let upstream_url = format!("http://{}", listener.local_addr().unwrap());
    let server = runtime.spawn({
        let upstream = upstream.clone();
        async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    let service = service_fn(move |r| answer(r, upstream.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    });

    // The host: its client key and a config with no [[app]], so no App key anywhere on it.
    let host_dir = tempfile::tempdir().unwrap();
    let key_file = host_dir.path().join("client.key");
    std::fs::write(&key_file, CLIENT_KEY).unwrap();
    let config = format!(
        "[daemon]\naudit_log = \"audit.log\"\n\n[upstream]\nurl = {upstream_url:?}\nclient_key_file = {:?}\nhosts = [{:?}]\n",
        key_file.display().to_string(),
        emulator.git_host()
    );
    let daemon = DaemonProcess::start(&config).expect("a key-less daemon starts");
    let (code, status) = daemon.get("/v1/status").unwrap();
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["apps"], serde_json::json!([]), "no App, no key");
    assert_eq!(status["upstream"]["url"], upstream_url);

    let home = GitHome::new(&git)
        .unwrap()
        .with_env("GHAPP_SOCKET", daemon.socket());
    home.use_ghapp_helper("ghapp").unwrap();
    let url = emulator.repo_url("acme", "widgets");
    let repo = home
        .clone_repo(&url, "widgets")
        .expect("clone through the upstream");
    home.commit_file(&repo, "HELLO", "from a key-less host\n", "key-less push")
        .unwrap();
    home.push(&repo).expect("push through the upstream");
    assert_eq!(
        upstream.served.load(Ordering::SeqCst),
        1,
        "clone and push share one token"
    );

    // A repository the upstream's policy does not cover: git falls through (no credential).
    let refused = home
        .output(
            None,
            &["clone", &emulator.repo_url("acme", "gadgets"), "gadgets"],
        )
        .unwrap();
    assert!(!refused.status.success(), "no credential, so no clone");
    let audit = std::fs::read_to_string(daemon.dir().join("audit.log")).unwrap();
    assert!(
        audit.contains("does not cover acme/gadgets"),
        "the host's audit records the upstream's refusal:\n{audit}"
    );

    // The upstream stops: the warm cache keeps the clone working.
    server.abort();
    runtime.shutdown_background();
    let again = home
        .output(None, &["clone", &url, "widgets-again"])
        .unwrap();
    assert!(
        again.status.success(),
        "warm cache, upstream down: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let cold = home
        .output(
            None,
            &["clone", &emulator.repo_url("octo", "tools"), "tools"],
        )
        .unwrap();
    assert!(
        !cold.status.success(),
        "nothing cached for octo/tools: git falls through"
    );
    let (_, status) = daemon.get("/v1/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["upstream"]["healthy"], false, "{status}");
    assert_eq!(upstream.served.load(Ordering::SeqCst), 1);
    // Nothing on the host holds an App key: only the config and the client key were written.
    let host_files: Vec<String> = std::fs::read_dir(daemon.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !host_files.iter().any(|f| f.ends_with(".pem")),
        "{host_files:?}"
    );
    eprintln!(
        "figures: key-less host: clone + push + clone with the upstream down, {} upstream token request(s)",
        upstream.served.load(Ordering::SeqCst)
    );
}
