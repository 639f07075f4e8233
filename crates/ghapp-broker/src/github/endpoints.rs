//! The GitHub endpoints the broker calls, each one typed call through the engine: installation
//! look-ups (by repository, by account, all of them), minting an installation token, and runner
//! registration/removal tokens.

use super::engine::Auth;
use super::wire::{
    AccessTokenJson, InstallationInfo, InstallationJson, MintedToken, RunnerToken, RunnerTokenJson,
    TokenRequestBody, installation_info, next_link, parse_json, permissions_from_map,
};
use super::{ApiError, GitHubClient};
use crate::config::TokenFormat;
use crate::transport::Method;
use ghapp_protocol::secret::Token;
use tokio::time::Instant;

/// Most pages of `GET /app/installations` read (100 per page).
const MAX_INSTALLATION_PAGES: usize = 100;

impl GitHubClient {
    /// The installation serving a repository; `None` when the App is not installed on it.
    pub(crate) async fn repo_installation(
        &self,
        owner: &str,
        repo: &str,
    ) -> Result<Option<InstallationInfo>, ApiError> {
        self.installation_at(&format!("/repos/{owner}/{repo}/installation"))
            .await
    }

    /// The installation on an account: `/orgs/{o}/installation`, then `/users/{o}/installation`
    /// when that is 404 (a user account, or not installed). `None` when neither has one.
    pub(crate) async fn owner_installation(
        &self,
        owner: &str,
    ) -> Result<Option<InstallationInfo>, ApiError> {
        if let Some(found) = self
            .installation_at(&format!("/orgs/{owner}/installation"))
            .await?
        {
            return Ok(Some(found));
        }
        self.installation_at(&format!("/users/{owner}/installation"))
            .await
    }

    async fn installation_at(&self, path: &str) -> Result<Option<InstallationInfo>, ApiError> {
        match self.call(Method::Get, path, Auth::App, None, &[]).await {
            Ok((response, _)) => {
                let json: InstallationJson = parse_json(&response, path)?;
                Ok(Some(installation_info(json)))
            }
            Err(ApiError::Status {
                status: 404,
                message,
                route,
            }) => {
                if message.contains("Integration not found") {
                    // The App itself is unknown: a wrong app_id/client_id, not "not installed".
                    return Err(ApiError::JwtRejected {
                        status: 404,
                        message,
                        route,
                    });
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Every installation of the App (`GET /app/installations`, 100 per page, following
    /// `Link: rel="next"` on the same API only).
    pub(crate) async fn installations(&self) -> Result<Vec<InstallationInfo>, ApiError> {
        let mut all = Vec::new();
        let mut next = Some(format!(
            "{}/app/installations?per_page=100",
            self.api_base()
        ));
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_INSTALLATION_PAGES {
                return Err(ApiError::Protocol {
                    detail: format!(
                        "GET /app/installations has more than {MAX_INSTALLATION_PAGES} pages"
                    ),
                });
            }
            let (response, _) = self.call(Method::Get, &url, Auth::App, None, &[]).await?;
            let page: Vec<InstallationJson> = parse_json(&response, "GET /app/installations")?;
            all.extend(page.into_iter().map(installation_info));
            if let Some(link) = response.header("link").and_then(next_link) {
                if !link.starts_with(&format!("{}/", self.api_base())) {
                    return Err(ApiError::Protocol {
                        detail: format!(
                            "GET /app/installations: next page {link} is outside {}",
                            self.api_base()
                        ),
                    });
                }
                next = Some(link);
            }
        }
        Ok(all)
    }

    /// Mints an installation token.
    pub(crate) async fn create_token(
        &self,
        installation_id: u64,
        body: &TokenRequestBody,
    ) -> Result<MintedToken, ApiError> {
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let route = format!("POST {path}");
        let json = serde_json::to_vec(body).map_err(|e| ApiError::Protocol {
            detail: format!("{route}: {e}"),
        })?;
        let mut extra = Vec::new();
        match self.token_format() {
            Some(TokenFormat::Stateless) => extra.push(("x-github-stateless-s2s-token", "enabled")),
            Some(TokenFormat::Classic) => extra.push(("x-github-stateless-s2s-token", "disabled")),
            None => {}
        }
        let (response, server_time) = self
            .call(Method::Post, &path, Auth::App, Some(json), &extra)
            .await?;
        let parsed: AccessTokenJson = parse_json(&response, &route)?;
        if parsed.token.is_empty() {
            return Err(ApiError::Protocol {
                detail: format!("{route}: empty token"),
            });
        }
        let (permissions, unrecognised_permissions) = permissions_from_map(&parsed.permissions);
        Ok(MintedToken {
            token: Token::new(parsed.token),
            expires_at: parsed.expires_at,
            server_time,
            permissions,
            unrecognised_permissions,
            repositories: parsed
                .repositories
                .map(|repos| repos.into_iter().map(|r| r.name).collect()),
        })
    }

    /// A runner registration (or removal) token for `org`, using an installation token that
    /// has `organization_self_hosted_runners: write`.
    pub(crate) async fn runner_token(
        &self,
        org: &str,
        remove: bool,
        token: &Token,
        minted_at: Instant,
    ) -> Result<RunnerToken, ApiError> {
        let kind = if remove {
            "remove-token"
        } else {
            "registration-token"
        };
        let path = format!("/orgs/{org}/actions/runners/{kind}");
        let (response, _) = self
            .call(
                Method::Post,
                &path,
                Auth::Installation { token, minted_at },
                None,
                &[],
            )
            .await?;
        let parsed: RunnerTokenJson = parse_json(&response, &format!("POST {path}"))?;
        Ok(RunnerToken {
            token: Token::new(parsed.token),
            expires_at: parsed.expires_at,
        })
    }
}
