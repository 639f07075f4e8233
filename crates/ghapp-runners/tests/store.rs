//! The store and the sync against a fake GitHub: races on a name, the audit chain catching an
//! edited and a deleted row, export, backup, a damaged file, and every lifecycle transition.

use ghapp_protocol::runners::{ProvisionMode, RunnerState};
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use ghapp_runners::{
    Actor, ApiFailure, GitHubRunner, JitConfig, JitRequest, Limits, NewRunner, RegistrationToken,
    RunnerApi, Store, StoreError, Target, lifecycle, reconcile,
};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

fn actor() -> Actor {
    Actor {
        identity: "uid:1000".into(),
        address: None,
    }
}

fn new_runner(name: &str) -> NewRunner {
    NewRunner {
        name: name.into(),
        owner_identity: "uid:1000".into(),
        host: "github.com".into(),
        org: "acme".into(),
        repo: None,
        labels: vec!["linux".into()],
        runner_group_id: 1,
        ephemeral: false,
        mode: ProvisionMode::Jit,
    }
}

#[test]
fn concurrent_reservations_of_one_name_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite3");
    let store = Arc::new(Store::open(&path).unwrap());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.reserve(&new_runner("ci-1"), &actor(), Timestamp::now())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for failure in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(failure, StoreError::Conflict { .. }), "{failure}");
        assert_eq!(failure.http_status(), 409);
    }
    assert!(store.verify_audit().unwrap().ok());
}

#[test]
fn the_audit_chain_catches_an_edited_and_a_deleted_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite3");
    {
        let store = Store::open(&path).unwrap();
        for i in 0..5 {
            store
                .reserve(&new_runner(&format!("r{i}")), &actor(), Timestamp::now())
                .unwrap();
        }
        let verified = store.verify_audit().unwrap();
        assert!(verified.ok(), "{:?}", verified.problems);
        assert_eq!(verified.rows, 5);
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    // The triggers refuse changes made through SQLite...
    assert!(
        raw.execute("UPDATE audit SET actor = 'x' WHERE seq = 2", [])
            .is_err()
    );
    // ...so an attacker drops them first.
    raw.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    raw.execute("UPDATE audit SET actor = 'uid:0' WHERE seq = 2", [])
        .unwrap();
    let store = Store::open_read_only(&path).unwrap();
    let verified = store.verify_audit().unwrap();
    assert!(!verified.ok());
    assert!(
        verified
            .problems
            .iter()
            .any(|p| p.contains("row 2") && p.contains("edited")),
        "{:?}",
        verified.problems
    );
    drop(store);

    let dir2 = tempfile::tempdir().unwrap();
    let path2 = dir2.path().join("r.sqlite3");
    {
        let store = Store::open(&path2).unwrap();
        for i in 0..5 {
            store
                .reserve(&new_runner(&format!("r{i}")), &actor(), Timestamp::now())
                .unwrap();
        }
    }
    let raw = rusqlite::Connection::open(&path2).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 3;")
        .unwrap();
    let store = Store::open_read_only(&path2).unwrap();
    let verified = store.verify_audit().unwrap();
    assert!(!verified.ok());
    assert!(
        verified
            .problems
            .iter()
            .any(|p| p.contains("row 4") && p.contains("deleted")),
        "{:?}",
        verified.problems
    );
}

#[test]
fn export_backup_and_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite3");
    let store = Store::open(&path).unwrap();
    store
        .reserve(&new_runner("a"), &actor(), Timestamp::now())
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(store.export_audit(None, &mut out).unwrap(), 1);
    let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(line["action"], "provision_requested");
    assert_eq!(line["runner"], "a");
    let mut none = Vec::new();
    let future = Timestamp::now().saturating_add(Duration::from_secs(3600));
    assert_eq!(store.export_audit(Some(future), &mut none).unwrap(), 0);

    let copy = dir.path().join("backup.sqlite3");
    store.backup(&copy).unwrap();
    assert!(store.backup(&copy).is_err(), "never overwrites");
    let restored = Store::open(&copy).unwrap();
    assert_eq!(
        restored.get("a").unwrap().unwrap().state,
        RunnerState::Pending
    );
    assert!(restored.verify_audit().unwrap().ok());

    let bad = dir.path().join("bad.sqlite3");
    std::fs::write(&bad, vec![0x5a; 8192]).unwrap();
    let error = Store::open(&bad).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains("restore it from a backup"),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&bad).unwrap(),
        vec![0x5a; 8192],
        "left as it was"
    );
}

