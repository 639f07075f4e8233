//! The real `gh` (Debian's 2.23; .ci/run installs it) against the emulator served over TLS with
//! a generated CA (`SSL_CERT_FILE`), as a GitHub Enterprise Server host — gh speaks https to
//! every host but github.com:
//!
//! - `ghapp exec --host 127.0.0.1:PORT --repo acme/widgets -- gh api …`: gh reads the token from
//!   GH_ENTERPRISE_TOKEN (GH_HOST carries the port, which gh accepts there);
//! - scripts/ghapp-gh-refresh.sh with the real ghapp and gh: `gh auth login --hostname` rejects
//!   `host:port` ("invalid hostname"), so this one serves the emulator's API on 127.0.0.1:443 as
//!   host `localhost` (needs root or CAP_NET_BIND_SERVICE, and a free port 443).
//!
//! Without gh these tests say so loudly on the terminal and pass; with GHAPP_TEST_REQUIRE_GH=1
//! (set by .ci/run once gh is installed) a missing gh fails them instead.

use ghapp_testkit::daemon::DaemonProcess;
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Says something on the terminal even when the test harness captures output.
fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
}

/// gh's path, or None after a loud skip message (or a failure when gh is required).
fn gh_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("gh"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let message = format!(
            "SKIPPED {test}: gh is not installed (apt-get install gh; .ci/run does this) — the real-gh test did NOT run"
        );
        assert!(
            std::env::var_os("GHAPP_TEST_REQUIRE_GH").is_none(),
            "{message} and GHAPP_TEST_REQUIRE_GH is set"
        );
        loud(&message);
    }
    found
}

/// A private gh world: config, state and cache under a temp dir, the emulator's CA trusted,
/// no token from the test's own environment, no prompts, no update check.
struct GhEnv {
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    socket: PathBuf,
}

