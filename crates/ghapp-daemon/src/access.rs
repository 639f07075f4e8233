//! Who may use the daemon, and for what: the one policy model for every caller — the Unix
//! peer's credentials (SO_PEERCRED), the uid/gid allow-lists, and the `[[policy]]` entries
//! (`[[daemon.policy]]` is the same list under its older name), which select callers by exactly
//! one of uid (optionally narrowed by gid), gid, client, address or issuer (docs/policy.md).
//!
//! The uid SO_PEERCRED reports is fixed by the kernel; the gid is the peer's *current primary*
//! gid, which any member of a group can switch to with `sg`/`newgrp`. So the gid is the caller's
//! choice among its groups, and the rules never let a gid choice widen what a peer gets:
//!
//! 1. **Admission.** A peer is admitted when its uid is the daemon's own uid, root, or in
//!    `allow_uids`, or its gid is in `allow_gids` or is `socket_group`'s gid.
//! 2. **No policy entry at all:** every admitted peer is unrestricted (beyond the Apps'
//!    own ceilings) — the behaviour of a config without policies.
//! 3. **Entries naming the peer's uid** hold it whatever its gid: the first such entry without a
//!    gid or with the peer's gid applies; when every entry naming the uid names another gid, the
//!    peer gets nothing. Entries naming only a gid are then ignored for it.
//! 4. **No entry names the uid:** the daemon's own uid and root are unrestricted (both can read
//!    the daemon's memory anyway); any other peer is held to the first entry naming only its gid,
//!    and with none, gets **nothing** (every token route refused, an empty status). To let such a
//!    peer have everything, give it an entry with no limits: `[[policy]]` `uid = N`.
//!
//! Credentials (`Authorization: Bearer`, verified by [`crate::identity`]) and the network:
//!
//! 5. **A network caller with a credential** gets the first entry selecting it (`client = NAME`,
//!    or `issuer` with its `subject` and `claims` globs); with none it gets nothing (403).
//! 6. **A network caller without one** gets the first entry selecting its source address
//!    (`address = CIDR`, the weakest selector); with none it must authenticate (401).
//!    Rule 2 never applies to the network: without entries, no network caller gets anything.
//! 7. **On the Unix socket a credential only narrows**: the peer must pass rules 1–4 *and* the
//!    first entry selecting its credential (none: 403); both entries judge every request.
//! 8. An invalid credential is refused before any of this (401), wherever it comes from.
pub use crate::identity::Peer;
use crate::identity::{Caller, Credential, Origin, VerifiedIdToken};
use ghapp_broker::PolicyConfig;
use ghapp_protocol::api::TokenQuery;
use ghapp_protocol::permissions::{Level, Permissions};
use ipnet::IpNet;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Why a policy refused a request: the status to answer and an actionable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account or repository is outside the peer's policy (403).
    Forbidden(String),
    /// A permission beyond the peer's ceiling (422).
    BeyondCeiling(String),
    /// A network caller that presented no credential and no entry selects its address (401,
    /// with `WWW-Authenticate: Bearer`).
    Unauthenticated(String),
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Forbidden(_) => 403,
            Refusal::BeyondCeiling(_) => 422,
            Refusal::Unauthenticated(_) => 401,
        }
    }

    /// The message for the `{"error": …}` body.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Forbidden(m) | Refusal::BeyondCeiling(m) | Refusal::Unauthenticated(m) => m,
        }
    }
}

/// One `[[policy]]` entry, validated and normalized (names lowercased: GitHub account
/// and repository names are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Position in the config file (1-based), named in refusals so users find the entry.
    pub index: usize,
    /// How the file spells the table (`[[policy]]` or `[[daemon.policy]]`), for messages.
    pub table: &'static str,
    /// The uid it applies to.
    pub uid: Option<u32>,
    /// The gid it applies to.
    pub gid: Option<u32>,
    /// The `[[client]]` whose key it selects.
    pub client: Option<String>,
    /// The source addresses it selects (network callers without a credential).
    pub address: Option<IpNet>,
    /// The ID tokens it selects.
    pub issuer: Option<IssuerMatch>,
    /// May read `/metrics`.
    pub metrics: bool,
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
    /// What its callers may ask of the API proxy; `None`: no proxy use (docs/proxy.md).
    pub proxy_scopes: Option<ghapp_proxy::registry::Scopes>,
}

