//! Self-hosted runner registration/remove tokens, for an organization
//! (`POST /orgs/{org}/actions/runners/{registration,remove}-token`) and for a repository
//! (`POST /repos/{owner}/{repo}/actions/runners/{registration,remove}-token`): each checks its own
//! scope and permission, then both issue the token the same way.

use super::Ctx;
use super::repos::named_repository;
use crate::clock::rfc3339_millis_offset;
use crate::fixture::AccountType;
use crate::http::{ApiError, Body, json};
use crate::model::Level;
use crate::schema::Schema;
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
    Ok(issue(ctx, kind, None))
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
    Ok(issue(ctx, kind, Some(auth.grant.installation_id)))
}

/// Mints a runner token of `kind`, records it among the issued tokens (`installation_id` for a
/// repository's, none for an organization's) and answers 201 with it.
fn issue(ctx: &mut Ctx<'_>, kind: &str, installation_id: Option<u64>) -> Response<Body> {
    let now = ctx.core.clock.unix();
    let expires = now + RUNNER_TOKEN_TTL_SECS;
    let token = crate::tokens::runner_token();
    ctx.core.lock().issued.push(crate::admin::IssuedToken {
        token: token.clone(),
        kind: format!("runner_{kind}"),
        installation_id,
        created_at: now,
        expires_at: expires,
    });
    let value = j!({ "token": token, "expires_at": rfc3339_millis_offset(expires) });
    json(
        StatusCode::CREATED,
        &ctx.render(Schema::AuthenticationToken, value),
    )
}
