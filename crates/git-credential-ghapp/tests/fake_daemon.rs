//! The built helper as git runs it, against a fake daemon on a real Unix socket: a small std
//! server answering canned JSON (or never answering), recording every request it gets.

use ghapp_protocol::time::Timestamp;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELPER: &str = env!("CARGO_BIN_EXE_git-credential-ghapp");
const TOKEN: &str = "ghs_FAKEtoken0123456789abcdefghijklmnopq";

/// One request as the fake daemon saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    body: String,
}

/// How the fake daemon answers.
#[derive(Clone)]
enum Reply {
    /// Status and JSON body.
    Json(u16, String),
    /// Accept, read the request, never answer (until the test ends).
    Hang,
}

/// A fake daemon: accepts on a real socket in a background thread, answers with `reply`.
struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeDaemon {
    fn start(reply: Reply) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("ghapp.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake daemon");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some(request) = read_http_request(&stream) else {
                    continue;
                };
                let is_status = request.target == "/v1/status";
                record.lock().unwrap().push(request);
                match &reply {
                    // erase first asks which hosts the daemon serves.
                    Reply::Json(..) if is_status => {
                        let body = r#"{"apps":[{"host":"github.com"}]}"#;
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Reply::Json(status, body) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Reply::Hang => held.push(stream),
                }
            }
        });
        FakeDaemon {
            _dir: dir,
            socket,
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests that carried a token or asked for one (not the status look-ups).
    fn seen_tokens(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.target != "/v1/status")
            .collect()
    }
}

fn read_http_request(stream: &UnixStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn token_json(expires_at: &str) -> String {
    serde_json::json!({
        "token": TOKEN, "expires_at": expires_at, "installation_id": 100, "app": "test-app",
        "host": "github.com", "owner": "acme", "repositories": ["widgets"], "permissions": {"contents": "write"}
    })
    .to_string()
}

fn rfc3339(unix: u64) -> String {
    Timestamp::from_unix_seconds(unix as i64)
        .unwrap()
        .to_string()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What one run of the helper produced.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Fell through: exit 0, nothing at all on stdout.
    fn assert_silent_fallthrough(&self) {
        assert_eq!(self.code, Some(0), "{self:?}");
        assert_eq!(self.stdout, "", "falling through prints nothing: {self:?}");
        assert!(!self.stderr.contains(TOKEN), "token on stderr: {self:?}");
    }
}

/// Runs the helper in a clean environment with `input` on stdin (closed afterwards unless
/// `keep_stdin_open`), killing it if it outlives 20 s.
fn run_helper_with(
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
    keep_stdin_open: bool,
) -> Run {
    let started = Instant::now();
    let mut child = Command::new(HELPER)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    let held_stdin = if keep_stdin_open {
        Some(stdin)
    } else {
        drop(stdin);
        None
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    drop(held_stdin);
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        elapsed,
    }
}

fn run_helper(args: &[&str], env: &[(&str, &str)], input: &str) -> Run {
    run_helper_with(args, env, input.as_bytes(), false)
}

fn sock(daemon: &FakeDaemon) -> &str {
    daemon.socket.to_str().unwrap()
}

const REPO_REQUEST: &str = "protocol=https\nhost=github.com\npath=acme/widgets.git\n\n";

#[test]
fn answers_with_token_and_expiry_minus_margin() {
    let expires = now_unix() + 3600;
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(expires))));
    let run = run_helper(&["--socket", sock(&daemon), "get"], &[], REPO_REQUEST);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout,
        format!(
            "username=x-access-token\npassword={TOKEN}\npassword_expiry_utc={}\n",
            expires - 60
        )
    );
    assert_eq!(run.stderr, "", "quiet unless asked");
    let seen = daemon.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].target,
        "/v1/token?host=github.com&owner=acme&repo=widgets&protocol=https"
    );
}

