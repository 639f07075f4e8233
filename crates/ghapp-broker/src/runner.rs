//! Self-hosted runner registration and removal tokens for an organization.
//!
//! The broker resolves the org's installation like any owner and takes an installation token
//! narrowed to `organization_self_hosted_runners: write` from its cache (or mints it); this
//! module builds that request ([`runner_query`]) and makes the call with the token ([`ask`]):
//! `POST /orgs/{org}/actions/runners/{registration,remove}-token`. It is the one place the
//! broker itself uses a fresh installation token, so GitHub's replication delay applies: a 401
//! within 5 s of the mint is retried (by the GitHub engine); a 401 later means the cached token
//! was revoked ([`RunnerAnswer::Revoked`]: the broker drops it and mints a new one, once).

use crate::app::AppRuntime;
use crate::cache::CachedToken;
use crate::error::BrokerError;
use crate::failure::{self, Failure};
use crate::github::ApiError;
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery};
use ghapp_protocol::permissions::{Level, Permissions};

/// The permission runner tokens need.
pub(crate) const RUNNER_PERMISSION: &str = "organization_self_hosted_runners";

/// What GitHub said to a runner-token call.
pub(crate) enum RunnerAnswer {
    /// The runner token.
    Issued(RunnerTokenResponse),
    /// GitHub no longer accepts the installation token used.
    Revoked,
    /// Any other failure, mapped.
    Failed(Failure),
}

/// The installation-token request a runner token needs: `org` on `host`, runners: write.
pub(crate) fn runner_query(host: &str, org: &str) -> Result<TokenQuery, BrokerError> {
    let mut permissions = Permissions::new();
    permissions
        .insert(RUNNER_PERMISSION, Level::Write)
        .map_err(|e| BrokerError::internal(e.to_string()))?;
    Ok(TokenQuery {
        host: Some(host.to_string()),
        owner: Some(org.to_string()),
        permissions,
        ..TokenQuery::default()
    })
}

/// "remove" or "registration".
pub(crate) fn kind(remove: bool) -> &'static str {
    if remove { "remove" } else { "registration" }
}

/// Asks GitHub (as `app`, with the installation token `token`) for a runner registration (or
/// removal, with `remove`) token for `org`; `host` is the git host, for the runner's URL. A
/// 401 is [`RunnerAnswer::Revoked`] when `may_remint`, else a failure.
pub(crate) async fn ask(
    app: &AppRuntime,
    token: &CachedToken,
    host: &str,
    org: &str,
    remove: bool,
    may_remint: bool,
) -> RunnerAnswer {
    let kind = kind(remove);
    match app
        .client
        .runner_token(org, remove, &token.token, token.minted_at)
        .await
    {
        Ok(runner) => {
            app.health.ok();
            let scheme = if app.config.insecure_http {
                "http"
            } else {
                "https"
            };
            tracing::info!(app = %app.name(), org = %org, kind, token = %runner.token.fingerprint(), "issued a runner token");
            RunnerAnswer::Issued(RunnerTokenResponse {
                token: runner.token,
                expires_at: runner.expires_at,
                kind: kind.to_string(),
                org: org.to_string(),
                url: format!("{scheme}://{host}/{org}"),
            })
        }
        Err(ApiError::Status { status: 401, .. }) if may_remint => RunnerAnswer::Revoked,
        Err(error) => RunnerAnswer::Failed(failure::runner_failure(
            app,
            org,
            kind,
            RUNNER_PERMISSION,
            token.installation_id(),
            &token.plan.account,
            error,
        )),
    }
}
