//! `--host` as people type it: `github.com`, `ghe.example.com:8443`, or a URL such as
//! `https://ghe.example.com` / `http://127.0.0.1:8080` (the scheme matters to `configure` and
//! `doctor`, which work on git's `credential.<url>` keys; http exists only for test hosts served
//! by Apps with `insecure_http`).

use super::exit::Failure;
use ghapp_protocol::api::{DEFAULT_HOST, check_host};
use ghapp_protocol::config::client_settings;
use std::fmt;
use std::path::Path;

/// The URL scheme git uses to reach a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The only scheme real GitHub hosts serve.
    Https,
    /// Plain http: emulators and tests (Apps with `insecure_http = true`).
    Http,
}

impl Scheme {
    /// `https` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// A parsed `--host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostArg {
    /// The scheme: given in the URL form, else https.
    pub scheme: Scheme,
    /// `host[:port]`, lowercased, as git sends it in the credential `host` attribute.
    pub host: String,
}

impl HostArg {
    /// Parses `HOST[:PORT]` or `http(s)://HOST[:PORT][/]`; `None` means github.com.
    pub fn parse(text: Option<&str>) -> Result<HostArg, Failure> {
        let Some(text) = text else {
            return Ok(HostArg {
                scheme: Scheme::Https,
                host: DEFAULT_HOST.to_string(),
            });
        };
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("https://") {
            (Scheme::Https, &trimmed["https://".len()..])
        } else if lower.starts_with("http://") {
            (Scheme::Http, &trimmed["http://".len()..])
        } else if trimmed.contains("://") {
            return Err(Failure::usage(format!(
                "--host {text:?}: only https:// (or http:// for test hosts) URLs name a git host"
            )));
        } else {
            (Scheme::Https, trimmed)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('@') {
            return Err(Failure::usage(format!(
                "--host {text:?}: expected HOST[:PORT] or https://HOST[:PORT], without a path or user"
            )));
        }
        let host = check_host(rest).map_err(|e| Failure::usage(format!("--host: {e}")))?;
        Ok(HostArg { scheme, host })
    }

    /// `--host` for commands that ask the daemon for a token: the flag; else, when every
    /// `[[app]]` in the config file serves one and the same host, that host (a machine set up
    /// for one GitHub Enterprise Server need not repeat it); else github.com. A config this user
    /// cannot read, that does not validate or is not trusted just means github.com.
    pub fn for_request(flag: Option<&str>, config_file: &Path) -> Result<HostArg, Failure> {
        if flag.is_some() {
            return HostArg::parse(flag);
        }
        match single_configured_host(config_file) {
            Some(host) => HostArg::parse(Some(&host)),
            None => HostArg::parse(None),
        }
    }

    /// The URL git matches `credential.<url>.*` keys against: `https://github.com`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.host)
    }
}

/// The one host every `[[app]]` of the config serves, if there is exactly one. Read through
/// the client's view of the config ([`client_settings`]): a missing, broken or untrusted file
/// names no host.
fn single_configured_host(config_file: &Path) -> Option<String> {
    let mut hosts = client_settings(config_file)?.app_hosts;
    hosts.dedup();
    match hosts.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

impl fmt::Display for HostArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hosts_and_urls() {
        let parse = |s| HostArg::parse(Some(s)).unwrap();
        assert_eq!(HostArg::parse(None).unwrap().url(), "https://github.com");
        assert_eq!(
            parse("GHE.example.com:8443").url(),
            "https://ghe.example.com:8443"
        );
        assert_eq!(parse("https://ghe.example.com/").host, "ghe.example.com");
        assert_eq!(
            parse("http://127.0.0.1:8080").url(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(parse("HTTP://127.0.0.1:8080").scheme, Scheme::Http);
    }

    #[test]
    fn request_host_defaults_to_the_only_configured_host() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let host = |flag: Option<&str>| HostArg::for_request(flag, &config).unwrap().host;
        assert_eq!(host(None), "github.com", "no config");
        let app = |name: &str, host: &str| {
            format!(
                "[[app]]\nname = \"{name}\"\nhost = \"{host}\"\napp_id = 1\nprivate_key_env = \"K\"\n"
            )
        };
        std::fs::write(
            &config,
            format!(
                "[daemon]\nmin_ttl = \"30m\"\n{}{}",
                app("a", "GHE.corp"),
                app("b", "ghe.corp")
            ),
        )
        .unwrap();
        assert_eq!(host(None), "ghe.corp");
        assert_eq!(host(Some("github.com")), "github.com", "the flag wins");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
            assert_eq!(
                host(None),
                "github.com",
                "a file others can write is ignored"
            );
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(
            &config,
            format!("{}{}", app("a", "ghe.corp"), app("b", "github.com")),
        )
        .unwrap();
        assert_eq!(host(None), "github.com", "two hosts: no guessing");
        std::fs::write(&config, "not toml [").unwrap();
        assert_eq!(host(None), "github.com");
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "ssh://github.com",
            "https://github.com/acme",
            "user@github.com",
            "",
            "git hub.com",
        ] {
            let err = HostArg::parse(Some(bad)).unwrap_err();
            assert_eq!(
                err.code,
                super::super::exit::USAGE,
                "{bad}: {}",
                err.message
            );
        }
    }
}