#[test]
fn verbose_explains_with_fingerprints_never_the_token() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let run = run_helper(
        &["get"],
        &[("GHAPP_SOCKET", sock(&daemon)), ("GHAPP_DEBUG", "1")],
        REPO_REQUEST,
    );
    assert!(run.stdout.contains(TOKEN));
    assert!(run.stderr.contains("sha256:"), "{}", run.stderr);
    assert!(run.stderr.contains("acme/widgets"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(TOKEN),
        "the token must never reach stderr"
    );
}

#[test]
fn http_and_url_requests_pass_protocol_and_path() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let run = run_helper(
        &["--socket", sock(&daemon), "get"],
        &[],
        "url=http://127.0.0.1:8080/acme/widgets.git\n",
    );
    assert!(
        run.stdout.starts_with("username=x-access-token\n"),
        "{run:?}"
    );
    assert_eq!(
        daemon.seen()[0].target,
        "/v1/token?host=127.0.0.1%3A8080&owner=acme&repo=widgets&protocol=http"
    );
}

#[test]
fn socket_flag_wins_over_environment() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let run = run_helper(
        &["--socket", sock(&daemon), "get"],
        &[("GHAPP_SOCKET", "/nonexistent/s")],
        REPO_REQUEST,
    );
    assert!(run.stdout.contains(TOKEN), "{run:?}");
}

#[test]
fn not_served_falls_through() {
    let daemon = FakeDaemon::start(Reply::Json(
        404,
        r#"{"error":"no App serves host example.org"}"#.into(),
    ));
    let run = run_helper(&["--socket", sock(&daemon), "get"], &[], REPO_REQUEST);
    run.assert_silent_fallthrough();
    assert_eq!(run.stderr, "");
    let verbose = run_helper(&["--socket", sock(&daemon), "-v", "get"], &[], REPO_REQUEST);
    verbose.assert_silent_fallthrough();
    assert!(
        verbose.stderr.contains("no App serves host example.org"),
        "{}",
        verbose.stderr
    );
}

#[test]
fn ambiguous_without_path_explains_use_http_path() {
    let daemon = FakeDaemon::start(Reply::Json(
        409,
        r#"{"error":"2 installations serve github.com"}"#.into(),
    ));
    let request = "protocol=https\nhost=github.com\n\n";
    let quiet = run_helper(&["--socket", sock(&daemon), "get"], &[], request);
    quiet.assert_silent_fallthrough();
    assert_eq!(quiet.stderr, "");
    let verbose = run_helper(&["--socket", sock(&daemon), "-v", "get"], &[], request);
    verbose.assert_silent_fallthrough();
    assert!(
        verbose
            .stderr
            .contains("git config --global credential.useHttpPath true"),
        "{}",
        verbose.stderr
    );
    assert_eq!(
        daemon.seen()[0].target,
        "/v1/token?host=github.com&protocol=https"
    );
}

