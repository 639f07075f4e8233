//! Which fields GitHub's REST description marks required in the objects the emulator sends
//! (github/rest-api-description, `components/schemas`, API version 2022-11-28 and 2026-03-10),
//! and the fixture's "minimal" mode that sends nothing else: a client that needs an optional
//! field fails here, as it would the day GitHub leaves that field out.

use serde_json::Value;

/// The schemas the emulator renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `simple-user` (accounts, owners).
    SimpleUser,
    /// `enterprise` (the account of an Enterprise installation).
    Enterprise,
    /// `integration` (`GET /app`).
    Integration,
    /// `installation`.
    Installation,
    /// `repository` (`/installation/repositories`, access-token `repositories`).
    Repository,
    /// `full-repository` (`GET /repos/{owner}/{repo}`).
    FullRepository,
    /// `installation-token` (`POST /app/installations/{id}/access_tokens`).
    InstallationToken,
    /// `authentication-token` (runner registration/remove tokens).
    AuthenticationToken,
}

const SIMPLE_USER: &[&str] = &[
    "avatar_url",
    "events_url",
    "followers_url",
    "following_url",
    "gists_url",
    "gravatar_id",
    "html_url",
    "id",
    "node_id",
    "login",
    "organizations_url",
    "received_events_url",
    "repos_url",
    "site_admin",
    "starred_url",
    "subscriptions_url",
    "type",
    "url",
];

const ENTERPRISE: &[&str] = &[
    "id",
    "node_id",
    "name",
    "slug",
    "html_url",
    "created_at",
    "updated_at",
    "avatar_url",
];

const INTEGRATION: &[&str] = &[
    "id",
    "node_id",
    "owner",
    "name",
    "description",
    "external_url",
    "html_url",
    "created_at",
    "updated_at",
    "permissions",
    "events",
];

const INSTALLATION: &[&str] = &[
    "id",
    "app_id",
    "app_slug",
    "target_id",
    "target_type",
    "single_file_name",
    "repository_selection",
    "access_tokens_url",
    "html_url",
    "repositories_url",
    "events",
    "account",
    "permissions",
    "created_at",
    "updated_at",
    "suspended_by",
    "suspended_at",
];

const REPOSITORY: &[&str] = &[
    "archive_url",
    "assignees_url",
    "blobs_url",
    "branches_url",
    "collaborators_url",
    "comments_url",
    "commits_url",
    "compare_url",
    "contents_url",
    "contributors_url",
    "deployments_url",
    "description",
    "downloads_url",
    "events_url",
    "fork",
    "forks_url",
    "full_name",
    "git_commits_url",
    "git_refs_url",
    "git_tags_url",
    "hooks_url",
    "html_url",
    "id",
    "node_id",
    "issue_comment_url",
    "issue_events_url",
    "issues_url",
    "keys_url",
    "labels_url",
    "languages_url",
    "merges_url",
    "milestones_url",
    "name",
    "notifications_url",
    "owner",
    "private",
    "pulls_url",
    "releases_url",
    "stargazers_url",
    "statuses_url",
    "subscribers_url",
    "subscription_url",
    "tags_url",
    "teams_url",
    "trees_url",
    "url",
    "clone_url",
    "default_branch",
    "forks",
    "forks_count",
    "git_url",
    "has_issues",
    "has_projects",
    "has_wiki",
    "has_pages",
    "homepage",
    "language",
    "archived",
    "disabled",
    "mirror_url",
    "open_issues",
    "open_issues_count",
    "license",
    "pushed_at",
    "size",
    "ssh_url",
    "stargazers_count",
    "svn_url",
    "watchers",
    "watchers_count",
    "created_at",
    "updated_at",
];

/// `full-repository` adds these to `repository`'s list.
const FULL_REPOSITORY_EXTRA: &[&str] = &["has_discussions", "network_count", "subscribers_count"];

const INSTALLATION_TOKEN: &[&str] = &["token", "expires_at"];

const AUTHENTICATION_TOKEN: &[&str] = &["token", "expires_at"];

impl Schema {
    /// Whether `field` is required by this schema.
    pub fn requires(self, field: &str) -> bool {
        self.field_lists().iter().any(|list| list.contains(&field))
    }

    /// Every required field (for tests that check an answer carries them all).
    pub fn required_fields(self) -> Vec<&'static str> {
        self.field_lists()
            .iter()
            .flat_map(|l| l.iter().copied())
            .collect()
    }

    /// The lists of required fields that make up this schema.
    fn field_lists(self) -> &'static [&'static [&'static str]] {
        match self {
            Schema::SimpleUser => &[SIMPLE_USER],
            Schema::Enterprise => &[ENTERPRISE],
            Schema::Integration => &[INTEGRATION],
            Schema::Installation => &[INSTALLATION],
            Schema::Repository => &[REPOSITORY],
            Schema::FullRepository => &[REPOSITORY, FULL_REPOSITORY_EXTRA],
            Schema::InstallationToken => &[INSTALLATION_TOKEN],
            Schema::AuthenticationToken => &[AUTHENTICATION_TOKEN],
        }
    }

    /// The schema of a nested object field, so minimal mode strips it too.
    fn nested(self, field: &str, value: &Value) -> Option<Schema> {
        let account = || {
            if value.get("slug").is_some() && value.get("login").is_none() {
                Schema::Enterprise
            } else {
                Schema::SimpleUser
            }
        };
        match (self, field) {
            (Schema::Integration, "owner") => Some(account()),
            (Schema::Installation, "account" | "suspended_by") => Some(account()),
            (Schema::Repository | Schema::FullRepository, "owner") => Some(Schema::SimpleUser),
            (Schema::InstallationToken, "repositories") => Some(Schema::Repository),
            _ => None,
        }
    }

    /// `value` with only the required fields (nested objects too).
    pub fn minimal(self, value: Value) -> Value {
        let Value::Object(map) = value else {
            return value;
        };
        Value::Object(
            map.into_iter()
                .filter(|(k, _)| self.requires(k))
                .map(|(k, v)| {
                    let v = match (self.nested(&k, &v), v) {
                        (Some(schema), Value::Array(items)) => {
                            Value::Array(items.into_iter().map(|i| schema.minimal(i)).collect())
                        }
                        (Some(schema), v @ Value::Object(_)) => schema.minimal(v),
                        (_, v) => v,
                    };
                    (k, v)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_keeps_required_fields_only_nested_too() {
        let token = json!({"token": "t", "expires_at": "x", "permissions": {}, "repositories": []});
        assert_eq!(
            Schema::InstallationToken.minimal(token),
            json!({"token": "t", "expires_at": "x"})
        );
        let inst = json!({"id": 1, "client_id": "Iv1", "account": {"login": "a", "user_view_type": "public"}});
        assert_eq!(
            Schema::Installation.minimal(inst),
            json!({"id": 1, "account": {"login": "a"}})
        );
        assert!(Schema::FullRepository.requires("network_count"));
        assert!(!Schema::Repository.requires("network_count"));
    }
}
