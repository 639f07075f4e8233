//! [`Timestamp`]: an instant as GitHub and the socket API write it, kept as a number and turned
//! into text only at the wire.
//!
//! GitHub writes installation-token expiries as `2016-07-11T22:14:10Z` and runner-token expiries
//! with milliseconds and an offset (`2020-01-22T12:13:35.123-08:00`); both parse. ghapp writes
//! one form only: UTC, whole seconds, `Z` (`2026-01-01T00:00:00Z`). Fractions of a second are
//! dropped when read (rounded down), so an expiry read from GitHub never moves later.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC instant with whole-second precision, between the years 0000 and 9999 (all RFC 3339
/// can write). Ordered, `Copy`; serializes as `"2026-01-01T00:00:00Z"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z; negative before it.
    unix_seconds: i64,
}

/// Why a text or a number is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text is not an RFC 3339 date-time.
    #[error(
        "invalid timestamp {input:?}: expected an RFC 3339 time such as 2026-01-01T00:00:00Z ({reason})"
    )]
    Unparsable {
        /// The text given (its first 64 characters).
        input: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// The number is outside the years 0000–9999.
    #[error("Unix time {seconds} is outside the years 0000-9999 that RFC 3339 can write")]
    OutOfRange {
        /// The seconds since the Unix epoch given.
        seconds: i64,
    },
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp { unix_seconds: 0 };
    /// 0000-01-01T00:00:00Z, the earliest instant RFC 3339 can write.
    pub const MIN: Timestamp = Timestamp {
        unix_seconds: -62_167_219_200,
    };
    /// 9999-12-31T23:59:59Z, the latest instant RFC 3339 can write.
    pub const MAX: Timestamp = Timestamp {
        unix_seconds: 253_402_300_799,
    };

    /// The current time by this host's clock, rounded down to the second.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// The instant `seconds` after the Unix epoch (before it, when negative).
    pub fn from_unix_seconds(seconds: i64) -> Result<Timestamp, TimestampError> {
        if (Timestamp::MIN.unix_seconds..=Timestamp::MAX.unix_seconds).contains(&seconds) {
            Ok(Timestamp {
                unix_seconds: seconds,
            })
        } else {
            Err(TimestampError::OutOfRange { seconds })
        }
    }

    /// Seconds since the Unix epoch (git's `password_expiry_utc`, JWT claims).
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// Reads RFC 3339: `2026-01-01T00:00:00Z`, with or without a fraction of a second (dropped),
    /// with `Z` or a numeric offset (`-08:00`, converted to UTC).
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let unparsable = |reason: String| TimestampError::Unparsable {
            input: text.chars().take(64).collect(),
            reason,
        };
        let parsed =
            OffsetDateTime::parse(text, &Rfc3339).map_err(|e| unparsable(e.to_string()))?;
        // `unix_timestamp` ignores the fraction: rounding down, also before 1970.
        Timestamp::from_unix_seconds(parsed.unix_timestamp()).map_err(|e| unparsable(e.to_string()))
    }

    /// How long from `now` until this instant; zero once it has passed.
    pub fn remaining(self, now: Timestamp) -> Duration {
        let seconds = self.unix_seconds.saturating_sub(now.unix_seconds);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// This instant moved `by` later, held at [`Timestamp::MAX`].
    pub fn saturating_add(self, by: Duration) -> Timestamp {
        let by = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        Timestamp {
            unix_seconds: self
                .unix_seconds
                .saturating_add(by)
                .min(Timestamp::MAX.unix_seconds),
        }
    }

    /// This instant moved `by` earlier, held at [`Timestamp::MIN`].
    pub fn saturating_sub(self, by: Duration) -> Timestamp {
        let by = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        Timestamp {
            unix_seconds: self
                .unix_seconds
                .saturating_sub(by)
                .max(Timestamp::MIN.unix_seconds),
        }
    }
}