/// What an `issuer` entry asks of an ID token: its issuer, a `subject` glob and claim globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerMatch {
    /// The `[[oidc]] issuer`, exactly.
    pub issuer: String,
    /// Glob on `sub` (`*` any run of characters); `None`: any subject.
    pub subject: Option<String>,
    /// (claim name or dotted path, glob); every one must match a string claim.
    pub claims: Vec<(String, String)>,
}

impl IssuerMatch {
    /// True when the verified token is this issuer's and its subject and claims match.
    pub fn selects(&self, token: &VerifiedIdToken) -> bool {
        *token.issuer == *self.issuer
            && self
                .subject
                .as_deref()
                .is_none_or(|glob| glob_matches(glob, &token.subject))
            && self.claims.iter().all(|(name, glob)| {
                claim_at(&token.claims, name)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|value| glob_matches(glob, value))
            })
    }
}

/// `*` matches any run of characters (`/` and `:` included); everything else matches itself.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all: an exact match
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The claim `name`, or the nested claim a dotted name reaches: `kubernetes.io.namespace` is
/// `{"kubernetes.io": {"namespace": …}}` (a key may itself hold dots, so every split is tried,
/// the whole name first).
pub fn claim_at<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a serde_json::Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    name.match_indices('.').find_map(|(at, _)| {
        let nested = claims.get(&name[..at])?.as_object()?;
        claim_at(nested, &name[at + 1..])
    })
}

/// The permissions both ceilings allow (the lower level of each permission both name).
fn intersect(a: &Permissions, b: &Permissions) -> Permissions {
    let mut out = Permissions::new();
    for (name, level) in a.iter() {
        if let Some(other) = b.get(name) {
            let _ = out.insert(name, level.min(other));
        }
    }
    out
}

/// The permission runner tokens need on the organization.
const RUNNER_PERMISSION: &str = "organization_self_hosted_runners";
/// What a repository runner token needs (GitHub: repository `administration: write`).
const REPOSITORY_RUNNER_PERMISSION: &str = "administration";

impl PeerPolicy {
    /// Validates one config entry (`index` is 1-based).
    pub fn from_config(index: usize, entry: &PolicyConfig) -> Result<PeerPolicy, String> {
        let local = entry.uid.is_some() || entry.gid.is_some();
        let selectors = [
            local,
            entry.client.is_some(),
            entry.address.is_some(),
            entry.issuer.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if selectors != 1 {
            return Err(format!(
                "[[policy]] entry {index} names neither uid nor gid, client, address or issuer, or more than one of them: set exactly one"
            ));
        }
        let address = entry
            .address
            .as_deref()
            .map(ghapp_protocol::config::parse_address_range)
            .transpose()
            .map_err(|e| format!("[[policy]] entry {index}: {e}"))?;
        let issuer = entry.issuer.as_ref().map(|issuer| IssuerMatch {
            issuer: issuer.clone(),
            subject: entry.subject.clone(),
            claims: entry
                .claims
                .iter()
                .flatten()
                .map(|(name, glob)| (name.clone(), glob.clone()))
                .collect(),
        });
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
            table: "[[policy]]",
            uid: entry.uid,
            gid: entry.gid,
            client: entry.client.clone(),
            address,
            issuer,
            metrics: entry.metrics,
            owners,
            repos,
            ceiling: entry.permissions.clone(),
            hosts: entry
                .hosts
                .as_ref()
                .map(|hosts| hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            runner_groups: entry.runner_groups.clone(),
            runner_labels: entry.runner_labels.clone(),
            proxy_scopes: entry
                .proxy_scopes
                .as_deref()
                .map(ghapp_proxy::registry::Scopes::compile)
                .transpose()
                .map_err(|e| format!("[[policy]] entry {index}: proxy_scopes: {e}"))?,
        })
    }

