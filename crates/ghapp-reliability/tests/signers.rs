//! Signers through the real daemon against the emulator (issue 18): the App JWT signed by a
//! `sign_command` that ghapp only talks to (the key never in ghapp's config or memory), what
//! callers see when that signer fails or hangs (cached tokens keep serving; the error names
//! the signer), and a key rotated on GitHub with no restart, no SIGHUP and no failed request.

use ghapp_testkit::daemon::{DaemonProcess, HttpResponse};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::signers::{self, Moto};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A signing script whose behaviour a test switches by writing `ok`, `fail` or `hang` to
/// `<dir>/mode`; each run appends a line to `<dir>/runs`.
fn switchable_signer(dir: &Path, key: &Path) -> std::path::PathBuf {
    let script = dir.join("sign-jwt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {dir}/runs\ncase \"$(cat {dir}/mode)\" in\n  ok) exec openssl dgst -sha256 -sign {key} ;;\n  fail) echo 'HSM says no' >&2; exit 7 ;;\n  hang) exec sleep 30 ;;\nesac\n",
            dir = dir.display(),
            key = key.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("mode"), "ok").unwrap();
    script
}

fn app_config(emulator: &EmulatorProcess, key_lines: &str) -> String {
    let host = emulator
        .urls
        .git_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    format!(
        "[daemon]\n\n[[app]]\nname = \"test-app\"\nhost = {host:?}\napi_url = {api:?}\napp_id = 1\ninsecure_http = true\n{key_lines}\n",
        api = emulator.urls.api_url
    )
}

fn token(daemon: &DaemonProcess, owner: &str, repo: &str) -> HttpResponse {
    daemon
        .request("GET", &format!("/v1/token?owner={owner}&repo={repo}"), None)
        .unwrap()
}

fn token_value(response: &HttpResponse) -> String {
    let body: Value = response.json().unwrap();
    body["token"].as_str().unwrap_or_default().to_string()
}

