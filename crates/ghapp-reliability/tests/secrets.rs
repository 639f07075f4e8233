//! Secret hygiene (docs/security.md):
//!
//! - the full flow with debug logging and the audit log on — real git clone, push, fetch and a
//!   rejected token's erase through the helper with `GHAPP_DEBUG=1`; `ghapp token`, `status`,
//!   `doctor`, `runner-token` and their errors; GitHub failing for a moment; a reload — then every
//!   log, audit line, helper and CLI stderr, `/v1/status` and `/metrics` page is scanned for every
//!   token the emulator issued in the run and every line of the App's private key: zero hits;
//! - `Debug` of the public types that hold secrets prints none;
//! - a key file others can read is refused by the daemon, a socket directory owned by another
//!   user too.

use ghapp_reliability::figures;
use ghapp_reliability::github::EmulatorAdmin;
use ghapp_reliability::stack::{Stack, Timing};
use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, config_for};
use ghapp_testkit::git::{GitBinary, GitHome};
use github_emulator::admin::{Fault, FaultServer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Everything captured in the run, by where it came from.
#[derive(Default)]
struct Captured {
    texts: Vec<(String, String)>,
}

impl Captured {
    fn add(&mut self, origin: impl Into<String>, text: impl Into<String>) {
        self.texts.push((origin.into(), text.into()));
    }

    fn add_stderr(&mut self, origin: &str, output: &Output) {
        self.add(
            format!("{origin} (stderr)"),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    fn add_all(&mut self, origin: &str, output: &Output) {
        self.add_stderr(origin, output);
        self.add(
            format!("{origin} (stdout)"),
            String::from_utf8_lossy(&output.stdout),
        );
    }

    fn bytes(&self) -> usize {
        self.texts.iter().map(|(_, t)| t.len()).sum()
    }
}

/// The secrets to look for: each token, and each base64 line of the PEM key.
fn hits(captured: &Captured, secrets: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (origin, text) in &captured.texts {
        for (what, secret) in secrets {
            if text.contains(secret.as_str()) {
                found.push(format!("{what} in {origin}"));
            }
        }
    }
    found
}

/// The base64 lines of a PEM (not the BEGIN/END lines, which are public).
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

/// `ghapp ARGS` against the stack's daemon and config, in a clean environment.
fn ghapp(stack: &Stack, home: &Path, args: &[&str]) -> Output {
    Command::new(ghapp_testkit::binary("ghapp"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GHAPP_SOCKET", stack.daemon.socket())
        .env("GHAPP_CONFIG", stack.daemon.config_path())
        .env("GHAPP_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .expect("running ghapp")
}

/// `git-credential-ghapp OP` with `input` on stdin and `GHAPP_DEBUG=1`.
fn helper(stack: &Stack, op: &str, input: &str) -> Output {
    let mut child = Command::new(ghapp_testkit::binary("git-credential-ghapp"))
        .arg(op)
        .env("GHAPP_SOCKET", stack.daemon.socket())
        .env("GHAPP_DEBUG", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the helper");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("helper stdin");
    }
    child.wait_with_output().expect("helper output")
}

#[test]
fn a_full_run_with_debug_logs_leaks_no_token_and_no_key_line() {
    // 30-second tokens so the run mints several (background refreshes included).
    let timing = Timing {
        token_ttl: Duration::from_secs(30),
        ..Timing::fast()
    };
    let stack = Stack::start(
        timing,
        "audit_log = \"audit.jsonl\"\n",
        DaemonStart {
            env: vec![("GHAPP_LOG".into(), "debug".into())],
            ..DaemonStart::default()
        },
    )
    .expect("the stack starts");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut captured = Captured::default();
    let host = stack.emulator.git_host();

    // Git through the helper, verbose.
    if let Some(git) = GitBinary::newest() {
        let home = GitHome::new(&git)
            .expect("git home")
            .with_env("GHAPP_SOCKET", stack.daemon.socket())
            .with_env("GHAPP_DEBUG", "1");
        home.use_ghapp_helper("ghapp").expect("helper configured");
        let url = stack.emulator.repo_url("acme", "widgets");
        let clone = home
            .output(None, &["clone", &url, "widgets"])
            .expect("git clone");
        captured.add_all("git clone", &clone);
        assert!(
            clone.status.success(),
            "{}",
            String::from_utf8_lossy(&clone.stderr)
        );
        let repo = home.work_dir().join("widgets");
        home.commit_file(&repo, "SECRETS.md", "none here\n", "scan")
            .expect("commit");
        let push = home
            .output(Some(&repo), &["push", "origin", "HEAD"])
            .expect("git push");
        captured.add_all("git push", &push);
        assert!(
            push.status.success(),
            "{}",
            String::from_utf8_lossy(&push.stderr)
        );
        // A rejected token: git erases it through the helper, then a retry mints a new one.
        std::thread::sleep(Duration::from_millis(5100));
        stack
            .emulator
            .inject(Fault::RevokeTokens { installation: None })
            .expect("revoke");
        let rejected = home
            .output(Some(&repo), &["fetch", "origin"])
            .expect("git fetch");
        captured.add_all("git fetch (revoked)", &rejected);
        let fetch = home
            .output(Some(&repo), &["fetch", "origin"])
            .expect("git fetch");
        captured.add_all("git fetch", &fetch);
        assert!(
            fetch.status.success(),
            "{}",
            String::from_utf8_lossy(&fetch.stderr)
        );
    } else {
        eprintln!("no git installed: the git part of the scan is skipped");
    }

    // The helper directly: get (its stdout is the credential, by design), erase, garbage.
    let request = format!("protocol=http\nhost={host}\npath=acme/gadgets.git\n\n");
    let got = helper(&stack, "get", &request);
    captured.add_stderr("helper get", &got);
    let password = String::from_utf8_lossy(&got.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password=").map(str::to_string))
        .expect("the helper answered a password");
    let erase = helper(
        &stack,
        "erase",
        &format!(
            "{}username=x-access-token\npassword={password}\n\n",
            request.trim_end()
        ),
    );
    captured.add_all("helper erase", &erase);
    captured.add_all(
        "helper garbage",
        &helper(&stack, "get", "\u{0}\u{1}garbage\n\n"),
    );

    // GitHub failing for a moment (errors and retries logged), then the CLI.
    stack
        .emulator
        .inject(Fault::Status {
            route: Some("POST *".into()),
            status: 502,
            retry_after: None,
            times: Some(2),
            message: None,
            server: FaultServer::Api,
        })
        .expect("fault");
    let cli_home = scratch.path().join("home");
    std::fs::create_dir_all(&cli_home).expect("cli home");
    for args in [
        vec!["token", "octo/tools", "--min-ttl", "1s"],
        vec!["token", "acme/widgets", "--json", "--min-ttl", "1s"],
        vec!["token", "acme/nope"],
        vec!["token", "acme/widgets", "-p", "administration=write"],
        vec!["runner-token", "--org", "acme"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["doctor"],
    ] {
        let output = ghapp(&stack, &cli_home, &args);
        let origin = format!("ghapp {}", args.join(" "));
        // `token` and `runner-token` print the secret on stdout by design; everything else
        // (and every stderr) is scanned.
        if args[0] == "token" || args[0] == "runner-token" {
            captured.add_stderr(&origin, &output);
        } else {
            captured.add_all(&origin, &output);
        }
    }
    stack.daemon.reload().expect("SIGHUP");
    stack
        .daemon
        .wait_for_log("configuration reloaded", Duration::from_secs(15))
        .expect("reloaded");

    for path in ["/v1/status", "/metrics", "/v1/token?owner=ac%zzme", "/nope"] {
        let (status, body) = stack.daemon.get(path).expect("daemon request");
        captured.add(format!("GET {path} ({status})"), body);
    }
    // Let background refreshes and their log lines happen.
    std::thread::sleep(Duration::from_secs(2));
    captured.add("daemon log", stack.daemon.log());
    let audit = std::fs::read_to_string(stack.daemon.dir().join("audit.jsonl")).unwrap_or_default();
    assert!(!audit.is_empty(), "the audit log was written");
    captured.add("audit log", audit);

    // Everything the emulator issued, and the key.
    let issued = stack.emulator.issued_tokens().expect("issued tokens");
    assert_eq!(issued.forgotten, 0);
    let pem = std::fs::read_to_string(stack.emulator.key_path("app1.pem")).expect("the key");
    let mut secrets: Vec<(String, String)> = issued
        .tokens
        .iter()
        .map(|t| {
            (
                format!(
                    "{} token {}",
                    t.kind,
                    ghapp_protocol::secret::fingerprint(&t.token)
                ),
                t.token.clone(),
            )
        })
        .collect();
    let tokens = secrets.len();
    let runner_tokens = issued
        .tokens
        .iter()
        .filter(|t| t.kind.starts_with("runner"))
        .count();
    let lines = key_lines(&pem);
    secrets.extend(
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| (format!("private key line {}", i + 1), line.clone())),
    );
    assert!(tokens >= 5, "the run minted only {tokens} tokens");
    assert!(runner_tokens >= 1, "no runner token was issued");
    assert!(lines.len() >= 20, "the key has {} lines", lines.len());

    // The scan can fail: a planted token and key line are found.
    let mut planted = Captured::default();
    planted.add("planted", format!("x {} y", issued.tokens[0].token));
    planted.add("planted", format!("{}\n", lines[3]));
    assert_eq!(
        hits(&planted, &secrets).len(),
        2,
        "the scanner finds what is there"
    );

    let found = hits(&captured, &secrets);
    let figures_dir =
        figures::figures_dir(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ghapp-reliability"));
    figures::write(
        &figures_dir,
        "secrets.jsonl",
        &[serde_json::json!({
            "case": "secret-scan",
            "tokens_issued": tokens,
            "runner_tokens": runner_tokens,
            "key_lines": lines.len(),
            "sources_scanned": captured.texts.len(),
            "bytes_scanned": captured.bytes(),
            "hits": found.len(),
        })],
    )
    .expect("figures");
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

#[test]
fn debug_of_secret_holding_types_redacts() {
    use ghapp_protocol::api::{InvalidateRequest, RunnerTokenResponse, TokenResponse};
    use ghapp_protocol::secret::Token;
    let secret = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
    let response = TokenResponse {
        token: Token::new(secret),
        expires_at: "2030-01-01T00:00:00Z".parse().unwrap(),
        installation_id: 1,
        app: "a".into(),
        host: "github.com".into(),
        owner: "acme".into(),
        repositories: vec!["widgets".into()],
        permissions: Default::default(),
    };
    let runner = RunnerTokenResponse {
        token: Token::new(secret),
        expires_at: "2030-01-01T00:00:00.000+00:00".parse().unwrap(),
        kind: "registration".into(),
        org: "acme".into(),
        url: "https://github.com/acme".into(),
    };
    let invalidate = InvalidateRequest {
        token: Token::new(secret),
    };
    // The daemon's answer being built holds the serialized token.
    let reply = ghapp_daemon::reply::Reply::json(200, &response);
    let credential = ghapp_protocol::credential::CredentialResponse {
        username: "x-access-token".into(),
        password: Token::new(secret),
        password_expiry_utc: Some(1_900_000_000),
    };
    for (what, debug) in [
        ("daemon Reply", format!("{reply:?}")),
        ("CredentialResponse", format!("{credential:?}")),
        ("TokenResponse", format!("{response:?}")),
        ("RunnerTokenResponse", format!("{runner:?}")),
        ("InvalidateRequest", format!("{invalidate:?}")),
        (
            "Token",
            format!("{:?} {}", Token::new(secret), Token::new(secret)),
        ),
    ] {
        assert!(
            !debug.contains(secret),
            "{what} Debug shows the token: {debug}"
        );
        assert!(
            debug.contains("sha256:") || what == "daemon Reply",
            "{what} Debug shows a fingerprint: {debug}"
        );
    }

    // The broker's key: Debug shows its source and public fingerprint, no key byte.
    let emulator = ghapp_testkit::emulator::EmulatorProcess::start(
        &ghapp_testkit::emulator::basic_fixture(60),
    )
    .expect("emulator");
    let pem = std::fs::read(emulator.key_path("app1.pem")).expect("key");
    let key = ghapp_broker::key::AppKey::from_pem(&pem, "file app1.pem".into(), "test-app")
        .expect("a key");
    let debug = format!("{key:?}");
    for line in key_lines(&String::from_utf8_lossy(&pem)) {
        assert!(
            !debug.contains(&line),
            "AppKey Debug shows key material: {debug}"
        );
    }
    assert!(debug.contains("sha256:"), "{debug}");

    // A loaded config and the running broker print no key either.
    let config_text = config_for(&emulator, "");
    let config = ghapp_broker::Config::parse(&config_text, Path::new("t.toml")).expect("config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime
        .block_on(async { ghapp_broker::Broker::start(&config) })
        .expect("broker");
    for debug in [format!("{config:?}"), format!("{broker:?}")] {
        for line in key_lines(&String::from_utf8_lossy(&pem)) {
            assert!(!debug.contains(&line), "Debug shows key material: {debug}");
        }
    }
    broker.shutdown();
}

#[test]
fn loose_key_files_and_foreign_socket_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let emulator = ghapp_testkit::emulator::EmulatorProcess::start(
        &ghapp_testkit::emulator::basic_fixture(60),
    )
    .expect("emulator");
    let dir = ghapp_testkit::daemon::short_temp_dir().expect("temp dir");
    for mode in [0o644, 0o640, 0o604, 0o620] {
        let loose = dir.path().join(format!("loose-{mode:o}.pem"));
        std::fs::copy(emulator.key_path("app1.pem"), &loose).expect("copy key");
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let config = ghapp_testkit::daemon::config_for_emulator(
            &emulator.urls.api_url,
            &emulator.urls.git_url,
            &loose,
            "",
        );
        let error = match DaemonProcess::start(&config) {
            Ok(_) => panic!("the daemon started with a key file of mode {mode:o}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("by group/others") && error.contains("chmod 600"),
            "mode {mode:o}: {error}"
        );
    }

    // A socket directory owned by another user (as root: chown it to nobody).
    if rustix::process::geteuid().is_root() {
        let foreign = dir.path().join("foreign");
        std::fs::create_dir(&foreign).expect("mkdir");
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        rustix::fs::chown(
            &foreign,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .expect("chown");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("config");
        let output = Command::new(ghapp_testkit::binary("ghapp"))
            .args(["daemon", "--foreground", "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(foreign.join("d.sock"))
            .stdin(Stdio::null())
            .output()
            .expect("ghapp daemon");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started in a foreign directory");
        assert!(stderr.contains("belongs to uid 65534"), "{stderr}");
        assert!(output.stdout.is_empty(), "no ready line");
    } else {
        eprintln!("skipped the foreign-directory part: needs root to chown");
    }
}