    /// The callers the entry selects, as refusals name them.
    fn who(&self) -> String {
        if let Some(client) = &self.client {
            return format!("client {client}");
        }
        if let Some(address) = &self.address {
            return format!("addresses {address}");
        }
        if let Some(issuer) = &self.issuer {
            return match &issuer.subject {
                Some(subject) => format!("{} subject {subject}", issuer.issuer),
                None => format!("ID tokens of {}", issuer.issuer),
            };
        }
        match (self.uid, self.gid) {
            (Some(uid), Some(gid)) => format!("uid {uid} gid {gid}"),
            (Some(uid), None) => format!("uid {uid}"),
            (None, Some(gid)) => format!("gid {gid}"),
            (None, None) => "this peer".to_string(),
        }
    }

    fn refuse(&self, what: String) -> Refusal {
        Refusal::Forbidden(format!(
            "{what} is not allowed for {} by {} entry {} of the daemon's config",
            self.who(),
            self.table,
            self.index
        ))
    }

    /// True when the entry selects this verified credential.
    pub fn selects_credential(&self, credential: &Credential) -> bool {
        match credential {
            Credential::Client(name) => self.client.as_deref() == Some(&**name),
            Credential::IdToken(token) => self.issuer.as_ref().is_some_and(|m| m.selects(token)),
        }
    }

    /// True when the entry selects callers from this address.
    pub fn selects_address(&self, address: IpAddr) -> bool {
        let address = match address {
            // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.address.is_some_and(|net| net.contains(&address))
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

    /// Checks a request through the API proxy (docs/proxy.md): `method path` must be in
    /// `proxy_scopes`, `host` in `hosts`, and the account (and repository) the path names within
    /// `owners`/`repos`; a path naming no account only for an entry limited to neither (GraphQL
    /// and searches reach any account the proxy's credentials can see).
    pub fn check_proxy(
        &self,
        host: &str,
        method: &str,
        path: &str,
        owner: Option<&str>,
        repo: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(scopes) = &self.proxy_scopes else {
            return Err(self.refuse("the API proxy (the entry has no proxy_scopes)".into()));
        };
        self.check_host(host)?;
        if !scopes.matches(method, path) {
            return Err(self.refuse(format!("{method} {path} through the API proxy")));
        }
        let allowed = match owner {
            None => self.owners.is_none() && self.repos.is_none(),
            Some(owner) => {
                self.owner_allowed(owner)
                    && (self.repos.is_none() || self.repo_allowed(owner, repo))
            }
        };
        if !allowed {
            return Err(self.refuse(format!(
                "{path} through the API proxy (outside owners/repos)"
            )));
        }
        Ok(())
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
                "runner tokens need {RUNNER_PERMISSION}:write, beyond the ceiling for {} in {} entry {}",
                self.who(),
                self.table,
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
                "repository runner tokens need {REPOSITORY_RUNNER_PERMISSION}:write, beyond the ceiling for {} in {} entry {}",
                self.who(),
                self.table,
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
                "permission {name}:{level} is beyond the ceiling ({}) for {} in {} entry {}",
                ceiling.to_list(),
                self.who(),
                self.table,
                self.index
            ))),
        }
    }
}

/// What a caller may have, as decided by [`AccessRules::judge`] (or [`AccessRules::grant_for`]
/// for a peer's uid/gid alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// Anything the Apps allow: no policies configured, or the daemon's own uid or root.
    Unrestricted,
    /// What this `[[policy]]` entry allows.
    Policy(&'a PeerPolicy),
    /// What both entries allow: a local peer's uid/gid entry, narrowed by the entry selecting
    /// the credential it presented (rule 7).
    Both(&'a PeerPolicy, &'a PeerPolicy),
    /// Nothing: policies exist and none applies to this peer (fail closed).
    Nothing(NoEntry),
}

