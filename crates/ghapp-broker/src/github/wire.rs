//! GitHub's wire formats for the few endpoints the broker calls: the JSON shapes, read
//! leniently (unknown fields ignored, optional fields defaulted as octokit does), the request
//! body, and the broker's own types they convert to. Also the reading of error bodies and
//! `Link` headers.

use super::ApiError;
use crate::clock::ServerTime;
use crate::transport::HttpResponse;
use ghapp_protocol::permissions::{Level, Permissions};
use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An installation as the broker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallationInfo {
    /// Installation id.
    pub id: u64,
    /// The account's login (`acme`).
    pub account: String,
    /// What the installation was granted.
    pub permissions: Permissions,
    /// Suspended by the account or GitHub.
    pub suspended: bool,
    /// An Enterprise installation (`target_type: "Enterprise"`): it covers no repository, so
    /// it never serves an owner or repository.
    pub enterprise: bool,
    /// The repository's id, when GitHub answered the look-up for a repository through a
    /// redirect to `/repositories/{id}/installation` (the repository was renamed): tokens for
    /// it are narrowed by this id, as its old name no longer resolves.
    pub repository_id: Option<u64>,
}

/// The body of `POST /app/installations/{id}/access_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct TokenRequestBody {
    /// Repository names (bare, within the installation's account).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Repository ids (a renamed repository, found through a redirect).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repository_ids: Vec<u64>,
    /// Permissions; absent means everything the installation has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Permissions>,
}

/// A freshly minted installation token.
#[derive(Debug)]
pub(crate) struct MintedToken {
    pub token: Token,
    /// GitHub's `expires_at`.
    pub expires_at: Timestamp,
    /// When the answer arrived, by both clocks and GitHub's.
    pub server_time: ServerTime,
    /// What GitHub granted, when it said (its schema requires only `token` and `expires_at`).
    pub permissions: Option<Permissions>,
    /// Granted permissions ghapp does not recognise (treated as more than asked).
    pub unrecognised_permissions: Vec<String>,
    /// The repositories it is narrowed to, when GitHub listed them.
    pub repositories: Option<Vec<GrantedRepository>>,
    /// `all` or `selected`, when GitHub said.
    pub repository_selection: Option<String>,
}

/// A repository an access token covers, as GitHub listed it.
#[derive(Debug, Clone)]
pub(crate) struct GrantedRepository {
    /// Its id, when given.
    pub id: Option<u64>,
    /// Its name (bare).
    pub name: String,
}

/// A runner registration or removal token.
#[derive(Debug)]
pub(crate) struct RunnerToken {
    pub token: Token,
    /// GitHub's `expires_at`.
    pub expires_at: Timestamp,
}

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
    /// `Organization`, `User` or `Enterprise`.
    #[serde(default)]
    pub target_type: Option<String>,
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

/// `POST /app/installations/{id}/access_tokens` → 201. GitHub's schema requires only `token`
/// and `expires_at`; the rest is read when present.
#[derive(Deserialize)]
pub(crate) struct AccessTokenJson {
    pub token: String,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub repositories: Option<Vec<RepositoryJson>>,
    #[serde(default)]
    pub repository_selection: Option<String>,
}

/// A repository inside an access-token response (its id and name matter here).
#[derive(Deserialize)]
pub(crate) struct RepositoryJson {
    #[serde(default)]
    pub id: Option<u64>,
    pub name: String,
}

/// `POST /orgs/{org}/actions/runners/{registration,remove}-token` → 201.
#[derive(Deserialize)]
pub(crate) struct RunnerTokenJson {
    pub token: String,
    pub expires_at: Timestamp,
}

/// A self-hosted runner as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfHostedRunner {
    /// GitHub's id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// `status: "online"`.
    pub online: bool,
    /// Running a job.
    pub busy: bool,
    /// Its label names.
    pub labels: Vec<String>,
}

