//! Check 2: each App's private key loads as the daemon loads it, and signs the App JWT the
//! daemon would send. Doctor has no key code of its own: [`ghapp_broker::probe::check_app`]
//! loads the key with the daemon's `AppKey::load` (same sources, same file-mode rule, same
//! `private_key_command` limit), signs with the daemon's JWT signer and asks GitHub through the
//! daemon's transport; this module reports the key half of that probe, [`super::github`] the
//! GitHub half. The key's public fingerprint is printed — the same one `ghapp status` shows for
//! the key the daemon holds, so a stale daemon is visible.
//!
//! Doctor runs as whoever typed it; a system daemon's key is usually readable by root only. A
//! key doctor cannot read is a WARN (it may be fine for the daemon), not a FAIL — unless the
//! file does not exist at all.

use super::report::Report;
use ghapp_broker::probe::{AppProbe, KeyProblem, check_app};
use ghapp_broker::{AppConfig, Config};

/// An App and what probing it the daemon's way found.
pub struct ProbedApp {
    /// The App's config.
    pub app: AppConfig,
    /// The key and GitHub's answers.
    pub probe: AppProbe,
}

impl ProbedApp {
    /// The fingerprint of the key's public half (as `ghapp status` shows it), when it loaded.
    pub fn fingerprint(&self) -> Option<&str> {
        self.probe.key.as_ref().ok().map(|k| k.fingerprint.as_str())
    }
}

/// Probes every App and reports on its key; returns the probes for the later checks.
pub fn check(config: &Config, report: &mut Report) -> Vec<ProbedApp> {
    config
        .apps
        .iter()
        .map(|app| {
            let probe = ghapp_client::block_on(check_app(app, &config.daemon));
            report_key(app, &probe, report);
            ProbedApp {
                app: app.clone(),
                probe,
            }
        })
        .collect()
}

fn report_key(app: &AppConfig, probe: &AppProbe, report: &mut Report) {
    let who = format!("App {}", app.describe());
    let problem = match &probe.key {
        Ok(key) => {
            report.ok(format!(
                "{who}: private key {} ({}) is an RSA key that signs",
                key.source, key.fingerprint
            ));
            return;
        }
        Err(problem) => problem,
    };
    const AS_DAEMON_USER: &str =
        "run doctor as the daemon's user (e.g. sudo ghapp doctor) to check the key";
    const PEM_ADVICE: &str = "use the PEM file GitHub generated (App settings → Private keys → \
         Generate), unmodified: it begins with -----BEGIN RSA PRIVATE KEY-----";
    match problem {
        KeyProblem::NoSource { .. } => report.fail(
            format!("{who} has no private key configured"),
            "set private_key_file (or private_key_env / private_key_command) in its [[app]]",
        ),
        KeyProblem::FileMissing { path } => report.fail(
            format!("{who}: private key file {} does not exist", path.display()),
            "fix private_key_file in the config, or put the App's PEM there (chmod 600)",
        ),
        KeyProblem::FileTooOpen { path, mode } => {
            let access = if mode & 0o044 != 0 {
                "readable"
            } else {
                "writable"
            };
            report.fail(
                format!(
                    "{who}: private key file {} is {access} by group or others (mode {mode:04o}); the daemon refuses it",
                    path.display()
                ),
                format!("chmod 600 {}", path.display()),
            )
        }
        KeyProblem::NotReadableHere { path, error } => report.warn(
            format!(
                "{who}: cannot read private key file {} as this user: {error}",
                path.display()
            ),
            AS_DAEMON_USER,
        ),
        KeyProblem::EnvNotSetHere { variable } => report.warn(
            format!(
                "{who}: key variable ${variable} is not set in this shell, so doctor cannot check the key"
            ),
            format!(
                "run doctor with ${variable} set as the daemon has it (the daemon reads its own environment)"
            ),
        ),
        KeyProblem::CannotSign { error } => report.fail(
            format!("{who}: the key loads but cannot sign the App JWT: {error}"),
            PEM_ADVICE,
        ),
        KeyProblem::Refused { error } if app.private_key_command.is_some() => report.fail(
            format!("{who}: the daemon would refuse the key: {error}"),
            "run the command by hand as the daemon's user and fix what it reports \
             (it runs without a shell and without stdin)",
        ),
        KeyProblem::Refused { error } => report.fail(
            format!("{who}: the daemon would refuse the key: {error}"),
            PEM_ADVICE,
        ),
    }
}
