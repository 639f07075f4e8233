//! Who may use the socket, and for what: the peer's credentials (SO_PEERCRED), the uid/gid
//! allow-lists and the per-uid/gid policies of `[[daemon.policy]]`.
//!
//! The uid SO_PEERCRED reports is fixed by the kernel; the gid is the peer's *current primary*
//! gid, which any member of a group can switch to with `sg`/`newgrp`. So the gid is the caller's
//! choice among its groups, and the rules never let a gid choice widen what a peer gets:
//!
//! 1. **Admission.** A peer is admitted when its uid is the daemon's own uid, root, or in
//!    `allow_uids`, or its gid is in `allow_gids` or is `socket_group`'s gid.
//! 2. **No `[[daemon.policy]]` at all:** every admitted peer is unrestricted (beyond the Apps'
//!    own ceilings) — the behaviour of a config without policies.
//! 3. **Entries naming the peer's uid** hold it whatever its gid: the first such entry without a
//!    gid or with the peer's gid applies; when every entry naming the uid names another gid, the
//!    peer gets nothing. Entries naming only a gid are then ignored for it.
//! 4. **No entry names the uid:** the daemon's own uid and root are unrestricted (both can read
//!    the daemon's memory anyway); any other peer is held to the first entry naming only its gid,
//!    and with none, gets **nothing** (every token route refused, an empty status). To let such a
//!    peer have everything, give it an entry with no limits: `[[daemon.policy]]` `uid = N`.
pub use crate::identity::Peer;
use ghapp_broker::PolicyConfig;
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::permissions::{Level, Permissions};
use std::collections::BTreeSet;

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
    /// Git hosts allowed (lower-cased); `None` means every host.
    pub hosts: Option<BTreeSet<String>>,
    /// Runner groups it may provision into; `None` means any (checked by `runner_routes`).
    pub runner_groups: Option<Vec<u64>>,
    /// Labels (exact or `*` globs) its runners may carry; `None` means any.
    pub runner_labels: Option<Vec<String>>,
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
            hosts: entry
                .hosts
                .as_ref()
                .map(|hosts| hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            runner_groups: entry.runner_groups.clone(),
            runner_labels: entry.runner_labels.clone(),
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

    /// True when the policy allows some token for `owner` (its installations may be shown).
    pub fn covers_owner(&self, owner: &str) -> bool {
        let owner = owner.to_ascii_lowercase();
        self.owner_allowed(&owner)
            && self
                .repos
                .as_ref()
                .is_none_or(|repos| repos.iter().any(|(o, _)| *o == owner))
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

    /// Refuses a host outside the entry's `hosts` (an entry without `hosts` allows every host).
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        match &self.hosts {
            Some(hosts) if !hosts.contains(&host.to_ascii_lowercase()) => {
                Err(self.refuse(format!("host {host}")))
            }
            _ => Ok(()),
        }
    }

    /// Checks a token request against this policy. A request naming no permissions is narrowed
    /// to the ceiling (so a restricted peer never receives the App's full permissions).
    pub fn check_token(&self, query: &mut TokenQuery) -> Result<(), Refusal> {
        self.check_host(query.host_or_default())?;
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

/// What an admitted peer may have, as decided by [`AccessRules::grant_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// Anything the Apps allow: no policies configured, or the daemon's own uid or root.
    Unrestricted,
    /// What this `[[daemon.policy]]` entry allows.
    Policy(&'a PeerPolicy),
    /// Nothing: policies exist and none applies to this peer (fail closed).
    Nothing(NoEntry),
}

/// Why no policy entry applies to a peer that policies must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEntry {
    /// Entries name the peer's uid, each for another gid (the first of them is given).
    OtherGid {
        /// The 1-based index of the first entry naming the uid.
        index: usize,
    },
    /// No entry names the peer's uid nor its gid.
    Unnamed,
}

impl Grant<'_> {
    /// True when the peer may see everything (metrics, every installation and cached token).
    pub fn is_unrestricted(&self) -> bool {
        matches!(self, Grant::Unrestricted)
    }

    /// The refusal for a token request this grant does not cover at all; `None` when it may be
    /// covered (unrestricted, or a policy that checks the request itself).
    pub fn refusal(&self, peer: &Peer) -> Option<Refusal> {
        let Grant::Nothing(why) = self else {
            return None;
        };
        Some(Refusal::Forbidden(match why {
            NoEntry::OtherGid { index } => format!(
                "uid {} is named by [[daemon.policy]] entry {index} for another gid; with gid {} no entry applies, so no token is served (switching groups never widens a policy)",
                peer.uid, peer.gid
            ),
            NoEntry::Unnamed => format!(
                "no [[daemon.policy]] entry names uid {} or gid {}, and when policies are configured such a peer gets no token: add an entry for it to the daemon's config",
                peer.uid, peer.gid
            ),
        }))
    }
}