#[test]
fn daemon_errors_fall_through_and_require_quits() {
    for (status, body) in [
        (404, r#"{"error":"not installed"}"#.to_string()),
        (409, r#"{"error":"ambiguous"}"#.to_string()),
        (503, r#"{"error":"GitHub unreachable"}"#.to_string()),
        (500, "not json".to_string()),
        (200, "{\"token\": 1}".to_string()),
        (200, token_json("not a time")),
        (200, token_json(&rfc3339(now_unix() - 10))),
    ] {
        let daemon = FakeDaemon::start(Reply::Json(status, body.clone()));
        run_helper(&["--socket", sock(&daemon), "get"], &[], REPO_REQUEST)
            .assert_silent_fallthrough();
        let required = run_helper(
            &["--socket", sock(&daemon), "--require", "get"],
            &[],
            REPO_REQUEST,
        );
        assert_eq!(
            (required.code, required.stdout.as_str()),
            (Some(0), "quit=1\n"),
            "{status} {body}"
        );
        let from_env = run_helper(
            &["--socket", sock(&daemon), "get"],
            &[("GHAPP_REQUIRE", "1")],
            REPO_REQUEST,
        );
        assert_eq!(from_env.stdout, "quit=1\n");
    }
}

#[test]
fn require_never_quits_when_it_answered() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let run = run_helper(
        &["--socket", sock(&daemon), "--require", "get"],
        &[],
        REPO_REQUEST,
    );
    assert!(
        run.stdout.starts_with("username=x-access-token\npassword="),
        "{run:?}"
    );
    assert!(!run.stdout.contains("quit"), "{run:?}");
}

#[test]
fn missing_socket_prints_nothing_fast() {
    let run = run_helper(
        &["get"],
        &[("GHAPP_SOCKET", "/nonexistent")],
        "protocol=https\nhost=github.com\n\n",
    );
    run.assert_silent_fallthrough();
    assert_eq!(run.stderr, "");
    assert!(run.elapsed < Duration::from_secs(2), "{run:?}");
    let required = run_helper(
        &["get", "--require"],
        &[("GHAPP_SOCKET", "/nonexistent")],
        REPO_REQUEST,
    );
    assert_eq!(required.stdout, "quit=1\n");
}

#[test]
fn refused_connection_falls_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays; connect(2) gets ECONNREFUSED
    let run = run_helper(
        &["--socket", path.to_str().unwrap(), "-v", "get"],
        &[],
        REPO_REQUEST,
    );
    run.assert_silent_fallthrough();
    assert!(run.stderr.contains("not reachable"), "{}", run.stderr);
}

#[test]
fn silent_daemon_times_out_within_bound() {
    let daemon = FakeDaemon::start(Reply::Hang);
    let run = run_helper(
        &["--socket", sock(&daemon), "--timeout", "500ms", "get"],
        &[],
        REPO_REQUEST,
    );
    run.assert_silent_fallthrough();
    assert!(run.elapsed < Duration::from_secs(5), "{run:?}");
    assert_eq!(
        daemon.seen().len(),
        1,
        "the request reached the daemon, which never answered"
    );
    let required = run_helper(
        &["--socket", sock(&daemon), "--require", "get"],
        &[("GHAPP_TIMEOUT", "300ms")],
        REPO_REQUEST,
    );
    assert_eq!(required.stdout, "quit=1\n");
    assert!(required.elapsed < Duration::from_secs(5), "{required:?}");
}

#[test]
fn default_deadline_is_at_most_two_seconds() {
    let daemon = FakeDaemon::start(Reply::Hang);
    let run = run_helper(&["--socket", sock(&daemon), "get"], &[], REPO_REQUEST);
    run.assert_silent_fallthrough();
    // 2 s deadline plus process start-up on a loaded machine; generous.
    assert!(run.elapsed < Duration::from_secs(6), "{run:?}");
}

#[test]
fn stdin_never_closed_still_ends_within_deadline() {
    let daemon = FakeDaemon::start(Reply::Hang);
    let run = run_helper_with(
        &[
            "--socket",
            sock(&daemon),
            "--timeout",
            "400ms",
            "--require",
            "get",
        ],
        &[],
        b"protocol=https\nhost=github.com\n",
        true,
    );
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "quit=1\n"),
        "{run:?}"
    );
    assert!(run.elapsed < Duration::from_secs(5), "{run:?}");
    assert!(daemon.seen().is_empty(), "the request was never complete");
}

