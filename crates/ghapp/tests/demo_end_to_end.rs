//! `ghapp demo` end to end, as the README's first command runs it (minus the build): the
//! `github-emulator` child, the daemon child, real git through `credential.helper ghapp`; and
//! the `ghapp` binary itself, which holds App keys, carrying no emulator code.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: a debug build on a loaded 2-core machine; the demo itself takes a few seconds.
const DEMO_TIMEOUT: Duration = Duration::from_secs(240);

struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ghapp demo ARGS` with TMPDIR pointed at `tmp`, killing it if it outlives the timeout.
fn run_demo(args: &[&str], tmp: &std::path::Path) -> Finished {
    // The helper and the emulator must be next to ghapp, as install.sh and cargo both put them.
    let _helper = ghapp_testkit::binary("git-credential-ghapp");
    let _emulator = ghapp_testkit::binary("github-emulator");
    let mut child = Command::new(ghapp_testkit::binary("ghapp"))
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("GHAPP_SOCKET")
        .env_remove("GHAPP_CONFIG")
        // A proxy nobody answers on: the demo must keep its loopback traffic away from it.
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ghapp demo starts");
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEMO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(
        status.is_some(),
        "ghapp demo ran over {DEMO_TIMEOUT:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Finished {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

/// Every installation token format starts `ghs_`; a private key has a PEM header.
fn assert_no_secret(text: &str) {
    assert!(
        !text.contains("ghs_"),
        "a token appeared in the demo's output:\n{text}"
    );
    assert!(
        !text.contains("PRIVATE KEY"),
        "key material appeared in the demo's output:\n{text}"
    );
}

#[test]
fn demo_clones_commits_and_pushes_through_the_helper_and_cleans_up() {
    let tmp = tempfile::Builder::new()
        .prefix("ghapp-demo-test-")
        .tempdir()
        .unwrap();
    let run = run_demo(&[], tmp.path());
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.code,
        Some(0),
        "ghapp demo failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    for needle in [
        "[1/9] Start the GitHub emulator",
        "[3/9] Start the daemon",
        "ready on ",
        "[5/9] Clone acme/widgets through credential.helper ghapp",
        "git push origin ",
        "[7/9] Verify the push landed",
        "HELLO-FROM-GHAPP.md present",
        "token sha256:",
        " left (the daemon refreshes it",
        "token(s) minted",
        "daemon exited 0 and removed its socket",
        "ok: cloned, committed and pushed through credential.helper ghapp",
    ] {
        assert!(
            run.stdout.contains(needle),
            "missing {needle:?} in:\n{}",
            run.stdout
        );
    }
    assert_no_secret(&all);
    // Cleaned up: its temp directory (under our TMPDIR) is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}

#[test]
fn demo_keep_leaves_its_directory_for_inspection() {
    let tmp = tempfile::Builder::new()
        .prefix("ghapp-demo-test-")
        .tempdir()
        .unwrap();
    let run = run_demo(&["--keep"], tmp.path());
    assert_eq!(
        run.code,
        Some(0),
        "ghapp demo --keep failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let kept: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "exactly one kept directory: {kept:?}");
    let dir = &kept[0];
    assert!(
        run.stdout.contains(&format!("kept {}", dir.display())),
        "{}",
        run.stdout
    );
    for file in [
        "config.toml",
        "daemon.log",
        "work/HELLO-FROM-GHAPP.md",
        "verify/HELLO-FROM-GHAPP.md",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in the kept directory"
        );
    }
    // The daemon's own log holds no token either.
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert_no_secret(&log);
}

#[test]
fn demo_names_the_failing_step_exits_1_and_still_cleans_up() {
    let tmp = tempfile::Builder::new()
        .prefix("ghapp-demo-test-")
        .tempdir()
        .unwrap();
    // No git anywhere on PATH: some step (the emulator's repository or git's own) must fail.
    let mut command = Command::new(ghapp_testkit::binary("ghapp"));
    let out = command
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("ghapp demo: FAILED at step \""), "{stderr}");
    assert!(!stdout.contains("ok: cloned"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the failed demo left {left:?} behind");
}

/// Counts the (possibly overlapping) occurrences of `needle` in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[test]
fn the_ghapp_binary_links_no_emulator_code() {
    let ghapp = ghapp_testkit::binary("ghapp");
    let bytes = std::fs::read(&ghapp).unwrap();
    // Any linked emulator function carries its source path (panic locations, debug info) and
    // its module path; the emulator's server routes are string literals of its router.
    for marker in [
        "github-emulator/src/",
        "github_emulator",
        "/_emulator/faults",
        "/_emulator/health",
        "/_emulator/tokens",
    ] {
        assert_eq!(
            occurrences(&bytes, marker.as_bytes()),
            0,
            "{} contains {marker:?}: emulator code is linked into the key-holding binary",
            ghapp.display()
        );
    }
    // The one admin path ghapp knows is the URL the demo asks the emulator child for its stats.
    assert_eq!(
        occurrences(&bytes, b"/_emulator/"),
        occurrences(&bytes, b"/_emulator/stats"),
        "{} holds an emulator route other than the demo's stats request",
        ghapp.display()
    );
    // The emulator is still built, as its own program.
    let emulator = std::fs::read(ghapp_testkit::binary("github-emulator")).unwrap();
    assert!(occurrences(&emulator, b"/_emulator/faults") > 0);
}

#[test]
fn demo_without_the_emulator_says_how_to_get_it() {
    let tmp = tempfile::Builder::new()
        .prefix("ghapp-demo-test-")
        .tempdir()
        .unwrap();
    // A copy of ghapp alone in a directory, and a PATH without github-emulator.
    let lonely = tmp.path().join("bin");
    std::fs::create_dir(&lonely).unwrap();
    std::fs::copy(ghapp_testkit::binary("ghapp"), lonely.join("ghapp")).unwrap();
    let work = tmp.path().join("tmp");
    std::fs::create_dir(&work).unwrap();
    let out = Command::new(lonely.join("ghapp"))
        .arg("demo")
        .env("TMPDIR", &work)
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FAILED at step \"emulator\"")
            && stderr.contains("github-emulator is neither next to ghapp")
            && stderr.contains("scripts/demo.sh")
            && stderr.contains("cargo build -p github-emulator"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "left files behind"
    );
}
