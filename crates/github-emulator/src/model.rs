//! The emulated GitHub world: Apps, accounts, installations and repositories, and how each is
//! rendered as GitHub's JSON. Apps, accounts and repositories are fixed at start; installations
//! change through faults (suspend, uninstall, reinstall) and live in [`Installations`].

use crate::fixture::AccountType;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A permission level; ordered so that a ceiling check is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// read
    Read,
    /// write
    Write,
    /// admin
    Admin,
}

impl Level {
    /// Parses GitHub's spelling; anything else is `None`.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            "admin" => Some(Level::Admin),
            _ => None,
        }
    }

    /// GitHub's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

/// Permissions by name.
pub type PermissionSet = BTreeMap<String, Level>;

/// Renders permissions as GitHub's JSON object.
pub fn permissions_json(perms: &PermissionSet) -> Value {
    Value::Object(
        perms
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// GitHub's legacy global node id (`base64("0<len>:<Type><id>")`).
pub fn node_id(kind: &str, id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// A user or organization account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Login as spelled in the fixture.
    pub login: String,
    /// Numeric id.
    pub id: u64,
    /// Organization or User.
    pub kind: AccountType,
}

impl Account {
    /// GitHub's "simple user" object.
    pub fn json(&self) -> Value {
        let login = &self.login;
        json!({
            "login": login,
            "id": self.id,
            "node_id": node_id(self.kind.as_str(), self.id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", self.id),
            "gravatar_id": "",
            "url": format!("https://api.github.com/users/{login}"),
            "html_url": format!("https://github.com/{login}"),
            "repos_url": format!("https://api.github.com/users/{login}/repos"),
            "type": self.kind.as_str(),
            "user_view_type": "public",
            "site_admin": false,
        })
    }
}

/// A GitHub App.
#[derive(Debug, Clone)]
pub struct App {
    /// App id.
    pub id: u64,
    /// Client id, if any.
    pub client_id: Option<String>,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Owner account.
    pub owner: Account,
    /// Public key, PKCS#1 `RSAPublicKey` DER, that App JWTs must verify against.
    pub public_key_der: Vec<u8>,
    /// Permissions `GET /app` reports.
    pub permissions: PermissionSet,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

impl App {
    /// `GET /app`'s body.
    pub fn json(&self, installations_count: usize) -> Value {
        let created = crate::clock::iso8601_z(self.created_at);
        json!({
            "id": self.id,
            "slug": self.slug,
            "client_id": self.client_id,
            "node_id": node_id("Integration", self.id),
            "owner": self.owner.json(),
            "name": self.name,
            "description": "",
            "external_url": "https://example.invalid/ghapp",
            "html_url": format!("https://github.com/apps/{}", self.slug),
            "created_at": created,
            "updated_at": created,
            "permissions": permissions_json(&self.permissions),
            "events": [],
            "installations_count": installations_count,
        })
    }

    /// The bot login (`<slug>[bot]`) its installation tokens act as.
    pub fn bot_login(&self) -> String {
        format!("{}[bot]", self.slug)
    }
}

/// A repository.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Repository id.
    pub id: u64,
    /// Owner account.
    pub owner: Account,
    /// Bare name.
    pub name: String,
    /// Private or public.
    pub private: bool,
    /// Default branch.
    pub default_branch: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

impl Repository {
    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner.login, self.name)
    }

    /// Whether this is `owner/name`, compared case-insensitively as GitHub does.
    pub fn is(&self, owner: &str, name: &str) -> bool {
        self.owner.login.eq_ignore_ascii_case(owner) && self.name.eq_ignore_ascii_case(name)
    }

    /// A full repository object. `api_base` is the REST base the client used; `git_url` the
    /// emulator's git base (for `clone_url`).
    pub fn json(&self, api_base: &str, git_url: &str) -> Value {
        let full_name = self.full_name();
        let created = crate::clock::iso8601_z(self.created_at);
        json!({
            "id": self.id,
            "node_id": node_id("Repository", self.id),
            "name": self.name,
            "full_name": full_name,
            "private": self.private,
            "owner": self.owner.json(),
            "html_url": format!("https://github.com/{full_name}"),
            "description": null,
            "fork": false,
            "url": format!("{api_base}/repos/{full_name}"),
            "clone_url": format!("{git_url}/{full_name}.git"),
            "default_branch": self.default_branch,
            "visibility": if self.private { "private" } else { "public" },
            "archived": false,
            "disabled": false,
            "created_at": created,
            "updated_at": created,
            "pushed_at": created,
        })
    }
}

/// An installation of an App on an account.
#[derive(Debug, Clone)]
pub struct Installation {
    /// Installation id.
    pub id: u64,
    /// The App's id.
    pub app_id: u64,
    /// The account it is installed on.
    pub account: Account,
    /// Selected repository ids, or `None` for all of the account's repositories.
    pub selected: Option<Vec<u64>>,
    /// Granted permissions.
    pub permissions: PermissionSet,
    /// When it was suspended (Unix seconds), if it is.
    pub suspended_at: Option<i64>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last update (Unix seconds); `since` filters on it.
    pub updated_at: i64,
}

impl Installation {
    /// Whether the installation can reach `repo`.
    pub fn covers(&self, repo: &Repository) -> bool {
        repo.owner.login.eq_ignore_ascii_case(&self.account.login)
            && self
                .selected
                .as_ref()
                .is_none_or(|ids| ids.contains(&repo.id))
    }

    /// `"all"` or `"selected"`.
    pub fn repository_selection(&self) -> &'static str {
        if self.selected.is_some() {
            "selected"
        } else {
            "all"
        }
    }

    /// GitHub's installation object.
    pub fn json(&self, app: &App, api_base: &str) -> Value {
        let html_url = match self.account.kind {
            AccountType::Organization => format!(
                "https://github.com/organizations/{}/settings/installations/{}",
                self.account.login, self.id
            ),
            AccountType::User => format!("https://github.com/settings/installations/{}", self.id),
        };
        json!({
            "id": self.id,
            "client_id": app.client_id,
            "account": self.account.json(),
            "repository_selection": self.repository_selection(),
            "access_tokens_url": format!("{api_base}/app/installations/{}/access_tokens", self.id),
            "repositories_url": format!("{api_base}/installation/repositories"),
            "html_url": html_url,
            "app_id": self.app_id,
            "app_slug": app.slug,
            "target_id": self.account.id,
            "target_type": self.account.kind.as_str(),
            "permissions": permissions_json(&self.permissions),
            "events": [],
            "created_at": crate::clock::iso8601_z(self.created_at),
            "updated_at": crate::clock::iso8601_z(self.updated_at),
            "single_file_name": null,
            "has_multiple_single_files": false,
            "single_file_paths": [],
            "suspended_by": if self.suspended_at.is_some() { self.account.json() } else { Value::Null },
            "suspended_at": self.suspended_at.map(crate::clock::iso8601_z),
        })
    }
}

/// The installations that exist now, plus the uninstalled ones (kept so `reinstall` can restore
/// them under a new id).
#[derive(Debug, Default)]
pub struct Installations {
    /// Live installations by id.
    pub live: BTreeMap<u64, Installation>,
    /// Uninstalled installations by their old id.
    pub removed: BTreeMap<u64, Installation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_match_githubs_legacy_format() {
        assert_eq!(
            node_id("Repository", 1296269),
            "MDEwOlJlcG9zaXRvcnkxMjk2MjY5"
        );
        assert_eq!(node_id("User", 1), "MDQ6VXNlcjE=");
        assert_eq!(node_id("Integration", 1), "MDExOkludGVncmF0aW9uMQ==");
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Level::Read < Level::Write && Level::Write < Level::Admin);
        assert_eq!(Level::parse("write"), Some(Level::Write));
        assert_eq!(Level::parse("Write"), None);
    }
}
