//! Check 1: the config file is found, trusted and valid. The one loader every binary uses
//! (`ghapp_protocol::config`) is used, so doctor accepts and refuses exactly what the daemon
//! does — a file others could write included; its errors name the file, line and key.

use super::report::Report;
use crate::commands::Context;
use ghapp_protocol::config::Config;

/// Reports on the config file; returns it when it loads.
pub fn check(context: &Context, report: &mut Report) -> Option<Config> {
    let resolved = context.config_file();
    let path = &resolved.path;
    if !path.exists() {
        report.fail(
            format!(
                "config file {} not found (chosen by: {})",
                path.display(),
                resolved.source
            ),
            "write one (docs/configuration.md; install.sh writes a commented template), or point \
             --config / $GHAPP_CONFIG at yours",
        );
        return None;
    }
    match Config::load(path) {
        Ok(config) => {
            let names: Vec<String> = config
                .apps
                .iter()
                .map(|app| format!("{} for {}", app.name, app.host))
                .chain(config.upstream.iter().map(|u| {
                    format!(
                        "upstream {} for {} (no App key here)",
                        u.url,
                        u.hosts.join(", ")
                    )
                }))
                .collect();
            if names.is_empty() {
                report.fail(
                    format!("config file {} (chosen by: {}) has no [[app]] and no [upstream]", path.display(), resolved.source),
                    "add an [[app]] with name, app_id (or client_id) and private_key_file (docs/configuration.md)",
                );
            } else {
                report.ok(format!(
                    "config file {} (chosen by: {}) is valid: {}",
                    path.display(),
                    resolved.source,
                    names.join(", ")
                ));
            }
            Some(config)
        }
        Err(error) => {
            report.fail(
                format!("config file is not valid or not trusted:\n{error}"),
                format!("fix {} as named above: the line and key, or who may write it (docs/configuration.md lists every key)", path.display()),
            );
            None
        }
    }
}
