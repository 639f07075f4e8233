//! App-authenticated (JWT) routes: the App itself and its installations.

use super::Ctx;
use crate::fixture::AccountType;
use crate::http::{ApiError, Body, empty, json};
use crate::model::{App, Installation};
use crate::schema::Schema;
use http::{HeaderValue, Response, StatusCode};
use serde_json::Value;

const DOCS_GET_INSTALLATION: &str =
    "https://docs.github.com/rest/apps/apps#get-an-installation-for-the-authenticated-app";
const DOCS_DELETE: &str =
    "https://docs.github.com/rest/apps/apps#delete-an-installation-for-the-authenticated-app";
const DOCS_SUSPEND: &str = "https://docs.github.com/rest/apps/apps#suspend-an-app-installation";
const DOCS_UNSUSPEND: &str = "https://docs.github.com/rest/apps/apps#unsuspend-an-app-installation";
const DOCS_REPO: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOCS_ORG: &str = "https://docs.github.com/rest/apps/apps#get-an-organization-installation-for-the-authenticated-app";
const DOCS_USER: &str =
    "https://docs.github.com/rest/apps/apps#get-a-user-installation-for-the-authenticated-app";

/// Default and maximum `per_page`.
const PER_PAGE_DEFAULT: usize = 30;
const PER_PAGE_MAX: usize = 100;

/// `GET /app`.
pub fn get_app(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let count = ctx
        .core
        .lock()
        .installations
        .live
        .values()
        .filter(|i| i.app_id == app.id)
        .count();
    Ok(json(
        StatusCode::OK,
        &ctx.render(Schema::Integration, app.json(count)),
    ))
}

/// `GET /app/installations` with `per_page`, `page`, `since` and a `Link` header.
pub fn list_installations(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let pairs = crate::http::query_pairs(ctx.query.as_deref());
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(PER_PAGE_DEFAULT)
        .min(PER_PAGE_MAX);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let since = get("since").and_then(|s| crate::clock::parse_rfc3339(&s));

    let installations: Vec<_> = {
        let state = ctx.core.lock();
        state
            .installations
            .live
            .values()
            .filter(|i| i.app_id == app.id)
            .filter(|i| since.is_none_or(|s| i.updated_at >= s))
            .cloned()
            .collect()
    };
    let total = installations.len();
    let last_page = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = installations
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|i| ctx.render(Schema::Installation, i.json(app, &ctx.api_base)))
        .collect();
    let mut response = json(StatusCode::OK, &items);

    let others: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k != "page" && k != "per_page")
        .collect();
    let link_to = |p: usize| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &others {
            query.append_pair(k, v);
        }
        query.append_pair("per_page", &per_page.to_string());
        query.append_pair("page", &p.to_string());
        format!("{}/app/installations?{}", ctx.api_base, query.finish())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            link_to((page - 1).min(last_page))
        ));
    }
    if page < last_page {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last_page)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(http::header::LINK, value);
    }
    Ok(response)
}

fn installation_id(ctx: &Ctx<'_>, docs: &'static str) -> Result<u64, ApiError> {
    ctx.matched
        .param("installation_id")
        .parse::<u64>()
        .map_err(|_| ApiError::not_found(docs))
}

/// The live installation of `app` that the route's `{installation_id}` names; GitHub's 404 (with
/// `docs`) for a malformed id, an unknown one, or another App's installation.
pub(crate) fn app_installation(
    ctx: &Ctx<'_>,
    app: &App,
    docs: &'static str,
) -> Result<Installation, ApiError> {
    let id = installation_id(ctx, docs)?;
    ctx.core
        .lock()
        .installations
        .live
        .get(&id)
        .filter(|i| i.app_id == app.id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(docs))
}

/// `GET /app/installations/{installation_id}`.
pub fn get_installation(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let installation = app_installation(ctx, app, DOCS_GET_INSTALLATION)?;
    Ok(json(
        StatusCode::OK,
        &ctx.render(Schema::Installation, installation.json(app, &ctx.api_base)),
    ))
}

/// `DELETE /app/installations/{installation_id}`: uninstall (tokens stop working).
pub fn delete_installation(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let id = installation_id(ctx, DOCS_DELETE)?;
    let mut state = ctx.core.lock();
    match state.installations.live.get(&id) {
        Some(i) if i.app_id == app.id => {
            if let Some(removed) = state.installations.live.remove(&id) {
                state.installations.removed.insert(id, removed);
            }
            state.tokens.revoke_all(Some(id));
            Ok(no_content())
        }
        _ => Err(ApiError::not_found(DOCS_DELETE)),
    }
}

/// `PUT|DELETE /app/installations/{installation_id}/suspended`.
pub fn set_suspended(ctx: &mut Ctx<'_>, suspend: bool) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let docs = if suspend {
        DOCS_SUSPEND
    } else {
        DOCS_UNSUSPEND
    };
    let id = installation_id(ctx, docs)?;
    let now = ctx.core.clock.unix();
    let mut state = ctx.core.lock();
    match state.installations.live.get_mut(&id) {
        Some(i) if i.app_id == app.id => {
            i.suspended_at = if suspend {
                Some(i.suspended_at.unwrap_or(now))
            } else {
                None
            };
            i.updated_at = now;
            Ok(no_content())
        }
        _ => Err(ApiError::not_found(docs)),
    }
}

/// `GET /repos/{owner}/{repo}/installation` (and `GET /repositories/{repository_id}/installation`,
/// where a renamed repository's 301 points).
pub fn repo_installation(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let Some(repo) = super::repos::named_repository(ctx) else {
        return Err(ApiError::not_found(DOCS_REPO));
    };
    live_installation(ctx, app, DOCS_REPO, |i| i.covers(repo))
}

/// `GET /orgs/{org}/installation` (organizations only) and `GET /users/{username}/installation`
/// (user accounts only — GitHub does not document that it resolves organizations, so clients
/// must not rely on it and the emulator refuses).
pub fn account_installation(ctx: &mut Ctx<'_>, org: bool) -> Result<Response<Body>, ApiError> {
    let app = ctx.require_jwt()?;
    let (login, kind, docs) = if org {
        (
            ctx.matched.param("org").to_string(),
            AccountType::Organization,
            DOCS_ORG,
        )
    } else {
        (
            ctx.matched.param("username").to_string(),
            AccountType::User,
            DOCS_USER,
        )
    };
    live_installation(ctx, app, docs, |i| {
        i.account.kind == kind && i.account.login.eq_ignore_ascii_case(&login)
    })
}

/// The first live installation of `app` that `wanted` picks, as GitHub renders it; 404 (with
/// `docs`) when there is none.
fn live_installation(
    ctx: &Ctx<'_>,
    app: &App,
    docs: &'static str,
    wanted: impl Fn(&Installation) -> bool,
) -> Result<Response<Body>, ApiError> {
    let installation = ctx
        .core
        .lock()
        .installations
        .live
        .values()
        .find(|i| i.app_id == app.id && wanted(i))
        .cloned();
    match installation {
        Some(i) => Ok(json(
            StatusCode::OK,
            &ctx.render(Schema::Installation, i.json(app, &ctx.api_base)),
        )),
        None => Err(ApiError::not_found(docs)),
    }
}

/// A 204 with no body.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
