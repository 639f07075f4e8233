//! Self-hosted runner registration and removal tokens for an organization.
//!
//! The org's installation is resolved like any owner, an installation token narrowed to
//! `organization_self_hosted_runners: write` is taken from the cache (or minted), and
//! `POST /orgs/{org}/actions/runners/{registration,remove}-token` is called with it. This is
//! the one place the broker itself uses a fresh installation token, so GitHub's replication
//! delay applies: a 401 within 5 s of the mint is retried (in `github.rs`); a 401 later means
//! the cached token was revoked, so it is dropped and a new one minted, once.

use crate::broker::{Inner, Request};
use crate::error::BrokerError;
use crate::github::ApiError;
use ghapp_protocol::api::{RunnerTokenResponse, TokenQuery};
use ghapp_protocol::permissions::{Level, Permissions};
use std::sync::Arc;

/// The permission runner tokens need.
pub(crate) const RUNNER_PERMISSION: &str = "organization_self_hosted_runners";

impl Inner {
    /// A runner registration (or removal, with `remove`) token for `org` on `host`.
    pub(crate) async fn runner_token(
        self: &Arc<Self>,
        host: &str,
        org: &str,
        remove: bool,
    ) -> Result<RunnerTokenResponse, BrokerError> {
        let mut permissions = Permissions::new();
        permissions
            .insert(RUNNER_PERMISSION, Level::Write)
            .map_err(|e| BrokerError::internal(e.to_string()))?;
        let query = TokenQuery {
            host: Some(host.to_string()),
            owner: Some(org.to_string()),
            permissions,
            ..TokenQuery::default()
        };
        let request = Request::from_query(&query)?;
        let kind = if remove { "remove" } else { "registration" };
        let mut retried = false;
        loop {
            let (token, app) = self.token_for(&request).await?;
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
                    return Ok(RunnerTokenResponse {
                        token: runner.token,
                        expires_at: runner.expires_at,
                        kind: kind.to_string(),
                        org: org.to_string(),
                        url: format!("{scheme}://{}/{org}", request.host),
                    });
                }
                Err(ApiError::Status { status: 401, .. }) if !retried => {
                    tracing::warn!(app = %app.name(), token = %token.token.fingerprint(), "GitHub no longer accepts the cached installation token; minting a new one");
                    self.tokens.invalidate(token.token.expose());
                    retried = true;
                }
                Err(ApiError::Status {
                    status: 403,
                    message,
                    route,
                }) => {
                    return Err(BrokerError::forbidden(format!(
                        "GitHub App {} installation {} ({}) may not manage the self-hosted runners of {org}: give the App the organization permission \"Self-hosted runners: write\" ({RUNNER_PERMISSION}) and accept it for the installation (HTTP 403 from {route}: {message})",
                        app.describe(),
                        token.installation_id(),
                        token.plan.account,
                    )));
                }
                Err(ApiError::Status {
                    status: 404,
                    message,
                    route,
                }) => {
                    return Err(BrokerError::not_found(format!(
                        "organization {org} has no self-hosted runner settings GitHub App {} can reach (HTTP 404 from {route}: {message}); runner tokens are for organizations, not user accounts",
                        app.describe()
                    )));
                }
                Err(error) => {
                    return Err(self.api_failure(
                        &app,
                        error,
                        &format!("getting a runner {kind} token for {org}"),
                    ));
                }
            }
        }
    }
}
