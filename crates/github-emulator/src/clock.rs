//! The emulator's clock: system time shifted by the `clock_offset` fault, so tests can put
//! "GitHub" ahead of or behind the client without touching the machine's clock. Every time check
//! (JWT `iat`/`exp`, token expiry) and every `Date` header reads this clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// System time plus an adjustable offset in seconds.
#[derive(Debug, Default)]
pub struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// The shifted current time.
    pub fn now(&self) -> SystemTime {
        let offset = self.offset_secs.load(Ordering::Relaxed);
        let base = SystemTime::now();
        if offset >= 0 {
            base + Duration::from_secs(offset.unsigned_abs())
        } else {
            base.checked_sub(Duration::from_secs(offset.unsigned_abs()))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// The shifted current time in whole seconds since the Unix epoch.
    pub fn unix(&self) -> i64 {
        unix_secs(self.now())
    }

    /// Sets the offset (the `clock_offset` fault; 0 clears it).
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::Relaxed);
    }

    /// The current offset in seconds.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::Relaxed)
    }

    /// The value of a `Date` header now (RFC 7231 IMF-fixdate).
    pub fn http_date(&self) -> String {
        httpdate::fmt_http_date(self.now())
    }
}

/// Seconds since the Unix epoch (negative before it).
pub fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the format of an installation token's `expires_at`.
pub fn iso8601_z(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+00:00`, the format runner tokens use for `expires_at` (milliseconds
/// and a numeric offset, unlike installation tokens) so clients must parse RFC 3339 generally.
pub fn rfc3339_millis_offset(unix: i64) -> String {
    let base = iso8601_z(unix);
    format!("{}.000+00:00", base.trim_end_matches('Z'))
}

/// Parses an RFC 3339 timestamp (the `since` query parameter) into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_github() {
        assert_eq!(iso8601_z(1_468_275_250), "2016-07-11T22:14:10Z");
        assert_eq!(
            rfc3339_millis_offset(1_468_275_250),
            "2016-07-11T22:14:10.000+00:00"
        );
        assert_eq!(parse_rfc3339("2016-07-11T22:14:10Z"), Some(1_468_275_250));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn offset_shifts_now() {
        let clock = Clock::default();
        let before = clock.unix();
        clock.set_offset(-300);
        let shifted = clock.unix();
        assert!((before - shifted - 300).abs() <= 1, "{before} vs {shifted}");
    }
}
