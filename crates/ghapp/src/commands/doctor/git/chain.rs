//! The credential helpers git runs for a URL, and what kind each is, computed from
//! `git config --list` the way git's credential.c applies `credential.*` keys (every matching
//! entry, in reading order; see the parent module).

use crate::commands::git_config::{Entry, split_key};
use std::path::PathBuf;

/// The URL git asks credentials for: scheme, host and port (no path: host-wide).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    scheme: String,
    host: String,
    port: u16,
}

impl Target {
    /// `https` + `ghe.example.com:8443`.
    pub fn new(scheme: &str, host_port: &str) -> Self {
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_port(host_port, default_port(&scheme));
        Target { scheme, host, port }
    }

    /// True for a `credential.<pattern>` that applies to every repository on this host.
    pub fn matched_by(&self, pattern: &str) -> bool {
        let Some((scheme, rest)) = pattern.split_once("://") else {
            return false; // git ignores patterns it cannot normalise as URLs
        };
        if !scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") || authority.contains('@') {
            return false; // repository- or user-specific: not host-wide
        }
        let (host, port) = split_port(authority, default_port(&self.scheme));
        port == self.port && host_matches(&host, &self.host)
    }

    /// True when a store file's credential line is for this host.
    pub fn is(&self, scheme: &str, host_port: &str) -> bool {
        let (host, port) = split_port(host_port, default_port(&scheme.to_ascii_lowercase()));
        scheme.eq_ignore_ascii_case(&self.scheme) && host == self.host && port == self.port
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

fn split_port(host_port: &str, default: u16) -> (String, u16) {
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => match port.parse() {
            Ok(port) => (host.to_ascii_lowercase(), port),
            Err(_) => (host_port.to_ascii_lowercase(), default),
        },
        _ => (host_port.to_ascii_lowercase(), default),
    }
}

/// git's host match: label by label, `*` matching one whole label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len()
        && pattern
            .iter()
            .zip(&host)
            .all(|(p, h)| *p == "*" || p.eq_ignore_ascii_case(h))
}

/// What a helper is, as far as expiry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperKind {
    /// `ghapp`, `ghapp --socket …`, a path to git-credential-ghapp.
    Ghapp,
    /// git-credential-store, with its `--file` if given.
    Store {
        /// Explicit `--file` paths; empty means git's defaults.
        files: Vec<PathBuf>,
    },
    /// git-credential-cache.
    Cache,
    /// OS keyrings and the Git Credential Manager.
    Keyring,
    /// `gh auth git-credential`.
    Gh,
    /// Anything else.
    Other,
}

/// One helper git will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    /// The configured value.
    pub value: String,
    /// What kind.
    pub kind: HelperKind,
    /// Where it is configured (`file:/home/u/.gitconfig`).
    pub origin: String,
}

impl Helper {
    /// The origin without git's `file:` prefix.
    pub fn origin_display(&self) -> String {
        self.origin
            .strip_prefix("file:")
            .unwrap_or(&self.origin)
            .to_string()
    }
}

/// The helpers git runs for `target`, in order.
pub fn helpers(entries: &[Entry], target: &Target) -> Vec<Helper> {
    let mut list = Vec::new();
    for entry in entries {
        let Some(("credential", subsection, "helper")) = split_key(&entry.key) else {
            continue;
        };
        if subsection.is_some_and(|pattern| !target.matched_by(pattern)) {
            continue;
        }
        match entry.value.as_deref() {
            None | Some("") => list.clear(),
            Some(value) => list.push(Helper {
                value: value.to_string(),
                kind: classify(value),
                origin: entry.origin.clone(),
            }),
        }
    }
    list
}

/// The effective `credential.useHttpPath` for `target` (the last matching entry wins).
pub fn use_http_path(entries: &[Entry], target: &Target) -> Option<bool> {
    let mut value = None;
    for entry in entries {
        let Some(("credential", subsection, "usehttppath")) = split_key(&entry.key) else {
            continue;
        };
        if subsection.is_some_and(|pattern| !target.matched_by(pattern)) {
            continue;
        }
        value = Some(match entry.value.as_deref() {
            None => true,
            Some(text) => matches!(
                text.to_ascii_lowercase().as_str(),
                "true" | "yes" | "on" | "1"
            ),
        });
    }
    value
}

