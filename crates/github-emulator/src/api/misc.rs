//! Installation-token routes and the rest: `GET /`, `GET /installation/repositories`,
//! `DELETE /installation/token`, `GET /rate_limit`, GraphQL.

use super::{Credential, Ctx, credential};
use crate::core::TokenProblem;
use crate::http::{ApiError, Body, json};
use crate::jwt;
use crate::schema::Schema;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json as j};

const DOCS_REVOKE: &str =
    "https://docs.github.com/rest/apps/installations#revoke-an-installation-access-token";
const DOCS_GRAPHQL_AUTH: &str =
    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql";

/// `GET /`: the API root. Authenticated with an installation token it answers 200 without an
/// `X-OAuth-Scopes` header (installation tokens have no OAuth scopes); a bad token gets 401.
pub fn root(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    match credential(&ctx.headers) {
        Credential::Secret(secret) if jwt::looks_like_jwt(&secret) => {
            ctx.require_jwt()?;
        }
        Credential::None => ctx.anonymous(),
        _ => {
            ctx.require_token()?;
        }
    }
    let base = &ctx.api_base;
    Ok(json(
        StatusCode::OK,
        &j!({
            "current_user_url": format!("{base}/user"),
            "installation_repositories_url": format!("{base}/installation/repositories"),
            "organization_url": format!("{base}/orgs/{{org}}"),
            "rate_limit_url": format!("{base}/rate_limit"),
            "repository_url": format!("{base}/repos/{{owner}}/{{repo}}"),
            "user_url": format!("{base}/users/{{user}}"),
        }),
    ))
}

/// `GET /installation/repositories`: the repositories a token reaches, paginated.
pub fn installation_repositories(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let auth = ctx.require_token()?;
    let per_page = ctx
        .query_param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(30)
        .min(100);
    let page = ctx
        .query_param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let git_base = ctx.core.bases().git;
    let repos: Vec<_> = ctx.core.repos.iter().filter(|r| auth.covers(r)).collect();
    let total = repos.len();
    let items: Vec<Value> = repos
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|r| ctx.render(Schema::Repository, r.json(&ctx.api_base, &git_base, false)))
        .collect();
    let selection = if auth.grant.repository_ids.is_some() {
        "selected"
    } else {
        auth.installation.repository_selection()
    };
    let mut response = json(
        StatusCode::OK,
        &j!({ "total_count": total, "repository_selection": selection, "repositories": items }),
    );
    let last = total.div_ceil(per_page).max(1);
    let link = |p: usize| {
        format!(
            "{}/installation/repositories?per_page={per_page}&page={p}",
            ctx.api_base
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link(1)));
    }
    if let Ok(value) = HeaderValue::from_str(&links.join(", "))
        && !links.is_empty()
    {
        response.headers_mut().insert(http::header::LINK, value);
    }
    Ok(response)
}

/// `DELETE /installation/token`: revokes the token used to call it. A token that is already
/// invalid gets 401 `Bad credentials`.
pub fn revoke_token(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let Credential::Secret(secret) = credential(&ctx.headers) else {
        return Err(match credential(&ctx.headers) {
            Credential::None => ApiError::with_docs(
                StatusCode::UNAUTHORIZED,
                "Requires authentication",
                DOCS_REVOKE,
            ),
            _ => ApiError::bad_credentials(),
        });
    };
    if jwt::looks_like_jwt(&secret) {
        return Err(ApiError::bad_credentials());
    }
    match ctx.core.authenticate_token(&secret) {
        Ok(_) | Err(TokenProblem::Suspended) => {
            ctx.core.lock().tokens.revoke(&secret);
            Ok(super::apps::no_content())
        }
        Err(TokenProblem::BadCredentials) => Err(ApiError::bad_credentials()),
    }
}

/// `GET /rate_limit`: the caller's bucket (does not count against it).
pub fn rate_limit(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let key = match credential(&ctx.headers) {
        Credential::None => "anonymous".to_string(),
        Credential::Secret(secret) if jwt::looks_like_jwt(&secret) => {
            format!("app:{}", ctx.require_jwt()?.id)
        }
        _ => format!(
            "installation:{}",
            ctx.require_token()?.grant.installation_id
        ),
    };
    let now = ctx.core.clock.unix();
    let limit = ctx.core.bucket_limit(&key);
    let bucket = ctx.core.lock().rate.get(&key).copied();
    let (used, reset) = match bucket {
        Some(b) if b.reset > now => (b.used, b.reset),
        _ => (0, now + 3600),
    };
    // Checking the rate limit is free: undo the count authentication just made.
    let used = used.saturating_sub(1);
    if let Some(b) = ctx.core.lock().rate.get_mut(&key) {
        b.used = used;
    }
    ctx.rate = None;
    let core = j!({ "limit": limit, "remaining": limit.saturating_sub(used), "reset": reset, "used": used, "resource": "core" });
    let modern = ctx
        .headers
        .get("x-github-api-version")
        .is_some_and(|v| v == "2026-03-10");
    let body = if modern {
        j!({ "resources": { "core": core } })
    } else {
        j!({ "resources": { "core": core.clone() }, "rate": core })
    };
    Ok(json(StatusCode::OK, &body))
}

/// `POST /graphql` (and GHES `/api/graphql`): answers `viewer { login }` with `<slug>[bot]`.
pub fn graphql(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    if matches!(credential(&ctx.headers), Credential::None) {
        return Err(ApiError::with_docs(
            StatusCode::UNAUTHORIZED,
            "This endpoint requires you to be authenticated.",
            DOCS_GRAPHQL_AUTH,
        ));
    }
    let auth = ctx.require_token()?;
    let body: Value = serde_json::from_slice(&ctx.body)
        .map_err(|_| ApiError::bad_json(crate::http::DOCS_REST))?;
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_json(crate::http::DOCS_REST))?;
    let compact: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.contains("viewer{login}") {
        let login = ctx
            .core
            .apps
            .get(&auth.grant.app_id)
            .map(|a| a.bot_login())
            .unwrap_or_default();
        return Ok(json(
            StatusCode::OK,
            &j!({ "data": { "viewer": { "login": login } } }),
        ));
    }
    Ok(json(
        StatusCode::OK,
        &j!({ "errors": [ { "message": "github-emulator only answers the query `viewer { login }`" } ] }),
    ))
}
