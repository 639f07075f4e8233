//! Check 5: `git-credential-ghapp` is where git looks for `credential.helper ghapp` (git's exec
//! path, then PATH), and it is this version of ghapp (an old helper next to a new daemon is a
//! classic upgrade mistake).

use super::report::Report;
use crate::commands::configure::helper_path::{PROGRAM as HELPER, locate};
use std::process::Command;

/// Reports where the helper is and its version.
pub fn check(report: &mut Report) {
    let Some(found) = locate() else {
        report.fail(
            format!("{HELPER} is not on PATH (nor in git's exec path): git cannot run `credential.helper ghapp`"),
            "install it next to ghapp (./install.sh), or add its directory to PATH",
        );
        return;
    };
    let version = Command::new(&found).arg("--version").output();
    let expected = format!("{HELPER} {}", ghapp_protocol::VERSION);
    match version {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if text == expected {
                report.ok(format!("{HELPER} found at {} ({})", found.display(), text));
            } else {
                report.warn(
                    format!(
                        "{} reports {text:?}, but this is ghapp {}",
                        found.display(),
                        ghapp_protocol::VERSION
                    ),
                    "install both binaries from the same build (./install.sh)",
                );
            }
        }
        Ok(output) => report.warn(
            format!("{} --version failed ({})", found.display(), output.status),
            "reinstall it from the same build as ghapp (./install.sh)",
        ),
        Err(error) => report.fail(
            format!("cannot run {}: {error}", found.display()),
            "reinstall it from the same build as ghapp (./install.sh) and make it executable",
        ),
    }
}
