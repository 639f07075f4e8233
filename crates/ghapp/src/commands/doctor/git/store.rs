//! git-credential-store's files: one credential per line as a URL,
//! `https://user:password@host[:port][/path]`, user and password percent-encoded. Doctor looks
//! for installation tokens saved there (user `x-access-token` or a `ghs_` password) and reports
//! them by fingerprint only.

use super::chain::Target;
use std::path::PathBuf;

/// A saved ghapp-style credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The saved user name.
    pub username: String,
    /// The saved password's fingerprint.
    pub fingerprint: String,
}

/// git's default store files: `~/.git-credentials` and `$XDG_CONFIG_HOME/git/credentials`
/// (`~/.config/git/credentials`).
pub fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if let Some(home) = &home {
        files.push(home.join(".git-credentials"));
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".config")));
    if let Some(xdg) = xdg {
        files.push(xdg.join("git").join("credentials"));
    }
    files
}

/// The installation-token credentials `file` holds for `target` (none if unreadable).
pub fn ghapp_credentials(file: &std::path::Path, target: &Target) -> Vec<Saved> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| parse_line(line.trim(), target))
        .collect()
}

fn parse_line(line: &str, target: &Target) -> Option<Saved> {
    let (scheme, rest) = line.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, host) = authority.rsplit_once('@')?;
    // git-credential-store percent-encodes the host too (`127.0.0.1%3a8080`).
    if !target.is(scheme, &decode(host)) {
        return None;
    }
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = decode(user);
    let password = zeroize::Zeroizing::new(decode(password));
    if user == "x-access-token" || password.starts_with("ghs_") {
        Some(Saved {
            username: user,
            fingerprint: ghapp_protocol::secret::fingerprint(&password),
        })
    } else {
        None
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_saved_installation_tokens_only() {
        let t = Target::new("https", "github.com");
        let saved = parse_line("https://x-access-token:ghs_abc@github.com", &t).unwrap();
        assert_eq!(saved.username, "x-access-token");
        assert!(saved.fingerprint.starts_with("sha256:"));
        assert!(!format!("{saved:?}").contains("ghs_abc"));
        assert!(parse_line("https://alice:ghs_x@github.com/acme/widgets.git", &t).is_some());
        assert!(
            parse_line("https://alice:ghp_personal@github.com", &t).is_none(),
            "a PAT is not ours"
        );
        assert!(
            parse_line("https://x-access-token:ghs_abc@gitlab.com", &t).is_none(),
            "other host"
        );
        assert!(
            parse_line("http://x-access-token:ghs_abc@github.com", &t).is_none(),
            "other scheme"
        );
        assert!(parse_line("garbage", &t).is_none());
        let local = Target::new("http", "127.0.0.1:8080");
        // Exactly what git-credential-store writes for host 127.0.0.1:8080, password ghs_a:b@c.
        let written = parse_line(
            "http://x-access-token:ghs_a%3ab%40c@127.0.0.1%3a8080",
            &local,
        )
        .unwrap();
        assert_eq!(
            written.fingerprint,
            ghapp_protocol::secret::fingerprint("ghs_a:b@c")
        );
        assert!(parse_line("http://x-access-token:tok@127.0.0.1:8080", &local).is_some());
    }
}
