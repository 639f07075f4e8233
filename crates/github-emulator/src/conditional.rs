//! GitHub's conditional requests on the routes that emulate them (`GET /repos/{o}/{r}`,
//! `…/pulls`, `…/contents/{path}`): every 200 carries an `ETag` (and `Last-Modified` where
//! GitHub sends one), `Cache-Control` and `Vary: Accept, Authorization, Cookie`; a request whose
//! `If-None-Match` (or, without it, `If-Modified-Since`) still holds gets `304 Not Modified`,
//! which — when it was correctly authorized — does not count against the primary rate limit
//! (the point taken at authentication is given back). The mutable resources behind these
//! routes (a repository's last change, pull requests, files) live in [`Resources`], changed
//! through `/_emulator/resources`.

use crate::api::Ctx;
use crate::core::{Core, RateHeaders};
use crate::http::{Body, full};
use base64::Engine as _;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The routes with conditional-request behaviour.
pub const CONDITIONAL_ROUTES: &[&str] = &[
    "GET /repos/{owner}/{repo}",
    "GET /repos/{owner}/{repo}/pulls",
    CONTENTS_ROUTE,
];

/// The contents route's pattern (its `{path}` may span several segments).
pub const CONTENTS_ROUTE: &str = "GET /repos/{owner}/{repo}/contents/{path}";

/// One pull request added through the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pull {
    /// Its number in the repository.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Head branch.
    pub head: String,
    /// Created (Unix seconds).
    pub created_at: i64,
}

/// The mutable resources of the conditional routes.
#[derive(Debug, Default)]
pub struct Resources {
    /// Last change (Unix seconds) and a change counter per resource key
    /// (`repo:acme/widgets`, `pulls:acme/widgets`, `file:acme/widgets:README.md`, lower case).
    pub changed: BTreeMap<String, (i64, u64)>,
    /// Pull requests per repository (`acme/widgets`, lower case).
    pub pulls: BTreeMap<String, Vec<Pull>>,
    /// Files per repository: path → content. Every repository has `README.md` until one is put.
    pub files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Resources {
    /// Records a change of `key` now.
    pub fn touch(&mut self, key: String, now: i64) {
        let entry = self.changed.entry(key).or_insert((now, 0));
        entry.0 = now;
        entry.1 += 1;
    }
}

/// The resource key of a request on a conditional route.
fn resource_key(ctx: &Ctx<'_>) -> Option<String> {
    let owner = ctx.matched.param("owner").to_ascii_lowercase();
    let repo = ctx.matched.param("repo").to_ascii_lowercase();
    Some(match ctx.matched.pattern {
        "GET /repos/{owner}/{repo}" => format!("repo:{owner}/{repo}"),
        "GET /repos/{owner}/{repo}/pulls" => format!("pulls:{owner}/{repo}"),
        CONTENTS_ROUTE => format!("file:{owner}/{repo}:{}", ctx.matched.param("path")),
        _ => return None,
    })
}

/// Adds validators to a 200 on a conditional route and turns it into a 304 when the request's
/// condition holds, giving back the rate-limit point of an authorized request.
pub async fn apply(
    ctx: &Ctx<'_>,
    response: Response<Body>,
    rate: &mut Option<RateHeaders>,
) -> Response<Body> {
    if response.status() != StatusCode::OK || !CONDITIONAL_ROUTES.contains(&ctx.matched.pattern) {
        return response;
    }
    let Some(key) = resource_key(ctx) else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, crate::http::empty());
    };
    let mut bytes = collected.to_bytes();
    let core = ctx.core;
    let (changed_at, revision) = core
        .lock()
        .resources
        .changed
        .get(&key)
        .copied()
        .unwrap_or((0, 0));
    let repo_created = core
        .repo(ctx.matched.param("owner"), ctx.matched.param("repo"))
        .map_or(0, |r| r.created_at);
    let modified = changed_at.max(repo_created);
    if ctx.matched.pattern == "GET /repos/{owner}/{repo}" && changed_at > 0 {
        // A change to the repository moves its `updated_at` / `pushed_at`, as a push does.
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            let stamp = serde_json::Value::String(crate::clock::iso8601_z(changed_at));
            value["updated_at"] = stamp.clone();
            value["pushed_at"] = stamp;
            bytes = serde_json::to_vec(&value).unwrap_or_default().into();
        }
    }
    let accept = ctx
        .headers
        .get(header::ACCEPT)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let etag = {
        // The change counter is part of it: a change within the same second still moves it.
        let mut input = format!("{revision}\n").into_bytes();
        input.extend_from_slice(&accept);
        input.push(b'\n');
        input.extend_from_slice(&bytes);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        let hex: String = digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("W/\"{hex}\"")
    };
    let last_modified = (ctx.matched.pattern != "GET /repos/{owner}/{repo}/pulls").then(|| {
        httpdate::fmt_http_date(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(modified).unwrap_or(0)),
        )
    });
    let authorized = ctx.headers.contains_key(header::AUTHORIZATION);
    let headers = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Some(v) = last_modified
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::LAST_MODIFIED, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if authorized {
            "private, max-age=60, s-maxage=60"
        } else {
            "public, max-age=60, s-maxage=60"
        }),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"),
    );
    headers.append(
        header::VARY,
        HeaderValue::from_static("Accept-Encoding, Accept, X-Requested-With"),
    );
    if !not_modified(ctx, &etag, modified, last_modified.is_some()) {
        return Response::from_parts(parts, full(bytes));
    }
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_TYPE);
    if authorized && let Some(rate) = rate.as_mut() {
        refund(core, ctx, rate);
    }
    Response::from_parts(parts, crate::http::empty())
}

