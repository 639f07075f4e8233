//! What the runner service needs from GitHub, as a trait ([`RunnerApi`]): the daemon implements
//! it with the token broker (installation tokens with `organization_self_hosted_runners` or
//! `administration` write), tests with a fake.

use ghapp_protocol::secret::Token;
use ghapp_protocol::time::Timestamp;
use std::fmt;
use std::future::Future;

/// Whose runners: an organization's or one repository's, on a git host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The git host (`github.com`).
    pub host: String,
    /// The organization, or the repository's owner.
    pub org: String,
    /// The repository, for a repository's runners.
    pub repo: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(repo) => write!(f, "repository {}/{repo}", self.org),
            None => write!(f, "organization {}", self.org),
        }
    }
}

/// A runner as GitHub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRunner {
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

/// A just-in-time runner GitHub registered: the runner and its encoded configuration.
#[derive(Debug, Clone)]
pub struct JitConfig {
    /// The runner, registered.
    pub runner: GitHubRunner,
    /// What `./run.sh --jitconfig` takes (a secret).
    pub encoded_jit_config: Token,
    /// The organization's or repository's page.
    pub url: String,
}

/// What to ask GitHub for a just-in-time runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitRequest {
    /// Its name.
    pub name: String,
    /// Its runner group.
    pub runner_group_id: u64,
    /// Its labels (1–100).
    pub labels: Vec<String>,
    /// Its work folder.
    pub work_folder: String,
}

/// A registration token for `./config.sh`.
#[derive(Debug, Clone)]
pub struct RegistrationToken {
    /// The token (a secret).
    pub token: Token,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The URL `config.sh --url` takes.
    pub url: String,
}

/// Why a GitHub call failed, as the socket API answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status to answer (GitHub's 409 and 422 pass through; others are mapped).
    pub status: u16,
    /// GitHub's status, when it answered.
    pub github_status: Option<u16>,
    /// What went wrong and what to do (never a secret).
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// GitHub's runner API, as the service uses it.
pub trait RunnerApi: Send + Sync {
    /// Every runner of `target` (all pages).
    fn list(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<GitHubRunner>, ApiFailure>> + Send;

    /// One runner; `None` when GitHub has no runner with that id.
    fn get(
        &self,
        target: &Target,
        id: u64,
    ) -> impl Future<Output = Result<Option<GitHubRunner>, ApiFailure>> + Send;

    /// Deletes a runner; false when GitHub had none with that id (already gone).
    fn delete(
        &self,
        target: &Target,
        id: u64,
    ) -> impl Future<Output = Result<bool, ApiFailure>> + Send;

    /// Registers a just-in-time runner.
    fn generate_jitconfig(
        &self,
        target: &Target,
        request: &JitRequest,
    ) -> impl Future<Output = Result<JitConfig, ApiFailure>> + Send;

    /// A registration token.
    fn registration_token(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<RegistrationToken, ApiFailure>> + Send;
}
