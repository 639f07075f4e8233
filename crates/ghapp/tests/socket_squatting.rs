//! Socket squatting (issue 12, finding 1), reproduced with real processes and — as root — real
//! throwaway users: a victim (A) with no `XDG_RUNTIME_DIR`, whose clients look for
//! `$TMPDIR/ghapp-<A>/ghapp.sock`, and an attacker (B) who gets there first with a fake daemon
//! answering her own token for her own host. Every client of A's must refuse to talk to it —
//! `ghapp token` and `ghapp exec` with a clear error, the credential helper silently — and the
//! fake daemon must receive nothing. A daemon A starts must not follow B's link, and a root
//! daemon must refuse a socket whose ancestor B can rename.
//!
//! Without root the users cannot be made: the test prints SKIPPED and checks nothing.

use ghapp_testkit::system::{ThrowawayUser, run_with_input};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const GHAPP: &str = env!("CARGO_BIN_EXE_ghapp");
/// The attacker's token: installation-token shaped, so only the trust checks can stop it.
const EVIL_TOKEN: &str = "ghs_EVILevilEVILevilEVILevilEVILevil0000";
/// The env var that turns this test binary into the attacker's fake daemon.
const FAKE_DAEMON_ENV: &str = "GHAPP_TEST_FAKE_DAEMON";

/// Not a test of its own: when [`FAKE_DAEMON_ENV`] names a socket, this process (started as the
/// attacker by `setpriv`) serves a fake daemon there, logging every request (and the peer's
/// command line) to `GHAPP_TEST_FAKE_LOG`, until killed. Run normally, it does nothing.
#[test]
fn fake_daemon_entry() {
    let Some(socket) = std::env::var_os(FAKE_DAEMON_ENV) else {
        return;
    };
    let socket = PathBuf::from(socket);
    let log = PathBuf::from(std::env::var_os("GHAPP_TEST_FAKE_LOG").expect("log path"));
    let listener = UnixListener::bind(&socket).expect("fake daemon binds");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    println!("listening");
    std::io::stdout().flush().unwrap();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        // A client that connects, reads the server's credentials and leaves sent nothing:
        // only requests are logged.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            continue;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                break;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .unwrap();
        let who = rustix::net::sockopt::socket_peercred(&stream)
            .ok()
            .and_then(|c| std::fs::read(format!("/proc/{}/cmdline", c.pid.as_raw_nonzero())).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        let _ = writeln!(
            file,
            "{} {} [{who}]",
            line.trim_end(),
            String::from_utf8_lossy(&body)
        );
        let answer = if line.contains("/v1/status") {
            r#"{"apps":[{"host":"github.com"}]}"#.to_string()
        } else if line.starts_with("DELETE") {
            r#"{"invalidated":true}"#.to_string()
        } else {
            format!(
                r#"{{"token":"{EVIL_TOKEN}","expires_at":"2099-01-01T00:00:00Z","installation_id":1,"app":"evil","host":"evil.example","owner":"acme","repositories":["widgets"],"permissions":{{"contents":"write"}}}}"#
            )
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        );
    }
}

/// A throwaway user (deleted on drop) and the commands run as it.
struct User(ThrowawayUser);

impl User {
    fn create(name: &str) -> User {
        let options = ["-M", "-N", "-s", "/bin/false"];
        User(ThrowawayUser::create(name, &options).unwrap_or_else(|error| panic!("{error}")))
    }

    /// `program args…` as this user, with a clean environment plus `env`.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>, env: &[(&str, &Path)]) -> Command {
        let mut command = ghapp_testkit::system::as_user(self.uid, self.gid, program);
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }
}

impl std::ops::Deref for User {
    type Target = ThrowawayUser;
    fn deref(&self) -> &ThrowawayUser {
        &self.0
    }
}

/// The attacker's fake daemon process, killed on drop.
struct FakeDaemon {
    child: std::process::Child,
    log: PathBuf,
}

