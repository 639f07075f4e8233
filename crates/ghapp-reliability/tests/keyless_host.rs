//! Key-less hosts (`[upstream]`, no `[[app]]`, no key on their disk) chained to a real ghapp
//! broker: a `ghapp daemon` holding the App's key, serving `/v1/token` on a `[network]` TLS
//! listener (its certificate from a private CA of the test's own, which the hosts trust with
//! `[upstream] ca_file`), knowing its hosts by `[[client]]` keys and by Kubernetes-shaped ID
//! tokens of the emulator's OIDC issuer (`[[oidc]]`), and granting them repositories with
//! top-level `[[policy]]` entries. Each host is a second `ghapp daemon`; git clones and pushes
//! through `git-credential-ghapp` against the emulator's smart HTTP.
//!
//! - host A (`client_key_file`): clone and push, one mint at the emulator; `ghapp status` and
//!   `ghapp doctor` show its upstream answering;
//! - host K (`id_token_file`, a projected-service-account-shaped token): clones the same
//!   repository with no new mint (the broker's cache); its token file is read again for every
//!   request, so a token the broker's policy does not cover makes git fall through;
//! - host B, a `[[client]]` no policy covers, and host A asking for a repository outside its
//!   policy: git falls through cleanly (no prompt, no hang), and the broker's audit names the
//!   host (client name, or issuer + subject), never its key or ID token;
//! - the broker killed (SIGKILL) with host A's cache warm: the clone still works; a repository
//!   host A never asked for falls through; `ghapp status` says FAILING and `ghapp doctor` fails
//!   its upstream check.

use ghapp_testkit::daemon::{DaemonProcess, config_for};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::git::{GitBinary, GitHome};
use ghapp_testkit::pki::TestCa;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Host A's client key (a `[[client]]` the broker's policy covers).
const HOST_A_KEY: &str = "ghk_keyless-host-a-0123456789abcdefghijklmnopq";
/// Host B's client key (a `[[client]]` no policy entry selects).
const HOST_B_KEY: &str = "ghk_keyless-host-b-0123456789abcdefghijklmnopq";
/// The Kubernetes namespace and service accounts of the ID-token hosts.
const NAMESPACE: &str = "ghapp";
const COVERED_ACCOUNT: &str = "node-agent";
const UNCOVERED_ACCOUNT: &str = "intruder";
/// The longest a git command may take; a prompt waiting for input would hit it.
const GIT_DEADLINE: Duration = Duration::from_secs(60);

/// The broker's config: the emulator's App, TLS on loopback, two clients, the emulator's OIDC
/// issuer, and policies for host A and for the node-agent service account.
fn broker_config(emulator: &EmulatorProcess, ca: &TestCa) -> String {
    let leaf = ca.issue_loopback("broker").unwrap();
    let issuer = emulator.oidc_issuer();
    format!(
        r#"{app}
[network]
listen = ["127.0.0.1:0"]
tls_cert_file = {cert:?}
tls_key_file = {key:?}
answer_key_file = "answer-key.pem"

[[client]]
name = "host-a"
key_sha256 = "{a}"

[[client]]
name = "host-b"
key_sha256 = "{b}"

[[oidc]]
issuer = {issuer:?}
audience = "ghapp"

[[policy]]
client = "host-a"
repos = ["acme/widgets", "acme/gadgets"]

[[policy]]
issuer = {issuer:?}
subject = "system:serviceaccount:{NAMESPACE}:{COVERED_ACCOUNT}"
claims = {{ "kubernetes.io.namespace" = "{NAMESPACE}" }}
repos = ["acme/widgets", "acme/gadgets"]
"#,
        app = config_for(emulator, "audit_log = \"audit.log\""),
        cert = leaf.cert_file.display().to_string(),
        key = leaf.key_file.display().to_string(),
        a = ghapp_protocol::client_key::digest_hex(HOST_A_KEY),
        b = ghapp_protocol::client_key::digest_hex(HOST_B_KEY),
    )
}

/// A key-less host: its identity file (`identity_key` = `client_key_file` or `id_token_file`)
/// in a directory of its own, and a daemon whose config has `[upstream]` and no `[[app]]`.
struct Host {
    daemon: DaemonProcess,
    identity_dir: tempfile::TempDir,
    identity_file: PathBuf,
    home: GitHome,
}

impl Host {
    fn start(
        git: &GitBinary,
        emulator: &EmulatorProcess,
        broker_url: &str,
        ca: &TestCa,
        identity_key: &str,
        credential: &str,
    ) -> Host {
        let identity_dir = tempfile::tempdir().unwrap();
        let identity_file = identity_dir.path().join("identity");
        write_secret(&identity_file, credential);
        let config = format!(
            "[daemon]\naudit_log = \"audit.log\"\n\n[upstream]\nurl = {broker_url:?}\nca_file = {:?}\n{identity_key} = {:?}\nhosts = [{:?}]\n",
            ca.ca_file().display().to_string(),
            identity_file.display().to_string(),
            emulator.git_host()
        );
        let daemon = DaemonProcess::start(&config).expect("a key-less daemon starts");
        let home = GitHome::new(git)
            .unwrap()
            .with_env("GHAPP_SOCKET", daemon.socket());
        home.use_ghapp_helper("ghapp").unwrap();
        Host {
            daemon,
            identity_dir,
            identity_file,
            home,
        }
    }

