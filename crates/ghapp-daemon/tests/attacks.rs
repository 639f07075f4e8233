//! The local attacks of issue 12 on the daemon, replayed with real processes against the
//! emulator — as root with throwaway users (useradd) where the attack needs them; without root
//! those tests print `SKIPPED:` and pass.
//!
//! - `group_switches_gain_nothing_and_restricted_peers_see_only_their_own` (12.2, 12.6): `sg`
//!   into socket_group neither admits a user no entry names nor lets a user escape its entry;
//!   a restricted peer's `/v1/status` shows only its own, `/metrics` refuses it.
//! - `a_refused_uid_holding_connections_does_not_starve_the_helper` (12.4).
//! - `no_request_value_is_echoed_into_an_answer_or_a_log` (12.8).
//! - `the_audit_log_is_never_followed_through_a_symlink_and_kept_private` (12.9).
//! - `the_daemon_is_not_dumpable_and_no_key_line_survives_in_its_memory` (12.10).
//! - Second attacker's pass: `an_admitted_restricted_uid_holding_connections_does_not_starve_the_helper`,
//!   `no_key_line_survives_a_reload`, `no_key_line_survives_from_a_private_key_command`,
//!   `tokman_and_workspace_routes_hold_a_restricted_peer_to_its_entry`, and its finding
//!   `an_admitted_uid_holding_twice_max_connections_does_not_starve_the_helper` (fixed: each uid
//!   holds at most its fair share of the connections, and a full daemon closes an idle connection
//!   of whoever holds the most, `ghapp_daemon::idle`).
//!
//! `GHAPP_ATTACK_DAEMON=/path/to/ghapp` runs them against another build (e.g. the one before
//! the fixes, to see them fail).
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p github-emulator --bin
//! github-emulator -p git-credential-ghapp`.

use ghapp_testkit::daemon::{HttpResponse, config_for, http_request, short_temp_dir};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ghapp_testkit::system::{ThrowawayUser, is_root, run_with_input};

/// True (after a loud message) when the test cannot run here.
fn skipped_without_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "SKIPPED: {test} needs root (throwaway users, other uids); run the tests as root, as CI does"
    );
    true
}

