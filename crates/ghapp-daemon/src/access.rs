//! Who may use the socket, and for what: the peer's credentials (SO_PEERCRED), the uid/gid
//! allow-lists and the per-uid/gid policies of `[[daemon.policy]]`.
//!
//! Rules, in order:
//! 1. A peer is admitted when its uid is the daemon's own uid, root, or in `allow_uids`, or its
//!    (effective, primary) gid is in `allow_gids` or is `socket_group`'s gid. The daemon's own uid
//!    and root are always admitted: both can read the daemon's memory anyway.
//! 2. An admitted peer is then held to the first `[[daemon.policy]]` entry naming its uid, else
//!    the first naming its gid (an entry naming both matches only a peer with both); no entry:
//!    no restriction beyond the Apps' own.

use ghapp_broker::PolicyConfig;
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::permissions::{Level, Permissions};
use std::collections::BTreeSet;
use std::fmt;

/// The credentials of a connected client, as the kernel recorded them at `connect(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Effective (primary) gid; supplementary groups are not visible through SO_PEERCRED.
    pub gid: u32,
    /// Process id, when the platform reports it (for the audit log; it may be reused).
    pub pid: Option<i32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        Ok(())
    }
}

/// Why a policy refused a request: the status to answer and an actionable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account or repository is outside the peer's policy (403).
    Forbidden(String),
    /// A permission beyond the peer's ceiling (422).
    BeyondCeiling(String),
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Forbidden(_) => 403,
            Refusal::BeyondCeiling(_) => 422,
        }
    }

    /// The message for the `{"error": …}` body.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Forbidden(m) | Refusal::BeyondCeiling(m) => m,
        }
    }
}

/// One `[[daemon.policy]]` entry, validated and normalized (names lowercased: GitHub account
/// and repository names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Position in the config file (1-based), named in refusals so users find the entry.
    pub index: usize,
    /// The uid it applies to.
    pub uid: Option<u32>,
    /// The gid it applies to.
    pub gid: Option<u32>,
    /// Accounts allowed; `None` means any.
    pub owners: Option<BTreeSet<String>>,
    /// Repositories allowed as (owner, repo); repo `*` means every repository of the owner.
    /// `None` means any repository of an allowed owner.
    pub repos: Option<Vec<(String, String)>>,
    /// Permission ceiling.
    pub ceiling: Option<Permissions>,
}

/// The permission runner tokens need on the organization.
const RUNNER_PERMISSION: &str = "organization_self_hosted_runners";
/// What a repository runner token needs (GitHub: repository `administration: write`).
const REPOSITORY_RUNNER_PERMISSION: &str = "administration";

