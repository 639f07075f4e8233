//! Starting: the binary's JSON line and start-up time, `--tls`, bad fixtures, and the library's
//! in-process start and shutdown.

use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::time::{Duration, Instant};

#[test]
fn binary_starts_quickly_and_prints_its_urls() {
    let started = Instant::now();
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    let elapsed = started.elapsed();
    eprintln!("github-emulator started in {elapsed:?}");
    // The target is well under a second; the bound is generous for a loaded 2-core machine.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(emu.urls.api_url.starts_with("http://127.0.0.1:"));
    assert!(emu.urls.git_url.starts_with("http://127.0.0.1:"));
    assert_ne!(emu.urls.api_url, emu.urls.git_url, "git has its own port");
    assert_eq!(emu.urls.admin_url, emu.urls.api_url);
    assert!(emu.urls.ca_file.is_none());

    use std::os::unix::fs::PermissionsExt as _;
    let key = emu.key_path("app1.pem");
    let pem = std::fs::read_to_string(&key).expect("key");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    for (owner, repo) in [("acme", "widgets"), ("acme", "gadgets"), ("octo", "tools")] {
        assert!(
            emu.repo_path(owner, repo).join("HEAD").is_file(),
            "{owner}/{repo}"
        );
    }
}

#[test]
fn bad_fixtures_fail_with_a_message() {
    for (fixture, expected) in [
        ("token_ttl = 5", "unknown field"),
        (
            "[[installations]]\nid = 1\napp = 9\naccount = \"a\"",
            "unknown app 9",
        ),
    ] {
        let error = match EmulatorProcess::start(fixture) {
            Ok(_) => panic!("{fixture:?} must be refused"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("exited without printing"), "{error}");
        // The reason is on the emulator's stderr (inherited); check it through the library too.
        let state = tempfile::tempdir().expect("tmp");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let result = runtime.block_on(github_emulator::Emulator::start_str(fixture, state.path()));
        let message = format!("{:#}", result.err().expect("refused"));
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn tls_serves_https_with_its_own_ca() {
    let emu = EmulatorProcess::start_with_args(
        &basic_fixture(3600),
        &["--tls", "--tls-hostname", "ghes.test"],
    )
    .expect("start");
    assert!(emu.urls.api_url.starts_with("https://127.0.0.1:"));
    assert!(emu.urls.git_url.starts_with("https://127.0.0.1:"));
    assert!(
        emu.urls.admin_url.starts_with("http://127.0.0.1:"),
        "admin stays plain http"
    );
    let ca_file = emu.urls.ca_file.clone().expect("ca_file");
    assert_eq!(
        std::path::Path::new(&ca_file),
        emu.state_dir().join("ca.pem")
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).expect("ca")).expect("pem");
    let port: u16 = emu
        .urls
        .api_url
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let client = reqwest::blocking::Client::builder()
        .user_agent("github-emulator-tests")
        .tls_certs_only([ca])
        .resolve(
            "ghes.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .expect("client");
    for url in [
        format!("{}/api/v3/app", emu.urls.api_url),
        format!("https://ghes.test:{port}/api/v3/app"),
        format!("https://localhost:{port}/app"),
    ] {
        let response = client.get(&url).send().expect("https request");
        assert_eq!(response.status().as_u16(), 401, "{url}");
        assert!(response.headers().contains_key("date"));
    }
    assert!(emu.stats().is_ok());
}

#[test]
fn library_starts_and_stops_in_process() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let state = tempfile::tempdir().expect("tmp");
        let emulator = github_emulator::Emulator::start_str(&basic_fixture(3600), state.path())
            .await
            .expect("start");
        let url = format!("{}/", emulator.urls.api_url);
        // GitHub (and the emulator) refuse requests without a User-Agent; reqwest sends none.
        let client = reqwest::Client::builder()
            .user_agent("github-emulator-tests")
            .build()
            .expect("client");
        assert_eq!(
            client
                .get(&url)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
            200
        );
        emulator
            .fault(github_emulator::admin::Fault::Status {
                route: Some("GET /".into()),
                status: 503,
                retry_after: None,
                times: Some(1),
                message: None,
                server: github_emulator::admin::FaultServer::Api,
            })
            .expect("fault");
        assert_eq!(
            client
                .get(&url)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
            503
        );
        assert_eq!(emulator.stats().requests["GET /"], 2);
        emulator.shutdown().await;
        let fresh = reqwest::Client::new();
        assert!(
            fresh.get(&url).send().await.is_err(),
            "no longer serving after shutdown"
        );
    });
}

#[test]
fn service_time_is_small() {
    let emu = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    emu.resolve_and_mint("acme", "widgets").expect("warm up");
    let mut micros: Vec<u128> = (0..100)
        .map(|_| {
            let started = Instant::now();
            emu.resolve_and_mint("acme", "widgets").expect("mint");
            started.elapsed().as_micros()
        })
        .collect();
    micros.sort();
    eprintln!(
        "resolve + mint (2 requests, kept-alive connection): median {} µs, p90 {} µs",
        micros[50], micros[90]
    );
    // Generous: a debug build on a loaded 2-core machine.
    assert!(micros[50] < 100_000, "median {} µs", micros[50]);
}