/// Whether the request's condition says the client's copy is current: `If-None-Match` when
/// present (weak comparison), else `If-Modified-Since` (where a `Last-Modified` is sent).
fn not_modified(ctx: &Ctx<'_>, etag: &str, modified: i64, has_last_modified: bool) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_string();
    if let Some(list) = ctx.headers.get(header::IF_NONE_MATCH) {
        let list = list.to_str().unwrap_or("");
        let ours = opaque(etag);
        return list
            .split(',')
            .any(|t| t.trim() == "*" || opaque(t) == ours);
    }
    if has_last_modified
        && let Some(since) = ctx
            .headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        return crate::clock::unix_secs(since) >= modified;
    }
    false
}

/// Gives back the point an authorized request was charged: a 304 is free.
fn refund(core: &Core, ctx: &Ctx<'_>, rate: &mut RateHeaders) {
    let crate::api::Credential::Secret(secret) = crate::api::credential(&ctx.headers) else {
        return;
    };
    let Ok(auth) = core.authenticate_token(&secret) else {
        return;
    };
    let key = format!("installation:{}", auth.grant.installation_id);
    let mut state = core.lock();
    if let Some(bucket) = state.rate.get_mut(&key)
        && bucket.used > 0
    {
        bucket.used -= 1;
        rate.used = bucket.used;
        rate.remaining = rate.limit.saturating_sub(bucket.used);
    }
}

/// A file's content object as `GET /repos/{o}/{r}/contents/{path}` renders it.
pub fn content_json(
    api_base: &str,
    full_name: &str,
    branch: &str,
    path: &str,
    content: &[u8],
) -> serde_json::Value {
    let mut blob = format!("blob {}\0", content.len()).into_bytes();
    blob.extend_from_slice(content);
    let sha: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &blob)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    // GitHub wraps the base64 at 60 characters with `\n`.
    let wrapped: String = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let name = path.rsplit('/').next().unwrap_or(path);
    let url = format!("{api_base}/repos/{full_name}/contents/{path}?ref={branch}");
    let git_url = format!("{api_base}/repos/{full_name}/git/blobs/{sha}");
    let html_url = format!("https://github.com/{full_name}/blob/{branch}/{path}");
    serde_json::json!({
        "type": "file",
        "encoding": "base64",
        "size": content.len(),
        "name": name,
        "path": path,
        "content": wrapped,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": format!("https://raw.githubusercontent.com/{full_name}/{branch}/{path}"),
        "_links": { "self": url, "git": git_url, "html": html_url },
    })
}
