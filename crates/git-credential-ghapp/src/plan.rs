//! What to ask the daemon for, decided from git's request alone (pure, so every mapping is unit
//! tested): the host, the protocol, and — when git sends `path` (credential.useHttpPath) — the
//! owner and repository.

use ghapp_protocol::api::{TokenQuery, check_host, check_name};
use ghapp_protocol::credential::{CredentialRequest, TOKEN_USERNAME, repository_from_path};

/// The decision for one `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ask the daemon this.
    Ask(TokenQuery),
    /// Do not ask; say why (for `-v`).
    Skip(Skip),
}

/// Why a `get` is not sent to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No protocol or no (or an empty) host: not a request git would send. Nothing is printed,
    /// even with `--require`, as for any malformed input.
    Incomplete,
    /// A protocol ghapp never serves (`smtp` for send-email, `cert`, …): another helper's
    /// business, so nothing is printed even with `--require`.
    Protocol(String),
    /// git asks for a specific user other than `x-access-token` (a `user@` in the URL or
    /// `credential.username`): that identity is someone else's credential.
    OtherUser(String),
    /// The host or path cannot name a GitHub host or repository.
    Unservable(String),
}

impl Skip {
    /// Whether `--require` turns this into `quit=1`: only for requests ghapp could have been
    /// expected to answer, never for malformed input or other protocols.
    pub fn fails_closed(&self) -> bool {
        matches!(self, Skip::OtherUser(_) | Skip::Unservable(_))
    }

    /// A sentence for `-v`.
    pub fn describe(&self) -> String {
        match self {
            Skip::Incomplete => "the request has no protocol or host; nothing to answer".into(),
            Skip::Protocol(p) => format!(
                "protocol {p:?} is not served (only https, and http for insecure_http Apps)"
            ),
            Skip::OtherUser(u) => format!(
                "git asks for user {u:?}, not {TOKEN_USERNAME}; leaving it to other helpers"
            ),
            Skip::Unservable(why) => why.clone(),
        }
    }
}

/// Whether git's protocol is one the daemon may serve; http is passed on, and the daemon
/// answers it only for Apps configured with `insecure_http`.
pub fn served_protocol(protocol: Option<&str>) -> Option<&str> {
    protocol.filter(|p| matches!(*p, "https" | "http"))
}

