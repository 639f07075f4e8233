//! The helper install.sh installs: `scripts/build-static-helper.sh` builds it statically linked
//! (musl when Rust's musl target is installed, else glibc's static-pie), and that build clones
//! and pushes through git against the emulator and a real daemon, configured as `ghapp
//! configure` writes it (`!exec` and its absolute path), and falls through silently without a
//! daemon — the same contract as the dynamic build. The glibc build is tested on its own too:
//! it is the fallback, and the one with NSS to get wrong.
//!
//! Each runs a release build of the helper (about a minute on 2 cores the first time; cargo
//! reuses it after), into this test run's own target directory. .ci/run installs the musl
//! target and sets GHAPP_TEST_REQUIRE_MUSL=1, so there the default build must be musl.

use anyhow::{Context, Result, ensure};
use ghapp_testkit::daemon::{DaemonProcess, config_for_emulator};
use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use ghapp_testkit::git::{GitBinary, GitHome};
use ghapp_testkit::system::run_with_input;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The workspace target directory this test was built into (`<target>/debug/deps/<test>`).
fn target_dir() -> PathBuf {
    ghapp_testkit::bin_dir()
        .parent()
        .expect("the profile directory has a parent")
        .to_path_buf()
}

/// Runs the script, with `GHAPP_STATIC_LIBC=libc` when given; `None` (with a loud SKIPPED) on
/// systems it does not cover.
fn build_static_helper(libc: Option<&str>) -> Result<Option<PathBuf>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED static_build: the static helper is built on glibc Linux only ***\n"
        );
        return Ok(None);
    }
    let mut script = Command::new(repo_dir().join("scripts/build-static-helper.sh"));
    script
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO", env!("CARGO"))
        .env_remove("GHAPP_STATIC_LIBC");
    if let Some(libc) = libc {
        script.env("GHAPP_STATIC_LIBC", libc);
    }
    let out = script
        .output()
        .context("running scripts/build-static-helper.sh")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("no static libc") {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED static_build: no static libc here (Debian: apt-get install libc6-dev) ***\n"
        );
        return Ok(None);
    }
    ensure!(
        out.status.success(),
        "build-static-helper.sh failed ({}):\n{stderr}",
        out.status
    );
    let printed = String::from_utf8(out.stdout).context("the printed path")?;
    let helper = PathBuf::from(printed.trim_end_matches('\n'));
    ensure!(
        printed.lines().count() == 1 && helper.is_absolute() && helper.is_file(),
        "build-static-helper.sh printed {printed:?}, not the helper's path alone"
    );
    Ok(Some(helper))
}

/// `HOME` unset and a uid the passwd file does not know: a home-directory look-up would go to
/// the passwd database, and a static glibc dlopens the NSS modules other than `files` (of the
/// system's glibc, not its own) — which crashed the helper with SIGSEGV. It must fall through.
fn falls_through_without_home_as_an_unknown_user(dir: &Path, helper: &Path) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED static helper as an unknown uid: not root (setpriv needs it) ***\n"
        );
        return Ok(());
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let out = run_with_input(
        Command::new("setpriv")
            .args([
                "--reuid",
                "54321",
                "--regid",
                "54321",
                "--clear-groups",
                "--",
            ])
            .arg(helper)
            .arg("get")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("GHAPP_SOCKET", dir.join("absent.sock")),
        b"protocol=https\nhost=github.com\npath=acme/widgets.git\n\n",
    );
    ensure!(
        out.status.code() == Some(0) && out.stdout.is_empty(),
        "the static helper without HOME as uid 54321 did not fall through: {out:?}"
    );
    Ok(())
}

#[test]
fn the_static_helper_serves_git_and_falls_through_without_a_daemon() -> Result<()> {
    let Some(built) = build_static_helper(None)? else {
        return Ok(());
    };
    let musl = built.to_string_lossy().contains("-musl/");
    if std::env::var_os("GHAPP_TEST_REQUIRE_MUSL").is_some() {
        ensure!(
            musl,
            "GHAPP_TEST_REQUIRE_MUSL is set, but the default build is {}",
            built.display()
        );
    } else if !musl {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** static_build: Rust's musl target is not installed; the default build is glibc's (rustup target add x86_64-unknown-linux-musl) ***\n"
        );
    }
    assert_eq!(
        ghapp_testkit::elf::linkage(&built)?,
        ghapp_testkit::elf::Linkage::Static,
        "{} names a dynamic loader",
        built.display()
    );

    // Installed outside the build directory, as install.sh leaves it.
    let install = tempfile::tempdir()?;
    let helper = install.path().join("git-credential-ghapp");
    std::fs::copy(&built, &helper)?;

    // No daemon: exit 0, nothing on stdout, so git asks its next helper.
    let absent = run_with_input(
        Command::new(&helper)
            .arg("get")
            .env("GHAPP_SOCKET", install.path().join("absent.sock")),
        b"protocol=https\nhost=github.com\npath=acme/widgets.git\n\n",
    );
    assert_eq!(absent.status.code(), Some(0), "{absent:?}");
    assert!(absent.stdout.is_empty(), "{absent:?}");
    falls_through_without_home_as_an_unknown_user(install.path(), &helper)?;

    let emulator = EmulatorProcess::start(&basic_fixture(3600))?;
    let daemon = DaemonProcess::start(&config_for_emulator(
        &emulator.urls.api_url,
        &emulator.urls.git_url,
        &emulator.key_path("app1.pem"),
        "",
    ))?;
    let git = GitBinary::newest().context("no git installed")?;
    let home = GitHome::new(&git)?.with_env("GHAPP_SOCKET", daemon.socket());
    // What `ghapp configure` writes for a helper installed outside a build directory.
    home.add_config("credential.helper", &format!("!exec {}", helper.display()))?;
    home.set_config("credential.useHttpPath", "true")?;
    let url = format!(
        "{}/acme/widgets.git",
        emulator.urls.git_url.trim_end_matches('/')
    );
    let clone = home
        .clone_repo(&url, "widgets")
        .with_context(|| daemon.log())?;
    home.commit_file(
        &clone,
        "static.txt",
        "pushed through the static helper\n",
        "static",
    )?;
    home.push(&clone).with_context(|| daemon.log())?;
    let minted = emulator.stats()?["mints_total"].as_u64().unwrap_or(0);
    ensure!(minted >= 1, "the daemon minted nothing ({minted})");
    Ok(())
}

/// The glibc static build (the fallback without the musl target): static, and falls through as
/// a user the passwd file does not know with HOME unset (it crashed there once).
#[test]
fn the_glibc_static_helper_falls_through_as_an_unknown_user() -> Result<()> {
    let Some(built) = build_static_helper(Some("glibc"))? else {
        return Ok(());
    };
    assert!(
        !built.to_string_lossy().contains("-musl/"),
        "GHAPP_STATIC_LIBC=glibc built {}",
        built.display()
    );
    assert_eq!(
        ghapp_testkit::elf::linkage(&built)?,
        ghapp_testkit::elf::Linkage::Static
    );
    let install = tempfile::tempdir()?;
    let helper = install.path().join("git-credential-ghapp");
    std::fs::copy(&built, &helper)?;
    falls_through_without_home_as_an_unknown_user(install.path(), &helper)
}
