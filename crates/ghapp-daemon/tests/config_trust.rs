//! Config trust with real processes (issue 12.5): the daemon and `ghapp doctor` refuse a config
//! file that someone other than their user or root could have written — and a key file owned by
//! another non-root user — and the credential helper never follows the socket of such a file.
//! The owner cases need root (to create a throwaway user); without it they say SKIPPED.
//!
//! Needs the binaries built: `cargo build -p ghapp --bin ghapp -p git-credential-ghapp`.

use ghapp_testkit::system::ThrowawayUser;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A config the daemon would start with (no Apps: it serves 404s until one is added).
const CONFIG: &str = "[daemon]\nmin_ttl = \"30m\"\n";

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits for `child` to exit (killing it after `deadline`); returns (exited, stderr).
fn finish(mut child: Child, deadline: Duration) -> (bool, String) {
    let start = Instant::now();
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (exited, stderr)
}

/// Starts `ghapp daemon` on `config`; returns whether it refused to start, and its stderr.
fn daemon_refuses(config: &Path) -> (bool, String) {
    let socket = config.with_file_name("d.sock");
    let child = ghapp_testkit::daemon::foreground_daemon(
        &mut Command::new(ghapp_testkit::binary("ghapp")),
        config,
        &socket,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (exited, stderr) = finish(child, Duration::from_secs(20));
    (exited && !socket.exists(), stderr)
}

#[test]
fn the_daemon_refuses_a_config_others_can_write() {
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    chmod(&config, 0o664);
    let (refused, stderr) = daemon_refuses(&config);
    assert!(
        refused,
        "the daemon started on a group-writable config:\n{stderr}"
    );
    let expected = format!(
        "config {}: it is writable by group/others (mode 0664)",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("chmod go-w"), "says what to run: {stderr}");

    chmod(&config, 0o644);
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let inner = shared.join("config.toml");
    std::fs::write(&inner, CONFIG).unwrap();
    chmod(&shared, 0o777);
    let (refused, stderr) = daemon_refuses(&inner);
    assert!(
        refused,
        "the daemon started under a world-writable dir:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "its directory {} is writable by group/others (mode 0777)",
            shared.display()
        )),
        "{stderr}"
    );
}

#[test]
fn doctor_refuses_a_config_others_can_write() {
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    chmod(&config, 0o646);
    let out = Command::new(ghapp_testkit::binary("ghapp"))
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .arg("doctor")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("config file is not valid or not trusted")
            && stdout.contains("writable by group/others (mode 0646)"),
        "{stdout}"
    );
}

/// Writes a config (mode `mode`) whose `[daemon] socket` a fresh listener watches, runs
/// `git-credential-ghapp get` with `GHAPP_CONFIG` naming it; true when the helper connected.
fn helper_follows_socket(dir: &Path, mode: u32) -> bool {
    let socket = dir.join(format!("squat-{mode:o}.sock"));
    let listener = UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let config = dir.join(format!("config-{mode:o}.toml"));
    std::fs::write(
        &config,
        format!("[daemon]\nsocket = {:?}\n", socket.display().to_string()),
    )
    .unwrap();
    chmod(&config, mode);
    let mut child = Command::new(ghapp_testkit::binary("git-credential-ghapp"))
        .arg("get")
        .env("GHAPP_CONFIG", &config)
        .env_remove("GHAPP_SOCKET")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", dir)
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"protocol=https\nhost=github.com\npath=acme/widgets\n\n");
    }
    let start = Instant::now();
    let mut connected = false;
    loop {
        if let Ok((stream, _)) = listener.accept() {
            connected = true;
            drop(stream);
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    connected || listener.accept().is_ok()
}

#[test]
fn the_helper_never_follows_the_socket_of_an_untrusted_config() {
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    assert!(
        helper_follows_socket(dir.path(), 0o644),
        "control: a trusted config's socket is used"
    );
    assert!(
        !helper_follows_socket(dir.path(), 0o666),
        "the helper connected to the socket named by a world-writable config"
    );
}

/// A throwaway system user for the owner checks; `None` (after a loud SKIPPED) when not root.
fn throwaway_user() -> Option<ThrowawayUser> {
    if !ghapp_testkit::system::is_root() {
        eprintln!("SKIPPED: not root, cannot create a throwaway user for the owner checks");
        return None;
    }
    let name = format!("ghct{}", std::process::id());
    let options = [
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ];
    match ThrowawayUser::create(&name, &options) {
        Ok(user) => Some(user),
        Err(error) => {
            eprintln!("SKIPPED: {error}; the owner checks did not run");
            None
        }
    }
}

#[test]
fn as_root_a_config_or_key_owned_by_another_user_is_refused() {
    let Some(user) = throwaway_user() else {
        return;
    };
    let dir = ghapp_testkit::daemon::short_temp_dir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    chmod(&config, 0o644);
    std::os::unix::fs::chown(&config, Some(user.uid), None).unwrap();
    let (refused, stderr) = daemon_refuses(&config);
    assert!(
        refused,
        "root's daemon started on a config {} owns:\n{stderr}",
        user.name
    );
    assert!(
        stderr.contains(&format!(
            "config {}: it is owned by uid {}, neither this process's uid 0 nor root",
            config.display(),
            user.uid
        )),
        "{stderr}"
    );

    // A root-owned config whose key file belongs to the other user.
    let key = dir.path().join("app.pem");
    std::fs::write(&key, "not read: the owner is checked first\n").unwrap();
    chmod(&key, 0o600);
    std::os::unix::fs::chown(&key, Some(user.uid), None).unwrap();
    std::fs::write(
        &config,
        format!(
            "[[app]]\nname = \"a\"\nhost = \"127.0.0.1:9\"\napp_id = 1\nprivate_key_file = {:?}\n",
            key.display().to_string()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&config, Some(0), None).unwrap();
    let (refused, stderr) = daemon_refuses(&config);
    assert!(
        refused,
        "the daemon started with a key {} owns:\n{stderr}",
        user.name
    );
    assert!(
        stderr.contains(&format!(
            "key file {} is owned by uid {}, neither this process's uid nor root",
            key.display(),
            user.uid
        )),
        "{stderr}"
    );
}
