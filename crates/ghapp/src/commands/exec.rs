//! `ghapp exec [--host H] --repo OWNER/REPO [-p NAME=LEVEL]... -- CMD [ARGS…]`: runs CMD with a
//! token in its environment the way `gh` reads it, and nothing else of ghapp in between.
//!
//! - The token goes in `GH_TOKEN` for github.com, `*.ghe.com` and `github.localhost` hosts and
//!   in `GH_ENTERPRISE_TOKEN` for every other (GHES) host — gh's own rule (go-gh
//!   `pkg/auth`); a token is never offered under a variable gh would send to another host.
//! - `GITHUB_TOKEN`, `GITHUB_ENTERPRISE_TOKEN` and the other of the two `GH_*` variables are
//!   removed, so CMD sees exactly one GitHub token: ours.
//! - `GH_HOST` is the host asked for; an answer naming another host is refused (a daemon must
//!   never steer gh — and the token — to a host of its choosing). `GH_REPO` is `OWNER/REPO` on github.com and `HOST/OWNER/REPO`
//!   elsewhere (gh's `[HOST/]OWNER/REPO`: the bare form would mean github.com to gh versions
//!   that ignore `GH_HOST` when parsing it).
//! - ghapp replaces itself with CMD (`execvp`): signals reach CMD directly and CMD's exit status
//!   (or its death by signal) is the process's own. The token is in the environment only, never
//!   in argv. If CMD cannot be started: 127 when not found, 126 otherwise, as shells do.

use super::Context;
use super::exit::{CANNOT_EXECUTE, Failure, NOT_FOUND, UNAVAILABLE};
use super::host::HostArg;
use crate::cli::ExecArgs;
use anyhow::Result;
use ghapp_protocol::api::check_host;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Every variable gh (and most GitHub tooling) reads a token from.
const TOKEN_VARIABLES: [&str; 4] = [
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
];

/// Runs the command; returns only if CMD could not be started.
pub fn run(context: &Context, args: ExecArgs) -> Result<i32> {
    let (owner, repo) = parse_repo(&args.repo)?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(Failure::usage("ghapp exec: no command given after --").into());
    };
    let asked = HostArg::for_request(args.scope.host.as_deref(), &context.config_file().path)?;
    let response = super::token::fetch(context, &args.scope, owner.clone(), Some(repo.clone()))?;
    let host = answered_host(&asked.host, &response.host)?;

    let mut command = Command::new(program);
    command.args(program_args);
    for variable in TOKEN_VARIABLES {
        command.env_remove(variable);
    }
    command
        .env(token_variable(host), response.token.expose())
        .env("GH_HOST", host)
        .env("GH_REPO", gh_repo(host, &owner, &repo));

    // Only returns on failure; on success this process *is* CMD.
    let error = command.exec();
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_EXECUTE
    };
    Err(Failure::new(code, format!("ghapp exec: cannot run {program:?}: {error}")).into())
}

/// The host for `GH_HOST`: the one asked for, provided the daemon's answer names the same
/// (compared as git names hosts: lowercased, port kept).
fn answered_host<'a>(asked: &'a str, answered: &str) -> Result<&'a str, Failure> {
    let same = match (check_host(asked), check_host(answered)) {
        (Ok(asked), Ok(answered)) => asked == answered,
        _ => false,
    };
    if same {
        Ok(asked)
    } else {
        Err(Failure::new(
            UNAVAILABLE,
            format!(
                "ghapp exec: asked for a token for {asked:?} but the daemon answered for {answered:?}; \
                 not running the command (is the daemon on this socket the one you configured? `ghapp doctor` checks)"
            ),
        ))
    }
}

/// `--repo OWNER/REPO`: both parts required.
fn parse_repo(text: &str) -> Result<(String, String), Failure> {
    match super::token::parse_target(text)? {
        (owner, Some(repo)) => Ok((owner, repo)),
        (_, None) => Err(Failure::usage(format!(
            "--repo {text:?}: expected OWNER/REPO"
        ))),
    }
}

/// The variable gh reads this host's token from: gh treats github.com, `*.ghe.com` (GHE.com
/// tenancies) and `github.localhost` as "GitHub", everything else as Enterprise Server.
pub fn token_variable(host: &str) -> &'static str {
    let name = host_name(host);
    let github = name == "github.com"
        || name.ends_with(".github.com")
        || name == "github.localhost"
        || name.ends_with(".github.localhost")
        || name.ends_with(".ghe.com");
    if github {
        "GH_TOKEN"
    } else {
        "GH_ENTERPRISE_TOKEN"
    }
}

/// `GH_REPO` for gh: `OWNER/REPO` on github.com, `HOST/OWNER/REPO` elsewhere.
pub fn gh_repo(host: &str, owner: &str, repo: &str) -> String {
    if host_name(host) == "github.com" {
        format!("{owner}/{repo}")
    } else {
        format!("{host}/{owner}/{repo}")
    }
}

/// The host without a port, lowercased (`[::1]:8443` keeps its brackets).
fn host_name(host: &str) -> String {
    let without_port = match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() =>
        {
            name
        }
        _ => host,
    };
    without_port.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gh_token_rules() {
        assert_eq!(token_variable("github.com"), "GH_TOKEN");
        assert_eq!(token_variable("GitHub.com"), "GH_TOKEN");
        assert_eq!(token_variable("acme.ghe.com"), "GH_TOKEN");
        assert_eq!(token_variable("github.localhost"), "GH_TOKEN");
        assert_eq!(token_variable("ghe.example.com"), "GH_ENTERPRISE_TOKEN");
        assert_eq!(token_variable("127.0.0.1:8443"), "GH_ENTERPRISE_TOKEN");
        assert_eq!(
            token_variable("ghe.com.evil.example"),
            "GH_ENTERPRISE_TOKEN"
        );
        assert_eq!(token_variable("notgithub.com"), "GH_ENTERPRISE_TOKEN");
    }

    #[test]
    fn gh_repo_names_the_host_off_github_com() {
        assert_eq!(gh_repo("github.com", "acme", "widgets"), "acme/widgets");
        assert_eq!(
            gh_repo("ghe.example.com:8443", "acme", "widgets"),
            "ghe.example.com:8443/acme/widgets"
        );
    }

    #[test]
    fn the_answer_must_name_the_host_asked() {
        assert_eq!(
            answered_host("github.com", "GitHub.com").unwrap(),
            "github.com"
        );
        assert_eq!(
            answered_host("ghe.example.com:8443", "ghe.example.com:8443").unwrap(),
            "ghe.example.com:8443"
        );
        let err = answered_host("github.com", "evil.example").unwrap_err();
        assert_eq!(err.code, UNAVAILABLE);
        assert!(err.to_string().contains("evil.example"), "{err}");
        assert!(answered_host("ghe.example.com", "ghe.example.com:8443").is_err());
        assert!(answered_host("github.com", "").is_err());
    }

    #[test]
    fn repo_must_have_both_parts() {
        assert!(parse_repo("acme").is_err());
        assert_eq!(
            parse_repo("acme/widgets").unwrap(),
            ("acme".into(), "widgets".into())
        );
    }
}
