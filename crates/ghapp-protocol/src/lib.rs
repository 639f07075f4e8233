//! Wire formats shared by every ghapp binary, written once.
//!
//! Nothing here does network I/O or needs an async runtime, so the credential helper can link
//! it without cost on git's hot path. The modules:
//!
//! - [`credential`]: git's credential-helper protocol (parse git's request, write our answer).
//! - [`api`]: the daemon's socket API — request queries, response bodies, route paths.
//! - [`permissions`]: GitHub App permission names and levels, as parsed from every surface.
//! - [`config`]: the config file — its schema, all its validation, and how every binary reads it.
//! - [`paths`]: where the socket and the config file live, resolved the same way by all binaries.
//! - [`runners`]: the runner service's API (provision, list, states, audit-free records).
//! - [`secret`]: the [`Token`](secret::Token) type that never prints itself, and fingerprints.
//! - [`duration`]: human durations such as `30m` used in config, queries and flags.
//! - [`time`]: [`Timestamp`](time::Timestamp), an instant written as RFC 3339 only at the wire.

pub mod api;
pub mod client_key;
pub mod config;
pub mod credential;
pub mod duration;
pub mod paths;
pub mod permissions;
pub mod runners;
pub mod secret;
pub mod time;

/// The version of ghapp, sent as `User-Agent: ghapp/<version>` and reported by `/v1/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
