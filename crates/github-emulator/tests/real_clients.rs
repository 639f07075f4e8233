//! Real GitHub clients against the emulator (issue 13, item 10): PyGithub's `GithubIntegration`
//! and @octokit/auth-app with @octokit/request, at the versions pinned in tests/clients/
//! (requirements.txt, package.json + package-lock.json). Their failures are emulator bugs: a
//! client that works against github.com must work here. (`gh api /repos/OWNER/REPO` through
//! `ghapp exec` is in crates/ghapp/tests/gh_real.rs.)
//!
//! .ci/run installs them into tests/clients/.venv and tests/clients/node_modules (git-ignored)
//! and sets GHAPP_TEST_REQUIRE_PYGITHUB=1 / GHAPP_TEST_REQUIRE_OCTOKIT=1, so a missing client
//! fails there; elsewhere these tests say SKIPPED loudly and pass. GHAPP_TEST_PYTHON overrides the
//! interpreter.

use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

/// `Some(program)` when the client is installed; otherwise a loud skip, or a failure when
/// `require_var` is set.
fn client_or_skip(
    test: &str,
    found: Option<PathBuf>,
    install: &str,
    require_var: &str,
) -> Option<PathBuf> {
    if found.is_none() {
        let message = format!("SKIPPED {test}: {install} — the real-client test did NOT run");
        assert!(
            std::env::var_os(require_var).is_none(),
            "{message} and {require_var} is set"
        );
        loud(&message);
    }
    found
}

fn python_with_pygithub() -> Option<PathBuf> {
    let python = std::env::var_os("GHAPP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| clients_dir().join(".venv/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import github"])
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(python)
}

fn node_with_octokit() -> Option<PathBuf> {
    let installed = clients_dir()
        .join("node_modules/@octokit/auth-app/package.json")
        .is_file();
    let node = PathBuf::from("node");
    let runs = Command::new(&node)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (installed && runs).then_some(node)
}

/// Runs a client script with `API_URL APP_ID KEY_FILE OWNER REPO` and returns its JSON line.
fn run_client(program: &Path, script: &str, api_url: &str, emulator: &EmulatorProcess) -> Value {
    let out = Command::new(program)
        .arg(clients_dir().join(script))
        .arg(api_url)
        .arg("1")
        .arg(emulator.key_path("app1.pem"))
        .args(["acme", "widgets"])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("running the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} against {api_url} failed (an emulator bug: real GitHub serves this client)\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("ghs_") && !stdout.contains("ghs_"),
        "a token was printed"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed {stdout:?}: {e}"))
}

fn route_count(emulator: &EmulatorProcess, route: &str) -> u64 {
    emulator.stats().expect("stats")["requests"][route]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn pygithub_integration_installations_token_and_get_repo() {
    let Some(python) = client_or_skip(
        "pygithub_integration_installations_token_and_get_repo",
        python_with_pygithub(),
        "PyGithub is not installed (python -m venv tests/clients/.venv && pip install -r tests/clients/requirements.txt; .ci/run does this)",
        "GHAPP_TEST_REQUIRE_PYGITHUB",
    ) else {
        return;
    };
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator starts");
    for base in [
        emulator.urls.api_url.clone(),
        format!("{}/api/v3", emulator.urls.api_url),
    ] {
        emulator.reset_stats().expect("reset");
        let seen = run_client(&python, "pygithub_client.py", &base, &emulator);
        assert_eq!(
            seen["installations"],
            serde_json::json!([100, 200]),
            "{seen}"
        );
        assert_eq!(seen["installation_id"], 100);
        assert_eq!(seen["installation_target_type"], "Organization");
        assert_eq!(
            seen["token_permissions"],
            serde_json::json!({"contents": "read", "metadata": "read"})
        );
        assert_eq!(seen["repo_full_name"], "acme/widgets");
        assert_eq!(seen["repo_private"], true);
        assert_eq!(seen["repo_default_branch"], "main");
        assert_eq!(seen["repo_owner_login"], "acme");
        assert_eq!(
            seen["repo_clone_url"],
            emulator.repo_url("acme", "widgets").as_str()
        );
        // Every attribute read was in the first answer: PyGithub completed nothing lazily.
        assert_eq!(route_count(&emulator, "GET /repos/{owner}/{repo}"), 1);
    }
}

#[test]
fn octokit_auth_app_app_and_installation_auth_with_a_narrowed_token() {
    let Some(node) = client_or_skip(
        "octokit_auth_app_app_and_installation_auth_with_a_narrowed_token",
        node_with_octokit(),
        "@octokit/auth-app is not installed (npm ci --prefix crates/github-emulator/tests/clients; .ci/run does this)",
        "GHAPP_TEST_REQUIRE_OCTOKIT",
    ) else {
        return;
    };
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator starts");
    for base in [
        emulator.urls.api_url.clone(),
        format!("{}/api/v3", emulator.urls.api_url),
    ] {
        let seen = run_client(&node, "octokit_client.mjs", &base, &emulator);
        assert_eq!(seen["app_auth_type"], "app", "{seen}");
        assert_eq!(seen["app_slug"], "ghapp-test");
        assert_eq!(seen["installation_id"], 100);
        assert_eq!(seen["narrowed_type"], "installation");
        assert_eq!(seen["narrowed_selection"], "selected");
        assert_eq!(
            seen["narrowed_permissions"],
            serde_json::json!({"contents": "read", "metadata": "read"})
        );
        assert_eq!(seen["reachable"], serde_json::json!(["acme/widgets"]));
        assert_eq!(seen["repo_full_name"], "acme/widgets");
    }
    // octokit signed its JWTs as it does against GitHub, and GitHub's rules accepted them all.
    let stats = emulator.stats().expect("stats");
    assert_eq!(stats["jwt_rejections"], serde_json::json!({}), "{stats}");
}
