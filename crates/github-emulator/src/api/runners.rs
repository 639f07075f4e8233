//! Self-hosted runner registration/remove tokens, for an organization
//! (`POST /orgs/{org}/actions/runners/{registration,remove}-token`) and for a repository
//! (`POST /repos/{owner}/{repo}/actions/runners/{registration,remove}-token`): each checks its own
//! scope and permission, then both issue the token the same way. Also the runners themselves
//! (list, get, delete, generate-jitconfig), both forms, kept in [`crate::runners`].

use super::Ctx;
use super::repos::named_repository;
use crate::clock::rfc3339_millis_offset;
use crate::fixture::AccountType;
use crate::http::{ApiError, Body, json};
use crate::model::Level;
use crate::runners::RunnerScope;
use crate::schema::Schema;
use base64::Engine as _;
use http::{Response, StatusCode};
use serde_json::json as j;

const DOCS_ORG_REGISTRATION: &str = "https://docs.github.com/rest/actions/self-hosted-runners#create-a-registration-token-for-an-organization";
const DOCS_ORG_REMOVE: &str = "https://docs.github.com/rest/actions/self-hosted-runners#create-a-remove-token-for-an-organization";
const DOCS_REPO_REGISTRATION: &str = "https://docs.github.com/rest/actions/self-hosted-runners#create-a-registration-token-for-a-repository";
const DOCS_REPO_REMOVE: &str = "https://docs.github.com/rest/actions/self-hosted-runners#create-a-remove-token-for-a-repository";

/// How long a runner token lives (GitHub: one hour).
const RUNNER_TOKEN_TTL_SECS: i64 = 3600;

/// `POST /orgs/{org}/actions/runners/{registration,remove}-token`: needs an installation token on
/// that organization with `organization_self_hosted_runners: write`.
pub fn org_runner_token(ctx: &mut Ctx<'_>, kind: &str) -> Result<Response<Body>, ApiError> {
    let docs = if kind == "registration" {
        DOCS_ORG_REGISTRATION
    } else {
        DOCS_ORG_REMOVE
    };
    let auth = ctx.require_token()?;
    let org = ctx.matched.param("org");
    let account = &auth.installation.account;
    if account.kind != AccountType::Organization || !account.login.eq_ignore_ascii_case(org) {
        return Err(ApiError::not_accessible(docs));
    }
    if auth
        .level("organization_self_hosted_runners")
        .is_none_or(|l| l < Level::Write)
    {
        return Err(ApiError::not_accessible(docs));
    }
    let scope = RunnerScope::Organization(org.to_ascii_lowercase());
    Ok(issue(ctx, kind, None, scope))
}

/// `POST /repos/{owner}/{repo}/actions/runners/{registration,remove}-token`: an installation
/// token covering the repository with `administration: write` (GitHub's requirement for
/// repository runners); 404 when the token does not reach the repository.
pub fn repo_runner_token(ctx: &mut Ctx<'_>, kind: &str) -> Result<Response<Body>, ApiError> {
    let docs = if kind == "registration" {
        DOCS_REPO_REGISTRATION
    } else {
        DOCS_REPO_REMOVE
    };
    let auth = ctx.require_token()?;
    let Some(repo) = named_repository(ctx).filter(|r| auth.covers(r)) else {
        return Err(ApiError::not_found(docs));
    };
    if auth
        .level("administration")
        .is_none_or(|l| l < Level::Write)
    {
        return Err(ApiError::not_accessible(docs));
    }
    tracing::debug!(repository = %repo.full_name(), "runner {kind} token issued");
    let scope = RunnerScope::Repository(repo.id);
    Ok(issue(ctx, kind, Some(auth.grant.installation_id), scope))
}

