//! The runner service's API (docs/runners.md): routes, request and answer bodies, the runner
//! record and its states. Shared by the daemon (which serves it), the runner store (which keeps
//! the records) and the CLI (which asks for them).

use crate::secret::Token;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `POST`: provision a runner.
pub const PROVISION_PATH: &str = "/api/v1/runners/provision";
/// `GET`: the caller's runners (`?all=true`: everyone's, for unrestricted callers).
pub const RUNNERS_PATH: &str = "/api/v1/runners";
/// `GET`/`DELETE` `/api/v1/runners/{name}`.
pub const RUNNER_PREFIX: &str = "/api/v1/runners/";
/// `POST`: one reconciliation round with GitHub now (unrestricted callers).
pub const SYNC_PATH: &str = "/api/v1/runners/sync";
/// `POST`: delete runners offline longer than a duration (unrestricted callers).
pub const CLEANUP_PATH: &str = "/api/v1/runners/cleanup";
/// `GET`: the seed's health probe (the runner database answers).
pub const SERVICE_HEALTH_PATH: &str = "/health";

/// The most labels GitHub takes for a just-in-time runner.
pub const MAX_LABELS: usize = 100;
/// The label a runner gets when the request names none.
pub const DEFAULT_LABEL: &str = "self-hosted";

/// How a runner is provisioned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionMode {
    /// Just-in-time: GitHub registers the runner at once and answers an encoded configuration
    /// the runner starts with (`./run.sh --jitconfig …`); no reusable token leaves ghapp.
    #[default]
    Jit,
    /// A registration token (one hour, reusable within it) for `./config.sh`.
    RegistrationToken,
}

/// `POST /api/v1/runners/provision`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// The runner's name, unique among the live runners ghapp tracks.
    pub runner_name: String,
    /// Its labels (1–100; none given: `self-hosted`).
    #[serde(default)]
    pub labels: Vec<String>,
    /// The runner group (GitHub's "Default" group is 1); required by GitHub for JIT runners,
    /// defaults to 1 here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<u64>,
    /// Takes one job, then GitHub removes it.
    #[serde(default)]
    pub ephemeral: bool,
    /// `jit` (default) or `registration_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProvisionMode>,
    /// The organization (default: `[runners] owner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// `OWNER/REPO`: a repository's runner instead of an organization's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The runner's work folder (JIT; default `_work`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_folder: Option<String>,
}

/// The answer to a provision. Holds a secret (the JIT configuration or the registration token,
/// also inside `configuration_command`): its `Debug` shows fingerprints only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionResponse {
    /// The runner's name.
    pub runner_name: String,
    /// GitHub's runner id (JIT: known at once; registration token: once the runner registers).
    pub runner_id: Option<u64>,
    /// The organization's or repository's page (`config.sh --url`).
    pub github_url: String,
    /// How it was provisioned.
    pub mode: ProvisionMode,
    /// JIT: the configuration `./run.sh --jitconfig` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoded_jit_config: Option<Token>,
    /// Registration-token mode: the token for `./config.sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<Token>,
    /// When the registration token expires (registration-token mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The command that starts (JIT) or configures (registration token) the runner.
    pub configuration_command: Token,
    /// The runner as ghapp now tracks it.
    pub runner: RunnerRecord,
}

/// A runner's state in ghapp's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Provisioned; not seen online yet.
    Pending,
    /// Online at GitHub.
    Active,
    /// Registered at GitHub but offline.
    Offline,
    /// Gone from GitHub (deprovisioned, cleaned up, or an ephemeral runner done with its job).
    Deleted,
}

impl RunnerState {
    /// `pending`, `active`, `offline`, `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Pending => "pending",
            RunnerState::Active => "active",
            RunnerState::Offline => "offline",
            RunnerState::Deleted => "deleted",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<RunnerState> {
        Some(match text {
            "pending" => RunnerState::Pending,
            "active" => RunnerState::Active,
            "offline" => RunnerState::Offline,
            "deleted" => RunnerState::Deleted,
            _ => return None,
        })
    }
}

