//! The emulator's shared state: the fixed world (Apps, accounts, repositories), the mutable parts
//! (installations, tokens, faults, counters) behind one short-held mutex, and the clock.

use crate::admin::{IssuedTokens, Stats};
use crate::clock::Clock;
use crate::faults::RouteFaults;
use crate::fixture::{AccountType, Fixture, RateLimitFixture};
use crate::model::{Account, App, Installation, Installations, Level, PermissionSet, Repository};
use crate::repos::RepoMaker;
use crate::tokens::{Grant, TokenStore};
use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Everything that changes while the emulator runs.
#[derive(Default)]
pub struct Mutable {
    /// Live and uninstalled installations.
    pub installations: Installations,
    /// Minted tokens.
    pub tokens: TokenStore,
    /// Active route faults.
    pub faults: RouteFaults,
    /// Seconds a new token stays unusable.
    pub replication_delay: u64,
    /// Counters.
    pub stats: Stats,
    /// Rate-limit buckets by key (`installation:ID`, `app:ID`, `anonymous`).
    pub rate: BTreeMap<String, RateBucket>,
    /// Secondary-limit windows by the same keys: (minute window start, requests in it).
    pub secondary: BTreeMap<String, (i64, u64)>,
    /// Every secret handed out, for `GET /_emulator/tokens`.
    pub issued: IssuedTokens,
    /// Apps whose keys were rotated (`add_key`/`remove_key` faults): the public keys (PKCS#1
    /// DER) their JWTs may be signed with, replacing the fixture's single key.
    pub app_keys: BTreeMap<u64, Vec<Vec<u8>>>,
    /// What the conditional-request routes serve (pull requests, files, last changes).
    pub resources: crate::conditional::Resources,
    /// Self-hosted runners and registration tokens.
    pub runners: crate::runners::Runners,
}

/// One primary rate-limit window.
#[derive(Debug, Clone, Copy)]
pub struct RateBucket {
    /// Requests used in this window.
    pub used: u64,
    /// When the window resets (Unix seconds).
    pub reset: i64,
}

/// The base URLs, known once the listeners are bound.
#[derive(Debug, Clone)]
pub struct Bases {
    /// `http(s)://127.0.0.1:P`.
    pub api: String,
    /// `http(s)://127.0.0.1:G`.
    pub git: String,
    /// `https` or `http`.
    pub scheme: &'static str,
}

/// Shared by every connection.
pub struct Core {
    /// Apps by id.
    pub apps: BTreeMap<u64, App>,
    /// Every repository.
    pub repos: Vec<Repository>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Where bare repositories live (`{state_dir}/repos`).
    pub repos_root: PathBuf,
    /// Token lifetime.
    pub token_ttl_secs: u64,
    /// Stateless tokens when the request has no override header.
    pub stateless_default: bool,
    /// Rate-limit settings.
    pub rate_limit: RateLimitFixture,
    /// Per-installation primary limits that differ from `rate_limit.limit`.
    pub installation_limits: BTreeMap<u64, u64>,
    /// Answer with only the fields GitHub's schemas mark required.
    pub minimal: bool,
    /// Whether JWTs may name their App by client id (not on GHES before 3.14).
    pub client_id_issuer: bool,
    /// Former names: (old owner, old name, repository id).
    pub renames: Vec<(String, String, u64)>,
    /// The clock.
    pub clock: Clock,
    /// HS256 secret of stateless tokens.
    pub stateless_secret: [u8; 32],
    /// Base URLs (set after binding).
    pub bases: OnceLock<Bases>,
    /// Creates repositories not on disk yet (background and on first git use).
    pub repo_maker: Arc<RepoMaker>,
    /// The OIDC issuers (keys, rotation, fetch counters); their own lock.
    pub oidc: crate::issuer::Issuers,
    mutable: Mutex<Mutable>,
}

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// Unknown, revoked, expired, too new (replication delay) or its installation is gone.
    BadCredentials,
    /// Its installation is suspended.
    Suspended,
}

/// A usable token: its grant and a snapshot of its installation.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// What it grants.
    pub grant: Grant,
    /// Its installation now.
    pub installation: Installation,
}

impl TokenAuth {
    /// Whether the token reaches `repo`.
    pub fn covers(&self, repo: &Repository) -> bool {
        self.installation.covers(repo)
            && self
                .grant
                .repository_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&repo.id))
    }

    /// The token's level for a permission.
    pub fn level(&self, permission: &str) -> Option<Level> {
        self.grant.permissions.get(permission).copied()
    }
}

