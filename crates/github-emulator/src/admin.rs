//! The admin API's wire types (not GitHub's surface): `GET /_emulator/stats` answers [`Stats`],
//! `POST /_emulator/faults` takes one [`Fault`]. Typed here so Rust tests can build and read them
//! without hand-written JSON; the JSON forms are documented in docs/emulator.md.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counters since start (or the last `DELETE /_emulator/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// API requests by `"<METHOD> <route pattern>"`, e.g.
    /// `"POST /app/installations/{installation_id}/access_tokens"` (GHES prefix stripped).
    /// Requests matching no route count under `"<METHOD> (unmatched)"`.
    pub requests: BTreeMap<String, u64>,
    /// Tokens minted per installation id.
    pub mints: BTreeMap<String, u64>,
    /// Tokens minted in total.
    pub mints_total: u64,
    /// Rejected App JWTs by reason: `undecodable`, `bad_iss`, `unknown_app`, `expired`,
    /// `exp_too_far`, `iat_future`, `missing`.
    pub jwt_rejections: BTreeMap<String, u64>,
    /// Git smart-HTTP requests by response status (`"200"`, `"401"`, …).
    pub git_requests: BTreeMap<String, u64>,
    /// Git smart-HTTP requests by service (`upload-pack`, `receive-pack`, `other`), counting
    /// only those that reached `git http-backend`.
    #[serde(default)]
    pub git_services: BTreeMap<String, u64>,
}

/// Which server a route fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultServer {
    /// The REST/GraphQL API (default).
    #[default]
    Api,
    /// The git smart-HTTP server; routes are `"METHOD /owner/repo.git/..."`.
    Git,
}

/// One fault to inject (`POST /_emulator/faults`). Route faults match a glob over
/// `"METHOD /path"` (`*` = any characters, also `/`), tried against both the request path (GHES
/// prefix stripped, no query) and the route pattern; an omitted route matches every request of
/// the server. `times` omitted = until cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with a fixed status (500/502/503; 403/429 are rate limits: with `retry_after` a
    /// secondary rate limit with a `retry-after` header, without it a primary one with
    /// `x-ratelimit-remaining: 0`).
    Status {
        /// Route glob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        /// HTTP status to answer.
        status: u16,
        /// `retry-after` seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        /// How many requests to fail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u64>,
        /// Overrides the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// API (default) or git.
        #[serde(default)]
        server: FaultServer,
    },
    /// Delay matching requests before answering.
    Latency {
        /// Route glob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        /// Added milliseconds.
        ms: u64,
        /// How many requests to delay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u64>,
        /// API (default) or git.
        #[serde(default)]
        server: FaultServer,
    },
    /// Close the connection without answering.
    Drop {
        /// Route glob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        /// How many requests to drop.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        times: Option<u64>,
        /// API (default) or git.
        #[serde(default)]
        server: FaultServer,
    },
    /// Shift the emulator's clock (Date headers, JWT checks, token expiry) by `secs`.
    ClockOffset {
        /// Seconds, positive = GitHub ahead of the machine.
        secs: i64,
    },
    /// Tokens answer 401 for `secs` seconds after minting (GitHub's replication lag).
    ReplicationDelay {
        /// Seconds.
        secs: u64,
    },
    /// Suspend an installation (minting answers 403; its tokens stop working).
    Suspend {
        /// Installation id.
        installation: u64,
    },
    /// Lift a suspension.
    Unsuspend {
        /// Installation id.
        installation: u64,
    },
    /// Uninstall: its routes answer 404 and its tokens 401.
    Uninstall {
        /// Installation id.
        installation: u64,
    },
    /// Reinstall an uninstalled (or live) installation under a new id, as GitHub does.
    Reinstall {
        /// The old installation id.
        installation: u64,
        /// The new id (default: highest id + 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_id: Option<u64>,
    },
    /// Revoke the tokens of one installation, or every token.
    RevokeTokens {
        /// Installation id; omitted = all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        installation: Option<u64>,
    },
    /// Clear status/latency/drop faults, the clock offset and the replication delay.
    Clear,
    /// Key rotation, step one: generate a new key pair for an App, write its private half to
    /// `private_key_out` in the state dir (a bare file name, mode 0600, must not exist) and
    /// accept JWTs signed by it as well as by the App's other keys, as GitHub does while an App
    /// has several keys.
    AddKey {
        /// App id.
        app: u64,
        /// File name in the state dir for the new private key.
        private_key_out: String,
    },
    /// Key rotation, step two: stop accepting the key whose private half is `private_key_file`
    /// (a bare file name in the state dir). GitHub refuses to delete an App's last key; so does
    /// this (422).
    RemoveKey {
        /// App id.
        app: u64,
        /// File name in the state dir of the private key to retire.
        private_key_file: String,
    },
}

/// `GET /_emulator/tokens`: every secret the emulator handed out since it started, oldest
/// first — installation tokens (revoked and expired ones included) and runner tokens — so
/// tests can scan logs and output for leaks and check served tokens against what was minted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTokens {
    /// The tokens, oldest first (at most [`IssuedTokens::CAPACITY`]).
    pub tokens: std::collections::VecDeque<IssuedToken>,
    /// How many older tokens were forgotten because the list was full.
    pub forgotten: u64,
}

impl IssuedTokens {
    /// The most tokens remembered; older ones are forgotten (and counted) beyond it.
    pub const CAPACITY: usize = 100_000;

    /// Remembers one more token.
    pub fn push(&mut self, token: IssuedToken) {
        if self.tokens.len() >= Self::CAPACITY {
            self.tokens.pop_front();
            self.forgotten += 1;
        }
        self.tokens.push_back(token);
    }
}

/// One secret the emulator handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The secret itself.
    pub token: String,
    /// `installation` or `runner_registration` / `runner_remove`.
    pub kind: String,
    /// The installation an installation token was minted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// When it was issued (Unix seconds, emulator clock).
    pub created_at: i64,
    /// When it expires (Unix seconds, emulator clock).
    pub expires_at: i64,
}
