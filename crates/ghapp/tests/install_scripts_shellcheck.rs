//! shellcheck over the shell scripts users run: install.sh and scripts/*.sh (those this crate's
//! tests cover). Skipped, loudly, where shellcheck is not installed (`apt-get install shellcheck`;
//! .ci/run installs it and then requires it through GHAPP_TEST_REQUIRE_SHELLCHECK=1).

use std::io::Write;
use std::path::Path;
use std::process::Command;

const SCRIPTS: &[&str] = &[
    "install.sh",
    "scripts/demo.sh",
    "scripts/ghapp-gh-refresh.sh",
    "scripts/container-entrypoint.sh",
    "scripts/build-static-helper.sh",
    "scripts/bench.sh",
];

#[test]
fn scripts_pass_shellcheck() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let version = Command::new("shellcheck").arg("--version").output();
    if !matches!(&version, Ok(out) if out.status.success()) {
        let message = "SKIPPED scripts_pass_shellcheck: shellcheck is not installed (apt-get install shellcheck)";
        assert!(
            std::env::var_os("GHAPP_TEST_REQUIRE_SHELLCHECK").is_none(),
            "{message} and GHAPP_TEST_REQUIRE_SHELLCHECK is set"
        );
        let _ = writeln!(std::io::stderr(), "\n*** {message} ***\n");
        return;
    }
    let out = Command::new("shellcheck")
        .args(["--severity=style", "--external-sources"])
        .args(SCRIPTS.iter().map(|s| repo.join(s)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