/// A GitHub with runners in memory.
#[derive(Default)]
struct FakeGitHub {
    runners: Mutex<Vec<GitHubRunner>>,
    fail_list: Mutex<bool>,
    deleted: Mutex<Vec<u64>>,
}

impl FakeGitHub {
    fn set(&self, name: &str, online: bool) {
        for runner in self.runners.lock().unwrap().iter_mut() {
            if runner.name == name {
                runner.online = online;
            }
        }
    }
    fn remove(&self, name: &str) {
        self.runners.lock().unwrap().retain(|r| r.name != name);
    }
}

impl RunnerApi for FakeGitHub {
    async fn list(&self, _: &Target) -> Result<Vec<GitHubRunner>, ApiFailure> {
        if *self.fail_list.lock().unwrap() {
            return Err(ApiFailure {
                status: 503,
                github_status: Some(502),
                message: "GitHub unreachable".into(),
            });
        }
        Ok(self.runners.lock().unwrap().clone())
    }
    async fn get(&self, _: &Target, id: u64) -> Result<Option<GitHubRunner>, ApiFailure> {
        Ok(self
            .runners
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.id == id)
            .cloned())
    }
    async fn delete(&self, _: &Target, id: u64) -> Result<bool, ApiFailure> {
        self.deleted.lock().unwrap().push(id);
        let mut runners = self.runners.lock().unwrap();
        let before = runners.len();
        runners.retain(|r| r.id != id);
        Ok(runners.len() < before)
    }
    async fn generate_jitconfig(
        &self,
        _: &Target,
        request: &JitRequest,
    ) -> Result<JitConfig, ApiFailure> {
        let mut runners = self.runners.lock().unwrap();
        if runners.iter().any(|r| r.name == request.name) {
            return Err(ApiFailure {
                status: 409,
                github_status: Some(409),
                message: "Already exists".into(),
            });
        }
        let runner = GitHubRunner {
            id: runners.len() as u64 + 10,
            name: request.name.clone(),
            online: false,
            busy: false,
            labels: request.labels.clone(),
        };
        runners.push(runner.clone());
        Ok(JitConfig {
            runner,
            encoded_jit_config: Token::new("eyJfake"),
            url: "https://github.com/acme".into(),
        })
    }
    async fn registration_token(&self, _: &Target) -> Result<RegistrationToken, ApiFailure> {
        Ok(RegistrationToken {
            token: Token::new("AABBCC"),
            expires_at: Timestamp::now(),
            url: "https://github.com/acme".into(),
        })
    }
}

fn target() -> Target {
    Target {
        host: "github.com".into(),
        org: "acme".into(),
        repo: None,
    }
}