/// Mints a runner token of `kind`, records it among the issued tokens (`installation_id` for a
/// repository's, none for an organization's) and answers 201 with it.
fn issue(
    ctx: &mut Ctx<'_>,
    kind: &str,
    installation_id: Option<u64>,
    scope: RunnerScope,
) -> Response<Body> {
    let now = ctx.core.clock.unix();
    let expires = now + RUNNER_TOKEN_TTL_SECS;
    let token = crate::tokens::runner_token();
    let mut state = ctx.core.lock();
    if kind == "registration" {
        state
            .runners
            .registration_tokens
            .insert(token.clone(), (scope, expires));
    }
    state.issued.push(crate::admin::IssuedToken {
        token: token.clone(),
        kind: format!("runner_{kind}"),
        installation_id,
        created_at: now,
        expires_at: expires,
    });
    drop(state);
    let value = j!({ "token": token, "expires_at": rfc3339_millis_offset(expires) });
    json(
        StatusCode::CREATED,
        &ctx.render(Schema::AuthenticationToken, value),
    )
}

const DOCS_LIST_ORG: &str = "https://docs.github.com/rest/actions/self-hosted-runners#list-self-hosted-runners-for-an-organization";
const DOCS_LIST_REPO: &str = "https://docs.github.com/rest/actions/self-hosted-runners#list-self-hosted-runners-for-a-repository";
const DOCS_RUNNER: &str = "https://docs.github.com/rest/actions/self-hosted-runners#get-a-self-hosted-runner-for-an-organization";
const DOCS_DELETE: &str = "https://docs.github.com/rest/actions/self-hosted-runners#delete-a-self-hosted-runner-from-an-organization";
const DOCS_JIT: &str = "https://docs.github.com/rest/actions/self-hosted-runners#create-configuration-for-a-just-in-time-runner-for-an-organization";

/// The scope a runner route names, after checking the token may act on it at `needed`:
/// an organization's runners need `organization_self_hosted_runners`, a repository's
/// `administration` (GitHub's rule for the installation tokens of Apps).
fn runner_scope(
    ctx: &mut Ctx<'_>,
    needed: Level,
    docs: &'static str,
) -> Result<RunnerScope, ApiError> {
    let auth = ctx.require_token()?;
    if ctx.matched.pattern.contains("/orgs/{org}/") {
        let org = ctx.matched.param("org");
        let account = &auth.installation.account;
        if account.kind != AccountType::Organization || !account.login.eq_ignore_ascii_case(org) {
            return Err(ApiError::not_accessible(docs));
        }
        if auth
            .level("organization_self_hosted_runners")
            .is_none_or(|l| l < needed)
        {
            return Err(ApiError::not_accessible(docs));
        }
        return Ok(RunnerScope::Organization(org.to_ascii_lowercase()));
    }
    let Some(repo) = named_repository(ctx).filter(|r| auth.covers(r)) else {
        return Err(ApiError::not_found(docs));
    };
    if auth.level("administration").is_none_or(|l| l < needed) {
        return Err(ApiError::not_accessible(docs));
    }
    Ok(RunnerScope::Repository(repo.id))
}

/// `GET /orgs/{org}/actions/runners` and `GET /repos/{owner}/{repo}/actions/runners`:
/// `{total_count, runners}`, `per_page` (default 30, at most 100) and `page`, with a `Link`
/// header naming the next and last pages.
pub fn list(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let docs = if ctx.matched.pattern.contains("/orgs/") {
        DOCS_LIST_ORG
    } else {
        DOCS_LIST_REPO
    };
    let scope = runner_scope(ctx, Level::Read, docs)?;
    let per_page = ctx
        .query_param("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = ctx
        .query_param("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let (total, runners) = {
        let state = ctx.core.lock();
        let all = state.runners.of(&scope);
        let runners: Vec<_> = all
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|r| r.to_json())
            .collect();
        (all.len(), runners)
    };
    let mut response = json(
        StatusCode::OK,
        &j!({ "total_count": total, "runners": runners }),
    );
    let last = total.div_ceil(per_page).max(1);
    if page < last {
        let path = ctx.matched.pattern.split_once(' ').map_or("", |(_, p)| p);
        let path = path
            .replace("{org}", ctx.matched.param("org"))
            .replace("{owner}", ctx.matched.param("owner"))
            .replace("{repo}", ctx.matched.param("repo"));
        let url = |n: usize| format!("{}{path}?per_page={per_page}&page={n}", ctx.api_base);
        let link = format!(
            "<{}>; rel=\"next\", <{}>; rel=\"last\"",
            url(page + 1),
            url(last)
        );
        if let Ok(value) = http::HeaderValue::from_str(&link) {
            response.headers_mut().insert(http::header::LINK, value);
        }
    }
    Ok(response)
}

