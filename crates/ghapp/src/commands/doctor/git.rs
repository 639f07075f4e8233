//! Check 6: git's configuration for each host, read with `git config --list` (every scope, in
//! git's own reading order) and evaluated the way git's credential code does:
//!
//! - the helper list for `https://HOST/` is every `credential.helper` and matching
//!   `credential.<url>.helper` in reading order, an empty value clearing what came before
//!   (git ≥ 2.9); `<url>` matches on scheme, host (with `*.` wildcards), port and — when the
//!   pattern has one — path, which doctor treats as "some repositories only" and skips;
//! - ghapp missing from the list: FAIL;
//! - ghapp configured by absolute path (`!exec PATH`, what `ghapp configure` writes for an
//!   installed helper, or the bare path earlier versions wrote)
//!   and that path missing or not executable — the binary moved or was uninstalled: WARN, with
//!   `ghapp configure` (which writes where it is now) as the fix;
//! - a storage helper *in front of* ghapp answers first with what it saved — for installation
//!   tokens, soon an expired one: `store` never honours expiry (FAIL); `cache` honours
//!   `password_expiry_utc` from git 2.41 on (OK there, FAIL before); keychain-style helpers
//!   (osxkeychain, libsecret, wincred, manager, …) honour it only in versions that store the
//!   attribute (WARN); gh's helper or an unknown one may answer first (WARN);
//! - `useHttpPath` not true for the URL: FAIL — ghapp then cannot tell repositories apart;
//! - `store` anywhere in the list: its file(s) holding an `x-access-token` / `ghs_` credential
//!   for the host is a FAIL (a saved installation token is stale within the hour; store would
//!   serve it whenever ghapp does not answer). Only fingerprints are printed.

mod chain;
mod store;

use super::report::Report;
use crate::commands::configure::helper_path::{is_executable, without_exec};
use crate::commands::git_config::GitConfig;
use crate::commands::host::HostArg;
use chain::{HelperKind, Target};
use std::process::Command;

/// For a helper configured by absolute path: what is wrong with that file, if anything.
fn stale_path(value: &str) -> Option<&'static str> {
    let command = without_exec(value).split_whitespace().next()?;
    if !command.starts_with('/') {
        return None;
    }
    let path = std::path::Path::new(command);
    if !path.exists() {
        Some("does not exist")
    } else if !is_executable(path) {
        Some("is not an executable file")
    } else {
        None
    }
}

/// The first git whose `cache` helper returns `password_expiry_utc` and drops expired
/// passwords on read.
const GIT_EXPIRY_AWARE: (u32, u32) = (2, 41);

/// Reports on git's configuration for each host.
pub fn check(hosts: &[HostArg], report: &mut Report) {
    let entries = match GitConfig::merged().list() {
        Ok(entries) => entries,
        Err(error) => {
            report.fail(
                format!("cannot read git's configuration: {error:#}"),
                "install git, or fix the config file git names",
            );
            return;
        }
    };
    let version = git_version();
    for host in hosts {
        check_host(host, &entries, version, report);
    }
}

