//! The runner service end to end, with real processes: the emulator, a daemon with `[runners]`,
//! and `ghapp runners …`. JIT and registration-token provisioning; list/get/delete scoped to
//! the caller (two real uids when root); every lifecycle transition driven through the
//! emulator's admin route; cleanup; `kill -9` in the middle of writes; two concurrent provisions
//! of one name; a damaged and a read-only database; the audit chain catching an edited and a
//! deleted row; export; a backup that restores.

mod common;
mod stack;

use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, http_request};
use ghapp_testkit::emulator::{EmulatorProcess, request};
use serde_json::{Value, json};
use stack::Stack;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};

/// `acme` (organization) with the runner permissions, `widgets` covered.
const FIXTURE: &str = r#"
token_ttl_secs = 3600

[[apps]]
id = 1
slug = "ghapp-test"
private_key_out = "app1.pem"

[[installations]]
id = 100
app = 1
account = "acme"
repositories = ["widgets", "gadgets"]
permissions = { contents = "read", metadata = "read", organization_self_hosted_runners = "write", administration = "write" }
"#;

/// The App's ceiling in the ghapp config, then `[runners]` (a short sync, so tests drive it).
fn app_extra(database: &Path, extra: &str) -> String {
    format!(
        "permissions = {{ contents = \"read\", metadata = \"read\", organization_self_hosted_runners = \"write\", administration = \"write\" }}\n\n\
         [runners]\ndatabase = {:?}\nowner = \"acme\"\nsync_interval = \"1h\"\ncleanup_after = \"1h\"\n{extra}",
        database.display().to_string()
    )
}

/// A daemon config for `emulator`: `daemon_extra` in `[daemon]`, `app_extra` after the
/// `[[app]]` (its ceiling, then further tables).
fn config_for(emulator: &EmulatorProcess, daemon_extra: &str, app_extra: &str) -> String {
    format!(
        "[daemon]\nretry_budget = \"2s\"\nrequest_timeout = \"2s\"\n{daemon_extra}\n\n[[app]]\nname = \"test-app\"\n\
         host = {host:?}\napi_url = {api:?}\napp_id = 1\nprivate_key_file = {key:?}\ninsecure_http = true\n{app_extra}\n",
        host = stack::host_of(&emulator.urls.git_url),
        api = emulator.urls.api_url,
        key = emulator.state_dir().join("app1.pem").display().to_string(),
    )
}

struct Runners {
    stack: Stack,
    _dir: tempfile::TempDir,
    database: PathBuf,
}

