//! The real `ghapp daemon` process on a temp socket: readiness, signals, reload, socket
//! recovery and refusal, systemd integration — and, against the emulator, real tokens, peers,
//! the seed routes and metrics.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p github-emulator --bin
//! github-emulator` (or `cargo test --workspace`, which builds every binary first).

use ghapp_testkit::daemon::{
    DaemonProcess, DaemonStart, config_for, http_request, parse_prometheus,
};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ghapp_testkit::system::is_root;

fn ghapp_daemon(config: &Path, socket: &Path) -> Command {
    let mut command = Command::new(ghapp_testkit::binary("ghapp"));
    ghapp_testkit::daemon::foreground_daemon(&mut command, config, socket);
    command
}

fn error_of(response: &ghapp_testkit::daemon::HttpResponse) -> String {
    response.json().unwrap()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn ready_line_then_clean_exit_removes_the_socket() {
    let mut daemon = DaemonProcess::start("").unwrap();
    let (status, body) = daemon.get("/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let status = daemon
        .request("GET", "/v1/status", None)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["socket"], daemon.socket().display().to_string());
    assert_eq!(status["version"], ghapp_protocol::VERSION);
    let exit = daemon.stop().unwrap();
    assert!(exit.success(), "exit {exit}: {}", daemon.log());
    assert!(!daemon.socket().exists(), "socket removed on clean exit");
    assert!(daemon.log().contains("SIGTERM"), "{}", daemon.log());
}

#[test]
fn sigint_stops_too() {
    let mut daemon = DaemonProcess::start("").unwrap();
    daemon.signal(rustix::process::Signal::INT).unwrap();
    let exit = daemon.wait(Duration::from_secs(30)).unwrap();
    assert!(exit.success(), "{}", daemon.log());
    assert!(!daemon.socket().exists());
}

#[test]
fn stale_socket_is_recovered_after_a_crash() {
    let mut daemon = DaemonProcess::start("").unwrap();
    daemon.kill();
    assert!(daemon.socket().exists(), "kill -9 leaves the socket behind");
    daemon.restart().unwrap();
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    assert!(
        daemon.log().contains("removing stale socket"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_second_daemon_on_the_same_socket_is_a_clear_error() {
    let daemon = DaemonProcess::start("").unwrap();
    let output = ghapp_daemon(daemon.config_path(), daemon.socket())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(output.stdout.is_empty(), "no ready line");
    assert_eq!(
        daemon.get("/healthz").unwrap().0,
        200,
        "the first daemon is untouched"
    );
}

#[test]
fn unsafe_socket_directories_and_paths_are_refused() {
    let tmp = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();

    let loose = tmp.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = ghapp_daemon(&config, &loose.join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("group- or other-writable"), "{stderr}");
    assert!(!loose.join("s.sock").exists());

    let not_a_socket = tmp.path().join("file.sock");
    std::fs::write(&not_a_socket, "keep me").unwrap();
    let output = ghapp_daemon(&config, &not_a_socket).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&not_a_socket).unwrap(), "keep me");

    let long = tmp.path().join("x".repeat(120)).join("s.sock");
    let output = ghapp_daemon(&config, &long).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("at most 107"));

    let created = tmp.path().join("new/dir/s.sock");
    let mut daemon = Command::new(ghapp_testkit::binary("ghapp"));
    daemon
        .args(["daemon", "--foreground", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&created);
    let child = daemon
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(guard.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), format!("ready {}", created.display()));
    let dir_mode = std::fs::metadata(tmp.path().join("new/dir"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let sock_mode = std::fs::symlink_metadata(&created)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!((dir_mode, sock_mode), (0o700, 0o600));
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bad_config_fails_fast_with_its_reason() {
    let tmp = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "[daemon]\nmax_connections = 0\n").unwrap();
    let output = ghapp_daemon(&config, &tmp.path().join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_connections"));
    let output = ghapp_daemon(&tmp.path().join("absent.toml"), &tmp.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let me = rustix::process::geteuid().as_raw();
    let daemon = DaemonProcess::start("").unwrap();
    // No policy: the request reaches the broker (no App: not found).
    let before = daemon
        .request("GET", "/v1/token?owner=evil&repo=x", None)
        .unwrap();
    assert_ne!(before.status, 403, "{}", before.body);

    daemon.write_config("[daemon\nbroken").unwrap();
    daemon.reload().unwrap();
    daemon
        .wait_for_log(
            "keeping the previous configuration",
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(daemon.get("/healthz").unwrap().0, 200, "still serving");

    daemon
        .write_config(&format!(
            "[daemon]\n[[daemon.policy]]\nuid = {me}\nowners = [\"acme\"]\n"
        ))
        .unwrap();
    daemon.reload().unwrap();
    daemon
        .wait_for_log("configuration reloaded", Duration::from_secs(20))
        .unwrap();
    let after = daemon
        .request("GET", "/v1/token?owner=evil&repo=x", None)
        .unwrap();
    assert_eq!(after.status, 403, "{}", after.body);
    assert!(error_of(&after).contains("policy"));
}

#[test]
fn json_logs_are_json_lines() {
    let mut daemon = DaemonProcess::start_with(
        "",
        DaemonStart {
            args: vec!["--log-format".into(), "json".into()],
            ..Default::default()
        },
    )
    .unwrap();
    daemon.get("/nope").unwrap();
    daemon.stop().unwrap();
    let log = daemon.log();
    assert!(!log.trim().is_empty());
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(value.get("level").is_some(), "{line}");
    }
}

#[test]
fn sd_notify_ready_when_notify_socket_is_set() {
    let tmp = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let notify = tmp.path().join("notify");
    let receiver = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut daemon = DaemonProcess::start_with(
        "",
        DaemonStart {
            env: vec![("NOTIFY_SOCKET".into(), notify.display().to_string())],
            ..Default::default()
        },
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = receiver.recv(&mut buf).unwrap();
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.lines().any(|l| l == "READY=1"), "{message}");
    daemon.stop().unwrap();
    let n = receiver.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn socket_activation_uses_the_inherited_socket_and_leaves_it_alone() {
    let Some(activate) = ghapp_testkit::system::on_path("systemd-socket-activate") else {
        eprintln!("SKIPPED: systemd-socket-activate is not installed");
        return;
    };
    let tmp = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let socket = tmp.path().join("act.sock");
    let child = Command::new(activate)
        .arg("--listen")
        .arg(&socket)
        .arg(ghapp_testkit::binary("ghapp"))
        .args(["daemon", "--foreground", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first connection starts the daemon, which must answer it. (The path appears at
    // bind(2), a moment before listen(2): retry a refused connect.)
    let response = loop {
        match http_request(&socket, "GET", "/healthz", None) {
            Ok(response) => break response,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e:#}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    assert_eq!(response.status, 200);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(guard.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), format!("ready {}", socket.display()));
    let pid = rustix::process::Pid::from_raw(guard.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        socket.exists(),
        "an activated socket belongs to systemd and is not removed"
    );
}

// ---- Against the emulator: real tokens. ----

fn emulator_and_daemon(
    extra_daemon: &str,
    options: DaemonStart,
) -> (EmulatorProcess, DaemonProcess) {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let daemon = DaemonProcess::start_with(&config_for(&emulator, extra_daemon), options).unwrap();
    (emulator, daemon)
}

fn curl(socket: &Path, url_path: &str, as_user: Option<(u32, u32, u32)>) -> (u16, String) {
    let mut command = match as_user {
        Some((uid, gid, group)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg(format!("--groups={group}"))
                .arg("curl");
            c
        }
        None => Command::new("curl"),
    };
    let output = command
        .args([
            "-sS",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://x{url_path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn curl_gets_a_working_token_and_other_uids_get_403() {
    let dir_mode = if is_root() { Some(0o711) } else { None };
    let group = if is_root() {
        "socket_group = \"4242\"\n"
    } else {
        ""
    };
    let (emulator, daemon) = emulator_and_daemon(
        &format!("{group}audit_log = \"audit.jsonl\""),
        DaemonStart {
            dir_mode,
            ..Default::default()
        },
    );
    let (status, body) = curl(daemon.socket(), "/v1/token?owner=acme&repo=widgets", None);
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let secret = token["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ghs_"), "{token}");
    assert_eq!(token["owner"], "acme");
    assert_eq!(token["repositories"], serde_json::json!(["widgets"]));
    assert_eq!(token["host"], emulator.git_host());
    // The token works at the emulator.
    let check = emulator
        .api(
            "GET",
            "/installation/repositories",
            Some(&secret),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(
        check.status,
        200,
        "{}",
        String::from_utf8_lossy(&check.body)
    );

    if is_root() {
        let (status, body) = curl(
            daemon.socket(),
            "/v1/token?owner=acme&repo=widgets",
            Some((65534, 65534, 4242)),
        );
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("uid 65534"), "{body}");
        assert!(!body.contains(&secret));
    } else {
        eprintln!("skipped the other-uid part: needs root");
    }

    let (status, metrics) = curl(daemon.socket(), "/metrics", None);
    assert_eq!(status, 200);
    let samples = parse_prometheus(&metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    let mints: f64 = samples
        .iter()
        .filter(|s| s.name == "ghapp_token_mints_total")
        .map(|s| s.value)
        .sum();
    assert!(mints >= 1.0, "{metrics}");
    assert!(
        samples
            .iter()
            .any(|s| s.name == "ghapp_served_token_remaining_seconds_count" && s.value >= 1.0)
    );

    // No secret in the log, status, metrics or audit.
    let (_, status_body) = curl(daemon.socket(), "/v1/status", None);
    let audit = std::fs::read_to_string(daemon.dir().join("audit.jsonl")).unwrap_or_default();
    for (what, text) in [
        ("log", daemon.log()),
        ("status", status_body),
        ("metrics", metrics),
        ("audit", audit.clone()),
    ] {
        assert!(!text.contains(&secret), "the token leaked into the {what}");
    }
    assert!(
        audit.contains(&ghapp_protocol::secret::fingerprint(&secret)),
        "audit has the fingerprint: {audit}"
    );
}

#[test]
fn seed_compatible_routes_with_real_tokens() {
    let (emulator, daemon) =
        emulator_and_daemon("default_owner = \"acme\"", DaemonStart::default());
    let r = daemon.request("GET", "/api/acme/widgets", None).unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.body, daemon.log());
    let json = r.json().unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "namespace", "repository"]);
    let secret = json["access_token"].as_str().unwrap();
    assert_eq!(
        emulator
            .api("GET", "/installation/repositories", Some(secret), &[], None)
            .unwrap()
            .status,
        200
    );

    let r = daemon.request("GET", "/api/nobody/nothing", None).unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            r#"{"error":"Failed to retrieve a token: App is not installed on nobody/nothing"}"#
        )
    );

    let r = daemon
        .request("GET", "/admin/github-installation-token", None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json().unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["expires_at", "token"]);
    assert!(json["token"].as_str().unwrap().starts_with("ghs_"));
}

#[test]
fn many_concurrent_clients_share_one_mint() {
    let (emulator, daemon) = emulator_and_daemon("", DaemonStart::default());
    let socket = daemon.socket().to_path_buf();
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                (0..4)
                    .map(|_| {
                        http_request(&socket, "GET", "/v1/token?owner=acme&repo=widgets", None)
                            .unwrap()
                    })
                    .map(|r| {
                        (
                            r.status,
                            r.json().unwrap()["token"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for thread in threads {
        for (status, token) in thread.join().unwrap() {
            assert_eq!(status, 200, "{}", daemon.log());
            tokens.insert(token);
        }
    }
    assert_eq!(tokens.len(), 1, "one cached token for one scope");
    let stats = emulator.stats().unwrap();
    assert_eq!(stats["mints_total"], 1, "single-flight: {stats}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let (emulator, mut daemon) = emulator_and_daemon("", DaemonStart::default());
    emulator
        .fault(serde_json::json!({"kind": "latency", "route": "POST /app/installations/*", "ms": 1500}))
        .unwrap();
    let socket = daemon.socket().to_path_buf();
    let in_flight = std::thread::spawn(move || {
        http_request(&socket, "GET", "/v1/token?owner=acme&repo=widgets", None)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = emulator.stats().unwrap();
        let minting = stats["requests"]["POST /app/installations/{installation_id}/access_tokens"]
            .as_u64()
            .unwrap_or(0);
        if minting >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the mint never started: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exit = daemon.stop().unwrap();
    let answer = in_flight.join().unwrap().unwrap();
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    assert!(exit.success(), "{}", daemon.log());
    assert!(!daemon.socket().exists());
}

#[test]
fn sighup_keeps_cached_tokens_and_applies_the_new_config() {
    let me = rustix::process::geteuid().as_raw();
    let (emulator, daemon) = emulator_and_daemon("", DaemonStart::default());
    let first = daemon
        .request("GET", "/v1/token?owner=acme&repo=widgets", None)
        .unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let policy = format!("[[daemon.policy]]\nuid = {me}\nowners = [\"acme\"]\n");
    daemon
        .write_config(&config_for(&emulator, &policy))
        .unwrap();
    daemon.reload().unwrap();
    daemon
        .wait_for_log("configuration reloaded", Duration::from_secs(20))
        .unwrap();
    let second = daemon
        .request("GET", "/v1/token?owner=acme&repo=widgets", None)
        .unwrap();
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        first.json().unwrap()["token"],
        second.json().unwrap()["token"],
        "the cached token survived the reload"
    );
    assert_eq!(emulator.stats().unwrap()["mints_total"], 1);
    let refused = daemon
        .request("GET", "/v1/token?owner=octo&repo=tools", None)
        .unwrap();
    assert_eq!(
        refused.status, 403,
        "the new policy applies: {}",
        refused.body
    );
}

#[test]
fn malformed_requests_get_a_clear_4xx_or_are_cut_off_without_hurting_others() {
    use std::io::{Read, Write};
    let daemon = DaemonProcess::start("[daemon]\nclient_timeout = \"1s\"\n").unwrap();
    // A client that never finishes its headers, held open while others are served.
    let mut stalled = std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap();
    stalled
        .write_all(b"GET /v1/token?owner=acme HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();

    for (path, status, needle) in [
        ("/nope", 404, "no route GET for this path"),
        ("/v1/token?owner=ac%zzme", 400, "percent-encoding"),
        (
            "/v1/token?owner=acme&evil=1",
            400,
            "unknown query parameter",
        ),
    ] {
        let r = daemon.request("GET", path, None).unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(error_of(&r).contains(needle), "{path}: {}", r.body);
    }
    let oversized = format!("/v1/token?owner=acme&repo={}", "r".repeat(5000));
    let r = daemon.request("GET", &oversized, None).unwrap();
    assert_eq!(r.status, 414, "{}", r.body);
    let r = ghapp_testkit::daemon::raw_request(daemon.socket(), b"BLAH\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);

    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stalled client was cut off"
    );
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
}