fn daemon_binary() -> PathBuf {
    std::env::var_os("GHAPP_ATTACK_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| ghapp_testkit::binary("ghapp"))
}

// ---- A daemon started the way an attack needs it. ----

#[derive(Default)]
struct Setup {
    /// Mode of the temp dir holding config and socket (default 0700).
    dir_mode: Option<u32>,
    /// Run the daemon as this (uid, gid), with the dir, config and key handed to it.
    as_user: Option<(u32, u32)>,
    /// Soft and hard RLIMIT_NOFILE for the daemon.
    nofile: Option<(u64, u64)>,
}

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `ghapp daemon` with `config` (where `@DIR@` is its temp dir); `Err(log)` when it
    /// exits or says nothing within 30 s.
    fn start(config: &str, setup: Setup) -> Result<Daemon, String> {
        let dir = short_temp_dir().unwrap();
        let config = config.replace("@DIR@", &dir.path().display().to_string());
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(mode) = setup.dir_mode {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let socket = dir.path().join("d.sock");
        let log = dir.path().join("daemon.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = match setup.as_user {
            Some((uid, gid)) => {
                for entry in std::fs::read_dir(dir.path()).unwrap() {
                    chown(&entry.unwrap().path(), uid, gid);
                }
                chown(dir.path(), uid, gid);
                ghapp_testkit::system::as_user(uid, gid, daemon_binary())
            }
            None => Command::new(daemon_binary()),
        };
        ghapp_testkit::daemon::foreground_daemon(&mut command, &config_path, &socket)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .env_remove("GHAPP_SOCKET")
            .env_remove("GHAPP_CONFIG")
            .env("GHAPP_LOG", "info,ghapp_daemon=debug");
        if let Some((soft, hard)) = setup.nofile {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(
                        rustix::process::Resource::Nofile,
                        rustix::process::Rlimit {
                            current: Some(soft),
                            maximum: Some(hard),
                        },
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let mut daemon = Daemon {
            child,
            dir,
            socket,
            log,
        };
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("ready ") => Ok(daemon),
            _ => {
                daemon.stop();
                Err(daemon.log_text())
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        http_request(&self.socket, method, path, body).unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

// ---- Throwaway users and groups, removed on drop. ----

#[derive(Default)]
struct Accounts {
    users: Vec<ThrowawayUser>,
    groups: Vec<String>,
}

impl Accounts {
    fn name(suffix: &str) -> String {
        format!("gha{}{suffix}", std::process::id() % 1_000_000)
    }

    fn run(command: &mut Command) -> String {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A new group; its name and gid.
    fn group(&mut self, suffix: &str) -> (String, u32) {
        let name = Self::name(suffix);
        Self::run(Command::new("groupadd").arg(&name));
        self.groups.push(name.clone());
        let entry = Self::run(Command::new("getent").args(["group", &name]));
        let gid = entry.split(':').nth(2).unwrap().parse().unwrap();
        (name, gid)
    }

    /// A new user with its own primary group and the given supplementary groups; its name,
    /// uid and primary gid.
    fn user(&mut self, suffix: &str, groups: &[&str]) -> (String, u32, u32) {
        let name = Self::name(suffix);
        let supplementary = groups.join(",");
        let mut options = vec!["-M", "-U", "-s", "/usr/sbin/nologin"];
        if !groups.is_empty() {
            options.extend(["-G", supplementary.as_str()]);
        }
        let user = ThrowawayUser::create(&name, &options).unwrap_or_else(|error| panic!("{error}"));
        let answer = (name, user.uid, user.gid);
        self.users.push(user);
        answer
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        // Users first: a group that is still some user's group cannot be deleted.
        self.users.clear();
        for group in &self.groups {
            let _ = Command::new("groupdel").arg(group).output();
        }
    }
}

/// `curl` over the socket as `user`, optionally after `sg group` (which switches the primary gid
/// the daemon sees to `group`'s); status and body.
fn curl_as(socket: &Path, url_path: &str, user: &str, sg: Option<&str>) -> (u16, String) {
    let curl = format!(
        "curl -sS --max-time 30 -w '\\n%{{http_code}}' --unix-socket '{}' 'http://x{url_path}'",
        socket.display()
    );
    let mut command = Command::new("runuser");
    command.args(["-u", user, "--"]);
    match sg {
        Some(group) => command.args(["sg", group, "-c", &curl]),
        None => command.args(["sh", "-c", &curl]),
    };
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        format!("{body}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

// ---- 12.2 and 12.6 ----

#[test]
fn group_switches_gain_nothing_and_restricted_peers_see_only_their_own() {
    if skipped_without_root("group_switches_gain_nothing_and_restricted_peers_see_only_their_own") {
        return;
    }
    let mut accounts = Accounts::default();
    let (sock_group, _) = accounts.group("s");
    // A: allowed by uid, held to acme/widgets by an entry naming its uid and primary gid.
    let (user_a, uid_a, gid_a) = accounts.user("a", &[&sock_group]);
    // B: only a member of socket_group, named by no entry.
    let (user_b, _, _) = accounts.user("b", &[&sock_group]);
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = config_for(
        &emulator,
        &format!(
            "socket_group = {sock_group:?}\nallow_uids = [{uid_a}]\naudit_log = \"@DIR@/audit.jsonl\"\n\n[[daemon.policy]]\nuid = {uid_a}\ngid = {gid_a}\nrepos = [\"acme/widgets\"]\n"
        ),
    );
    let daemon = Daemon::start(
        &config,
        Setup {
            dir_mode: Some(0o711),
            ..Default::default()
        },
    )
    .unwrap();
    let socket = &daemon.socket;

    // Root caches a token for acme/gadgets, outside A's entry.
    let gadgets = daemon.request("GET", "/v1/token?owner=acme&repo=gadgets", None);
    assert_eq!(gadgets.status, 200, "{}", gadgets.body);
    let gadgets_fingerprint =
        ghapp_protocol::secret::fingerprint(gadgets.json().unwrap()["token"].as_str().unwrap());

    let widgets = "/v1/token?owner=acme&repo=widgets";
    let (status, body) = curl_as(socket, widgets, &user_a, None);
    assert_eq!(
        status,
        200,
        "A with its own gid: {body}\n{}",
        daemon.log_text()
    );
    let (status, body) = curl_as(socket, "/v1/token?owner=acme&repo=gadgets", &user_a, None);
    assert_eq!(status, 403, "A is held to acme/widgets: {body}");

    // A switches its gid with sg: its entry no longer matches, and it must not be free.
    for path in ["/v1/token?owner=acme&repo=gadgets", widgets] {
        let (status, body) = curl_as(socket, path, &user_a, Some(&sock_group));
        assert_eq!(status, 403, "A after sg {sock_group} asking {path}: {body}");
        assert!(body.contains("another gid"), "{body}");
    }
    // B, admitted only by socket_group's gid after sg, is named by no entry: nothing.
    let (status, body) = curl_as(socket, widgets, &user_b, Some(&sock_group));
    assert_eq!(status, 403, "B after sg {sock_group}: {body}");
    assert!(body.contains("no [[daemon.policy]] entry"), "{body}");
    // B with its own gid is not admitted at all (and held nothing open).
    let (status, body) = curl_as(socket, widgets, &user_b, None);
    assert_eq!(status, 403, "B with its own gid: {body}");
    assert!(body.contains("may not use this ghapp daemon"), "{body}");

    // 12.6: A's status shows its own installation and tokens only; metrics are refused.
    let (status, body) = curl_as(socket, "/v1/status", &user_a, None);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(&gadgets_fingerprint),
        "A sees the gadgets token: {body}"
    );
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tokens = page["tokens"].as_array().unwrap();
    assert!(
        !tokens.is_empty(),
        "A's own widgets token is listed: {body}"
    );
    for token in tokens {
        assert_eq!(
            token["repositories"],
            serde_json::json!(["widgets"]),
            "{body}"
        );
    }
    for installation in page["installations"].as_array().unwrap() {
        assert_eq!(installation["owner"], "acme", "{body}");
    }
    assert_eq!(page["counters"], serde_json::json!({}), "{body}");
    let (status, body) = curl_as(socket, "/v1/status", &user_b, Some(&sock_group));
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["tokens"], serde_json::json!([]), "{body}");
    assert_eq!(page["installations"], serde_json::json!([]), "{body}");
    let (status, body) = curl_as(socket, "/metrics", &user_a, None);
    assert_eq!(status, 403, "metrics for a restricted peer: {body}");
    // The daemon's own uid still sees everything.
    let own = daemon.request("GET", "/v1/status", None);
    assert!(own.body.contains(&gadgets_fingerprint), "{}", own.body);
    assert_eq!(daemon.request("GET", "/metrics", None).status, 200);
}

// ---- 12.4 ----

/// Not a test on its own: the attacker process of
/// `a_refused_uid_holding_connections_does_not_starve_the_helper`, run as another uid. Holds
/// `GHAPP_ATTACK_CONNECTIONS` idle connections to `GHAPP_ATTACK_SOCKET` (reopening any the
/// daemon closes) for `GHAPP_ATTACK_SECONDS` or until `GHAPP_ATTACK_STOP` exists, sending
/// nothing.
#[test]
#[ignore = "the attacker process of another test"]
fn attacker_holds_idle_connections() {
    let Some(socket) = std::env::var_os("GHAPP_ATTACK_SOCKET") else {
        return;
    };
    let count: usize = std::env::var("GHAPP_ATTACK_CONNECTIONS")
        .unwrap()
        .parse()
        .unwrap();
    let seconds: u64 = std::env::var("GHAPP_ATTACK_SECONDS")
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stop = std::env::var_os("GHAPP_ATTACK_STOP").map(PathBuf::from);
    let mut held: Vec<Option<UnixStream>> = (0..count).map(|_| None).collect();
    let (mut connects, mut closed_by_daemon) = (0u64, 0u64);
    while Instant::now() < deadline && !stop.as_ref().is_some_and(|p| p.exists()) {
        for slot in held.iter_mut() {
            let alive = slot.as_mut().is_some_and(|stream| {
                let mut byte = [0u8; 512];
                matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            if !alive {
                if slot.is_some() {
                    closed_by_daemon += 1;
                }
                *slot = UnixStream::connect(&socket).ok().inspect(|s| {
                    let _ = s.set_nonblocking(true);
                    connects += 1;
                });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("attacker: {connects} connects, {closed_by_daemon} closed by the daemon");
}

#[test]
fn a_refused_uid_holding_connections_does_not_starve_the_helper() {
    if skipped_without_root("a_refused_uid_holding_connections_does_not_starve_the_helper") {
        return;
    }
    idle_holder_does_not_starve_the_helper(false, 2);
}

/// Second attacker's pass: the same hold by a peer the daemon *admits* (a policy entry names
/// it, restricted to a repository it never asks for) — its connections take slots, so only
/// the closing of the longest-idle connection keeps the helper served.
#[test]
fn an_admitted_restricted_uid_holding_connections_does_not_starve_the_helper() {
    if skipped_without_root(
        "an_admitted_restricted_uid_holding_connections_does_not_starve_the_helper",
    ) {
        return;
    }
    idle_holder_does_not_starve_the_helper(true, 1);
}

/// Second attacker's pass: an admitted peer holding *twice* `max_connections` starved the helper
/// (2–6 of 100 calls served): its surplus connections filled every waiting place (each closing
/// one of its own idle connections, whose slot its next waiter took), so the helper's connection
/// found no waiting place and got a 503 at once. Fixed by the fair share: no uid but root and the
/// daemon's own holds more than half of `max_connections` (slots and waiting places together),
/// and a full daemon closes an idle connection of whoever holds the most (`ghapp_daemon::idle`).
#[test]
fn an_admitted_uid_holding_twice_max_connections_does_not_starve_the_helper() {
    if skipped_without_root(
        "an_admitted_uid_holding_twice_max_connections_does_not_starve_the_helper",
    ) {
        return;
    }
    idle_holder_does_not_starve_the_helper(true, 2);
}

/// uid 65534 holds `factor` × `max_connections` idle connections (admitted by a policy entry
/// when `admitted`, else refused) while a helper loop runs: ≥ 99% of the helper's calls succeed.
fn idle_holder_does_not_starve_the_helper(admitted: bool, factor: usize) {
    const MAX_CONNECTIONS: usize = 32;
    const CALLS: usize = 100;
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    // The attacker (uid 65534) reaches the socket file as a member of socket_group 4242 but is
    // not admitted: its primary gid is its own. The daemon starts with the soft open-files
    // limit below twice max_connections, as a default 1024 is below the default 4096.
    let config = config_for(
        &emulator,
        &format!(
            "socket_group = \"4242\"\nmax_connections = {MAX_CONNECTIONS}\naudit_log = \"@DIR@/audit.jsonl\"\n{}",
            if admitted {
                "allow_uids = [65534]\n\n[[daemon.policy]]\nuid = 65534\nrepos = [\"acme/gadgets\"]\n"
            } else {
                ""
            }
        ),
    );
    let daemon = Daemon::start(
        &config,
        Setup {
            dir_mode: Some(0o711),
            nofile: Some((64, 1024)),
            ..Default::default()
        },
    )
    .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    eprintln!(
        "daemon {}",
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_default()
    );

    let attack_seconds = 60;
    let attacker = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--groups=4242", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "attacker_holds_idle_connections",
            "--ignored",
            "--nocapture",
        ])
        .env("GHAPP_ATTACK_SOCKET", &daemon.socket)
        .env(
            "GHAPP_ATTACK_CONNECTIONS",
            (factor * MAX_CONNECTIONS).to_string(),
        )
        .env("GHAPP_ATTACK_SECONDS", attack_seconds.to_string())
        .env("GHAPP_ATTACK_STOP", daemon.dir.path().join("stop-attack"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let the attacker take its connections before the helper starts.
    std::thread::sleep(Duration::from_secs(2));

    let helper = ghapp_testkit::binary("git-credential-ghapp");
    let input = format!(
        "protocol=http\nhost={}\npath=acme/widgets.git\n\n",
        emulator.git_host()
    );
    let started = Instant::now();
    let mut succeeded = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..CALLS {
        let call = Instant::now();
        let output = run_with_input(
            Command::new(&helper)
                .arg("get")
                .env("GHAPP_SOCKET", &daemon.socket)
                .env_remove("GHAPP_DEBUG"),
            input.as_bytes(),
        );
        slowest = slowest.max(call.elapsed());
        if String::from_utf8_lossy(&output.stdout).contains("password=ghs_") {
            succeeded += 1;
        }
    }
    let helper_time = started.elapsed();
    std::fs::write(daemon.dir.path().join("stop-attack"), "").unwrap();
    let attacker_output = attacker.wait_with_output().unwrap();
    let attacker_said = String::from_utf8_lossy(&attacker_output.stdout);
    eprintln!(
        "helper: {succeeded}/{CALLS} calls succeeded in {helper_time:?} (slowest {slowest:?}); {}",
        attacker_said
            .lines()
            .find(|l| l.starts_with("attacker:"))
            .unwrap_or("attacker said nothing")
    );
    assert!(
        helper_time < Duration::from_secs(attack_seconds),
        "the helper loop outlasted the attack"
    );
    assert!(
        succeeded * 100 >= CALLS * 99,
        "only {succeeded} of {CALLS} helper calls succeeded\n{}",
        daemon.log_text()
    );
    let audit = std::fs::read_to_string(daemon.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        admitted
            || audit
                .lines()
                .any(|l| l.contains("\"peer_uid\":65534") && l.contains("denied_peer")),
        "every refused peer gets an audit line"
    );
    let log = daemon.log_text();
    assert!(
        !log.contains("Too many open files"),
        "the daemon ran out of descriptors:\n{log}"
    );
}

#[test]
#[ignore = "the attacker process of another test"]
fn attacker_connects_in_a_loop() {
    let Some(socket) = std::env::var_os("GHAPP_ATTACK_SOCKET") else {
        return;
    };
    let seconds: u64 = std::env::var("GHAPP_ATTACK_SECONDS")
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut connects = 0u64;
    while Instant::now() < deadline {
        if UnixStream::connect(&socket).is_ok() {
            connects += 1;
        }
    }
    println!("attacker: {connects} connects");
}

/// Attacker's pass: a refused peer connecting in a loop wrote one audit line and one log line
/// per connection — ~23,000 of each (10 MB) a second, filling the disk. Refusal lines are capped
/// per second; the next line written counts the refusals that were not logged one by one.
#[test]
fn a_refused_peer_connecting_in_a_loop_cannot_flood_the_logs() {
    if skipped_without_root("a_refused_peer_connecting_in_a_loop_cannot_flood_the_logs") {
        return;
    }
    let config = "[daemon]\nsocket_group = \"4242\"\naudit_log = \"@DIR@/audit.jsonl\"\n";
    let daemon = Daemon::start(
        config,
        Setup {
            dir_mode: Some(0o711),
            ..Default::default()
        },
    )
    .unwrap();
    let attack_seconds = 3;
    let started = Instant::now();
    let attacker = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--groups=4242", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "attacker_connects_in_a_loop",
            "--ignored",
            "--nocapture",
        ])
        .env("GHAPP_ATTACK_SOCKET", &daemon.socket)
        .env("GHAPP_ATTACK_SECONDS", attack_seconds.to_string())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&attacker.stdout);
    let connects: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("attacker: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the attacker said: {said}"));
    // Let the daemon finish with the backlog.
    std::thread::sleep(Duration::from_millis(500));
    let seconds = started.elapsed().as_secs() + 2;
    let cap = 20 * seconds as usize;
    let audit = std::fs::read_to_string(daemon.dir.path().join("audit.jsonl")).unwrap();
    let audit_lines = audit.lines().filter(|l| l.contains("denied_peer")).count();
    let log_lines = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("refused a peer"))
        .count();
    eprintln!("{connects} refused connects: {audit_lines} audit lines, {log_lines} log lines");
    assert!(
        connects > 10 * cap as u64,
        "the attacker made only {connects} connections: the test shows nothing"
    );
    assert!(audit_lines > 0, "refused peers are still audited");
    assert!(
        audit_lines <= cap && log_lines <= cap,
        "{audit_lines} audit lines and {log_lines} log lines for {connects} refusals in {seconds} s (at most {cap})"
    );
    assert!(
        audit.contains("were not logged one by one"),
        "the unlogged refusals are counted: {audit}"
    );
}

#[test]
fn max_connections_is_capped_to_fit_the_descriptor_limit() {
    let daemon = Daemon::start(
        "[daemon]\nmax_connections = 4096\n",
        Setup {
            nofile: Some((256, 512)),
            ..Default::default()
        },
    )
    .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["512", "512"], "soft raised to hard: {open_files}");
    let log = daemon.log_text();
    assert!(
        log.contains("max_connections 4096 capped to 128"),
        "the cap is logged:\n{log}"
    );
}

// ---- 12.8 ----

#[test]
fn no_request_value_is_echoed_into_an_answer_or_a_log() {
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = config_for(&emulator, "audit_log = \"@DIR@/audit.jsonl\"\n");
    let daemon = Daemon::start(&config, Setup::default()).unwrap();
    let granted = daemon.request("GET", "/v1/token?owner=acme&repo=widgets", None);
    assert_eq!(granted.status, 200, "{}", granted.body);
    let token = granted.json().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = &token[..16];
    let encoded = format!("{token:?}");
    let attempts: Vec<(&str, String, Option<String>)> = vec![
        // The finding: a bare JSON string as the DELETE body.
        ("DELETE", "/v1/token".into(), Some(encoded.clone())),
        ("DELETE", "/v1/token".into(), Some(format!("[{encoded}]"))),
        (
            "DELETE",
            "/v1/token".into(),
            Some(format!("{{\"token\": 1, \"t\": {encoded}}}")),
        ),
        (
            "DELETE",
            "/v1/token".into(),
            Some(format!("{{\"token\": {encoded}")),
        ),
        (
            "POST",
            "/v1/runner-token".into(),
            Some(format!("{{\"org\": \"{token}!\"}}")),
        ),
        ("POST", "/v1/runner-token".into(), Some(encoded.clone())),
        ("GET", format!("/v1/token?owner={token}!"), None),
        ("GET", format!("/v1/token?{token}=1"), None),
        (
            "GET",
            format!("/v1/token?owner=acme&permissions={token}"),
            None,
        ),
        (
            "GET",
            format!("/v1/token?owner=acme&permissions=x:{token}"),
            None,
        ),
        ("GET", format!("/v1/token?owner=acme&min_ttl={token}"), None),
        ("GET", format!("/v1/token?host={token}/"), None),
        ("GET", format!("/{token}"), None),
        ("GET", format!("/api/{token}!/x"), None),
        (&token, "/v1/token".into(), None),
    ];
    for (i, (method, path, body)) in attempts.iter().enumerate() {
        let answer = daemon.request(method, path, body.as_deref());
        if i == 0 {
            assert_eq!(answer.status, 400, "a bare string body: {}", answer.body);
        }
        assert!(
            !answer.body.contains(prefix),
            "{method} {path} echoed the token: {}",
            answer.body
        );
    }
    // The attempt that parses: a DELETE with the real shape still works.
    let deleted = daemon.request(
        "DELETE",
        "/v1/token",
        Some(&format!("{{\"token\": {encoded}}}")),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let audit = std::fs::read_to_string(daemon.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().count() > attempts.len(),
        "every attempt was audited:\n{audit}"
    );
    assert!(audit.contains(&ghapp_protocol::secret::fingerprint(&token)));
    for (what, text) in [("audit log", audit), ("daemon log", daemon.log_text())] {
        assert!(
            !text.contains(prefix),
            "the token is in the {what}:\n{text}"
        );
    }
}

// ---- 12.9 ----

#[test]
fn the_audit_log_is_never_followed_through_a_symlink_and_kept_private() {
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, "").unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let link = log_dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let config = format!("[daemon]\naudit_log = {:?}\n", link.display().to_string());
    let refused = Daemon::start(&config, Setup::default()).map(|_| ());
    let log = refused.expect_err("a daemon whose audit log is a symlink must not start");
    assert!(log.contains("symbolic link"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "",
        "nothing written through the link"
    );

    let wide = log_dir.path().join("wide.jsonl");
    std::fs::write(&wide, "").unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = format!("[daemon]\naudit_log = {:?}\n", wide.display().to_string());
    let daemon = Daemon::start(&config, Setup::default()).unwrap();
    assert_eq!(daemon.request("GET", "/v1/status", None).status, 200);
    let meta = std::fs::metadata(&wide).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the wide mode was narrowed");
    assert!(
        std::fs::read_to_string(&wide)
            .unwrap()
            .contains("/v1/status")
    );
    assert!(daemon.log_text().contains("narrowed it to 0600"));
}

/// Attacker's pass: a FIFO in the audit log's place (planted by anyone who can write its
/// directory) blocked the daemon's `open(2)` until a reader came — at start it never became
/// ready; on SIGHUP its main loop hung, so SIGTERM was never acted on. It must be refused at
/// once, like any file that is not a regular file.
#[test]
fn a_fifo_in_place_of_the_audit_log_is_refused_without_hanging() {
    let log_dir = tempfile::tempdir().unwrap();
    let fifo = log_dir.path().join("audit.jsonl");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let config = format!("[daemon]\naudit_log = {:?}\n", fifo.display().to_string());
    let started = std::time::Instant::now();
    let refused = Daemon::start(&config, Setup::default()).map(|_| ());
    let log = refused.expect_err("a daemon whose audit log is a FIFO must not start");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refusing took {:?}: the open blocked on the FIFO",
        started.elapsed()
    );
    assert!(log.contains("not a regular file"), "{log}");

    // On SIGHUP: the previous audit log stays, the daemon keeps serving and still stops.
    let good = log_dir.path().join("good.jsonl");
    let config = format!("[daemon]\naudit_log = {:?}\n", good.display().to_string());
    let mut daemon = Daemon::start(&config, Setup::default()).unwrap();
    let config_path = daemon.dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!("[daemon]\naudit_log = {:?}\n", fifo.display().to_string()),
    )
    .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.pid() as i32).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !daemon.log_text().contains("not a regular file") {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never reported the FIFO:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon.request("GET", "/v1/status", None).status, 200);
    assert!(
        std::fs::read_to_string(&good)
            .unwrap()
            .contains("/v1/status")
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.pid() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if daemon.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not stop on SIGTERM after the reload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- 12.10 ----

/// Every writable mapping of `pid`, read through /proc/PID/mem: which of `needles` occur.
fn needles_in_memory(pid: u32, needles: &[String]) -> Vec<String> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // Copies of a key read at run time live in writable memory (heap, stacks, anonymous
        // maps); the binary's and libraries' read-only pages cannot hold one.
        if !perms.starts_with("rw") || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buffer = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut buffer, start).is_err() {
            continue;
        }
        for needle in needles {
            if !found.contains(needle)
                && buffer
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
            {
                found.push(needle.clone());
            }
        }
    }
    found
}

#[test]
fn the_daemon_is_not_dumpable_and_no_key_line_survives_in_its_memory() {
    if skipped_without_root("the_daemon_is_not_dumpable_and_no_key_line_survives_in_its_memory") {
        return;
    }
    // The scanner finds what is there: a line planted in this process.
    let planted = format!("planted-{}-line-for-the-scanner", std::process::id());
    let kept = std::hint::black_box(planted.clone().into_bytes());
    assert_eq!(
        needles_in_memory(std::process::id(), std::slice::from_ref(&planted)).len(),
        1
    );
    drop(kept);

    let mut accounts = Accounts::default();
    let (_, uid, gid) = accounts.user("d", &[]);
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let pem = std::fs::read_to_string(emulator.key_path("app1.pem")).unwrap();
    let all_lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    // Lines that encode nothing but the public modulus may rightly be in memory: the daemon
    // holds the public key's base64url form (for the key's fingerprint), and a line with no
    // '+' or '/' aligned on the modulus is the same text. Every other line holds private parts.
    let modulus = modulus_range(&base64_decode(&all_lines.concat()));
    let key_lines: Vec<String> = all_lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            let bytes = i * 48..(i + 1) * 48;
            l.len() >= 16 && !(modulus.start <= bytes.start && bytes.end <= modulus.end)
        })
        .map(|(_, l)| l.to_string())
        .collect();
    assert!(
        key_lines.len() >= 18,
        "a 2048-bit key has ~25 lines, 4 of them the modulus alone"
    );
    // The daemon runs as its own user, with its own copy of the key.
    let config = config_for(&emulator, "").replace(
        &format!("{:?}", emulator.key_path("app1.pem").display().to_string()),
        "\"@DIR@/key.pem\"",
    );
    let (daemon, _key_dir) = start_with_key(&config, &pem, uid, gid);
    // A JWT is signed and a token minted and cached, then the memory is searched.
    let pid = daemon.pid();
    let granted = daemon.request("GET", "/v1/token?owner=acme&repo=widgets", None);
    assert_eq!(
        granted.status,
        200,
        "{}\n{}",
        granted.body,
        daemon.log_text()
    );
    let found = needles_in_memory(pid, &key_lines);
    // As a process of the daemon's uid sees it: /proc/PID/* of a non-dumpable process belong
    // to root, so the same uid cannot read its memory or attach a debugger (gcore).
    let mem_owner = std::fs::metadata(format!("/proc/{pid}/mem")).unwrap().uid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    let positions: Vec<usize> = found
        .iter()
        .filter_map(|line| key_lines.iter().position(|l| l == line))
        .collect();
    eprintln!(
        "{} of {} key lines in memory (lines {positions:?}); /proc/{pid}/mem owned by uid {mem_owner}; {core}",
        found.len(),
        key_lines.len()
    );
    assert!(
        found.is_empty(),
        "{} of the key's {} base64 lines are in the live daemon's memory",
        found.len(),
        key_lines.len()
    );
    assert_eq!(
        mem_owner, 0,
        "/proc/{pid}/mem belongs to uid {mem_owner}: the daemon is dumpable"
    );
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
}

/// Standard base64 (the PEM body), decoded with std only.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The byte range of the modulus `n` in a PKCS#1 `RSAPrivateKey` DER:
/// SEQUENCE { INTEGER version, INTEGER n, … }.
fn modulus_range(der: &[u8]) -> std::ops::Range<usize> {
    // A DER element's header at `at`: (content start, content length).
    let header = |at: usize| -> (usize, usize) {
        let first = der[at + 1] as usize;
        if first < 0x80 {
            return (at + 2, first);
        }
        let count = first & 0x7f;
        let len = der[at + 2..at + 2 + count]
            .iter()
            .fold(0usize, |n, b| (n << 8) | *b as usize);
        (at + 2 + count, len)
    };
    assert_eq!(der[0], 0x30, "a PKCS#1 key (BEGIN RSA PRIVATE KEY)");
    let (content, _) = header(0);
    let (version, version_len) = header(content);
    let (n, n_len) = header(version + version_len);
    n..n + n_len
}

/// [`Daemon::start`] as `uid:gid`, with `key` in a 0600 file of that user named where the
/// config says `@DIR@/key.pem`; the key's dir lives as long as the returned guard.
fn start_with_key(config: &str, key: &str, uid: u32, gid: u32) -> (Daemon, tempfile::TempDir) {
    let dir = short_temp_dir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&key_path, uid, gid);
    chown(dir.path(), uid, gid);
    let config = config.replace("@DIR@/key.pem", &key_path.display().to_string());
    let daemon = Daemon::start(
        &config,
        Setup {
            as_user: Some((uid, gid)),
            ..Default::default()
        },
    )
    .unwrap_or_else(|log| panic!("the daemon as uid {uid} did not start:\n{log}"));
    (daemon, dir)
}

