//! `ghapp status [--json]`: what the daemon holds — Apps, installations, cached tokens (as
//! fingerprints), degraded state, counters. `--json` prints the daemon's own JSON unchanged, so
//! fields a newer daemon adds reach scripts without a CLI upgrade. The daemon never puts a
//! secret in `/v1/status`; this command adds none.

use super::Context;
use super::exit::Failure;
use super::{output, table};
use crate::cli::StatusArgs;
use anyhow::Result;
use ghapp_protocol::api::{STATUS_PATH, StatusResponse, describe_remaining};
use ghapp_protocol::duration::format_duration;
use std::time::Duration;

/// Status is served from memory: a daemon that takes longer is wedged, and saying so is the
/// useful answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the command.
pub fn run(context: &Context, args: StatusArgs) -> Result<i32> {
    let client = context.client(STATUS_TIMEOUT);
    if args.json {
        let (status, body) =
            ghapp_client::block_on(client.raw(http::Method::GET, STATUS_PATH, None))
                .map_err(|e| Failure::from_client(e, &context.socket()))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ghapp_protocol::api::ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status} without an error message"));
            return Err(Failure::from_client(
                ghapp_client::ClientError::Api { status, message },
                &context.socket(),
            )
            .into());
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        output::print(&text)?;
    } else {
        let status = ghapp_client::block_on(client.status())
            .map_err(|e| Failure::from_client(e, &context.socket()))?;
        output::print(&render(&status))?;
    }
    Ok(0)
}

/// The human form: a header, then one table per kind of thing held.
pub fn render(status: &StatusResponse) -> String {
    let mut out = format!(
        "ghapp daemon {} on {}, up {}\n",
        status.version,
        status.socket,
        format_duration(Duration::from_secs(status.uptime_secs))
    );
    if status.degraded {
        let reason = status
            .degraded_reason
            .as_deref()
            .unwrap_or("no reason given");
        out.push_str(&format!(
            "state: DEGRADED ({reason}): serving cached tokens while they keep their margin\n"
        ));
    } else {
        out.push_str("state: healthy\n");
    }
    if let Some(upstream) = &status.upstream {
        match &upstream.problem {
            None => out.push_str(&format!(
                "upstream: {} for {} (answering; no App key on this host)\n",
                upstream.url,
                upstream.hosts.join(", ")
            )),
            Some(problem) => out.push_str(&format!(
                "upstream: {} for {} FAILING ({problem}): cached tokens serve on their margin\n",
                upstream.url,
                upstream.hosts.join(", ")
            )),
        }
    }
    if let Some(shared) = &status.shared_cache {
        match &shared.problem {
            None => out.push_str(&format!("shared cache: {} (answering)\n", shared.backend)),
            Some(problem) => out.push_str(&format!(
                "shared cache: {} UNREACHABLE ({problem}): serving from this replica's own cache\n",
                shared.backend
            )),
        }
    }

    out.push_str("\nApps\n");
    let apps: Vec<Vec<String>> = status
        .apps
        .iter()
        .map(|app| {
            vec![
                app.name.clone(),
                app.host.clone(),
                app.app_id
                    .map(|id| id.to_string())
                    .or_else(|| app.client_id.clone())
                    .unwrap_or_else(|| "-".into()),
                app.api_url.clone(),
                app.key_fingerprint.clone(),
                app.rate_limit_remaining
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["NAME", "HOST", "APP", "API", "KEY", "RATE LEFT"],
        &apps,
    ));

    out.push_str("\nInstallations\n");
    let installations: Vec<Vec<String>> = status
        .installations
        .iter()
        .map(|i| {
            vec![
                i.owner.clone(),
                if i.enterprise {
                    format!("{} (enterprise: serves no repository)", i.installation_id)
                } else {
                    i.installation_id.to_string()
                },
                i.app.clone(),
                i.host.clone(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["OWNER", "INSTALLATION", "APP", "HOST"],
        &installations,
    ));

    out.push_str("\nTokens\n");
    let mut tokens = status.tokens.clone();
    tokens.sort_by(|a, b| {
        (&a.host, &a.owner, &a.repositories).cmp(&(&b.host, &b.owner, &b.repositories))
    });
    let tokens: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            let scope = if t.repositories.is_empty() {
                format!("{} (all repositories)", t.owner)
            } else {
                t.repositories
                    .iter()
                    .map(|r| {
                        if r.contains('/') {
                            r.clone()
                        } else {
                            format!("{}/{r}", t.owner)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                t.fingerprint.clone(),
                scope,
                t.permissions.to_string(),
                describe_remaining(t.remaining_secs),
                t.expires_at.to_string(),
                t.app.clone(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "FINGERPRINT",
            "SCOPE",
            "PERMISSIONS",
            "REMAINING",
            "EXPIRES",
            "APP",
        ],
        &tokens,
    ));

    out.push_str("\nCounters\n");
    let counters: Vec<Vec<String>> = status
        .counters
        .iter()
        .map(|(name, value)| vec![name.clone(), value.to_string()])
        .collect();
    out.push_str(&table::render(&["NAME", "VALUE"], &counters));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::api::{AppStatus, CachedTokenStatus, InstallationStatus};
    use ghapp_protocol::permissions::Permissions;

    #[test]
    fn renders_every_section() {
        let status = StatusResponse {
            version: "0.1.0".into(),
            uptime_secs: 3725,
            socket: "/run/ghapp/ghapp.sock".into(),
            degraded: true,
            degraded_reason: Some("GitHub answered 503".into()),
            apps: vec![AppStatus {
                name: "acme-bot".into(),
                host: "github.com".into(),
                api_url: "https://api.github.com".into(),
                app_id: Some(12345),
                key_fingerprint: "sha256:0123456789ab".into(),
                ..Default::default()
            }],
            installations: vec![InstallationStatus {
                app: "acme-bot".into(),
                host: "github.com".into(),
                owner: "acme".into(),
                installation_id: 100,
                enterprise: false,
            }],
            upstream: Some(ghapp_protocol::api::UpstreamStatus {
                url: "https://broker.internal:8443".into(),
                hosts: vec!["github.com".into()],
                healthy: true,
                problem: None,
            }),
            shared_cache: Some(ghapp_protocol::api::SharedCacheStatus {
                backend: "redis://127.0.0.1:6379".into(),
                healthy: false,
                problem: Some("connection refused".into()),
            }),
            tokens: vec![CachedTokenStatus {
                fingerprint: "sha256:abcdefabcdef".into(),
                app: "acme-bot".into(),
                host: "github.com".into(),
                owner: "acme".into(),
                installation_id: 100,
                repositories: vec!["widgets".into()],
                permissions: Permissions::parse_list("contents:write").unwrap(),
                expires_at: "2026-11-22T05:00:00Z".parse().unwrap(),
                remaining_secs: 2832,
            }],
            counters: [("mints".to_string(), 3)].into_iter().collect(),
        };
        let text = render(&status);
        for expected in [
            "up 1h 2m 5s",
            "DEGRADED (GitHub answered 503)",
            "acme-bot",
            "12345",
            "sha256:abcdefabcdef",
            "acme/widgets",
            "contents:write",
            "47m 12s",
            "mints",
            "shared cache: redis://127.0.0.1:6379 UNREACHABLE (connection refused)",
            "upstream: https://broker.internal:8443 for github.com (answering",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
