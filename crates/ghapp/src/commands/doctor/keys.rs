//! Check 2: each App's private key is readable, private to its owner, and an RSA key that
//! actually signs an App JWT (a PEM that merely *looks* right is not enough). The file-mode rule
//! is the daemon's (refused when group or others may read or write it), and the key is parsed
//! by the broker's own `AppKey::from_pem`, whose public-key fingerprint is printed — the same
//! one `ghapp status` shows for the key the daemon holds, so a stale daemon is visible.
//!
//! Doctor runs as whoever typed it; a system daemon's key is usually readable by root only. A
//! key doctor cannot read is a WARN (it may be fine for the daemon), not a FAIL — unless the
//! file does not exist at all.

use super::report::Report;
use ghapp_broker::{AppConfig, Config};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long a `private_key_command` may take before doctor gives up on it.
const KEY_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// An App and, when doctor could load it, its signing key.
pub struct LoadedApp {
    /// The App's config.
    pub app: AppConfig,
    /// Its key, when readable and valid.
    pub key: Option<EncodingKey>,
    /// The fingerprint of the key's public half (as `ghapp status` shows it).
    pub fingerprint: Option<String>,
}

/// Reports on every App's key; returns the Apps with the keys that loaded.
pub fn check(config: &Config, report: &mut Report) -> Vec<LoadedApp> {
    config
        .apps
        .iter()
        .map(|app| {
            let (key, fingerprint) = match check_app(app, report) {
                Some((key, fingerprint)) => (Some(key), Some(fingerprint)),
                None => (None, None),
            };
            LoadedApp {
                app: app.clone(),
                key,
                fingerprint,
            }
        })
        .collect()
}

fn check_app(app: &AppConfig, report: &mut Report) -> Option<(EncodingKey, String)> {
    let who = format!("App {}", app.describe());
    let (pem, source) = if let Some(path) = &app.private_key_file {
        (
            read_key_file(&who, path, report)?,
            path.display().to_string(),
        )
    } else if let Some(variable) = &app.private_key_env {
        match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => {
                (unescape_newlines(value), format!("${variable}"))
            }
            _ => {
                report.warn(
                    format!("{who}: key variable ${variable} is not set in this shell, so doctor cannot check the key"),
                    format!("run doctor with ${variable} set as the daemon has it (the daemon reads its own environment)"),
                );
                return None;
            }
        }
    } else if let Some(command) = &app.private_key_command {
        (
            run_key_command(&who, command, report)?,
            format!("the output of {command:?}"),
        )
    } else {
        report.fail(
            format!("{who} has no private key configured"),
            "set private_key_file (or private_key_env / private_key_command) in its [[app]]",
        );
        return None;
    };
    let parsed = ghapp_broker::key::AppKey::from_pem(&pem, source.clone(), &app.name)
        .map_err(|e| e.to_string())
        .and_then(|key| Ok((signing_key(&pem)?, key.fingerprint().to_string())));
    match parsed {
        Ok((key, fingerprint)) => {
            report.ok(format!(
                "{who}: private key {source} ({fingerprint}) is an RSA key that signs"
            ));
            Some((key, fingerprint))
        }
        Err(reason) => {
            report.fail(
                format!("{who}: private key {source} is not a usable RSA private key: {reason}"),
                "use the PEM file GitHub generated (App settings → Private keys → Generate), \
                 unmodified: it begins with -----BEGIN RSA PRIVATE KEY-----",
            );
            None
        }
    }
}

/// CI systems often flatten a PEM into one line with literal `\n`; the daemon accepts that,
/// so doctor does too.
fn unescape_newlines(value: String) -> Zeroizing<Vec<u8>> {
    let value = Zeroizing::new(value);
    if value.contains('\n') || !value.contains("\\n") {
        return Zeroizing::new(value.as_bytes().to_vec());
    }
    Zeroizing::new(value.replace("\\n", "\n").into_bytes())
}

fn read_key_file(who: &str, path: &Path, report: &mut Report) -> Option<Zeroizing<Vec<u8>>> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            report.fail(
                format!("{who}: private key file {} does not exist", path.display()),
                "fix private_key_file in the config, or put the App's PEM there (chmod 600)",
            );
            return None;
        }
        Err(error) => {
            report.warn(
                format!(
                    "{who}: cannot inspect private key file {}: {error}",
                    path.display()
                ),
                "run doctor as the daemon's user (e.g. sudo ghapp doctor) to check the key",
            );
            return None;
        }
    };
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
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
        );
        return None;
    }
    match std::fs::read(path) {
        Ok(bytes) => Some(Zeroizing::new(bytes)),
        Err(error) => {
            report.warn(
                format!(
                    "{who}: cannot read private key file {}: {error}",
                    path.display()
                ),
                "run doctor as the daemon's user (e.g. sudo ghapp doctor) to check the key",
            );
            None
        }
    }
}

fn run_key_command(
    who: &str,
    command: &[String],
    report: &mut Report,
) -> Option<Zeroizing<Vec<u8>>> {
    let Some((program, args)) = command.split_first() else {
        report.fail(
            format!("{who}: private_key_command is empty"),
            "give the command and its arguments as a list",
        );
        return None;
    };
    let outcome = ghapp_client::block_on(async {
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(KEY_COMMAND_TIMEOUT, child).await
    });
    match outcome {
        Ok(Ok(output)) if output.status.success() => Some(Zeroizing::new(output.stdout)),
        Ok(Ok(output)) => {
            report.fail(
                format!(
                    "{who}: private_key_command {program:?} failed ({})",
                    output.status
                ),
                "run the command by hand as the daemon's user and fix what it reports",
            );
            None
        }
        Ok(Err(error)) => {
            report.fail(
                format!("{who}: cannot run private_key_command {program:?}: {error}"),
                "fix the command path in private_key_command (it runs without a shell)",
            );
            None
        }
        Err(_) => {
            report.fail(
                format!("{who}: private_key_command {program:?} did not finish within {KEY_COMMAND_TIMEOUT:?}"),
                "make the command non-interactive (it runs with no terminal and no stdin)",
            );
            None
        }
    }
}

/// Parses the PEM and signs a throwaway JWT with it: aws-lc only validates an RSA key when it
/// is used.
fn signing_key(pem: &[u8]) -> Result<EncodingKey, String> {
    let key = EncodingKey::from_rsa_pem(pem).map_err(|e| e.to_string())?;
    let claims = serde_json::json!({ "iat": 0, "exp": 1, "iss": "doctor" });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|e| e.to_string())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_key() {
        assert!(signing_key(b"not a pem").is_err());
        let fake = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(
            signing_key(fake).is_err(),
            "a PEM-shaped blob must fail at signing"
        );
    }

    #[test]
    fn flattened_pems_are_unescaped() {
        assert_eq!(&*unescape_newlines("a\\nb".into()), b"a\nb");
        assert_eq!(
            &*unescape_newlines("a\nb\\n".into()),
            b"a\nb\\n",
            "real newlines: left alone"
        );
    }
}