    /// `git clone URL NAME` under [`GIT_DEADLINE`], killed (and the test failed) past it.
    fn clone(&self, url: &str, name: &str) -> Output {
        git_with_deadline(&self.home, &["clone", url, name])
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.daemon.dir().join("audit.log")).unwrap_or_default()
    }

    /// `ghapp ARGS…` against this host's config and socket, in its git HOME.
    fn ghapp(&self, args: &[&str]) -> Output {
        Command::new(ghapp_testkit::binary("ghapp"))
            .arg("--config")
            .arg(self.daemon.config_path())
            .arg("--socket")
            .arg(self.daemon.socket())
            .args(args)
            .env_clear()
            .env("HOME", self.home.home())
            .env("PATH", self.home.path_env())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Every file the host has: its daemon's dir (config, socket, logs) and its identity dir.
    fn files(&self) -> Vec<PathBuf> {
        [self.daemon.dir(), self.identity_dir.path()]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).unwrap())
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect()
    }
}

fn write_secret(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// Runs git (prompts off, stdin closed) and fails the test if it takes longer than
/// [`GIT_DEADLINE`] — a credential prompt would wait for ever.
fn git_with_deadline(home: &GitHome, args: &[&str]) -> Output {
    let mut child = home
        .command()
        .args(args)
        .current_dir(home.work_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > GIT_DEADLINE {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "git {args:?} hung for {GIT_DEADLINE:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A clone that must fall through: git gets no credential from ghapp, asks no one (prompts
/// are off) and fails at once.
fn assert_falls_through(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what}: the clone succeeded");
    assert!(
        stderr.contains("terminal prompts disabled"),
        "{what}: git fell through to its prompt, which is off:\n{stderr}"
    );
}

fn assert_cloned(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The broker's audit records (JSON lines).
fn audit_records(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("an audit line is JSON"))
        .collect()
}

fn mints(emulator: &EmulatorProcess) -> u64 {
    emulator.stats().unwrap()["mints_total"].as_u64().unwrap()
}

#[test]
fn key_less_hosts_clone_and_push_through_a_real_broker_and_survive_its_death() {
    let Some(git) = GitBinary::newest() else {
        eprintln!("\n*** SKIPPED: no git binary: the key-less hosts' clones are not tested ***\n");
        return;
    };
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let ca = TestCa::new("ghapp test broker CA").unwrap();
    let mut broker = DaemonProcess::start(&broker_config(&emulator, &ca)).expect("the broker");
    let address = broker.network_address();
    assert!(broker.listening()[0].tls, "the broker serves TLS");
    let broker_url = format!("https://{address}");
    let issuer = emulator.oidc_issuer();
    let covered_token = emulator
        .kubernetes_id_token(NAMESPACE, COVERED_ACCOUNT, "ghapp")
        .unwrap();
    let uncovered_token = emulator
        .kubernetes_id_token(NAMESPACE, UNCOVERED_ACCOUNT, "ghapp")
        .unwrap();
    emulator.reset_stats().unwrap();
    let widgets = emulator.repo_url("acme", "widgets");
    let gadgets = emulator.repo_url("acme", "gadgets");

    // Host A, by client key: clone and push; the broker mints once.
    let host_a = Host::start(
        &git,
        &emulator,
        &broker_url,
        &ca,
        "client_key_file",
        HOST_A_KEY,
    );
    let (code, status) = host_a.daemon.get("/v1/status").unwrap();
    assert_eq!(code, 200, "{status}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["apps"], serde_json::json!([]), "no App, no key");
    assert_eq!(status["upstream"]["url"], broker_url.as_str());
    let repo = host_a
        .home
        .clone_repo(&widgets, "widgets")
        .expect("clone through the broker");
    host_a
        .home
        .commit_file(&repo, "HELLO", "from a key-less host\n", "key-less push")
        .unwrap();
    host_a.home.push(&repo).expect("push through the broker");
    assert_eq!(mints(&emulator), 1, "clone and push share one token");
    let status_text = host_a.ghapp(&["status"]);
    let status_text = String::from_utf8_lossy(&status_text.stdout);
    assert!(
        status_text.contains(&format!(
            "upstream: {broker_url} for {} (answering; no App key on this host)",
            emulator.git_host()
        )),
        "{status_text}"
    );
    let doctor = host_a.ghapp(&["doctor"]);
    let doctor_text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor_text
            .lines()
            .any(|l| l.starts_with("OK")
                && l.contains(&format!("upstream broker {broker_url} answers"))),
        "{doctor_text}"
    );

    // Host A asks for a repository outside its policy: git falls through; both audits say why.
    let tools = host_a.clone(&emulator.repo_url("octo", "tools"), "tools");
    assert_falls_through(&tools, "host A, octo/tools");
    assert!(
        host_a.audit().contains("answered 403"),
        "the host's audit records the broker's refusal:\n{}",
        host_a.audit()
    );

    // Host K, by a projected-service-account-shaped ID token: the same repository, no new mint.
    let host_k = Host::start(
        &git,
        &emulator,
        &broker_url,
        &ca,
        "id_token_file",
        &covered_token,
    );
    assert_cloned(&host_k.clone(&widgets, "widgets"), "host K, acme/widgets");
    assert_eq!(
        mints(&emulator),
        1,
        "the broker's cached token served host K"
    );
    // Its token rotates to one the broker's policy does not cover: read again, refused.
    write_secret(&host_k.identity_file, &uncovered_token);
    assert_falls_through(
        &host_k.clone(&gadgets, "gadgets"),
        "host K with an uncovered ID token",
    );

    // Host B: a client the broker knows but no policy covers.
    let host_b = Host::start(
        &git,
        &emulator,
        &broker_url,
        &ca,
        "client_key_file",
        HOST_B_KEY,
    );
    assert_falls_through(&host_b.clone(&widgets, "widgets"), "host B");
    assert_eq!(mints(&emulator), 1, "no refusal cost a mint");

    // The broker's audit names each host — client or issuer + subject — and no credential.
    let audit_text = std::fs::read_to_string(broker.dir().join("audit.log")).unwrap();
    let records = audit_records(&audit_text);
    let on_token = |record: &&serde_json::Value| record["route"] == "/v1/token";
    let by_client = |name: &str, status: u64| {
        records
            .iter()
            .filter(on_token)
            .any(|r| r["client"] == name && r["status"] == status)
    };
    let by_subject = |account: &str, status: u64| {
        records.iter().filter(on_token).any(|r| {
            r["issuer"] == issuer.as_str()
                && r["subject"] == format!("system:serviceaccount:{NAMESPACE}:{account}")
                && r["status"] == status
        })
    };
    let host_a_grants = records
        .iter()
        .filter(on_token)
        .filter(|r| r["client"] == "host-a" && r["status"] == 200)
        .count();
    assert_eq!(
        host_a_grants, 1,
        "host A asked the broker once for its clone and push:\n{audit_text}"
    );
    assert!(
        by_client("host-a", 403),
        "host A refused octo/tools:\n{audit_text}"
    );
    assert!(by_client("host-b", 403), "host B refused:\n{audit_text}");
    assert!(
        by_subject(COVERED_ACCOUNT, 200),
        "host K granted:\n{audit_text}"
    );
    assert!(
        by_subject(UNCOVERED_ACCOUNT, 403),
        "host K's uncovered token refused:\n{audit_text}"
    );
    for (secret, name) in [
        (HOST_A_KEY, "host A's key"),
        (HOST_B_KEY, "host B's key"),
        (covered_token.as_str(), "host K's ID token"),
        (uncovered_token.as_str(), "the uncovered ID token"),
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        for (file, text) in [
            ("the broker's audit", audit_text.clone()),
            ("the broker's log", broker.log()),
            ("host A's audit", host_a.audit()),
            ("host K's audit", host_k.audit()),
            ("host B's audit", host_b.audit()),
        ] {
            assert!(
                !text.contains(secret) && !text.contains(signature),
                "{file} holds {name}"
            );
        }
    }

    // The broker dies (SIGKILL) with host A's cache warm: the clone still works.
    broker.kill();
    assert_cloned(
        &host_a.clone(&widgets, "widgets-again"),
        "host A, warm cache, broker dead",
    );
    // A repository host A never asked for: nothing cached, git falls through.
    assert_falls_through(
        &host_a.clone(&gadgets, "gadgets"),
        "host A, cold repository, broker dead",
    );
    let status_text = host_a.ghapp(&["status"]);
    let status_text = String::from_utf8_lossy(&status_text.stdout);
    assert!(
        status_text.contains(&format!("upstream: {broker_url} for"))
            && status_text.contains("FAILING"),
        "{status_text}"
    );
    let (_, status) = host_a.daemon.get("/v1/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["upstream"]["healthy"], false, "{status}");
    let doctor = host_a.ghapp(&["doctor"]);
    let doctor_text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doctor_text.lines().any(|l| l.starts_with("FAIL")
            && l.contains(&format!("upstream broker {broker_url} is failing"))),
        "{doctor_text}"
    );
    assert_eq!(doctor.status.code(), Some(1), "{doctor_text}");

    // No App key on any host: not in their configs, not in any file they hold.
    let app_key = std::fs::read_to_string(emulator.key_path("app1.pem")).unwrap();
    let key_body = app_key.lines().nth(1).unwrap();
    for host in [&host_a, &host_k, &host_b] {
        for file in host.files() {
            let bytes = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("PRIVATE KEY") && !text.contains(key_body),
                "{} holds a private key",
                file.display()
            );
        }
        let config = std::fs::read_to_string(host.daemon.config_path()).unwrap();
        assert!(
            !config.contains("[[app]]") && !config.contains("private_key"),
            "{config}"
        );
    }
    eprintln!(
        "figures: 3 key-less hosts on one broker: clone + push + 2 clones served, 4 refusals fell through, {} mint(s) at the emulator",
        mints(&emulator)
    );
}