/// Maps git's request to the daemon query, or says why not.
pub fn plan(request: &CredentialRequest) -> Plan {
    let (Some(protocol), Some(host)) = (request.protocol.as_deref(), request.host.as_deref())
    else {
        return Plan::Skip(Skip::Incomplete);
    };
    if host.is_empty() || protocol.is_empty() {
        return Plan::Skip(Skip::Incomplete);
    }
    if served_protocol(Some(protocol)).is_none() {
        return Plan::Skip(Skip::Protocol(protocol.to_string()));
    }
    if let Some(user) = request
        .username
        .as_deref()
        .filter(|u| !u.is_empty() && *u != TOKEN_USERNAME)
    {
        return Plan::Skip(Skip::OtherUser(user.to_string()));
    }
    let host = match check_host(host) {
        Ok(host) => host,
        Err(e) => return Plan::Skip(Skip::Unservable(e.0)),
    };
    let (owner, repo) = match request.path.as_deref().and_then(repository_from_path) {
        Some((owner, repo)) => {
            let owner = match check_name("owner", &owner) {
                Ok(owner) => owner,
                Err(e) => {
                    return Plan::Skip(Skip::Unservable(format!(
                        "path names no GitHub repository: {}",
                        e.0
                    )));
                }
            };
            let repo = match repo.map(|r| check_name("repo", &r)).transpose() {
                Ok(repo) => repo,
                Err(e) => {
                    return Plan::Skip(Skip::Unservable(format!(
                        "path names no GitHub repository: {}",
                        e.0
                    )));
                }
            };
            (Some(owner), repo)
        }
        None => (None, None),
    };
    Plan::Ask(TokenQuery {
        host: Some(host),
        owner,
        repo,
        protocol: Some(protocol.to_string()),
        ..TokenQuery::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghapp_protocol::credential::parse_request;

    fn plan_of(input: &str) -> Plan {
        plan(&parse_request(input.as_bytes()).expect("valid request"))
    }

    fn query(host: &str, owner: Option<&str>, repo: Option<&str>, protocol: &str) -> Plan {
        Plan::Ask(TokenQuery {
            host: Some(host.into()),
            owner: owner.map(Into::into),
            repo: repo.map(Into::into),
            protocol: Some(protocol.into()),
            ..TokenQuery::default()
        })
    }

    #[test]
    fn path_becomes_owner_and_repo() {
        assert_eq!(
            plan_of("protocol=https\nhost=github.com\npath=acme/widgets.git\n"),
            query("github.com", Some("acme"), Some("widgets"), "https")
        );
        assert_eq!(
            plan_of("protocol=https\nhost=GHE.example.com:8443\npath=acme/widgets.git/info/lfs\n"),
            query(
                "ghe.example.com:8443",
                Some("acme"),
                Some("widgets"),
                "https"
            )
        );
        assert_eq!(
            plan_of("url=https://github.com/acme/widgets\n"),
            query("github.com", Some("acme"), Some("widgets"), "https")
        );
        assert_eq!(
            plan_of("protocol=https\nhost=github.com\npath=acme\n"),
            query("github.com", Some("acme"), None, "https")
        );
    }

    #[test]
    fn no_path_asks_for_the_hosts_only_installation() {
        assert_eq!(
            plan_of("protocol=https\nhost=github.com\n"),
            query("github.com", None, None, "https")
        );
        assert_eq!(
            plan_of("protocol=https\nhost=github.com\npath=/\n"),
            query("github.com", None, None, "https")
        );
    }

    #[test]
    fn http_is_passed_for_the_daemon_to_decide() {
        assert_eq!(
            plan_of("protocol=http\nhost=127.0.0.1:8080\npath=acme/w.git\n"),
            query("127.0.0.1:8080", Some("acme"), Some("w"), "http")
        );
    }

    #[test]
    fn unknown_keys_and_token_username_are_fine() {
        assert_eq!(
            plan_of(
                "capability[]=authtype\nprotocol=https\nhost=github.com\nusername=x-access-token\nwwwauth[]=Basic realm=\"GitHub\"\npath=a/b.git\n"
            ),
            query("github.com", Some("a"), Some("b"), "https")
        );
    }

    #[test]
    fn skips_with_reasons() {
        assert_eq!(plan_of("host=github.com\n"), Plan::Skip(Skip::Incomplete));
        assert_eq!(plan_of("protocol=https\n"), Plan::Skip(Skip::Incomplete));
        assert_eq!(plan_of("url=https://\n"), Plan::Skip(Skip::Incomplete));
        assert_eq!(plan_of(""), Plan::Skip(Skip::Incomplete));
        assert_eq!(
            plan_of("protocol=smtp\nhost=mail.example.com\n"),
            Plan::Skip(Skip::Protocol("smtp".into()))
        );
        assert_eq!(
            plan_of("protocol=HTTPS\nhost=github.com\n"),
            Plan::Skip(Skip::Protocol("HTTPS".into()))
        );
        assert_eq!(
            plan_of("protocol=https\nhost=github.com\nusername=alice\n"),
            Plan::Skip(Skip::OtherUser("alice".into()))
        );
        assert!(matches!(
            plan_of("protocol=https\nhost=git hub.com\n"),
            Plan::Skip(Skip::Unservable(_))
        ));
        assert!(matches!(
            plan_of("protocol=https\nhost=github.com\npath=~alice/x\n"),
            Plan::Skip(Skip::Unservable(_))
        ));
        assert!(matches!(
            plan_of("protocol=https\nhost=github.com\npath=acme/..\n"),
            Plan::Skip(Skip::Unservable(_))
        ));
    }

    #[test]
    fn only_servable_requests_fail_closed() {
        assert!(!Skip::Incomplete.fails_closed());
        assert!(!Skip::Protocol("smtp".into()).fails_closed());
        assert!(Skip::OtherUser("alice".into()).fails_closed());
        assert!(Skip::Unservable("x".into()).fails_closed());
    }
}