impl PeerPolicy {
    /// Validates one config entry (`index` is 1-based).
    pub fn from_config(index: usize, entry: &PolicyConfig) -> Result<PeerPolicy, String> {
        if entry.uid.is_none() && entry.gid.is_none() {
            return Err(format!(
                "[[daemon.policy]] entry {index} names neither uid nor gid: add `uid = N` or `gid = N`"
            ));
        }
        let owners = match &entry.owners {
            Some(list) if !list.iter().any(|o| o == "*") => {
                let mut set = BTreeSet::new();
                for owner in list {
                    ghapp_protocol::api::check_name("owner", owner)
                        .map_err(|e| format!("[[daemon.policy]] entry {index}: owners: {e}"))?;
                    set.insert(owner.to_ascii_lowercase());
                }
                Some(set)
            }
            _ => None,
        };
        let repos = match &entry.repos {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for item in list {
                    let parsed = item.split_once('/').and_then(|(owner, repo)| {
                        let owner = ghapp_protocol::api::check_name("owner", owner).ok()?;
                        let repo = if repo == "*" {
                            repo.to_string()
                        } else {
                            ghapp_protocol::api::check_name("repo", repo).ok()?
                        };
                        Some((owner.to_ascii_lowercase(), repo.to_ascii_lowercase()))
                    });
                    match parsed {
                        Some(pair) => out.push(pair),
                        None => {
                            return Err(format!(
                                "[[daemon.policy]] entry {index}: repos item {item:?} is not OWNER/REPO or OWNER/*"
                            ));
                        }
                    }
                }
                Some(out)
            }
        };
        Ok(PeerPolicy {
            index,
            uid: entry.uid,
            gid: entry.gid,
            owners,
            repos,
            ceiling: entry.permissions.clone(),
        })
    }

    fn who(&self) -> String {
        match (self.uid, self.gid) {
            (Some(uid), Some(gid)) => format!("uid {uid} gid {gid}"),
            (Some(uid), None) => format!("uid {uid}"),
            (None, Some(gid)) => format!("gid {gid}"),
            (None, None) => "this peer".to_string(),
        }
    }

    fn refuse(&self, what: String) -> Refusal {
        Refusal::Forbidden(format!(
            "{what} is not allowed for {} by [[daemon.policy]] entry {} of the daemon's config",
            self.who(),
            self.index
        ))
    }

    fn owner_allowed(&self, owner: &str) -> bool {
        self.owners
            .as_ref()
            .is_none_or(|owners| owners.contains(&owner.to_ascii_lowercase()))
    }

    fn repo_allowed(&self, owner: &str, repo: Option<&str>) -> bool {
        let Some(repos) = &self.repos else {
            return true;
        };
        let Some(repo) = repo else { return false };
        let (owner, repo) = (owner.to_ascii_lowercase(), repo.to_ascii_lowercase());
        repos
            .iter()
            .any(|(o, r)| *o == owner && (r == "*" || *r == repo))
    }

    /// Checks a token request against this policy. A request naming no permissions is narrowed
    /// to the ceiling (so a restricted peer never receives the App's full permissions).
    pub fn check_token(&self, query: &mut TokenQuery) -> Result<(), Refusal> {
        let Some(owner) = query.owner.clone() else {
            if self.owners.is_some() || self.repos.is_some() {
                return Err(self.refuse("a token without naming an owner".to_string()));
            }
            return self.apply_ceiling(&mut query.permissions);
        };
        if !self.owner_allowed(&owner) {
            return Err(self.refuse(format!("account {owner}")));
        }
        if !self.repo_allowed(&owner, query.repo.as_deref()) {
            return Err(match &query.repo {
                Some(repo) => self.refuse(format!("repository {owner}/{repo}")),
                None => self.refuse(format!(
                    "an installation-wide token for {owner} (name a repository)"
                )),
            });
        }
        self.apply_ceiling(&mut query.permissions)
    }

    /// Checks what the broker actually granted for a request this policy admitted: with
    /// `repos`, the token must be narrowed to allowed repositories. The request check alone is
    /// not enough: an App configured `installation_wide` answers a request for one repository
    /// with a token for every repository of the installation.
    pub fn check_grant(&self, owner: &str, repositories: &[String]) -> Result<(), Refusal> {
        if !self.owner_allowed(owner) {
            return Err(self.refuse(format!("a token for account {owner}")));
        }
        if self.repos.is_none() {
            return Ok(());
        }
        if repositories.is_empty() {
            return Err(self.refuse(format!(
                "an installation-wide token for {owner} (the GitHub App serving it is configured installation_wide, so its tokens are not narrowed to one repository)"
            )));
        }
        match repositories
            .iter()
            .find(|repo| !self.repo_allowed(owner, Some(repo)))
        {
            Some(repo) => Err(self.refuse(format!("a token covering {owner}/{repo}"))),
            None => Ok(()),
        }
    }

    /// Checks a runner-token request (organization-wide, needs
    /// `organization_self_hosted_runners: write`).
    pub fn check_runner(&self, org: &str) -> Result<(), Refusal> {
        if !self.owner_allowed(org) {
            return Err(self.refuse(format!("account {org}")));
        }
        if self.repos.is_some() {
            return Err(self.refuse(format!("an organization-wide runner token for {org}")));
        }
        if let Some(ceiling) = &self.ceiling
            && ceiling
                .get(RUNNER_PERMISSION)
                .is_none_or(|level| level < Level::Write)
        {
            return Err(Refusal::BeyondCeiling(format!(
                "runner tokens need {RUNNER_PERMISSION}:write, beyond the ceiling for {} in [[daemon.policy]] entry {}",
                self.who(),
                self.index
            )));
        }
        Ok(())
    }

    /// Checks a repository runner-token request (needs `administration: write` on it).
    pub fn check_repository_runner(&self, owner: &str, repo: &str) -> Result<(), Refusal> {
        if !self.owner_allowed(owner) {
            return Err(self.refuse(format!("account {owner}")));
        }
        if !self.repo_allowed(owner, Some(repo)) {
            return Err(self.refuse(format!("a runner token for {owner}/{repo}")));
        }
        if let Some(ceiling) = &self.ceiling
            && ceiling
                .get(REPOSITORY_RUNNER_PERMISSION)
                .is_none_or(|level| level < Level::Write)
        {
            return Err(Refusal::BeyondCeiling(format!(
                "repository runner tokens need {REPOSITORY_RUNNER_PERMISSION}:write, beyond the ceiling for {} in [[daemon.policy]] entry {}",
                self.who(),
                self.index
            )));
        }
        Ok(())
    }

    fn apply_ceiling(&self, wanted: &mut Permissions) -> Result<(), Refusal> {
        let Some(ceiling) = &self.ceiling else {
            return Ok(());
        };
        if wanted.is_empty() {
            *wanted = ceiling.clone();
            return Ok(());
        }
        match wanted.first_beyond(ceiling) {
            None => Ok(()),
            Some((name, level)) => Err(Refusal::BeyondCeiling(format!(
                "permission {name}:{level} is beyond the ceiling ({}) for {} in [[daemon.policy]] entry {}",
                ceiling.to_list(),
                self.who(),
                self.index
            ))),
        }
    }
}