fn runner_id(ctx: &Ctx<'_>, docs: &'static str) -> Result<u64, ApiError> {
    ctx.matched
        .param("runner_id")
        .parse()
        .map_err(|_| ApiError::not_found(docs))
}

/// `GET …/actions/runners/{runner_id}`.
pub fn get(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let scope = runner_scope(ctx, Level::Read, DOCS_RUNNER)?;
    let id = runner_id(ctx, DOCS_RUNNER)?;
    let state = ctx.core.lock();
    match state.runners.of(&scope).into_iter().find(|r| r.id == id) {
        Some(runner) => Ok(json(StatusCode::OK, &runner.to_json())),
        None => Err(ApiError::not_found(DOCS_RUNNER)),
    }
}

/// `DELETE …/actions/runners/{runner_id}`: 204.
pub fn delete(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let scope = runner_scope(ctx, Level::Write, DOCS_DELETE)?;
    let id = runner_id(ctx, DOCS_DELETE)?;
    if !ctx.core.lock().runners.remove(&scope, id) {
        return Err(ApiError::not_found(DOCS_DELETE));
    }
    let mut response = Response::new(crate::http::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// `POST …/actions/runners/generate-jitconfig` `{name, runner_group_id, labels, work_folder}`:
/// 201 `{runner, encoded_jit_config}`. GitHub's validation: `name` and `runner_group_id`
/// required, `labels` 1–100 strings (422 otherwise); a name in use is 409.
pub fn generate_jitconfig(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let scope = runner_scope(ctx, Level::Write, DOCS_JIT)?;
    let body: serde_json::Value =
        serde_json::from_slice(&ctx.body).map_err(|_| ApiError::bad_json(DOCS_JIT))?;
    let invalid = |what: &str| {
        ApiError::with_docs(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Invalid input: {what}"),
            DOCS_JIT,
        )
    };
    let name = match body.get("name") {
        Some(serde_json::Value::String(name)) if !name.is_empty() => name.clone(),
        Some(_) => return Err(invalid("For 'properties/name', it is not a string.")),
        None => return Err(invalid("object is missing required key: name")),
    };
    let group = match body.get("runner_group_id") {
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid("For 'properties/runner_group_id', it is not an integer."))?,
        // Observed on github.com (GitHub has no default group here).
        None => return Err(invalid("object is missing required key: runner_group_id")),
    };
    let labels: Vec<String> = match body.get("labels") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|l| l.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("For 'items', it is not a string."))?,
        Some(_) => return Err(invalid("For 'properties/labels', it is not an array.")),
        None => return Err(invalid("object is missing required key: labels")),
    };
    if labels.is_empty() {
        return Err(invalid(
            "For 'properties/labels', [] has fewer items than the minimum of 1.",
        ));
    }
    if labels.len() > 100 {
        return Err(invalid(
            "For 'properties/labels', the array has more items than the maximum of 100.",
        ));
    }
    if let Some(folder) = body.get("work_folder")
        && !folder.is_string()
    {
        return Err(invalid("For 'properties/work_folder', it is not a string."));
    }
    let registered = ctx
        .core
        .lock()
        .runners
        .register(scope, &name, group, labels, true);
    let runner = registered.map_err(|crate::runners::NameInUse| {
        ApiError::with_docs(
            StatusCode::CONFLICT,
            format!("Already exists - A runner with the name {name} already exists."),
            DOCS_JIT,
        )
    })?;
    let config = j!({
        ".runner": format!("runner {} in group {group}", runner.id),
        ".credentials": crate::tokens::runner_token(),
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(config.to_string());
    let now = ctx.core.clock.unix();
    ctx.core.lock().issued.push(crate::admin::IssuedToken {
        token: encoded.clone(),
        kind: "runner_jitconfig".into(),
        installation_id: None,
        created_at: now,
        expires_at: now + RUNNER_TOKEN_TTL_SECS,
    });
    Ok(json(
        StatusCode::CREATED,
        &j!({ "runner": runner.to_json(), "encoded_jit_config": encoded }),
    ))
}
