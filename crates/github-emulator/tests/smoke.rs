//! Quick end-to-end check: start the binary, mint, clone and push with real git.

use ghapp_testkit::emulator::{EmulatorProcess, basic_fixture};
use serde_json::json;
use std::process::Command;

#[test]
fn mint_clone_push() {
    let started = std::time::Instant::now();
    let emulator = EmulatorProcess::start(&basic_fixture(3600)).expect("start");
    eprintln!("emulator started in {:?}", started.elapsed());
    let token = emulator
        .mint_token(100, json!({"repositories": ["widgets"]}))
        .expect("mint");
    let token = token["token"].as_str().expect("token").to_string();
    let work = tempfile::tempdir().expect("tmp");
    let url = emulator
        .repo_url("acme", "widgets")
        .replace("http://", &format!("http://x-access-token:{token}@"));
    let out = Command::new("git")
        .args(["clone", "-q", &url, "w"])
        .current_dir(work.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = work.path().join("w");
    std::fs::write(repo.join("new.txt"), "hi\n").expect("write");
    for args in [
        vec!["add", "."],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-qm",
            "x",
        ],
        vec!["push", "-q", "origin", "HEAD"],
    ] {
        let out = Command::new("git")
            .args(&args)
            .current_dir(&repo)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stats = emulator.stats().expect("stats");
    eprintln!("{stats}");
}
