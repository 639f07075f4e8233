//! A token request, validated and normalised ([`Request`]), and which configured Apps may serve
//! it ([`Request::candidate_apps`]).

use crate::app::{AppRuntime, Runtime};
use crate::error::BrokerError;
use crate::resolve::Target;
use ghapp_protocol::api::{TokenQuery, check_host, check_name};
use ghapp_protocol::duration::format_duration;
use ghapp_protocol::permissions::Permissions;
use std::sync::Arc;
use std::time::Duration;

/// Installation tokens live one hour; no `min_ttl` at or above it can be met.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token request, validated and normalised.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The git host, lower-cased.
    pub host: String,
    /// The account, as asked.
    pub owner: Option<String>,
    /// The repository, as asked, without `.git`.
    pub repo: Option<String>,
    /// Permissions asked; empty: the App's ceiling.
    pub permissions: Permissions,
    /// Life the token must have left, as asked.
    pub min_ttl: Option<Duration>,
    /// Asked over plain http.
    pub http: bool,
}

impl Request {
    /// Checks a query the way the socket parser does (the daemon may build queries itself).
    pub(crate) fn from_query(query: &TokenQuery) -> Result<Request, BrokerError> {
        let bad = |e: ghapp_protocol::api::QueryError| BrokerError::bad_request(e.0);
        let host = check_host(query.host_or_default()).map_err(bad)?;
        let owner = query
            .owner
            .as_deref()
            .map(|o| check_name("owner", o))
            .transpose()
            .map_err(bad)?;
        let repo = query
            .repo
            .as_deref()
            .map(|r| check_name("repo", r))
            .transpose()
            .map_err(bad)?;
        let repo = repo.map(|r| r.strip_suffix(".git").map(str::to_string).unwrap_or(r));
        if repo.is_some() && owner.is_none() {
            return Err(BrokerError::bad_request("repo given without owner"));
        }
        if let Some(min_ttl) = query.min_ttl
            && min_ttl >= TOKEN_LIFETIME
        {
            return Err(BrokerError::bad_request(format!(
                "min_ttl {} cannot be met: installation tokens live one hour",
                format_duration(min_ttl)
            )));
        }
        let http = match query.protocol.as_deref() {
            None | Some("https") => false,
            Some("http") => true,
            Some(other) => {
                return Err(BrokerError::bad_request(format!(
                    "protocol {other:?} is not served: only https (and http for insecure_http Apps)"
                )));
            }
        };
        Ok(Request {
            host,
            owner,
            repo,
            permissions: query.permissions.clone(),
            min_ttl: query.min_ttl,
            http,
        })
    }

    /// What the request names, for the resolver.
    pub(crate) fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            owner: self.owner.as_ref().map(|o| o.to_ascii_lowercase()),
            repo: self.repo.as_ref().map(|r| r.to_ascii_lowercase()),
        }
    }

    /// The Apps that may serve a request: configured for its host, allowing plain http when
    /// asked over http, and allowing its owner.
    /// `config_name` names the config file in messages (called only for one: it formats a path,
    /// which every request would otherwise pay for).
    pub(crate) fn candidate_apps(
        &self,
        runtime: &Runtime,
        config_name: impl FnOnce() -> String,
    ) -> Result<Vec<Arc<AppRuntime>>, BrokerError> {
        let request = self;
        let for_host: Vec<Arc<AppRuntime>> = runtime
            .apps
            .iter()
            .filter(|a| a.config.host == request.host)
            .cloned()
            .collect();
        if for_host.is_empty() {
            return Err(BrokerError::not_found(format!(
                "no GitHub App is configured for host {}: add an [[app]] with host = \"{}\" to {}",
                request.host,
                request.host,
                config_name()
            )));
        }
        let by_protocol: Vec<Arc<AppRuntime>> = for_host
            .into_iter()
            .filter(|a| !request.http || a.config.insecure_http)
            .collect();
        if by_protocol.is_empty() {
            return Err(BrokerError::not_found(format!(
                "host {} is served over https only: plain http needs insecure_http = true on its [[app]] (emulators and tests only)",
                request.host
            )));
        }
        let Some(owner) = &request.owner else {
            return Ok(by_protocol);
        };
        let allowed: Vec<Arc<AppRuntime>> = by_protocol
            .iter()
            .filter(|a| a.config.allows_owner(owner))
            .cloned()
            .collect();
        if allowed.is_empty() {
            let lists = by_protocol
                .iter()
                .map(|a| {
                    format!(
                        "{}: {}",
                        a.name(),
                        a.config.owners.clone().unwrap_or_default().join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BrokerError::forbidden(format!(
                "account {owner} is not in the owners of any GitHub App for {} ({lists})",
                request.host
            )));
        }
        Ok(allowed)
    }
}
