//! The GitHub endpoints the broker calls, each one typed call through the engine: installation
//! look-ups (by repository, by account, all of them), minting an installation token, and runner
//! registration/removal tokens.
//!
//! A redirect on an installation look-up (a renamed repository answers 301 to
//! `/repositories/{id}/installation`) is followed here, with the App JWT, and only to a URL on
//! the App's own API (`api_base`): the JWT never goes to another host. reqwest follows nothing
//! by itself (`transport.rs`), so this is the one place a redirect is followed.

use super::engine::Auth;
use super::wire::{
    AccessTokenJson, GrantedRepository, InstallationInfo, InstallationJson, JitConfigBody,
    JitConfigJson, MintedToken, RunnerListJson, RunnerToken, RunnerTokenJson, SelfHostedRunner,
    TokenRequestBody, installation_info, next_link, parse_json, permissions_from_map,
};
use super::{ApiError, GitHubClient};
use crate::config::TokenFormat;
use crate::transport::Method;
use ghapp_protocol::secret::Token;
use std::time::SystemTime;
use tokio::time::Instant;

/// Most pages of `GET /app/installations` read (100 per page).
const MAX_INSTALLATION_PAGES: usize = 100;
/// Most pages of a runner list read (100 per page: 10,000 runners).
const MAX_RUNNER_PAGES: usize = 100;
/// Most redirects followed for one installation look-up.
const MAX_REDIRECTS: usize = 3;

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

    /// The installation at `path` (a look-up route), following redirects within the App's
    /// API (see the module's comment).
    async fn installation_at(&self, path: &str) -> Result<Option<InstallationInfo>, ApiError> {
        let mut url = format!("{}{path}", self.api_base());
        let mut redirects = 0;
        loop {
            match self.installation_at_url(&url, path).await {
                Err(ApiError::Redirected {
                    status,
                    location: Some(location),
                    route,
                }) if redirects < MAX_REDIRECTS => {
                    let Some(next) = self.follow(&url, &location) else {
                        return Err(ApiError::Redirected {
                            status,
                            location: Some(location),
                            route: format!("{route} (outside {})", self.api_base()),
                        });
                    };
                    tracing::info!(from = %route, to = %next, "GitHub moved the installation look-up; following it on the App's API");
                    redirects += 1;
                    url = next;
                }
                Ok(Some(mut found)) => {
                    if redirects > 0 {
                        found.repository_id = repository_id_of(&url);
                    }
                    return Ok(Some(found));
                }
                other => return other,
            }
        }
    }

    /// The absolute URL a redirect from `from` to `location` leads to, if it stays on the
    /// App's API (same scheme, host, port and base path); `None` otherwise.
    fn follow(&self, from: &str, location: &str) -> Option<String> {
        let base = reqwest::Url::parse(&format!("{}/", self.api_base())).ok()?;
        let next = reqwest::Url::parse(from).ok()?.join(location).ok()?;
        let inside = next.scheme() == base.scheme()
            && next.host_str() == base.host_str()
            && next.port_or_known_default() == base.port_or_known_default()
            && next.path().starts_with(base.path())
            && next.username().is_empty()
            && next.password().is_none();
        inside.then(|| next.to_string())
    }

    async fn installation_at_url(
        &self,
        url: &str,
        path: &str,
    ) -> Result<Option<InstallationInfo>, ApiError> {
        match self.call(Method::Get, url, Auth::App, None, &[]).await {
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
        if let Some(problem) = token_problem(&parsed.token) {
            return Err(ApiError::Protocol {
                detail: format!("{route}: GitHub's token {problem}; it was not used"),
            });
        }
        if SystemTime::from(parsed.expires_at) <= server_time.server_now {
            return Err(ApiError::Protocol {
                detail: format!(
                    "{route}: the token GitHub minted expired at {} already, by GitHub's own clock; it was not used",
                    parsed.expires_at
                ),
            });
        }
        let (permissions, unrecognised_permissions) = match &parsed.permissions {
            Some(map) => {
                let (permissions, odd) = permissions_from_map(map);
                (Some(permissions), odd)
            }
            None => (None, Vec::new()),
        };
        Ok(MintedToken {
            token: Token::new(parsed.token),
            expires_at: parsed.expires_at,
            server_time,
            permissions,
            unrecognised_permissions,
            repositories: parsed.repositories.map(|repos| {
                repos
                    .into_iter()
                    .map(|r| GrantedRepository {
                        id: r.id,
                        name: r.name,
                    })
                    .collect()
            }),
            repository_selection: parsed.repository_selection,
        })
    }

    /// A runner registration (or removal) token for `scope` — `orgs/{org}` (the installation
    /// token needs `organization_self_hosted_runners: write`) or `repos/{owner}/{repo}` (it
    /// needs `administration: write`) — using `token`, of `installation_id`.
    pub(crate) async fn runner_token(
        &self,
        scope: &str,
        remove: bool,
        token: &Token,
        minted_at: Instant,
        installation_id: u64,
    ) -> Result<RunnerToken, ApiError> {
        let kind = if remove {
            "remove-token"
        } else {
            "registration-token"
        };
        let path = format!("/{scope}/actions/runners/{kind}");
        let (response, _) = self
            .call(
                Method::Post,
                &path,
                Auth::Installation {
                    token,
                    minted_at,
                    installation_id,
                },
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

/// An installation token and what the engine needs to know of it, for the runner calls.
#[derive(Clone, Copy)]
pub(crate) struct InstallationAuth<'a> {
    /// The token.
    pub token: &'a Token,
    /// When it was minted (GitHub's replication delay).
    pub minted_at: Instant,
    /// Its installation.
    pub installation_id: u64,
}

impl<'a> InstallationAuth<'a> {
    fn auth(self) -> Auth<'a> {
        Auth::Installation {
            token: self.token,
            minted_at: self.minted_at,
            installation_id: self.installation_id,
        }
    }
}

impl GitHubClient {
    /// Every self-hosted runner of `scope` (`orgs/{org}` or `repos/{owner}/{repo}`): 100 per
    /// page, following `Link: rel="next"` on the same API only.
    pub(crate) async fn list_runners(
        &self,
        scope: &str,
        auth: InstallationAuth<'_>,
    ) -> Result<Vec<SelfHostedRunner>, ApiError> {
        let route = format!("GET /{scope}/actions/runners");
        let mut all = Vec::new();
        let mut next = Some(format!(
            "{}/{scope}/actions/runners?per_page=100",
            self.api_base()
        ));
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_RUNNER_PAGES {
                return Err(ApiError::Protocol {
                    detail: format!("{route} has more than {MAX_RUNNER_PAGES} pages"),
                });
            }
            let (response, _) = self.call(Method::Get, &url, auth.auth(), None, &[]).await?;
            let page: RunnerListJson = parse_json(&response, &route)?;
            let listed = page.runners.len();
            all.extend(page.runners.into_iter().map(SelfHostedRunner::from));
            if let Some(link) = response.header("link").and_then(next_link) {
                if !link.starts_with(&format!("{}/", self.api_base())) {
                    return Err(ApiError::Protocol {
                        detail: format!("{route}: next page {link} is outside {}", self.api_base()),
                    });
                }
                next = Some(link);
            } else if listed == 100 && (all.len() as u64) < page.total_count {
                // No Link header but more runners than read: ask for the next page by number.
                next = Some(format!(
                    "{}/{scope}/actions/runners?per_page=100&page={}",
                    self.api_base(),
                    pages + 1
                ));
            }
        }
        Ok(all)
    }

    /// One runner of `scope`; `None` when GitHub has none with that id (404).
    pub(crate) async fn get_runner(
        &self,
        scope: &str,
        id: u64,
        auth: InstallationAuth<'_>,
    ) -> Result<Option<SelfHostedRunner>, ApiError> {
        let path = format!("/{scope}/actions/runners/{id}");
        match self.call(Method::Get, &path, auth.auth(), None, &[]).await {
            Ok((response, _)) => {
                let runner: super::wire::RunnerJson =
                    parse_json(&response, &format!("GET {path}"))?;
                Ok(Some(runner.into()))
            }
            Err(ApiError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a runner of `scope` (204); false when GitHub had none with that id (404).
    pub(crate) async fn delete_runner(
        &self,
        scope: &str,
        id: u64,
        auth: InstallationAuth<'_>,
    ) -> Result<bool, ApiError> {
        let path = format!("/{scope}/actions/runners/{id}");
        match self
            .call(Method::Delete, &path, auth.auth(), None, &[])
            .await
        {
            Ok(_) => Ok(true),
            Err(ApiError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Registers a just-in-time runner in `scope`: 201 `{runner, encoded_jit_config}`.
    pub(crate) async fn generate_jitconfig(
        &self,
        scope: &str,
        body: &JitConfigBody,
        auth: InstallationAuth<'_>,
    ) -> Result<(SelfHostedRunner, Token), ApiError> {
        let path = format!("/{scope}/actions/runners/generate-jitconfig");
        let route = format!("POST {path}");
        let json = serde_json::to_vec(body).map_err(|e| ApiError::Protocol {
            detail: format!("{route}: {e}"),
        })?;
        let (response, _) = self
            .call(Method::Post, &path, auth.auth(), Some(json), &[])
            .await?;
        let parsed: JitConfigJson = parse_json(&response, &route)?;
        if parsed.encoded_jit_config.is_empty() {
            return Err(ApiError::Protocol {
                detail: format!("{route}: GitHub answered an empty encoded_jit_config"),
            });
        }
        Ok((parsed.runner.into(), Token::new(parsed.encoded_jit_config)))
    }
}

/// The repository id of a `/repositories/{id}/installation` URL.
fn repository_id_of(url: &str) -> Option<u64> {
    let path = url.split('?').next().unwrap_or(url);
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let (last, id, repositories) = (segments.next()?, segments.next()?, segments.next()?);
    (last == "installation" && repositories == "repositories")
        .then(|| id.parse().ok())
        .flatten()
}

/// What is wrong with a token GitHub handed out, if anything: it goes into git's credential
/// protocol and HTTP headers, so it must be one printable word.
fn token_problem(token: &str) -> Option<&'static str> {
    if token.is_empty() {
        return Some("is empty");
    }
    if token.len() > 4096 {
        return Some("is longer than 4096 characters");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("holds spaces, control or non-ASCII characters");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirected_look_ups_name_the_repository_id() {
        assert_eq!(
            repository_id_of("https://api.github.com/repositories/42/installation"),
            Some(42)
        );
        assert_eq!(
            repository_id_of("https://h/api/v3/repositories/7/installation?x=1"),
            Some(7)
        );
        assert_eq!(
            repository_id_of("https://api.github.com/repos/a/b/installation"),
            None
        );
    }

    #[test]
    fn tokens_must_be_one_printable_word() {
        assert_eq!(token_problem("ghs_abc"), None);
        assert!(token_problem("").is_some());
        assert!(token_problem("ghs_abc\nprotocol=https").is_some());
        assert!(token_problem("ghs abc").is_some());
    }
}