fn error_of(response: &HttpResponse) -> String {
    response.json().unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `ghapp doctor` for `config` (written 0600 in a fresh directory, with a fresh HOME): its
/// stdout, whatever it concludes about the parts not under test here.
fn doctor(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    let output = std::process::Command::new(ghapp_testkit::binary("ghapp"))
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("doctor")
        .env("HOME", dir.path().join("home"))
        .env_remove("GHAPP_SOCKET")
        .env_remove("GHAPP_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asks for a token until `done` holds (the App's hold-off after a failure lasts up to 10 s).
fn token_until(
    daemon: &DaemonProcess,
    owner: &str,
    repo: &str,
    done: impl Fn(&HttpResponse) -> bool,
) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = token(daemon, owner, repo);
        if done(&response) || Instant::now() > deadline {
            return response;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_sign_command_signs_and_its_failures_leave_cached_tokens_serving() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = switchable_signer(dir.path(), &emulator.key_path("app1.pem"));
    let config = app_config(
        &emulator,
        &format!(
            "signer = \"command\"\nsign_command = [{:?}]\nsign_timeout = \"1s\"\n",
            script.display().to_string()
        ),
    );
    assert!(!config.contains("private_key"), "no key in ghapp's config");
    let daemon = DaemonProcess::start(&config).unwrap();

    let first = token(&daemon, "acme", "widgets");
    assert_eq!(first.status, 200, "{}", first.body);
    let cached = token_value(&first);
    assert!(cached.starts_with("ghs_"));
    assert_eq!(token(&daemon, "octo", "tools").status, 200);
    let runs = || {
        std::fs::read_to_string(dir.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(runs(), 1, "one JWT signed, reused for every call since");

    // The signer fails. GitHub's clock jumps 10 minutes ahead, so the JWT in hand is expired
    // by GitHub's clock and the daemon must sign a new one for its next call.
    std::fs::write(dir.path().join("mode"), "fail").unwrap();
    emulator
        .fault(json!({"kind": "clock_offset", "secs": 600}))
        .unwrap();
    let failed = token(&daemon, "acme", "gadgets");
    assert_eq!(failed.status, 503, "{}", failed.body);
    let error = error_of(&failed);
    assert!(
        error.contains("cannot sign the App JWT: signer command")
            && error.contains("sign-jwt: failed (exit status: 7): HSM says no"),
        "the error names the signer and what it said: {error}"
    );
    let report = doctor(&config);
    assert!(
        report.contains("cannot sign the App JWT")
            && report.contains("signer command")
            && report.contains("HSM says no"),
        "doctor names the failing signer:\n{report}"
    );
    let served = token(&daemon, "acme", "widgets");
    assert_eq!(served.status, 200, "cached tokens keep serving");
    assert_eq!(token_value(&served), cached);
    let status = daemon
        .request("GET", "/v1/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["degraded"], true, "{status}");
    assert!(
        status["degraded_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("signer command"),
        "{status}"
    );

    // The signer hangs: killed at sign_timeout, callers told so; the cache still serves.
    std::fs::write(dir.path().join("mode"), "hang").unwrap();
    let started = Instant::now();
    let hung = token_until(&daemon, "acme", "gadgets", |r| {
        error_of(r).contains("did not finish")
    });
    assert!(
        error_of(&hung).contains("did not finish within sign_timeout (1.0s) and was killed"),
        "{}",
        error_of(&hung)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let served = token(&daemon, "acme", "widgets");
    assert_eq!(
        token_value(&served),
        cached,
        "served while the signer hangs"
    );

    // The signer is back: the next call signs and mints.
    std::fs::write(dir.path().join("mode"), "ok").unwrap();
    let healed = token_until(&daemon, "acme", "gadgets", |r| r.status == 200);
    assert_eq!(healed.status, 200, "{}", healed.body);
    let log = daemon.log();
    assert!(!log.contains("BEGIN"), "no key material in the log");
}

#[test]
fn a_key_rotated_on_github_switches_to_the_next_key_with_no_failed_request() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let next = emulator.key_path("app1-next.pem");
    let config = app_config(
        &emulator,
        &format!(
            "private_key_file = {:?}\nnext_private_key_file = {:?}\n",
            emulator.key_path("app1.pem").display().to_string(),
            next.display().to_string()
        ),
    );
    // The next key file need not exist when the daemon starts.
    assert!(!next.exists());
    let daemon = DaemonProcess::start(&config).unwrap();
    let before = token(&daemon, "acme", "widgets");
    assert_eq!(before.status, 200, "{}", before.body);

    let report = doctor(&config);
    assert!(
        report.contains("GitHub accepted the key")
            && report.contains("app1-next.pem): cannot be checked")
            && report.contains("cannot open key file"),
        "doctor: the first key accepted, the next one not there yet:\n{report}"
    );

    // The operator adds a new key on GitHub (saved where next_private_key_file points), then
    // deletes the old one there. Nothing is said to ghapp.
    emulator
        .fault(json!({"kind": "add_key", "app": 1, "private_key_out": "app1-next.pem"}))
        .unwrap();
    let report = doctor(&config);
    assert!(
        report.contains("GitHub accepted the key") && report.contains("GitHub accepts it too"),
        "doctor: both keys accepted during the overlap:\n{report}"
    );
    emulator
        .fault(json!({"kind": "remove_key", "app": 1, "private_key_file": "app1.pem"}))
        .unwrap();
    let report = doctor(&config);
    assert!(
        report.contains("GitHub refused the first key")
            && report.contains("the daemon signs with the next key, which GitHub accepts")
            && report.contains("GitHub accepts it too"),
        "doctor: the first key refused, the next one accepted:\n{report}"
    );

    // Every call that needs the App JWT goes through: the first one GitHub rejects is sent
    // again with the next key.
    for (owner, repo) in [("octo", "tools"), ("acme", "gadgets")] {
        let response = token(&daemon, owner, repo);
        assert_eq!(
            response.status,
            200,
            "{owner}/{repo}: {}\n{}",
            response.body,
            daemon.log()
        );
    }
    let log = daemon.log();
    assert!(
        log.contains("GitHub rejected the App JWT; signing with the next key from now on"),
        "{log}"
    );
    let status = daemon
        .request("GET", "/v1/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["degraded"], false, "{status}");
    let widgets = token(&daemon, "acme", "widgets");
    assert_eq!(widgets.status, 200);
}

/// Whether SoftHSM2 is here; when it is not, says so loudly — and fails when
/// `GHAPP_TEST_REQUIRE_SOFTHSM=1` (CI installs it, so there it must run).
fn softhsm_present() -> bool {
    let Some(why) = signers::softhsm_missing() else {
        return true;
    };
    assert!(
        std::env::var_os("GHAPP_TEST_REQUIRE_SOFTHSM").is_none(),
        "GHAPP_TEST_REQUIRE_SOFTHSM is set but {why}"
    );
    eprintln!("SKIPPED: {why}: the PKCS#11 signer is not tested");
    false
}

fn softhsm_token_with(dir: &Path, key: &Path, label: &str) -> std::path::PathBuf {
    signers::softhsm_token_with(dir, key, label).unwrap()
}

fn softhsm_import(conf: &Path, key: &Path, label: &str, id: &str) {
    signers::softhsm_import(conf, key, label, id).unwrap()
}

#[test]
fn a_key_on_a_softhsm_token_signs_through_to_git_clone() {
    if !softhsm_present() {
        return;
    }
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_token_with(dir.path(), &emulator.key_path("app1.pem"), "app1");
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "5678\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = app_config(
        &emulator,
        &format!(
            "signer = \"pkcs11\"\npkcs11_module = {:?}\npkcs11_token_label = \"ghapp\"\npkcs11_key_label = \"app1\"\nnext_pkcs11_key_label = \"app1-next\"\npkcs11_pin_file = {:?}\n",
            signers::SOFTHSM_MODULE,
            pin.display().to_string()
        ),
    );
    let env = vec![("SOFTHSM2_CONF".to_string(), conf.display().to_string())];
    let daemon = DaemonProcess::start_with(
        &config,
        ghapp_testkit::daemon::DaemonStart {
            env: env.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let response = token(&daemon, "acme", "widgets");
    assert_eq!(response.status, 200, "{}\n{}", response.body, daemon.log());
    // The token's fingerprint of the key is the PEM key's: the same key, held elsewhere.
    let pem = ghapp_broker::key::AppKey::load_file(&emulator.key_path("app1.pem"), "t").unwrap();
    let status = daemon
        .request("GET", "/v1/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert!(
        status.to_string().contains(pem.fingerprint()),
        "status shows the token key's fingerprint {}: {status}",
        pem.fingerprint()
    );

    // The whole flow: git clone through the credential helper.
    match ghapp_testkit::git::GitBinary::newest() {
        Some(git) => {
            let home = ghapp_testkit::git::GitHome::new(&git)
                .unwrap()
                .with_env("GHAPP_SOCKET", daemon.socket());
            home.use_ghapp_helper("ghapp").unwrap();
            let url = emulator.repo_url("acme", "widgets");
            let clone = home.output(None, &["clone", &url, "widgets"]).unwrap();
            assert!(
                clone.status.success(),
                "{}",
                String::from_utf8_lossy(&clone.stderr)
            );
        }
        None => eprintln!("SKIPPED: no git binary: the clone through a PKCS#11 key is not tested"),
    }

    // Rotation on the token: the next key need not be there when the daemon starts. GitHub
    // gets a new key, the operator imports it as `app1-next` and deletes the old one on GitHub:
    // the next call is signed by the new key on the token, and nothing fails.
    emulator
        .fault(json!({"kind": "add_key", "app": 1, "private_key_out": "app1-next.pem"}))
        .unwrap();
    softhsm_import(
        &conf,
        &emulator.key_path("app1-next.pem"),
        "app1-next",
        "02",
    );
    emulator
        .fault(json!({"kind": "remove_key", "app": 1, "private_key_file": "app1.pem"}))
        .unwrap();
    let rotated = token(&daemon, "octo", "tools");
    assert_eq!(rotated.status, 200, "{}\n{}", rotated.body, daemon.log());
    assert!(
        daemon
            .log()
            .contains("GitHub rejected the App JWT; signing with the next key from now on"),
        "{}",
        daemon.log()
    );

    // A wrong PIN, a missing key or module: the daemon refuses to start, naming the signer.
    for (change, expected) in [
        (
            ("5678", "0000"),
            "PKCS#11 token \"ghapp\" key \"app1\": the PIN is incorrect",
        ),
        (
            ("pkcs11_key_label = \"app1\"", "pkcs11_key_label = \"nope\""),
            "PKCS#11 token \"ghapp\" key \"nope\": no private key with this label",
        ),
        (
            (signers::SOFTHSM_MODULE, "/nonexistent/libpkcs11.so"),
            "cannot load the PKCS#11 module /nonexistent/libpkcs11.so",
        ),
    ] {
        let broken = if change.0 == "5678" {
            std::fs::write(&pin, "0000\n").unwrap();
            config.clone()
        } else {
            std::fs::write(&pin, "5678\n").unwrap();
            config.replace(change.0, change.1)
        };
        let err = DaemonProcess::start_with(
            &broken,
            ghapp_testkit::daemon::DaemonStart {
                env: env.clone(),
                ..Default::default()
            },
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

/// moto's server (`moto[server]`, installed by .ci/run into tests/kms/.venv), or `None` —
/// loudly, and failing when `GHAPP_TEST_REQUIRE_MOTO=1`.
fn moto_server() -> Option<std::path::PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kms/.venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("GHAPP_TEST_REQUIRE_MOTO").is_none(),
        "GHAPP_TEST_REQUIRE_MOTO is set but {} is missing",
        venv.display()
    );
    eprintln!(
        "SKIPPED: moto's server is not installed (python3 -m venv tests/kms/.venv; pip install -r tests/kms/requirements.txt): the AWS KMS signer is not tested"
    );
    None
}

#[test]
fn an_aws_kms_key_signs_through_the_daemon_and_a_kms_outage_leaves_cached_tokens_serving() {
    let Some(program) = moto_server() else {
        return;
    };
    let mut moto = Moto::start(&program).unwrap();
    let (key_id, public) = moto.create_signing_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public_pem = dir.path().join("kms-public.pem");
    std::fs::write(&public_pem, public).unwrap();
    // GitHub (the emulator) knows the App by the KMS key's public half only.
    let fixture = basic_fixture(3600).replace(
        "private_key_out = \"app1.pem\"",
        &format!("public_key_file = {:?}", public_pem.display().to_string()),
    );
    let emulator = EmulatorProcess::start(&fixture).unwrap();
    let config = app_config(
        &emulator,
        &format!(
            "signer = \"aws_kms\"\nkms_key_id = {key_id:?}\nkms_endpoint_url = {:?}\nsign_timeout = \"5s\"\n",
            moto.url
        ),
    );
    // Region and credentials from a named profile in the shared files (the AWS chain minus
    // its network sources), not from AWS_* variables.
    let credentials = dir.path().join("aws-credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = unused\naws_secret_access_key = unused\n\n[ghapp-test]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(&aws_config, "[profile ghapp-test]\nregion = us-east-1\n").unwrap();
    let env = vec![
        ("AWS_PROFILE".to_string(), "ghapp-test".to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            credentials.display().to_string(),
        ),
        (
            "AWS_CONFIG_FILE".to_string(),
            aws_config.display().to_string(),
        ),
    ];
    let started = DaemonProcess::start_with(
        &config,
        ghapp_testkit::daemon::DaemonStart {
            env,
            ..Default::default()
        },
    );
    let daemon = match started {
        Err(e) if e.to_string().contains("is not built into this ghapp") => {
            // `cargo build --bins` alone builds ghapp without the aws-kms feature; a workspace
            // test build (which builds this crate's dev-dependencies) turns it on.
            assert!(
                std::env::var_os("GHAPP_TEST_REQUIRE_MOTO").is_none(),
                "the ghapp binary has no aws-kms feature: {e}"
            );
            eprintln!(
                "SKIPPED: the ghapp binary was built without the aws-kms feature: the AWS KMS signer is not tested"
            );
            return;
        }
        started => started.unwrap(),
    };
    let first = token(&daemon, "acme", "widgets");
    assert_eq!(first.status, 200, "{}\n{}", first.body, daemon.log());
    let cached = token_value(&first);

    // KMS goes away; GitHub's clock jumps so the daemon must sign a new JWT for its next call.
    moto.stop();
    emulator
        .fault(json!({"kind": "clock_offset", "secs": 600}))
        .unwrap();
    let failed = token(&daemon, "acme", "gadgets");
    assert_eq!(failed.status, 503, "{}", failed.body);
    let error = error_of(&failed);
    assert!(
        error.contains(&format!(
            "cannot sign the App JWT: signer AWS KMS key {key_id}"
        )),
        "the error names the KMS key: {error}"
    );
    let served = token(&daemon, "acme", "widgets");
    assert_eq!(token_value(&served), cached, "cached tokens keep serving");
}
