//! Self-hosted runner registration and removal tokens, for an organization or for one
//! repository (the way a user account's repositories get runners).
//!
//! The broker resolves the target's installation like any token request and takes an
//! installation token with the permission GitHub requires from its cache (or mints it) — for an
//! organization `organization_self_hosted_runners: write`, for a repository `administration:
//! write`, narrowed to that repository; this module builds that request ([`runner_query`]) and
//! makes the call with the token ([`ask`]): `POST /orgs/{org}/actions/runners/{registration,
//! remove}-token` or `POST /repos/{owner}/{repo}/actions/runners/{registration,remove}-token`.
//! It is the one place the broker itself uses a fresh installation token, so GitHub's
//! replication delay applies: a 401 within 5 s of the mint is retried (by the GitHub engine); a
//! 401 later means the cached token was revoked ([`RunnerAnswer::Revoked`]: the broker drops it
//! and mints a new one, once).

use crate::app::AppRuntime;
use crate::cache::CachedToken;
use crate::error::BrokerError;
use crate::error::ErrorKind;
use crate::failure::{self, Failure, RunnerCall};
use crate::github::{ApiError, InstallationAuth, JitConfigBody, JitRunner, SelfHostedRunner};
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery};
use ghapp_protocol::permissions::{Level, Permissions};

/// The permission organization runner tokens need.
pub(crate) const RUNNER_PERMISSION: &str = "organization_self_hosted_runners";
/// The permission repository runner tokens need.
pub(crate) const REPOSITORY_RUNNER_PERMISSION: &str = "administration";

/// Whose runners a token registers or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunnerTarget {
    /// An organization's.
    Organization(String),
    /// One repository's.
    Repository {
        /// Its owner.
        owner: String,
        /// Its name.
        repo: String,
    },
}

impl RunnerTarget {
    /// The account that owns the runners.
    pub(crate) fn owner(&self) -> &str {
        match self {
            RunnerTarget::Organization(org) => org,
            RunnerTarget::Repository { owner, .. } => owner,
        }
    }

    /// `acme` or `acme/widgets`: the path of its page on the git host.
    fn path(&self) -> String {
        match self {
            RunnerTarget::Organization(org) => org.clone(),
            RunnerTarget::Repository { owner, repo } => format!("{owner}/{repo}"),
        }
    }

    /// `orgs/acme` or `repos/acme/widgets`: where its runner routes are in the REST API.
    fn api_scope(&self) -> String {
        match self {
            RunnerTarget::Organization(org) => format!("orgs/{org}"),
            RunnerTarget::Repository { owner, repo } => format!("repos/{owner}/{repo}"),
        }
    }

    /// `organization acme` or `repository acme/widgets`, for messages.
    pub(crate) fn label(&self) -> String {
        match self {
            RunnerTarget::Organization(org) => format!("organization {org}"),
            RunnerTarget::Repository { owner, repo } => format!("repository {owner}/{repo}"),
        }
    }

    /// The permission GitHub requires of the installation token.
    fn permission(&self) -> &'static str {
        match self {
            RunnerTarget::Organization(_) => RUNNER_PERMISSION,
            RunnerTarget::Repository { .. } => REPOSITORY_RUNNER_PERMISSION,
        }
    }
}

/// What GitHub said to a runner call.
pub(crate) enum RunnerAnswer<T> {
    /// The answer.
    Issued(T),
    /// GitHub no longer accepts the installation token used.
    Revoked,
    /// Any other failure, mapped.
    Failed(Failure),
}

/// The installation-token request a runner token for `target` on `host` needs: the target's
/// owner (and repository), its permission at write.
pub(crate) fn runner_query(host: &str, target: &RunnerTarget) -> Result<TokenQuery, BrokerError> {
    let mut permissions = Permissions::new();
    permissions
        .insert(target.permission(), Level::Write)
        .map_err(|e| BrokerError::internal(e.to_string()))?;
    let repo = match target {
        RunnerTarget::Organization(_) => None,
        RunnerTarget::Repository { repo, .. } => Some(repo.clone()),
    };
    Ok(TokenQuery {
        host: Some(host.to_string()),
        owner: Some(target.owner().to_string()),
        repo,
        permissions,
        ..TokenQuery::default()
    })
}

/// "remove" or "registration".
pub(crate) fn kind(remove: bool) -> &'static str {
    if remove { "remove" } else { "registration" }
}

/// Asks GitHub (as `app`, with the installation token `token`) for a runner registration (or
/// removal, with `remove`) token for `target`; `host` is the git host, for the runner's URL. A
/// 401 is [`RunnerAnswer::Revoked`] when `may_remint`, else a failure.
pub(crate) async fn ask(
    app: &AppRuntime,
    token: &CachedToken,
    host: &str,
    target: &RunnerTarget,
    remove: bool,
    may_remint: bool,
) -> RunnerAnswer<RunnerTokenResponse> {
    let kind = kind(remove);
    match app
        .client
        .runner_token(
            &target.api_scope(),
            remove,
            &token.token,
            token.minted_at(),
            token.installation_id(),
        )
        .await
    {
        Ok(runner) => {
            app.health.ok();
            let scheme = if app.config.insecure_http {
                "http"
            } else {
                "https"
            };
            tracing::info!(app = %app.name(), target = %target.label(), kind, token = %runner.token.fingerprint(), "issued a runner token");
            RunnerAnswer::Issued(RunnerTokenResponse {
                token: runner.token,
                expires_at: runner.expires_at,
                kind: kind.to_string(),
                org: target.owner().to_string(),
                url: format!("{scheme}://{host}/{}", target.path()),
            })
        }
        Err(ApiError::Status { status: 401, .. }) if may_remint => RunnerAnswer::Revoked,
        Err(error) => RunnerAnswer::Failed(failure::runner_failure(
            app,
            &RunnerCall {
                target: target.label(),
                kind,
                permission: target.permission(),
                repository: matches!(target, RunnerTarget::Repository { .. }),
                installation_id: token.installation_id(),
                account: &token.key.account,
            },
            error,
        )),
    }
}

