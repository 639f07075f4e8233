//! install.sh into a temp prefix, from the binaries this test run already built (`--from`), with
//! a throwaway HOME and a fake `systemctl`: what it installs, that a second run changes nothing,
//! `--systemd`, `--configure-git`, and that `--uninstall` leaves nothing but the user's config.
//!
//! The real release build (`./install.sh` without `--from`) takes minutes on 2 cores, so it is
//! `#[ignore]`d: run it with `cargo test -p ghapp --test install_sh -- --ignored`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A throwaway HOME and prefix, and a bin dir for fake tools.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ghapp-install-test-")
            .tempdir()
            .unwrap();
        for sub in ["home", "fakebin"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn prefix(&self) -> PathBuf {
        self.path("prefix")
    }

    fn config(&self) -> PathBuf {
        self.path("home/.config/ghapp/config.toml")
    }

    /// A fake `systemctl` recording its calls; `show-environment` answers as `user_bus` says.
    fn fake_systemctl(&self, user_bus: bool) -> PathBuf {
        let path = self.path("fakebin/systemctl");
        let record = self.path("systemctl.calls");
        let show = if user_bus {
            "exit 0"
        } else {
            "echo 'Failed to connect to bus' >&2; exit 1"
        };
        ghapp_testkit::system::write_executable(
            &path,
            &format!(
                "#!/bin/sh\necho \"$*\" >> {record}\nif [ \"$2\" = show-environment ]; then {show}; fi\nexit 0\n",
                record = record.display()
            ),
        );
        path
    }

    fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("systemctl.calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn install(&self, args: &[&str]) -> Output {
        self.install_with(args, &[])
    }

    fn install_with(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut command = Command::new("bash");
        command
            .arg(repo_dir().join("install.sh"))
            .args(args)
            .env("HOME", self.path("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GHAPP_CONFIG")
            .env_remove("GHAPP_SOCKET")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("SYSTEMCTL", self.path("fakebin/systemctl-missing"));
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Every file under a directory, with its content, for before/after comparisons.
    fn snapshot(&self, root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(root, &mut out);
        out
    }
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "install.sh failed:\n{text}");
    text
}

fn from_args(sandbox: &Sandbox) -> Vec<String> {
    // The helper and the emulator must have been built too: binary() says how if not.
    let _ = ghapp_testkit::binary("git-credential-ghapp");
    let _ = ghapp_testkit::binary("github-emulator");
    vec![
        "--prefix".into(),
        sandbox.prefix().display().to_string(),
        "--from".into(),
        ghapp_testkit::bin_dir().display().to_string(),
    ]
}

const INSTALLED: &[&str] = &[
    "bin/ghapp",
    "bin/git-credential-ghapp",
    "bin/github-emulator",
    "bin/ghapp-gh-refresh.sh",
    "share/ghapp/container-entrypoint.sh",
    "share/bash-completion/completions/ghapp",
    "share/zsh/site-functions/_ghapp",
    "share/fish/vendor_completions.d/ghapp.fish",
    "share/man/man1/ghapp.1",
    "share/ghapp/install-manifest",
];

#[test]
fn help_lists_the_options() {
    let sandbox = Sandbox::new();
    let text = ok(&sandbox.install(&["--help"]));
    for option in [
        "--prefix",
        "--config",
        "--from",
        "--systemd",
        "--configure-git",
        "--no-demo",
        "--uninstall",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    assert_eq!(sandbox.install(&["--bogus"]).status.code(), Some(1));
}

#[test]
fn installs_runs_is_idempotent_and_uninstalls_cleanly() {
    let sandbox = Sandbox::new();
    let args = from_args(&sandbox);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&sandbox.install(&args));

    let prefix = sandbox.prefix();
    for rel in INSTALLED {
        let path = prefix.join(rel);
        assert!(path.is_file(), "{rel} not installed");
        assert!(fs::metadata(&path).unwrap().len() > 0, "{rel} is empty");
    }
    for bin in [
        "bin/ghapp",
        "bin/git-credential-ghapp",
        "bin/github-emulator",
        "bin/ghapp-gh-refresh.sh",
    ] {
        assert_eq!(
            fs::metadata(prefix.join(bin)).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let version = Command::new(prefix.join("bin/ghapp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ghapp {}", env!("CARGO_PKG_VERSION"))
    );
    let bash = fs::read_to_string(prefix.join("share/bash-completion/completions/ghapp")).unwrap();
    assert!(
        bash.contains("_ghapp") && bash.contains("runner-token"),
        "bash completion looks wrong"
    );
    let zsh = fs::read_to_string(prefix.join("share/zsh/site-functions/_ghapp")).unwrap();
    assert!(
        zsh.starts_with("#compdef ghapp"),
        "zsh completion looks wrong"
    );
    let fish =
        fs::read_to_string(prefix.join("share/fish/vendor_completions.d/ghapp.fish")).unwrap();
    assert!(
        fish.contains("complete -c ghapp"),
        "fish completion looks wrong"
    );
    let man = fs::read_to_string(prefix.join("share/man/man1/ghapp.1")).unwrap();
    assert!(man.contains(".TH ghapp"), "man page looks wrong");

    // The config template: 0600, valid for the daemon's parser, in a 0700 directory.
    let config = sandbox.config();
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(config.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let text = fs::read_to_string(&config).unwrap();
    ghapp_broker::config::Config::parse(&text, &config).expect("the template parses");
    assert!(text.contains("# [[app]]") && text.contains("private_key_file"));

    // Second run: the user's edit survives, nothing else changes.
    fs::write(&config, format!("{text}# my edit\n")).unwrap();
    let before = sandbox.snapshot(&prefix);
    let second = ok(&sandbox.install(&args));
    assert!(second.contains("kept the existing config"), "{second}");
    assert_eq!(
        sandbox.snapshot(&prefix),
        before,
        "a second run changed the installed files"
    );
    assert!(
        fs::read_to_string(&config)
            .unwrap()
            .ends_with("# my edit\n")
    );

    // Uninstall: nothing under the prefix, the config kept (and said so).
    let removed = ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap(), "--uninstall"]));
    assert!(removed.contains("kept your config"), "{removed}");
    let left = sandbox.snapshot(&prefix);
    assert!(
        left.is_empty(),
        "uninstall left {:?}",
        left.keys().collect::<Vec<_>>()
    );
    assert!(config.is_file(), "the user's config must be kept");
    // Uninstalling twice is harmless.
    ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap(), "--uninstall"]));
}

