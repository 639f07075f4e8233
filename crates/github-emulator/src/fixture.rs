//! The fixture file (TOML): which Apps exist, where they are installed, with which permissions
//! and repositories, and which repositories exist. Parsed strictly (unknown keys are errors) so
//! a typo in a test fixture fails loudly instead of silently emulating something else.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Default lifetime of minted tokens: GitHub's one hour.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;

/// The whole fixture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Lifetime of minted installation tokens, in seconds.
    #[serde(default = "default_ttl")]
    pub token_ttl_secs: u64,
    /// Token format when the request carries no `X-GitHub-Stateless-S2S-Token` header:
    /// `false` = classic 40-character tokens (GitHub before the rollout), `true` = stateless.
    #[serde(default)]
    pub stateless_default: bool,
    /// Primary rate limit per hour reported in `x-ratelimit-*` headers.
    #[serde(default)]
    pub rate_limit: RateLimitFixture,
    /// "Minimal" mode: answers carry only the fields GitHub's schema marks required (e.g. an
    /// access token answer is just `token` and `expires_at`), so clients are tested against
    /// the least GitHub may send.
    #[serde(default)]
    pub minimal: bool,
    /// Emulate GitHub Enterprise Server of this version (`"3.13"`); before 3.14 a JWT whose
    /// `iss` is a client id is refused (only App ids are accepted there). Absent = github.com.
    #[serde(default)]
    pub ghes_version: Option<String>,
    /// The GitHub Apps.
    #[serde(default)]
    pub apps: Vec<AppFixture>,
    /// Their installations.
    #[serde(default)]
    pub installations: Vec<InstallationFixture>,
    /// Repositories that exist (a bare git repo is created for each). Repositories named by an
    /// installation's `repositories` exist implicitly.
    #[serde(default)]
    pub repositories: Vec<RepositoryFixture>,
}

fn default_ttl() -> u64 {
    DEFAULT_TOKEN_TTL_SECS
}

/// `[rate_limit]`: what the `x-ratelimit-*` headers report, and whether exhaustion is enforced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFixture {
    /// Requests per hour per installation (and per App for JWT requests).
    #[serde(default = "default_limit")]
    pub limit: u64,
    /// When true, a bucket at zero answers 403 `API rate limit exceeded…` until its reset. When
    /// false (default) an exhausted bucket silently starts a new window, so long benchmarks never
    /// see `x-ratelimit-remaining: 0`.
    #[serde(default)]
    pub enforce: bool,
    /// Secondary rate limit: more than this many requests in one minute by one installation
    /// (or one App's JWTs) answer 403 `You have exceeded a secondary rate limit…` with
    /// `retry-after`. Absent = no secondary limit.
    #[serde(default)]
    pub secondary_per_minute: Option<u64>,
}

impl Default for RateLimitFixture {
    fn default() -> Self {
        RateLimitFixture {
            limit: default_limit(),
            enforce: false,
            secondary_per_minute: None,
        }
    }
}

fn default_limit() -> u64 {
    5000
}

/// One `[[apps]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFixture {
    /// The App id (`iss` as a number or numeric string).
    pub id: u64,
    /// The client id (`iss` as a string), e.g. `Iv1.0123456789abcdef`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The slug (`<slug>[bot]` is the bot login).
    pub slug: String,
    /// Display name; defaults to the slug.
    #[serde(default)]
    pub name: Option<String>,
    /// Login of the App's owner; defaults to the first installation's account or `ghapp-owner`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Generate an RSA key and write its private PEM (PKCS#1) here, relative to the state dir.
    /// An existing valid key file is reused, so a restart keeps the App's key.
    #[serde(default)]
    pub private_key_out: Option<PathBuf>,
    /// Alternatively verify JWTs against this public key PEM (SPKI or PKCS#1), relative to the
    /// fixture file's directory.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The App's permissions as `GET /app` reports them; defaults to the union of its
    /// installations' permissions.
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
}

