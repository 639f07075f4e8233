//! Repository content routes with conditional-request behaviour (validators and 304s are added
//! by `crate::conditional`): `GET /repos/{owner}/{repo}/pulls` and
//! `GET /repos/{owner}/{repo}/contents/{path}` (a path of any depth). Pull requests and files
//! come from `/_emulator/resources`; every repository has a `README.md` until one is put.

use super::{Credential, Ctx, credential};
use crate::conditional::{CONTENTS_ROUTE, content_json};
use crate::http::{ApiError, Body, json};
use crate::jwt;
use crate::model::{Level, Repository};
use crate::router::Matched;
use http::{Response, StatusCode};
use serde_json::json as j;

const DOCS_PULLS: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
const DOCS_CONTENTS: &str = "https://docs.github.com/rest/repos/contents#get-repository-content";

/// Matches `GET /repos/{owner}/{repo}/contents/{path…}`, which the segment router cannot (the
/// path spans any number of segments).
pub fn route_contents(method: &str, path: &str) -> Option<Matched> {
    if method != "GET" {
        return None;
    }
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.splitn(4, '/');
    let (owner, repo, contents, file) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let file = file.trim_end_matches('/');
    if owner.is_empty() || repo.is_empty() || contents != "contents" || file.is_empty() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some(Matched {
        pattern: CONTENTS_ROUTE,
        params: vec![
            ("owner", decode(owner)),
            ("repo", decode(repo)),
            ("path", decode(file)),
        ],
    })
}

/// The repository the route names if the caller may read `permission` on it: an installation
/// token covering it with that permission (or `metadata`-only for public ones), or anyone for
/// a public repository. 404 otherwise, as GitHub hides what a caller cannot see; 403 when the
/// token sees the repository but lacks the permission.
fn readable<'c>(
    ctx: &mut Ctx<'c>,
    permission: &str,
    docs: &'static str,
) -> Result<&'c Repository, ApiError> {
    let core = ctx.core;
    let repo = core.repo(ctx.matched.param("owner"), ctx.matched.param("repo"));
    let auth = match credential(&ctx.headers) {
        Credential::None => {
            ctx.anonymous();
            None
        }
        Credential::Secret(secret) if jwt::looks_like_jwt(&secret) => {
            return Err(ApiError::bad_credentials());
        }
        _ => Some(ctx.require_token()?),
    };
    let repo = repo.ok_or_else(|| ApiError::not_found(docs))?;
    match auth {
        None if repo.private => Err(ApiError::not_found(docs)),
        None => Ok(repo),
        Some(auth) if !auth.covers(repo) => Err(ApiError::not_found(docs)),
        Some(auth) if repo.private && auth.level(permission).is_none_or(|l| l < Level::Read) => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
            ))
        }
        Some(_) => Ok(repo),
    }
}

/// `GET /repos/{owner}/{repo}/pulls`: the open pull requests (`pull_requests: read` on private
/// repositories).
pub fn list_pulls(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let repo = readable(ctx, "pull_requests", DOCS_PULLS)?;
    let full_name = repo.full_name();
    let pulls = ctx
        .core
        .lock()
        .resources
        .pulls
        .get(&full_name.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default();
    let api = &ctx.api_base;
    let owner = repo.owner.json();
    let repo_json = repo.json(api, &ctx.core.bases().git, false);
    let items: Vec<serde_json::Value> = pulls
        .iter()
        .rev()
        .map(|pull| {
            let created = crate::clock::iso8601_z(pull.created_at);
            let id = repo.id * 1000 + pull.number;
            j!({
                "url": format!("{api}/repos/{full_name}/pulls/{}", pull.number),
                "id": id,
                "node_id": crate::model::node_id("PullRequest", id),
                "html_url": format!("https://github.com/{full_name}/pull/{}", pull.number),
                "number": pull.number,
                "state": "open",
                "locked": false,
                "title": pull.title,
                "user": owner,
                "body": null,
                "labels": [],
                "created_at": created,
                "updated_at": created,
                "closed_at": null,
                "merged_at": null,
                "draft": false,
                "head": { "label": format!("{}:{}", repo.owner.login, pull.head), "ref": pull.head,
                          "sha": "0".repeat(40), "user": owner, "repo": repo_json },
                "base": { "label": format!("{}:{}", repo.owner.login, repo.default_branch),
                          "ref": repo.default_branch, "sha": "0".repeat(40), "user": owner,
                          "repo": repo_json },
                "author_association": "OWNER",
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &items))
}

/// `GET /repos/{owner}/{repo}/contents/{path}`: a file's content object (`contents: read` on
/// private repositories).
pub fn get_contents(ctx: &mut Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let repo = readable(ctx, "contents", DOCS_CONTENTS)?;
    let full_name = repo.full_name();
    let path = ctx.matched.param("path").to_string();
    let content = {
        let state = ctx.core.lock();
        match state.resources.files.get(&full_name.to_ascii_lowercase()) {
            Some(files) => files.get(&path).cloned(),
            None => None,
        }
    };
    let content = match content {
        Some(content) => content,
        None if path == "README.md" => format!("# {}\n", repo.name).into_bytes(),
        None => return Err(ApiError::not_found(DOCS_CONTENTS)),
    };
    Ok(json(
        StatusCode::OK,
        &content_json(
            &ctx.api_base,
            &full_name,
            &repo.default_branch,
            &path,
            &content,
        ),
    ))
}
