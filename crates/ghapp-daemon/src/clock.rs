//! Wall-clock helpers: RFC 3339 timestamps for the audit log and the remaining life of a token
//! from its `expires_at`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC with second precision (`2026-11-22T05:00:00Z`).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Seconds from now until `expires_at` (RFC 3339); negative when past, `None` when unparsable.
pub fn seconds_until(expires_at: &str) -> Option<f64> {
    let expiry = OffsetDateTime::parse(expires_at, &Rfc3339).ok()?;
    Some((expiry - OffsetDateTime::now_utc()).as_seconds_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_life() {
        let in_an_hour = (OffsetDateTime::now_utc() + time::Duration::hours(1))
            .format(&Rfc3339)
            .unwrap();
        let left = seconds_until(&in_an_hour).unwrap();
        assert!((3590.0..=3600.0).contains(&left), "{left}");
        assert!(seconds_until("2000-01-01T00:00:00Z").unwrap() < 0.0);
        assert_eq!(seconds_until("soon"), None);
        assert!(now_rfc3339().ends_with('Z'));
        assert!(OffsetDateTime::parse(&now_rfc3339(), &Rfc3339).is_ok());
    }
}