/// Organization, User or Enterprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum AccountType {
    /// An organization account.
    Organization,
    /// A user account.
    User,
    /// An enterprise (installations only: `target_type: "Enterprise"`; it owns no repositories).
    Enterprise,
}

impl AccountType {
    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Organization => "Organization",
            AccountType::User => "User",
            AccountType::Enterprise => "Enterprise",
        }
    }
}

/// One `[[installations]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallationFixture {
    /// The installation id.
    pub id: u64,
    /// The App's id.
    pub app: u64,
    /// The account login it is installed on.
    pub account: String,
    /// Organization (default) or User.
    #[serde(default = "default_account_type")]
    pub account_type: AccountType,
    /// Selected repository names (bare names in the account); omitted = all of the account's.
    #[serde(default)]
    pub repositories: Option<Vec<String>>,
    /// Granted permissions, name → read/write/admin.
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    /// Starts suspended.
    #[serde(default)]
    pub suspended: bool,
    /// This installation's primary rate limit per hour (default `[rate_limit].limit`).
    #[serde(default)]
    pub rate_limit: Option<u64>,
}

fn default_account_type() -> AccountType {
    AccountType::Organization
}

/// One `[[repositories]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryFixture {
    /// `owner/name`.
    pub full_name: String,
    /// Repository id; defaults to a stable number assigned in fixture order.
    #[serde(default)]
    pub id: Option<u64>,
    /// Private (default) or public. Public repositories can be fetched without credentials.
    #[serde(default = "default_true")]
    pub private: bool,
    /// The default branch (default `main`).
    #[serde(default)]
    pub default_branch: Option<String>,
    /// Former `owner/name`s (renames and transfers): `/repos/{old owner}/{old name}/…` answers
    /// 301 to `/repositories/{id}/…`, as GitHub does.
    #[serde(default)]
    pub previous_names: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl Fixture {
    /// Parses and validates fixture text.
    pub fn parse(text: &str) -> anyhow::Result<Fixture> {
        let fixture: Fixture = toml::from_str(text).context("parsing the fixture TOML")?;
        fixture.validate()?;
        Ok(fixture)
    }

    /// Whether a JWT may name its App by client id (`iss`): github.com and GHES 3.14 and later.
    pub fn accepts_client_id_issuer(&self) -> bool {
        match self.ghes_version.as_deref().and_then(parse_version) {
            Some(version) => version >= (3, 14),
            None => true,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(version) = &self.ghes_version
            && parse_version(version).is_none()
        {
            bail!("fixture: ghes_version {version:?} must look like \"3.13\"");
        }
        let mut app_ids = BTreeSet::new();
        let mut client_ids = BTreeSet::new();
        for app in &self.apps {
            if !app_ids.insert(app.id) {
                bail!("fixture: app id {} appears twice", app.id);
            }
            if let Some(client_id) = &app.client_id {
                if client_id.is_empty() || client_id.bytes().all(|b| b.is_ascii_digit()) {
                    bail!(
                        "fixture: app {}: client_id {client_id:?} must be non-numeric",
                        app.id
                    );
                }
                if !client_ids.insert(client_id.clone()) {
                    bail!("fixture: client_id {client_id:?} appears twice");
                }
            }
            if !valid_name(&app.slug) {
                bail!("fixture: app {}: invalid slug {:?}", app.id, app.slug);
            }
            match (&app.private_key_out, &app.public_key_file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!(
                    "fixture: app {}: give exactly one of private_key_out or public_key_file",
                    app.id
                ),
            }
            if let Some(out) = &app.private_key_out
                && (out.is_absolute() || out.components().any(|c| c.as_os_str() == ".."))
            {
                bail!(
                    "fixture: app {}: private_key_out {} must be relative to the state dir",
                    app.id,
                    out.display()
                );
            }
            if let Some(perms) = &app.permissions {
                check_permissions(perms).with_context(|| format!("fixture: app {}", app.id))?;
            }
        }
        let mut installation_ids = BTreeSet::new();
        for inst in &self.installations {
            if !installation_ids.insert(inst.id) {
                bail!("fixture: installation id {} appears twice", inst.id);
            }
            if !app_ids.contains(&inst.app) {
                bail!(
                    "fixture: installation {}: unknown app {}",
                    inst.id,
                    inst.app
                );
            }
            if !valid_name(&inst.account) {
                bail!(
                    "fixture: installation {}: invalid account {:?}",
                    inst.id,
                    inst.account
                );
            }
            check_permissions(&inst.permissions)
                .with_context(|| format!("fixture: installation {}", inst.id))?;
            if inst.account_type == AccountType::Enterprise && inst.repositories.is_some() {
                bail!(
                    "fixture: installation {}: an Enterprise installation has no repositories",
                    inst.id
                );
            }
            for repo in inst.repositories.iter().flatten() {
                if !valid_name(repo) {
                    bail!(
                        "fixture: installation {}: invalid repository name {repo:?} (bare names, no owner)",
                        inst.id
                    );
                }
            }
        }
        let mut repo_ids = BTreeSet::new();
        for repo in &self.repositories {
            let Some((owner, name)) = repo.full_name.split_once('/') else {
                bail!(
                    "fixture: repository {:?} must be owner/name",
                    repo.full_name
                );
            };
            if !valid_name(owner) || !valid_name(name) {
                bail!(
                    "fixture: repository {:?}: invalid owner or name",
                    repo.full_name
                );
            }
            if let Some(id) = repo.id
                && !repo_ids.insert(id)
            {
                bail!("fixture: repository id {id} appears twice");
            }
            for previous in &repo.previous_names {
                match previous.split_once('/') {
                    Some((o, n)) if valid_name(o) && valid_name(n) => {}
                    _ => bail!(
                        "fixture: repository {:?}: previous name {previous:?} must be owner/name",
                        repo.full_name
                    ),
                }
            }
            if let Some(branch) = &repo.default_branch
                && !valid_name(branch)
            {
                bail!(
                    "fixture: repository {:?}: invalid default_branch",
                    repo.full_name
                );
            }
        }
        Ok(())
    }
}

/// `"3.13"` → `(3, 13)`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Account, repository and branch names: what GitHub allows, which is also safe as a path part.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && !name.ends_with(".git")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_permissions(perms: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for (name, level) in perms {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            bail!("invalid permission name {name:?}");
        }
        if crate::model::Level::parse(level).is_none() {
            bail!("permission {name}: invalid level {level:?} (read, write or admin)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let fixture = Fixture::parse(
            r#"
token_ttl_secs = 3600
[[apps]]
id = 1
client_id = "Iv1.0123456789abcdef"
slug = "ghapp-test"
private_key_out = "app1.pem"
[[installations]]
id = 100
app = 1
account = "acme"
account_type = "Organization"
repositories = ["widgets"]
permissions = { contents = "write", metadata = "read" }
suspended = false
[[repositories]]
full_name = "acme/widgets"
"#,
        )
        .expect("valid fixture");
        assert_eq!(fixture.apps.len(), 1);
        assert_eq!(
            fixture.installations[0].account_type,
            AccountType::Organization
        );
    }

    #[test]
    fn rejects_typos_and_bad_references() {
        assert!(Fixture::parse("token_ttl = 5").is_err());
        assert!(
            Fixture::parse("[[installations]]\nid = 1\napp = 9\naccount = \"a\"").is_err(),
            "unknown app"
        );
        assert!(
            Fixture::parse("[[apps]]\nid = 1\nslug = \"s\"").is_err(),
            "no key given"
        );
        assert!(Fixture::parse("[[repositories]]\nfull_name = \"../x\"").is_err());
        assert!(
            Fixture::parse(
                "[[apps]]\nid = 1\nslug = \"s\"\nprivate_key_out = \"k.pem\"\n[[installations]]\nid = 1\napp = 1\naccount = \"a\"\npermissions = { contents = \"owner\" }"
            )
            .is_err(),
            "bad level"
        );
    }
}