#[test]
fn erase_sends_the_rejected_password() {
    let daemon = FakeDaemon::start(Reply::Json(200, r#"{"invalidated":true}"#.into()));
    let input = format!(
        "protocol=https\nhost=github.com\npath=acme/widgets.git\nusername=x-access-token\npassword={TOKEN}\n\n"
    );
    let run = run_helper(&["--socket", sock(&daemon), "erase"], &[], &input);
    run.assert_silent_fallthrough();
    assert_eq!(run.stderr, "");
    let seen = daemon.seen_tokens();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("DELETE", "/v1/token")
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({ "token": TOKEN }));
    // -v reports the outcome by fingerprint.
    let verbose = run_helper(&["--socket", sock(&daemon), "-v", "erase"], &[], &input);
    verbose.assert_silent_fallthrough();
    assert!(
        verbose.stderr.contains("dropped rejected token sha256:"),
        "{}",
        verbose.stderr
    );
}

/// With a config file naming the hosts its Apps serve, `erase` knows them without asking the
/// daemon: one request (the `DELETE`), no `/v1/status`; a host the config does not name gets
/// nothing, whatever the daemon would say.
#[test]
fn erase_takes_the_served_hosts_from_the_config_file() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = FakeDaemon::start(Reply::Json(200, r#"{"invalidated":true}"#.into()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[app]]\nname = \"e\"\nhost = \"GHE.example.com\"\napp_id = 2\nprivate_key_env = \"K\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("GHAPP_CONFIG", config.to_str().unwrap())];
    let erase = |host: &str| {
        let input =
            format!("protocol=https\nhost={host}\nusername=x-access-token\npassword={TOKEN}\n\n");
        run_helper(&["--socket", sock(&daemon), "erase"], &env, &input).assert_silent_fallthrough();
    };
    erase("ghe.example.com");
    let seen = daemon.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.method.as_str(), s.target.as_str()))
            .collect::<Vec<_>>(),
        [("DELETE", "/v1/token")],
        "one request, no status look-up"
    );
    // github.com is served by the fake daemon's status, but not by this config's Apps.
    erase("github.com");
    assert_eq!(daemon.seen().len(), 1, "{:?}", daemon.seen());
}

#[test]
fn erase_sends_nothing_that_is_not_ours() {
    let daemon = FakeDaemon::start(Reply::Json(200, r#"{"invalidated":false}"#.into()));
    for input in [
        "protocol=https\nhost=github.com\nusername=x-access-token\n\n".to_string(),
        format!("protocol=https\nhost=github.com\nusername=alice\npassword={TOKEN}\n\n"),
        format!("protocol=smtp\nhost=mail.example.com\npassword={TOKEN}\n\n"),
        format!("protocol=https\nhost=github.com\npassword={TOKEN}\nnonsense\n\n"),
        // Not the shape of an installation token: another helper's secret.
        "protocol=https\nhost=github.com\nusername=x-access-token\npassword=glpat-0123456789abcdefghij\n\n".to_string(),
        "protocol=https\nhost=github.com\npassword=hunter2\n\n".to_string(),
        "protocol=https\nhost=github.com\npassword=ghp_16C7e42F292c6912E7710c838347Ae178B4a\n\n".to_string(),
        // A host this daemon does not serve.
        format!("protocol=https\nhost=gitlab.example.com\npassword={TOKEN}\n\n"),
    ] {
        run_helper(
            &["--socket", sock(&daemon), "--require", "erase"],
            &[],
            &input,
        )
        .assert_silent_fallthrough();
    }
    assert!(daemon.seen_tokens().is_empty(), "{:?}", daemon.seen());
}

#[test]
fn erase_is_bounded_and_silent_when_the_daemon_hangs() {
    let daemon = FakeDaemon::start(Reply::Hang);
    let input =
        format!("protocol=https\nhost=github.com\nusername=x-access-token\npassword={TOKEN}\n\n");
    let run = run_helper(
        &[
            "--socket",
            sock(&daemon),
            "--timeout",
            "300ms",
            "--require",
            "erase",
        ],
        &[],
        &input,
    );
    run.assert_silent_fallthrough();
    assert!(run.elapsed < Duration::from_secs(5), "{run:?}");
}

#[test]
fn store_and_unknown_operations_do_nothing() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let input =
        format!("protocol=https\nhost=github.com\nusername=x-access-token\npassword={TOKEN}\n\n");
    for op in ["store", "capability", "frobnicate"] {
        let run = run_helper(&["--socket", sock(&daemon), "--require", op], &[], &input);
        run.assert_silent_fallthrough();
        assert_eq!(run.stderr, "");
    }
    assert!(daemon.seen().is_empty());
}

#[test]
fn bad_input_gets_no_answer_and_exit_zero() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let mut oversized = b"protocol=https\nhost=github.com\npath=".to_vec();
    oversized.resize(70_000, b'a');
    oversized.extend_from_slice(b"\n\n");
    let inputs: Vec<Vec<u8>> = vec![
        b"protocol=https\nhost=github.com\nno equals sign here\n\n".to_vec(),
        b"protocol=https\nhost=github\xff.com\n\n".to_vec(),
        b"protocol=https\nhost=git\0hub.com\n\n".to_vec(),
        oversized,
        b"protocol=https\npath=acme/widgets.git\n\n".to_vec(),
        b"protocol=https\nhost=\n\n".to_vec(),
        b"url=github.com/acme/widgets\n\n".to_vec(),
        b"".to_vec(),
        b"\n".to_vec(),
        b"protocol=smtp\nhost=mail.example.com\n\n".to_vec(),
    ];
    for input in &inputs {
        for args in [
            &["--socket", sock(&daemon), "get"][..],
            &["--socket", sock(&daemon), "--require", "-v", "get"][..],
        ] {
            let run = run_helper_with(args, &[], input, false);
            run.assert_silent_fallthrough();
            assert!(!run.stderr.contains("panicked"), "{run:?}");
        }
    }
    assert!(
        daemon.seen().is_empty(),
        "bad input never reaches the daemon: {:?}",
        daemon.seen()
    );
}

