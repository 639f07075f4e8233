//! `ghapp configure [--global|--system|--local] [--host H]` and `ghapp unconfigure`: point git's
//! credential lookup for a host at ghapp, and take exactly that back out.
//!
//! For each host URL (`https://github.com`) configure leaves the scope's file holding
//!
//! ```text
//! [credential "https://github.com"]
//!     helper =            # reset: helpers configured *before* this line do not run for the host
//!     helper = !exec /usr/bin/git-credential-ghapp   # or `ghapp`: see below
//!     useHttpPath = true  # git sends path=owner/repo.git, so ghapp can pick the installation
//! ```
//!
//! The reset is what `gh auth setup-git` does too: without it a `store` or `cache` helper set
//! globally would answer first with whatever it saved — for an hour-long installation token,
//! soon an expired one. Helpers configured *after* it (later in the file, or in a later scope
//! such as the repository's config) still run when ghapp has nothing to say (daemon down, host
//! not served), so fallbacks keep working. Host-scoped helpers the user already had under the
//! same key are kept, moved after ghapp, rather than silently reset away.
//!
//! Idempotent: when the file already holds exactly this, nothing is written. `unconfigure`
//! removes the `ghapp` value(s), the reset directly in front of each, and — when it removed a
//! ghapp helper for the URL — `useHttpPath = true` (which it cannot tell from one the user set
//! by hand; documented). Other values, keys and sections are left alone; git drops a section
//! that ends up empty, so a configure/unconfigure round trip leaves the file as it was.
//!
//! The helper is `!exec` and the absolute path of `git-credential-ghapp` when it sits where
//! upgrades keep it (install.sh's, a package's or `cargo install`'s bin directory), which the
//! shell git starts replaces itself with; else
//! the short name `ghapp`, which git runs as `git credential-ghapp` (one more process per
//! lookup) — see [`helper_path`]. Configure run again rewrites the one form into the other when
//! that choice changes.
//!
//! Hosts: `--host` (a URL with `http://` configures that scheme, for test hosts served by Apps
//! with `insecure_http`); by default every host of the config file's Apps (both schemes for an
//! `insecure_http` App), or github.com when there is no config. `unconfigure` without `--host`
//! removes ghapp from every URL in the file.

use super::Context;
use super::exit::Failure;
use super::git_config::{GitConfig, Scope, split_key};
use super::host::{HostArg, Scheme};
use super::output;
use crate::cli::ConfigureArgs;
use anyhow::Result;
use helper_path::HelperChoice;

pub mod helper_path;

/// Runs `ghapp configure`.
pub fn configure(context: &Context, args: ConfigureArgs) -> Result<i32> {
    let scope = scope_of(&args);
    let git = GitConfig::scoped(scope);
    let choice = helper_path::choose();
    let helper = helper_value(context, &choice);
    for host in hosts_to_configure(context, &args)? {
        let mut changes = configure_url(&git, &host.url(), &helper)?;
        if let (false, HelperChoice::ShortName { reason }) = (changes.is_empty(), &choice) {
            changes.push(format!("short name, not a path: {reason}"));
        }
        if changes.is_empty() {
            output::print(&format!(
                "git ({}): {host} already uses ghapp; nothing changed\n",
                scope.flag()
            ))?;
        } else {
            output::print(&format!(
                "git ({}): {host}: {}\n",
                scope.flag(),
                changes.join("; ")
            ))?;
        }
    }
    Ok(0)
}

/// Runs `ghapp unconfigure`.
pub fn unconfigure(_context: &Context, args: ConfigureArgs) -> Result<i32> {
    let scope = scope_of(&args);
    let git = GitConfig::scoped(scope);
    let urls = match &args.host {
        Some(_) => vec![HostArg::parse(args.host.as_deref())?.url()],
        None => urls_using_ghapp(&git)?,
    };
    let mut removed_any = false;
    for url in urls {
        let removed = unconfigure_url(&git, &url)?;
        if !removed.is_empty() {
            removed_any = true;
            output::print(&format!(
                "git ({}): {url}: removed {}\n",
                scope.flag(),
                removed.join(", ")
            ))?;
        }
    }
    if !removed_any {
        output::print(&format!(
            "git ({}): no ghapp credential helper configured; nothing changed\n",
            scope.flag()
        ))?;
    }
    Ok(0)
}

fn scope_of(args: &ConfigureArgs) -> Scope {
    if args.system {
        Scope::System
    } else if args.local {
        Scope::Local
    } else {
        Scope::Global
    }
}

/// The helper's command (its path, or `ghapp`), followed by `--socket PATH` when configure
/// itself was given `--socket`, so git's helper reaches that daemon whatever the environment git
/// runs in.
fn helper_value(context: &Context, choice: &HelperChoice) -> String {
    let command = choice.command();
    match &context.socket {
        Some(path) => format!(
            "{command} --socket {}",
            shell_quote(&path.to_string_lossy())
        ),
        None => command,
    }
}

/// True for the helper values configure writes (and only those): `ghapp` or an absolute path
/// to `git-credential-ghapp` (after `!exec `, or bare as earlier versions wrote it), alone or
/// followed by `--socket …`.
pub fn is_ours(value: &str) -> bool {
    let value = helper_path::without_exec(value);
    let (command, rest) = value.split_once(' ').unwrap_or((value, ""));
    helper_path::is_helper_command(command) && (rest.is_empty() || rest.starts_with("--socket "))
}