#[test]
fn config_option_and_existing_files_are_respected() {
    let sandbox = Sandbox::new();
    let custom = sandbox.path("elsewhere/ghapp.toml");
    let mut args = from_args(&sandbox);
    args.extend(["--config".to_string(), custom.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&sandbox.install(&args));
    assert!(custom.is_file());
    assert!(
        !sandbox.config().exists(),
        "only --config's path is written"
    );
}

#[test]
fn systemd_units_are_installed_enabled_and_removed() {
    let units_dir = repo_dir().join("scripts/systemd");
    let has_units = [
        "user/ghapp.service",
        "user/ghapp.socket",
        "ghapp.service",
        "ghapp.socket",
    ]
    .iter()
    .any(|u| units_dir.join(u).is_file());
    if !has_units {
        eprintln!(
            "SKIPPED systemd_units_are_installed_enabled_and_removed: no units in scripts/systemd yet"
        );
        return;
    }
    let sandbox = Sandbox::new();
    let systemctl = sandbox.fake_systemctl(true);
    let mut args = from_args(&sandbox);
    args.push("--systemd".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(&sandbox.install_with(&args, &[("SYSTEMCTL", &systemctl)]));
    let user_units = sandbox.path("home/.config/systemd/user");
    let service =
        fs::read_to_string(user_units.join("ghapp.service")).expect("ghapp.service installed");
    let exec_start = service
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart line");
    let ghapp = sandbox.prefix().join("bin/ghapp");
    assert!(
        exec_start.starts_with(&format!("ExecStart={} ", ghapp.display())),
        "ExecStart not pointed at the install: {exec_start}"
    );
    let calls = sandbox.systemctl_calls();
    assert!(
        calls.iter().any(|c| c == "--user daemon-reload"),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("--user enable --now ghapp.")),
        "{calls:?}\n{text}"
    );

    let prefix = sandbox.prefix();
    ok(&sandbox.install_with(
        &["--prefix", prefix.to_str().unwrap(), "--uninstall"],
        &[("SYSTEMCTL", &systemctl)],
    ));
    assert!(
        !user_units.join("ghapp.service").exists(),
        "unit files removed"
    );
    let calls = sandbox.systemctl_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("--user disable --now ghapp.")),
        "{calls:?}"
    );
}