impl FakeDaemon {
    fn start(attacker: &User, socket: &Path) -> FakeDaemon {
        let log = socket.with_extension("log");
        let exe = std::env::current_exe().unwrap();
        let mut child = attacker
            .command(
                &exe,
                &[(FAKE_DAEMON_ENV, socket), ("GHAPP_TEST_FAKE_LOG", &log)],
            )
            .args([
                "--exact",
                "fake_daemon_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening") => break,
                Some(Ok(_)) => {}
                _ => panic!("the fake daemon did not start"),
            }
            assert!(Instant::now() < deadline, "the fake daemon did not start");
        }
        FakeDaemon { child, log }
    }

    /// Every request it received.
    fn received(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch "/tmp" (root's, 1777 like the real one) and a victim's environment pointing at it.
struct Scene {
    base: PathBuf,
    config: PathBuf,
    home: PathBuf,
}

impl Scene {
    fn new(victim: &User) -> Scene {
        let base = PathBuf::from(format!("/tmp/ghsq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let home = base.join("home-a");
        std::fs::create_dir(&home).unwrap();
        chown(&home, victim.uid);
        let config = base.join("config.toml");
        std::fs::write(&config, "").unwrap();
        Scene { base, config, home }
    }

    /// Where A's clients look: `$TMPDIR/ghapp-<uid>/ghapp.sock`.
    fn victim_dir(&self, victim: &User) -> PathBuf {
        self.base.join(format!("ghapp-{}", victim.uid))
    }

    fn env(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("TMPDIR", self.base.as_path()),
            ("HOME", self.home.as_path()),
            ("GHAPP_CONFIG", self.config.as_path()),
        ]
    }

    fn ghapp(&self, victim: &User, args: &[&str]) -> Output {
        victim
            .command(GHAPP, &self.env())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn helper(&self, victim: &User, operation: &str, input: &str) -> Output {
        let helper = ghapp_testkit::binary("git-credential-ghapp");
        let mut env = self.env();
        let debug = PathBuf::from("1");
        env.push(("GHAPP_DEBUG", debug.as_path()));
        run_with_input(
            victim.command(helper, &env).arg(operation),
            input.as_bytes(),
        )
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GET: &str = "protocol=https\nhost=github.com\npath=acme/widgets.git\n\n";

/// What every client of the victim must do in front of the attacker's socket: refuse, say why,
/// send nothing.
fn assert_every_client_refuses(scene: &Scene, victim: &User, fake: &FakeDaemon, why: &str) {
    let token = scene.ghapp(victim, &["token", "acme/widgets"]);
    let stderr = text(&token.stderr);
    assert_eq!(token.status.code(), Some(3), "ghapp token: {stderr}");
    assert!(
        token.stdout.is_empty(),
        "ghapp token printed {:?}",
        text(&token.stdout)
    );
    assert!(
        stderr.contains("refusing to use the ghapp socket"),
        "{stderr}"
    );
    assert!(
        stderr.contains(why),
        "ghapp token should say {why:?}: {stderr}"
    );

    let exec = scene.ghapp(victim, &["exec", "--repo", "acme/widgets", "--", "env"]);
    assert_eq!(
        exec.status.code(),
        Some(3),
        "ghapp exec: {}",
        text(&exec.stderr)
    );
    assert!(!text(&exec.stdout).contains(EVIL_TOKEN));

    let doctor = scene.ghapp(victim, &["doctor"]);
    let report = format!("{}{}", text(&doctor.stdout), text(&doctor.stderr));
    assert!(
        report.contains("refusing to use the ghapp socket"),
        "doctor: {report}"
    );
    assert!(report.contains(why), "doctor should say {why:?}: {report}");

    let get = scene.helper(victim, "get", GET);
    assert_eq!(get.status.code(), Some(0));
    assert!(
        get.stdout.is_empty(),
        "helper answered {:?}",
        text(&get.stdout)
    );
    assert!(
        text(&get.stderr).contains(why),
        "GHAPP_DEBUG says why: {}",
        text(&get.stderr)
    );

    let rejected = "ghs_REJECTEDrejectedREJECTEDrejected0000";
    let erase = scene.helper(
        victim,
        "erase",
        &format!(
            "protocol=https\nhost=github.com\nusername=x-access-token\npassword={rejected}\n\n"
        ),
    );
    assert_eq!(erase.status.code(), Some(0));
    assert!(erase.stdout.is_empty());
    assert_eq!(
        fake.received(),
        "",
        "the attacker's daemon received requests"
    );
}

#[test]
fn squatted_sockets_are_refused_and_trusted_uids_are_honoured() {
    if !ghapp_testkit::system::is_root() {
        eprintln!(
            "SKIPPED: socket squatting needs root to create throwaway users (useradd); nothing was checked"
        );
        return;
    }
    let tag = std::process::id() % 100_000;
    let victim = User::create(&format!("ghsqa{tag}"));
    let attacker = User::create(&format!("ghsqb{tag}"));
    let scene = Scene::new(&victim);
    let victim_dir = scene.victim_dir(&victim);

    // 1. B: `mkdir -m 0777 $TMPDIR/ghapp-<A>` and listens there.
    let status = attacker
        .command("mkdir", &[])
        .args(["-m", "0777"])
        .arg(&victim_dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let fake = FakeDaemon::start(&attacker, &victim_dir.join("ghapp.sock"));
    assert_every_client_refuses(&scene, &victim, &fake, "belongs to uid");
    drop(fake);
    std::fs::remove_dir_all(&victim_dir).unwrap();

    // 2. B: `ln -s <her dir> $TMPDIR/ghapp-<A>`.
    let attacker_dir = scene.base.join("b-dir");
    std::fs::create_dir(&attacker_dir).unwrap();
    chown(&attacker_dir, attacker.uid);
    let fake = FakeDaemon::start(&attacker, &attacker_dir.join("ghapp.sock"));
    let status = attacker
        .command("ln", &[])
        .arg("-s")
        .arg(&attacker_dir)
        .arg(&victim_dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert_every_client_refuses(&scene, &victim, &fake, "symbolic link");

    // A daemon A starts afterwards must not follow the link into B's directory.
    let daemon = scene.ghapp(&victim, &["daemon", "--foreground"]);
    let stderr = text(&daemon.stderr);
    assert_eq!(daemon.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(
        !attacker_dir.join("ghapp.sock.lock").exists(),
        "nothing created through the link"
    );
    drop(fake);
    std::fs::remove_file(&victim_dir).unwrap();

    // 3. A correctly owned directory with B's listener moved into it (as a bind mount or a
    //    careless root would): only the server's credentials give B away.
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::set_permissions(&victim_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    chown(&victim_dir, victim.uid);
    let fake = FakeDaemon::start(&attacker, &attacker_dir.join("moved.sock"));
    std::fs::rename(
        attacker_dir.join("moved.sock"),
        victim_dir.join("ghapp.sock"),
    )
    .unwrap();
    chown(&victim_dir.join("ghapp.sock"), victim.uid);
    assert_every_client_refuses(
        &scene,
        &victim,
        &fake,
        &format!("runs as uid {}", attacker.uid),
    );

    // 4. The same server, named in A's config as trusted: accepted (which is what the key is
    //    for), and then `ghapp exec` still refuses B's answer for another host.
    std::fs::write(
        &scene.config,
        format!("[daemon]\ntrusted_uids = [{}]\n", attacker.uid),
    )
    .unwrap();
    let token = scene.ghapp(&victim, &["token", "acme/widgets"]);
    assert_eq!(
        text(&token.stdout).trim(),
        EVIL_TOKEN,
        "{}",
        text(&token.stderr)
    );
    let get = scene.helper(&victim, "get", GET);
    assert!(
        text(&get.stdout).contains(EVIL_TOKEN),
        "{}",
        text(&get.stderr)
    );
    let exec = scene.ghapp(&victim, &["exec", "--repo", "acme/widgets", "--", "env"]);
    let stderr = text(&exec.stderr);
    assert_eq!(exec.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("evil.example"), "{stderr}");
    assert!(
        !text(&exec.stdout).contains(EVIL_TOKEN),
        "the command never ran"
    );
    // erase: only an installation-token-shaped password reaches even a trusted daemon.
    let before = fake.received();
    let other = scene.helper(
        &victim,
        "erase",
        "protocol=https\nhost=github.com\nusername=x-access-token\npassword=glpat-secretsecretsecret\n\n",
    );
    assert_eq!(other.status.code(), Some(0));
    assert_eq!(
        fake.received(),
        before,
        "a non-ghs password crossed the socket"
    );
    drop(fake);

    // 5. A root daemon refuses a socket whose grandparent B may rename. (Its own config: the
    //    daemon's schema learns `trusted_uids` with the config move into ghapp-protocol.)
    let daemon_config = scene.base.join("daemon.toml");
    std::fs::write(&daemon_config, "").unwrap();
    let renamable = attacker_dir.join("sub");
    std::fs::create_dir(&renamable).unwrap();
    std::fs::set_permissions(&renamable, std::fs::Permissions::from_mode(0o700)).unwrap();
    let output = Command::new(GHAPP)
        .args(["daemon", "--foreground", "--config"])
        .arg(&daemon_config)
        .arg("--socket")
        .arg(renamable.join("ghapp.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("belongs to uid {}", attacker.uid)),
        "{stderr}"
    );
}