impl From<RunnerJson> for SelfHostedRunner {
    fn from(json: RunnerJson) -> Self {
        SelfHostedRunner {
            id: json.id,
            name: json.name,
            online: json.status.eq_ignore_ascii_case("online"),
            busy: json.busy,
            labels: json.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

/// A just-in-time runner GitHub registered. `Debug` shows the configuration's fingerprint.
#[derive(Debug, Clone)]
pub struct JitRunner {
    /// The runner, registered (offline until it starts).
    pub runner: SelfHostedRunner,
    /// What `./run.sh --jitconfig` takes: a secret.
    pub encoded_jit_config: Token,
    /// The organization's or repository's page.
    pub url: String,
}

/// A self-hosted runner (`GET /orgs/{org}/actions/runners`, …).
#[derive(Deserialize)]
pub(crate) struct RunnerJson {
    pub id: u64,
    pub name: String,
    /// `online` or `offline`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub busy: bool,
    #[serde(default)]
    pub labels: Vec<RunnerLabelJson>,
}

/// One label of a runner.
#[derive(Deserialize)]
pub(crate) struct RunnerLabelJson {
    pub name: String,
}

/// `GET …/actions/runners` → `{total_count, runners}`.
#[derive(Deserialize)]
pub(crate) struct RunnerListJson {
    #[serde(default)]
    pub total_count: u64,
    pub runners: Vec<RunnerJson>,
}

/// `POST …/actions/runners/generate-jitconfig` → 201 `{runner, encoded_jit_config}`.
#[derive(Deserialize)]
pub(crate) struct JitConfigJson {
    pub runner: RunnerJson,
    pub encoded_jit_config: String,
}

/// The body of `POST …/actions/runners/generate-jitconfig`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JitConfigBody {
    pub name: String,
    pub runner_group_id: u64,
    pub labels: Vec<String>,
    pub work_folder: String,
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

pub(super) fn installation_info(json: InstallationJson) -> InstallationInfo {
    let enterprise = json
        .target_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("enterprise"))
        || json
            .account
            .as_ref()
            .is_some_and(|a| a.login.is_none() && a.slug.is_some());
    let account = json
        .account
        .and_then(|a| a.login.or(a.slug))
        .unwrap_or_default();
    let (permissions, _) = permissions_from_map(&json.permissions);
    InstallationInfo {
        id: json.id,
        account,
        permissions,
        suspended: json.suspended_at.is_some(),
        enterprise,
        repository_id: None,
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    response: &HttpResponse,
    route: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(&response.body).map_err(|e| ApiError::Protocol {
        detail: format!(
            "{route}: unexpected answer from GitHub (HTTP {}): {e}",
            response.status
        ),
    })
}

/// GitHub's `message`, or a short printable excerpt of a non-JSON body.
pub(super) fn error_message(response: &HttpResponse) -> String {
    let raw = serde_json::from_slice::<ErrorBody>(&response.body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&response.body);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_string()
            } else {
                text.chars().take(120).collect()
            }
        });
    let clean: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    clean.trim().to_string()
}

/// The `rel="next"` URL of a `Link` header.
pub(super) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
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
        let minimal: AccessTokenJson = serde_json::from_str(
            r#"{"token":"ghs_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2016-07-11T22:14:10Z"}"#,
        )
        .unwrap();
        assert!(minimal.permissions.is_none() && minimal.repository_selection.is_none());
        let enterprise: InstallationJson = serde_json::from_str(
            r#"{"id":9,"account":{"slug":"big-corp","name":"Big Corp","id":4},"target_type":"Enterprise",
               "permissions":{},"suspended_at":null}"#,
        )
        .unwrap();
        let info = installation_info(enterprise);
        assert!(info.enterprise);
        assert_eq!(info.account, "big-corp");
        let (_, odd) = permissions_from_map(&BTreeMap::from([(
            "single_file".to_string(),
            "owner".to_string(),
        )]));
        assert_eq!(odd, vec!["single_file:owner".to_string()]);
    }
    #[test]
    fn link_header_next() {
        let link = "<https://api.github.com/app/installations?per_page=100&page=2>; rel=\"next\", <https://api.github.com/app/installations?per_page=100&page=5>; rel=\"last\"";
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/app/installations?per_page=100&page=2")
        );
        assert_eq!(next_link("<https://x/?page=1>; rel=\"prev\""), None);
    }

    #[test]
    fn token_request_body_shape() {
        let body = TokenRequestBody {
            repositories: vec!["widgets".into()],
            ..TokenRequestBody::default()
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"repositories":["widgets"]}"#
        );
        let body = TokenRequestBody {
            permissions: Some(Permissions::parse_list("contents:read").unwrap()),
            ..TokenRequestBody::default()
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"permissions":{"contents":"read"}}"#
        );
        let body = TokenRequestBody {
            repository_ids: vec![123],
            ..TokenRequestBody::default()
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"repository_ids":[123]}"#
        );
    }

    #[test]
    fn error_messages_are_cleaned() {
        let response = HttpResponse {
            status: 502,
            headers: vec![],
            body: zeroize::Zeroizing::new(b"<html>\nBad gateway\n</html>".to_vec()),
        };
        assert_eq!(error_message(&response), "<html> Bad gateway </html>");
        let response = HttpResponse {
            status: 403,
            headers: vec![],
            body: zeroize::Zeroizing::new(
                br#"{"message":"This installation has been suspended","status":"403"}"#.to_vec(),
            ),
        };
        assert_eq!(
            error_message(&response),
            "This installation has been suspended"
        );
    }
}