impl GhEnv {
    fn new(ca_file: &Path, socket: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ghapp-gh-test-")
            .tempdir()
            .unwrap();
        GhEnv {
            dir,
            ca_file: ca_file.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    fn apply(&self, command: &mut Command) {
        for name in [
            "GH_TOKEN",
            "GITHUB_TOKEN",
            "GH_ENTERPRISE_TOKEN",
            "GITHUB_ENTERPRISE_TOKEN",
            "GH_HOST",
            "GH_REPO",
            "GHAPP_CONFIG",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            command.env_remove(name);
        }
        let home = self.dir.path();
        command
            .env("HOME", home)
            .env("GH_CONFIG_DIR", home.join("gh"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("SSL_CERT_FILE", &self.ca_file)
            .env("GHAPP_SOCKET", &self.socket)
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .env("NO_COLOR", "1");
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command.args(args);
        self.apply(&mut command);
        command.output().unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_token(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let s = String::from_utf8_lossy(stream);
        assert!(!s.contains("ghs_"), "a token was printed:\n{s}");
    }
}

fn app_config(host: &str, api_url: &str, emulator: &EmulatorProcess, ca_file: &Path) -> String {
    format!(
        "[[app]]\nname = \"gh-tls\"\nhost = \"{host}\"\napi_url = \"{api_url}\"\napp_id = 1\n\
         private_key_file = \"{key}\"\nca_file = \"{ca}\"\n",
        key = emulator.key_path("app1.pem").display(),
        ca = ca_file.display(),
    )
}

fn ca_of(emulator: &EmulatorProcess) -> PathBuf {
    PathBuf::from(emulator.urls.ca_file.clone().expect("--tls prints ca_file"))
}

#[test]
fn gh_api_through_ghapp_exec_against_a_tls_enterprise_host() {
    let Some(_gh) = gh_or_skip("gh_api_through_ghapp_exec_against_a_tls_enterprise_host") else {
        return;
    };
    let emulator = EmulatorProcess::start_with_args(&basic_fixture(3600), &["--tls"])
        .expect("emulator starts with --tls");
    let ca_file = ca_of(&emulator);
    let api_url = emulator.urls.api_url.trim_end_matches('/').to_string();
    let host = api_url
        .strip_prefix("https://")
        .expect("https api_url")
        .to_string();
    let daemon = DaemonProcess::start(&app_config(
        &host,
        &format!("{api_url}/api/v3"),
        &emulator,
        &ca_file,
    ))
    .expect("daemon starts");
    let gh_env = GhEnv::new(&ca_file, daemon.socket());
    let ghapp = ghapp_testkit::binary("ghapp");
    let exec = |gh_args: &[&str]| {
        let mut args = vec![
            "exec",
            "--host",
            host.as_str(),
            "--repo",
            "acme/widgets",
            "--",
            "gh",
        ];
        args.extend_from_slice(gh_args);
        gh_env.run(&ghapp, &args)
    };

    // REST, with an installation token: the repositories the token can reach.
    let out = exec(&[
        "api",
        "installation/repositories",
        "--jq",
        ".repositories[].full_name",
    ]);
    assert!(
        out.status.success(),
        "gh api installation/repositories failed\n{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "acme/widgets",
        "narrowed to the repo\n{}",
        text(&out)
    );
    assert_no_token(&out);

    // GraphQL: the token's viewer is the App's bot.
    let out = exec(&[
        "api",
        "graphql",
        "-f",
        "query=query{viewer{login}}",
        "--jq",
        ".data.viewer.login",
    ]);
    assert!(
        out.status.success(),
        "gh api graphql failed\n{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ghapp-test[bot]",
        "{}",
        text(&out)
    );

    // `gh api /repos/OWNER/REPO`: the full repository object (issue 13: GitHub's surface that
    // real clients use).
    let out = exec(&[
        "api",
        "/repos/acme/widgets",
        "--jq",
        "[.full_name, .default_branch, .owner.login, (.network_count|tostring)] | join(\" \")",
    ]);
    assert!(
        out.status.success(),
        "gh api /repos/acme/widgets failed\n{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "acme/widgets main acme 0",
        "{}",
        text(&out)
    );

    // gh's own failure status comes back through ghapp exec.
    let out = exec(&["api", "repos/acme/widgets/no-such-route"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "gh's exit status passes through\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        text(&out)
    );

    // One cached token served all four gh runs.
    let (status, body) = daemon.get("/v1/status").unwrap();
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tokens = status["tokens"].as_array().cloned().unwrap_or_default();
    assert_eq!(tokens.len(), 1, "one token for acme/widgets: {status}");
    assert_eq!(tokens[0]["owner"], "acme", "{status}");
}

/// Waits until 127.0.0.1:443 can be bound (another test run may hold it for a moment); None if
/// this process may not bind it at all or it stays busy.
fn port_443_available() -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match std::net::TcpListener::bind("127.0.0.1:443") {
            Ok(listener) => {
                drop(listener);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(format!("cannot bind 127.0.0.1:443: {e}")),
        }
    }
}

#[test]
fn cron_script_logs_real_gh_in_with_an_installation_token() {
    let test = "cron_script_logs_real_gh_in_with_an_installation_token";
    let Some(gh) = gh_or_skip(test) else { return };
    if let Err(why) = port_443_available() {
        loud(&format!(
            "SKIPPED {test}: {why}; `gh auth login --hostname` refuses host:port, so this test needs the emulator on port 443 (root or CAP_NET_BIND_SERVICE)"
        ));
        return;
    }
    let mut started = None;
    for _ in 0..5 {
        match EmulatorProcess::start_with_args(
            &basic_fixture(3600),
            &["--tls", "--listen", "127.0.0.1:443"],
        ) {
            Ok(emulator) => {
                started = Some(emulator);
                break;
            }
            // Lost a race for the port with a concurrent run: wait for it again.
            Err(_) => {
                let _ = port_443_available();
            }
        }
    }
    let emulator = started.expect("the emulator starts on 127.0.0.1:443");
    let ca_file = ca_of(&emulator);
    // Host `localhost`: gh's enterprise URLs are https://localhost/api/v3 and /api/graphql, and
    // ghapp derives the same API URL from the host.
    let daemon = DaemonProcess::start(&app_config(
        "localhost",
        "https://localhost/api/v3",
        &emulator,
        &ca_file,
    ))
    .expect("daemon starts");
    let gh_env = GhEnv::new(&ca_file, daemon.socket());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ghapp-gh-refresh.sh");
    let bin_dir = ghapp_testkit::bin_dir();
    let refresh = || {
        let mut command = Command::new("bash");
        command.arg(&script).args(["--host", "localhost", "acme"]);
        gh_env.apply(&mut command);
        let path = std::env::join_paths(std::iter::once(bin_dir.clone()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        command
            .env("PATH", path)
            .env(
                "GHAPP_GH_REFRESH_LOCK",
                gh_env.dir.path().join("refresh.lock"),
            )
            // The script must unset this, or gh refuses to store a login.
            .env("GH_ENTERPRISE_TOKEN", "ghs_stale_from_the_environment");
        command.output().unwrap()
    };

    for round in 0..2 {
        let out = refresh();
        assert_eq!(
            out.status.code(),
            Some(0),
            "refresh round {round} failed\n{}",
            text(&out)
        );
        assert_no_token(&out);
    }
    let hosts =
        std::fs::read_to_string(gh_env.dir.path().join("gh/hosts.yml")).expect("gh stored a login");
    assert!(hosts.contains("localhost:"), "{hosts}");

    // gh now works from its stored login alone: no token in the environment.
    let out = gh_env.run(
        &gh,
        &[
            "api",
            "--hostname",
            "localhost",
            "installation/repositories",
            "--jq",
            ".total_count",
        ],
    );
    assert!(
        out.status.success(),
        "gh with its stored login failed\n{}",
        text(&out)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "installation 100 reaches widgets and gadgets\n{}",
        text(&out)
    );
}
