//! scripts/container-entrypoint.sh in a throwaway HOME: git configured only when the socket is
//! mounted and the helper is in the "image", idempotently; left untouched otherwise; the
//! container's command always runs with its exit status.

mod common;

use common::{which, write_executable};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output};

fn script() -> PathBuf {
    common::script("container-entrypoint.sh")
}

/// A fake container: its own HOME, a PATH holding only git, grep and sh (plus whatever a test
/// adds: the helper, a fake ghapp), and a socket directory like the host's mount.
struct Container {
    dir: tempfile::TempDir,
    _listener: Option<UnixListener>,
}

impl Container {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ghapp-entrypoint-test-")
            .tempdir()
            .unwrap();
        for sub in ["bin", "home", "run"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for tool in ["git", "grep", "sh", "cat", "true"] {
            std::os::unix::fs::symlink(which(tool), dir.path().join("bin").join(tool)).unwrap();
        }
        Container {
            dir,
            _listener: None,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Binds a socket at run/ghapp.sock, as the daemon's mounted socket.
    fn with_socket(mut self) -> Self {
        self._listener = Some(UnixListener::bind(self.path("run/ghapp.sock")).unwrap());
        self
    }

    /// Puts a stand-in `git-credential-ghapp` in the image.
    fn with_helper(self) -> Self {
        write_executable(
            &self.path("bin/git-credential-ghapp"),
            "#!/bin/sh\nexit 0\n",
        );
        self
    }

    /// Puts a fake `ghapp` CLI in the image that records its arguments.
    fn with_ghapp_cli(self) -> Self {
        let record = self.path("ghapp.args");
        write_executable(
            &self.path("bin/ghapp"),
            &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n", record.display()),
        );
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(which("sh"));
        command
            .arg(script())
            .args(args)
            .env_clear()
            .env("PATH", self.path("bin"))
            .env("HOME", self.path("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1");
        command
    }

    fn run_with_socket_env(&self, args: &[&str]) -> Output {
        self.command(args)
            .env("GHAPP_SOCKET", self.path("run/ghapp.sock"))
            .output()
            .unwrap()
    }

    /// All values of a key in the fake HOME's ~/.gitconfig.
    fn git_config(&self, key: &str) -> Vec<String> {
        let out = Command::new(which("git"))
            .args(["config", "--global", "--get-all", key])
            .env_clear()
            .env("HOME", self.path("home"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn gitconfig_exists(&self) -> bool {
        self.path("home/.gitconfig").exists()
    }
}

#[test]
fn configures_git_when_the_socket_is_mounted_and_is_idempotent() {
    let container = Container::new().with_socket().with_helper();
    for _ in 0..2 {
        let out = container.run_with_socket_env(&["sh", "-c", "echo command ran; exit 7"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(7),
            "exit status passes through; stderr: {stderr}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "command ran\n");
        assert!(stderr.contains("git uses ghapp"), "{stderr}");
    }
    assert_eq!(
        container.git_config("credential.https://github.com.helper"),
        ["", "ghapp"],
        "a reset, then ghapp, written once"
    );
    assert_eq!(
        container.git_config("credential.https://github.com.usehttppath"),
        ["true"]
    );
}

#[test]
fn configures_every_host_in_ghapp_hosts() {
    let container = Container::new().with_socket().with_helper();
    let out = container
        .command(&["true"])
        .env("GHAPP_SOCKET", container.path("run/ghapp.sock"))
        .env("GHAPP_HOSTS", "github.com ghe.example.com")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        container.git_config("credential.https://github.com.helper"),
        ["", "ghapp"]
    );
    assert_eq!(
        container.git_config("credential.https://ghe.example.com.helper"),
        ["", "ghapp"]
    );
    assert_eq!(
        container.git_config("credential.https://ghe.example.com.usehttppath"),
        ["true"]
    );
}

#[test]
fn uses_ghapp_configure_when_the_cli_is_in_the_image() {
    let container = Container::new()
        .with_socket()
        .with_helper()
        .with_ghapp_cli();
    let out = container.run_with_socket_env(&["true"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recorded = fs::read_to_string(container.path("ghapp.args")).unwrap();
    assert_eq!(recorded, "configure --global --host https://github.com\n");
    assert!(
        !container.gitconfig_exists(),
        "git config is left to `ghapp configure`"
    );
}

#[test]
fn leaves_git_untouched_without_a_socket() {
    let container = Container::new().with_helper();
    // GHAPP_SOCKET unset: silent, untouched.
    let out = container.command(&["sh", "-c", "exit 3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!container.gitconfig_exists());
    // GHAPP_SOCKET names nothing (directory not mounted): a note, untouched.
    let out = container.run_with_socket_env(&["true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert!(!container.gitconfig_exists());
    // A regular file is not a socket either.
    fs::write(container.path("run/ghapp.sock"), "").unwrap();
    let out = container.run_with_socket_env(&["true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!container.gitconfig_exists());
}

#[test]
fn leaves_git_untouched_without_the_helper_in_the_image() {
    let container = Container::new().with_socket();
    let out = container.run_with_socket_env(&["true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("git-credential-ghapp is not on PATH"));
    assert!(!container.gitconfig_exists());
}

#[test]
fn an_unwritable_home_never_stops_the_command() {
    let container = Container::new().with_socket().with_helper();
    let out = container
        .command(&["sh", "-c", "echo still ran"])
        .env("GHAPP_SOCKET", container.path("run/ghapp.sock"))
        .env("HOME", "/nonexistent/home")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still ran\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write git's global config"));
}

#[test]
fn quiet_mode_and_default_command() {
    let container = Container::new().with_socket();
    let out = container
        .command(&[])
        .env("GHAPP_SOCKET", container.path("run/ghapp.sock"))
        .env("GHAPP_ENTRYPOINT_QUIET", "1")
        .env("SHELL", container.path("bin/cat"))
        .output()
        .unwrap();
    // No command: runs $SHELL (here `cat`, which reads the empty stdin and exits 0).
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The container recipe for real, minus docker: the daemon's socket as the only thing shared, the
/// real helper in the "image", git configured by the entrypoint, a clone through the emulator;
/// then the daemon goes away and git falls through to no credential (and fails without prompting).
#[test]
fn real_git_clone_through_the_mounted_socket_then_fall_through() {
    use ghapp_testkit::daemon::{DaemonProcess, config_for_emulator};
    use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};

    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator starts");
    let config = config_for_emulator(
        &emulator.urls.api_url,
        &emulator.urls.git_url,
        &emulator.key_path("app1.pem"),
        "",
    );
    let mut daemon = DaemonProcess::start(&config).expect("daemon starts");
    let container = Container::new();
    std::os::unix::fs::symlink(
        ghapp_testkit::binary("git-credential-ghapp"),
        container.path("bin/git-credential-ghapp"),
    )
    .unwrap();
    let git_url = format!("http://{}", emulator.git_host());
    let clone = |dest: &str| {
        let target = container.path(dest);
        container
            .command(&[
                "git",
                "clone",
                "--quiet",
                &emulator.repo_url("acme", "widgets"),
                target.to_str().unwrap(),
            ])
            .env("GHAPP_SOCKET", daemon.socket())
            .env("GHAPP_HOSTS", &git_url)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    };

    let out = clone("first");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "clone through the mounted socket failed: {stderr}"
    );
    assert!(container.path("first/.git").is_dir());
    assert_eq!(
        container.git_config(&format!("credential.{git_url}.helper")),
        ["", "ghapp"]
    );

    // The daemon goes away, the socket with it: the helper prints nothing, git has no other
    // credential and, with prompts off, fails at once instead of hanging.
    daemon.stop().expect("daemon stops");
    let started = std::time::Instant::now();
    let out = container
        .command(&[
            "git",
            "clone",
            "--quiet",
            &emulator.repo_url("acme", "widgets"),
            container.path("second").to_str().unwrap(),
        ])
        .env("GHAPP_SOCKET", daemon.socket())
        .env("GHAPP_HOSTS", &git_url)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(0),
        "no credential without the daemon: {stderr}"
    );
    assert!(
        stderr.contains("is not a socket"),
        "the entrypoint noticed: {stderr}"
    );
    assert!(
        stderr.contains("terminal prompts disabled") || stderr.contains("Authentication failed"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "fall-through is prompt"
    );
}

/// docs/containers.md's recipe without docker: a private mount namespace where the daemon's
/// socket directory is bind-mounted read-only, processes with container-like uids/gids, and the
/// entrypoint + real helper + real git inside. Checks each claim of the doc:
/// - primary gid = `socket_group` → file access and admission: the clone works;
/// - the read-only mount still lets it connect, but not delete the socket;
/// - `--group-add` only (supplementary group) → file access, but the daemon refuses (403) and the
///   helper falls through;
/// - neither → connect(2) is refused by the file system and the helper falls through.
///
/// Needs root (setpriv to other uids, mount namespaces); says so loudly otherwise.
#[test]
fn container_without_docker_ro_directory_mount_group_and_peer_checks() {
    use ghapp_testkit::daemon::{DaemonProcess, DaemonStart, config_for_emulator};
    use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
    use std::io::Write;

    let skip = |why: &str| {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED container_without_docker_ro_directory_mount_group_and_peer_checks: {why} ***\n"
        );
    };
    if !rustix::process::geteuid().is_root() {
        return skip("needs root");
    }
    let probe = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .output();
    if !matches!(&probe, Ok(out) if out.status.success()) {
        return skip("unshare --mount is not permitted here");
    }

    const GROUP: &str = "users"; // gid 100 on Debian: an existing group to stand for `ghapp`
    const GID: u32 = 100;
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("emulator starts");
    let config = config_for_emulator(
        &emulator.urls.api_url,
        &emulator.urls.git_url,
        &emulator.key_path("app1.pem"),
        &format!("socket_group = \"{GROUP}\""),
    );
    let daemon = DaemonProcess::start_with(
        &config,
        DaemonStart {
            dir_mode: Some(0o711),
            ..Default::default()
        },
    )
    .expect("daemon starts");
    let socket_mode = fs::symlink_metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(socket_mode, 0o660, "socket_group makes the socket 0660");

    // The "image": a world-readable root with the tools, the real helper and a mount point.
    let image = Container::new();
    fs::set_permissions(image.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(
        ghapp_testkit::binary("git-credential-ghapp"),
        image.path("bin/git-credential-ghapp"),
    )
    .unwrap();
    let mount_point = image.path("run");
    let git_url = format!("http://{}", emulator.git_host());
    let repo_url = emulator.repo_url("acme", "widgets");

    // One "container run": its own mount namespace, the socket dir mounted read-only, then the
    // entrypoint as uid:gid (plus supplementary groups) running `git clone`.
    let run = |name: &str, uid: u32, gid: u32, groups: &[u32]| -> Output {
        let home = image.path(&format!("home-{name}"));
        fs::create_dir_all(&home).unwrap();
        rustix::fs::chown(
            &home,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .unwrap();
        let groups_flag = if groups.is_empty() {
            "--clear-groups".to_string()
        } else {
            format!(
                "--groups={}",
                groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let inside = r#"
            set -e
            mount --bind "$1" "$2"
            mount -o remount,bind,ro "$2"
            if rm -f "$2/d.sock" 2>/dev/null; then echo "READ-ONLY MOUNT DID NOT PROTECT THE SOCKET" >&2; exit 99; fi
            exec setpriv --reuid "$3" --regid "$4" "$5" -- env -i PATH="$6" HOME="$7" \
              GHAPP_SOCKET="$2/d.sock" GHAPP_HOSTS="$8" GHAPP_DEBUG=1 GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 \
              /bin/sh "$9" git clone --quiet "${10}" "$7/widgets"
        "#;
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                inside,
                "sh",
            ])
            .arg(daemon.dir())
            .arg(&mount_point)
            .arg(uid.to_string())
            .arg(gid.to_string())
            .arg(groups_flag)
            .arg(image.path("bin"))
            .arg(&home)
            .arg(&git_url)
            .arg(script())
            .arg(&repo_url)
            .output()
            .unwrap()
    };

    // Primary gid = socket_group: admitted, through a read-only mount.
    let out = run("primary", 4242, GID, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "uid 4242 gid {GID}: the clone must work: {stderr}"
    );
    assert!(image.path("home-primary/widgets/.git").is_dir());
    assert!(!stderr.contains("ghs_"), "{stderr}");

    // Supplementary group only (`--group-add`): connect works, the daemon refuses, git gets nothing.
    let out = run("supplementary", 4243, 4243, &[GID]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_ne!(out.status.code(), Some(99), "{stderr}");
    assert!(
        stderr.contains("uid 4243 (gid 4243) may not use this ghapp daemon"),
        "the daemon's refusal: {stderr}"
    );

    // Neither: the socket's mode stops connect(2); the helper falls through.
    let out = run("stranger", 4244, 4244, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("permission denied"),
        "connect refused by the file system: {stderr}"
    );
    assert!(
        daemon.socket().exists(),
        "the socket survived every container"
    );
}
