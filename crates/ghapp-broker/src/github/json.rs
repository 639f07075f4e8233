//! GitHub's JSON shapes for the few endpoints the broker calls, read leniently (unknown fields
//! ignored, optional fields defaulted as octokit does) and converted to the broker's types.

use ghapp_protocol::permissions::{Level, Permissions};
use ghapp_protocol::time::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `{"message": …}` of an error body.
#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}

/// An installation object (`GET /repos/{o}/{r}/installation`, `/app/installations`, …).
#[derive(Deserialize)]
pub(crate) struct InstallationJson {
    pub id: u64,
    #[serde(default)]
    pub account: Option<AccountJson>,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub suspended_at: Option<String>,
}

/// The `account` of an installation.
#[derive(Deserialize)]
pub(crate) struct AccountJson {
    #[serde(default)]
    pub login: Option<String>,
    /// Enterprise accounts have a slug instead of a login.
    #[serde(default)]
    pub slug: Option<String>,
}

/// `POST /app/installations/{id}/access_tokens` → 201.
#[derive(Deserialize)]
pub(crate) struct AccessTokenJson {
    pub token: String,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub repositories: Option<Vec<RepositoryJson>>,
}

/// A repository inside an access-token response (only its name matters here).
#[derive(Deserialize)]
pub(crate) struct RepositoryJson {
    pub name: String,
}

/// `POST /orgs/{org}/actions/runners/{registration,remove}-token` → 201.
#[derive(Deserialize)]
pub(crate) struct RunnerTokenJson {
    pub token: String,
    pub expires_at: Timestamp,
}

/// GitHub's permission map as ghapp's type. Names or levels ghapp does not recognise are
/// returned separately so a check can treat them as "more than asked".
pub(crate) fn permissions_from_map(map: &BTreeMap<String, String>) -> (Permissions, Vec<String>) {
    let mut permissions = Permissions::new();
    let mut unrecognised = Vec::new();
    for (name, level) in map {
        match level.parse::<Level>() {
            Ok(level) if permissions.insert(name, level).is_ok() => {}
            _ => unrecognised.push(format!("{name}:{level}")),
        }
    }
    (permissions, unrecognised)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_githubs_documented_examples() {
        let installation: InstallationJson = serde_json::from_str(
            r#"{"id":1,"account":{"login":"octocat","id":1},"app_id":1,"target_type":"Organization",
               "permissions":{"checks":"write","metadata":"read","contents":"read"},
               "repository_selection":"selected","suspended_at":null,"suspended_by":null}"#,
        )
        .unwrap();
        assert_eq!(
            installation.account.unwrap().login.as_deref(),
            Some("octocat")
        );
        let (perms, odd) = permissions_from_map(&installation.permissions);
        assert_eq!(perms.to_list(), "checks:write,contents:read,metadata:read");
        assert!(odd.is_empty());

        let token: AccessTokenJson = serde_json::from_str(
            r#"{"token":"ghs_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2016-07-11T22:14:10Z",
               "permissions":{"issues":"write","contents":"read"},"repository_selection":"selected"}"#,
        )
        .unwrap();
        assert!(token.repositories.is_none(), "absent when not narrowed");
        let (_, odd) = permissions_from_map(&BTreeMap::from([(
            "single_file".to_string(),
            "owner".to_string(),
        )]));
        assert_eq!(odd, vec!["single_file:owner".to_string()]);
    }
}
