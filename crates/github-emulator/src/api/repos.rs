//! Repository routes: `GET /repos/{owner}/{repo}` (and by id, the target of a rename's 301).

use super::{Credential, Ctx, credential};
use crate::http::{ApiError, Body, json};
use crate::jwt;
use crate::model::{Level, Repository};
use crate::schema::Schema;
use http::{Response, StatusCode};
use serde_json::json as j;

const DOCS_GET: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";

/// The repository the route names: `{owner}/{repo}` or `{repository_id}`.
pub(crate) fn named_repository<'c>(ctx: &Ctx<'c>) -> Option<&'c Repository> {
    let core = ctx.core;
    if ctx
        .matched
        .params
        .iter()
        .any(|(n, _)| *n == "repository_id")
    {
        let id = ctx.matched.param("repository_id").parse::<u64>().ok()?;
        return core.repo_by_id(id);
    }
    core.repo(ctx.matched.param("owner"), ctx.matched.param("repo"))
}

/// `GET /repos/{owner}/{repo}` and `GET /repositories/{repository_id}`: the `full-repository`
/// object. An installation token sees the repositories it covers (with its `permissions`);
/// anonymous callers see public ones; everything else is 404, as GitHub hides private
/// repositories.
pub fn get_repository(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let repo = named_repository(ctx);
    let auth = match credential(&ctx.headers) {
        Credential::None => {
            ctx.anonymous();
            None
        }
        // A JWT cannot read repositories (GitHub: installation or user credentials only).
        Credential::Secret(secret) if jwt::looks_like_jwt(&secret) => {
            return Err(ApiError::bad_credentials());
        }
        _ => Some(ctx.require_token()?),
    };
    let visible = match (&auth, repo) {
        (_, None) => None,
        (Some(auth), Some(repo)) => auth.covers(repo).then_some(repo),
        (None, Some(repo)) => (!repo.private).then_some(repo),
    };
    let Some(repo) = visible else {
        return Err(ApiError::not_found(DOCS_GET));
    };
    let git_base = ctx.core.bases().git;
    let mut value = repo.json(&ctx.api_base, &git_base, true);
    if let Some(auth) = &auth {
        let level = auth.level("contents");
        let write = level.is_some_and(|l| l >= Level::Write);
        let admin = auth
            .level("administration")
            .is_some_and(|l| l >= Level::Write);
        value["permissions"] = j!({
            "admin": admin, "maintain": admin, "push": write, "triage": write, "pull": true
        });
    }
    Ok(json(
        StatusCode::OK,
        &ctx.render(Schema::FullRepository, value),
    ))
}