impl Runners {
    fn start() -> Runners {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("runners.sqlite3");
        let stack = Stack::start_with(FIXTURE, &app_extra(&database, ""));
        Runners {
            stack,
            _dir: dir,
            database,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let response = http_request(self.stack.daemon.socket(), method, path, body.as_deref())
            .expect("the daemon answers");
        let value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
        (response.status, value)
    }

    fn provision(&self, body: Value) -> (u16, Value) {
        self.call("POST", "/api/v1/runners/provision", Some(body))
    }

    fn sync(&self) -> Value {
        let (status, report) = self.call("POST", "/api/v1/runners/sync", Some(json!({})));
        assert_eq!(status, 200, "{report}");
        report
    }

    fn state(&self, name: &str) -> String {
        let (status, record) = self.call("GET", &format!("/api/v1/runners/{name}"), None);
        assert_eq!(status, 200, "{record}");
        record["state"].as_str().unwrap().to_string()
    }
}

/// `POST /_emulator/runners`.
fn emulate(emulator: &EmulatorProcess, action: Value) -> Value {
    let response = request(
        &emulator.urls.admin_url,
        None,
        "POST",
        "/_emulator/runners",
        &[],
        Some(&action.to_string()),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{action}: {:?}", response.json());
    response.json().unwrap()
}

fn github_runners(emulator: &EmulatorProcess) -> Vec<String> {
    let response = request(
        &emulator.urls.admin_url,
        None,
        "GET",
        "/_emulator/runners",
        &[],
        None,
    )
    .unwrap();
    response.json().unwrap()["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn transitions(report: &Value) -> Vec<(String, String)> {
    report["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["runner_name"].as_str().unwrap().to_string(),
                t["to"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn provisioning_and_every_lifecycle_transition() {
    let runners = Runners::start();
    let emulator = &runners.stack.emulator;

    // Just-in-time (the default): registered at once, no registration token leaves ghapp.
    let (status, jit) =
        runners.provision(json!({"runner_name": "jit-1", "labels": ["gpu", "linux"]}));
    assert_eq!(status, 201, "{jit}");
    assert_eq!(jit["mode"], "jit");
    assert!(jit["runner_id"].as_u64().is_some(), "{jit}");
    assert!(jit.get("registration_token").is_none());
    let encoded = jit["encoded_jit_config"].as_str().unwrap();
    assert_eq!(
        jit["configuration_command"],
        format!("./run.sh --jitconfig {encoded}")
    );
    assert_eq!(
        jit["github_url"],
        format!("http://{}/acme", runners.stack.host)
    );
    assert_eq!(jit["runner"]["state"], "pending");
    assert_eq!(
        jit["runner"]["owner_identity"],
        format!("uid:{}", rustix::process::geteuid().as_raw())
    );
    assert!(github_runners(emulator).contains(&"jit-1".to_string()));

    // The seed's answer with "mode": "registration_token".
    let (status, token) = runners.provision(json!({
        "runner_name": "tok-1", "labels": ["x64"], "ephemeral": false, "runner_group_id": 1,
        "mode": "registration_token"
    }));
    assert_eq!(status, 201, "{token}");
    let secret = token["registration_token"].as_str().unwrap();
    assert!(token["expires_at"].as_str().is_some());
    assert!(token["runner_id"].is_null());
    assert_eq!(
        token["configuration_command"],
        format!(
            "./config.sh --url http://{}/acme --token {secret} --name tok-1 --labels x64",
            runners.stack.host
        )
    );

    // A repository's runner (administration: write).
    let (status, repo) =
        runners.provision(json!({"runner_name": "repo-1", "repo": "acme/widgets"}));
    assert_eq!(status, 201, "{repo}");
    assert_eq!(repo["runner"]["repo"], "widgets");

    // A name in use: 409; bad labels: 422; a reserved name: 400.
    let (status, _) = runners.provision(json!({"runner_name": "jit-1"}));
    assert_eq!(status, 409);
    let labels: Vec<String> = (0..101).map(|i| format!("l{i}")).collect();
    let (status, _) = runners.provision(json!({"runner_name": "many", "labels": labels}));
    assert_eq!(status, 422);
    let (status, _) = runners.provision(json!({"runner_name": "sync"}));
    assert_eq!(status, 400);

    let (status, list) = runners.call("GET", "/api/v1/runners", None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["jit-1", "tok-1", "repo-1"]);

    // `config.sh` with the registration token: GitHub now lists tok-1; the sync learns its id.
    emulate(
        emulator,
        json!({"action": "register", "registration_token": secret, "name": "tok-1", "labels": ["x64"]}),
    );
    assert!(transitions(&runners.sync()).is_empty());
    let (_, record) = runners.call("GET", "/api/v1/runners/tok-1", None);
    assert!(record["github_id"].as_u64().is_some(), "{record}");
    assert_eq!(record["state"], "pending");

    // pending → active (online) → offline.
    emulate(emulator, json!({"action": "online", "name": "jit-1"}));
    assert_eq!(
        transitions(&runners.sync()),
        [("jit-1".to_string(), "active".to_string())]
    );
    emulate(emulator, json!({"action": "busy", "name": "jit-1"}));
    assert!(transitions(&runners.sync()).is_empty());
    let (_, record) = runners.call("GET", "/api/v1/runners/jit-1", None);
    assert_eq!(record["busy"], true);
    emulate(emulator, json!({"action": "offline", "name": "jit-1"}));
    assert_eq!(
        transitions(&runners.sync()),
        [("jit-1".to_string(), "offline".to_string())]
    );

    // An ephemeral runner that finished its job and vanished: deleted.
    let (status, _) = runners.provision(json!({"runner_name": "eph-1", "ephemeral": true}));
    assert_eq!(status, 201);
    emulate(emulator, json!({"action": "busy", "name": "eph-1"}));
    assert_eq!(
        transitions(&runners.sync()),
        [("eph-1".to_string(), "active".to_string())]
    );
    let finished = emulate(emulator, json!({"action": "finish_job", "name": "eph-1"}));
    assert_eq!(finished["runner"]["removed"], true);
    let report = runners.sync();
    assert_eq!(
        transitions(&report),
        [("eph-1".to_string(), "deleted".to_string())]
    );
    assert!(
        report["transitions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("finished its job")
    );

    // Cleanup of runners offline longer than 0s: jit-1 goes, on GitHub too.
    let sandbox = runners.stack.sandbox();
    let out = sandbox.run(&["runners", "cleanup", "--offline-for", "0s"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("jit-1: offline -> deleted"),
        "{}",
        out.stdout
    );
    assert!(!github_runners(emulator).contains(&"jit-1".to_string()));
    assert_eq!(runners.state("jit-1"), "deleted");

    // Deprovision through the CLI: tok-1 (registered with a token) deleted on GitHub.
    let out = sandbox.run(&["runners", "deprovision", "tok-1"]);
    out.expect_code(0);
    assert_eq!(out.stdout, "tok-1: deleted\n");
    assert!(!github_runners(emulator).contains(&"tok-1".to_string()));
    // The name is free again.
    let out = sandbox.run(&["runners", "provision", "tok-1", "--labels", "a,b", "--json"]);
    out.expect_code(0);
    let again: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(again["runner"]["labels"], json!(["a", "b"]));

    // The CLI's list and status.
    let out = sandbox.run(&["runners", "list"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("repo-1") && out.stdout.contains("acme/widgets"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("jit-1"),
        "deleted runners only with --deleted"
    );
    let out = sandbox.run(&["runners", "list", "--deleted", "--json"]);
    out.expect_code(0);
    assert!(out.stdout.contains("\"jit-1\""));
    sandbox.run(&["runners", "status", "ghost"]).expect_code(4);

    // The audit trail: verify, export, backup.
    let out = sandbox.run(&[
        "runners",
        "audit",
        "verify",
        "--database",
        runners.database.to_str().unwrap(),
    ]);
    out.expect_code(0);
    assert!(out.stdout.contains("chain intact"), "{}", out.stdout);
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("audit.jsonl");
    let out = sandbox.run(&[
        "runners",
        "audit",
        "export",
        "--since",
        "2020-01-01",
        "--output",
        export.to_str().unwrap(),
        "--database",
        runners.database.to_str().unwrap(),
    ]);
    out.expect_code(0);
    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for wanted in [
        "provision_requested",
        "provision",
        "registered",
        "transition",
        "cleanup",
    ] {
        assert!(actions.contains(&wanted), "{wanted} in {actions:?}");
    }
    // Never a secret in the trail.
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(!text.contains(encoded) && !text.contains(secret));
    let out = sandbox.run(&[
        "runners",
        "audit",
        "export",
        "--since",
        "2999-01-01",
        "--database",
        runners.database.to_str().unwrap(),
    ]);
    out.expect_code(0);
    assert!(out.stdout.is_empty());

    let backup = dir.path().join("backup.sqlite3");
    let out = sandbox.run(&[
        "runners",
        "backup",
        backup.to_str().unwrap(),
        "--database",
        runners.database.to_str().unwrap(),
    ]);
    out.expect_code(0);
    // The backup restores: a daemon on it serves the same runners.
    let restored = DaemonProcess::start(&config_for(
        &runners.stack.emulator,
        "",
        &app_extra(&backup, ""),
    ))
    .expect("a daemon starts on the backup");
    let list = http_request(
        restored.socket(),
        "GET",
        "/api/v1/runners?deleted=true",
        None,
    )
    .unwrap();
    let restored_names: Vec<String> = list.json().unwrap()["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    for name in ["jit-1", "tok-1", "repo-1", "eph-1"] {
        assert!(
            restored_names.contains(&name.to_string()),
            "{name} in {restored_names:?}"
        );
    }
    drop(restored);

    // An edited row and a deleted row are caught.
    let edited = dir.path().join("edited.sqlite3");
    let deleted = dir.path().join("deleted.sqlite3");
    std::fs::copy(&backup, &edited).unwrap();
    std::fs::copy(&backup, &deleted).unwrap();
    let raw = rusqlite::Connection::open(&edited).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'uid:4242' WHERE seq = 2;",
    )
    .unwrap();
    drop(raw);
    let out = sandbox.run(&[
        "runners",
        "audit",
        "verify",
        "--database",
        edited.to_str().unwrap(),
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("row 2") && out.stderr.contains("edited"),
        "{}",
        out.stderr
    );
    let raw = rusqlite::Connection::open(&deleted).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 3;")
        .unwrap();
    drop(raw);
    let out = sandbox.run(&[
        "runners",
        "audit",
        "verify",
        "--database",
        deleted.to_str().unwrap(),
    ]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("row 4") && out.stderr.contains("deleted"),
        "{}",
        out.stderr
    );
}

#[test]
fn offline_runners_are_cleaned_up_after_cleanup_after() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("runners.sqlite3");
    let extra = app_extra(&database, "")
        .replace("cleanup_after = \"1h\"", "cleanup_after = \"1s\"")
        .replace("sync_interval = \"1h\"", "sync_interval = \"200ms\"");
    let stack = Stack::start_with(FIXTURE, &extra);
    let socket = stack.daemon.socket().to_path_buf();
    let provisioned = http_request(
        &socket,
        "POST",
        "/api/v1/runners/provision",
        Some(r#"{"runner_name":"old-1"}"#),
    )
    .unwrap();
    assert_eq!(provisioned.status, 201, "{}", provisioned.body);
    emulate(
        &stack.emulator,
        json!({"action": "online", "name": "old-1"}),
    );
    // The background sync (every 200 ms) sees it online, then offline, then — a second later —
    // deletes it on GitHub.
    let state = |socket: &Path| {
        http_request(socket, "GET", "/api/v1/runners/old-1", None)
            .unwrap()
            .json()
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    wait_for(|| state(&socket) == "active", "old-1 active");
    emulate(
        &stack.emulator,
        json!({"action": "offline", "name": "old-1"}),
    );
    wait_for(
        || state(&socket) == "deleted",
        "old-1 deleted after cleanup_after",
    );
    assert!(!github_runners(&stack.emulator).contains(&"old-1".to_string()));
}

/// Polls `done` every 50 ms for at most 10 s.
fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn two_concurrent_provisions_of_one_name_one_wins() {
    let runners = Runners::start();
    let socket = runners.stack.daemon.socket().to_path_buf();
    let barrier = Arc::new(Barrier::new(6));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (socket, barrier, statuses) = (socket.clone(), barrier.clone(), statuses.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let response = http_request(
                    &socket,
                    "POST",
                    "/api/v1/runners/provision",
                    Some(r#"{"runner_name":"same"}"#),
                )
                .unwrap();
                statuses.lock().unwrap().push(response.status);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut statuses = statuses.lock().unwrap().clone();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409]);
    assert_eq!(
        github_runners(&runners.stack.emulator)
            .iter()
            .filter(|n| *n == "same")
            .count(),
        1
    );
}

#[test]
fn the_database_survives_kill_9_in_the_middle_of_writes() {
    let mut runners = Runners::start();
    let socket = runners.stack.daemon.socket().to_path_buf();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let started = std::time::Instant::now();
    let writer = {
        let (socket, acknowledged) = (socket.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            for i in 0..10_000 {
                let body = format!(r#"{{"runner_name":"k-{i}","mode":"registration_token"}}"#);
                match http_request(&socket, "POST", "/api/v1/runners/provision", Some(&body)) {
                    Ok(response) if response.status == 201 => {
                        acknowledged.lock().unwrap().push(format!("k-{i}"))
                    }
                    _ => return i,
                }
            }
            10_000
        })
    };
    wait_for(
        || acknowledged.lock().unwrap().len() >= 25,
        "25 acknowledged provisions",
    );
    let elapsed = started.elapsed();
    runners.stack.daemon.kill();
    let attempted = writer.join().unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(attempted >= acknowledged.len());
    runners
        .stack
        .daemon
        .restart()
        .expect("the daemon restarts on the same database");
    let (status, list) = runners.call("GET", "/api/v1/runners", None);
    assert_eq!(status, 200);
    let names: Vec<&str> = list["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in &acknowledged {
        assert!(
            names.contains(&name.as_str()),
            "acknowledged {name} lost after kill -9"
        );
    }
    let out = runners.stack.sandbox().run(&[
        "runners",
        "audit",
        "verify",
        "--database",
        runners.database.to_str().unwrap(),
    ]);
    out.expect_code(0);
    eprintln!(
        "kill -9 after {} acknowledged provisions ({:.1} ms each, one after another): {}",
        acknowledged.len(),
        elapsed.as_secs_f64() * 1000.0 / 25.0,
        out.stdout.trim()
    );
}

#[test]
fn a_damaged_or_read_only_database_stops_the_daemon_with_a_clear_error() {
    let emulator = EmulatorProcess::start(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.sqlite3");
    std::fs::write(&damaged, vec![0x42u8; 16 * 1024]).unwrap();
    let config = config_for(&emulator, "", &app_extra(&damaged, ""));
    let error = DaemonProcess::start(&config)
        .err()
        .expect("the daemon refuses to start");
    let text = format!("{error:#}");
    assert!(text.contains("damaged or not an SQLite database"), "{text}");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        vec![0x42u8; 16 * 1024],
        "never reset"
    );

    // Read-only: a database the daemon's user cannot write.
    let good = dir.path().join("good.sqlite3");
    ghapp_runners::Store::open(&good).unwrap();
    if ghapp_testkit::system::is_root() {
        // Root writes anything: run the daemon as a throwaway user instead.
        let user = match ghapp_testkit::system::ThrowawayUser::create(
            "ghapp-rt-ro",
            &["--no-create-home", "--shell", "/usr/sbin/nologin"],
        ) {
            Ok(user) => user,
            Err(error) => {
                eprintln!("SKIPPED: read-only database as another user: {error}");
                return;
            }
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        let sockets = tempfile::tempdir().unwrap();
        rustix::fs::chown(
            sockets.path(),
            Some(rustix::fs::Uid::from_raw(user.uid)),
            Some(rustix::fs::Gid::from_raw(user.gid)),
        )
        .unwrap();
        let config_path = dir.path().join("config.toml");
        std::fs::write(
            &config_path,
            format!("[runners]\ndatabase = {:?}\n", good.display().to_string()),
        )
        .unwrap();
        let mut command =
            ghapp_testkit::system::as_user(user.uid, user.gid, ghapp_testkit::binary("ghapp"));
        ghapp_testkit::daemon::foreground_daemon(
            &mut command,
            &config_path,
            &sockets.path().join("d.sock"),
        );
        let output = command
            .env_remove("GHAPP_SOCKET")
            .env_remove("GHAPP_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("read-only"), "{stderr}");
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o444)).unwrap();
        let config = config_for(&emulator, "", &app_extra(&good, ""));
        let error = DaemonProcess::start(&config)
            .err()
            .expect("the daemon refuses to start");
        assert!(format!("{error:#}").contains("read-only"), "{error:#}");
    }
}

#[test]
fn callers_see_and_delete_only_their_own_runners() {
    use ghapp_testkit::system::{ThrowawayUser, as_user, is_root};
    if !is_root() {
        eprintln!(
            "SKIPPED: callers_see_and_delete_only_their_own_runners needs root (two throwaway users); run the tests as root, as CI does"
        );
        return;
    }
    let options = ["--no-create-home", "--shell", "/usr/sbin/nologin"];
    let (alice, bob) = match (
        ThrowawayUser::create("ghapp-rt-a", &options),
        ThrowawayUser::create("ghapp-rt-b", &options),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => panic!("throwaway users: {:?} {:?}", a.err(), b.err()),
    };
    let emulator = EmulatorProcess::start(FIXTURE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("runners.sqlite3");
    let daemon_extra = format!("allow_uids = [{}, {}]", alice.uid, bob.uid);
    let policy = format!(
        "\n[[daemon.policy]]\nuid = {}\nowners = [\"acme\"]\n\n[[daemon.policy]]\nuid = {}\nowners = [\"acme\"]\nrunner_groups = [1]\nrunner_labels = [\"linux-*\"]\n",
        alice.uid, bob.uid
    );
    let config = config_for(
        &emulator,
        &daemon_extra,
        &format!("{}{policy}", app_extra(&database, "")),
    );
    let daemon = DaemonProcess::start_with(
        &config,
        DaemonStart {
            dir_mode: Some(0o711),
            ..Default::default()
        },
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o666)).ok();
    let run = |user: &ThrowawayUser, args: &[&str]| {
        let output = as_user(user.uid, user.gid, ghapp_testkit::binary("ghapp"))
            .args(args)
            .env_clear()
            .env("GHAPP_SOCKET", daemon.socket())
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(
        &alice,
        &["runners", "provision", "alice-1", "--labels", "gpu"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    // Bob's policy: runner group 1, labels linux-* only.
    let (code, _, stderr) = run(&bob, &["runners", "provision", "bob-1", "--labels", "gpu"]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("label \"gpu\" is not allowed"), "{stderr}");
    let (code, _, stderr) = run(
        &bob,
        &[
            "runners",
            "provision",
            "bob-1",
            "--labels",
            "linux-x64",
            "--group",
            "2",
        ],
    );
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("runner group 2"), "{stderr}");
    let (code, _, stderr) = run(
        &bob,
        &["runners", "provision", "bob-1", "--labels", "linux-x64"],
    );
    assert_eq!(code, Some(0), "{stderr}");

    let (_, alice_list, _) = run(&alice, &["runners", "list"]);
    assert!(
        alice_list.contains("alice-1") && !alice_list.contains("bob-1"),
        "{alice_list}"
    );
    let (_, bob_list, _) = run(&bob, &["runners", "list"]);
    assert!(
        bob_list.contains("bob-1") && !bob_list.contains("alice-1"),
        "{bob_list}"
    );
    let (code, _, _) = run(&bob, &["runners", "status", "alice-1"]);
    assert_eq!(code, Some(4));
    let (code, _, _) = run(&bob, &["runners", "deprovision", "alice-1"]);
    assert_eq!(code, Some(4));
    let (code, _, stderr) = run(&bob, &["runners", "list", "--all"]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        github_runners(&emulator).contains(&"alice-1".to_string()),
        "bob deleted nothing"
    );
    let (code, out, stderr) = run(&alice, &["runners", "deprovision", "alice-1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(out, "alice-1: deleted\n");
}

#[test]
fn the_sync_reads_every_page_of_githubs_runner_list() {
    let runners = Runners::start();
    let emulator = &runners.stack.emulator;
    let (status, token) =
        runners.provision(json!({"runner_name": "last", "mode": "registration_token"}));
    assert_eq!(status, 201, "{token}");
    let secret = token["registration_token"].as_str().unwrap();
    // 104 runners registered elsewhere first: ours is the 105th, on the second page of 100.
    for i in 0..104 {
        emulate(
            emulator,
            json!({"action": "register", "registration_token": secret, "name": format!("other-{i}")}),
        );
    }
    emulate(
        emulator,
        json!({"action": "register", "registration_token": secret, "name": "last"}),
    );
    emulate(emulator, json!({"action": "online", "name": "last"}));
    // Count this round's requests only (the background sync's first round is an hour away).
    emulator.reset_stats().unwrap();
    assert_eq!(
        transitions(&runners.sync()),
        [("last".to_string(), "active".to_string())]
    );
    let stats = emulator.stats().unwrap();
    assert_eq!(
        stats["requests"]["GET /orgs/{org}/actions/runners"], 2,
        "{stats:#}"
    );
}

#[test]
fn on_the_network_health_is_public_and_runner_routes_need_a_credential() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("runners.sqlite3");
    let config = format!(
        "[daemon]\n\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n\n[runners]\ndatabase = {:?}\n",
        database.display().to_string()
    );
    let daemon = DaemonProcess::start(&config).unwrap();
    let ask = |method: &str, path: &str| {
        let mut stream = std::net::TcpStream::connect(daemon.network_address()).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: ghapp\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let health = ask("GET", "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.ends_with(r#"{"status":"ok","runners":true}"#),
        "{health}"
    );
    for (method, path) in [
        ("GET", "/api/v1/runners"),
        ("POST", "/api/v1/runners/provision"),
        ("DELETE", "/api/v1/runners/x"),
    ] {
        let refused = ask(method, path);
        assert!(
            refused.starts_with("HTTP/1.1 401"),
            "{method} {path}: {refused}"
        );
    }
}

/// Attacker's pass (2026-12-07): SQLite created the database — and its `-wal` and `-shm`, which
/// take its mode — `0644`, so every local user read who owns which runner and the audit trail;
/// and a database file another user planted (or could write) was used as is. Now it is created
/// `0600` and such a file is refused. The JIT config and registration token the emulator issued
/// appear in none of the daemon's files, its log or its metrics.
#[test]
fn the_runner_database_is_private_and_one_another_user_could_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let runners = Runners::start();
    let (status, jit) = runners.provision(json!({"runner_name": "jit-1"}));
    assert_eq!(status, 201, "{jit}");
    let (status, token) =
        runners.provision(json!({"runner_name": "tok-1", "mode": "registration_token"}));
    assert_eq!(status, 201, "{token}");
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", runners.database.display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "{file} is {mode:04o}: other local users can read it"
        );
    }
    let secrets = [
        jit["encoded_jit_config"].as_str().unwrap(),
        token["registration_token"].as_str().unwrap(),
    ];
    let mut seen = runners.stack.daemon.log();
    for suffix in ["", "-wal"] {
        let bytes = std::fs::read(format!("{}{suffix}", runners.database.display())).unwrap();
        seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    seen.push_str(&runners.call("GET", "/metrics", None).1.to_string());
    seen.push_str(&runners.call("GET", "/api/v1/runners", None).1.to_string());
    for secret in secrets {
        assert!(
            !seen.contains(secret),
            "a runner secret was stored or logged"
        );
    }

    // A database file group/others may write, or another user owns: refused, left as it is.
    let emulator = &runners.stack.emulator;
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted.sqlite3");
    std::fs::write(&planted, b"").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = config_for(emulator, "", &app_extra(&planted, ""));
    let error = DaemonProcess::start(&config).err().expect("refused");
    assert!(
        format!("{error:#}").contains("writable by group/others"),
        "{error:#}"
    );
    if ghapp_testkit::system::is_root() {
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
        let error = DaemonProcess::start(&config).err().expect("refused");
        assert!(
            format!("{error:#}").contains("owned by uid 65534"),
            "{error:#}"
        );
        let link = dir.path().join("link.sqlite3");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        let config = config_for(emulator, "", &app_extra(&link, ""));
        let error = DaemonProcess::start(&config).err().expect("refused");
        assert!(
            format!("{error:#}").contains("a symlink owned by uid 65534"),
            "{error:#}"
        );
        assert!(
            !dir.path().join("elsewhere").exists(),
            "nothing written through the link"
        );
    } else {
        eprintln!("SKIPPED: not root: a database owned by another user and a planted symlink");
    }
    assert_eq!(std::fs::read(&planted).unwrap(), b"", "never written");
}

/// Attacker's pass (2026-12-07): labels may hold any printable ASCII but a comma, and the
/// registration-token answer's `configuration_command` (what `ghapp runners provision` prints
/// to be run) carried them unquoted: a label such as `x;touch${IFS}FILE` — which a policy's
/// `runner_labels = ["x*"]` admits — ran a command of its author's in the shell that ran the
/// answer. Every word is now shell-quoted; run by sh, the command passes the label to
/// config.sh whole.
#[test]
fn a_label_cannot_inject_a_shell_command_into_the_configuration_command() {
    let runners = Runners::start();
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("injected");
    let label = format!("x;touch${{IFS}}{}", marker.display());
    let (status, answer) = runners.provision(json!({
        "runner_name": "inj-1", "mode": "registration_token", "labels": [label, "y$(id)"]
    }));
    assert_eq!(status, 201, "{answer}");
    let command = answer["configuration_command"].as_str().unwrap();
    // A config.sh that writes its arguments one per line, as the runner's would parse them.
    let script = work.path().join("config.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '%s\\n' \"$@\" > args\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(work.path())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let mut made: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        ["args", "config.sh"],
        "the label ran a command: {command}"
    );
    let args = std::fs::read_to_string(work.path().join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let labels = args.iter().position(|a| *a == "--labels").unwrap();
    assert_eq!(args[labels + 1], format!("{label},y$(id)"), "{command}");
    let token = args.iter().position(|a| *a == "--token").unwrap();
    assert_eq!(
        args[token + 1],
        answer["registration_token"].as_str().unwrap()
    );
}

/// Attacker's pass (2026-12-07): `/health` is answered to unauthenticated network callers, and
/// when the database failed its `503` carried the store's error — the database's path and
/// SQLite's words. The network now hears only that the database does not answer; the daemon's
/// log keeps the detail.
#[test]
fn a_failing_database_is_not_described_to_an_unauthenticated_network_caller() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("secret-place.sqlite3");
    let config = format!(
        "[daemon]\n\n[network]\nlisten = [\"127.0.0.1:0\"]\nanswer_key_file = \"answer-key.pem\"\n\n[runners]\ndatabase = {:?}\n",
        database.display().to_string()
    );
    let daemon = DaemonProcess::start(&config).unwrap();
    // Damage the file in place under the running daemon.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", database.display());
        if let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&path) {
            file.write_all(&[0x42u8; 32768]).unwrap();
        }
    }
    let mut stream = std::net::TcpStream::connect(daemon.network_address()).unwrap();
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: ghapp\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut health = String::new();
    stream.read_to_string(&mut health).unwrap();
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(!health.contains("secret-place"), "{health}");
    assert!(!health.to_ascii_lowercase().contains("sqlite"), "{health}");
}

/// Network callers (issue 14's identities) own runners too: two client keys over TCP each
/// provision, list, read and delete only their own; a caller without a credential gets 401.
#[test]
fn network_callers_own_their_runners_by_credential() {
    const KEY_A: &str = "ghk_runner-client-a-0123456789abcdefghijklmn";
    const KEY_B: &str = "ghk_runner-client-b-0123456789abcdefghijklmn";
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("runners.sqlite3");
    let network = format!(
        "\n[network]\nlisten = [\"127.0.0.1:0\"]\nmax_connections_per_address = 0\n\n\
         [[client]]\nname = \"ci-a\"\nkey_sha256 = \"{a}\"\n[[client]]\nname = \"ci-b\"\nkey_sha256 = \"{b}\"\n\n\
         [[policy]]\nclient = \"ci-a\"\nowners = [\"acme\"]\n[[policy]]\nclient = \"ci-b\"\nowners = [\"acme\"]\n",
        a = ghapp_protocol::client_key::digest_hex(KEY_A),
        b = ghapp_protocol::client_key::digest_hex(KEY_B),
    );
    let stack = Stack::start_with(FIXTURE, &app_extra(&database, &network));
    let base = format!("http://{}", stack.daemon.network_address());
    let call = |key: Option<&str>, method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string());
        let response = request(&base, key, method, path, &[], body.as_deref()).unwrap();
        let value = response.json().unwrap_or(Value::Null);
        (response.status, value)
    };
    let names = |key: &str| -> Vec<String> {
        let (status, list) = call(Some(key), "GET", "/api/v1/runners", None);
        assert_eq!(status, 200, "{list}");
        list["runners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, answer) = call(
        Some(KEY_A),
        "POST",
        "/api/v1/runners/provision",
        Some(json!({"runner_name": "net-a", "labels": ["linux"]})),
    );
    assert_eq!(status, 201, "{answer}");
    assert!(answer["encoded_jit_config"].is_string(), "{answer}");
    let (status, _) = call(
        Some(KEY_B),
        "POST",
        "/api/v1/runners/provision",
        Some(json!({"runner_name": "net-b", "labels": ["linux"]})),
    );
    assert_eq!(status, 201);

    assert_eq!(names(KEY_A), vec!["net-a".to_string()]);
    assert_eq!(names(KEY_B), vec!["net-b".to_string()]);
    let (status, _) = call(Some(KEY_B), "GET", "/api/v1/runners/net-a", None);
    assert_eq!(status, 404, "another caller's runner is not shown");
    let (status, _) = call(Some(KEY_B), "DELETE", "/api/v1/runners/net-a", None);
    assert_eq!(status, 404, "nor deleted");
    let (status, _) = call(None, "GET", "/api/v1/runners", None);
    assert_eq!(status, 401, "a network caller must present a credential");
    let (status, record) = call(Some(KEY_A), "GET", "/api/v1/runners/net-a", None);
    assert_eq!(status, 200, "{record}");
    let (status, _) = call(Some(KEY_A), "DELETE", "/api/v1/runners/net-a", None);
    assert!(status == 200 || status == 204, "{status}");
    assert!(!github_runners(&stack.emulator).contains(&"net-a".to_string()));
}