impl Core {
    /// Builds the world from a fixture. Keys and repositories are made by the caller.
    pub fn new(
        fixture: &Fixture,
        state_dir: &Path,
        public_keys: BTreeMap<u64, Vec<u8>>,
        repo_maker: Arc<RepoMaker>,
    ) -> anyhow::Result<Core> {
        let clock = Clock::default();
        let now = clock.unix();
        let mut accounts: BTreeMap<String, Account> = BTreeMap::new();
        let mut next_account_id = 1000u64;
        let mut account = |login: &str, kind: Option<AccountType>| -> anyhow::Result<Account> {
            let key = login.to_ascii_lowercase();
            if let Some(existing) = accounts.get_mut(&key) {
                if let Some(kind) = kind
                    && existing.kind != kind
                {
                    bail!("fixture: account {login} is given as both Organization and User");
                }
                return Ok(existing.clone());
            }
            next_account_id += 1;
            let created = Account {
                login: login.to_string(),
                id: next_account_id,
                kind: kind.unwrap_or(AccountType::Organization),
            };
            accounts.insert(key, created.clone());
            Ok(created)
        };
        for inst in &fixture.installations {
            account(&inst.account, Some(inst.account_type))?;
        }

        let mut repos: Vec<Repository> = Vec::new();
        let used_ids: std::collections::BTreeSet<u64> =
            fixture.repositories.iter().filter_map(|r| r.id).collect();
        let mut next_repo_id = 100_000u64;
        let mut fresh_repo_id = || {
            loop {
                next_repo_id += 1;
                if !used_ids.contains(&next_repo_id) {
                    return next_repo_id;
                }
            }
        };
        let mut renames = Vec::new();
        for repo in &fixture.repositories {
            let (owner, name) = repo.full_name.split_once('/').context("owner/name")?;
            if repos.iter().any(|r| r.is(owner, name)) {
                bail!("fixture: repository {} appears twice", repo.full_name);
            }
            let owner = account(owner, None)?;
            if owner.kind == AccountType::Enterprise {
                bail!(
                    "fixture: repository {}: an enterprise owns no repositories",
                    repo.full_name
                );
            }
            let id = repo.id.unwrap_or_else(&mut fresh_repo_id);
            for previous in &repo.previous_names {
                if let Some((old_owner, old_name)) = previous.split_once('/') {
                    renames.push((old_owner.to_string(), old_name.to_string(), id));
                }
            }
            repos.push(Repository {
                id,
                owner,
                name: name.to_string(),
                private: repo.private,
                default_branch: repo
                    .default_branch
                    .clone()
                    .unwrap_or_else(|| "main".to_string()),
                created_at: now,
            });
        }
        for inst in &fixture.installations {
            for name in inst.repositories.iter().flatten() {
                if !repos.iter().any(|r| r.is(&inst.account, name)) {
                    repos.push(Repository {
                        id: fresh_repo_id(),
                        owner: account(&inst.account, None)?,
                        name: name.clone(),
                        private: true,
                        default_branch: "main".to_string(),
                        created_at: now,
                    });
                }
            }
        }

        let mut installations = Installations::default();
        for inst in &fixture.installations {
            let account = account(&inst.account, None)?;
            let selected = inst.repositories.as_ref().map(|names| {
                names
                    .iter()
                    .filter_map(|n| repos.iter().find(|r| r.is(&inst.account, n)).map(|r| r.id))
                    .collect()
            });
            installations.live.insert(
                inst.id,
                Installation {
                    id: inst.id,
                    app_id: inst.app,
                    account,
                    selected,
                    permissions: parse_permissions(&inst.permissions),
                    suspended_at: inst.suspended.then_some(now),
                    created_at: now,
                    updated_at: now,
                },
            );
        }

        let mut apps = BTreeMap::new();
        for app in &fixture.apps {
            let owner_login = app
                .owner
                .clone()
                .or_else(|| {
                    fixture
                        .installations
                        .iter()
                        .find(|i| i.app == app.id)
                        .map(|i| i.account.clone())
                })
                .unwrap_or_else(|| "ghapp-owner".to_string());
            let owner = account(&owner_login, None)?;
            let permissions = match &app.permissions {
                Some(p) => parse_permissions(p),
                None => {
                    let mut union = PermissionSet::new();
                    for inst in installations.live.values().filter(|i| i.app_id == app.id) {
                        for (name, level) in &inst.permissions {
                            let entry = union.entry(name.clone()).or_insert(*level);
                            *entry = (*entry).max(*level);
                        }
                    }
                    union
                }
            };
            let public_key_der = public_keys
                .get(&app.id)
                .cloned()
                .with_context(|| format!("no key for app {}", app.id))?;
            apps.insert(
                app.id,
                App {
                    id: app.id,
                    client_id: app.client_id.clone(),
                    slug: app.slug.clone(),
                    name: app.name.clone().unwrap_or_else(|| app.slug.clone()),
                    owner,
                    public_key_der,
                    permissions,
                    created_at: now,
                },
            );
        }

        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| anyhow::anyhow!("random secret"))?;
        Ok(Core {
            apps,
            repos,
            state_dir: state_dir.to_path_buf(),
            repos_root: state_dir.join("repos"),
            token_ttl_secs: fixture.token_ttl_secs,
            stateless_default: fixture.stateless_default,
            rate_limit: fixture.rate_limit.clone(),
            installation_limits: fixture
                .installations
                .iter()
                .filter_map(|i| i.rate_limit.map(|limit| (i.id, limit)))
                .collect(),
            minimal: fixture.minimal,
            client_id_issuer: fixture.accepts_client_id_issuer(),
            renames,
            clock,
            stateless_secret: secret,
            bases: OnceLock::new(),
            repo_maker,
            oidc: crate::issuer::Issuers::default(),
            mutable: Mutex::new(Mutable {
                installations,
                ..Mutable::default()
            }),
        })
    }

    /// Locks the mutable state. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.mutable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The base URLs.
    pub fn bases(&self) -> Bases {
        self.bases.get().cloned().unwrap_or(Bases {
            api: String::new(),
            git: String::new(),
            scheme: "http",
        })
    }

    /// A repository by owner and name (case-insensitive).
    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repository> {
        self.repos.iter().find(|r| r.is(owner, name))
    }

    /// A repository by id.
    pub fn repo_by_id(&self, id: u64) -> Option<&Repository> {
        self.repos.iter().find(|r| r.id == id)
    }

    /// The id of the repository formerly called `owner/name`, if it is not a current name.
    pub fn renamed(&self, owner: &str, name: &str) -> Option<u64> {
        if self.repo(owner, name).is_some() {
            return None;
        }
        self.renames
            .iter()
            .find(|(o, n, _)| o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name))
            .map(|(_, _, id)| *id)
    }

    /// Checks an installation token and returns what it grants.
    pub fn authenticate_token(&self, token: &str) -> Result<TokenAuth, TokenProblem> {
        let now = self.clock.unix();
        let state = self.lock();
        let grant = state
            .tokens
            .get(token)
            .ok_or(TokenProblem::BadCredentials)?;
        if now >= grant.expires_at {
            return Err(TokenProblem::BadCredentials);
        }
        let delay = i64::try_from(state.replication_delay).unwrap_or(i64::MAX);
        if now < grant.created_at.saturating_add(delay) {
            return Err(TokenProblem::BadCredentials);
        }
        let installation = state
            .installations
            .live
            .get(&grant.installation_id)
            .ok_or(TokenProblem::BadCredentials)?;
        if installation.suspended_at.is_some() {
            return Err(TokenProblem::Suspended);
        }
        Ok(TokenAuth {
            grant: grant.clone(),
            installation: installation.clone(),
        })
    }

    /// The primary limit per hour of a bucket (`installation:ID`, `app:ID`, `anonymous`).
    pub fn bucket_limit(&self, key: &str) -> u64 {
        if key == "anonymous" {
            return 60;
        }
        key.strip_prefix("installation:")
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| self.installation_limits.get(&id).copied())
            .unwrap_or(self.rate_limit.limit)
            .max(1)
    }

    /// Counts a request against a bucket's secondary limit (`[rate_limit].secondary_per_minute`);
    /// `Err(seconds)` = over it, retry after that many seconds.
    pub fn secondary_limit(&self, key: &str) -> Result<(), u64> {
        let Some(per_minute) = self.rate_limit.secondary_per_minute else {
            return Ok(());
        };
        let now = self.clock.unix();
        let minute = now - now.rem_euclid(60);
        let mut state = self.lock();
        let window = state
            .secondary
            .entry(key.to_string())
            .or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        window.1 += 1;
        if window.1 > per_minute {
            return Err(u64::try_from(minute + 60 - now).unwrap_or(60).max(1));
        }
        Ok(())
    }

    /// Counts a request against a rate-limit bucket and returns the `x-ratelimit-*` headers, or
    /// `Err(headers)` when the bucket is exhausted and enforcement is on.
    pub fn rate_limit(
        &self,
        key: &str,
        resource: &'static str,
    ) -> Result<RateHeaders, RateHeaders> {
        let now = self.clock.unix();
        let limit = self.bucket_limit(key);
        let mut state = self.lock();
        let bucket = state.rate.entry(key.to_string()).or_insert(RateBucket {
            used: 0,
            reset: now + 3600,
        });
        if now >= bucket.reset || (!self.rate_limit.enforce && bucket.used >= limit) {
            *bucket = RateBucket {
                used: 0,
                reset: now + 3600,
            };
        }
        if bucket.used >= limit {
            return Err(RateHeaders {
                limit,
                remaining: 0,
                used: bucket.used,
                reset: bucket.reset,
                resource,
            });
        }
        bucket.used += 1;
        Ok(RateHeaders {
            limit,
            remaining: limit - bucket.used,
            used: bucket.used,
            reset: bucket.reset,
            resource,
        })
    }
}

/// The `x-ratelimit-*` header values of one response.
#[derive(Debug, Clone, Copy)]
pub struct RateHeaders {
    /// `x-ratelimit-limit`.
    pub limit: u64,
    /// `x-ratelimit-remaining`.
    pub remaining: u64,
    /// `x-ratelimit-used`.
    pub used: u64,
    /// `x-ratelimit-reset` (Unix seconds).
    pub reset: i64,
    /// `x-ratelimit-resource`.
    pub resource: &'static str,
}

fn parse_permissions(perms: &BTreeMap<String, String>) -> PermissionSet {
    perms
        .iter()
        .filter_map(|(k, v)| Level::parse(v).map(|l| (k.clone(), l)))
        .collect()
}
