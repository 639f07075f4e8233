//! When to try GitHub again: jittered exponential backoff for failures that may pass (5xx,
//! timeouts, dropped connections), and GitHub's documented rate-limit waits for 403/429.
//!
//! GitHub's rules (REST docs, "rate limits"): honour `retry-after`; else, when
//! `x-ratelimit-remaining` is 0, wait until `x-ratelimit-reset`; else (a secondary limit) wait at
//! least a minute — and when secondary limits repeat, exponentially longer ([`secondary_wait`]).
//! A wait longer than what is left of the operation's budget is not slept: the operation fails
//! at once with "rate limited until …" and cached tokens keep serving. Work held by a limit
//! resumes spread over a little while after it ends ([`resume_spread`]), not all at one instant.

use crate::config::DaemonConfig;
use std::time::{Duration, SystemTime};

/// Attempts per GitHub operation, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 4;
/// First backoff step.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest single backoff sleep.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(4);
/// The wait after a secondary rate limit that names no time (GitHub: "at least one minute").
pub(crate) const SECONDARY_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The longest wait after secondary rate limits in a row (see [`secondary_wait`]).
pub(crate) const SECONDARY_BACKOFF_CAP: Duration = Duration::from_secs(15 * 60);
/// The longest spread of held work after a rate limit ends (see [`resume_spread`]).
pub(crate) const RESUME_SPREAD_CAP: Duration = Duration::from_secs(30);

/// How hard one GitHub operation tries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts, the first included.
    pub max_attempts: u32,
    /// Time allowed for one attempt.
    pub attempt_timeout: Duration,
    /// Time allowed for the whole operation, sleeps included.
    pub budget: Duration,
}

impl RetryPolicy {
    /// The policy `[daemon]` asks for.
    pub(crate) fn from_config(daemon: &DaemonConfig) -> Self {
        RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            attempt_timeout: daemon.request_timeout,
            budget: daemon.retry_budget,
        }
    }
}

/// The sleep before retry number `retry` (0-based) of one GitHub operation.
pub(crate) fn backoff(retry: u32) -> Duration {
    jittered_backoff(BACKOFF_BASE, retry, BACKOFF_CAP)
}

/// The one backoff of the broker, for every "try again later": `base·2^step` capped at `cap`,
/// with "equal jitter" (half fixed, half random) so many daemons — or many keys — recovering
/// together do not retry in step.
pub(crate) fn jittered_backoff(base: Duration, step: u32, cap: Duration) -> Duration {
    let full = base.saturating_mul(1u32 << step.min(16)).min(cap);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

/// The wait after the `streak`-th secondary rate limit in a row (1 = the first) of one bucket,
/// when GitHub documented `documented` (its `retry-after`, else a minute): GitHub asks for
/// "an exponentially increasing amount of time between retries" while they repeat and warns
/// that integrations ignoring it may be banned. `documented·2^(streak−1)`, capped at
/// [`SECONDARY_BACKOFF_CAP`], never less than `documented`.
pub(crate) fn secondary_wait(documented: Duration, streak: u32) -> Duration {
    let grown = documented
        .saturating_mul(1u32 << streak.saturating_sub(1).min(16))
        .min(SECONDARY_BACKOFF_CAP);
    grown.max(documented)
}

/// How long after a rate-limit wait of `wait` ends one held operation resumes: a random share
/// of a quarter of the wait (at most [`RESUME_SPREAD_CAP`]), so the work a limit held — every
/// installation's refresh, every waiting caller — does not hit GitHub at one instant.
pub(crate) fn resume_spread(wait: Duration) -> Duration {
    (wait / 4).min(RESUME_SPREAD_CAP).mul_f64(fastrand::f64())
}

/// A value of `retry-after`: seconds, or an HTTP date (read against GitHub's `Date`).
pub(crate) fn parse_retry_after(value: &str, server_now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value)
        .ok()
        .map(|at| at.duration_since(server_now).unwrap_or_default())
}

/// What a 403/429 says about rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimited {
    /// How long to wait before the next request to this App's API.
    pub wait: Duration,
    /// Primary (`remaining` 0) or secondary.
    pub secondary: bool,
}