#[test]
fn other_users_are_left_to_other_helpers() {
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let input = "protocol=https\nhost=github.com\nusername=alice\npath=acme/widgets.git\n\n";
    run_helper(&["--socket", sock(&daemon), "get"], &[], input).assert_silent_fallthrough();
    assert_eq!(
        run_helper(&["--socket", sock(&daemon), "--require", "get"], &[], input).stdout,
        "quit=1\n"
    );
    assert!(daemon.seen().is_empty());
}

#[test]
fn usage_errors_are_loud_but_keep_git_going() {
    let run = run_helper(
        &["--tiemout", "1s", "get"],
        &[("GHAPP_SOCKET", "/nonexistent")],
        REPO_REQUEST,
    );
    assert_eq!((run.code, run.stdout.as_str()), (Some(2), ""));
    assert!(run.stderr.contains("--tiemout"), "{}", run.stderr);
    let required = run_helper(&["--require", "--tiemout", "1s", "get"], &[], REPO_REQUEST);
    assert_eq!(required.stdout, "quit=1\n", "fail-closed survives a typo");
    let help = run_helper(&["--help"], &[], "");
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("GHAPP_REQUIRE"));
}

#[test]
fn helper_links_no_tls_or_reqwest() {
    // The hot path must not load a root store; a cheap proxy check on the built binary.
    let binary = std::fs::read(Path::new(HELPER)).unwrap();
    let links = |needle: &[u8]| binary.windows(needle.len()).any(|w| w == needle);
    assert!(
        links(b"httparse"),
        "positive control: crate names are visible in the binary"
    );
    for needle in [&b"rustls"[..], b"reqwest", b"aws_lc"] {
        assert!(
            !links(needle),
            "helper links {}",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn a_panic_prints_no_payload_and_exits_zero() {
    // Debug builds panic on purpose where GHAPP_HELPER_TEST_PANIC says (release builds cannot).
    if !cfg!(debug_assertions) {
        return;
    }
    let daemon = FakeDaemon::start(Reply::Json(200, token_json(&rfc3339(now_unix() + 3600))));
    let env = [
        ("GHAPP_SOCKET", sock(&daemon)),
        ("GHAPP_HELPER_TEST_PANIC", "get"),
    ];
    let quiet = run_helper(&["get"], &env, REPO_REQUEST);
    assert_eq!(
        (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
        (Some(0), "", ""),
        "{quiet:?}"
    );
    let loud = run_helper(&["-v", "--require", "get"], &env, REPO_REQUEST);
    assert_eq!(
        (loud.code, loud.stdout.as_str()),
        (Some(0), "quit=1\n"),
        "{loud:?}"
    );
    assert!(loud.stderr.contains("internal error at"), "{loud:?}");
    assert!(
        !loud.stderr.contains("PANICPAYLOAD"),
        "the payload is never printed: {loud:?}"
    );
    assert!(daemon.seen().is_empty());
}