/// The base64 lines of `pem` that hold private parts (every line but the modulus-only ones).
fn private_key_lines(pem: &str) -> Vec<String> {
    let all_lines: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let modulus = modulus_range(&base64_decode(&all_lines.concat()));
    all_lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            let bytes = i * 48..(i + 1) * 48;
            l.len() >= 16 && !(modulus.start <= bytes.start && bytes.end <= modulus.end)
        })
        .map(|(_, l)| l.to_string())
        .collect()
}

/// Sends SIGHUP and waits for the daemon to say the reload is done (the `n`th time).
fn reload_and_wait(daemon: &Daemon, n: usize) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(daemon.pid() as i32).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.log_text().matches("configuration reloaded").count() < n {
        assert!(
            Instant::now() < deadline,
            "reload {n} never finished:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Second attacker's pass: no key line survives a SIGHUP reload — of the same key file, nor of
/// a new key written in its place.
#[test]
fn no_key_line_survives_a_reload() {
    if skipped_without_root("no_key_line_survives_a_reload") {
        return;
    }
    let mut accounts = Accounts::default();
    let (_, uid, gid) = accounts.user("r", &[]);
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let pem = std::fs::read_to_string(emulator.key_path("app1.pem")).unwrap();
    let old_lines = private_key_lines(&pem);
    let config = config_for(&emulator, "").replace(
        &format!("{:?}", emulator.key_path("app1.pem").display().to_string()),
        "\"@DIR@/key.pem\"",
    );
    let (daemon, key_dir) = start_with_key(&config, &pem, uid, gid);
    let pid = daemon.pid();
    let token = "/v1/token?owner=acme&repo=widgets";
    assert_eq!(daemon.request("GET", token, None).status, 200);
    reload_and_wait(&daemon, 1);
    assert_eq!(
        daemon
            .request("GET", "/v1/token?owner=acme&repo=gadgets", None)
            .status,
        200
    );
    let found = needles_in_memory(pid, &old_lines);
    eprintln!(
        "after reloading the same key: {} of {} key lines in memory",
        found.len(),
        old_lines.len()
    );
    assert!(
        found.is_empty(),
        "{} key lines survive a reload",
        found.len()
    );

    // A new key in the same file (the emulator does not know it: minting fails, signing runs).
    let generated = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let new_pem = String::from_utf8(generated.stdout).unwrap();
    let new_lines = private_key_lines(&new_pem);
    let key_path = key_dir.path().join("key.pem");
    std::fs::write(&key_path, &new_pem).unwrap();
    reload_and_wait(&daemon, 2);
    let _ = daemon.request(
        "GET",
        "/v1/token?owner=acme&repo=widgets&min_ttl=3599",
        None,
    );
    let found_new = needles_in_memory(pid, &new_lines);
    let found_old = needles_in_memory(pid, &old_lines);
    eprintln!(
        "after reloading a new key: {} of {} new and {} of {} old key lines in memory",
        found_new.len(),
        new_lines.len(),
        found_old.len(),
        old_lines.len()
    );
    assert!(found_new.is_empty() && found_old.is_empty());
}

/// Second attacker's pass: the tokman and workspace routes hold a restricted peer to its entry
/// (owners, repos, hosts) as `/v1/token` does, and a peer refused by policy costs one audit line
/// per request, no more.
#[test]
fn tokman_and_workspace_routes_hold_a_restricted_peer_to_its_entry() {
    if skipped_without_root("tokman_and_workspace_routes_hold_a_restricted_peer_to_its_entry") {
        return;
    }
    let mut accounts = Accounts::default();
    let (sock_group, _) = accounts.group("t");
    let (user_a, uid_a, _) = accounts.user("a", &[&sock_group]);
    let (user_h, uid_h, _) = accounts.user("h", &[&sock_group]);
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let config = config_for(
        &emulator,
        &format!(
            "socket_group = {sock_group:?}\nallow_uids = [{uid_a}, {uid_h}]\ndefault_owner = \"acme\"\naudit_log = \"@DIR@/audit.jsonl\"\n\n[[daemon.policy]]\nuid = {uid_a}\nrepos = [\"acme/widgets\"]\n\n[[daemon.policy]]\nuid = {uid_h}\nhosts = [\"other.example\"]\n"
        ),
    ) + &format!(
        "\n[[app]]\nname = \"other-app\"\nhost = \"other.example\"\napi_url = \"https://other.example/api/v3\"\napp_id = 2\nprivate_key_file = {:?}\n",
        emulator.key_path("app1.pem").display().to_string()
    );
    let daemon = Daemon::start(
        &config,
        Setup {
            dir_mode: Some(0o711),
            ..Default::default()
        },
    )
    .unwrap_or_else(|log| panic!("{log}"));
    let socket = &daemon.socket;
    let (status, body) = curl_as(socket, "/api/acme/widgets", &user_a, None);
    assert_eq!(status, 200, "A's own repository via tokman: {body}");
    let (status, body) = curl_as(socket, "/api/acme/gadgets", &user_a, None);
    assert_eq!(status, 403, "another repository via tokman: {body}");
    let (status, body) = curl_as(socket, "/admin/github-installation-token", &user_a, None);
    eprintln!("A on the workspace route: {status} {body}");
    assert_ne!(status, 200, "the installation-wide default token: {body}");
    for path in ["/api/acme/widgets", "/admin/github-installation-token"] {
        let (status, body) = curl_as(socket, path, &user_h, None);
        assert_eq!(status, 403, "H (hosts = other.example) on {path}: {body}");
    }
    // One audit line per refused request, none more.
    let before = std::fs::read_to_string(daemon.dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .count();
    let loop_curl = format!(
        "for i in $(seq 200); do curl -s -o /dev/null --unix-socket '{}' http://x/api/acme/gadgets; done",
        socket.display()
    );
    let status = Command::new("runuser")
        .args(["-u", &user_a, "--", "sh", "-c", &loop_curl])
        .status()
        .unwrap();
    assert!(status.success());
    let audit = std::fs::read_to_string(daemon.dir.path().join("audit.jsonl")).unwrap();
    let added = audit.lines().count() - before;
    eprintln!(
        "200 refused tokman requests: {added} audit lines, daemon log {} bytes",
        daemon.log_text().len()
    );
    assert_eq!(added, 200);
}

/// Second attacker's pass: a key read from `private_key_command`'s stdout leaves no key line in
/// the daemon's memory either, after start and after a reload (which runs the command again).
#[test]
fn no_key_line_survives_from_a_private_key_command() {
    if skipped_without_root("no_key_line_survives_from_a_private_key_command") {
        return;
    }
    let mut accounts = Accounts::default();
    let (_, uid, gid) = accounts.user("c", &[]);
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).unwrap();
    let pem = std::fs::read_to_string(emulator.key_path("app1.pem")).unwrap();
    let key_lines = private_key_lines(&pem);
    let config = config_for(&emulator, "").replace(
        &format!(
            "private_key_file = {:?}",
            emulator.key_path("app1.pem").display().to_string()
        ),
        "private_key_command = [\"cat\", \"@DIR@/key.pem\"]",
    );
    assert!(config.contains("private_key_command"), "{config}");
    let (daemon, _key_dir) = start_with_key(&config, &pem, uid, gid);
    assert!(
        daemon.log_text().contains("command"),
        "the key did not come from the command:\n{}",
        daemon.log_text()
    );
    let pid = daemon.pid();
    let granted = daemon.request("GET", "/v1/token?owner=acme&repo=widgets", None);
    assert_eq!(granted.status, 200, "{}", granted.body);
    let after_start = needles_in_memory(pid, &key_lines);
    reload_and_wait(&daemon, 1);
    let granted = daemon.request("GET", "/v1/token?owner=acme&repo=gadgets", None);
    assert_eq!(granted.status, 200, "{}", granted.body);
    let after_reload = needles_in_memory(pid, &key_lines);
    eprintln!(
        "private_key_command: {} of {} key lines in memory after start, {} after a reload",
        after_start.len(),
        key_lines.len(),
        after_reload.len()
    );
    assert!(after_start.is_empty() && after_reload.is_empty());
}