/// Why no policy entry applies to a caller that policies must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEntry {
    /// Entries name the peer's uid, each for another gid (the first of them is given).
    OtherGid {
        /// The 1-based index of the first entry naming the uid.
        index: usize,
        /// How the config spells the table.
        table: &'static str,
    },
    /// No entry names the peer's uid nor its gid.
    Unnamed {
        /// How the config spells the table.
        table: &'static str,
    },
    /// No entry selects the credential the caller presented (403).
    Credential,
    /// A network caller without a credential, and no entry selects its address (401).
    Anonymous,
}

impl Grant<'_> {
    /// True when the peer may see everything (metrics, every installation and cached token).
    pub fn is_unrestricted(&self) -> bool {
        matches!(self, Grant::Unrestricted)
    }

    /// The entries holding the caller (none when unrestricted or granted nothing).
    pub fn policies(&self) -> impl Iterator<Item = &PeerPolicy> {
        let (first, second) = match *self {
            Grant::Policy(p) => (Some(p), None),
            Grant::Both(p, q) => (Some(p), Some(q)),
            _ => (None, None),
        };
        first.into_iter().chain(second)
    }

    /// The refusal for a token request this grant does not cover at all; `None` when it may be
    /// covered (unrestricted, or a policy that checks the request itself).
    pub fn refusal(&self, peer: &Peer) -> Option<Refusal> {
        self.refusal_for(&Caller::anonymous(Origin::Local(*peer)))
    }

    /// [`Grant::refusal`] for any caller; the message names the caller (never its credential).
    pub fn refusal_for(&self, caller: &Caller) -> Option<Refusal> {
        let Grant::Nothing(why) = self else {
            return None;
        };
        let (uid, gid) = caller
            .origin
            .peer()
            .map_or((0, 0), |peer| (peer.uid, peer.gid));
        Some(match why {
            NoEntry::OtherGid { index, table } => Refusal::Forbidden(format!(
                "uid {uid} is named by {table} entry {index} for another gid; with gid {gid} no entry applies, so no token is served (switching groups never widens a policy)"
            )),
            NoEntry::Unnamed { table } => Refusal::Forbidden(format!(
                "no {table} entry names uid {uid} or gid {gid}, and when policies are configured such a peer gets no token: add an entry for it to the daemon's config"
            )),
            NoEntry::Credential => Refusal::Forbidden(format!(
                "no [[policy]] entry selects {caller}: add an entry (client = …, or issuer = … with subject/claims) for it to the daemon's config"
            )),
            NoEntry::Anonymous => Refusal::Unauthenticated(format!(
                "{caller} presented no credential and no [[policy]] entry selects its address: send Authorization: Bearer with a client key or an ID token"
            )),
        })
    }

    /// Checks a token request against every entry holding the caller; a request naming no
    /// permissions is narrowed to the ceilings (both entries' common part, for [`Grant::Both`]).
    pub fn check_token(&self, query: &mut TokenQuery) -> Result<(), Refusal> {
        if let Grant::Both(a, b) = self
            && query.permissions.is_empty()
        {
            match (&a.ceiling, &b.ceiling) {
                (Some(x), Some(y)) => query.permissions = intersect(x, y),
                (Some(x), None) | (None, Some(x)) => query.permissions = x.clone(),
                (None, None) => {}
            }
        }
        for policy in self.policies() {
            policy.check_token(query)?;
        }
        Ok(())
    }

    /// Checks what the broker granted against every entry holding the caller.
    pub fn check_grant(&self, owner: &str, repositories: &[String]) -> Result<(), Refusal> {
        self.policies()
            .try_for_each(|p| p.check_grant(owner, repositories))
    }

    /// Checks a host against every entry holding the caller.
    pub fn check_host(&self, host: &str) -> Result<(), Refusal> {
        self.policies().try_for_each(|p| p.check_host(host))
    }

    /// True when every entry holding the caller allows some token for `owner`.
    pub fn covers_owner(&self, owner: &str) -> bool {
        self.policies().all(|p| p.covers_owner(owner))
    }

    /// Checks a runner-token request (organization, or one repository) against every entry.
    pub fn check_runner(&self, owner: &str, repo: Option<&str>) -> Result<(), Refusal> {
        self.policies().try_for_each(|p| match repo {
            Some(repo) => p.check_repository_runner(owner, repo),
            None => p.check_runner(owner),
        })
    }

    /// True when `/metrics` may be served: unrestricted local peers, or an entry with
    /// `metrics = true` (for [`Grant::Both`], the credential's entry decides).
    pub fn allows_metrics(&self) -> bool {
        match self {
            Grant::Unrestricted => true,
            Grant::Policy(p) | Grant::Both(_, p) => p.metrics,
            Grant::Nothing(_) => false,
        }
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
    /// How the config spells the policy table, for messages.
    pub table: &'static str,
}

