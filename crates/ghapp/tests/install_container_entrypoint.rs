//! scripts/container-entrypoint.sh in a throwaway HOME: git configured only when the socket is
//! mounted and the helper is in the "image", idempotently; left untouched otherwise; the
//! container's command always runs with its exit status.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/container-entrypoint.sh")
}

fn which(tool: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not found in /usr/local/bin, /usr/bin or /bin"))
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
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