/// A runner-management call (beyond registration tokens).
pub(crate) enum RunnerOp {
    /// List every runner.
    List,
    /// Read one runner.
    Get(u64),
    /// Delete one runner.
    Delete(u64),
    /// Register a just-in-time runner.
    Jit(JitConfigBody),
}

impl RunnerOp {
    fn describe(&self) -> &'static str {
        match self {
            RunnerOp::List => "listing the runners",
            RunnerOp::Get(_) => "reading a runner",
            RunnerOp::Delete(_) => "deleting a runner",
            RunnerOp::Jit(_) => "registering a just-in-time runner",
        }
    }
}

/// The result of a [`RunnerOp`].
pub(crate) enum RunnerOutcome {
    /// [`RunnerOp::List`].
    Listed(Vec<SelfHostedRunner>),
    /// [`RunnerOp::Get`]: `None` when GitHub has no such runner.
    Found(Option<SelfHostedRunner>),
    /// [`RunnerOp::Delete`]: false when GitHub had no such runner.
    Deleted(bool),
    /// [`RunnerOp::Jit`].
    Registered(JitRunner),
}

/// Makes the runner call `op` for `target` with the installation token `token`. GitHub's 409
/// (a runner of that name exists) and 422 (a bad request: group, labels) pass through with
/// its message; a 401 is [`RunnerAnswer::Revoked`] when `may_remint`.
pub(crate) async fn manage(
    app: &AppRuntime,
    token: &CachedToken,
    host: &str,
    target: &RunnerTarget,
    op: &RunnerOp,
    may_remint: bool,
) -> RunnerAnswer<RunnerOutcome> {
    let scope = target.api_scope();
    let auth = InstallationAuth {
        token: &token.token,
        minted_at: token.minted_at(),
        installation_id: token.installation_id(),
    };
    let client = &app.client;
    let result = match op {
        RunnerOp::List => client.list_runners(&scope, auth).await.map(RunnerOutcome::Listed),
        RunnerOp::Get(id) => client.get_runner(&scope, *id, auth).await.map(RunnerOutcome::Found),
        RunnerOp::Delete(id) => client
            .delete_runner(&scope, *id, auth)
            .await
            .map(RunnerOutcome::Deleted),
        RunnerOp::Jit(body) => client.generate_jitconfig(&scope, body, auth).await.map(
            |(runner, encoded_jit_config)| {
                let scheme = if app.config.insecure_http { "http" } else { "https" };
                tracing::info!(app = %app.name(), target = %target.label(), runner = %runner.name, id = runner.id, jit_config = %encoded_jit_config.fingerprint(), "registered a just-in-time runner");
                RunnerOutcome::Registered(JitRunner {
                    runner,
                    encoded_jit_config,
                    url: format!("{scheme}://{host}/{}", target.path()),
                })
            },
        ),
    };
    match result {
        Ok(outcome) => {
            app.health.ok();
            RunnerAnswer::Issued(outcome)
        }
        Err(ApiError::Status { status: 401, .. }) if may_remint => RunnerAnswer::Revoked,
        Err(ApiError::Status {
            status: status @ (409 | 422),
            message,
            route,
        }) => {
            let kind = if status == 409 {
                ErrorKind::Ambiguous
            } else {
                ErrorKind::Unprocessable
            };
            let error = BrokerError::new(
                kind,
                format!(
                    "GitHub refused {} for {} (HTTP {status} from {route}): {message}",
                    op.describe(),
                    target.label()
                ),
            )
            .with_app(app.name())
            .with_installation(token.installation_id())
            .with_target(target.label())
            .with_github(Some(status), Some(route), message);
            RunnerAnswer::Failed(Failure {
                error,
                consequence: None,
            })
        }
        Err(error) => RunnerAnswer::Failed(failure::runner_failure(
            app,
            &RunnerCall {
                target: target.label(),
                kind: op.describe(),
                permission: target.permission(),
                repository: matches!(target, RunnerTarget::Repository { .. }),
                installation_id: token.installation_id(),
                account: &token.key.account,
            },
            error,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_runners_need_administration_on_that_repository() {
        let target = RunnerTarget::Repository {
            owner: "octo".into(),
            repo: "tools".into(),
        };
        let query = runner_query("github.com", &target).unwrap();
        assert_eq!(query.owner.as_deref(), Some("octo"));
        assert_eq!(query.repo.as_deref(), Some("tools"));
        assert_eq!(query.permissions.to_list(), "administration:write");
        assert_eq!(target.api_scope(), "repos/octo/tools");
        let org = RunnerTarget::Organization("acme".into());
        let query = runner_query("github.com", &org).unwrap();
        assert_eq!(query.repo, None);
        assert_eq!(
            query.permissions.to_list(),
            "organization_self_hosted_runners:write"
        );
        assert_eq!(org.api_scope(), "orgs/acme");
    }
}
