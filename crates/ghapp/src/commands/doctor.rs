//! `ghapp doctor [--host H]`: checks the whole setup and prints one line per check,
//! `OK|WARN|FAIL <what>`, followed by `fix: <what to do>` for every WARN and FAIL. Exit status
//! 1 when anything FAILed, else 0.
//!
//! The checks, in order (each module says what it checks and why):
//! 1. [`config_file`]: the config file is found and valid (errors name file, line and key).
//! 2. [`keys`]: each App's private key loads as the daemon loads it (readable, not
//!    group/world-accessible, an RSA key) and signs the App JWT the daemon would send.
//! 3. [`daemon`]: the socket (path, how it was chosen, socket and directory permissions) and
//!    the daemon behind it (answers, version, degraded, serves the config's Apps with the same
//!    keys).
//! 4. [`github`]: GitHub accepts each App's key (`GET /app` with the App JWT the daemon would
//!    send — doctor talks to GitHub directly, not through the daemon, so it also works when the
//!    daemon is down), the App is installed somewhere, and the clock skew against GitHub's
//!    `Date` header.
//!
//! Checks 2 and 4 run on the broker's own code ([`ghapp_broker::probe`]): the daemon's key
//! loading, JWT signer and HTTP transport, so doctor checks exactly what the daemon sends.
//! 5. [`helper`]: `git-credential-ghapp` is where git looks for it, and is this version.
//! 6. [`git`]: for each host, git asks ghapp (after no expiry-blind storage helper), sends the
//!    path (`useHttpPath`), and no `store` file holds a saved (soon stale) ghapp token.

mod config_file;
mod daemon;
mod git;
mod github;
mod helper;
mod keys;
mod report;

use super::Context;
use super::host::{HostArg, Scheme};
use crate::cli::DoctorArgs;
use anyhow::Result;
use report::Report;

/// Runs every check and returns 1 if any FAILed.
pub fn run(context: &Context, args: DoctorArgs) -> Result<i32> {
    // Validate the flag before printing anything.
    let host_flag = match &args.host {
        Some(text) => Some(HostArg::parse(Some(text))?),
        None => None,
    };
    let mut report = Report::new();
    let config = config_file::check(context, &mut report);
    let apps = config
        .as_ref()
        .map(|c| keys::check(c, &mut report))
        .unwrap_or_default();
    github::check(&apps, &mut report);
    daemon::check(context, &apps, &mut report);
    helper::check(&mut report);
    let hosts = match host_flag {
        Some(host) => vec![host],
        None => hosts_of(config.as_ref()),
    };
    git::check(&hosts, &mut report);
    report.summary()?;
    Ok(if report.failed() { 1 } else { 0 })
}

/// The hosts git must be checked for: each App's host over https, and over http too for
/// `insecure_http` Apps; github.com when there is no config.
fn hosts_of(config: Option<&ghapp_broker::Config>) -> Vec<HostArg> {
    let mut hosts = Vec::new();
    for app in config.map(|c| c.apps.as_slice()).unwrap_or_default() {
        let host = app.host.to_ascii_lowercase();
        let mut schemes = vec![Scheme::Https];
        if app.insecure_http {
            // An emulator or test host: git reaches it over http, so that is the URL that matters.
            schemes = vec![Scheme::Http];
        }
        for scheme in schemes {
            let candidate = HostArg {
                scheme,
                host: host.clone(),
            };
            if !hosts.contains(&candidate) {
                hosts.push(candidate);
            }
        }
    }
    if hosts.is_empty() {
        hosts.push(HostArg {
            scheme: Scheme::Https,
            host: ghapp_protocol::api::DEFAULT_HOST.to_string(),
        });
    }
    hosts
}