impl From<SystemTime> for Timestamp {
    /// Rounds down to the second; a clock beyond the years 0000–9999 is held at the edge.
    fn from(time: SystemTime) -> Timestamp {
        let seconds = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => {
                let before = before.duration();
                let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
                // Rounding down before 1970 means away from zero when there is a fraction.
                whole
                    .saturating_neg()
                    .saturating_sub(i64::from(before.subsec_nanos() > 0))
            }
        };
        Timestamp {
            unix_seconds: seconds.clamp(Timestamp::MIN.unix_seconds, Timestamp::MAX.unix_seconds),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(time: Timestamp) -> SystemTime {
        let magnitude = Duration::from_secs(time.unix_seconds.unsigned_abs());
        if time.unix_seconds >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl fmt::Display for Timestamp {
    /// `2026-01-01T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every Timestamp is within the years 0000–9999 (checked when made), so this holds.
        let utc = OffsetDateTime::from_unix_timestamp(self.unix_seconds).map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second()
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        struct Rfc3339Text;
        impl serde::de::Visitor<'_> for Rfc3339Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time such as \"2026-01-01T00:00:00Z\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Rfc3339Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_what_github_sends() {
        // Installation tokens (docs' example and a recorded answer).
        assert_eq!(at("2016-07-11T22:14:10Z").unix_seconds(), 1_468_275_250);
        assert_eq!(
            at("2024-11-25T01:00:02Z").to_string(),
            "2024-11-25T01:00:02Z"
        );
        // Runner tokens: milliseconds and an offset, converted to UTC and rounded down.
        assert_eq!(
            at("2020-01-22T12:13:35.123-08:00").to_string(),
            "2020-01-22T20:13:35Z"
        );
        // Installation objects: `.000Z` and `-04:00`.
        assert_eq!(
            at("2022-10-26T11:13:03.000Z").to_string(),
            "2022-10-26T11:13:03Z"
        );
        assert_eq!(
            at("2017-07-08T16:18:44-04:00").to_string(),
            "2017-07-08T20:18:44Z"
        );
        // Fractions round down, also before 1970.
        assert_eq!(at("2023-11-14T22:13:20.999Z").unix_seconds(), 1_700_000_000);
        assert_eq!(at("1969-12-31T23:59:59.5Z").unix_seconds(), -1);
        // RFC 3339 (section 5.6) lets a space or lower case stand for `T` and `Z`.
        assert_eq!(at("2016-07-11 22:14:10Z"), at("2016-07-11t22:14:10z"));
        assert_eq!(at("0000-01-01T00:00:00Z"), Timestamp::MIN);
        assert_eq!(at("9999-12-31T23:59:59Z"), Timestamp::MAX);
    }

    #[test]
    fn bad_input_says_what_and_why() {
        for bad in [
            "",
            "soon",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T24:00:00Z",
            " 2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z ",
            "1700000000",
        ] {
            let err = match Timestamp::parse(bad) {
                Ok(t) => panic!("{bad:?} read as {t}"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with("invalid timestamp"), "{bad:?}: {err}");
            assert!(err.contains("2026-01-01T00:00:00Z"), "{err}");
        }
        let long = "x".repeat(10_000);
        assert!(Timestamp::parse(&long).unwrap_err().to_string().len() < 300);
        assert_eq!(
            Timestamp::from_unix_seconds(Timestamp::MAX.unix_seconds() + 1),
            Err(TimestampError::OutOfRange {
                seconds: 253_402_300_800
            })
        );
        let json = serde_json::from_str::<Timestamp>("\"tomorrow\"").unwrap_err();
        assert!(
            json.to_string().contains("invalid timestamp \"tomorrow\""),
            "{json}"
        );
        let json = serde_json::from_str::<Timestamp>("1700000000").unwrap_err();
        assert!(json.to_string().contains("RFC 3339"), "{json}");
    }

    #[test]
    fn remaining_life_and_arithmetic() {
        let expiry = at("2026-01-01T01:00:00Z");
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(expiry.remaining(now), Duration::from_secs(3600));
        assert_eq!(now.remaining(expiry), Duration::ZERO, "past: none left");
        assert_eq!(now.saturating_add(Duration::from_secs(3600)), expiry);
        assert_eq!(expiry.saturating_sub(Duration::from_millis(3_600_999)), now);
        assert_eq!(Timestamp::MAX.saturating_add(Duration::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::MIN.saturating_sub(Duration::MAX), Timestamp::MIN);
        assert!(now < expiry);
        assert_eq!(format!("{now:?}"), "Timestamp(2026-01-01T00:00:00Z)");
    }

    #[test]
    fn system_time_rounds_down() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(Timestamp::from(t).unix_seconds(), 1_700_000_000);
        let before = UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(Timestamp::from(before).unix_seconds(), -2);
        let back = SystemTime::from(Timestamp::from_unix_seconds(-2).unwrap());
        assert_eq!(back, UNIX_EPOCH - Duration::from_secs(2));
        let now = Timestamp::now();
        assert!(now > at("2025-01-01T00:00:00Z"), "{now}");
    }

    proptest! {
        #[test]
        fn text_and_json_round_trip(
            seconds in Timestamp::MIN.unix_seconds()..=Timestamp::MAX.unix_seconds()
        ) {
            let t = Timestamp::from_unix_seconds(seconds).unwrap();
            let text = t.to_string();
            prop_assert_eq!(text.len(), 20);
            prop_assert_eq!(Timestamp::parse(&text), Ok(t));
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(&json, &format!("\"{text}\""));
            prop_assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
            prop_assert_eq!(Timestamp::from(SystemTime::from(t)), t);
        }

        #[test]
        fn any_offset_and_fraction_reads_as_the_same_instant(
            // Kept a day inside the range so every offset still writes a 4-digit year.
            seconds in (Timestamp::MIN.unix_seconds() + 86_400)..(Timestamp::MAX.unix_seconds() - 86_400),
            nanos in 0u32..1_000_000_000,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
        ) {
            let offset = ::time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let written = OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(offset)
                .format(&Rfc3339)
                .unwrap();
            prop_assert_eq!(Timestamp::parse(&written).unwrap().unix_seconds(), seconds, "{}", written);
        }

        #[test]
        fn any_text_is_an_answer_never_a_panic(text in ".{0,40}") {
            let _ = Timestamp::parse(&text);
        }
    }
}