impl fmt::Display for RunnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runner as ghapp tracks it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRecord {
    /// The runner's name.
    pub name: String,
    /// GitHub's id, once known.
    pub github_id: Option<u64>,
    /// Who provisioned it (`uid:1000`, `client:ci`, `oidc:ISSUER#SUBJECT`): only they see it.
    pub owner_identity: String,
    /// The git host.
    pub host: String,
    /// The organization, or the repository's owner.
    pub org: String,
    /// The repository, for a repository's runner.
    pub repo: Option<String>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its runner group.
    pub runner_group_id: u64,
    /// Takes one job.
    pub ephemeral: bool,
    /// How it was provisioned.
    pub mode: ProvisionMode,
    /// Its state.
    pub state: RunnerState,
    /// Busy with a job, at the last sync.
    pub busy: bool,
    /// When it was provisioned.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
    /// When it was last seen online.
    pub last_online_at: Option<Timestamp>,
    /// Since when it is offline (state `offline`).
    pub offline_since: Option<Timestamp>,
    /// When it was deleted.
    pub deleted_at: Option<Timestamp>,
}

impl RunnerRecord {
    /// `acme` or `acme/widgets`.
    pub fn scope(&self) -> String {
        match &self.repo {
            Some(repo) => format!("{}/{repo}", self.org),
            None => self.org.clone(),
        }
    }
}

/// `GET /api/v1/runners`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerList {
    /// The runners, oldest first.
    pub runners: Vec<RunnerRecord>,
}

/// `POST /api/v1/runners/cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Delete runners offline (or pending) longer than this many seconds.
    pub offline_for_secs: u64,
}

/// One state change of a runner, as a sync or cleanup made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The runner.
    pub runner_name: String,
    /// Its state before.
    pub from: RunnerState,
    /// Its state now.
    pub to: RunnerState,
    /// Why.
    pub reason: String,
}

/// The answer of `POST /api/v1/runners/sync` and `/cleanup`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Every state change made.
    pub transitions: Vec<Transition>,
    /// Scopes (`acme`, `acme/widgets`) GitHub could not be asked about, with why.
    pub failures: Vec<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// `ok`.
    pub status: String,
    /// Whether the runner service is configured (`[runners]`).
    pub runners: bool,
}

/// Checks a runner name: GitHub names (letters, digits, `-`, `_`, `.`; at most 100).
pub fn check_runner_name(name: &str) -> Result<String, String> {
    crate::api::check_name("runner_name", name).map_err(|e| e.to_string())
}

/// Checks labels (1–100 of them, each 1–100 printable characters without `,`), filling in
/// [`DEFAULT_LABEL`] when none are given; duplicates are dropped, order kept.
pub fn check_labels(labels: &[String]) -> Result<Vec<String>, String> {
    if labels.is_empty() {
        return Ok(vec![DEFAULT_LABEL.to_string()]);
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels; GitHub takes at most {MAX_LABELS}",
            labels.len()
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let ok = !label.is_empty()
            && label.len() <= 100
            && label.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if !ok {
            return Err(
                "invalid label: 1–100 printable ASCII characters, no spaces or commas".to_string(),
            );
        }
        if !out.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            out.push(label.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_and_are_checked() {
        assert_eq!(check_labels(&[]).unwrap(), vec!["self-hosted"]);
        assert_eq!(
            check_labels(&["gpu".into(), "GPU".into(), "x64".into()]).unwrap(),
            vec!["gpu", "x64"]
        );
        assert!(check_labels(&["a b".into()]).is_err());
        assert!(check_labels(&["a,b".into()]).is_err());
        assert!(check_labels(&vec!["l".to_string(); 101]).is_err());
    }

    #[test]
    fn states_round_trip() {
        for state in [
            RunnerState::Pending,
            RunnerState::Active,
            RunnerState::Offline,
            RunnerState::Deleted,
        ] {
            assert_eq!(RunnerState::parse(state.as_str()), Some(state));
        }
        let request: ProvisionRequest =
            serde_json::from_str(r#"{"runner_name":"a","mode":"registration_token"}"#).unwrap();
        assert_eq!(request.mode, Some(ProvisionMode::RegistrationToken));
    }
}
