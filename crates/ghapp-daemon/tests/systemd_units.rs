//! The shipped systemd units (scripts/systemd/) pass `systemd-analyze verify` without a single
//! complaint (it exits 0 even on unknown keys, so its output must be empty), and agree with
//! the daemon's contract (Type=notify, --foreground, the socket paths clients look for).

use std::path::{Path, PathBuf};
use std::process::Command;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/systemd")
}

fn read(kind: &str, name: &str) -> String {
    std::fs::read_to_string(units_dir().join(kind).join(name)).unwrap()
}

#[test]
fn units_state_the_contract() {
    for kind in ["user", "system"] {
        let service = read(kind, "ghapp.service");
        assert!(service.contains("\nType=notify\n"), "{kind}");
        assert!(service.contains("ghapp daemon --foreground"), "{kind}");
        assert!(
            service.contains("ExecReload=/bin/kill -HUP $MAINPID"),
            "{kind}"
        );
        for hardening in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            // Descriptors for max_connections served and waiting (issue 12.4), no core dumps.
            "LimitNOFILE=16384",
            "LimitCORE=0",
        ] {
            assert!(service.contains(hardening), "{kind}: {hardening}");
        }
    }
    assert!(read("user", "ghapp.socket").contains("ListenStream=%t/ghapp/ghapp.sock"));
    let system_socket = read("system", "ghapp.socket");
    assert!(system_socket.contains(&format!(
        "ListenStream={}",
        ghapp_protocol::paths::SYSTEM_SOCKET
    )));
    assert!(system_socket.contains("SocketMode=0660"));
    assert!(read("system", "ghapp.service").contains("RuntimeDirectory=ghapp"));
}

#[test]
fn systemd_analyze_verify_is_silent() {
    let Some(analyze) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("systemd-analyze"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    // ExecStart must name an existing executable: point it at /bin/true, as install.sh points
    // it at the installed ghapp.
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tempfile::tempdir().unwrap();
    for kind in ["user", "system"] {
        let dir = tmp.path().join(kind);
        std::fs::create_dir(&dir).unwrap();
        for name in ["ghapp.socket", "ghapp.service"] {
            let text: String = read(kind, name)
                .lines()
                .map(|line| match line.strip_prefix("ExecStart=") {
                    Some(rest) => {
                        let args = rest.split_once(' ').map_or("", |(_, a)| a);
                        format!("ExecStart=/bin/true {args}\n")
                    }
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut command = Command::new(&analyze);
        if kind == "user" {
            command.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
        }
        let output = command
            .args(["verify", "./ghapp.socket", "./ghapp.service"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if kind == "user" && complaints.contains("Failed to initialize manager") {
            eprintln!(
                "skipped the user units: no user manager can be emulated here ({complaints})"
            );
            continue;
        }
        assert!(
            output.status.success() && complaints.trim().is_empty(),
            "{kind} units: {complaints}"
        );
    }
}