/// The allow-lists and policies in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    /// Admitted uids (always includes the daemon's own uid and root).
    pub uids: BTreeSet<u32>,
    /// The daemon's own uid and root: admitted and, without an entry naming them, unrestricted.
    pub trusted_uids: BTreeSet<u32>,
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
        let trusted_uids: BTreeSet<u32> = [own_uid, 0].into_iter().collect();
        let mut uids: BTreeSet<u32> = allow_uids.iter().copied().collect();
        uids.extend(&trusted_uids);
        let mut gids: BTreeSet<u32> = allow_gids.iter().copied().collect();
        gids.extend(socket_gid);
        let policies = policies
            .iter()
            .enumerate()
            .map(|(i, p)| PeerPolicy::from_config(i + 1, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AccessRules {
            uids,
            trusted_uids,
            gids,
            policies,
        })
    }

    /// True when the peer may use the daemon at all.
    pub fn admits(&self, peer: &Peer) -> bool {
        self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid)
    }

    /// What an admitted peer may have (the rules in the module documentation). The gid only
    /// ever selects among entries granted to the peer's uid or to a group it could switch to;
    /// a peer no entry covers gets [`Grant::Nothing`], never everything.
    pub fn grant_for(&self, peer: &Peer) -> Grant<'_> {
        if self.policies.is_empty() {
            return Grant::Unrestricted;
        }
        let mut naming_uid = self
            .policies
            .iter()
            .filter(|p| p.uid == Some(peer.uid))
            .peekable();
        if let Some(first) = naming_uid.peek().map(|p| p.index) {
            return match naming_uid.find(|p| p.gid.is_none_or(|gid| gid == peer.gid)) {
                Some(policy) => Grant::Policy(policy),
                None => Grant::Nothing(NoEntry::OtherGid { index: first }),
            };
        }
        if self.trusted_uids.contains(&peer.uid) {
            return Grant::Unrestricted;
        }
        match self
            .policies
            .iter()
            .find(|p| p.uid.is_none() && p.gid == Some(peer.gid))
        {
            Some(policy) => Grant::Policy(policy),
            None => Grant::Nothing(NoEntry::Unnamed),
        }
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
            hosts: None,
            ..Default::default()
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

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
        }
    }

    fn index_of(grant: Grant<'_>) -> Option<usize> {
        match grant {
            Grant::Policy(policy) => Some(policy.index),
            _ => None,
        }
    }

    #[test]
    fn without_policies_every_admitted_peer_is_unrestricted() {
        let rules = AccessRules::new(5, &[1000], &[100], None, &[]).unwrap();
        for p in [PEER, peer(5, 5), peer(0, 0), peer(7, 100)] {
            assert_eq!(rules.grant_for(&p), Grant::Unrestricted, "{p}");
        }
    }

    #[test]
    fn uid_entries_hold_the_uid_whatever_its_gid() {
        let rules = AccessRules::new(
            0,
            &[1000],
            &[100, 200],
            None,
            &[
                policy(None, Some(100), Some(&["gid-org"]), None, None),
                policy(Some(1000), Some(100), Some(&["uid-org"]), None, None),
                policy(None, Some(200), None, None, None),
            ],
        )
        .unwrap();
        assert_eq!(index_of(rules.grant_for(&PEER)), Some(2), "uid+gid entry");
        // Switching to another group (sg) neither escapes the uid's entry nor picks up a gid
        // entry, even an unrestricted one.
        for gid in [200, 300] {
            let grant = rules.grant_for(&peer(1000, gid));
            assert_eq!(grant, Grant::Nothing(NoEntry::OtherGid { index: 2 }));
            assert!(
                grant
                    .refusal(&peer(1000, gid))
                    .unwrap()
                    .message()
                    .contains("entry 2")
            );
        }
        let rules = AccessRules::new(
            0,
            &[1000],
            &[],
            None,
            &[
                policy(None, Some(100), None, None, None),
                policy(Some(1000), None, Some(&["uid-org"]), None, None),
            ],
        )
        .unwrap();
        for gid in [100, 5] {
            assert_eq!(index_of(rules.grant_for(&peer(1000, gid))), Some(2));
        }
    }

    #[test]
    fn peers_no_entry_names_get_nothing_once_policies_exist() {
        let rules = AccessRules::new(
            5,
            &[1000, 1001],
            &[],
            Some(300),
            &[
                policy(Some(1001), None, Some(&["acme"]), None, None),
                policy(None, Some(100), Some(&["gid-org"]), None, None),
            ],
        )
        .unwrap();
        assert_eq!(index_of(rules.grant_for(&peer(7, 100))), Some(2));
        assert_eq!(
            index_of(rules.grant_for(&PEER)),
            Some(2),
            "allow_uids in gid 100"
        );
        // Admitted by socket_group's gid only, or allowed by uid, with no entry: nothing.
        for p in [peer(7, 300), peer(1000, 300), peer(1000, 1000)] {
            let grant = rules.grant_for(&p);
            assert_eq!(grant, Grant::Nothing(NoEntry::Unnamed), "{p}");
            assert_eq!(grant.refusal(&p).unwrap().status(), 403);
            assert!(!grant.is_unrestricted());
        }
        // The daemon's own uid and root, unnamed: unrestricted, whatever their gid.
        for p in [peer(5, 100), peer(0, 300)] {
            assert_eq!(rules.grant_for(&p), Grant::Unrestricted, "{p}");
        }
        assert_eq!(Grant::Unrestricted.refusal(&PEER), None);
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
    fn hosts_restrict_the_git_host() {
        let mut entry = policy(Some(1000), None, None, Some(&["acme/widgets"]), None);
        entry.hosts = Some(vec!["GHE.example.com".to_string()]);
        let p = PeerPolicy::from_config(1, &entry).unwrap();
        let on = |host: Option<&str>| {
            let mut q = query(Some("acme"), Some("widgets"), "");
            q.host = host.map(str::to_string);
            p.check_token(&mut q)
        };
        assert!(on(Some("ghe.example.com")).is_ok());
        let refused = on(Some("github.com")).unwrap_err();
        assert_eq!(refused.status(), 403);
        assert!(
            refused.message().contains("host github.com"),
            "{}",
            refused.message()
        );
        assert!(on(None).is_err(), "no host means github.com");
        assert!(p.check_host("GHE.EXAMPLE.COM").is_ok());
        let any = PeerPolicy::from_config(1, &policy(Some(1), None, None, None, None)).unwrap();
        assert!(
            any.check_host("anything.example").is_ok(),
            "default: all hosts"
        );
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
            repos
                .check_repository_runner("acme", "y")
                .unwrap_err()
                .status(),
            403
        );
        let low =
            PeerPolicy::from_config(1, &policy(Some(1), None, None, None, Some("contents:read")))
                .unwrap();
        assert_eq!(
            low.check_repository_runner("acme", "x")
                .unwrap_err()
                .status(),
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