/// The first entry in `policies` selecting `credential`.
fn selecting<'a>(policies: &'a [PeerPolicy], credential: &Credential) -> Option<&'a PeerPolicy> {
    policies.iter().find(|p| p.selects_credential(credential))
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
            table: "[[policy]]",
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
            // Rule 2, for the Unix socket only: `judge` never calls this for network callers.
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
                None => Grant::Nothing(NoEntry::OtherGid {
                    index: first,
                    table: self.table,
                }),
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
            None => Grant::Nothing(NoEntry::Unnamed { table: self.table }),
        }
    }

    /// Names the table as the config file spells it (`[[daemon.policy]]` or `[[policy]]`) in
    /// refusals.
    pub fn spelled(mut self, table: &'static str) -> AccessRules {
        self.table = table;
        for policy in &mut self.policies {
            policy.table = table;
        }
        self
    }

    /// What a caller may have: rules 1–7 of the module documentation. A local peer must be
    /// admitted first ([`AccessRules::admits`]); this judges what it may then have.
    pub fn judge(&self, caller: &Caller) -> Grant<'_> {
        match (&caller.origin, &caller.credential) {
            (Origin::Local(peer), None) => self.grant_for(peer),
            (Origin::Local(peer), Some(credential)) => {
                let Some(entry) = selecting(&self.policies, credential) else {
                    return Grant::Nothing(NoEntry::Credential);
                };
                match self.grant_for(peer) {
                    Grant::Unrestricted => Grant::Policy(entry),
                    Grant::Policy(own) => Grant::Both(own, entry),
                    other => other,
                }
            }
            (Origin::Network { .. }, Some(credential)) => selecting(&self.policies, credential)
                .map_or(Grant::Nothing(NoEntry::Credential), Grant::Policy),
            (Origin::Network { address, .. }, None) => self
                .policies
                .iter()
                .find(|p| p.selects_address(*address))
                .map_or(Grant::Nothing(NoEntry::Anonymous), Grant::Policy),
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
            assert_eq!(
                grant,
                Grant::Nothing(NoEntry::OtherGid {
                    index: 2,
                    table: "[[policy]]"
                })
            );
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
            assert_eq!(
                grant,
                Grant::Nothing(NoEntry::Unnamed {
                    table: "[[policy]]"
                }),
                "{p}"
            );
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

    fn token(issuer: &str, subject: &str, claims: serde_json::Value) -> Credential {
        Credential::IdToken(std::sync::Arc::new(VerifiedIdToken {
            issuer: issuer.into(),
            subject: subject.into(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            expires_at: ghapp_protocol::time::Timestamp::now(),
        }))
    }

    fn network(address: &str, credential: Option<Credential>) -> Caller {
        Caller {
            origin: Origin::Network {
                address: address.parse().unwrap(),
                tls: true,
            },
            credential,
        }
    }

    const GHA: &str = "https://token.actions.githubusercontent.com";

    fn selector_rules() -> AccessRules {
        let mut client = policy(None, None, Some(&["acme"]), None, None);
        client.client = Some("ci-bot".into());
        let mut address = policy(None, None, None, Some(&["acme/widgets"]), None);
        address.address = Some("10.0.0.0/8".into());
        let mut actions = policy(
            None,
            None,
            None,
            Some(&["acme/widgets"]),
            Some("contents:read"),
        );
        actions.issuer = Some(GHA.into());
        actions.subject = Some("repo:acme/widgets:ref:refs/heads/*".into());
        actions.claims = Some(
            [("repository_owner".to_string(), "acme".to_string())]
                .into_iter()
                .collect(),
        );
        let mut k8s = policy(None, None, None, Some(&["acme/*"]), None);
        k8s.issuer = Some("https://kubernetes.default.svc".into());
        k8s.claims = Some(
            [("kubernetes.io.namespace".to_string(), "ci-*".to_string())]
                .into_iter()
                .collect(),
        );
        AccessRules::new(
            0,
            &[1000],
            &[],
            None,
            &[
                policy(Some(1000), None, Some(&["acme"]), None, None),
                client,
                address,
                actions,
                k8s,
            ],
        )
        .unwrap()
    }

    #[test]
    fn network_callers_get_the_entry_selecting_their_credential_or_address() {
        let rules = selector_rules();
        let at = |grant: Grant<'_>| index_of(grant);
        let ci = Some(Credential::Client("ci-bot".into()));
        assert_eq!(at(rules.judge(&network("192.0.2.1", ci))), Some(2));
        assert_eq!(at(rules.judge(&network("10.1.2.3", None))), Some(3));
        assert_eq!(at(rules.judge(&network("::ffff:10.1.2.3", None))), Some(3));
        // No credential and no address entry: 401; a credential no entry selects: 403, even
        // from an address an entry selects (the credential decides).
        let anonymous = network("192.0.2.1", None);
        let grant = rules.judge(&anonymous);
        assert_eq!(grant, Grant::Nothing(NoEntry::Anonymous));
        assert_eq!(grant.refusal_for(&anonymous).unwrap().status(), 401);
        let stranger = network("10.1.2.3", Some(Credential::Client("stranger".into())));
        let grant = rules.judge(&stranger);
        assert_eq!(grant, Grant::Nothing(NoEntry::Credential));
        let refusal = grant.refusal_for(&stranger).unwrap();
        assert_eq!(refusal.status(), 403);
        assert!(
            refusal
                .message()
                .contains("client stranger from address 10.1.2.3"),
            "{}",
            refusal.message()
        );

        let actions = |sub: &str, owner: &str| {
            network(
                "203.0.113.9",
                Some(token(
                    GHA,
                    sub,
                    serde_json::json!({"repository_owner": owner}),
                )),
            )
        };
        assert_eq!(
            at(rules.judge(&actions("repo:acme/widgets:ref:refs/heads/main", "acme"))),
            Some(4)
        );
        assert_eq!(
            rules.judge(&actions("repo:acme/widgets:pull_request", "acme")),
            Grant::Nothing(NoEntry::Credential)
        );
        assert_eq!(
            rules.judge(&actions("repo:acme/widgets:ref:refs/heads/main", "evil")),
            Grant::Nothing(NoEntry::Credential)
        );
        let pod = |namespace: &str| {
            network(
                "10.1.2.3",
                Some(token(
                    "https://kubernetes.default.svc",
                    "system:serviceaccount:x:y",
                    serde_json::json!({"kubernetes.io": {"namespace": namespace}}),
                )),
            )
        };
        assert_eq!(at(rules.judge(&pod("ci-7"))), Some(5));
        assert_eq!(
            rules.judge(&pod("prod")),
            Grant::Nothing(NoEntry::Credential)
        );

        // Without any entry, the network gets nothing (the socket keeps rule 2).
        let open = AccessRules::new(0, &[], &[], None, &[]).unwrap();
        assert_eq!(
            open.judge(&network("127.0.0.1", None)),
            Grant::Nothing(NoEntry::Anonymous)
        );
        assert_eq!(
            open.judge(&network("127.0.0.1", Some(Credential::Client("x".into())))),
            Grant::Nothing(NoEntry::Credential)
        );
        assert_eq!(
            open.judge(&Caller::anonymous(Origin::Local(PEER))),
            Grant::Unrestricted
        );
    }

    #[test]
    fn on_the_socket_a_credential_only_narrows() {
        let rules = selector_rules();
        let local = |credential| Caller {
            origin: Origin::Local(PEER),
            credential,
        };
        let ci = Some(Credential::Client("ci-bot".into()));
        let actions = Some(token(
            GHA,
            "repo:acme/widgets:ref:refs/heads/main",
            serde_json::json!({"repository_owner": "acme"}),
        ));
        let grant = rules.judge(&local(actions));
        assert!(matches!(grant, Grant::Both(own, cred) if own.index == 1 && cred.index == 4));
        assert!(
            grant
                .check_token(&mut query(Some("acme"), Some("widgets"), ""))
                .is_ok()
        );
        assert_eq!(
            grant
                .check_token(&mut query(Some("acme"), Some("gadgets"), ""))
                .unwrap_err()
                .status(),
            403
        );
        let mut q = query(Some("acme"), Some("widgets"), "");
        grant.check_token(&mut q).unwrap();
        assert_eq!(
            q.permissions.to_list(),
            "contents:read",
            "narrowed to the credential's ceiling"
        );
        // The uid's own limits still hold under a credential's entry.
        let grant = rules.judge(&local(ci));
        assert_eq!(
            grant
                .check_token(&mut query(Some("other"), Some("x"), ""))
                .unwrap_err()
                .status(),
            403
        );
        // A credential no entry selects: nothing, even for an unrestricted peer.
        let stranger = local(Some(Credential::Client("stranger".into())));
        assert_eq!(rules.judge(&stranger), Grant::Nothing(NoEntry::Credential));
        let open = AccessRules::new(0, &[], &[], None, &[]).unwrap();
        assert_eq!(open.judge(&stranger), Grant::Nothing(NoEntry::Credential));
        // A peer granted nothing stays at nothing.
        let unnamed = Caller {
            origin: Origin::Local(peer(7, 7)),
            credential: Some(Credential::Client("ci-bot".into())),
        };
        assert!(matches!(
            rules.judge(&unnamed),
            Grant::Nothing(NoEntry::Unnamed { .. })
        ));
    }

    #[test]
    fn ceilings_of_both_entries_intersect() {
        let a = Permissions::parse_list("contents:write,metadata:read").unwrap();
        let b = Permissions::parse_list("contents:read,issues:write").unwrap();
        assert_eq!(intersect(&a, &b).to_list(), "contents:read");
    }

    #[test]
    fn globs_and_dotted_claims() {
        assert!(glob_matches(
            "repo:acme/*:ref:refs/heads/*",
            "repo:acme/widgets:ref:refs/heads/main"
        ));
        assert!(!glob_matches(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/widgets:ref:refs/heads/evil"
        ));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(glob_matches("a*b*c", "a-b-c"));
        assert!(
            !glob_matches("ab*ba", "aba"),
            "the prefix and suffix may not overlap"
        );
        let claims = serde_json::json!({
            "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder"}},
            "a.b": "flat",
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(claim_at(claims, "kubernetes.io.namespace").unwrap(), "ci");
        assert_eq!(
            claim_at(claims, "kubernetes.io.serviceaccount.name").unwrap(),
            "builder"
        );
        assert_eq!(claim_at(claims, "a.b").unwrap(), "flat");
        assert!(claim_at(claims, "kubernetes.io.missing").is_none());
    }
}