fn check_host(
    host: &HostArg,
    entries: &[crate::commands::git_config::Entry],
    version: Option<(u32, u32)>,
    report: &mut Report,
) {
    let url = host.url();
    let target = Target::new(host.scheme.as_str(), &host.host);
    let helpers = chain::helpers(entries, &target);
    let configure_fix = match host.scheme {
        crate::commands::host::Scheme::Https if host.host == ghapp_protocol::api::DEFAULT_HOST => {
            "ghapp configure".to_string()
        }
        _ => format!("ghapp configure --host {url}"),
    };

    let ghapp_at = helpers.iter().position(|h| h.kind == HelperKind::Ghapp);
    match ghapp_at {
        None => {
            let list = if helpers.is_empty() {
                "none".to_string()
            } else {
                helpers
                    .iter()
                    .map(|h| format!("{:?}", h.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            report.fail(
                format!("git does not ask ghapp for {url} credentials (helpers: {list})"),
                format!(
                    "{configure_fix}   (writes credential.{url}.helper ghapp and useHttpPath true)"
                ),
            );
        }
        Some(index) => {
            let before = &helpers[..index];
            let mut clean = true;
            for helper in before {
                clean &= report_helper_in_front(helper, &url, version, &configure_fix, report);
            }
            let ghapp = &helpers[index];
            if let Some(problem) = stale_path(&ghapp.value) {
                report.warn(
                    format!(
                        "git asks ghapp for {url} through {:?} ({}), but that file {problem}: git cannot run it",
                        ghapp.value,
                        ghapp.origin_display()
                    ),
                    format!(
                        "{configure_fix}   (writes where git-credential-ghapp is now; it replaces the stale path)"
                    ),
                );
            } else if clean {
                report.ok(format!(
                    "git asks ghapp for {url} credentials ({}: {})",
                    helpers[index].value,
                    helpers[index].origin_display()
                ));
            }
            for helper in &helpers[index + 1..] {
                if let HelperKind::Store { .. } = helper.kind {
                    report.warn(
                        format!(
                            "`{}` ({}) runs after ghapp for {url}: git saves every ghapp token to its file in plain text",
                            helper.value,
                            helper.origin_display()
                        ),
                        format!("drop the store helper for {url}, or keep it only for other hosts"),
                    );
                }
            }
            match chain::use_http_path(entries, &target) {
                Some(true) => report.ok(format!("credential.useHttpPath is true for {url}")),
                _ => report.fail(
                    format!("credential.useHttpPath is not set for {url}: git will not tell ghapp which repository it wants"),
                    format!("git config --global credential.{url}.useHttpPath true   (or: {configure_fix})"),
                ),
            }
        }
    }

    for helper in &helpers {
        if let HelperKind::Store { files } = &helper.kind {
            let files = if files.is_empty() {
                store::default_files()
            } else {
                files.clone()
            };
            for file in files {
                for stale in store::ghapp_credentials(&file, &target) {
                    report.fail(
                        format!(
                            "{} holds a saved GitHub App token for {url} (user {}, {}): `store` serves it after it expires",
                            file.display(),
                            stale.username,
                            stale.fingerprint
                        ),
                        format!("delete the line for {}@{} from {}", stale.username, host.host, file.display()),
                    );
                }
            }
        }
    }
}

/// Reports one helper that git asks before ghapp; returns true if it is harmless.
fn report_helper_in_front(
    helper: &chain::Helper,
    url: &str,
    version: Option<(u32, u32)>,
    configure_fix: &str,
    report: &mut Report,
) -> bool {
    let origin = helper.origin_display();
    let fix = format!(
        "{configure_fix}   (its empty helper value resets helpers configured before it), or remove \
         `{}` from {origin}",
        helper.value
    );
    match &helper.kind {
        HelperKind::Store { .. } => {
            report.fail(
                format!(
                    "`{}` ({origin}) runs before ghapp for {url} and never expires what it saved: it will hand git an expired token",
                    helper.value
                ),
                fix,
            );
            false
        }
        HelperKind::Cache => match version {
            Some(v) if v >= GIT_EXPIRY_AWARE => {
                report.ok(format!(
                    "`{}` ({origin}) runs before ghapp for {url}; git {}.{} drops cached tokens at their expiry",
                    helper.value, v.0, v.1
                ));
                true
            }
            _ => {
                report.fail(
                    format!(
                        "`{}` ({origin}) runs before ghapp for {url}, and this git ({}) predates 2.41: the cache serves tokens past their expiry",
                        helper.value,
                        version.map(|v| format!("{}.{}", v.0, v.1)).unwrap_or_else(|| "unknown version".into())
                    ),
                    format!("upgrade git to 2.41 or later, or: {fix}"),
                );
                false
            }
        },
        HelperKind::Keyring => {
            report.warn(
                format!(
                    "`{}` ({origin}) runs before ghapp for {url}: it returns an expired token unless this version stores password_expiry_utc",
                    helper.value
                ),
                fix,
            );
            false
        }
        HelperKind::Gh => {
            report.warn(
                format!("`{}` ({origin}) runs before ghapp for {url}: gh's own token answers instead of ghapp's", helper.value),
                fix,
            );
            false
        }
        HelperKind::Other => {
            report.warn(
                format!(
                    "`{}` ({origin}) runs before ghapp for {url} and may answer first",
                    helper.value
                ),
                fix,
            );
            false
        }
        HelperKind::Ghapp => true,
    }
}

/// `git --version` → (major, minor).
fn git_version() -> Option<(u32, u32)> {
    let output = Command::new("git").arg("--version").output().ok()?;
    parse_git_version(&String::from_utf8_lossy(&output.stdout))
}

fn parse_git_version(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().strip_prefix("git version ")?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_versions() {
        assert_eq!(parse_git_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(
            parse_git_version("git version 2.39.5.windows.1"),
            Some((2, 39))
        );
        assert_eq!(parse_git_version("hub version"), None);
        assert!((2, 39) < GIT_EXPIRY_AWARE && (2, 47) >= GIT_EXPIRY_AWARE);
    }
}
