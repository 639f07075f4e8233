//! Time as the broker needs it: expiries on the monotonic clock, anchored at GitHub's `Date`.
//!
//! A token's `expires_at` is GitHub's wall clock. Comparing it with the local wall clock would
//! make every TTL decision wrong by the local clock's skew, so each response is paired with the
//! monotonic instant it arrived at: `expires = received + (expires_at − Date) − slack`. From
//! then on all TTL math is `tokio::time::Instant` arithmetic, which tests can pause and advance.

use ghapp_protocol::time::Timestamp;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Taken off every computed expiry: `Date` has one-second resolution and the response spent
/// some time in flight after it was stamped.
pub(crate) const ANCHOR_SLACK: Duration = Duration::from_secs(2);

/// GitHub's "now" at the moment a response arrived, with our clocks at that moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerTime {
    /// Monotonic instant the response arrived.
    pub received: Instant,
    /// Local wall clock when it arrived.
    pub local_now: SystemTime,
    /// GitHub's `Date` (the local wall clock when the header is missing or unreadable).
    pub server_now: SystemTime,
}

impl ServerTime {
    /// Pairs a response's `Date` header with the current clocks.
    pub(crate) fn from_date_header(date: Option<&str>) -> ServerTime {
        let received = Instant::now();
        let local_now = SystemTime::now();
        let server_now = date
            .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
            .unwrap_or(local_now);
        ServerTime {
            received,
            local_now,
            server_now,
        }
    }

    /// How far GitHub's clock is ahead of ours, in whole seconds (negative: behind).
    pub(crate) fn offset_secs(&self) -> i64 {
        signed_secs(self.server_now, self.local_now)
    }

    /// How long from this response until GitHub's wall-clock time `at`, minus the slack;
    /// zero when it has passed.
    pub(crate) fn remaining_until(&self, at: Timestamp) -> Duration {
        SystemTime::from(at)
            .duration_since(self.server_now)
            .unwrap_or_default()
            .saturating_sub(ANCHOR_SLACK)
    }

    /// The monotonic instant of GitHub's wall-clock time `at`.
    pub(crate) fn instant_of(&self, at: Timestamp) -> Instant {
        self.received + self.remaining_until(at)
    }

    /// GitHub's wall-clock time `at` translated onto the local wall clock (what the local
    /// machine, and git's `password_expiry_utc`, will see).
    pub(crate) fn local_time_of(&self, at: Timestamp) -> Timestamp {
        Timestamp::from(self.local_now + self.remaining_until(at))
    }
}

/// `a − b` in whole seconds, signed.
pub(crate) fn signed_secs(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Seconds since the Unix epoch, for JWT claims (`offset` shifts towards GitHub's clock).
pub(crate) fn unix_now(offset_secs: i64) -> i64 {
    signed_secs(SystemTime::now(), SystemTime::UNIX_EPOCH) + offset_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expiry_is_anchored_at_date_not_local_clock() {
        // GitHub's clock is 5 minutes ahead of ours; the token expires an hour after its Date.
        let local = SystemTime::now();
        let server_now = local + Duration::from_secs(300);
        let date = httpdate::fmt_http_date(server_now);
        let st = ServerTime::from_date_header(Some(&date));
        assert!((st.offset_secs() - 300).abs() <= 1, "{}", st.offset_secs());
        let expires_at = Timestamp::from(server_now + Duration::from_secs(3600));
        let left = st.instant_of(expires_at) - Instant::now();
        assert!(left <= Duration::from_secs(3600) - ANCHOR_SLACK + Duration::from_secs(1));
        assert!(left >= Duration::from_secs(3600) - ANCHOR_SLACK - Duration::from_secs(1));
        // On our clock it expires 5 minutes earlier than GitHub wrote (whole seconds).
        let local = st.local_time_of(expires_at);
        let shift = expires_at.unix_seconds() - local.unix_seconds();
        assert!((300..=303).contains(&shift), "{shift}");
        // Already expired by GitHub's clock: no life left whatever our clock says.
        assert_eq!(
            st.remaining_until(Timestamp::from(server_now - Duration::from_secs(10))),
            Duration::ZERO
        );
        // Missing Date: falls back to the local clock.
        let st = ServerTime::from_date_header(None);
        assert_eq!(st.offset_secs(), 0);
    }
}
