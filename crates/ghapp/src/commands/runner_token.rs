//! `ghapp runner-token (--org ORG | OWNER/REPO) [--host H] [--remove] [--print-config-command]
//! [--json]`: a self-hosted runner registration (or removal) token from the organization's
//! installation, or for one repository from the installation covering it, through the daemon
//! (`POST /v1/runner-token`, with `repo` for a repository; the App key stays in the daemon).
//!
//! Output: the bare token; `--json`: token, expires_at, remaining_secs, kind, org, url;
//! `--print-config-command`: the runner's own command line, as the runner-token service seed
//! prints it — `./config.sh --url https://HOST/ORG[/REPO] --token TOKEN` to register,
//! `./config.sh remove --token TOKEN` to remove.

use super::Context;
use super::exit::Failure;
use super::host::HostArg;
use super::output;
use crate::cli::RunnerTokenArgs;
use anyhow::Result;
use ghapp_protocol::api::{RunnerTokenRequest, RunnerTokenResponse, check_name};
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// Minting may need an installation token first, with retries against GitHub: as for
/// `ghapp token`, longer than the daemon's default retry budget.
const RUNNER_TOKEN_TIMEOUT: Duration = super::token::TOKEN_TIMEOUT;

/// Runs the command.
pub fn run(context: &Context, args: RunnerTokenArgs) -> Result<i32> {
    let (org, repo) = target(&args)?;
    let host = HostArg::for_request(args.host.as_deref(), &context.config_file().path)?;
    let request = RunnerTokenRequest {
        host: Some(host.host),
        org,
        repo,
        remove: args.remove,
    };
    let client = context.client(RUNNER_TOKEN_TIMEOUT);
    let response = ghapp_client::block_on(client.runner_token(&request))
        .map_err(|e| Failure::from_client(e, &context.socket()))?;
    if args.json {
        output::print_json(&RunnerTokenJson::from(&response))?;
    } else if args.print_config_command {
        output::print(&format!("{}\n", config_command(&response, args.remove)))?;
    } else {
        output::print(&format!("{}\n", response.token.expose()))?;
    }
    Ok(0)
}

/// The owner (organization) and, for a repository's runner, the repository asked for.
fn target(args: &RunnerTokenArgs) -> Result<(String, Option<String>)> {
    if let Some(org) = &args.org {
        let org = check_name("organization", org)
            .map_err(|e| Failure::usage(format!("--org: {}", e.0)))?;
        return Ok((org, None));
    }
    let named = args.repository.as_deref().unwrap_or_default();
    let Some((owner, repo)) = named.split_once('/') else {
        return Err(Failure::usage(format!(
            "OWNER/REPO: expected a repository like acme/widgets, got {named:?} (for an organization's runners use --org ORG)"
        ))
        .into());
    };
    let owner =
        check_name("owner", owner).map_err(|e| Failure::usage(format!("OWNER/REPO: {}", e.0)))?;
    let repo = check_name("repository", repo.trim_end_matches(".git"))
        .map_err(|e| Failure::usage(format!("OWNER/REPO: {}", e.0)))?;
    Ok((owner, Some(repo)))
}

/// The runner's `config.sh` line for this token.
pub fn config_command(response: &RunnerTokenResponse, remove: bool) -> String {
    let token = shell_word(response.token.expose());
    if remove {
        format!("./config.sh remove --token {token}")
    } else {
        format!(
            "./config.sh --url {} --token {token}",
            shell_word(&response.url)
        )
    }
}

/// Quotes a word for a POSIX shell only when it needs it (runner tokens and URLs never do in
/// practice; a surprise from the daemon must not turn into a command injection).
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b'+' | b','
                )
        });
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[derive(Serialize)]
struct RunnerTokenJson<'a> {
    token: &'a Token,
    expires_at: Timestamp,
    /// Seconds of life left when printed.
    remaining_secs: u64,
    kind: &'a str,
    org: &'a str,
    url: &'a str,
}

impl<'a> From<&'a RunnerTokenResponse> for RunnerTokenJson<'a> {
    fn from(r: &'a RunnerTokenResponse) -> Self {
        RunnerTokenJson {
            token: &r.token,
            expires_at: r.expires_at,
            remaining_secs: r.expires_at.remaining(Timestamp::now()).as_secs(),
            kind: &r.kind,
            org: &r.org,
            url: &r.url,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(token: &str) -> RunnerTokenResponse {
        RunnerTokenResponse {
            token: Token::new(token),
            expires_at: "2026-11-22T05:00:00.000-08:00".parse().unwrap(),
            kind: "registration".into(),
            org: "acme".into(),
            url: "https://github.com/acme".into(),
        }
    }

    #[test]
    fn config_lines() {
        let r = response("LLBF3JGZDX3P5PMEXLND6TS6FCWO6");
        assert_eq!(
            config_command(&r, false),
            "./config.sh --url https://github.com/acme --token LLBF3JGZDX3P5PMEXLND6TS6FCWO6"
        );
        assert_eq!(
            config_command(&r, true),
            "./config.sh remove --token LLBF3JGZDX3P5PMEXLND6TS6FCWO6"
        );
        assert_eq!(
            config_command(&response("a'b; rm"), true),
            r"./config.sh remove --token 'a'\''b; rm'"
        );
    }
}