/// The allow-lists and policies in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    /// Admitted uids (always includes the daemon's own uid and root).
    pub uids: BTreeSet<u32>,
    /// Admitted gids.
    pub gids: BTreeSet<u32>,
    /// Policies in config order.
    pub policies: Vec<PeerPolicy>,
}

impl AccessRules {
    /// Builds the rules: `own_uid` and root are always admitted; `socket_gid` (the gid of
    /// `socket_group`) is admitted when given.
    pub fn new(
        own_uid: u32,
        allow_uids: &[u32],
        allow_gids: &[u32],
        socket_gid: Option<u32>,
        policies: &[PolicyConfig],
    ) -> Result<AccessRules, String> {
        let mut uids: BTreeSet<u32> = allow_uids.iter().copied().collect();
        uids.insert(own_uid);
        uids.insert(0);
        let mut gids: BTreeSet<u32> = allow_gids.iter().copied().collect();
        gids.extend(socket_gid);
        let policies = policies
            .iter()
            .enumerate()
            .map(|(i, p)| PeerPolicy::from_config(i + 1, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AccessRules {
            uids,
            gids,
            policies,
        })
    }

    /// True when the peer may use the daemon at all.
    pub fn admits(&self, peer: &Peer) -> bool {
        self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid)
    }

    /// The policy the peer is held to, if any.
    pub fn policy_for(&self, peer: &Peer) -> Option<&PeerPolicy> {
        let matches = |p: &&PeerPolicy| {
            p.uid.is_none_or(|uid| uid == peer.uid) && p.gid.is_none_or(|gid| gid == peer.gid)
        };
        self.policies
            .iter()
            .filter(|p| p.uid.is_some())
            .find(matches)
            .or_else(|| {
                self.policies
                    .iter()
                    .filter(|p| p.uid.is_none())
                    .find(matches)
            })
    }

