//! Remaining life of a token from its RFC 3339 `expires_at`, for `token --json` and
//! `runner-token` (GitHub writes installation-token expiries as `…Z` and runner-token expiries
//! with milliseconds and an offset; both parse here).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whole seconds from `now` until `expires_at`; 0 once past; `None` when unparseable.
pub fn remaining_secs_at(expires_at: &str, now: OffsetDateTime) -> Option<u64> {
    let expiry = OffsetDateTime::parse(expires_at.trim(), &Rfc3339).ok()?;
    let secs = (expiry - now).whole_seconds();
    Some(u64::try_from(secs).unwrap_or(0))
}

/// Whole seconds from now until `expires_at`; 0 once past; `None` when unparseable.
pub fn remaining_secs(expires_at: &str) -> Option<u64> {
    remaining_secs_at(expires_at, OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn both_github_formats() {
        let now = datetime!(2026-11-22 04:00:00 UTC);
        assert_eq!(remaining_secs_at("2026-11-22T05:00:00Z", now), Some(3600));
        assert_eq!(
            remaining_secs_at("2026-11-21T20:13:35.123-08:00", now),
            Some(13 * 60 + 35)
        );
        assert_eq!(
            remaining_secs_at("2026-11-22T03:00:00Z", now),
            Some(0),
            "past clamps to 0"
        );
        assert_eq!(remaining_secs_at("tomorrow", now), None);
    }
}
