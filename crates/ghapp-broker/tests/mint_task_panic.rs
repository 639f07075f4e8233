//! A mint task that dies (a panic in the HTTP stack, the runtime shutting down under it) must
//! not leave its cache key joined to a flight that will never complete: the next request for
//! the key mints afresh instead of failing at once, forever. The same holds for an installation
//! look-up task: its target is looked up again.

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

/// The fake GitHub, except that the first call whose URL contains `route` panics inside the
/// transport.
struct PanicOnce {
    github: FakeGitHub,
    route: &'static str,
    armed: AtomicBool,
}

impl HttpTransport for PanicOnce {
    fn send(&self, request: HttpRequest) -> SendFuture {
        if request.url.contains(self.route) && self.armed.swap(false, Ordering::SeqCst) {
            return Box::pin(async { panic!("transport blew up mid-mint (test)") });
        }
        self.github.send(request)
    }
}

fn config(dir: &Path) -> Config {
    let key = dir.join("key.pem");
    std::fs::write(&key, include_str!("data/test-key.pem")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[[app]]\nname = \"acme-bot\"\napp_id = 12345\nprivate_key_file = {:?}\n",
        key.display().to_string()
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

/// A broker whose transport panics once, on the first call to `route`.
fn broker_panicking_once_on(dir: &Path, route: &'static str) -> (Broker, FakeGitHub) {
    let github = FakeGitHub::new(Duration::from_secs(3600));
    let transport = Arc::new(PanicOnce {
        github: github.clone(),
        route,
        armed: AtomicBool::new(true),
    });
    let broker = Broker::start_with_transport(&config(dir), transport).unwrap();
    (broker, github)
}

fn widgets() -> TokenQuery {
    TokenQuery {
        owner: Some("acme".into()),
        repo: Some("widgets".into()),
        ..TokenQuery::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_mint_task_that_panics_does_not_wedge_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, github) = broker_panicking_once_on(dir.path(), "/access_tokens");

    let first = broker.token(&widgets()).await;
    assert!(first.is_err(), "the mint died: no token");
    let second = broker
        .token(&widgets())
        .await
        .expect("the key mints again after a dead mint task");
    assert_eq!(second.repositories, vec!["widgets".to_string()]);
    assert_eq!(github.mints(), 1);
    broker.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_look_up_task_that_panics_does_not_wedge_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, github) = broker_panicking_once_on(dir.path(), "/installation");

    let first = broker.token(&widgets()).await;
    let error = first.expect_err("the look-up died: no token");
    assert!(
        error.message.contains("look-up"),
        "says the look-up failed: {}",
        error.message
    );
    let second = broker
        .token(&widgets())
        .await
        .expect("the target is looked up again after a dead look-up task");
    assert_eq!(second.repositories, vec!["widgets".to_string()]);
    assert_eq!(github.mints(), 1);
    broker.shutdown();
}