    /// The message a refused peer receives.
    pub fn refusal_message(&self, peer: &Peer, config: &str) -> String {
        format!(
            "uid {} (gid {}) may not use this ghapp daemon: add the uid to [daemon] allow_uids or the gid to allow_gids in {config} and reload it (SIGHUP)",
            peer.uid, peer.gid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        uid: Option<u32>,
        gid: Option<u32>,
        owners: Option<&[&str]>,
        repos: Option<&[&str]>,
        perms: Option<&str>,
    ) -> PolicyConfig {
        PolicyConfig {
            uid,
            gid,
            owners: owners.map(|o| o.iter().map(|s| s.to_string()).collect()),
            repos: repos.map(|r| r.iter().map(|s| s.to_string()).collect()),
            permissions: perms.map(|p| Permissions::parse_list(p).unwrap()),
        }
    }

    fn query(owner: Option<&str>, repo: Option<&str>, perms: &str) -> TokenQuery {
        TokenQuery {
            owner: owner.map(str::to_string),
            repo: repo.map(str::to_string),
            permissions: Permissions::parse_list(perms).unwrap(),
            ..Default::default()
        }
    }

    const PEER: Peer = Peer {
        uid: 1000,
        gid: 100,
        pid: Some(42),
    };

    #[test]
    fn own_uid_and_root_are_always_admitted() {
        let rules = AccessRules::new(1000, &[], &[], None, &[]).unwrap();
        assert!(rules.admits(&PEER));
        assert!(rules.admits(&Peer {
            uid: 0,
            gid: 0,
            pid: None
        }));
        assert!(!rules.admits(&Peer {
            uid: 1001,
            gid: 1001,
            pid: None
        }));
        let rules = AccessRules::new(5, &[1001], &[2000], Some(3000), &[]).unwrap();
        assert!(rules.admits(&Peer {
            uid: 1001,
            gid: 1,
            pid: None
        }));
        assert!(rules.admits(&Peer {
            uid: 7,
            gid: 2000,
            pid: None
        }));
        assert!(
            rules.admits(&Peer {
                uid: 7,
                gid: 3000,
                pid: None
            }),
            "socket_group's gid"
        );
        assert!(!rules.admits(&Peer {
            uid: 7,
            gid: 7,
            pid: None
        }));
        assert!(
            rules
                .refusal_message(
                    &Peer {
                        uid: 7,
                        gid: 7,
                        pid: None
                    },
                    "/etc/ghapp/config.toml"
                )
                .contains("allow_uids")
        );
    }

    #[test]
    fn uid_policy_wins_over_gid_policy() {
        let rules = AccessRules::new(
            0,
            &[],
            &[],
            None,
            &[
                policy(None, Some(100), Some(&["gid-org"]), None, None),
                policy(Some(1000), None, Some(&["uid-org"]), None, None),
            ],
        )
        .unwrap();
        assert_eq!(rules.policy_for(&PEER).unwrap().index, 2);
        assert_eq!(
            rules
                .policy_for(&Peer {
                    uid: 5,
                    gid: 100,
                    pid: None
                })
                .unwrap()
                .index,
            1
        );
        assert!(
            rules
                .policy_for(&Peer {
                    uid: 5,
                    gid: 5,
                    pid: None
                })
                .is_none()
        );
    }

    #[test]
    fn entries_need_a_selector_and_valid_repos() {
        assert!(
            AccessRules::new(0, &[], &[], None, &[policy(None, None, None, None, None)])
                .unwrap_err()
                .contains("neither uid nor gid")
        );
        assert!(
            AccessRules::new(
                0,
                &[],
                &[],
                None,
                &[policy(Some(1), None, None, Some(&["nope"]), None)]
            )
            .unwrap_err()
            .contains("OWNER/REPO")
        );
        assert!(
            AccessRules::new(
                0,
                &[],
                &[],
                None,
                &[policy(Some(1), None, Some(&["a b"]), None, None)]
            )
            .unwrap_err()
            .contains("owners")
        );
    }

    #[test]
    fn owners_and_repos_restrict_case_insensitively() {
        let p = PeerPolicy::from_config(
            1,
            &policy(
                Some(1000),
                None,
                Some(&["Acme"]),
                Some(&["acme/Widgets"]),
                None,
            ),
        )
        .unwrap();
        assert!(
            p.check_token(&mut query(Some("ACME"), Some("widgets"), ""))
                .is_ok()
        );
        assert_eq!(
            p.check_token(&mut query(Some("acme"), Some("gadgets"), ""))
                .unwrap_err()
                .status(),
            403
        );
        assert!(
            p.check_token(&mut query(Some("other"), Some("widgets"), ""))
                .unwrap_err()
                .message()
                .contains("account other")
        );
        assert!(
            p.check_token(&mut query(Some("acme"), None, ""))
                .unwrap_err()
                .message()
                .contains("installation-wide")
        );
        assert!(
            p.check_token(&mut query(None, None, ""))
                .unwrap_err()
                .message()
                .contains("without naming an owner")
        );
        let wildcard =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, Some(&["acme/*"]), None))
                .unwrap();
        assert!(
            wildcard
                .check_token(&mut query(Some("acme"), Some("anything"), ""))
                .is_ok()
        );
        assert!(
            wildcard
                .check_token(&mut query(Some("evil"), Some("anything"), ""))
                .is_err()
        );
        let any =
            PeerPolicy::from_config(1, &policy(Some(1), None, Some(&["*"]), None, None)).unwrap();
        assert!(any.check_token(&mut query(None, None, "")).is_ok());
    }

    #[test]
    fn grants_must_stay_within_the_repos() {
        let p = PeerPolicy::from_config(
            1,
            &policy(Some(1000), None, None, Some(&["acme/widgets"]), None),
        )
        .unwrap();
        assert!(p.check_grant("Acme", &["Widgets".to_string()]).is_ok());
        let wide = p.check_grant("acme", &[]).unwrap_err();
        assert_eq!(wide.status(), 403);
        assert!(
            wide.message().contains("installation_wide"),
            "{}",
            wide.message()
        );
        assert!(
            p.check_grant("acme", &["widgets".to_string(), "secrets".to_string()])
                .unwrap_err()
                .message()
                .contains("acme/secrets")
        );
        assert!(p.check_grant("other", &["widgets".to_string()]).is_err());
        let open = PeerPolicy::from_config(1, &policy(Some(1000), None, None, None, None)).unwrap();
        assert!(open.check_grant("acme", &[]).is_ok());
    }

    #[test]
    fn ceiling_narrows_or_refuses() {
        let p = PeerPolicy::from_config(
            3,
            &policy(
                Some(1000),
                None,
                None,
                None,
                Some("contents:read,metadata:read"),
            ),
        )
        .unwrap();
        let mut q = query(Some("acme"), Some("widgets"), "");
        p.check_token(&mut q).unwrap();
        assert_eq!(
            q.permissions.to_list(),
            "contents:read,metadata:read",
            "empty request narrowed to the ceiling"
        );
        let err = p
            .check_token(&mut query(Some("acme"), Some("widgets"), "contents:write"))
            .unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(
            err.message().contains("contents:write") && err.message().contains("entry 3"),
            "{}",
            err.message()
        );
        assert!(
            p.check_token(&mut query(Some("acme"), None, "metadata:read"))
                .is_ok()
        );
    }

    #[test]
    fn runner_tokens_need_org_wide_access_and_the_runner_permission() {
        let open = PeerPolicy::from_config(1, &policy(Some(1), None, Some(&["acme"]), None, None))
            .unwrap();
        assert!(open.check_runner("acme").is_ok());
        assert_eq!(open.check_runner("other").unwrap_err().status(), 403);
        let repos =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, Some(&["acme/x"]), None))
                .unwrap();
        assert_eq!(repos.check_runner("acme").unwrap_err().status(), 403);
        let low =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, None, Some("contents:read")))
                .unwrap();
        assert_eq!(low.check_runner("acme").unwrap_err().status(), 422);
        let ok = PeerPolicy::from_config(
            1,
            &policy(
                Some(1),
                None,
                None,
                None,
                Some("organization_self_hosted_runners:write"),
            ),
        )
        .unwrap();
        assert!(ok.check_runner("acme").is_ok());
    }

    #[test]
    fn repository_runner_tokens_need_the_repository_and_administration() {
        let repos =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, Some(&["acme/x"]), None))
                .unwrap();
        assert!(repos.check_repository_runner("acme", "x").is_ok());
        assert_eq!(
            repos.check_repository_runner("acme", "y").unwrap_err().status(),
            403
        );
        let low =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, None, Some("contents:read")))
                .unwrap();
        assert_eq!(
            low.check_repository_runner("acme", "x").unwrap_err().status(),
            422
        );
        let ok = PeerPolicy::from_config(
            1,
            &policy(Some(1), None, None, None, Some("administration:write")),
        )
        .unwrap();
        assert!(ok.check_repository_runner("acme", "x").is_ok());
    }
}