/// Classifies a `credential.helper` value the way git resolves it: `!cmd` is a shell snippet,
/// an absolute path runs as is, anything else runs `git credential-<first word>`.
pub fn classify(value: &str) -> HelperKind {
    let value = value.trim();
    if let Some(snippet) = value.strip_prefix('!') {
        if snippet.contains("git-credential-ghapp") {
            return HelperKind::Ghapp;
        }
        if snippet.contains("auth git-credential")
            && snippet
                .split_whitespace()
                .next()
                .is_some_and(|w| w.ends_with("gh"))
        {
            return HelperKind::Gh;
        }
        return HelperKind::Other;
    }
    let mut words = value.split_whitespace();
    let Some(first) = words.next() else {
        return HelperKind::Other;
    };
    let args: Vec<&str> = words.collect();
    let name = if first.starts_with('/') {
        match first
            .rsplit('/')
            .next()
            .and_then(|base| base.strip_prefix("git-credential-"))
        {
            Some(name) => name,
            None => return HelperKind::Other,
        }
    } else {
        first
    };
    match name {
        "ghapp" => HelperKind::Ghapp,
        "store" => HelperKind::Store {
            files: store_files(&args),
        },
        "cache" => HelperKind::Cache,
        "osxkeychain" | "libsecret" | "wincred" | "manager" | "manager-core" | "gnome-keyring"
        | "netrc" => HelperKind::Keyring,
        _ => HelperKind::Other,
    }
}

/// `--file=PATH` / `--file PATH` arguments of `store`, with `~/` expanded.
fn store_files(args: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let path = if let Some(path) = arg.strip_prefix("--file=") {
            Some(path.to_string())
        } else if *arg == "--file" {
            iter.next().map(|p| p.to_string())
        } else {
            None
        };
        if let Some(path) = path {
            let path = path.trim_matches(|c| c == '"' || c == '\'');
            files.push(match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => PathBuf::from(path),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: Option<&str>) -> Entry {
        Entry {
            scope: "global".into(),
            origin: "file:/h/.gitconfig".into(),
            key: key.into(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn url_patterns() {
        let t = Target::new("https", "github.com");
        assert!(t.matched_by("https://github.com"));
        assert!(t.matched_by("https://GitHub.com/"));
        assert!(t.matched_by("https://github.com:443"));
        assert!(t.matched_by("https://*.com"));
        assert!(!t.matched_by("http://github.com"));
        assert!(
            !t.matched_by("https://github.com/acme"),
            "repository-specific"
        );
        assert!(!t.matched_by("https://user@github.com"));
        assert!(!t.matched_by("github.com"));
        let local = Target::new("http", "127.0.0.1:8080");
        assert!(local.matched_by("http://127.0.0.1:8080"));
        assert!(!local.matched_by("http://127.0.0.1"));
    }

    #[test]
    fn empty_value_resets_the_list() {
        let entries = vec![
            entry("credential.helper", Some("store")),
            entry("credential.https://github.com.helper", Some("")),
            entry("credential.https://github.com.helper", Some("ghapp")),
            entry("credential.helper", Some("cache --timeout 300")),
            entry("credential.https://gitlab.com.helper", Some("other")),
        ];
        let list = helpers(&entries, &Target::new("https", "github.com"));
        let kinds: Vec<HelperKind> = list.into_iter().map(|h| h.kind).collect();
        assert_eq!(kinds, vec![HelperKind::Ghapp, HelperKind::Cache]);
    }

    #[test]
    fn helper_kinds() {
        assert_eq!(classify("ghapp --socket /x.sock"), HelperKind::Ghapp);
        assert_eq!(
            classify("/usr/local/bin/git-credential-ghapp"),
            HelperKind::Ghapp
        );
        assert_eq!(classify("store"), HelperKind::Store { files: vec![] });
        assert_eq!(
            classify("store --file=/tmp/c"),
            HelperKind::Store {
                files: vec!["/tmp/c".into()]
            }
        );
        assert_eq!(
            classify("store --file /tmp/c"),
            HelperKind::Store {
                files: vec!["/tmp/c".into()]
            }
        );
        assert_eq!(classify("cache --timeout=3600"), HelperKind::Cache);
        assert_eq!(classify("osxkeychain"), HelperKind::Keyring);
        assert_eq!(classify("!/usr/bin/gh auth git-credential"), HelperKind::Gh);
        assert_eq!(classify("!f() { echo x; }; f"), HelperKind::Other);
    }

    #[test]
    fn use_http_path_last_match_wins() {
        let t = Target::new("https", "github.com");
        assert_eq!(use_http_path(&[], &t), None);
        let entries = vec![
            entry("credential.usehttppath", Some("true")),
            entry("credential.https://github.com.usehttppath", Some("false")),
        ];
        assert_eq!(use_http_path(&entries, &t), Some(false));
        assert_eq!(
            use_http_path(
                &[entry("credential.https://github.com.usehttppath", None)],
                &t
            ),
            Some(true)
        );
    }
}
