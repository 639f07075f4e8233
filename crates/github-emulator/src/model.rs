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
    /// GitHub's "simple user" object, or for an enterprise its "enterprise" object.
    pub fn json(&self) -> Value {
        let login = &self.login;
        if self.kind == AccountType::Enterprise {
            return json!({
                "id": self.id,
                "node_id": node_id("Enterprise", self.id),
                "name": login,
                "slug": login,
                "description": null,
                "website_url": null,
                "html_url": format!("https://github.com/enterprises/{login}"),
                "created_at": ACCOUNT_CREATED_AT,
                "updated_at": ACCOUNT_CREATED_AT,
                "avatar_url": format!("https://avatars.githubusercontent.com/b/{}?v=4", self.id),
            });
        }
        let api = format!("https://api.github.com/users/{login}");
        json!({
            "login": login,
            "id": self.id,
            "node_id": node_id(self.kind.as_str(), self.id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", self.id),
            "gravatar_id": "",
            "url": api,
            "html_url": format!("https://github.com/{login}"),
            "followers_url": format!("{api}/followers"),
            "following_url": format!("{api}/following{{/other_user}}"),
            "gists_url": format!("{api}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/subscriptions"),
            "organizations_url": format!("{api}/orgs"),
            "repos_url": format!("{api}/repos"),
            "events_url": format!("{api}/events{{/privacy}}"),
            "received_events_url": format!("{api}/received_events"),
            "type": self.kind.as_str(),
            "user_view_type": "public",
            "site_admin": false,
        })
    }
}

/// The creation time every account reports (accounts predate the emulator's run).
const ACCOUNT_CREATED_AT: &str = "2020-01-01T00:00:00Z";

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

    /// A repository object as GitHub renders it: the `repository` schema, or with `full` the
    /// `full-repository` one (`GET /repos/{owner}/{repo}`: adds `network_count`,
    /// `subscribers_count`, `has_discussions`). `api_base` is the REST base the client used;
    /// `git_url` the emulator's git base (for `clone_url`).
    pub fn json(&self, api_base: &str, git_url: &str, full: bool) -> Value {
        let full_name = self.full_name();
        let created = crate::clock::iso8601_z(self.created_at);
        let url = format!("{api_base}/repos/{full_name}");
        let git_host = git_url.split_once("://").map_or(git_url, |(_, rest)| rest);
        let mut value = json!({
            "id": self.id,
            "node_id": node_id("Repository", self.id),
            "name": self.name,
            "full_name": full_name,
            "private": self.private,
            "owner": self.owner.json(),
            "html_url": format!("https://github.com/{full_name}"),
            "description": null,
            "fork": false,
            "url": url,
            "archive_url": format!("{url}/{{archive_format}}{{/ref}}"),
            "assignees_url": format!("{url}/assignees{{/user}}"),
            "blobs_url": format!("{url}/git/blobs{{/sha}}"),
            "branches_url": format!("{url}/branches{{/branch}}"),
            "collaborators_url": format!("{url}/collaborators{{/collaborator}}"),
            "comments_url": format!("{url}/comments{{/number}}"),
            "commits_url": format!("{url}/commits{{/sha}}"),
            "compare_url": format!("{url}/compare/{{base}}...{{head}}"),
            "contents_url": format!("{url}/contents/{{+path}}"),
            "contributors_url": format!("{url}/contributors"),
            "deployments_url": format!("{url}/deployments"),
            "downloads_url": format!("{url}/downloads"),
            "events_url": format!("{url}/events"),
            "forks_url": format!("{url}/forks"),
            "git_commits_url": format!("{url}/git/commits{{/sha}}"),
            "git_refs_url": format!("{url}/git/refs{{/sha}}"),
            "git_tags_url": format!("{url}/git/tags{{/sha}}"),
            "git_url": format!("git://{git_host}/{full_name}.git"),
            "issue_comment_url": format!("{url}/issues/comments{{/number}}"),
            "issue_events_url": format!("{url}/issues/events{{/number}}"),
            "issues_url": format!("{url}/issues{{/number}}"),
            "keys_url": format!("{url}/keys{{/key_id}}"),
            "labels_url": format!("{url}/labels{{/name}}"),
            "languages_url": format!("{url}/languages"),
            "merges_url": format!("{url}/merges"),
            "milestones_url": format!("{url}/milestones{{/number}}"),
            "notifications_url": format!("{url}/notifications{{?since,all,participating}}"),
            "pulls_url": format!("{url}/pulls{{/number}}"),
            "releases_url": format!("{url}/releases{{/id}}"),
            "ssh_url": format!("git@{git_host}:{full_name}.git"),
            "stargazers_url": format!("{url}/stargazers"),
            "statuses_url": format!("{url}/statuses/{{sha}}"),
            "subscribers_url": format!("{url}/subscribers"),
            "subscription_url": format!("{url}/subscription"),
            "tags_url": format!("{url}/tags"),
            "teams_url": format!("{url}/teams"),
            "trees_url": format!("{url}/git/trees{{/sha}}"),
            "clone_url": format!("{git_url}/{full_name}.git"),
            "mirror_url": null,
            "hooks_url": format!("{url}/hooks"),
            "svn_url": format!("https://github.com/{full_name}"),
            "homepage": null,
            "language": null,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 1,
            "default_branch": self.default_branch,
            "open_issues_count": 0,
            "open_issues": 0,
            "is_template": false,
            "topics": [],
            "has_issues": true,
            "has_projects": true,
            "has_wiki": true,
            "has_pages": false,
            "has_downloads": true,
            "archived": false,
            "disabled": false,
            "visibility": if self.private { "private" } else { "public" },
            "license": null,
            "allow_forking": true,
            "web_commit_signoff_required": false,
            "pushed_at": created,
            "created_at": created,
            "updated_at": created,
        });
        if full {
            value["has_discussions"] = Value::Bool(false);
            value["network_count"] = Value::from(0);
            value["subscribers_count"] = Value::from(0);
        }
        value
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
        self.account.kind != AccountType::Enterprise
            && repo.owner.login.eq_ignore_ascii_case(&self.account.login)
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
            AccountType::Enterprise => format!(
                "https://github.com/enterprises/{}/settings/installations/{}",
                self.account.login, self.id
            ),
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
