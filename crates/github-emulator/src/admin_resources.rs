//! Admin routes for the conditional-request routes and rate limits (not GitHub's surface):
//! - `POST /_emulator/resources` changes a resource so its `ETag` changes ([`ResourceChange`]);
//! - `GET /_emulator/rate_limit` reads every primary rate-limit bucket ([`RateBuckets`]);
//! - `POST /_emulator/rate_limit` sets a bucket's remaining requests ([`SetRemaining`]), e.g.
//!   0 to force a credential rate limited.

use crate::conditional::Pull;
use crate::core::{Core, RateBucket};
use crate::http::{Body, json, read_body};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use std::collections::BTreeMap;

/// A change to a resource (`POST /_emulator/resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResourceChange {
    /// Record a change of the repository (as a push does): `updated_at`/`pushed_at`, `ETag` and
    /// `Last-Modified` of `GET /repos/{owner}/{repo}` move.
    TouchRepository {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
    },
    /// Open a pull request (`GET …/pulls` changes).
    AddPull {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
        /// Title.
        title: String,
    },
    /// Create or replace a file (`GET …/contents/{path}` changes).
    PutFile {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
        /// Path in the repository.
        path: String,
        /// UTF-8 content.
        content: String,
    },
}

/// One primary rate-limit bucket (`GET /_emulator/rate_limit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketState {
    /// Requests per window.
    pub limit: u64,
    /// Requests counted in this window (304s to authorized requests are not).
    pub used: u64,
    /// When the window resets (Unix seconds).
    pub reset: i64,
}

/// Every bucket by key: `installation:ID`, `app:ID`, `anonymous`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateBuckets {
    /// The buckets.
    pub buckets: BTreeMap<String, BucketState>,
}

/// `POST /_emulator/rate_limit`: leave `remaining` requests in bucket `key` (0 = limited until
/// the window resets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRemaining {
    /// `installation:ID`, `app:ID` or `anonymous`.
    pub key: String,
    /// Requests left in the window.
    pub remaining: u64,
}

/// Whether `path` is one of these routes.
pub fn serves(path: &str) -> bool {
    path == "/_emulator/resources" || path == "/_emulator/rate_limit"
}

/// Serves them.
pub async fn handle(core: &Core, method: &Method, path: &str, body: Incoming) -> Response<Body> {
    let read = async {
        read_body(body, 64 * 1024)
            .await
            .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))
    };
    match (method, path) {
        (&Method::GET, "/_emulator/rate_limit") => {
            let state = core.lock();
            let buckets = state
                .rate
                .iter()
                .map(|(key, bucket)| {
                    (
                        key.clone(),
                        BucketState {
                            limit: core.bucket_limit(key),
                            used: bucket.used,
                            reset: bucket.reset,
                        },
                    )
                })
                .collect();
            json(StatusCode::OK, &RateBuckets { buckets })
        }
        (&Method::POST, "/_emulator/rate_limit") => {
            let bytes = match read.await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            let set: SetRemaining = match serde_json::from_slice(&bytes) {
                Ok(set) => set,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
            };
            let limit = core.bucket_limit(&set.key);
            let now = core.clock.unix();
            let mut state = core.lock();
            let bucket = state.rate.entry(set.key).or_insert(RateBucket {
                used: 0,
                reset: now + 3600,
            });
            bucket.used = limit.saturating_sub(set.remaining);
            json(StatusCode::OK, &j!({ "ok": true }))
        }
        (&Method::POST, "/_emulator/resources") => {
            let bytes = match read.await {
                Ok(bytes) => bytes,
                Err(response) => return response,
            };
            let change: ResourceChange = match serde_json::from_slice(&bytes) {
                Ok(change) => change,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid change: {e}")),
            };
            match apply(core, change) {
                Ok(()) => json(StatusCode::OK, &j!({ "ok": true })),
                Err(message) => error(StatusCode::NOT_FOUND, &message),
            }
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn apply(core: &Core, change: ResourceChange) -> Result<(), String> {
    let now = core.clock.unix();
    let (owner, repo) = match &change {
        ResourceChange::TouchRepository { owner, repo }
        | ResourceChange::AddPull { owner, repo, .. }
        | ResourceChange::PutFile { owner, repo, .. } => (owner, repo),
    };
    let full = core
        .repo(owner, repo)
        .map(|r| r.full_name().to_ascii_lowercase())
        .ok_or_else(|| format!("no repository {owner}/{repo}"))?;
    let mut state = core.lock();
    let resources = &mut state.resources;
    match change {
        ResourceChange::TouchRepository { .. } => resources.touch(format!("repo:{full}"), now),
        ResourceChange::AddPull { title, .. } => {
            let pulls = resources.pulls.entry(full.clone()).or_default();
            let number = pulls.len() as u64 + 1;
            pulls.push(Pull {
                number,
                title,
                head: format!("feature-{number}"),
                created_at: now,
            });
            resources.touch(format!("pulls:{full}"), now);
        }
        ResourceChange::PutFile { path, content, .. } => {
            resources
                .files
                .entry(full.clone())
                .or_default()
                .insert(path.clone(), content.into_bytes());
            resources.touch(format!("file:{full}:{path}"), now);
        }
    }
    Ok(())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &j!({ "ok": false, "error": message }))
}
