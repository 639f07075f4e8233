//! `ghapp token [--host H] OWNER[/REPO] [-p NAME=LEVEL]... [--min-ttl D] [--json]`: prints a
//! token for scripts (`ghapp token acme | gh auth login --with-token`). Stdout carries the token
//! and a newline, nothing else; every message goes to stderr.

use super::Context;
use super::exit::Failure;
use super::host::HostArg;
use super::output;
use crate::cli::{ScopeArgs, TokenArgs};
use anyhow::Result;
use ghapp_protocol::api::{TokenQuery, TokenResponse, check_name};
use ghapp_protocol::duration::parse_duration;
use ghapp_protocol::permissions::Permissions;
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// How long to wait for the daemon: longer than the daemon's default `retry_budget` (30 s), so
/// when GitHub is slow or failing the daemon's own answer — the actionable one — arrives before
/// this deadline does (a cold mint may back off on 5xx, retry a replication delay or a skewed
/// clock).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs the command.
pub fn run(context: &Context, args: TokenArgs) -> Result<i32> {
    let (owner, repo) = parse_target(&args.target)?;
    let response = fetch(context, &args.scope, owner, repo)?;
    if args.json {
        output::print_json(&TokenJson::from(&response))?;
    } else {
        output::print(&format!("{}\n", response.token.expose()))?;
    }
    Ok(0)
}

/// Asks the daemon for a token; every failure is a [`Failure`] with the CLI's exit code.
pub fn fetch(
    context: &Context,
    scope: &ScopeArgs,
    owner: String,
    repo: Option<String>,
) -> Result<TokenResponse, Failure> {
    let host = HostArg::for_request(scope.host.as_deref(), &context.config_file().path)?;
    let query = build_query(scope, host, owner, repo)?;
    let socket = context.socket();
    let client = ghapp_client::DaemonClient::new(&socket.path, TOKEN_TIMEOUT)
        .trusting(context.trusted_uids())
        .with_id_token_from_env();
    ghapp_client::block_on(client.token(&query))
        .map_err(|error| Failure::from_client(error, &socket))
}

/// `OWNER` or `OWNER/REPO`, each checked against GitHub's name rules.
pub fn parse_target(target: &str) -> Result<(String, Option<String>), Failure> {
    let usage = |e: ghapp_protocol::api::QueryError| Failure::usage(e.0);
    match target.split_once('/') {
        None => Ok((check_name("owner", target).map_err(usage)?, None)),
        Some((owner, repo)) => Ok((
            check_name("owner", owner).map_err(usage)?,
            Some(check_name("repository", repo).map_err(usage)?),
        )),
    }
}

/// The socket query for a scope: host, permissions and min_ttl validated here so mistakes
/// are usage errors (exit 2) named after the flag, not daemon refusals.
pub fn build_query(
    scope: &ScopeArgs,
    host: HostArg,
    owner: String,
    repo: Option<String>,
) -> Result<TokenQuery, Failure> {
    let mut permissions = Permissions::new();
    for flag in &scope.permissions {
        permissions
            .parse_flag(flag)
            .map_err(|e| Failure::usage(format!("--permission {flag:?}: {e}")))?;
    }
    let min_ttl = scope
        .min_ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| Failure::usage(format!("--min-ttl: {e}")))?;
    Ok(TokenQuery {
        host: Some(host.host),
        owner: Some(owner),
        repo,
        permissions,
        min_ttl,
        protocol: None,
    })
}

/// `ghapp token --json`: the daemon's answer plus the remaining life, computed here so a
/// script need not parse dates.
#[derive(Serialize)]
struct TokenJson<'a> {
    token: &'a Token,
    expires_at: Timestamp,
    /// Seconds of life left when printed.
    remaining_secs: u64,
    installation_id: u64,
    app: &'a str,
    host: &'a str,
    owner: &'a str,
    repositories: &'a [String],
    permissions: &'a Permissions,
}

impl<'a> From<&'a TokenResponse> for TokenJson<'a> {
    fn from(r: &'a TokenResponse) -> Self {
        TokenJson {
            token: &r.token,
            expires_at: r.expires_at,
            remaining_secs: r.expires_at.remaining(Timestamp::now()).as_secs(),
            installation_id: r.installation_id,
            app: &r.app,
            host: &r.host,
            owner: &r.owner,
            repositories: &r.repositories,
            permissions: &r.permissions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::exit::USAGE;

    fn scope(permissions: &[&str], min_ttl: Option<&str>) -> ScopeArgs {
        ScopeArgs {
            host: None,
            permissions: permissions.iter().map(|s| s.to_string()).collect(),
            min_ttl: min_ttl.map(str::to_string),
        }
    }

    #[test]
    fn targets() {
        assert_eq!(parse_target("acme").unwrap(), ("acme".into(), None));
        assert_eq!(
            parse_target("acme/widgets.io").unwrap(),
            ("acme".into(), Some("widgets.io".into()))
        );
        for bad in ["", "acme/", "/widgets", "acme/widgets/x", "ac me"] {
            assert_eq!(parse_target(bad).unwrap_err().code, USAGE, "{bad}");
        }
    }

    #[test]
    fn query_from_flags() {
        let host = || HostArg::parse(Some("GHE.example.com")).unwrap();
        let q = build_query(
            &scope(&["contents=write", "issues:read"], Some("45m")),
            host(),
            "acme".into(),
            None,
        )
        .unwrap();
        assert_eq!(q.host.as_deref(), Some("ghe.example.com"));
        assert_eq!(q.permissions.to_list(), "contents:write,issues:read");
        assert_eq!(q.min_ttl, Some(Duration::from_secs(45 * 60)));
        let bad_perm = build_query(
            &scope(&["contents=owner"], None),
            host(),
            "acme".into(),
            None,
        )
        .unwrap_err();
        assert_eq!(bad_perm.code, USAGE);
        assert!(
            bad_perm.message.contains("--permission"),
            "{}",
            bad_perm.message
        );
        let bad_ttl =
            build_query(&scope(&[], Some("soon")), host(), "acme".into(), None).unwrap_err();
        assert!(bad_ttl.message.contains("--min-ttl"), "{}", bad_ttl.message);
    }
}
