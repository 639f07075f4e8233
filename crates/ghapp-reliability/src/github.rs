//! The emulator's admin API from a test's side, typed with the emulator's own wire types:
//! faults, stats, its clock (system time + the `clock_offset` fault), and the ledger of every
//! token it issued (`GET /_emulator/tokens`).

use anyhow::{Context, bail};
use ghapp_testkit::emulator::{EmulatorProcess, request};
use github_emulator::admin::{Fault, IssuedToken, IssuedTokens, Stats};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The route pattern of a mint, as the stats name it.
pub const MINT_ROUTE: &str = "POST /app/installations/{installation_id}/access_tokens";

/// Admin calls on a running emulator.
pub trait EmulatorAdmin {
    /// Injects a typed fault.
    fn inject(&self, fault: Fault) -> anyhow::Result<()>;
    /// The counters, typed.
    fn typed_stats(&self) -> anyhow::Result<Stats>;
    /// Every token the emulator issued since it started.
    fn issued_tokens(&self) -> anyhow::Result<IssuedTokens>;
    /// The `clock_offset` in force, in seconds.
    fn clock_offset(&self) -> anyhow::Result<i64>;
}

impl EmulatorAdmin for EmulatorProcess {
    fn inject(&self, fault: Fault) -> anyhow::Result<()> {
        self.fault(serde_json::to_value(&fault).context("encoding the fault")?)
    }

    fn typed_stats(&self) -> anyhow::Result<Stats> {
        serde_json::from_value(self.stats()?).context("reading /_emulator/stats")
    }

    fn issued_tokens(&self) -> anyhow::Result<IssuedTokens> {
        let response = request(
            &self.urls.admin_url,
            None,
            "GET",
            "/_emulator/tokens",
            &[],
            None,
        )?;
        if response.status != 200 {
            bail!("/_emulator/tokens answered {}", response.status);
        }
        serde_json::from_value(response.json()?).context("reading /_emulator/tokens")
    }

    fn clock_offset(&self) -> anyhow::Result<i64> {
        let response = request(
            &self.urls.admin_url,
            None,
            "GET",
            "/_emulator/faults",
            &[],
            None,
        )?;
        response.json()?["clock_offset"]
            .as_i64()
            .context("/_emulator/faults without clock_offset")
    }
}

/// GitHub traffic counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Tokens minted.
    pub mints: u64,
    /// Mint attempts (requests to the access_tokens route, failed ones included).
    pub mint_attempts: u64,
    /// API requests of any kind.
    pub requests: u64,
}

impl Traffic {
    /// Reads the counters from stats.
    pub fn of(stats: &Stats) -> Traffic {
        Traffic {
            mints: stats.mints_total,
            mint_attempts: stats.requests.get(MINT_ROUTE).copied().unwrap_or(0),
            requests: stats.requests.values().sum(),
        }
    }

    /// `self − earlier`, per counter.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            mints: self.mints.saturating_sub(earlier.mints),
            mint_attempts: self.mint_attempts.saturating_sub(earlier.mint_attempts),
            requests: self.requests.saturating_sub(earlier.requests),
        }
    }
}

/// The ledger indexed by token: what the emulator says about each token it issued.
#[derive(Debug, Default)]
pub struct Ledger {
    by_token: HashMap<String, IssuedToken>,
    /// The ledger forgot older tokens (it keeps the last 100,000).
    pub incomplete: bool,
}

impl Ledger {
    /// Indexes a ledger.
    pub fn new(issued: &IssuedTokens) -> Ledger {
        Ledger {
            by_token: issued
                .tokens
                .iter()
                .map(|t| (t.token.clone(), t.clone()))
                .collect(),
            incomplete: issued.forgotten > 0,
        }
    }

    /// `(created_at, expires_at)` of a token, emulator clock, Unix seconds.
    pub fn lifetime(&self, token: &str) -> Option<(i64, i64)> {
        self.by_token
            .get(token)
            .map(|t| (t.created_at, t.expires_at))
    }

    /// Everything the emulator recorded about a token.
    pub fn get(&self, token: &str) -> Option<&IssuedToken> {
        self.by_token.get(token)
    }

    /// Every token in it.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.by_token.keys().map(String::as_str)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// The local wall clock in fractional Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
