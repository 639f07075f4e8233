//! A mint task that dies (a panic in the HTTP stack, the runtime shutting down under it) must
//! not leave its cache key joined to a flight that will never complete: the next request for
//! the key mints afresh instead of failing at once, forever.

mod support;

use ghapp_broker::transport::{HttpRequest, HttpTransport, SendFuture};
use ghapp_broker::{Broker, Config};
use ghapp_protocol::api::TokenQuery;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::fake::FakeGitHub;

/// The fake GitHub, except that the first access_tokens call panics inside the transport.
struct PanicOnce {
    github: FakeGitHub,
    armed: AtomicBool,
}

impl HttpTransport for PanicOnce {
    fn send(&self, request: HttpRequest) -> SendFuture {
        if request.url.contains("/access_tokens") && self.armed.swap(false, Ordering::SeqCst) {
            return Box::pin(async { panic!("transport blew up mid-mint (test)") });
        }
        self.github.send(request)
    }
}

#[tokio::test(start_paused = true)]
async fn a_mint_task_that_panics_does_not_wedge_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, include_str!("data/test-key.pem")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[[app]]\nname = \"acme-bot\"\napp_id = 12345\nprivate_key_file = {:?}\n",
        key.display().to_string()
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let github = FakeGitHub::new(Duration::from_secs(3600));
    let transport = Arc::new(PanicOnce {
        github: github.clone(),
        armed: AtomicBool::new(true),
    });
    let broker = Broker::start_with_transport(&config, transport).unwrap();
    let widgets = TokenQuery {
        owner: Some("acme".into()),
        repo: Some("widgets".into()),
        ..TokenQuery::default()
    };

    let first = broker.token(&widgets).await;
    assert!(first.is_err(), "the mint died: no token");
    let second = broker
        .token(&widgets)
        .await
        .expect("the key mints again after a dead mint task");
    assert_eq!(second.repositories, vec!["widgets".to_string()]);
    assert_eq!(github.mints(), 1);
    broker.shutdown();
}
