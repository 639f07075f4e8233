//! `HTTPS_PROXY` from the environment is honoured: the broker reaches GitHub through it with
//! `CONNECT`. (Its own test binary, since it sets process-wide environment variables.)

mod support;

use ghapp_broker::{Broker, Config, ErrorKind};
use ghapp_protocol::api::TokenQuery;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_from_the_environment_is_used() {
    // A "proxy" that records what it is asked and refuses to connect anywhere.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                record.lock().unwrap().push(line.trim().to_string());
            }
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    // SAFETY: this test binary has a single test, and no other thread reads the environment
    // while it is changed (the broker's HTTP client reads it when built, below).
    unsafe {
        for name in [
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            std::env::remove_var(name);
        }
        std::env::set_var("HTTPS_PROXY", &proxy);
    }

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, include_str!("data/test-key.pem")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[daemon]\nretry_budget = \"3s\"\n[[app]]\nname = \"proxied\"\nhost = \"ghe.example.invalid\"\napp_id = 1\nprivate_key_file = {:?}\n",
        key.display().to_string()
    );
    let broker = Broker::start(&Config::parse(&text, Path::new("t.toml")).unwrap()).unwrap();
    let query = TokenQuery {
        host: Some("ghe.example.invalid".into()),
        owner: Some("acme".into()),
        repo: Some("widgets".into()),
        ..TokenQuery::default()
    };
    let e = broker.token(&query).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{}", e.message);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|line| line.starts_with("CONNECT ghe.example.invalid:443 ")),
        "the proxy saw {seen:?}"
    );
}
