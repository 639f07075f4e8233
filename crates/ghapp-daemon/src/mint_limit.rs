//! Per-identity mint limits: a token bucket per caller identity ([`Caller::identity_key`]:
//! `uid:1000`, `client:ci-bot`, `oidc:ISSUER#SUBJECT`, `address:10.0.0.7`) on the requests
//! that *mint* — that make the daemon ask GitHub for a new installation token — so one caller
//! cannot spend the App's GitHub rate limit. Cached answers cost GitHub nothing and are never
//! charged. `[network] mint_rate` (per minute) refills the bucket, `mint_burst` is its size;
//! without `[network]` the schema's defaults (120/min, 240) apply, far above normal use.
//!
//! **How the daemon knows a request minted.** The broker says so after the fact
//! ([`crate::service::TokenService::token_served`]: the request waited on a mint flight — its
//! own, or one in flight it joined — rather than a cached token). Asking *before* (a
//! "would mint" probe) would need the broker to resolve the installation and plan the token
//! without acting, duplicating its request path and racing it; charging after is exact and
//! costs nothing on the hot path. So the check happens before the call and the charge after:
//! a caller whose bucket is empty is refused (429 with `retry-after`) before the broker is
//! asked, and a caller with tokens left is charged one per mint it caused. Concurrent
//! requests of one identity can overshoot by at most the requests it has in flight at once;
//! the overshoot is carried as debt (down to minus the burst), so the next ones wait longer.
//! An identity that has emptied its bucket is refused cached answers too until it refills —
//! it took `mint_burst` mints in quick succession to get there, which no normal caller does.
//!
//! Memory is bounded: a full bucket is the same as none, so buckets that have refilled are
//! dropped when the map grows, and at [`MAX_BUCKETS`] the longest-idle ones go first.
//!
//! [`Caller::identity_key`]: crate::identity::Caller::identity_key

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most (about 100 bytes each).
pub const MAX_BUCKETS: usize = 65_536;

/// The rate and burst in force (from `[network]`, or the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MintRate {
    /// Mints per minute an identity's bucket refills.
    pub per_minute: u32,
    /// The bucket's size.
    pub burst: u32,
}

impl MintRate {
    /// Without `[network]`: the schema's defaults for `mint_rate` and `mint_burst`.
    pub const DEFAULT: MintRate = MintRate {
        per_minute: 120,
        burst: 240,
    };

    /// The rate the config sets.
    pub fn from_config(config: &ghapp_protocol::config::Config) -> MintRate {
        config
            .network
            .as_ref()
            .map_or(MintRate::DEFAULT, |network| MintRate {
                per_minute: network.mint_rate,
                burst: network.mint_burst,
            })
    }

    fn per_second(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refilled(self, rate: MintRate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate.per_second()).min(f64::from(rate.burst))
    }
}

/// Every identity's bucket.
#[derive(Debug, Default)]
pub struct MintLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MintLimiter {
    /// `Err(retry_after)` when `identity` has no mint left now; `Ok` otherwise (nothing taken).
    pub fn check(&self, identity: &str, rate: MintRate, now: Instant) -> Result<(), Duration> {
        if rate.per_minute == 0 || rate.burst == 0 {
            return Ok(()); // a limit of zero is refused by validation; never lock everyone out
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bucket) = buckets.get(identity) else {
            return Ok(());
        };
        let tokens = bucket.refilled(rate, now);
        if tokens >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - tokens) / rate.per_second();
        Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
    }

    /// Takes one mint from `identity`'s bucket (down to minus the burst at most).
    pub fn charge(&self, identity: &str, rate: MintRate, now: Instant) {
        if rate.per_minute == 0 || rate.burst == 0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(identity) {
            buckets.retain(|_, bucket| bucket.refilled(rate, now) < f64::from(rate.burst));
            if buckets.len() >= MAX_BUCKETS {
                let idlest = buckets
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.updated)
                    .map(|(key, _)| key.clone());
                if let Some(idlest) = idlest {
                    buckets.remove(&idlest);
                }
            }
        }
        let bucket = buckets.entry(identity.to_string()).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            updated: now,
        });
        let tokens = bucket.refilled(rate, now) - 1.0;
        *bucket = Bucket {
            tokens: tokens.max(-f64::from(rate.burst)),
            updated: now,
        };
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MintRate = MintRate {
        per_minute: 60,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = MintLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("uid:1", RATE, t0).is_ok());
            limiter.charge("uid:1", RATE, t0);
        }
        assert_eq!(
            limiter.check("uid:1", RATE, t0),
            Err(Duration::from_secs(1))
        );
        assert!(limiter.check("uid:2", RATE, t0).is_ok(), "per identity");
        let later = t0 + Duration::from_secs(1);
        assert!(
            limiter.check("uid:1", RATE, later).is_ok(),
            "one per second back"
        );
        limiter.charge("uid:1", RATE, later);
        assert!(limiter.check("uid:1", RATE, later).is_err());
        // Debt from concurrent overshoot makes the wait longer, bounded by the burst.
        for _ in 0..10 {
            limiter.charge("uid:1", RATE, later);
        }
        assert_eq!(
            limiter.check("uid:1", RATE, later),
            Err(Duration::from_secs(4))
        );
    }

    #[test]
    fn the_default_is_the_schemas() {
        let config = ghapp_protocol::config::Config::parse(
            "[network]\nlisten = [\"127.0.0.1:0\"]\n",
            std::path::Path::new("t"),
        )
        .unwrap();
        assert_eq!(MintRate::from_config(&config), MintRate::DEFAULT);
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = MintLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS + 10 {
            limiter.charge(&format!("address:{i}"), RATE, t0);
        }
        assert_eq!(limiter.len(), MAX_BUCKETS);
        // Once refilled, buckets are dropped to make room.
        limiter.charge("uid:new", RATE, t0 + Duration::from_secs(60));
        assert_eq!(limiter.len(), 1);
    }
}