/// Reads a 403/429 for a rate limit; `None` for an ordinary 403 (suspended, forbidden).
/// `header` looks a response header up by lower-case name.
pub(crate) fn rate_limit(
    status: u16,
    header: impl Fn(&str) -> Option<String>,
    message: &str,
    server_now: SystemTime,
) -> Option<RateLimited> {
    if status != 403 && status != 429 {
        return None;
    }
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, server_now));
    let exhausted = header("x-ratelimit-remaining").is_some_and(|v| v.trim() == "0");
    let reset_wait = header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|reset| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(reset);
            at.duration_since(server_now).unwrap_or_default()
        });
    let says_rate_limit = message.to_ascii_lowercase().contains("rate limit");
    if let Some(wait) = retry_after {
        return Some(RateLimited {
            wait,
            secondary: !exhausted,
        });
    }
    if exhausted {
        return Some(RateLimited {
            wait: reset_wait.unwrap_or(SECONDARY_RATE_LIMIT_WAIT),
            secondary: false,
        });
    }
    if status == 429 || says_rate_limit {
        return Some(RateLimited {
            wait: SECONDARY_RATE_LIMIT_WAIT,
            secondary: true,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        for retry in 0..10 {
            let full = BACKOFF_BASE.saturating_mul(1 << retry).min(BACKOFF_CAP);
            let d = backoff(retry);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(3)).collect();
        assert!(samples.len() > 1, "jittered");
    }

    #[test]
    fn repeated_secondary_limits_wait_exponentially_longer() {
        let minute = SECONDARY_RATE_LIMIT_WAIT;
        let waits: Vec<u64> = (1..=6)
            .map(|streak| secondary_wait(minute, streak).as_secs())
            .collect();
        assert_eq!(waits, vec![60, 120, 240, 480, 900, 900]);
        assert_eq!(secondary_wait(Duration::from_secs(3), 1).as_secs(), 3);
        assert_eq!(secondary_wait(Duration::from_secs(3), 3).as_secs(), 12);
        let long = Duration::from_secs(3600);
        assert_eq!(
            secondary_wait(long, 4),
            long,
            "never below GitHub's own wait"
        );
    }

    #[test]
    fn held_work_resumes_spread_out() {
        let spreads: std::collections::HashSet<Duration> = (0..50)
            .map(|_| resume_spread(Duration::from_secs(60)))
            .collect();
        assert!(spreads.len() > 1, "jittered");
        assert!(spreads.iter().all(|d| *d <= Duration::from_secs(15)));
        assert!(resume_spread(Duration::from_secs(3600)) <= RESUME_SPREAD_CAP);
    }

    #[test]
    fn retry_after_wins() {
        let now = SystemTime::now();
        let r = rate_limit(429, headers(&[("retry-after", "7")]), "", now).unwrap();
        assert_eq!(r.wait, Duration::from_secs(7));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let r = rate_limit(403, headers(&[("retry-after", &date)]), "", now).unwrap();
        assert!(r.wait >= Duration::from_secs(29) && r.wait <= Duration::from_secs(30));
    }

    #[test]
    fn primary_limit_waits_for_reset_by_githubs_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = rate_limit(
            403,
            headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1000120"),
            ]),
            "API rate limit exceeded",
            now,
        )
        .unwrap();
        assert_eq!(
            r,
            RateLimited {
                wait: Duration::from_secs(120),
                secondary: false
            }
        );
    }

    #[test]
    fn secondary_limit_waits_a_minute() {
        let now = SystemTime::now();
        let r = rate_limit(
            403,
            headers(&[("x-ratelimit-remaining", "4000")]),
            "You have exceeded a secondary rate limit",
            now,
        )
        .unwrap();
        assert_eq!(r.wait, SECONDARY_RATE_LIMIT_WAIT);
        assert!(r.secondary);
        assert_eq!(
            rate_limit(429, headers(&[]), "", now).unwrap().wait,
            SECONDARY_RATE_LIMIT_WAIT
        );
    }

    #[test]
    fn ordinary_403_is_not_a_rate_limit() {
        let now = SystemTime::now();
        assert_eq!(
            rate_limit(
                403,
                headers(&[("x-ratelimit-remaining", "4999")]),
                "This installation has been suspended",
                now
            ),
            None
        );
        assert_eq!(
            rate_limit(503, headers(&[("retry-after", "5")]), "", now),
            None
        );
    }
}
