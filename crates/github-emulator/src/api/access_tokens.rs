//! `POST /app/installations/{installation_id}/access_tokens`: mint an installation token,
//! optionally narrowed to repositories (`repositories` names, `repository_ids`) and permissions.

use super::Ctx;
use crate::clock::iso8601_z;
use crate::http::{ApiError, Body, json};
use crate::model::{Level, PermissionSet, Repository, permissions_json};
use crate::tokens::{Grant, classic_token, stateless_token};
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

const DOCS: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";

/// 422 for permissions not granted (or unknown names, or invalid levels).
pub const MSG_PERMISSIONS: &str = "The permissions requested are not granted to this installation.";
/// 422 for repositories outside the installation (or nonexistent).
pub const MSG_REPOSITORIES: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
/// 403 for a suspended installation.
pub const MSG_SUSPENDED: &str = "This installation has been suspended";

/// GitHub's cap on individually listed repositories.
const MAX_REPOSITORIES: usize = 500;

/// The request body, after type checks.
#[derive(Default)]
struct MintRequest {
    repositories: Option<Vec<String>>,
    repository_ids: Option<Vec<u64>>,
    permissions: Option<Vec<(String, String)>>,
}

fn parse_request(body: &[u8]) -> Result<MintRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(MintRequest::default());
    }
    let bad = || ApiError::bad_json(DOCS);
    let value: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let Value::Object(map) = value else {
        return Err(bad());
    };
    let mut request = MintRequest::default();
    match map.get("repositories") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let names: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            request.repositories = Some(names.ok_or_else(bad)?);
        }
        Some(_) => return Err(bad()),
    }
    match map.get("repository_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let ids: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
            request.repository_ids = Some(ids.ok_or_else(bad)?);
        }
        Some(_) => return Err(bad()),
    }
    match map.get("permissions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(perms)) => {
            let pairs: Option<Vec<(String, String)>> = perms
                .iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect();
            request.permissions = Some(pairs.ok_or_else(bad)?);
        }
        Some(_) => return Err(bad()),
    }
    Ok(request)
}

#[derive(Serialize)]
struct MintResponse {
    token: String,
    expires_at: String,
    permissions: Value,
    repository_selection: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repositories: Option<Vec<Value>>,
}

/// The handler.
pub fn create(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let installation = super::apps::app_installation(ctx, app, DOCS)?;
    if installation.suspended_at.is_some() {
        return Err(ApiError::with_docs(
            StatusCode::FORBIDDEN,
            MSG_SUSPENDED,
            DOCS,
        ));
    }
    let request = parse_request(&ctx.body)?;

    // Repositories: names within the installation's account, and ids; empty lists = no narrowing.
    let mut narrowed: Vec<&Repository> = Vec::new();
    let unreachable =
        || ApiError::with_docs(StatusCode::UNPROCESSABLE_ENTITY, MSG_REPOSITORIES, DOCS);
    for name in request.repositories.iter().flatten() {
        let repo = ctx
            .core
            .repo(&installation.account.login, name)
            .filter(|r| installation.covers(r))
            .ok_or_else(unreachable)?;
        if !narrowed.iter().any(|r| r.id == repo.id) {
            narrowed.push(repo);
        }
    }
    for repo_id in request.repository_ids.iter().flatten() {
        let repo = ctx
            .core
            .repos
            .iter()
            .find(|r| r.id == *repo_id && installation.covers(r))
            .ok_or_else(unreachable)?;
        if !narrowed.iter().any(|r| r.id == repo.id) {
            narrowed.push(repo);
        }
    }
    if narrowed.len() > MAX_REPOSITORIES {
        return Err(ApiError::with_docs(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Too many repositories for installation",
            DOCS,
        ));
    }

    // Permissions: only downgrades of what the installation was granted.
    let permissions: PermissionSet = match request.permissions.filter(|p| !p.is_empty()) {
        None => installation.permissions.clone(),
        Some(requested) => {
            let refused =
                || ApiError::with_docs(StatusCode::UNPROCESSABLE_ENTITY, MSG_PERMISSIONS, DOCS);
            let mut set = PermissionSet::new();
            for (name, level) in requested {
                let level = Level::parse(&level).ok_or_else(refused)?;
                match installation.permissions.get(&name) {
                    Some(granted) if *granted >= level => {
                        set.insert(name, level);
                    }
                    _ => return Err(refused()),
                }
            }
            // GitHub always includes metadata read access, which every repository token needs.
            if installation.permissions.contains_key("metadata") {
                set.entry("metadata".to_string()).or_insert(Level::Read);
            }
            set
        }
    };

    let stateless = match ctx
        .headers
        .get("x-github-stateless-s2s-token")
        .and_then(|v| v.to_str().ok())
    {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => ctx.core.stateless_default,
    };
    let now = ctx.core.clock.unix();
    let ttl = i64::try_from(ctx.core.token_ttl_secs).unwrap_or(i64::MAX);
    let grant = Grant {
        installation_id: installation.id,
        app_id: app.id,
        repository_ids: if narrowed.is_empty() {
            None
        } else {
            Some(narrowed.iter().map(|r| r.id).collect())
        },
        permissions,
        created_at: now,
        expires_at: now.saturating_add(ttl),
    };
    let token = if stateless {
        stateless_token(&ctx.core.stateless_secret, &grant)
    } else {
        classic_token()
    };
    let git_base = ctx.core.bases().git;
    let response = MintResponse {
        token: token.clone(),
        expires_at: iso8601_z(grant.expires_at),
        permissions: permissions_json(&grant.permissions),
        repository_selection: if narrowed.is_empty() {
            installation.repository_selection()
        } else {
            "selected"
        },
        repositories: if narrowed.is_empty() {
            None
        } else {
            Some(
                narrowed
                    .iter()
                    .map(|r| r.json(&ctx.api_base, &git_base, false))
                    .collect(),
            )
        },
    };
    {
        let mut state = ctx.core.lock();
        state.issued.push(crate::admin::IssuedToken {
            token: token.clone(),
            kind: "installation".to_string(),
            installation_id: Some(grant.installation_id),
            created_at: grant.created_at,
            expires_at: grant.expires_at,
        });
        state.tokens.insert(token, grant, now);
        *state
            .stats
            .mints
            .entry(installation.id.to_string())
            .or_default() += 1;
        state.stats.mints_total += 1;
    }
    let value = serde_json::to_value(&response).map_err(|_| {
        ApiError::with_docs(StatusCode::INTERNAL_SERVER_ERROR, "Server Error", DOCS)
    })?;
    Ok(json(
        StatusCode::CREATED,
        &ctx.render(crate::schema::Schema::InstallationToken, value),
    ))
}