/// The hosts to configure: `--host`, else the config's Apps, else github.com.
fn hosts_to_configure(context: &Context, args: &ConfigureArgs) -> Result<Vec<HostArg>> {
    if args.host.is_some() {
        return Ok(vec![HostArg::parse(args.host.as_deref())?]);
    }
    let config = context.config_file();
    if !config.path.exists() && config.source == ghapp_protocol::paths::Source::System {
        return Ok(vec![HostArg::parse(None)?]);
    }
    let loaded = ghapp_broker::Config::load(&config.path).map_err(|e| {
        Failure::new(
            super::exit::FAILURE,
            format!("{e}\nhint: fix the config (`ghapp doctor`), or name the host with --host"),
        )
    })?;
    let mut hosts: Vec<HostArg> = Vec::new();
    for app in &loaded.apps {
        let mut schemes = vec![Scheme::Https];
        if app.insecure_http {
            schemes.push(Scheme::Http);
        }
        for scheme in schemes {
            let host = HostArg {
                scheme,
                host: app.host.to_ascii_lowercase(),
            };
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    if hosts.is_empty() {
        hosts.push(HostArg::parse(None)?);
    }
    Ok(hosts)
}

/// Makes `url`'s keys what configure wants; returns what changed (empty: nothing).
fn configure_url(git: &GitConfig, url: &str, helper: &str) -> Result<Vec<String>> {
    let helper_key = format!("credential.{url}.helper");
    let path_key = format!("credential.{url}.useHttpPath");
    let mut changes = Vec::new();

    let values = git.get_all(&helper_key)?;
    let others: Vec<String> = values
        .iter()
        .filter(|v| !v.is_empty() && !is_ours(v))
        .cloned()
        .collect();
    let mut wanted = vec![String::new(), helper.to_string()];
    wanted.extend(others.iter().cloned());
    if values != wanted {
        git.set_all(&helper_key, &wanted)?;
        changes.push(format!(
            "credential helper {helper} (after a reset of earlier helpers)"
        ));
        if !others.is_empty() {
            changes.push(format!("kept after it: {}", others.join(", ")));
        }
    }
    // A value git cannot read as a boolean is as good as unset: replace it.
    if git.get_bool(&path_key).unwrap_or(None) != Some(true) {
        git.set(&path_key, "true")?;
        changes.push("useHttpPath true".to_string());
    }
    Ok(changes)
}

/// Removes what configure wrote for `url`; returns what was removed.
fn unconfigure_url(git: &GitConfig, url: &str) -> Result<Vec<String>> {
    let helper_key = format!("credential.{url}.helper");
    let path_key = format!("credential.{url}.useHttpPath");
    let values = git.get_all(&helper_key)?;
    let mut kept: Vec<String> = Vec::new();
    let mut removed = Vec::new();
    for value in values {
        if is_ours(&value) {
            if kept.last().is_some_and(|v| v.is_empty()) {
                kept.pop();
                removed.push("the helper reset".to_string());
            }
            removed.push(format!("credential helper {value}"));
        } else {
            kept.push(value);
        }
    }
    if removed.is_empty() {
        return Ok(removed);
    }
    git.set_all(&helper_key, &kept)?;
    if git.get_bool(&path_key).unwrap_or(None) == Some(true) {
        git.unset_all(&path_key)?;
        removed.push("useHttpPath".to_string());
    }
    Ok(removed)
}

/// Every `credential.<url>` in the file with a ghapp helper.
fn urls_using_ghapp(git: &GitConfig) -> Result<Vec<String>> {
    let mut urls: Vec<String> = Vec::new();
    for entry in git.list()? {
        let Some(("credential", Some(url), "helper")) = split_key(&entry.key) else {
            continue;
        };
        if entry.value.as_deref().is_some_and(is_ours) && !urls.iter().any(|u| u == url) {
            urls.push(url.to_string());
        }
    }
    Ok(urls)
}

/// Quotes a word for the shell git runs helpers through, only when needed.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'+' | b':' | b',')
        });
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_its_own_values() {
        assert!(is_ours("ghapp"));
        assert!(is_ours("ghapp --socket /run/ghapp/ghapp.sock"));
        assert!(is_ours("/usr/bin/git-credential-ghapp"));
        assert!(is_ours("!exec /usr/bin/git-credential-ghapp"));
        assert!(is_ours(
            "!exec /usr/bin/git-credential-ghapp --socket /run/ghapp/ghapp.sock"
        ));
        assert!(!is_ours("!exec ghapp"));
        assert!(!is_ours("!/usr/bin/git-credential-ghapp"));
        assert!(is_ours(
            "/home/u/.local/bin/git-credential-ghapp --socket /run/ghapp/ghapp.sock"
        ));
        assert!(!is_ours("/usr/bin/git-credential-ghapp get"));
        assert!(!is_ours("store"));
        assert!(!is_ours("ghappish"));
        assert!(!is_ours(""));
    }

    #[test]
    fn quotes_socket_paths_with_spaces() {
        assert_eq!(
            shell_quote("/run/ghapp/ghapp.sock"),
            "/run/ghapp/ghapp.sock"
        );
        assert_eq!(shell_quote("/tmp/my dir/s.sock"), "'/tmp/my dir/s.sock'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