#[test]
fn systemd_without_a_user_manager_is_skipped_with_a_message() {
    let sandbox = Sandbox::new();
    let systemctl = sandbox.fake_systemctl(false);
    let mut args = from_args(&sandbox);
    args.push("--systemd".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(&sandbox.install_with(&args, &[("SYSTEMCTL", &systemctl)]));
    assert!(
        text.contains("systemctl --user is not available")
            || text.contains("no systemd user units found"),
        "{text}"
    );
    assert!(
        !sandbox
            .systemctl_calls()
            .iter()
            .any(|c| c.contains("enable")),
        "nothing enabled"
    );
    assert!(
        sandbox.prefix().join("bin/ghapp").is_file(),
        "the rest is installed"
    );
}

#[test]
fn configure_git_is_done_and_undone() {
    let sandbox = Sandbox::new();
    let mut args = from_args(&sandbox);
    args.push("--configure-git".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&sandbox.install(&args));
    let gitconfig = sandbox.path("home/.gitconfig");
    let written = fs::read_to_string(&gitconfig).expect("~/.gitconfig written");
    assert!(written.contains("ghapp"), "{written}");
    assert!(
        written.to_ascii_lowercase().contains("usehttppath = true"),
        "{written}"
    );

    let manifest =
        fs::read_to_string(sandbox.prefix().join("share/ghapp/install-manifest")).unwrap();
    assert!(
        manifest.contains("git-configured --global --host https://github.com"),
        "{manifest}"
    );

    // A host the user then configures by hand is theirs: uninstall keeps it.
    let ghapp = sandbox.prefix().join("bin/ghapp");
    let by_hand = Command::new(&ghapp)
        .args(["configure", "--global", "--host", "ghe.example.com"])
        .env("HOME", sandbox.path("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        by_hand.status.success(),
        "{}",
        String::from_utf8_lossy(&by_hand.stderr)
    );

    let prefix = sandbox.prefix();
    ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap(), "--uninstall"]));
    let after = fs::read_to_string(&gitconfig).unwrap_or_default();
    assert!(
        !after.contains("credential \"https://github.com\""),
        "uninstall left its github.com setup in git's config:\n{after}"
    );
    assert!(
        after.contains("credential \"https://ghe.example.com\"")
            && after.contains("helper = ghapp"),
        "uninstall removed the user's own setup:\n{after}"
    );
}

#[test]
fn configure_git_leaves_an_existing_setup_to_the_user() {
    let sandbox = Sandbox::new();
    // The user set github.com up before installing (e.g. an earlier ghapp): not ours to undo.
    let mut args = from_args(&sandbox);
    let first: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&sandbox.install(&first));
    let configured = Command::new(sandbox.prefix().join("bin/ghapp"))
        .args(["configure", "--global"])
        .env("HOME", sandbox.path("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(configured.status.success());
    args.push("--configure-git".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = ok(&sandbox.install(&args));
    assert!(text.contains("already uses ghapp"), "{text}");
    let prefix = sandbox.prefix();
    ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap(), "--uninstall"]));
    let after = fs::read_to_string(sandbox.path("home/.gitconfig")).unwrap_or_default();
    assert!(
        after.contains("helper = ghapp"),
        "uninstall undid the user's own setup:\n{after}"
    );
}

/// A build whose static helper cannot be made (here a cargo that refuses `--target`, as a
/// system without static libc would fail at link): install.sh says so, installs the dynamically
/// linked helper it built, and succeeds. The fake cargo "builds" by copying this test run's
/// binaries, so no release build runs.
#[test]
fn a_failed_static_helper_build_keeps_the_dynamic_helper() {
    let sandbox = Sandbox::new();
    let bin = ghapp_testkit::bin_dir();
    let _ = ghapp_testkit::binary("git-credential-ghapp");
    let target = sandbox.path("target");
    let cargo = sandbox.path("fakebin/cargo");
    ghapp_testkit::system::write_executable(
        &cargo,
        &format!(
            "#!/bin/sh
case \"$*\" in
  *--target*) echo 'fake cargo: cannot link statically' >&2; exit 101 ;;
esac
mkdir -p \"$CARGO_TARGET_DIR/release\"
for b in ghapp git-credential-ghapp github-emulator; do cp {bin}/$b \"$CARGO_TARGET_DIR/release/\"; done
",
            bin = bin.display()
        ),
    );
    let out = sandbox.install_with(
        &["--prefix", sandbox.prefix().to_str().unwrap()],
        &[("CARGO", &cargo), ("CARGO_TARGET_DIR", &target)],
    );
    let text = ok(&out);
    assert!(
        text.contains("keeping the dynamically linked build"),
        "install.sh did not say it kept the dynamic helper:\n{text}"
    );
    let installed = fs::read(sandbox.prefix().join("bin/git-credential-ghapp")).unwrap();
    assert_eq!(
        installed,
        fs::read(bin.join("git-credential-ghapp")).unwrap(),
        "the installed helper is not the build's own"
    );
}