#[tokio::test]
async fn every_transition_of_the_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("r.sqlite3")).unwrap();
    let github = FakeGitHub::default();
    let limits = Limits {
        offline_after: Duration::from_secs(3600),
        pending_after: Duration::from_secs(7200),
    };
    let t0 = Timestamp::now();
    let mut ephemeral = new_runner("eph");
    ephemeral.ephemeral = true;
    for new in [new_runner("long"), ephemeral] {
        let provisioned = lifecycle::provision(&store, &github, &target(), &new, "_work", &actor())
            .await
            .unwrap();
        assert_eq!(provisioned.record.state, RunnerState::Pending);
        assert!(provisioned.record.github_id.is_some());
    }
    // A name GitHub already has: 409 passes through and the reservation goes.
    github.remove("long");
    github.runners.lock().unwrap().push(GitHubRunner {
        id: 99,
        name: "taken".into(),
        online: false,
        busy: false,
        labels: vec![],
    });
    let error = lifecycle::provision(
        &store,
        &github,
        &target(),
        &new_runner("taken"),
        "_work",
        &actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.http_status(), 409);
    assert!(store.get("taken").unwrap().is_none());
    github.remove("taken");
    // Put "long" back (it was registered).
    github.runners.lock().unwrap().push(GitHubRunner {
        id: 10,
        name: "long".into(),
        online: false,
        busy: false,
        labels: vec![],
    });

    // A failing list changes nothing.
    *github.fail_list.lock().unwrap() = true;
    let report = reconcile(&store, &github, t0, limits).await;
    assert!(report.transitions.is_empty() && !report.failures.is_empty());
    *github.fail_list.lock().unwrap() = false;

    // Online: pending → active.
    github.set("long", true);
    github.set("eph", true);
    let report = reconcile(&store, &github, t0, limits).await;
    assert_eq!(report.transitions.len(), 2, "{report:?}");
    assert!(
        report
            .transitions
            .iter()
            .all(|t| t.to == RunnerState::Active)
    );

    // Offline: active → offline.
    github.set("long", false);
    // The ephemeral runner ran its job: GitHub removed it.
    github.remove("eph");
    let report = reconcile(&store, &github, t0, limits).await;
    let states: Vec<_> = report
        .transitions
        .iter()
        .map(|t| (t.runner_name.as_str(), t.to))
        .collect();
    assert!(
        states.contains(&("long", RunnerState::Offline)),
        "{report:?}"
    );
    assert!(
        states.contains(&("eph", RunnerState::Deleted)),
        "{report:?}"
    );
    assert!(
        report
            .transitions
            .iter()
            .any(|t| t.reason.contains("finished its job"))
    );

    // Still offline, not long enough.
    let soon = t0.saturating_add(Duration::from_secs(60));
    assert!(
        reconcile(&store, &github, soon, limits)
            .await
            .transitions
            .is_empty()
    );
    // Offline longer than the limit: deleted on GitHub and marked.
    let later = Timestamp::now().saturating_add(Duration::from_secs(3601));
    let report = reconcile(&store, &github, later, limits).await;
    assert_eq!(report.transitions.len(), 1, "{report:?}");
    assert_eq!(report.transitions[0].to, RunnerState::Deleted);
    assert_eq!(*github.deleted.lock().unwrap(), vec![10]);
    assert!(github.runners.lock().unwrap().is_empty());
    assert!(store.list(None, false).unwrap().is_empty());

    // A registration token never used: pending, then deleted after the pending limit.
    let mut token_runner = new_runner("tok");
    token_runner.mode = ProvisionMode::RegistrationToken;
    lifecycle::provision(&store, &github, &target(), &token_runner, "_work", &actor())
        .await
        .unwrap();
    assert!(
        reconcile(&store, &github, Timestamp::now(), limits)
            .await
            .transitions
            .is_empty()
    );
    let much_later = Timestamp::now().saturating_add(Duration::from_secs(7201));
    let report = reconcile(&store, &github, much_later, limits).await;
    assert_eq!(report.transitions.len(), 1, "{report:?}");
    assert!(report.transitions[0].reason.contains("never registered"));

    // Deprovision of a live runner; the name is free again afterwards.
    let provisioned = lifecycle::provision(
        &store,
        &github,
        &target(),
        &new_runner("long"),
        "_work",
        &actor(),
    )
    .await
    .unwrap();
    let gone = lifecycle::deprovision(
        &store,
        &github,
        &provisioned.record,
        &actor(),
        "deprovisioned",
    )
    .await
    .unwrap();
    assert_eq!(gone.state, RunnerState::Deleted);
    let verified = store.verify_audit().unwrap();
    assert!(verified.ok(), "{:?}", verified.problems);
    assert!(verified.rows > 10);
}

#[test]
fn a_database_from_a_newer_ghapp_is_refused_not_downgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite3");
    Store::open(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(raw);
    let error = Store::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::TooNew { found: 99, .. }),
        "{error}"
    );
    assert!(Store::open_read_only(&path).is_err());
    // Reopening a current file keeps its rows and runs no migration again.
    let other = dir.path().join("o.sqlite3");
    Store::open(&other)
        .unwrap()
        .reserve(&new_runner("kept"), &actor(), Timestamp::now())
        .unwrap();
    let reopened = Store::open(&other).unwrap();
    assert!(reopened.get("kept").unwrap().is_some());
    assert_eq!(ghapp_runners::SCHEMA_VERSION, 1);
}
