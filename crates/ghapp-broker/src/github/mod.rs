//! One App's client for GitHub's REST API, in four parts:
//!
//! - `engine`: the [`GitHubClient`] and the failure handling every call shares — retries with
//!   jittered backoff, rate-limit waits, clock skew, replication delay, the App hold-off;
//! - `endpoints`: the calls the broker makes, typed;
//! - `error`: [`ApiError`], why a call failed, before the broker adds its context;
//! - `limits`: GitHub's rate limits, keyed by bucket (the App's, each installation's) and
//!   resource;
//! - `wire`: GitHub's JSON shapes and the broker's types they convert to.
//!
//! Errors quote GitHub's `message` and name the route; they never contain a token.

mod endpoints;
mod engine;
mod error;
mod limits;
mod wire;

use std::time::Duration;

pub(crate) use endpoints::InstallationAuth;
pub(crate) use engine::GitHubClient;
pub(crate) use error::ApiError;
pub(crate) use limits::Bucket;
#[cfg(test)]
pub(crate) use wire::GrantedRepository;
pub(crate) use wire::{InstallationInfo, JitConfigBody, MintedToken, TokenRequestBody};
pub use wire::{JitRunner, SelfHostedRunner};

/// A 401 with a token younger than this is GitHub's replication delay, not a rejection.
pub(crate) const REPLICATION_DELAY: Duration = Duration::from_secs(5);