/// The real thing: `./install.sh` builds in release mode. Minutes on 2 cores, so not in the
/// default run: `cargo test -p ghapp --test install_sh -- --ignored`.
#[test]
#[ignore = "runs a full release build (minutes); run with --ignored"]
fn release_build_install() {
    let sandbox = Sandbox::new();
    let prefix = sandbox.prefix();
    ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap()]));
    let version = Command::new(prefix.join("bin/ghapp"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    // git starts the helper for every fetch: on glibc Linux install.sh installs it static.
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert_eq!(
            ghapp_testkit::elf::linkage(&prefix.join("bin/git-credential-ghapp")).unwrap(),
            ghapp_testkit::elf::Linkage::Static
        );
    }
    ok(&sandbox.install(&["--prefix", prefix.to_str().unwrap(), "--uninstall"]));
    assert!(sandbox.snapshot(&prefix).is_empty());
}

/// The "done when" path as an ordinary user: install into the user's own prefix, then run the
/// installed `ghapp demo` (which finds the helper installed next to it). Tests run as root in
/// CI, so this drops to `nobody`; run as a user already, the tests above cover it.
#[test]
fn non_root_user_installs_then_runs_the_installed_demo() {
    if !rustix::process::geteuid().is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED non_root_user_installs_then_runs_the_installed_demo: not root (the other install tests already run as this user) ***\n"
        );
        return;
    }
    let sandbox = Sandbox::new();
    fs::set_permissions(sandbox.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = sandbox.path("home");
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let as_nobody = |program: &Path, args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .output()
            .expect("setpriv runs")
    };
    // The checkout and the built binaries must be readable by nobody; a private checkout
    // (umask 077) cannot be tested this way.
    let probe = as_nobody(
        Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "test -r {} && test -x {}",
                repo_dir().join("install.sh").display(),
                ghapp_testkit::binary("ghapp").display()
            ),
        ],
    );
    if !probe.status.success() {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED non_root_user_installs_then_runs_the_installed_demo: the checkout is not readable by nobody ***\n"
        );
        return;
    }
    let prefix = home.join(".local");
    let install = repo_dir().join("install.sh");
    let bin_dir = ghapp_testkit::bin_dir();
    let out = as_nobody(
        Path::new("/bin/bash"),
        &[
            install.to_str().unwrap(),
            "--prefix",
            prefix.to_str().unwrap(),
            "--from",
            bin_dir.to_str().unwrap(),
        ],
    );
    ok(&out);
    let out = as_nobody(&prefix.join("bin/ghapp"), &["demo"]);
    let text = ok(&out);
    assert!(
        text.contains("ok: cloned, committed and pushed through credential.helper ghapp"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "git-credential-ghapp: {}",
            prefix.join("bin/git-credential-ghapp").display()
        )),
        "the installed helper was used:\n{text}"
    );
    assert!(
        text.contains(&prefix.join("bin/github-emulator").display().to_string()),
        "the installed emulator was used:\n{text}"
    );
    assert!(!text.contains("ghs_"), "a token was printed:\n{text}");
}

/// `--no-demo` (for hosts that only serve tokens): no github-emulator installed, and a `--from`
/// directory without one installs the rest and says what `ghapp demo` then lacks.
#[test]
fn no_demo_leaves_the_emulator_out() {
    let sandbox = Sandbox::new();
    let mut args = from_args(&sandbox);
    args.push("--no-demo".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&sandbox.install(&args));
    let prefix = sandbox.prefix();
    assert!(prefix.join("bin/ghapp").is_file());
    assert!(
        !prefix.join("bin/github-emulator").exists(),
        "--no-demo installed the emulator"
    );

    // Prebuilt binaries without the emulator: installed, with a note.
    let sandbox = Sandbox::new();
    let only = sandbox.path("only");
    fs::create_dir_all(&only).unwrap();
    for bin in ["ghapp", "git-credential-ghapp"] {
        fs::copy(ghapp_testkit::binary(bin), only.join(bin)).unwrap();
    }
    let prefix = sandbox.prefix();
    let text = ok(&sandbox.install(&[
        "--prefix",
        prefix.to_str().unwrap(),
        "--from",
        only.to_str().unwrap(),
    ]));
    assert!(
        text.contains("'ghapp demo' will not run") && text.contains("-p github-emulator"),
        "{text}"
    );
    assert!(prefix.join("bin/git-credential-ghapp").is_file());
    assert!(!prefix.join("bin/github-emulator").exists());
}
